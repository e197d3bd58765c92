//! Whaapy's webhooks, per the Whaapy section of `shared/providers/RECEIPTS.md`.
//!
//! - **Auth**: `X-Webhook-Signature` = hex HMAC-SHA256(webhook secret, raw body); a `sha256=`
//!   prefix (Meta's habit, which Whaapy mirrors elsewhere) is tolerated. `X-Webhook-Timestamp`
//!   is not covered by the signature, so it bounds nothing.
//! - **Events**: `message.sent|delivered|read|failed`, named by the body's `event`, else by
//!   its `data.status`. The `X-Webhook-Event` header is not covered by the signature, so it
//!   names the event only when the body names neither ([`parse_with_event`]): it never
//!   overrides what the signed body says. Other events carry no receipt; other `message.*`
//!   words and status words are listed in [`Batch::ignored_statuses`].
//! - **Inbound** (<https://docs.whaapy.com/api-reference/webhooks/security> and
//!   <https://docs.whaapy.com/api-reference/webhooks/management>): Whaapy documents the event `message.received` and its headers,
//!   but no payload field. So a `message.received` body (by the same event rule) is published
//!   as one `unsupported` message with the body's `data` (or the whole body) in `raw`, for a
//!   consumer to read; no sender, name, time, content or quoted message is read from it. Its
//!   id is `data.id` when that is a string, else `sha256:` and the hex SHA-256 of the body
//!   (`body_id`).
//! - **Assumptions** (Whaapy does not document the payload): the message id, which is the
//!   `data.id` / `messages[0].id` UUID of the send answer, is the first of `data.id`,
//!   `data.messageId`, `messageId`, `data.message.id`; a `failed` is explained by `data.error`
//!   (`{"code","message"}` as in Whaapy's error bodies, or a string) or by
//!   `data.errorCode`/`data.errorMessage`; the time is `data.timestamp`, else `timestamp`,
//!   else `data.updatedAt`. The tests' `FIXTURE` is the shape accepted.

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::config::Secret;
use crate::gateways::webhook::fields::{self, Object};
use crate::gateways::webhook::{
    AuthError, Batch, Inbound, ParseError, Parsed, Receipt, ReceiptError, WebhookFormat,
    WebhookRequest, hmac_sha256_hex,
};
use crate::inbound::Content;
use crate::outcome::Status;

/// The signature header (lower case, as `HeaderName` wants it).
pub const SIGNATURE_HEADER: &str = "x-webhook-signature";
/// The event name header.
pub const EVENT_HEADER: &str = "x-webhook-event";
/// When Whaapy sent the webhook (not signed; Whaapy's docs say ISO 8601, what [`sign`] sends
/// is unix seconds, and nothing reads it).
pub const TIMESTAMP_HEADER: &str = "x-webhook-timestamp";
/// The delivery's id.
pub const ID_HEADER: &str = "x-webhook-id";

/// Tolerated before the hex digest.
const SIGNATURE_PREFIX: &str = "sha256=";

/// Status events are `message.<status>`.
const EVENT_PREFIX: &str = "message.";

/// The event of a customer's message.
const RECEIVED_EVENT: &str = "message.received";

/// Why a customer's message is `unsupported`.
const UNDOCUMENTED: &str = "Whaapy documents no inbound message payload";

/// Whaapy's status words (after [`EVENT_PREFIX`]); other `message.*` events are not receipts.
pub const STATUSES: &[(&str, Status)] = &[
    ("sent", Status::Sent),
    ("delivered", Status::Delivered),
    ("read", Status::Read),
    ("failed", Status::Failed),
];

/// Where the message id may be, in order of preference (see the module doc).
const ID_PATHS: &[&[&str]] = &[
    &["data", "id"],
    &["data", "messageId"],
    &["messageId"],
    &["data", "message", "id"],
];

