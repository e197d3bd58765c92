//! Waspy's webhooks (also the format of the in-process `mock` gateway), per the Waspy section
//! of `shared/providers/RECEIPTS.md` and SPEC §6.
//!
//! - **Auth**: Waspy documents no signature scheme, so the channel's webhook secret is sent
//!   back verbatim, in header `X-Webhook-Secret` or query parameter `secret` (the header wins
//!   when both are present), and compared in constant time.
//! - **Body**: `{"event","webhookId","deliveredAt","attempt","data":{"id","status",
//!   "waMessageId","errorCode","errorMessage","direction",…}}`. The outbound status event
//!   names are unknown, so `event` is not read for receipts: a body is a receipt when
//!   `data.status` is one of `sent|delivered|read|failed`, correlated by `data.id` (the id of
//!   the send answer). `queued` and other words are listed in [`Batch::ignored_statuses`].
//! - **Inbound** (<https://docs.waspytech.com/webhooks/events>, one text example): `event:
//!   "message.received"` with `data.direction: "inbound"` is a customer's message, checked
//!   before the status because it carries `status: "delivered"`. Its id is `data.id` (Waspy's
//!   UUID, as stable across retries as the event id needs), the customer is
//!   `data.contact.{phoneNumber,name}`, the time `data.createdAt`, the business number
//!   `data.phoneNumberId` (the channel's `sender`) and the item in `raw` is `data`. Type `text`
//!   is `data.content.body` (or `data.content.text.body`, the shape of `GET /messages/{id}`);
//!   Waspy documents no other type, nor a quoted-message field, so every other type is
//!   `unsupported` and there is no `context_id`. An inbound `direction` under another event
//!   carries nothing.
//! - **Assumptions** (documented nowhere): a `data` without `status` is another kind of event
//!   (conversation, contact) and carries no receipt; the time of the report is `data.updatedAt`
//!   when present, else the envelope's `deliveredAt` (when Waspy sent the webhook, which is at
//!   or just after the change); `errorCode`/`errorMessage` explain a `failed`.
//! - `attempt` shows Waspy retries deliveries: duplicates are expected downstream.

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::config::Secret;
use crate::gateways::webhook::fields::{self, Object};
use crate::gateways::webhook::{
    AuthError, Batch, Inbound, ParseError, Parsed, Receipt, ReceiptError, WebhookFormat,
    WebhookRequest, constant_time_eq,
};
use crate::inbound::{self, Content};
use crate::outcome::Status;

/// The header carrying the channel's webhook secret (lower case, as `HeaderName` wants it).
pub const SECRET_HEADER: &str = "x-webhook-secret";

/// The query parameter carrying it when the gateway cannot set headers.
pub const SECRET_PARAM: &str = "secret";

/// Waspy's status words that are receipts; `queued` (and anything unknown) is skipped.
pub const STATUSES: &[(&str, Status)] = &[
    ("sent", Status::Sent),
    ("delivered", Status::Delivered),
    ("read", Status::Read),
    ("failed", Status::Failed),
];

/// The `direction` of a customer's message.
const INBOUND: &str = "inbound";

/// The event of a customer's message.
const RECEIVED_EVENT: &str = "message.received";

/// The one inbound type Waspy documents.
const TEXT: &str = "text";

/// Check the shared secret in `X-Webhook-Secret` or `?secret=`.
pub fn verify(secret: &Secret, request: &WebhookRequest<'_>) -> Result<(), AuthError> {
    let expected = fields::secret_bytes(secret)?;
    let matches = match request.headers.get(SECRET_HEADER) {
        Some(header) => constant_time_eq(header.as_bytes(), expected),
        None => match request
            .query
            .and_then(|query| fields::query_param(query, SECRET_PARAM))
        {
            Some(param) => constant_time_eq(param.as_bytes(), expected),
            None => {
                return Err(AuthError::Missing(
                    "X-Webhook-Secret header or secret parameter",
                ));
            }
        },
    };
    if matches {
        Ok(())
    } else {
        Err(AuthError::Mismatch("webhook secret"))
    }
}

