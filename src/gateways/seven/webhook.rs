//! seven.io's webhooks, per the seven.io section of `shared/providers/RECEIPTS.md`.
//!
//! - **Auth**: headers `X-Signature`, `X-Timestamp`, `X-Nonce`; the signature is hex
//!   HMAC-SHA256(signing key, `timestamp \n nonce \n METHOD \n full URL \n hex MD5(body)`).
//!   The signature is checked first, then the timestamp against `now` with [`MAX_SKEW`] either
//!   way, so [`AuthError::Stale`] means "authentic but old": a replay or a wrong clock.
//! - **Body** (the WhatsApp JSON is unknown; this is the documented SMS/RCS analogue):
//!   `{"webhook_event","webhook_timestamp","data":{"msg_id" (or "id"),"status","timestamp",
//!   "foreign_id",…}}`. `data` may also be an array of such objects, read item by item: one
//!   that cannot be read is listed in [`Batch::unreadable`] and its neighbours are still read.
//!   `foreign_id` (what the send put there) becomes the receipt's `job_id`.
//! - **Inbound** (<https://help.seven.io/en/whatsapp/setup-whatsapp-webhooks>, one "typical"
//!   example, which "may vary"): a body whose `event` (or `webhook_event`) is `wa_mo` is a
//!   customer's message, flat and without `data`: `from` (the customer's digits), `to` (the
//!   business number, the channel's `sender`), `timestamp` (ISO) and `message{type,text}`.
//!   Type `text` is `message.text`; no other type's fields are documented, so every other
//!   type is `unsupported`, and so is a `wa_mo` without a `message` object. The whole body is
//!   the item in `raw`. The payload has no sender name nor quoted message, and no message id:
//!   the id is `sha256:` and the hex SHA-256 of the body (`body_id` says why).
//! - **Assumptions**: `X-Timestamp` is unix seconds; the event name is not relied on for
//!   receipts (only `data.status` is), so a `data` without `status`, or with `direction:
//!   "inbound"`, is not a receipt; statuses are matched case-insensitively by [`STATUSES`],
//!   and other words are listed in [`Batch::ignored_statuses`]; the report's time is
//!   `data.timestamp`, else `webhook_timestamp`; a failure's code and text are
//!   `error_code`/`error` and `error_message`/`error_text`, and when there are none the status
//!   word itself (`expired`, `rejected`) is kept as the message unless it is plain `failed`.

use chrono::{DateTime, Utc};
use md5::{Digest, Md5};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::config::Secret;
use crate::gateways::webhook::fields::{self, Object};
use crate::gateways::webhook::{
    AuthError, Batch, Inbound, ParseError, Parsed, Receipt, ReceiptError, WebhookFormat,
    WebhookRequest, hmac_sha256_hex,
};
use crate::inbound::{self, Content};
use crate::outcome::Status;

/// The signature header (lower case, as `HeaderName` wants it).
pub const SIGNATURE_HEADER: &str = "x-signature";
/// The signed timestamp header (unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-timestamp";
/// The signed nonce header.
pub const NONCE_HEADER: &str = "x-nonce";

/// The clock skew seven.io tolerates, either way (seconds).
pub const MAX_SKEW: i64 = 300;

/// seven.io's status words (SMS DLR vocabulary plus WhatsApp's `read`). Intermediate ones
/// (`buffered`, `unknown`) and anything else are skipped.
pub const STATUSES: &[(&str, Status)] = &[
    ("sent", Status::Sent),
    ("transmitted", Status::Sent),
    ("accepted", Status::Sent),
    ("delivered", Status::Delivered),
    ("read", Status::Read),
    ("seen", Status::Read),
    ("failed", Status::Failed),
    ("notdelivered", Status::Failed),
    ("rejected", Status::Failed),
    ("expired", Status::Failed),
];

/// The status word that needs no explanation of its own.
const PLAIN_FAILED: &str = "failed";

/// The event of a customer's WhatsApp message.
const WA_MO: &str = "wa_mo";

/// The one inbound type seven.io documents.
const TEXT: &str = "text";

/// The string seven.io signs for a request.
fn signed_string(timestamp: &str, nonce: &str, method: &str, url: &str, body: &[u8]) -> String {
    let body_md5 = hex::encode(Md5::digest(body));
    format!(
        "{timestamp}\n{nonce}\n{}\n{url}\n{body_md5}",
        method.to_ascii_uppercase()
    )
}