/// Check `X-Webhook-Signature` against the webhook secret.
pub fn verify(secret: &Secret, request: &WebhookRequest<'_>) -> Result<(), AuthError> {
    const NAME: &str = "X-Webhook-Signature";
    let key = fields::secret_bytes(secret)?;
    let received = request
        .headers
        .get(SIGNATURE_HEADER)
        .ok_or(AuthError::Missing(NAME))?
        .as_bytes();
    let digest = received
        .strip_prefix(SIGNATURE_PREFIX.as_bytes())
        .unwrap_or(received);
    if fields::hex_matches(&hmac_sha256_hex(key, request.body), digest) {
        Ok(())
    } else {
        Err(AuthError::Mismatch(NAME))
    }
}

/// Read the receipt or the customer's message, if any, in a webhook body whose event name is
/// in the body.
pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    parse_with_event(body, None)
}

/// Read the receipt or the customer's message, if any, with the `X-Webhook-Event` header as
/// the event name of a body that names neither an event nor a status. A body holds one item,
/// so anything unreadable in it fails the body as a whole.
pub fn parse_with_event(body: &[u8], header_event: Option<&str>) -> Result<Parsed, ParseError> {
    let root = fields::body_object(body)?;
    let data = fields::opt_object(&root, "data", "")?;
    let body_event = fields::opt_str(&root, "event", "")?;
    let body_status = match (body_event, data) {
        (None, Some(data)) => fields::opt_str(data, "status", "data")?,
        _ => None,
    };
    // The body is signed and the header is not: anyone who replays a signed body could set
    // the header, so it only fills in for a body that names no event and no status.
    let event = match (body_event, body_status) {
        (Some(event), _) => Some(event),
        (None, None) => header_event,
        (None, Some(_)) => None,
    };
    if event == Some(RECEIVED_EVENT) {
        return Ok(Parsed::Batch(Batch {
            inbound: vec![message(&root, data, body)],
            ..Batch::default()
        }));
    }
    let none = Ok(Parsed::Batch(Batch::default()));
    let inbound = |obj: &Object, at: &str| -> Result<bool, ParseError> {
        Ok(fields::opt_str(obj, "direction", at)? == Some("inbound"))
    };
    if inbound(&root, "")? || data.map(|d| inbound(d, "data")).transpose()? == Some(true) {
        return none;
    }
    let word = match event {
        Some(event) => match event.strip_prefix(EVENT_PREFIX) {
            Some(word) => word,
            None => {
                tracing::debug!(event = %fields::preview(event), "whaapy event is not about a message");
                return none;
            }
        },
        None => body_status.ok_or_else(|| {
            ParseError(
                "missing event (body event or X-Webhook-Event header) and data.status".into(),
            )
        })?,
    };
    let Some(status) = fields::lookup(STATUSES, word) else {
        tracing::debug!(event = %fields::preview(word), "whaapy message event skipped");
        return Ok(Parsed::Batch(Batch {
            ignored_statuses: vec![fields::preview(word)],
            ..Batch::default()
        }));
    };
    let id = message_id(&root)?;
    let occurred_at = occurred_at(&root, data)?;
    let error = match data {
        Some(data) if status == Status::Failed => error(data)?,
        _ => None,
    };
    Ok(Parsed::receipts(vec![Receipt {
        provider_message_id: id,
        status,
        job_id: None,
        error,
        occurred_at,
        sender: None,
    }]))
}

