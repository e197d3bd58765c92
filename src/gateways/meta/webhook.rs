//! Meta's WhatsApp Cloud API status webhooks, per the Meta section of
//! `shared/providers/RECEIPTS.md`.
//!
//! - **Auth**: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`. The
//!   subscription handshake (`GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`),
//!   which answers the challenge, is [`handshake`].
//! - **Body**: `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages",
//!   "value":{"metadata":{…},"statuses":[…]}}]}]}`. One POST may hold many entries, changes and
//!   statuses; inbound `messages`, changes of other fields and other `object`s carry no receipts.
//! - **Correlation**: `statuses[].id` is the wamid the send answer gave;
//!   `biz_opaque_callback_data` echoes the job id the send adapter put there.
//! - **Errors**: `errors[0]` of a `failed` status: `code` (a number, kept as text) and a message
//!   built from `message` (or `title`) and `error_data.details`, which is the useful part.
//! - Order is not guaranteed and Meta retries deliveries for 7 days: duplicates and `read`
//!   before `delivered` are the consumer's business (SPEC §6), not this parser's.

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::config::Secret;
use crate::gateways::webhook::fields::{self, Object};
use crate::gateways::webhook::{
    AuthError, ParseError, Parsed, Receipt, ReceiptError, WebhookFormat, WebhookRequest,
    constant_time_eq, hmac_sha256_hex,
};
use crate::outcome::Status;

/// The signature header (lower case, as `HeaderName` wants it).
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// What precedes the hex digest in [`SIGNATURE_HEADER`].
const SIGNATURE_PREFIX: &str = "sha256=";

/// The `object` of WhatsApp Business Account webhooks; other objects carry no receipts.
pub const OBJECT: &str = "whatsapp_business_account";

/// The change `field` that carries message statuses.
const MESSAGES_FIELD: &str = "messages";

/// Meta's status words. Anything else (the deprecated `deleted`, `warning`) is skipped.
pub const STATUSES: &[(&str, Status)] = &[
    ("sent", Status::Sent),
    ("delivered", Status::Delivered),
    ("read", Status::Read),
    ("failed", Status::Failed),
];

/// Check `X-Hub-Signature-256` against the app secret.
pub fn verify(secret: &Secret, request: &WebhookRequest<'_>) -> Result<(), AuthError> {
    const NAME: &str = "X-Hub-Signature-256";
    let key = fields::secret_bytes(secret)?;
    let received = request
        .headers
        .get(SIGNATURE_HEADER)
        .ok_or(AuthError::Missing(NAME))?
        .as_bytes();
    let digest = received
        .strip_prefix(SIGNATURE_PREFIX.as_bytes())
        .ok_or(AuthError::Mismatch(NAME))?;
    if fields::hex_matches(&hmac_sha256_hex(key, request.body), digest) {
        Ok(())
    } else {
        Err(AuthError::Mismatch(NAME))
    }
}

/// Answer Meta's subscription handshake: the `hub.challenge` to echo when `hub.mode` is
/// `subscribe` and `hub.verify_token` matches (the listener answers 403 on any error).
pub fn handshake(query: &str, verify_token: &Secret) -> Result<String, AuthError> {
    let expected = fields::secret_bytes(verify_token)?;
    match fields::query_param(query, "hub.mode").as_deref() {
        Some("subscribe") => {}
        Some(_) => return Err(AuthError::Mismatch("hub.mode")),
        None => return Err(AuthError::Missing("hub.mode")),
    }
    let token = fields::query_param(query, "hub.verify_token")
        .ok_or(AuthError::Missing("hub.verify_token"))?;
    if !constant_time_eq(token.as_bytes(), expected) {
        return Err(AuthError::Mismatch("hub.verify_token"));
    }
    fields::query_param(query, "hub.challenge").ok_or(AuthError::Missing("hub.challenge"))
}