/// Read the receipts or the customer's message in a webhook body. Only a body that is not a
/// JSON object, whose envelope cannot be read, or whose single `data` object cannot be read
/// fails as a whole; an item of a `data` array that cannot be read is listed in
/// [`Batch::unreadable`].
pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let root = fields::body_object(body)?;
    // Before `data`: the documented `wa_mo` body has none, and must not be refused for it.
    if is_wa_mo(&root) {
        return Ok(Parsed::Batch(Batch {
            inbound: vec![message(&root, body)?],
            ..Batch::default()
        }));
    }
    let sent_at = fields::opt_timestamp(&root, "webhook_timestamp", "")?;
    let mut batch = Batch::default();
    let mut add = |report: Report| match report {
        Report::Receipt(receipt) => batch.receipts.push(receipt),
        Report::Ignored(word) => batch.ignored_statuses.push(word),
        Report::Nothing => {}
    };
    match root.get("data") {
        Some(Value::Object(data)) => add(item(data, "data", sent_at)?),
        Some(Value::Array(items)) => {
            let mut unreadable = Vec::new();
            for (i, value) in items.iter().enumerate() {
                let at = format!("data[{i}]");
                match fields::as_object(value, &at).and_then(|data| item(data, &at, sent_at)) {
                    Ok(report) => add(report),
                    Err(e) => unreadable.push(e),
                }
            }
            batch.unreadable = unreadable;
        }
        None | Some(Value::Null) => return Err(ParseError("missing data".into())),
        Some(other) => {
            return Err(ParseError(format!(
                "data must be an object or an array, not a JSON {}",
                fields::kind(other)
            )));
        }
    }
    Ok(Parsed::Batch(batch))
}

/// Whether the body is a customer's WhatsApp message: `event` (the help centre's key) or
/// `webhook_event` (the key of seven.io's other webhooks) is `wa_mo`. Read leniently: a
/// receipt body is not refused for an odd `event` that nothing else reads.
fn is_wa_mo(root: &Object) -> bool {
    ["event", "webhook_event"]
        .iter()
        .any(|key| root.get(*key).and_then(Value::as_str) == Some(WA_MO))
}

/// The id of a `wa_mo` body, which has none of its own: `sha256:` and the hex SHA-256 of the
/// raw body. A retry is assumed to repeat the body byte for byte (seven.io documents nothing
/// in it that would change; only the signature headers are per delivery), so it yields the
/// same id, and hence the same inbound event id. The limit of an id-less payload: the same
/// text from the same number within the same `timestamp` second would share an id.
/// `X-Nonce` is no substitute: it is new on every delivery.
fn body_id(body: &[u8]) -> String {
    fields::content_id(body)
}

/// A `wa_mo` body as a customer's message. Only a documented field of the wrong type makes it
/// unreadable; content mensajero cannot read is published as `unsupported`, with the body in
/// `raw`.
fn message(root: &Object, body: &[u8]) -> Result<Inbound, ParseError> {
    let from = fields::opt_text(root, "from", "")?;
    let content = match fields::opt_object(root, "message", "")? {
        Some(message) => content(message, fields::opt_str(message, "type", "message")?),
        None => Content::unsupported("seven.io wa_mo without a message object"),
    };
    Ok(Inbound {
        provider_message_id: body_id(body),
        from: from.as_deref().and_then(inbound::e164),
        user_id: None,
        profile_name: None,
        timestamp: fields::opt_timestamp(root, "timestamp", "")?,
        content,
        context_id: None,
        sender: fields::opt_text(root, "to", "")?,
        raw: Value::Object(root.clone()),
    })
}

/// The content of a `wa_mo` `message` of type `kind`.
fn content(message: &Object, kind: Option<&str>) -> Content {
    match kind.unwrap_or("") {
        "" => Content::unsupported("the message has no type"),
        TEXT => match message.get("text").and_then(Value::as_str) {
            Some(text) => Content::Text(inbound::Text {
                body: text.to_owned(),
            }),
            None => Content::unsupported("seven.io text message without message.text"),
        },
        other => Content::unsupported(format!(
            "seven.io documents no inbound `{}` format",
            fields::preview(other)
        )),
    }
}