/// A `message.received` body as a customer's message. Whaapy documents none of its fields,
/// so nothing is read but an id, and it cannot be unreadable: the payload is in `raw`.
fn message(root: &Object, data: Option<&Object>, body: &[u8]) -> Inbound {
    let id = data
        .and_then(|data| data.get("id"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty());
    Inbound {
        provider_message_id: id.map_or_else(|| body_id(body), str::to_owned),
        from: None,
        user_id: None,
        profile_name: None,
        timestamp: None,
        content: Content::unsupported(UNDOCUMENTED),
        context_id: None,
        sender: None,
        raw: Value::Object(data.unwrap_or(root).clone()),
    }
}

/// The id of a customer's message without a `data.id`: `sha256:` and the hex SHA-256 of the
/// raw body. A redelivery is assumed to repeat the signed body byte for byte, so a retry
/// yields the same id, and hence the same inbound event id. `X-Webhook-ID` is not used: it is
/// not signed, and Whaapy reportedly reuses it across deliveries.
fn body_id(body: &[u8]) -> String {
    fields::content_id(body)
}

fn message_id(root: &Object) -> Result<String, ParseError> {
    for path in ID_PATHS {
        let (key, parents) = match path.split_last() {
            Some(split) => split,
            None => continue,
        };
        let mut obj = root;
        let mut at = String::new();
        let mut reachable = true;
        for parent in parents {
            match fields::opt_object(obj, parent, &at)? {
                Some(inner) => {
                    obj = inner;
                    at = fields::path(&at, parent);
                }
                None => {
                    reachable = false;
                    break;
                }
            }
        }
        if reachable && let Some(id) = fields::opt_text(obj, key, &at)? {
            return Ok(id);
        }
    }
    Err(ParseError(
        "missing message id (data.id, data.messageId, messageId or data.message.id)".into(),
    ))
}

fn occurred_at(root: &Object, data: Option<&Object>) -> Result<Option<DateTime<Utc>>, ParseError> {
    if let Some(data) = data
        && let Some(at) = fields::opt_timestamp(data, "timestamp", "data")?
    {
        return Ok(Some(at));
    }
    if let Some(at) = fields::opt_timestamp(root, "timestamp", "")? {
        return Ok(Some(at));
    }
    match data {
        Some(data) => fields::opt_timestamp(data, "updatedAt", "data"),
        None => Ok(None),
    }
}

fn error(data: &Object) -> Result<Option<ReceiptError>, ParseError> {
    const NO_MESSAGE: &str = "Whaapy gave no message";
    match data.get("error") {
        Some(Value::Object(error)) => {
            let code = fields::opt_text(error, "code", "data.error")?;
            let message = match fields::opt_str(error, "message", "data.error")? {
                Some(message) => Some(message),
                None => fields::opt_str(error, "title", "data.error")?,
            };
            Ok(Some(ReceiptError {
                code,
                message: message.unwrap_or(NO_MESSAGE).to_owned(),
            }))
        }
        Some(Value::String(message)) => Ok(Some(ReceiptError {
            code: fields::opt_text(data, "errorCode", "data")?,
            message: message.clone(),
        })),
        None | Some(Value::Null) => {
            let code = fields::opt_text(data, "errorCode", "data")?;
            let message = fields::opt_str(data, "errorMessage", "data")?;
            Ok((code.is_some() || message.is_some()).then(|| ReceiptError {
                code,
                message: message.unwrap_or(NO_MESSAGE).to_owned(),
            }))
        }
        Some(other) => Err(ParseError(format!(
            "data.error must be an object or a string, not a JSON {}",
            fields::kind(other)
        ))),
    }
}

/// A webhook body holding `receipt`, in the shape this parser assumes.
pub fn render(receipt: &Receipt) -> Vec<u8> {
    let status = receipt.status.as_str();
    let mut data = json!({
        "id": receipt.provider_message_id,
        "direction": "outbound",
        "status": status,
    });
    if let Some(at) = receipt.occurred_at {
        data["timestamp"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    if let Some(error) = &receipt.error {
        data["error"] = json!({"code": error.code, "message": error.message});
    }
    json!({"event": format!("{EVENT_PREFIX}{status}"), "data": data})
        .to_string()
        .into_bytes()
}

/// A `message.received` body for `inbound`: only its id, as `data.id`, since Whaapy documents
/// no other field. It reads back as an `unsupported` message with that id.
pub fn render_inbound(inbound: &Inbound) -> Vec<u8> {
    json!({"event": RECEIVED_EVENT, "data": {"id": inbound.provider_message_id}})
        .to_string()
        .into_bytes()
}

/// The headers Whaapy sends with `body` at `now`: signature, event (from the body), timestamp
/// and a delivery id derived from the body (a redelivery of the same body keeps its id).
pub fn sign(secret: &Secret, body: &[u8], now: DateTime<Utc>) -> Vec<(HeaderName, HeaderValue)> {
    let signature = hmac_sha256_hex(secret.expose().as_bytes(), body);
    let event = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("event").and_then(Value::as_str).map(str::to_owned));
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, body).to_string();
    [
        fields::header(SIGNATURE_HEADER, &signature, false),
        event.and_then(|event| fields::header(EVENT_HEADER, &event, false)),
        fields::header(TIMESTAMP_HEADER, &now.timestamp().to_string(), false),
        fields::header(ID_HEADER, &id, false),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Whaapy's webhook format.
pub struct Format;

impl WebhookFormat for Format {
    fn verify(
        &self,
        secret: &Secret,
        request: &WebhookRequest<'_>,
        _now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        verify(secret, request)
    }

    /// The event name may be only in `X-Webhook-Event`.
    fn kept_headers(&self) -> &'static [&'static str] {
        &[EVENT_HEADER]
    }

    fn parse(&self, body: &[u8], headers: &HeaderMap) -> Result<Parsed, ParseError> {
        let event = headers
            .get(EVENT_HEADER)
            .and_then(|value| value.to_str().ok());
        parse_with_event(body, event)
    }

    fn render(&self, receipt: &Receipt) -> Vec<u8> {
        render(receipt)
    }

    fn render_inbound(&self, inbound: &Inbound) -> Option<Vec<u8>> {
        Some(render_inbound(inbound))
    }

    fn sign(
        &self,
        secret: &Secret,
        _method: &str,
        _url: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        sign(secret, body, now)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use reqwest::header::HeaderMap;

    use super::*;
    use crate::gateways::webhook::fields::testing;

    const SECRET: &str = "whsec_whaapy";

    /// The assumed shape of a failed-status webhook: the send answer's `data` object with the
    /// status, the wamid and a Meta-style error.
    pub(super) const FIXTURE: &str = r#"{
      "event": "message.failed",
      "timestamp": "2026-01-22T10:31:00Z",
      "data": {
        "id": "550e8400-e29b-41d4-a716-446655440000",
        "wamid": "wamid.HBgLNTIxNTUx",
        "conversationId": "660e8400-e29b-41d4-a716-446655440001",
        "direction": "outbound",
        "status": "failed",
        "error": {"code": 131047, "message": "Re-engagement message"},
        "timestamp": "2026-01-22T10:30:05Z"
      }
    }"#;

    fn receipts(body: &[u8]) -> Vec<Receipt> {
        match parse(body).unwrap() {
            Parsed::Batch(batch) => batch.receipts,
            Parsed::Probe => panic!("whaapy has no probe"),
        }
    }

    fn request<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> WebhookRequest<'a> {
        WebhookRequest {
            method: "POST",
            url: "https://hooks.example.com/webhooks/whaapy-mx",
            headers,
            query: None,
            body,
        }
    }

    #[test]
    fn fixture_gives_the_exact_receipt() {
        assert_eq!(
            receipts(FIXTURE.as_bytes()),
            vec![Receipt {
                provider_message_id: "550e8400-e29b-41d4-a716-446655440000".into(),
                status: Status::Failed,
                job_id: None,
                error: Some(ReceiptError {
                    code: Some("131047".into()),
                    message: "Re-engagement message".into(),
                }),
                occurred_at: Some(Utc.with_ymd_and_hms(2026, 1, 22, 10, 30, 5).unwrap()),
                sender: None,
            }]
        );
    }

    #[test]
    fn the_id_is_found_in_every_assumed_place() {
        for body in [
            r#"{"event":"message.read","data":{"id":"m1"}}"#,
            r#"{"event":"message.read","data":{"messageId":"m1"}}"#,
            r#"{"event":"message.read","messageId":"m1","data":{}}"#,
            r#"{"event":"message.read","data":{"message":{"id":"m1"}}}"#,
        ] {
            let got = receipts(body.as_bytes());
            assert_eq!(got.len(), 1, "{body}");
            assert_eq!(got[0].provider_message_id, "m1", "{body}");
            assert_eq!(got[0].status, Status::Read, "{body}");
        }
    }

    #[test]
    fn event_from_data_status_or_else_the_header() {
        let body = br#"{"data":{"id":"m1"}}"#;
        let got = parse_with_event(body, Some("message.delivered")).unwrap();
        assert!(
            matches!(&got, Parsed::Batch(Batch { receipts: r, .. }) if r.len() == 1 && r[0].status == Status::Delivered)
        );
        let body = br#"{"data":{"id":"m1","status":"sent","errorCode":"x"}}"#;
        assert_eq!(receipts(body)[0].status, Status::Sent);
        assert_eq!(receipts(body)[0].error, None);
    }

    /// The unsigned `X-Webhook-Event` header never overrides what the signed body says,
    /// whether the body names the event or only the status.
    #[test]
    fn the_signed_body_wins_over_a_disagreeing_header() {
        let read = testing::headers(&[("X-Webhook-Event", "message.read")]);
        for (body, status) in [
            (
                r#"{"data":{"id":"m1","status":"delivered"}}"#,
                Status::Delivered,
            ),
            (
                r#"{"event":"message.failed","data":{"id":"m1"}}"#,
                Status::Failed,
            ),
        ] {
            let Ok(Parsed::Batch(Batch { receipts: got, .. })) =
                Format.parse(body.as_bytes(), &read)
            else {
                panic!("not receipts: {body}");
            };
            assert_eq!(got.len(), 1, "{body}");
            assert_eq!(got[0].status, status, "{body}");
        }
        // A status the body names but no receipt has (`queued`) is not replaced either.
        let queued = br#"{"data":{"id":"m1","status":"queued"}}"#;
        let got = batch(queued, &read);
        assert!(got.receipts.is_empty());
        assert_eq!(got.ignored_statuses, vec!["queued"]);
    }

    /// The listener keeps `X-Webhook-Event` with the body: the format's parser reads it.
    #[test]
    fn the_format_reads_the_kept_event_header() {
        let body = br#"{"data":{"id":"m1"}}"#;
        let headers = testing::headers(&[("X-Webhook-Event", "message.read")]);
        assert_eq!(Format.kept_headers(), &[EVENT_HEADER]);
        assert!(Format.parse(body, &HeaderMap::new()).is_err());
        let Ok(Parsed::Batch(Batch { receipts, .. })) = Format.parse(body, &headers) else {
            panic!("not receipts");
        };
        assert_eq!(receipts.len(), 1);
        assert_eq!(receipts[0].status, Status::Read);
    }

    #[test]
    fn inbound_and_unrelated_events_give_no_receipts() {
        for (body, ignored) in [
            (
                r#"{"event":"message.received","data":{"id":"m1","direction":"inbound"}}"#,
                vec![],
            ),
            (
                r#"{"event":"message.sent","data":{"id":"m1","direction":"inbound"}}"#,
                vec![],
            ),
            (
                r#"{"event":"conversation.created","data":{"id":"c1"}}"#,
                vec![],
            ),
            (
                r#"{"event":"message.reaction","data":{"id":"m1"}}"#,
                vec!["reaction"],
            ),
            (r#"{"data":{"id":"m1","status":"queued"}}"#, vec!["queued"]),
        ] {
            let got = batch(body.as_bytes(), &HeaderMap::new());
            assert!(got.receipts.is_empty(), "{body}");
            assert_eq!(got.ignored_statuses, ignored, "{body}");
        }
    }

    fn batch(body: &[u8], headers: &HeaderMap) -> Batch {
        match Format.parse(body, headers).unwrap() {
            Parsed::Batch(batch) => batch,
            Parsed::Probe => panic!("whaapy has no probe"),
        }
    }

    fn one_inbound(body: &[u8], headers: &HeaderMap) -> Inbound {
        let mut got = batch(body, headers);
        assert!(
            got.receipts.is_empty() && got.unreadable.is_empty(),
            "{got:?}"
        );
        assert_eq!(got.inbound.len(), 1);
        got.inbound.remove(0)
    }

    /// Whaapy documents no payload, only the event name (`X-Webhook-Event: message.received`,
    /// and `"event": "message.received"` in its delivery logs): whatever the body holds is
    /// kept, and nothing in it is guessed at.
    #[test]
    fn message_received_is_one_unsupported_inbound_with_the_payload_in_raw() {
        let body = br#"{"event":"message.received","timestamp":"2026-01-22T10:31:00Z",
            "data":{"id":"in-1","from":"5215512345678","message":{"type":"text"}}}"#;
        let got = one_inbound(body, &HeaderMap::new());
        assert_eq!(
            got,
            Inbound {
                provider_message_id: "in-1".into(),
                from: None,
                user_id: None,
                profile_name: None,
                timestamp: None,
                content: Content::unsupported("Whaapy documents no inbound message payload"),
                context_id: None,
                sender: None,
                raw: json!({"id": "in-1", "from": "5215512345678", "message": {"type": "text"}}),
            }
        );
        assert_eq!(
            one_inbound(body, &HeaderMap::new()),
            got,
            "a retry is the same"
        );

        // Named only by the kept header, with no string `data.id`: the id is the body's hash.
        let received = testing::headers(&[("X-Webhook-Event", "message.received")]);
        for body in [
            r#"{"data":{"id":42,"text":"hola"}}"#,
            r#"{"data":{"conversation_id":"c1"}}"#,
            r#"{"conversation_id":"c1"}"#,
        ] {
            let got = one_inbound(body.as_bytes(), &received);
            let hash = format!(
                "sha256:{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()))
            );
            assert_eq!(got.provider_message_id, hash, "{body}");
            assert_eq!(one_inbound(body.as_bytes(), &received), got, "{body}");
            let root: Value = serde_json::from_str(body).unwrap();
            let raw = root.get("data").unwrap_or(&root);
            assert_eq!(&got.raw, raw, "{body}");
        }
    }

    /// The unsigned header cannot turn a signed receipt into a customer's message, nor the
    /// other way round.
    #[test]
    fn the_header_never_makes_or_unmakes_an_inbound_message() {
        let received = testing::headers(&[("X-Webhook-Event", "message.received")]);
        let status = br#"{"data":{"id":"m1","status":"delivered"}}"#;
        let got = batch(status, &received);
        assert!(got.inbound.is_empty());
        assert_eq!(got.receipts.len(), 1);
        let event = br#"{"event":"message.read","data":{"id":"m1"}}"#;
        assert!(batch(event, &received).inbound.is_empty());
        let read = testing::headers(&[("X-Webhook-Event", "message.read")]);
        let inbound = br#"{"event":"message.received","data":{"id":"in-1"}}"#;
        let got = batch(inbound, &read);
        assert_eq!((got.inbound.len(), got.receipts.len()), (1, 0));
    }

    #[test]
    fn render_inbound_then_parse_round_trips() {
        let inbound = Inbound {
            provider_message_id: "in-round".into(),
            from: None,
            user_id: None,
            profile_name: None,
            timestamp: None,
            content: Content::unsupported(UNDOCUMENTED),
            context_id: None,
            sender: None,
            raw: json!({"id": "in-round"}),
        };
        let body = Format.render_inbound(&inbound).unwrap();
        assert_eq!(one_inbound(&body, &HeaderMap::new()), inbound);
        // Signed the way Whaapy would, its event header agrees with the body.
        let headers = testing::signed(sign(&Secret::new(SECRET), &body, Utc::now()));
        assert_eq!(headers[EVENT_HEADER], RECEIVED_EVENT);
        assert_eq!(one_inbound(&body, &headers), inbound);
    }

    #[test]
    fn malformed_bodies_name_the_field() {
        let cases = [
            (r#"{"data":{"id":"m1"}}"#, "missing event"),
            (
                r#"{"event":"message.sent","data":{}}"#,
                "missing message id",
            ),
            (
                r#"{"event":"message.sent","data":{"id":{"x":1}}}"#,
                "data.id must be",
            ),
            (
                r#"{"event":"message.sent","data":"m1"}"#,
                "data must be an object",
            ),
            (
                r#"{"event":7,"data":{"id":"m1"}}"#,
                "event must be a string",
            ),
            (
                r#"{"event":"message.failed","data":{"id":"m1","error":5}}"#,
                "data.error",
            ),
            (
                r#"{"event":"message.sent","data":{"id":"m1","timestamp":[]}}"#,
                "data.timestamp",
            ),
        ];
        for (body, needle) in cases {
            let err = parse(body.as_bytes()).unwrap_err();
            assert!(err.0.contains(needle), "{body}: {err}");
        }
        for body in testing::hostile_bodies() {
            assert!(parse(&body).is_err());
        }
    }

    #[test]
    fn render_then_parse_round_trips_every_status() {
        for status in [
            Status::Sent,
            Status::Delivered,
            Status::Read,
            Status::Failed,
        ] {
            let receipt = Receipt {
                provider_message_id: "m-round".into(),
                status,
                job_id: None,
                error: (status == Status::Failed).then(|| ReceiptError {
                    code: Some("132000".into()),
                    message: "template params".into(),
                }),
                occurred_at: Some(Utc.timestamp_opt(1_790_000_000, 0).unwrap()),
                sender: None,
            };
            assert_eq!(receipts(&render(&receipt)), vec![receipt]);
        }
    }

    #[test]
    fn good_signature_passes_and_sign_round_trips() {
        let secret = Secret::new(SECRET);
        let body = FIXTURE.as_bytes();
        let now = Utc.with_ymd_and_hms(2026, 1, 22, 10, 31, 0).unwrap();
        let headers = testing::signed(sign(&secret, body, now));
        assert_eq!(verify(&secret, &request(&headers, body)), Ok(()));
        assert_eq!(headers[EVENT_HEADER], "message.failed");
        assert_eq!(headers[TIMESTAMP_HEADER], now.timestamp().to_string());
        assert!(headers.contains_key(ID_HEADER));
        let digest = hmac_sha256_hex(SECRET.as_bytes(), body);
        let prefixed = testing::headers(&[("X-Webhook-Signature", &format!("sha256={digest}"))]);
        assert_eq!(verify(&secret, &request(&prefixed, body)), Ok(()));
    }

    #[test]
    fn bad_or_missing_signatures_fail() {
        let secret = Secret::new(SECRET);
        let body = FIXTURE.as_bytes();
        let now = Utc::now();
        let mismatch = Err(AuthError::Mismatch("X-Webhook-Signature"));
        let other = testing::signed(sign(&Secret::new("other"), body, now));
        assert_eq!(verify(&secret, &request(&other, body)), mismatch);
        let signed = testing::signed(sign(&secret, body, now));
        assert_eq!(
            verify(&secret, &request(&signed, b"{\"event\":\"x\"}")),
            mismatch
        );
        let garbage = testing::headers(&[("X-Webhook-Signature", "not-hex")]);
        assert_eq!(verify(&secret, &request(&garbage, body)), mismatch);
        let none = HeaderMap::new();
        assert_eq!(
            verify(&secret, &request(&none, body)),
            Err(AuthError::Missing("X-Webhook-Signature"))
        );
        assert_eq!(
            verify(&Secret::new(""), &request(&signed, body)),
            Err(AuthError::NotConfigured)
        );
    }
}