/// Read every status in a webhook body.
pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let root = fields::body_object(body)?;
    if let Some(object) = fields::opt_str(&root, "object", "")?
        && object != OBJECT
    {
        tracing::debug!(object = %fields::preview(object), "meta webhook for another object");
        return Ok(Parsed::Receipts(Vec::new()));
    }
    let entries =
        fields::opt_array(&root, "entry", "")?.ok_or_else(|| ParseError("missing entry".into()))?;
    let mut receipts = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("entry[{i}]");
        let entry = fields::as_object(entry, &at)?;
        let changes = fields::opt_array(entry, "changes", &at)?.unwrap_or_default();
        for (j, change) in changes.iter().enumerate() {
            let at = format!("{at}.changes[{j}]");
            let change = fields::as_object(change, &at)?;
            if fields::opt_str(change, "field", &at)? != Some(MESSAGES_FIELD) {
                continue;
            }
            let Some(value) = fields::opt_object(change, "value", &at)? else {
                continue;
            };
            let at = format!("{at}.value");
            let statuses = fields::opt_array(value, "statuses", &at)?.unwrap_or_default();
            for (k, item) in statuses.iter().enumerate() {
                receipts.extend(status(item, &format!("{at}.statuses[{k}]"))?);
            }
        }
    }
    Ok(Parsed::Receipts(receipts))
}

/// One `statuses[]` item; `None` for a status word we do not track.
fn status(item: &Value, at: &str) -> Result<Option<Receipt>, ParseError> {
    let item = fields::as_object(item, at)?;
    let id = fields::req_str(item, "id", at)?;
    let word = fields::req_str(item, "status", at)?;
    let occurred_at = fields::opt_timestamp(item, "timestamp", at)?;
    let job_id = fields::opt_str(item, "biz_opaque_callback_data", at)?.map(str::to_owned);
    let Some(status) = fields::lookup(STATUSES, word) else {
        tracing::debug!(status = %fields::preview(word), at, "meta status skipped");
        return Ok(None);
    };
    let error = match fields::opt_array(item, "errors", at)?.and_then(<[Value]>::first) {
        Some(first) if status == Status::Failed => Some(error(first, &format!("{at}.errors[0]"))?),
        _ => None,
    };
    Ok(Some(Receipt {
        provider_message_id: id.to_owned(),
        status,
        job_id,
        error,
        occurred_at,
    }))
}

fn error(value: &Value, at: &str) -> Result<ReceiptError, ParseError> {
    let error: &Object = fields::as_object(value, at)?;
    let code = fields::opt_text(error, "code", at)?;
    let headline = match fields::opt_str(error, "message", at)? {
        Some(message) => Some(message),
        None => fields::opt_str(error, "title", at)?,
    };
    let details = match fields::opt_object(error, "error_data", at)? {
        Some(data) => fields::opt_str(data, "details", &fields::path(at, "error_data"))?,
        None => None,
    };
    let message = match (headline, details) {
        (Some(headline), Some(details)) if headline != details => format!("{headline}: {details}"),
        (Some(text), _) | (None, Some(text)) => text.to_owned(),
        (None, None) => "Meta gave no message".to_owned(),
    };
    Ok(ReceiptError { code, message })
}

/// A webhook body holding `receipt`, as Meta sends it.
pub fn render(receipt: &Receipt) -> Vec<u8> {
    let mut status = json!({
        "id": receipt.provider_message_id,
        "status": receipt.status.as_str(),
    });
    if let Some(at) = receipt.occurred_at {
        status["timestamp"] = json!(at.timestamp().to_string());
    }
    if let Some(job_id) = &receipt.job_id {
        status["biz_opaque_callback_data"] = json!(job_id);
    }
    if let Some(error) = &receipt.error {
        // Meta's codes are numbers; a non-numeric code (from a test) stays a string.
        let code = match error.code.as_deref().map(str::parse::<i64>) {
            Some(Ok(number)) => json!(number),
            Some(Err(_)) => json!(error.code),
            None => Value::Null,
        };
        status["errors"] = json!([{
            "code": code,
            "title": error.message,
            "message": error.message,
        }]);
    }
    json!({
        "object": OBJECT,
        "entry": [{
            "id": "0",
            "changes": [{
                "field": MESSAGES_FIELD,
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {},
                    "statuses": [status],
                },
            }],
        }],
    })
    .to_string()
    .into_bytes()
}

/// The `X-Hub-Signature-256` header for `body`.
pub fn sign(secret: &Secret, body: &[u8]) -> Vec<(HeaderName, HeaderValue)> {
    let digest = hmac_sha256_hex(secret.expose().as_bytes(), body);
    fields::header(
        SIGNATURE_HEADER,
        &format!("{SIGNATURE_PREFIX}{digest}"),
        false,
    )
    .into_iter()
    .collect()
}