/// What one `data` object reports.
enum Report {
    /// A status we track.
    Receipt(Receipt),
    /// A status word we do not track.
    Ignored(String),
    /// No status at all (another event, or an inbound SMS).
    Nothing,
}

fn item(data: &Object, at: &str, sent_at: Option<DateTime<Utc>>) -> Result<Report, ParseError> {
    if fields::opt_str(data, "direction", at)?.is_some_and(|d| d.eq_ignore_ascii_case("inbound")) {
        return Ok(Report::Nothing);
    }
    let Some(word) = fields::opt_str(data, "status", at)? else {
        tracing::debug!(at, "seven.io webhook without a status: not a status report");
        return Ok(Report::Nothing);
    };
    let id = match fields::opt_text(data, "msg_id", at)? {
        Some(id) => id,
        None => fields::opt_text(data, "id", at)?
            .ok_or_else(|| ParseError(format!("missing {at}.msg_id (or {at}.id)")))?,
    };
    let occurred_at = fields::opt_timestamp(data, "timestamp", at)?.or(sent_at);
    let job_id = fields::opt_text(data, "foreign_id", at)?;
    let Some(status) = fields::lookup(STATUSES, word) else {
        tracing::debug!(status = %fields::preview(word), at, "seven.io status skipped");
        return Ok(Report::Ignored(fields::preview(word)));
    };
    let error = match status {
        Status::Failed => error(data, at, word)?,
        _ => None,
    };
    Ok(Report::Receipt(Receipt {
        provider_message_id: id,
        status,
        job_id,
        error,
        occurred_at,
        sender: None,
    }))
}

fn error(data: &Object, at: &str, word: &str) -> Result<Option<ReceiptError>, ParseError> {
    let code = match fields::opt_text(data, "error_code", at)? {
        Some(code) => Some(code),
        None => fields::opt_text(data, "error", at)?,
    };
    let message = match fields::opt_str(data, "error_message", at)? {
        Some(message) => Some(message),
        None => fields::opt_str(data, "error_text", at)?,
    };
    Ok(match (code, message) {
        (code, Some(message)) => Some(ReceiptError {
            code,
            message: message.to_owned(),
        }),
        (Some(code), None) => Some(ReceiptError {
            message: format!("seven.io error {code}"),
            code: Some(code),
        }),
        // `expired` or `rejected` says more than nothing; plain `failed` says nothing.
        (None, None) if !word.eq_ignore_ascii_case(PLAIN_FAILED) => Some(ReceiptError {
            code: None,
            message: format!("seven.io status {}", fields::preview(word)),
        }),
        (None, None) => None,
    })
}

/// A webhook body holding `receipt`, in the shape this parser assumes.
pub fn render(receipt: &Receipt) -> Vec<u8> {
    let mut data = json!({
        "msg_id": receipt.provider_message_id,
        "status": receipt.status.as_str(),
    });
    if let Some(at) = receipt.occurred_at {
        data["timestamp"] = json!(at.timestamp().to_string());
    }
    if let Some(job_id) = &receipt.job_id {
        data["foreign_id"] = json!(job_id);
    }
    if let Some(error) = &receipt.error {
        data["error_code"] = json!(error.code);
        data["error_message"] = json!(error.message);
    }
    let mut body = json!({"webhook_event": "dlr", "data": data});
    if let Some(at) = receipt.occurred_at {
        body["webhook_timestamp"] = json!(at.timestamp());
    }
    body.to_string().into_bytes()
}