/// Read the receipt or the customer's message, if any, in a webhook body. A body holds one
/// item, so anything unreadable in it fails the body as a whole.
pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let root = fields::body_object(body)?;
    let data =
        fields::opt_object(&root, "data", "")?.ok_or_else(|| ParseError("missing data".into()))?;
    // Before the status: an inbound message carries `status: "delivered"` too.
    if fields::opt_str(data, "direction", "data")? == Some(INBOUND) {
        if fields::opt_str(&root, "event", "")? != Some(RECEIVED_EVENT) {
            tracing::debug!("waspy inbound-direction event other than message.received skipped");
            return Ok(Parsed::Batch(Batch::default()));
        }
        return Ok(Parsed::Batch(Batch {
            inbound: vec![message(data)?],
            ..Batch::default()
        }));
    }
    let Some(word) = fields::opt_str(data, "status", "data")? else {
        tracing::debug!("waspy webhook without data.status: not a message status");
        return Ok(Parsed::Batch(Batch::default()));
    };
    let id = fields::req_str(data, "id", "data")?;
    let occurred_at = match fields::opt_timestamp(data, "updatedAt", "data")? {
        Some(at) => Some(at),
        None => fields::opt_timestamp(&root, "deliveredAt", "")?,
    };
    let code = fields::opt_text(data, "errorCode", "data")?;
    let message = fields::opt_str(data, "errorMessage", "data")?;
    let Some(status) = fields::lookup(STATUSES, word) else {
        tracing::debug!(status = %fields::preview(word), "waspy status skipped");
        return Ok(Parsed::Batch(Batch {
            ignored_statuses: vec![fields::preview(word)],
            ..Batch::default()
        }));
    };
    let explained = code.is_some() || message.is_some();
    let error = (status == Status::Failed && explained).then(|| ReceiptError {
        code,
        message: message.map_or_else(|| "Waspy gave no message".to_owned(), str::to_owned),
    });
    Ok(Parsed::receipts(vec![Receipt {
        provider_message_id: id.to_owned(),
        status,
        job_id: None,
        error,
        occurred_at,
        sender: None,
    }]))
}

/// A customer's message: the `data` of a `message.received` event. Only a missing `data.id`
/// or a documented field of the wrong type makes it unreadable; content mensajero cannot
/// read is published as `unsupported`, with `data` in `raw`.
fn message(data: &Object) -> Result<Inbound, ParseError> {
    const AT: &str = "data";
    let id = fields::req_str(data, "id", AT)?;
    let (phone, name) = match fields::opt_object(data, "contact", AT)? {
        Some(contact) => {
            let at = fields::path(AT, "contact");
            (
                fields::opt_str(contact, "phoneNumber", &at)?,
                fields::opt_str(contact, "name", &at)?,
            )
        }
        None => (None, None),
    };
    Ok(Inbound {
        provider_message_id: id.to_owned(),
        from: phone.and_then(inbound::e164),
        user_id: None,
        profile_name: name.filter(|n| !n.is_empty()).map(str::to_owned),
        timestamp: fields::opt_timestamp(data, "createdAt", AT)?,
        content: content(data, fields::opt_str(data, "type", AT)?),
        context_id: None,
        sender: fields::opt_text(data, "phoneNumberId", AT)?,
        raw: Value::Object(data.clone()),
    })
}

/// The content of an inbound `data` of type `kind`.
fn content(data: &Object, kind: Option<&str>) -> Content {
    let Some(kind) = kind.filter(|k| !k.is_empty()) else {
        return Content::unsupported("the message has no type");
    };
    if kind != TEXT {
        return Content::unsupported(format!(
            "Waspy documents no inbound `{}` format",
            fields::preview(kind)
        ));
    }
    // The webhook example has `content.body`; `GET /messages/{id}` has `content.text.body`.
    let body = data.get("content").and_then(|content| {
        let text = |at: &str| content.pointer(at).and_then(Value::as_str);
        text("/body").or_else(|| text("/text/body"))
    });
    match body {
        Some(body) => Content::Text(inbound::Text {
            body: body.to_owned(),
        }),
        None => Content::unsupported("Waspy text message without data.content.body"),
    }
}

