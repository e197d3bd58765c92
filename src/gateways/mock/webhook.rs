//! The `mock` provider's webhooks: Waspy's status receipts, and a shape of mensajero's own for
//! customers' messages.
//!
//! This is no real gateway's format. Authentication, signing and receipts are Waspy's, exactly
//! (the mock stands for Waspy's API, and its receipts carry Waspy's codes): every one of those
//! calls is handed to [`waspy::webhook::Format`]. Customers' messages are the simulator's own
//! shape, chosen to carry what Waspy does not document, the message a customer answers
//! (`context`) and button replies, so that demos and fault campaigns exercise inbound events
//! end to end:
//!
//! ```json
//! {"event": "message.received",
//!  "data": {"id": "reply-7f6c1a52", "direction": "inbound", "from": "+5491126032641",
//!           "name": "Ana", "createdAt": "2026-12-03T10:00:00.000Z",
//!           "context": {"id": "7f6c1a52"},
//!           "type": "text", "content": {"body": "Gracias"}}}
//! ```
//!
//! or `"type": "reply", "reply": {"kind": "button", "id": "si", "title": "Sí"}` in place of
//! `content` (`kind` as in [`ReplyKind`](crate::inbound::ReplyKind); a list row may add
//! `description`, a quick reply `payload`). Only `id` and `type` are required; another `type`
//! is kept as `unsupported`, and other content has no rendering. A body is a customer's
//! message when `event` is `message.received` or `data.direction` is `inbound`; it is read as
//! one before Waspy's parser could take it for Waspy's own inbound shape.

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::config::Secret;
use crate::gateways::waspy;
use crate::gateways::webhook::fields::{self, Object};
use crate::gateways::webhook::{
    AuthError, Batch, Inbound, ParseError, Parsed, Receipt, WebhookFormat, WebhookRequest,
};
use crate::inbound::{self, Content, Reply, Text};

/// The `event` of a customer's message.
pub const EVENT: &str = "message.received";

/// The `data.direction` of a customer's message.
const INBOUND: &str = "inbound";

/// Everything but customers' messages is Waspy's.
const WASPY: waspy::webhook::Format = waspy::webhook::Format;

/// Whether `root` is a customer's message rather than one of Waspy's bodies.
fn is_inbound(root: &Object) -> bool {
    let event = root.get("event").and_then(Value::as_str);
    let direction = root
        .get("data")
        .and_then(|data| data.get("direction"))
        .and_then(Value::as_str);
    event == Some(EVENT) || direction == Some(INBOUND)
}

/// Read a body: a customer's message in the mock's shape, else whatever Waspy's parser reads.
pub fn parse(body: &[u8], headers: &HeaderMap) -> Result<Parsed, ParseError> {
    let root = fields::body_object(body)?;
    if !is_inbound(&root) {
        return WASPY.parse(body, headers);
    }
    let data =
        fields::opt_object(&root, "data", "")?.ok_or_else(|| ParseError("missing data".into()))?;
    Ok(Parsed::Batch(Batch {
        inbound: vec![message(data)?],
        ..Batch::default()
    }))
}

/// The customer's message in `data`.
fn message(data: &Object) -> Result<Inbound, ParseError> {
    let at = "data";
    let id = fields::req_str(data, "id", at)?;
    let context_id = match fields::opt_object(data, "context", at)? {
        Some(context) => fields::opt_str(context, "id", "data.context")?.map(str::to_owned),
        None => None,
    };
    let required = |key: &str| {
        fields::opt_object(data, key, at)?
            .ok_or_else(|| ParseError(format!("missing {}", fields::path(at, key))))
    };
    let content = match fields::req_str(data, "type", at)? {
        "text" => Content::Text(Text {
            body: fields::req_str(required("content")?, "body", "data.content")?.to_owned(),
        }),
        "reply" => {
            let reply = Value::Object(required("reply")?.clone());
            // serde names the offending field or kind, never a value a customer wrote.
            Content::Reply(
                serde_json::from_value::<Reply>(reply)
                    .map_err(|e| ParseError(format!("data.reply: {e}")))?,
            )
        }
        other => Content::unsupported(format!("mock message type `{}`", fields::preview(other))),
    };
    Ok(Inbound {
        provider_message_id: id.to_owned(),
        from: fields::opt_str(data, "from", at)?.and_then(inbound::e164),
        user_id: None,
        profile_name: fields::opt_str(data, "name", at)?.map(str::to_owned),
        timestamp: fields::opt_timestamp(data, "createdAt", at)?,
        content,
        context_id,
        sender: None,
        raw: Value::Object(data.clone()),
    })
}

