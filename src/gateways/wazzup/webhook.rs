//! Wazzup24's webhooks, per the Wazzup section of `shared/providers/RECEIPTS.md` (the status
//! payload there is from secondary sources).
//!
//! - **Auth**: `Authorization: Bearer <crmKey>`, the channel's webhook secret, compared in
//!   constant time. Wazzup has no HMAC.
//! - **Probe**: setting the webhook makes Wazzup POST `{"test":true}` first, which must get 200
//!   and publishes nothing: [`Parsed::Probe`]. Only exactly that JSON object (whitespace aside)
//!   is a probe, answered before authentication; a body with any other field is authenticated
//!   and read like every other.
//! - **Body**: `{"statuses":[{"messageId","timestamp","status","error"}]}`, possibly with
//!   `messages` (inbound, ignored) in the same POST. `messageId` is the id of the send answer.
//!   `status` is `sent|delivered|read|error|edited`: `error` is a failure, `edited` is not a
//!   delivery status and is skipped.
//! - **Assumptions**: `timestamp` is an ISO string or unix seconds/milliseconds; the `error`
//!   object has Wazzup's error-body shape `{"error": "BAD_CONTACT", "description": …}` (`code`
//!   and `message` are accepted too), or is a bare code string.

use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::config::Secret;
use crate::gateways::webhook::fields::{self, Object};
use crate::gateways::webhook::{
    AuthError, ParseError, Parsed, Receipt, ReceiptError, WebhookFormat, WebhookRequest,
    constant_time_eq,
};
use crate::outcome::Status;

/// Wazzup's status words. `edited` (and anything unknown) is skipped.
pub const STATUSES: &[(&str, Status)] = &[
    ("sent", Status::Sent),
    ("delivered", Status::Delivered),
    ("read", Status::Read),
    ("error", Status::Failed),
];

/// The authorization scheme Wazzup uses for the crmKey.
const BEARER: &[u8] = b"bearer ";

/// Check `Authorization: Bearer <crmKey>`.
pub fn verify(secret: &Secret, request: &WebhookRequest<'_>) -> Result<(), AuthError> {
    const NAME: &str = "Authorization";
    let expected = fields::secret_bytes(secret)?;
    let received = request
        .headers
        .get(AUTHORIZATION)
        .ok_or(AuthError::Missing(NAME))?
        .as_bytes();
    // The scheme name is case-insensitive (RFC 9110); the key itself is not.
    let scheme_ok =
        received.len() > BEARER.len() && received[..BEARER.len()].eq_ignore_ascii_case(BEARER);
    if scheme_ok && constant_time_eq(received[BEARER.len()..].trim_ascii(), expected) {
        Ok(())
    } else {
        Err(AuthError::Mismatch(NAME))
    }
}

/// Whether the body is Wazzup's probe: the object `{"test": true}` and nothing else.
fn probe(root: &Object) -> bool {
    root.len() == 1 && root.get("test") == Some(&Value::Bool(true))
}

/// Read the statuses (or the probe) in a webhook body.
pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let root = fields::body_object(body)?;
    if probe(&root) {
        return Ok(Parsed::Probe);
    }
    let statuses = fields::opt_array(&root, "statuses", "")?.unwrap_or_default();
    let mut receipts = Vec::new();
    for (i, item) in statuses.iter().enumerate() {
        receipts.extend(status(item, &format!("statuses[{i}]"))?);
    }
    Ok(Parsed::receipts(receipts))
}

fn status(item: &Value, at: &str) -> Result<Option<Receipt>, ParseError> {
    let item = fields::as_object(item, at)?;
    let id = fields::req_str(item, "messageId", at)?;
    let word = fields::req_str(item, "status", at)?;
    let occurred_at = fields::opt_timestamp(item, "timestamp", at)?;
    let Some(status) = fields::lookup(STATUSES, word) else {
        tracing::debug!(status = %fields::preview(word), at, "wazzup status skipped");
        return Ok(None);
    };
    let error = match status {
        Status::Failed => error(item, at)?,
        _ => None,
    };
    Ok(Some(Receipt {
        provider_message_id: id.to_owned(),
        status,
        job_id: None,
        error,
        occurred_at,
        sender: None,
    }))
}