/// Meta's webhook format, as the listener and the simulator use it.
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

    fn handshake(&self, query: &str, token: &Secret) -> Option<Result<String, AuthError>> {
        Some(handshake(query, token))
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
        body: &[u8],
        _now: DateTime<Utc>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        sign(secret, body)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use reqwest::header::HeaderMap;

    use super::*;
    use crate::gateways::webhook::fields::testing;

    const APP_SECRET: &str = "meta-app-secret";

    /// RECEIPTS.md's status webhook: a failed and a delivered status, an inbound message and
    /// a change of another field in the same POST.
    const FIXTURE: &str = r#"{
      "object": "whatsapp_business_account",
      "entry": [{
        "id": "102290129340398",
        "changes": [
          {"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "statuses": [
              {"id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA",
               "status": "failed", "timestamp": "1750263773",
               "recipient_id": "16505551234", "biz_opaque_callback_data": "ord-1847-confirm",
               "errors": [{"code": 131047, "title": "Re-engagement message",
                           "message": "Re-engagement message",
                           "error_data": {"details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}}]},
              {"id": "wamid.second", "status": "delivered", "timestamp": "1750263780",
               "recipient_id": "16505551234",
               "conversation": {"id": "c1", "origin": {"type": "utility"}},
               "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility"}}
            ]}},
          {"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": "16505551234"}],
            "messages": [{"from": "16505551234", "id": "wamid.in", "timestamp": "1750263790",
                          "type": "text", "text": {"body": "hola"}}]}},
          {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}}
        ]
      }]
    }"#;

    fn at(secs: i64) -> chrono::DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    fn receipts(body: &[u8]) -> Vec<Receipt> {
        match parse(body).unwrap() {
            Parsed::Receipts(receipts) => receipts,
            Parsed::Probe => panic!("meta has no probe"),
        }
    }

    fn request<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> WebhookRequest<'a> {
        WebhookRequest {
            method: "POST",
            url: "https://hooks.example.com/webhooks/meta-mx",
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
                    provider_message_id:
                        "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA".into(),
                    status: Status::Failed,
                    job_id: Some("ord-1847-confirm".into()),
                    error: Some(ReceiptError {
                        code: Some("131047".into()),
                        message: "Re-engagement message: Message failed to send because more \
                                  than 24 hours have passed since the customer last replied to \
                                  this number."
                            .into(),
                    }),
                    occurred_at: Some(at(1_750_263_773)),
                },
                Receipt {
                    provider_message_id: "wamid.second".into(),
                    status: Status::Delivered,
                    job_id: None,
                    error: None,
                    occurred_at: Some(at(1_750_263_780)),
                },
            ]
        );
    }

    #[test]
    fn inbound_and_unrelated_bodies_give_no_receipts() {
        let inbound = r#"{"object":"whatsapp_business_account","entry":[{"changes":[
            {"field":"messages","value":{"messages":[{"id":"wamid.in","type":"text"}]}}]}]}"#;
        assert!(receipts(inbound.as_bytes()).is_empty());
        let other_object = r#"{"object":"page","entry":[{"changes":[]}]}"#;
        assert!(receipts(other_object.as_bytes()).is_empty());
        let other_field = r#"{"object":"whatsapp_business_account","entry":[{"changes":[
            {"field":"message_template_status_update","value":{"statuses":"not ours"}}]}]}"#;
        assert!(receipts(other_field.as_bytes()).is_empty());
    }

    #[test]
    fn unknown_status_words_are_skipped_not_errors() {
        let body = r#"{"object":"whatsapp_business_account","entry":[{"changes":[
            {"field":"messages","value":{"statuses":[
              {"id":"wamid.a","status":"deleted","timestamp":"1750263773"},
              {"id":"wamid.b","status":"read","timestamp":"1750263774"}]}}]}]}"#;
        let got = receipts(body.as_bytes());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].provider_message_id, "wamid.b");
        assert_eq!(got[0].status, Status::Read);
    }

    #[test]
    fn malformed_bodies_name_the_field() {
        let cases = [
            (r#"{"object":"whatsapp_business_account"}"#, "missing entry"),
            (r#"{"entry":{}}"#, "entry must be an array"),
            (
                r#"{"entry":[{"changes":[{"field":"messages","value":{"statuses":[
                {"status":"sent"}]}}]}]}"#,
                "missing entry[0].changes[0].value.statuses[0].id",
            ),
            (
                r#"{"entry":[{"changes":[{"field":"messages","value":{"statuses":[
                {"id":7,"status":"sent"}]}}]}]}"#,
                "statuses[0].id must be a string",
            ),
            (
                r#"{"entry":[{"changes":[{"field":"messages","value":{"statuses":[
                {"id":"w"}]}}]}]}"#,
                "missing entry[0].changes[0].value.statuses[0].status",
            ),
            (
                r#"{"entry":[{"changes":[{"field":"messages","value":{"statuses":[
                {"id":"w","status":"sent","timestamp":"soon"}]}}]}]}"#,
                "timestamp is not",
            ),
            (
                r#"{"entry":[{"changes":[{"field":"messages","value":{"statuses":[
                {"id":"w","status":"failed","errors":["x"]}]}}]}]}"#,
                "errors[0] must be an object",
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
                provider_message_id: "wamid.round".into(),
                status,
                job_id: Some("job-1".into()),
                error: (status == Status::Failed).then(|| ReceiptError {
                    code: Some("131026".into()),
                    message: "Message undeliverable".into(),
                }),
                occurred_at: Some(at(1_750_000_000)),
            };
            assert_eq!(receipts(&render(&receipt)), vec![receipt]);
        }
    }

    #[test]
    fn good_signature_passes_and_sign_round_trips() {
        let secret = Secret::new(APP_SECRET);
        let body = FIXTURE.as_bytes();
        let headers = testing::signed(sign(&secret, body));
        assert_eq!(verify(&secret, &request(&headers, body)), Ok(()));
        // As a hand-computed header, in upper case hex too.
        let digest = hmac_sha256_hex(APP_SECRET.as_bytes(), body).to_uppercase();
        let headers = testing::headers(&[("X-Hub-Signature-256", &format!("sha256={digest}"))]);
        assert_eq!(verify(&secret, &request(&headers, body)), Ok(()));
    }

    #[test]
    fn bad_or_missing_signatures_fail() {
        let secret = Secret::new(APP_SECRET);
        let body = FIXTURE.as_bytes();
        let mismatch = Err(AuthError::Mismatch("X-Hub-Signature-256"));
        let other_key = testing::signed(sign(&Secret::new("other"), body));
        assert_eq!(verify(&secret, &request(&other_key, body)), mismatch);
        let tampered = testing::signed(sign(&secret, body));
        assert_eq!(verify(&secret, &request(&tampered, b"{}")), mismatch);
        let digest = hmac_sha256_hex(APP_SECRET.as_bytes(), body);
        let no_prefix = testing::headers(&[("X-Hub-Signature-256", &digest)]);
        assert_eq!(verify(&secret, &request(&no_prefix, body)), mismatch);
        let none = HeaderMap::new();
        assert_eq!(
            verify(&secret, &request(&none, body)),
            Err(AuthError::Missing("X-Hub-Signature-256"))
        );
        assert_eq!(
            verify(&Secret::new(""), &request(&tampered, body)),
            Err(AuthError::NotConfigured)
        );
    }

    #[test]
    fn handshake_echoes_the_challenge_only_for_the_right_token() {
        let token = Secret::new("tok en&1");
        let good = "hub.mode=subscribe&hub.verify_token=tok+en%261&hub.challenge=1158201444";
        assert_eq!(handshake(good, &token), Ok("1158201444".into()));
        assert_eq!(
            handshake(
                "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
                &token
            ),
            Err(AuthError::Mismatch("hub.verify_token"))
        );
        assert_eq!(
            handshake("hub.mode=subscribe&hub.challenge=1", &token),
            Err(AuthError::Missing("hub.verify_token"))
        );
        assert_eq!(
            handshake(
                "hub.mode=unsubscribe&hub.verify_token=tok+en%261&hub.challenge=1",
                &token
            ),
            Err(AuthError::Mismatch("hub.mode"))
        );
        assert_eq!(
            handshake("hub.mode=subscribe&hub.verify_token=tok+en%261", &token),
            Err(AuthError::Missing("hub.challenge"))
        );
        assert_eq!(
            handshake(good, &Secret::new("")),
            Err(AuthError::NotConfigured)
        );
    }
}