/// A body holding `message`, or `None` for content the shape has no place for (anything but
/// text and replies). The user id and sender are not carried: the simulator has neither.
pub fn render_inbound(message: &Inbound) -> Option<Vec<u8>> {
    let (kind, key, value) = match &message.content {
        Content::Text(text) => ("text", "content", json!({ "body": text.body })),
        Content::Reply(reply) => ("reply", "reply", serde_json::to_value(reply).ok()?),
        _ => return None,
    };
    let mut data = json!({
        "id": message.provider_message_id,
        "direction": INBOUND,
        "type": kind,
        key: value,
    });
    if let Some(from) = &message.from {
        data["from"] = json!(from);
    }
    if let Some(name) = &message.profile_name {
        data["name"] = json!(name);
    }
    if let Some(at) = message.timestamp {
        data["createdAt"] = json!(inbound::timestamp(at));
    }
    if let Some(id) = &message.context_id {
        data["context"] = json!({ "id": id });
    }
    Some(
        json!({ "event": EVENT, "data": data })
            .to_string()
            .into_bytes(),
    )
}

/// The `mock` provider's webhook format.
pub struct Format;

impl WebhookFormat for Format {
    fn verify(
        &self,
        secret: &Secret,
        request: &WebhookRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        WASPY.verify(secret, request, now)
    }

    fn is_probe(&self, body: &[u8]) -> bool {
        WASPY.is_probe(body)
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        WASPY.kept_headers()
    }

    fn parse(&self, body: &[u8], headers: &HeaderMap) -> Result<Parsed, ParseError> {
        parse(body, headers)
    }

    fn render(&self, receipt: &Receipt) -> Vec<u8> {
        WASPY.render(receipt)
    }

    fn render_inbound(&self, message: &Inbound) -> Option<Vec<u8>> {
        render_inbound(message)
    }

