//! Waspy (`POST /api/v2/messages`), per `shared/providers/waspy-messages.txt`.
//!
//! Meta-like objects per type under a flat envelope (`phoneNumberId`, `to` with `+`,
//! `type`), Bearer auth, and a real idempotency mechanism: the `Idempotency-Key` header
//! (≤ 256 chars, 24 h), answered with `Idempotency-Replayed: true` when a repeat is served
//! from Waspy's cache. That makes every resend after a crash safe.

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::config::{ProviderKind, Secret};
use crate::gateways::{self, Accepted, Adapter, HttpCall, HttpReply, SendContext, SendResult};
use crate::job::Job;
use crate::retry::{ErrorClass, Failure, Sent};

/// Message types Waspy's document lists; every other canonical type is refused up front.
pub const SUPPORTED_TYPES: &[&str] = &[
    "text",
    "image",
    "video",
    "audio",
    "document",
    "template",
    "interactive",
];

/// Every error code Waspy documents, with the HTTP status it comes with and its SPEC §7 class.
pub const ERROR_TABLE: &[(&str, u16, ErrorClass)] = &[
    // The 24 h window closed: only a template can reach the contact now.
    ("SERVICE_WINDOW_EXPIRED", 403, ErrorClass::WindowExpired),
    // The phoneNumberId is not ours: an operator must fix the channel's `sender`.
    ("INVALID_CHANNEL", 400, ErrorClass::Channel),
    ("CHANNEL_NOT_CONNECTED", 403, ErrorClass::Channel),
    ("INVALID_MESSAGE_TYPE", 400, ErrorClass::Invalid),
    ("INVALID_PHONE", 400, ErrorClass::Invalid),
    // Another request with this key is still being processed: retrying yields its answer.
    ("IDEMPOTENCY_CONFLICT", 409, ErrorClass::Transient),
];

/// The class [`ERROR_TABLE`] gives a code.
pub fn code_class(code: &str) -> Option<ErrorClass> {
    ERROR_TABLE
        .iter()
        .find(|(name, _, _)| name.eq_ignore_ascii_case(code))
        .map(|(_, _, class)| *class)
}

/// Header Waspy sets on answers served from its idempotency cache.
pub const REPLAYED_HEADER: &str = "idempotency-replayed";

/// The Waspy adapter for one channel.
pub struct Waspy {
    /// The channel's phoneNumberId (a UUID from Waspy's `GET /channels`).
    sender: String,
    /// API key (`wspy_…`), sent as a Bearer token.
    api_key: Secret,
}

impl Waspy {
    /// An adapter sending from `sender` with `api_key`.
    pub fn new(sender: String, api_key: Secret) -> Self {
        Self { sender, api_key }
    }
}

impl Adapter for Waspy {
    fn provider(&self) -> ProviderKind {
        ProviderKind::Waspy
    }

    fn request(&self, job: &Job, ctx: SendContext<'_>) -> Result<HttpCall, Failure> {
        gateways::require_expressible(ProviderKind::Waspy, job, SUPPORTED_TYPES)?;
        let kind = job.message.type_name();
        let canonical = serde_json::to_value(&job.message)
            .map_err(|e| Failure::invalid("invalid_field", format!("message: {e}")))?;
        let content = canonical.get(kind).cloned().unwrap_or(Value::Null);

        let mut body = Map::new();
        body.insert("phoneNumberId".into(), Value::String(self.sender.clone()));
        body.insert("to".into(), Value::String(job.to.clone()));
        body.insert("type".into(), Value::String(kind.into()));
        body.insert(kind.into(), content);
        gateways::merge_options(&mut body, job)?;

        let auth = gateways::bearer(&self.api_key)?;
        let key = HeaderValue::from_str(ctx.idempotency_key).map_err(|_| {
            Failure::invalid(
                "invalid_field",
                "idempotency_key: not a valid HTTP header value",
            )
        })?;
        Ok(HttpCall {
            method: Method::POST,
            path: "/api/v2/messages".into(),
            headers: vec![auth, (HeaderName::from_static("idempotency-key"), key)],
            body: Value::Object(body),
        })
    }

    fn code_class(&self, code: &str) -> Option<ErrorClass> {
        code_class(code)
    }

    fn status_request(&self, provider_message_id: &str) -> Option<HttpCall> {
        let auth = gateways::bearer(&self.api_key).ok()?;
        // The answer's `data` has the webhook's `id` and `status`: the receipt parser reads it.
        Some(HttpCall {
            method: Method::GET,
            path: format!(
                "/api/v2/messages/{}",
                gateways::path_segment(provider_message_id)
            ),
            headers: vec![auth],
            body: Value::Null,
        })
    }