fn error(item: &Object, at: &str) -> Result<Option<ReceiptError>, ParseError> {
    let at = fields::path(at, "error");
    let error = match item.get("error") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(code)) => {
            return Ok(Some(ReceiptError {
                code: Some(code.clone()),
                message: code.clone(),
            }));
        }
        Some(value) => fields::as_object(value, &at)?,
    };
    let code = match fields::opt_text(error, "error", &at)? {
        Some(code) => Some(code),
        None => fields::opt_text(error, "code", &at)?,
    };
    let message = match fields::opt_str(error, "description", &at)? {
        Some(message) => Some(message),
        None => fields::opt_str(error, "message", &at)?,
    };
    let message = match (message, &code) {
        (Some(message), _) => message.to_owned(),
        (None, Some(code)) => code.clone(),
        (None, None) => "Wazzup gave no description".to_owned(),
    };
    Ok(Some(ReceiptError { code, message }))
}

/// A webhook body holding `receipt`, as Wazzup sends it.
pub fn render(receipt: &Receipt) -> Vec<u8> {
    let word = match receipt.status {
        Status::Failed => "error",
        other => other.as_str(),
    };
    let mut item = json!({"messageId": receipt.provider_message_id, "status": word});
    if let Some(at) = receipt.occurred_at {
        item["timestamp"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    if let Some(error) = &receipt.error {
        item["error"] = json!({"error": error.code, "description": error.message});
    }
    json!({"statuses": [item]}).to_string().into_bytes()
}

/// The `Authorization: Bearer <crmKey>` header (marked sensitive so it is never logged).
pub fn sign(secret: &Secret) -> Vec<(HeaderName, HeaderValue)> {
    fields::header(
        "authorization",
        &format!("Bearer {}", secret.expose()),
        true,
    )
    .into_iter()
    .collect()
}

/// Wazzup24's webhook format.
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

    fn is_probe(&self, body: &[u8]) -> bool {
        fields::body_object(body).is_ok_and(|root| probe(&root))
    }

    fn parse(&self, body: &[u8], _headers: &HeaderMap) -> Result<Parsed, ParseError> {
        parse(body)
    }

    fn render(&self, receipt: &Receipt) -> Vec<u8> {
        render(receipt)
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

    const CRM_KEY: &str = "crm-key-123";

    /// RECEIPTS.md's status payload with an inbound message in the same POST, an `edited`
    /// status, both timestamp forms and a failed item with an error object.
    const FIXTURE: &str = r#"{
      "messages": [{"messageId": "in-1", "channelId": "ch", "chatType": "whatsapp",
                    "chatId": "79998887766", "dateTime": "2026-03-01T10:00:00.000Z",
                    "type": "text", "status": "inbound", "text": "hola"}],
      "statuses": [
        {"messageId": "11a4ba7a-1c06-4a32-9e5b-5c14e2a4a3d1", "timestamp": "2026-03-01T10:00:01.000Z", "status": "delivered"},
        {"messageId": "22b5cb8b-2d17-4b43-8f6c-6d25f3b5b4e2", "timestamp": 1772359202, "status": "error",
         "error": {"error": "BAD_CONTACT", "description": "The contact does not have WhatsApp"}},
        {"messageId": "33c6dc9c-3e28-4c54-9a7d-7e36a4c6c5f3", "timestamp": 1772359203, "status": "edited"}
      ]
    }"#;

    fn receipts(body: &[u8]) -> Vec<Receipt> {
        match parse(body).unwrap() {
            Parsed::Batch(batch) => batch.receipts,
            Parsed::Probe => panic!("not a probe"),
        }
    }

    fn request<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> WebhookRequest<'a> {
        WebhookRequest {
            method: "POST",
            url: "https://hooks.example.com/webhooks/wazzup-ru",
            headers,
            query: None,
            body,
        }
    }

    #[test]
    fn fixture_gives_the_exact_receipts() {
        assert_eq!(
            receipts(FIXTURE.as_bytes()),
            vec![
                Receipt {
                    provider_message_id: "11a4ba7a-1c06-4a32-9e5b-5c14e2a4a3d1".into(),
                    status: Status::Delivered,
                    job_id: None,
                    error: None,
                    occurred_at: Some(Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 1).unwrap()),
                    sender: None,
                },
                Receipt {
                    provider_message_id: "22b5cb8b-2d17-4b43-8f6c-6d25f3b5b4e2".into(),
                    status: Status::Failed,
                    job_id: None,
                    error: Some(ReceiptError {
                        code: Some("BAD_CONTACT".into()),
                        message: "The contact does not have WhatsApp".into(),
                    }),
                    occurred_at: Some(Utc.timestamp_opt(1_772_359_202, 0).unwrap()),
                    sender: None,
                },
            ]
        );
    }

    #[test]
    fn the_test_call_is_a_probe() {
        assert_eq!(parse(br#"{"test":true}"#), Ok(Parsed::Probe));
        assert_eq!(parse(br#"{"test":false}"#), Ok(Parsed::receipts(vec![])));
    }

    /// Only exactly `{"test":true}` is answered before authentication: anything more is
    /// authenticated, and its statuses are read.
    #[test]
    fn only_the_bare_test_object_is_a_probe() {
        for body in [r#"{"test":true}"#, " {\n  \"test\" : true\n} "] {
            assert!(Format.is_probe(body.as_bytes()), "{body}");
        }
        for body in [
            r#"{"test":true,"statuses":[]}"#,
            r#"{"test":true,"x":1}"#,
            r#"{"test":"true"}"#,
            r#"{"test":1}"#,
            r#"{"test":false}"#,
            r#"[{"test":true}]"#,
            r#"{}"#,
            "not json",
        ] {
            assert!(!Format.is_probe(body.as_bytes()), "{body}");
        }
        let body = br#"{"test":true,"statuses":[{"messageId":"m","status":"read"}]}"#;
        assert_eq!(receipts(body).len(), 1);
        assert_eq!(receipts(body)[0].status, Status::Read);
    }

    #[test]
    fn inbound_only_and_unrelated_bodies_give_no_receipts() {
        for body in [
            r#"{"messages":[{"messageId":"in-1","status":"inbound","text":"hola"}]}"#,
            r#"{"createContact":{"id":"c1"}}"#,
            r#"{"statuses":[{"messageId":"m","status":"edited"}]}"#,
        ] {
            assert!(receipts(body.as_bytes()).is_empty(), "{body}");
        }
    }

    #[test]
    fn a_bare_error_code_is_kept() {
        let body = br#"{"statuses":[{"messageId":"m","status":"error","error":"SPAM"}]}"#;
        assert_eq!(
            receipts(body)[0].error,
            Some(ReceiptError {
                code: Some("SPAM".into()),
                message: "SPAM".into()
            })
        );
    }

    #[test]
    fn malformed_bodies_name_the_field() {
        let cases = [
            (r#"{"statuses":{}}"#, "statuses must be an array"),
            (
                r#"{"statuses":[{"status":"sent"}]}"#,
                "missing statuses[0].messageId",
            ),
            (
                r#"{"statuses":[{"messageId":1,"status":"sent"}]}"#,
                "statuses[0].messageId must be",
            ),
            (
                r#"{"statuses":[{"messageId":"m"}]}"#,
                "missing statuses[0].status",
            ),
            (r#"{"statuses":["m"]}"#, "statuses[0] must be an object"),
            (
                r#"{"statuses":[{"messageId":"m","status":"read","timestamp":true}]}"#,
                "timestamp",
            ),
            (
                r#"{"statuses":[{"messageId":"m","status":"error","error":[1]}]}"#,
                "statuses[0].error",
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
                    code: Some("24_HOURS_EXCEEDED".into()),
                    message: "window closed".into(),
                }),
                occurred_at: Some(Utc.timestamp_opt(1_772_359_202, 0).unwrap()),
                sender: None,
            };
            assert_eq!(receipts(&render(&receipt)), vec![receipt]);
        }
    }

    #[test]
    fn good_key_passes_and_sign_round_trips() {
        let secret = Secret::new(CRM_KEY);
        let signed = testing::signed(sign(&secret));
        assert_eq!(verify(&secret, &request(&signed, b"{}")), Ok(()));
        let lower = testing::headers(&[("Authorization", "bearer crm-key-123")]);
        assert_eq!(verify(&secret, &request(&lower, b"{}")), Ok(()));
    }

    #[test]
    fn wrong_or_missing_key_fails() {
        let secret = Secret::new(CRM_KEY);
        let mismatch = Err(AuthError::Mismatch("Authorization"));
        for value in [
            "Bearer crm-key-12",
            "Basic crm-key-123",
            "crm-key-123",
            "Bearer ",
        ] {
            let headers = testing::headers(&[("Authorization", value)]);
            assert_eq!(
                verify(&secret, &request(&headers, b"{}")),
                mismatch,
                "{value}"
            );
        }
        let none = HeaderMap::new();
        assert_eq!(
            verify(&secret, &request(&none, b"{}")),
            Err(AuthError::Missing("Authorization"))
        );
        let headers = testing::headers(&[("Authorization", "Bearer ")]);
        assert_eq!(
            verify(&Secret::new(""), &request(&headers, b"{}")),
            Err(AuthError::NotConfigured)
        );
    }
}