/// A webhook body holding `receipt`, in Waspy's envelope.
pub fn render(receipt: &Receipt) -> Vec<u8> {
    let status = receipt.status.as_str();
    let mut data = json!({
        "id": receipt.provider_message_id,
        "direction": "outbound",
        "type": "text",
        "status": status,
    });
    let mut envelope = json!({
        // Waspy's event names are unknown; parsers must not depend on this one.
        "event": format!("message.{status}"),
        "webhookId": format!("wh-{}-{status}", receipt.provider_message_id),
        "attempt": 1,
    });
    if let Some(at) = receipt.occurred_at {
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        data["updatedAt"] = json!(at);
        envelope["deliveredAt"] = json!(at);
    }
    if let Some(error) = &receipt.error {
        data["errorCode"] = json!(error.code);
        data["errorMessage"] = json!(error.message);
    }
    envelope["data"] = data;
    envelope.to_string().into_bytes()
}

/// A `message.received` webhook body holding `inbound`, in the documented example's shape.
/// Text is rendered as documented; any other content gets only its type word, which Waspy
/// documents no format for, so it reads back as `unsupported` (the simulator can still post
/// one). The customer's number keeps its `+`, as in Waspy's example.
pub fn render_inbound(inbound: &Inbound) -> Vec<u8> {
    let kind = inbound.content.kind().as_str();
    let mut data = json!({
        "id": inbound.provider_message_id,
        "direction": INBOUND,
        "origin": INBOUND,
        "type": kind,
        // As in Waspy's example: an inbound message is `delivered`, and is no receipt.
        "status": "delivered",
    });
    if let Content::Text(text) = &inbound.content {
        data["content"] = json!({ "body": text.body });
    }
    if let Some(sender) = &inbound.sender {
        data["phoneNumberId"] = json!(sender);
    }
    let mut contact = json!({});
    if let Some(from) = &inbound.from {
        contact["phoneNumber"] = json!(from);
    }
    if let Some(name) = &inbound.profile_name {
        contact["name"] = json!(name);
    }
    data["contact"] = contact;
    let mut envelope = json!({
        "event": RECEIVED_EVENT,
        "webhookId": format!("wh-{}-received", inbound.provider_message_id),
        "attempt": 1,
    });
    if let Some(at) = inbound.timestamp {
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        data["createdAt"] = json!(at);
        envelope["deliveredAt"] = json!(at);
    }
    envelope["data"] = data;
    envelope.to_string().into_bytes()
}

/// The `X-Webhook-Secret` header (marked sensitive so it is never logged).
pub fn sign(secret: &Secret) -> Vec<(HeaderName, HeaderValue)> {
    fields::header(SECRET_HEADER, secret.expose(), true)
        .into_iter()
        .collect()
}

/// Waspy's webhook format (also the in-process `mock` provider's).
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

    fn parse(&self, body: &[u8], _headers: &HeaderMap) -> Result<Parsed, ParseError> {
        parse(body)
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
        _body: &[u8],
        _now: DateTime<Utc>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        sign(secret)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use reqwest::header::HeaderMap;

    use super::*;
    use crate::gateways::webhook::fields::testing;

    const SECRET: &str = "waspy-channel-secret";

    /// The envelope of RECEIPTS.md with a failed outbound message; the event name is a guess
    /// (Waspy's are unknown) and must not matter.
    const FIXTURE: &str = r#"{
      "event": "message.updated",
      "webhookId": "wh_01HZY",
      "deliveredAt": "2026-11-22T15:00:05.000Z",
      "attempt": 2,
      "data": {
        "id": "7f6c1a52-3d1e-4b8a-9c55-0a1b2c3d4e5f",
        "conversationId": "c-1", "contactId": "k-1", "phoneNumberId": "p-1",
        "direction": "outbound", "type": "text", "content": {"body": "hola"},
        "status": "failed", "waMessageId": "wamid.HBgL",
        "errorCode": "SERVICE_WINDOW_EXPIRED",
        "errorMessage": "The 24h service window has expired",
        "createdAt": "2026-11-22T15:00:00.000Z",
        "updatedAt": "2026-11-22T15:00:04Z"
      }
    }"#;

    /// The inbound example of docs.waspytech.com/webhooks/events, verbatim.
    const INBOUND_EXAMPLE: &str = r#"{