    fn response(&self, reply: &HttpReply) -> SendResult {
        let json = reply.json();
        if (200..300).contains(&reply.status) {
            let id = json
                .as_ref()
                .and_then(|b| b.pointer("/data/id"))
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty());
            return match id {
                Some(id) => Ok(Accepted {
                    provider_message_id: id.to_string(),
                    replayed: reply
                        .headers
                        .get(REPLAYED_HEADER)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true")),
                }),
                // Accepted but unreadable: it may have been sent; the idempotency key makes a
                // retry return the original answer.
                None => Err(Failure::new(
                    ErrorClass::Transient,
                    "bad_response",
                    format!("HTTP {} without data.id", reply.status),
                )
                .maybe_sent()),
            };
        }
        Err(classify_error(reply, json.as_ref()))
    }
}

/// Map a non-2xx answer through [`ERROR_TABLE`], falling back on the HTTP status.
fn classify_error(reply: &HttpReply, json: Option<&Value>) -> Failure {
    let code = json.and_then(gateways::error_code);
    let message = json
        .and_then(gateways::error_message)
        .unwrap_or_else(|| format!("HTTP {}", reply.status));
    let known = code
        .as_deref()
        .and_then(|c| ERROR_TABLE.iter().find(|(name, _, _)| *name == c));
    // A code the table names is Waspy refusing the message; anything else follows the status.
    let (class, sent) = match known {
        Some((_, _, class)) => (*class, Sent::No),
        None => {
            tracing::warn!(
                provider = "waspy",
                status = reply.status,
                code = code.as_deref().unwrap_or("-"),
                "gateway answered an undocumented error; classifying by HTTP status"
            );
            (
                gateways::class_for_status(reply.status),
                gateways::sent_for_status(reply.status),
            )
        }
    };
    let mut failure = Failure::new(
        class,
        code.clone()
            .unwrap_or_else(|| format!("http_{}", reply.status)),
        message,
    )
    .with_retry_after(reply.retry_after())
    .with_sent(sent);
    if let Some(code) = code {
        failure = failure.with_provider_code(code);
    }
    if class == ErrorClass::Transient && reply.status == 409 {
        // "Otra request con la misma key está en proceso": an earlier request with this key
        // (a crashed worker's, resumed now) is still being handled at Waspy. Ask again soon.
        failure = failure.in_progress();
    }
    failure
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reqwest::header::HeaderMap;
    use serde_json::json;

    use super::*;
    use crate::retry::Sent;

    fn waspy() -> Waspy {
        Waspy::new(
            "550e8400-e29b-41d4-a716-446655440000".into(),
            Secret::new("wspy_unit"),
        )
    }

    fn reply(status: u16, body: serde_json::Value, headers: &[(&str, &str)]) -> HttpReply {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        HttpReply {
            status,
            headers: map,
            body: body.to_string().into(),
        }
    }

    fn job(message: serde_json::Value) -> Job {
        let body =
            json!({"id": "j1", "channel": "waspy-ar", "to": "+5491126032641", "message": message});
        crate::job::parse(body.to_string().as_bytes()).expect("valid job")
    }

    #[test]
    fn every_documented_code_maps_to_its_class_in_both_body_shapes() {
        for (code, status, class) in ERROR_TABLE {
            for body in [
                json!({"error": {"code": code, "message": "detalle"}}),
                json!({"code": code, "message": "detalle"}),
            ] {
                let failure = waspy().response(&reply(*status, body, &[])).unwrap_err();
                assert_eq!(failure.class, *class, "{code}");
                assert_eq!(failure.code, *code);
                assert_eq!(failure.provider_code.as_deref(), Some(*code));
                assert_eq!(failure.message, "detalle");
            }
        }
    }

    #[test]
    fn idempotency_conflict_may_have_been_sent_and_is_still_in_progress() {
        let failure = waspy()
            .response(&reply(
                409,
                json!({"error": {"code": "IDEMPOTENCY_CONFLICT"}}),
                &[],
            ))
            .unwrap_err();
        assert_eq!(
            (failure.class, failure.sent, failure.in_progress),
            (ErrorClass::Transient, Sent::Maybe, true)
        );
        let other = waspy()
            .response(&reply(
                409,
                json!({"error": {"code": "SOMETHING_ELSE"}}),
                &[],
            ))
            .unwrap_err();
        assert!(
            !other.in_progress,
            "only the documented conflict: {other:?}"
        );
    }

    #[test]
    fn undocumented_answers_fall_back_on_the_status() {
        let cases = [
            (500, ErrorClass::Transient),
            (502, ErrorClass::Transient),
            (401, ErrorClass::Auth),
            (403, ErrorClass::Auth),
            (429, ErrorClass::RateLimited),
            (422, ErrorClass::Invalid),
        ];
        for (status, class) in cases {
            let failure = waspy()
                .response(&reply(
                    status,
                    json!({"error": {"code": "SOMETHING_NEW"}}),
                    &[],
                ))
                .unwrap_err();
            assert_eq!(failure.class, class, "{status}");
            assert_eq!(failure.provider_code.as_deref(), Some("SOMETHING_NEW"));
        }
        let failure = waspy()
            .response(&reply(503, json!("not an object"), &[]))
            .unwrap_err();
        assert_eq!(
            (failure.class, failure.code.as_str()),
            (ErrorClass::Transient, "http_503")
        );
    }

    #[test]
    fn retry_after_is_read() {
        let failure = waspy()
            .response(&reply(429, json!({}), &[("retry-after", "7")]))
            .unwrap_err();
        assert_eq!(failure.retry_after, Some(Duration::from_secs(7)));
    }

    #[test]
    fn success_reads_the_id_and_the_replay_marker() {
        let body =
            json!({"data": {"id": "msg-uuid", "status": "queued"}, "meta": {"requestId": "r"}});
        let fresh = waspy().response(&reply(201, body.clone(), &[])).unwrap();
        assert_eq!(
            fresh,
            Accepted {
                provider_message_id: "msg-uuid".into(),
                replayed: false
            }
        );
        let replay = waspy()
            .response(&reply(201, body, &[("idempotency-replayed", "true")]))
            .unwrap();
        assert!(replay.replayed);
    }

    #[test]
    fn a_2xx_without_an_id_is_an_ambiguous_failure() {
        let failure = waspy()
            .response(&reply(201, json!({"data": {}}), &[]))
            .unwrap_err();
        assert_eq!(
            (failure.class, failure.sent),
            (ErrorClass::Transient, Sent::Maybe)
        );
    }

    #[test]
    fn status_request_is_the_documented_get_with_the_id_as_one_segment() {
        let call = waspy().status_request("msg-uuid").unwrap();
        assert_eq!(call.method, Method::GET);
        assert_eq!(call.path, "/api/v2/messages/msg-uuid");
        assert_eq!(call.headers.len(), 1);
        assert!(call.headers[0].1.is_sensitive());
        // An id from a gateway never reaches another path.
        let call = waspy().status_request("../x?y=1").unwrap();
        assert_eq!(call.path, "/api/v2/messages/..%2Fx%3Fy%3D1");
    }

    #[test]
    fn request_carries_auth_key_and_the_document_shape() {
        let call = waspy()
            .request(
                &job(json!({"type": "text", "text": {"body": "Hola!"}})),
                SendContext {
                    idempotency_key: "pedido-1847",
                    attempt: 1,
                },
            )
            .unwrap();
        assert_eq!(call.method, Method::POST);
        assert_eq!(call.path, "/api/v2/messages");
        let header = |name: &str| {
            call.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_str().unwrap().to_owned())
        };
        assert_eq!(header("authorization").as_deref(), Some("Bearer wspy_unit"));
        assert!(
            call.headers
                .iter()
                .find(|(n, _)| n == "authorization")
                .unwrap()
                .1
                .is_sensitive()
        );
        assert_eq!(header("idempotency-key").as_deref(), Some("pedido-1847"));
        assert_eq!(
            call.body,
            json!({"phoneNumberId": "550e8400-e29b-41d4-a716-446655440000", "to": "+5491126032641",
                   "type": "text", "text": {"body": "Hola!"}})
        );
    }

    #[test]
    fn unsupported_types_and_replies_are_refused_naming_waspy() {
        let unsupported = [
            json!({"type": "sticker", "sticker": {"id": "s1"}}),
            json!({"type": "location", "location": {"latitude": 1.0, "longitude": 2.0}}),
            json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "A"}}]}),
            json!({"type": "reaction", "reaction": {"message_id": "wamid.1", "emoji": "👍"}}),
            json!({"type": "text", "text": {"body": "hi"}, "context": {"message_id": "wamid.1"}}),
        ];
        for message in unsupported {
            let failure = waspy()
                .request(
                    &job(message.clone()),
                    SendContext {
                        idempotency_key: "k",
                        attempt: 1,
                    },
                )
                .unwrap_err();
            assert_eq!(
                (failure.class, failure.code.as_str()),
                (ErrorClass::Invalid, "unsupported_message_type"),
                "{message}"
            );
            assert!(
                failure.message.starts_with("waspy cannot send"),
                "{}",
                failure.message
            );
        }
    }

    #[test]
    fn provider_options_add_fields_but_cannot_readdress() {
        let mut body = json!({"id": "j1", "channel": "waspy-ar", "to": "+5491126032641",
            "message": {"type": "text", "text": {"body": "hi"}}, "provider_options": {"label": "promo"}});
        let ctx = SendContext {
            idempotency_key: "k",
            attempt: 1,
        };
        let call = waspy()
            .request(
                &crate::job::parse(body.to_string().as_bytes()).unwrap(),
                ctx,
            )
            .unwrap();
        assert_eq!(call.body["label"], "promo");
        body["provider_options"] = json!({"to": "+34600000000"});
        let failure = waspy()
            .request(
                &crate::job::parse(body.to_string().as_bytes()).unwrap(),
                ctx,
            )
            .unwrap_err();
        assert_eq!(failure.class, ErrorClass::Invalid);
    }
}
