//! Waspy's webhooks (also the format of the in-process `mock` gateway), per the Waspy section
//! of `shared/providers/RECEIPTS.md` and SPEC §6.
//!
//! - **Auth**: Waspy documents no signature scheme, so the channel's webhook secret is sent
//!   back verbatim, in header `X-Webhook-Secret` or query parameter `secret` (the header wins
//!   when both are present), and compared in constant time.
//! - **Body**: `{"event","webhookId","deliveredAt","attempt","data":{"id","status",
//!   "waMessageId","errorCode","errorMessage","direction",…}}`. The outbound status event
//!   names are unknown, so `event` is not read: a body is a receipt when `data.status` is one
//!   of `sent|delivered|read|failed`, correlated by `data.id` (the id of the send answer).
//!   `queued` is not a receipt; `direction: "inbound"` is a customer's message.
//! - **Assumptions** (documented nowhere): a `data` without `status` is another kind of event
//!   (conversation, contact) and carries no receipt; the time of the report is `data.updatedAt`
//!   when present, else the envelope's `deliveredAt` (when Waspy sent the webhook, which is at
//!   or just after the change); `errorCode`/`errorMessage` explain a `failed`.
//! - `attempt` shows Waspy retries deliveries: duplicates are expected downstream.

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;

use crate::config::Secret;
use crate::gateways::webhook::fields;
use crate::gateways::webhook::{
    AuthError, ParseError, Parsed, Receipt, ReceiptError, WebhookFormat, WebhookRequest,
    constant_time_eq,
};
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

/// Read the receipt, if any, in a webhook body.
pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let root = fields::body_object(body)?;
    let data =
        fields::opt_object(&root, "data", "")?.ok_or_else(|| ParseError("missing data".into()))?;
    let none = Ok(Parsed::receipts(Vec::new()));
    if fields::opt_str(data, "direction", "data")? == Some(INBOUND) {
        return none;
    }
    let Some(word) = fields::opt_str(data, "status", "data")? else {
        tracing::debug!("waspy webhook without data.status: not a message status");
        return none;
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
        return none;
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

    fn receipts(body: &[u8]) -> Vec<Receipt> {
        match parse(body).unwrap() {
            Parsed::Batch(batch) => batch.receipts,
            Parsed::Probe => panic!("waspy has no probe"),
        }
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
        for body in [
            r#"{"event":"message.created","data":{"id":"m1","status":"queued"}}"#,
            r#"{"event":"message.received","data":{"id":"m2","status":"delivered","direction":"inbound"}}"#,
            r#"{"event":"conversation.updated","data":{"id":"c1","serviceWindowExpiresAt":"x"}}"#,
            r#"{"event":"message.updated","data":{"id":"m3","status":"deleted"}}"#,
        ] {
            assert!(receipts(body.as_bytes()).is_empty(), "{body}");
        }
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