    fn sign(
        &self,
        secret: &Secret,
        method: &str,
        url: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        WASPY.sign(secret, method, url, body, now)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::gateways::webhook::ReceiptError;
    use crate::gateways::webhook::fields::testing;
    use crate::inbound::{Media, ReplyKind};
    use crate::outcome::Status;

    fn batch(body: &[u8]) -> Batch {
        match Format.parse(body, &HeaderMap::new()).unwrap() {
            Parsed::Batch(batch) => batch,
            Parsed::Probe => panic!("the mock has no probe"),
        }
    }

    fn message(content: Content) -> Inbound {
        Inbound {
            provider_message_id: "reply-m-1".into(),
            from: Some("+5491126032641".into()),
            user_id: None,
            profile_name: Some("Ana".into()),
            timestamp: Some(Utc.timestamp_opt(1_795_000_000, 0).unwrap()),
            content,
            context_id: Some("m-1".into()),
            sender: None,
            raw: Value::Null,
        }
    }

    #[test]
    fn render_then_parse_round_trips_text_and_every_reply_kind() {
        let reply = |kind, description: Option<&str>, payload: Option<&str>| {
            Content::Reply(Reply {
                kind,
                id: Some("si".into()),
                title: Some("Sí".into()),
                description: description.map(str::to_owned),
                payload: payload.map(str::to_owned),
            })
        };
        let contents = [
            Content::Text(Text {
                body: "Gracias".into(),
            }),
            reply(ReplyKind::Button, None, None),
            reply(ReplyKind::List, Some("el de siempre"), None),
            reply(ReplyKind::QuickReply, None, Some("CONFIRM")),
        ];
        for content in contents {
            let sent = message(content);
            let body = Format.render_inbound(&sent).expect("renderable");
            let got = batch(&body);
            assert!(got.receipts.is_empty(), "{got:?}");
            assert_eq!(got.inbound.len(), 1);
            let item = &got.inbound[0];
            assert_eq!(
                item.raw,
                serde_json::from_slice::<Value>(&body).unwrap()["data"]
            );
            assert_eq!(
                Inbound {
                    raw: Value::Null,
                    ..item.clone()
                },
                sent
            );
        }
    }

    #[test]
    fn the_documented_shape_is_what_it_renders() {
        let body = render_inbound(&message(Content::Reply(Reply {
            kind: ReplyKind::Button,
            id: Some("si".into()),
            title: Some("Sí".into()),
            description: None,
            payload: None,
        })))
        .unwrap();
        let expected = json!({"event": "message.received", "data": {
            "id": "reply-m-1", "direction": "inbound", "from": "+5491126032641",
            "name": "Ana", "createdAt": "2026-11-18T11:06:40.000Z", "context": {"id": "m-1"},
            "type": "reply", "reply": {"kind": "button", "id": "si", "title": "Sí"},
        }});
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), expected);
    }

    #[test]
    fn other_content_has_no_rendering_and_other_types_parse_as_unsupported() {
        assert_eq!(
            render_inbound(&message(Content::Image(Media::default()))),
            None
        );
        let body = br#"{"event":"message.received","data":{"id":"in-9","type":"sticker"}}"#;
        let got = batch(body);
        assert_eq!(got.inbound.len(), 1);
        assert!(matches!(got.inbound[0].content, Content::Unsupported(_)));
        assert_eq!(got.inbound[0].context_id, None);
    }

    /// Waspy's parser drops bodies with `direction: inbound`; the mock's reads them first, so
    /// a status word on one never makes it a receipt.
    #[test]
    fn a_customers_message_is_never_taken_for_a_receipt() {
        for body in [
            r#"{"event":"message.received","data":{"id":"m2","status":"delivered","type":"text","content":{"body":"hola"}}}"#,
            r#"{"event":"message.updated","data":{"id":"m2","status":"delivered","direction":"inbound","type":"text","content":{"body":"hola"}}}"#,
        ] {
            let got = batch(body.as_bytes());
            assert!(got.receipts.is_empty(), "{body}");
            assert_eq!(got.inbound.len(), 1, "{body}");
        }
    }

    #[test]
    fn malformed_messages_name_the_field() {
        let cases = [
            (r#"{"event":"message.received"}"#, "missing data"),
            (
                r#"{"event":"message.received","data":{"type":"text"}}"#,
                "missing data.id",
            ),
            (
                r#"{"event":"message.received","data":{"id":"m"}}"#,
                "missing data.type",
            ),
            (
                r#"{"event":"message.received","data":{"id":"m","type":"text"}}"#,
                "missing data.content",
            ),
            (
                r#"{"event":"message.received","data":{"id":"m","type":"text","content":{"body":1}}}"#,
                "data.content.body",
            ),
            (
                r#"{"event":"message.received","data":{"id":"m","type":"reply","reply":{"kind":"wink"}}}"#,
                "data.reply",
            ),
            (
                r#"{"event":"message.received","data":{"id":"m","type":"text","content":{"body":"x"},"context":[]}}"#,
                "data.context",
            ),
            (
                r#"{"event":"message.received","data":{"id":"m","type":"text","content":{"body":"x"},"createdAt":"soon"}}"#,
                "data.createdAt",
            ),
        ];
        for (body, needle) in cases {
            let err = Format
                .parse(body.as_bytes(), &HeaderMap::new())
                .unwrap_err();
            assert!(err.0.contains(needle), "{body}: {err}");
        }
        for body in testing::hostile_bodies() {
            assert!(Format.parse(&body, &HeaderMap::new()).is_err());
        }
    }

    /// The mock's receipts, signatures and verification are Waspy's, byte for byte.
    #[test]
    fn receipts_are_waspys_unchanged() {
        let secret = Secret::new("mock-hook-secret");
        let now = Utc.timestamp_opt(1_795_000_000, 0).unwrap();
        let url = "https://hooks.example.com/webhooks/demo";
        for status in [
            Status::Sent,
            Status::Delivered,
            Status::Read,
            Status::Failed,
        ] {
            let receipt = Receipt {
                provider_message_id: "m-receipt".into(),
                status,
                job_id: None,
                error: (status == Status::Failed).then(|| ReceiptError {
                    code: Some("SERVICE_WINDOW_EXPIRED".into()),
                    message: "window closed".into(),
                }),
                occurred_at: Some(now),
                sender: None,
            };
            let body = Format.render(&receipt);
            assert_eq!(body, WASPY.render(&receipt));
            let headers: HeaderMap = Format
                .sign(&secret, "POST", url, &body, now)
                .into_iter()
                .collect();
            let request = WebhookRequest {
                method: "POST",
                url,
                headers: &headers,
                query: None,
                body: &body,
            };
            assert_eq!(Format.verify(&secret, &request, now), Ok(()));
            assert_eq!(
                Format.verify(&Secret::new("other"), &request, now),
                WASPY.verify(&Secret::new("other"), &request, now)
            );
            assert_eq!(
                Format.parse(&body, &headers),
                Ok(Parsed::receipts(vec![receipt]))
            );
            assert_eq!(Format.parse(&body, &headers), WASPY.parse(&body, &headers));
        }
        // Waspy's other bodies read as Waspy reads them.
        let conversation = br#"{"event":"conversation.updated","data":{"id":"c1"}}"#;
        assert_eq!(
            Format.parse(conversation, &HeaderMap::new()),
            WASPY.parse(conversation, &HeaderMap::new())
        );
    }
}