"event": "message.received",
"webhookId": "...",
"deliveredAt": "2026-04-19T12:34:56.789Z",
"attempt": 1,
"data": {
"id": "uuid-mensaje-waspy",
"conversationId": "uuid-conversacion",
"contactId": "uuid-contacto",
"phoneNumberId": "uuid-canal",
"direction": "inbound",
"type": "text",
"content": { "body": "Hola, tienen stock?" },
"status": "delivered",
"waMessageId": "wamid.HBgL...",
"errorCode": null,
"errorMessage": null,
"origin": "inbound",
"sentByAi": false,
"campaignId": null,
"mediaId": null,
"mediaKey": null,
"createdAt": "2026-04-19T12:34:55.000Z",
"contact": {
"id": "uuid-contacto",
"name": "María Pérez",
"phoneNumber": "+5491126032641"
}
}
}"#;

    fn batch(body: &[u8]) -> Batch {
        match parse(body).unwrap() {
            Parsed::Batch(batch) => batch,
            Parsed::Probe => panic!("waspy has no probe"),
        }
    }

    fn receipts(body: &[u8]) -> Vec<Receipt> {
        batch(body).receipts
    }

    /// The documented example's `data`, with `type` and `content` replaced.
    fn inbound_of(kind: &str, content: Value) -> Inbound {
        let mut body: Value = serde_json::from_str(INBOUND_EXAMPLE).unwrap();
        body["data"]["type"] = json!(kind);
        body["data"]["content"] = content;
        let mut got = batch(body.to_string().as_bytes());
        assert!(got.receipts.is_empty() && got.unreadable.is_empty());
        got.inbound.remove(0)
    }

    fn request<'a>(
        headers: &'a HeaderMap,
        query: Option<&'a str>,
        body: &'a [u8],
    ) -> WebhookRequest<'a> {
        WebhookRequest {
            method: "POST",
            url: "https://hooks.example.com/webhooks/waspy-ar",
            headers,
            query,
            body,
        }
    }

    #[test]
    fn fixture_gives_the_exact_receipt() {
        assert_eq!(
            receipts(FIXTURE.as_bytes()),
            vec![Receipt {
                provider_message_id: "7f6c1a52-3d1e-4b8a-9c55-0a1b2c3d4e5f".into(),
                status: Status::Failed,
                job_id: None,
                error: Some(ReceiptError {
                    code: Some("SERVICE_WINDOW_EXPIRED".into()),
                    message: "The 24h service window has expired".into(),
                }),
                occurred_at: Some(Utc.with_ymd_and_hms(2026, 11, 22, 15, 0, 4).unwrap()),
                sender: None,
            }]
        );
    }

    #[test]
    fn delivered_without_updated_at_takes_the_delivery_time() {
        let body = r#"{"event":"x","deliveredAt":1795000000,
            "data":{"id":"m1","status":"delivered","direction":"outbound"}}"#;
        let got = receipts(body.as_bytes());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].status, Status::Delivered);
        assert_eq!(
            got[0].occurred_at,
            Utc.timestamp_opt(1_795_000_000, 0).single()
        );
    }

    #[test]
    fn queued_inbound_and_other_events_give_no_receipts() {
        for (body, ignored) in [
            (
                r#"{"event":"message.created","data":{"id":"m1","status":"queued"}}"#,
                vec!["queued"],
            ),
            (
                r#"{"event":"message.received","data":{"id":"m2","status":"delivered","direction":"inbound"}}"#,
                vec![],
            ),
            (
                r#"{"event":"message.updated","data":{"id":"m2","status":"read","direction":"inbound"}}"#,
                vec![],
            ),
            (
                r#"{"event":"conversation.updated","data":{"id":"c1","serviceWindowExpiresAt":"x"}}"#,
                vec![],
            ),
            (
                r#"{"event":"message.updated","data":{"id":"m3","status":"deleted"}}"#,
                vec!["deleted"],
            ),
        ] {
            let got = batch(body.as_bytes());
            assert!(got.receipts.is_empty(), "{body}");
            assert_eq!(got.ignored_statuses, ignored, "{body}");
        }
    }

    #[test]
    fn the_documented_example_is_the_expected_inbound() {
        let got = batch(INBOUND_EXAMPLE.as_bytes());
        let example: Value = serde_json::from_str(INBOUND_EXAMPLE).unwrap();
        assert_eq!(
            got,
            Batch {
                inbound: vec![Inbound {
                    provider_message_id: "uuid-mensaje-waspy".into(),
                    from: Some("+5491126032641".into()),
                    user_id: None,
                    profile_name: Some("María Pérez".into()),
                    timestamp: Utc.with_ymd_and_hms(2026, 4, 19, 12, 34, 55).single(),
                    content: Content::Text(inbound::Text {
                        body: "Hola, tienen stock?".into()
                    }),
                    context_id: None,
                    sender: Some("uuid-canal".into()),
                    raw: example["data"].clone(),
                }],
                ..Batch::default()
            },
            "its status `delivered` is not a receipt"
        );
        // A retry of the same delivery names the same message.
        let mut retry = example;
        retry["attempt"] = json!(2);
        retry["deliveredAt"] = json!("2026-04-19T12:40:00.000Z");
        assert_eq!(
            batch(retry.to_string().as_bytes()).inbound[0].provider_message_id,
            got.inbound[0].provider_message_id
        );
    }

    #[test]
    fn text_in_either_shape_and_other_types_unsupported() {
        let lookup_shape = inbound_of("text", json!({"text": {"body": "hola"}}));
        assert_eq!(
            lookup_shape.content,
            Content::Text(inbound::Text {
                body: "hola".into()
            })
        );
        assert_eq!(
            inbound_of("text", json!({})).content,
            Content::unsupported("Waspy text message without data.content.body")
        );
        let image = inbound_of("image", json!({"caption": "x"}));
        assert_eq!(
            image.content,
            Content::unsupported("Waspy documents no inbound `image` format")
        );
        assert_eq!(image.raw["type"], "image", "the item is kept untouched");
        let mut untyped: Value = serde_json::from_str(INBOUND_EXAMPLE).unwrap();
        untyped["data"].as_object_mut().unwrap().remove("type");
        assert_eq!(
            batch(untyped.to_string().as_bytes()).inbound[0].content,
            Content::unsupported("the message has no type")
        );
        // A placeholder instead of a number is no `from`, not an error.
        let body = r#"{"event":"message.received","data":{"id":"m","direction":"inbound",
            "contact":{"phoneNumber":"unknown"}}}"#;
        let got = batch(body.as_bytes());
        assert_eq!(got.inbound[0].from, None);
    }

    #[test]
    fn malformed_inbound_names_the_field_not_the_value() {
        let cases = [
            (r#"{"direction":"inbound"}"#, "missing data.id"),
            (
                r#"{"id":"m","direction":"inbound","contact":"+5491126032641"}"#,
                "data.contact must be an object",
            ),
            (
                r#"{"id":"m","direction":"inbound","contact":{"phoneNumber":5491126032641.5}}"#,
                "data.contact.phoneNumber must be a string",
            ),
            (
                r#"{"id":"m","direction":"inbound","createdAt":"+5491126032641"}"#,
                "data.createdAt is not a readable timestamp",
            ),
        ];
        for (data, needle) in cases {
            let body = format!(r#"{{"event":"message.received","data":{data}}}"#);
            let err = parse(body.as_bytes()).unwrap_err();
            assert!(err.0.contains(needle), "{body}: {err}");
            assert!(!err.0.contains("549112"), "{err}");
        }
    }

    #[test]
    fn render_inbound_then_parse_round_trips_text() {
        let text = Inbound {
            provider_message_id: "m-in".into(),
            from: Some("+5491126032641".into()),
            user_id: None,
            profile_name: Some("María".into()),
            timestamp: Utc.timestamp_opt(1_795_000_000, 0).single(),
            content: Content::Text(inbound::Text {
                body: "hola".into(),
            }),
            context_id: None,
            sender: Some("uuid-canal".into()),
            raw: Value::Null,
        };
        let rendered = render_inbound(&text);
        let mut got = batch(&rendered);
        assert!(got.receipts.is_empty());
        let mut read = got.inbound.remove(0);
        read.raw = Value::Null;
        assert_eq!(read, text);
        assert_eq!(Format.render_inbound(&text), Some(rendered));

        // Other content is rendered with its type word only, and reads back as unsupported.
        let image = Inbound {
            content: Content::Image(inbound::Media::default()),
            ..text.clone()
        };
        let mut read = batch(&render_inbound(&image)).inbound.remove(0);
        read.raw = Value::Null;
        assert_eq!(
            read,
            Inbound {
                content: Content::unsupported("Waspy documents no inbound `image` format"),
                ..text
            }
        );
    }

    #[test]
    fn malformed_bodies_name_the_field() {
        let cases = [
            (r#"{"event":"message.updated"}"#, "missing data"),
            (r#"{"data":[]}"#, "data must be an object"),
            (r#"{"data":{"status":"sent"}}"#, "missing data.id"),
            (r#"{"data":{"id":"","status":"sent"}}"#, "data.id is empty"),
            (
                r#"{"data":{"id":"m","status":3}}"#,
                "data.status must be a string",
            ),
            (
                r#"{"data":{"id":"m","status":"sent","updatedAt":"later"}}"#,
                "data.updatedAt",
            ),
            (
                r#"{"data":{"id":"m","status":"failed","errorCode":[1]}}"#,
                "data.errorCode",
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
                    code: Some("INVALID_CHANNEL".into()),
                    message: "channel disabled".into(),
                }),
                occurred_at: Some(Utc.timestamp_opt(1_795_000_000, 0).unwrap()),
                sender: None,
            };
            assert_eq!(receipts(&render(&receipt)), vec![receipt]);
        }
    }

    #[test]
    fn secret_in_header_or_query_passes_and_sign_round_trips() {
        let secret = Secret::new(SECRET);
        let body = FIXTURE.as_bytes();
        let signed = testing::signed(sign(&secret));
        assert_eq!(verify(&secret, &request(&signed, None, body)), Ok(()));
        let none = HeaderMap::new();
        let query = "channel=ar&secret=waspy-channel-secret";
        assert_eq!(verify(&secret, &request(&none, Some(query), body)), Ok(()));
    }

    #[test]
    fn wrong_or_missing_secret_fails() {
        let secret = Secret::new(SECRET);
        let body = FIXTURE.as_bytes();
        let mismatch = Err(AuthError::Mismatch("webhook secret"));
        let wrong = testing::headers(&[("X-Webhook-Secret", "guess")]);
        assert_eq!(verify(&secret, &request(&wrong, None, body)), mismatch);
        // A wrong header is not rescued by a right query parameter.
        let query = Some("secret=waspy-channel-secret");
        assert_eq!(verify(&secret, &request(&wrong, query, body)), mismatch);
        let none = HeaderMap::new();
        assert_eq!(
            verify(&secret, &request(&none, Some("secret=x"), body)),
            mismatch
        );
        assert!(matches!(
            verify(&secret, &request(&none, Some("other=1"), body)),
            Err(AuthError::Missing(_))
        ));
        assert!(matches!(
            verify(&secret, &request(&none, None, body)),
            Err(AuthError::Missing(_))
        ));
        let empty = Secret::new("");
        let blank = testing::headers(&[("X-Webhook-Secret", "")]);
        assert_eq!(
            verify(&empty, &request(&blank, None, body)),
            Err(AuthError::NotConfigured)
        );
    }

    #[test]
    fn errors_never_show_the_secret() {
        let secret = Secret::new(SECRET);
        let wrong = testing::headers(&[("X-Webhook-Secret", "guess-abc")]);
        let err = verify(&secret, &request(&wrong, None, b"{}")).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains(SECRET) && !shown.contains("guess-abc"),
            "{shown}"
        );
    }
}