/// A `wa_mo` body holding `inbound`, in the help centre's shape. Its id cannot be rendered:
/// the parser derives it from the body (`body_id`). Text is rendered as documented; any
/// other content gets only its type word, which seven.io documents no format for, so it reads
/// back as `unsupported`.
pub fn render_inbound(inbound: &Inbound) -> Vec<u8> {
    let kind = inbound.content.kind().as_str();
    let mut message = json!({ "type": kind });
    if let Content::Text(text) = &inbound.content {
        message["text"] = json!(text.body);
    }
    let mut body = json!({ "event": WA_MO });
    if let Some(from) = &inbound.from {
        body["from"] = json!(from.trim_start_matches('+'));
    }
    if let Some(to) = &inbound.sender {
        body["to"] = json!(to);
    }
    if let Some(at) = inbound.timestamp {
        body["timestamp"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    }
    body["message"] = message;
    body.to_string().into_bytes()
}

/// seven.io's webhook format.
pub struct Format;

impl WebhookFormat for Format {
    /// Check `X-Signature` over the request, then the freshness of `X-Timestamp` against `now`.
    fn verify(
        &self,
        secret: &Secret,
        request: &WebhookRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        let key = fields::secret_bytes(secret)?;
        let text = |header: &'static str, name: &'static str| -> Result<&str, AuthError> {
            request
                .headers
                .get(header)
                .ok_or(AuthError::Missing(name))?
                .to_str()
                .map_err(|_| AuthError::Mismatch(name))
        };
        let signature = request
            .headers
            .get(SIGNATURE_HEADER)
            .ok_or(AuthError::Missing("X-Signature"))?
            .as_bytes();
        let timestamp = text(TIMESTAMP_HEADER, "X-Timestamp")?;
        let nonce = text(NONCE_HEADER, "X-Nonce")?;
        let message = signed_string(timestamp, nonce, request.method, request.url, request.body);
        if !fields::hex_matches(&hmac_sha256_hex(key, message.as_bytes()), signature) {
            return Err(AuthError::Mismatch("X-Signature"));
        }
        let sent_at: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| AuthError::Mismatch("X-Timestamp"))?;
        if now.timestamp().abs_diff(sent_at) > MAX_SKEW.unsigned_abs() {
            return Err(AuthError::Stale);
        }
        Ok(())
    }

    fn parse(&self, body: &[u8], _headers: &HeaderMap) -> Result<Parsed, ParseError> {
        parse(body)
    }

    fn render(&self, receipt: &Receipt) -> Vec<u8> {
        render(receipt)
    }

    fn render_inbound(&self, inbound: &Inbound) -> Option<Vec<u8>> {
        Some(render_inbound(inbound))
    }

    /// The `X-Signature`, `X-Timestamp` and `X-Nonce` headers for `body` sent as `method` to `url`
    /// at `now`, with a fresh random nonce.
    fn sign(
        &self,
        secret: &Secret,
        method: &str,
        url: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let timestamp = now.timestamp().to_string();
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let message = signed_string(&timestamp, &nonce, method, url, body);
        let signature = hmac_sha256_hex(secret.expose().as_bytes(), message.as_bytes());
        [
            fields::header(SIGNATURE_HEADER, &signature, false),
            fields::header(TIMESTAMP_HEADER, &timestamp, false),
            fields::header(NONCE_HEADER, &nonce, false),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use reqwest::header::HeaderMap;

    use super::*;
    use crate::gateways::webhook::fields::testing;

    const KEY: &str = "seven-signing-key";
    const URL: &str = "https://hooks.example.com/webhooks/seven-de?x=1";

    /// The SMS DLR shape of RECEIPTS.md with RCS's `foreign_id`, as assumed for WhatsApp.
    const FIXTURE: &str = r#"{
      "webhook_event": "dlr",
      "webhook_timestamp": "2026-05-04 12:00:09",
      "data": {
        "msg_id": "77230918311",
        "status": "NOTDELIVERED",
        "timestamp": "1777896005",
        "foreign_id": "ord-1847-confirm",
        "error_code": "7002001",
        "error_message": "No open conversation"
      }
    }"#;

    /// The `wa_mo` example of help.seven.io/en/whatsapp/setup-whatsapp-webhooks, verbatim.
    const WA_MO_EXAMPLE: &str = r#"{
"event": "wa_mo",
"from": "491701234567",
"to": "491709876543",
"timestamp": "2026-01-15T10:30:00Z",
"message": {
"type": "text",
"text": "Hello, I have a question about my order."
}
}"#;

    fn batch(body: &[u8]) -> Batch {
        match parse(body).unwrap() {
            Parsed::Batch(batch) => batch,
            Parsed::Probe => panic!("seven.io has no probe"),
        }
    }

    fn receipts(body: &[u8]) -> Vec<Receipt> {
        batch(body).receipts
    }

    fn one_inbound(body: &[u8]) -> Inbound {
        let mut got = batch(body);
        assert!(
            got.receipts.is_empty() && got.unreadable.is_empty(),
            "{got:?}"
        );
        assert_eq!(got.inbound.len(), 1);
        got.inbound.remove(0)
    }

    fn request<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> WebhookRequest<'a> {
        WebhookRequest {
            method: "POST",
            url: URL,
            headers,
            query: Some("x=1"),
            body,
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_777_896_010, 0).unwrap()
    }

    #[test]
    fn fixture_gives_the_exact_receipt() {
        assert_eq!(
            receipts(FIXTURE.as_bytes()),
            vec![Receipt {
                provider_message_id: "77230918311".into(),
                status: Status::Failed,
                job_id: Some("ord-1847-confirm".into()),
                error: Some(ReceiptError {
                    code: Some("7002001".into()),
                    message: "No open conversation".into(),
                }),
                occurred_at: Some(Utc.timestamp_opt(1_777_896_005, 0).unwrap()),
                sender: None,
            }]
        );
    }

    #[test]
    fn statuses_map_tolerantly() {
        let cases = [
            ("transmitted", Some(Status::Sent)),
            ("ACCEPTED", Some(Status::Sent)),
            ("Delivered", Some(Status::Delivered)),
            ("seen", Some(Status::Read)),
            ("rejected", Some(Status::Failed)),
            ("expired", Some(Status::Failed)),
            ("buffered", None),
            ("UNKNOWN", None),
        ];
        for (word, expected) in cases {
            let body = format!(r#"{{"webhook_event":"dlr","data":{{"id":42,"status":"{word}"}}}}"#);
            let got = receipts(body.as_bytes());
            assert_eq!(got.first().map(|r| r.status), expected, "{word}");
            if let Some(receipt) = got.first() {
                assert_eq!(receipt.provider_message_id, "42");
            }
        }
        let body = br#"{"data":{"msg_id":"1","status":"expired"}}"#;
        assert_eq!(
            receipts(body)[0].error,
            Some(ReceiptError {
                code: None,
                message: "seven.io status expired".into()
            })
        );
    }

    #[test]
    fn event_time_falls_back_to_the_webhook_time() {
        let body =
            br#"{"webhook_timestamp":"2026-05-04 12:00:09","data":{"msg_id":"1","status":"sent"}}"#;
        assert_eq!(
            receipts(body)[0].occurred_at,
            Some(Utc.with_ymd_and_hms(2026, 5, 4, 12, 0, 9).unwrap())
        );
    }

    #[test]
    fn inbound_and_unrelated_events_give_no_receipts() {
        for body in [
            r#"{"webhook_event":"sms_mo","data":{"id":"5","sender":"49170","text":"hi"}}"#,
            r#"{"webhook_event":"whatsapp","data":{"id":"5","status":"delivered","direction":"inbound"}}"#,
            r#"{"webhook_event":"tracking","data":{"id":"5"}}"#,
            r#"{"webhook_event":"dlr","data":[]}"#,
        ] {
            assert!(receipts(body.as_bytes()).is_empty(), "{body}");
        }
    }

    #[test]
    fn arrays_of_reports_are_read() {
        let body = br#"{"webhook_event":"dlr","data":[
            {"msg_id":"1","status":"delivered"},{"msg_id":"2","status":"read"}]}"#;
        let got = receipts(body);
        assert_eq!(
            got.iter()
                .map(|r| (r.provider_message_id.as_str(), r.status))
                .collect::<Vec<_>>(),
            vec![("1", Status::Delivered), ("2", Status::Read)]
        );
    }

    #[test]
    fn malformed_bodies_name_the_field() {
        let cases = [
            (r#"{"webhook_event":"dlr"}"#, "missing data"),
            (r#"{"data":"x"}"#, "data must be an object or an array"),
            (
                r#"{"data":{"status":"delivered"}}"#,
                "missing data.msg_id (or data.id)",
            ),
            (
                r#"{"data":{"msg_id":true,"status":"delivered"}}"#,
                "data.msg_id must be",
            ),
            (
                r#"{"data":{"msg_id":"1","status":[]}}"#,
                "data.status must be a string",
            ),
            (
                r#"{"data":{"msg_id":"1","status":"sent","timestamp":"x"}}"#,
                "data.timestamp",
            ),
            (r#"{"webhook_timestamp":{},"data":{}}"#, "webhook_timestamp"),
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
    fn a_malformed_report_in_an_array_spoils_only_itself() {
        let cases = [
            ("5", "data[0] must be an object"),
            (
                r#"{"status":"sent"}"#,
                "missing data[0].msg_id (or data[0].id)",
            ),
            (
                r#"{"msg_id":"1","status":[]}"#,
                "data[0].status must be a string",
            ),
            (
                r#"{"msg_id":"1","status":"sent","timestamp":"491701234567x"}"#,
                "data[0].timestamp",
            ),
        ];
        for (item, needle) in cases {
            let body = format!(
                r#"{{"webhook_event":"dlr","data":[{item},{{"msg_id":"2","status":"read"}},
                {{"msg_id":"3","status":"buffered"}}]}}"#
            );
            let got = batch(body.as_bytes());
            assert_eq!(got.unreadable.len(), 1, "{item}");
            assert!(
                got.unreadable[0].0.contains(needle),
                "{item}: {:?}",
                got.unreadable
            );
            assert!(
                !got.unreadable[0].0.contains("4917"),
                "{:?}",
                got.unreadable
            );
            assert_eq!(got.receipts.len(), 1, "{item}: the good neighbour is kept");
            assert_eq!(got.receipts[0].provider_message_id, "2");
            assert_eq!(got.ignored_statuses, vec!["buffered"]);
        }
    }

    #[test]
    fn the_documented_wa_mo_is_the_expected_inbound() {
        let body = WA_MO_EXAMPLE.as_bytes();
        let got = one_inbound(body);
        assert_eq!(
            got,
            Inbound {
                provider_message_id: format!(
                    "sha256:{}",
                    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                        WA_MO_EXAMPLE.as_bytes()
                    ))
                ),
                from: Some("+491701234567".into()),
                user_id: None,
                profile_name: None,
                timestamp: Utc.with_ymd_and_hms(2026, 1, 15, 10, 30, 0).single(),
                content: Content::Text(inbound::Text {
                    body: "Hello, I have a question about my order.".into()
                }),
                context_id: None,
                sender: Some("491709876543".into()),
                raw: serde_json::from_str(WA_MO_EXAMPLE).unwrap(),
            }
        );
        assert!(got.provider_message_id.starts_with("sha256:"));
        assert_eq!(got.provider_message_id.len(), "sha256:".len() + 64);
        // A retry (same body) names the same message; another message does not.
        assert_eq!(
            one_inbound(body).provider_message_id,
            got.provider_message_id
        );
        let other = WA_MO_EXAMPLE.replace("10:30:00", "10:31:00");
        assert_ne!(
            one_inbound(other.as_bytes()).provider_message_id,
            got.provider_message_id
        );
    }

    #[test]
    fn other_wa_mo_shapes_are_unsupported_not_refused() {
        let cases = [
            (
                r#"{"event":"wa_mo","from":"491701234567","message":{"type":"image","image":{}}}"#,
                "seven.io documents no inbound `image` format",
            ),
            (
                r#"{"event":"wa_mo","from":"491701234567","message":{"type":"text"}}"#,
                "seven.io text message without message.text",
            ),
            (
                r#"{"event":"wa_mo","message":{}}"#,
                "the message has no type",
            ),
            // The envelope of seven.io's other webhooks: its `data` fields are not documented
            // for WhatsApp, so nothing is read from them.
            (
                r#"{"webhook_event":"wa_mo","data":{"id":"1","sender":"491701234567"}}"#,
                "seven.io wa_mo without a message object",
            ),
        ];
        for (body, reason) in cases {
            let got = one_inbound(body.as_bytes());
            assert_eq!(got.content, Content::unsupported(reason), "{body}");
            assert_eq!(got.raw, serde_json::from_str::<Value>(body).unwrap());
        }
        let err = parse(br#"{"event":"wa_mo","from":{"n":"491701234567"}}"#).unwrap_err();
        assert!(err.0.contains("from must be"), "{err}");
        assert!(!err.0.contains("4917"), "{err}");
        // An `event` of another type is not refused: receipts do not read it.
        let body = br#"{"event":5,"data":{"msg_id":"1","status":"read"}}"#;
        assert_eq!(receipts(body).len(), 1);
    }

    #[test]
    fn render_inbound_then_parse_round_trips_text() {
        let text = Inbound {
            provider_message_id: String::new(),
            from: Some("+491701234567".into()),
            user_id: None,
            profile_name: None,
            timestamp: Some(now()),
            content: Content::Text(inbound::Text {
                body: "hallo".into(),
            }),
            context_id: None,
            sender: Some("491709876543".into()),
            raw: Value::Null,
        };
        let body = Format.render_inbound(&text).unwrap();
        let mut read = one_inbound(&body);
        assert_eq!(read.provider_message_id, body_id(&body));
        read.provider_message_id = String::new();
        read.raw = Value::Null;
        assert_eq!(read, text);

        let image = Inbound {
            content: Content::Image(inbound::Media::default()),
            ..text.clone()
        };
        let mut read = one_inbound(&render_inbound(&image));
        read.provider_message_id = String::new();
        read.raw = Value::Null;
        assert_eq!(
            read,
            Inbound {
                content: Content::unsupported("seven.io documents no inbound `image` format"),
                ..text
            }
        );
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
                provider_message_id: "1234567".into(),
                status,
                job_id: Some("job-7".into()),
                error: (status == Status::Failed).then(|| ReceiptError {
                    code: Some("7002001".into()),
                    message: "No open conversation".into(),
                }),
                occurred_at: Some(now()),
                sender: None,
            };
            assert_eq!(receipts(&render(&receipt)), vec![receipt]);
        }
    }

    #[test]
    fn good_signature_passes_and_sign_round_trips() {
        let secret = Secret::new(KEY);
        let body = FIXTURE.as_bytes();
        let headers = testing::signed(Format.sign(&secret, "POST", URL, body, now()));
        assert_eq!(
            Format.verify(&secret, &request(&headers, body), now()),
            Ok(())
        );
        // Independently computed, with the skew at its limits.
        let ts = now().timestamp().to_string();
        let md5 = hex::encode(Md5::digest(body));
        let text = format!("{ts}\nn0nce\nPOST\n{URL}\n{md5}");
        let signature = hmac_sha256_hex(KEY.as_bytes(), text.as_bytes());
        let manual = testing::headers(&[
            ("X-Signature", &signature),
            ("X-Timestamp", &ts),
            ("X-Nonce", "n0nce"),
        ]);
        for skew in [-MAX_SKEW, 0, MAX_SKEW] {
            let at = now() + Duration::seconds(skew);
            assert_eq!(
                Format.verify(&secret, &request(&manual, body), at),
                Ok(()),
                "{skew}"
            );
        }
    }

    #[test]
    fn bad_missing_and_stale_signatures_fail() {
        let secret = Secret::new(KEY);
        let body = FIXTURE.as_bytes();
        let signed = testing::signed(Format.sign(&secret, "POST", URL, body, now()));
        let mismatch = Err(AuthError::Mismatch("X-Signature"));
        let other = testing::signed(Format.sign(&Secret::new("other"), "POST", URL, body, now()));
        assert_eq!(
            Format.verify(&secret, &request(&other, body), now()),
            mismatch
        );
        assert_eq!(
            Format.verify(&secret, &request(&signed, b"{}"), now()),
            mismatch
        );
        let mut wrong_url = request(&signed, body);
        wrong_url.url = "https://hooks.example.com/webhooks/seven-de";
        assert_eq!(Format.verify(&secret, &wrong_url, now()), mismatch);
        let mut wrong_method = request(&signed, body);
        wrong_method.method = "PUT";
        assert_eq!(Format.verify(&secret, &wrong_method, now()), mismatch);
        for stale in [MAX_SKEW + 1, -(MAX_SKEW + 1), 86_400] {
            let at = now() + Duration::seconds(stale);
            assert_eq!(
                Format.verify(&secret, &request(&signed, body), at),
                Err(AuthError::Stale),
                "{stale}"
            );
        }
        for (missing, name) in [
            (SIGNATURE_HEADER, "X-Signature"),
            (TIMESTAMP_HEADER, "X-Timestamp"),
            (NONCE_HEADER, "X-Nonce"),
        ] {
            let mut headers = signed.clone();
            headers.remove(missing);
            assert_eq!(
                Format.verify(&secret, &request(&headers, body), now()),
                Err(AuthError::Missing(name))
            );
        }
        assert_eq!(
            Format.verify(&Secret::new(""), &request(&signed, body), now()),
            Err(AuthError::NotConfigured)
        );
    }
}
