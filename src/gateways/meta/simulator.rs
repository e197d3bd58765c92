//! The simulated Meta WhatsApp Cloud API: `POST /{api_version}/{phone_number_id}/messages`.
//!
//! Answers in Graph API shapes: `{"messaging_product","contacts":[{"input","wa_id"}],
//! "messages":[{"id":"wamid.…"}]}` on success, `{"error":{"message","type","code",
//! "error_data","error_subcode","fbtrace_id"}}` on failure. Meta has no idempotency, so
//! every accepted request is a new message with a new wamid, repeats included.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use crate::config::ProviderKind;
use crate::gateways::simulator::{Call, Decision, InjectedError, MockCore, ReceiptsFor};

/// Fields of the send body that are Meta's envelope, not the message object.
const ENVELOPE: &[&str] = &[
    "messaging_product",
    "recipient_type",
    "to",
    "biz_opaque_callback_data",
];

/// The message id Meta's API answers for the simulator's id `id`: a `wamid.…`.
pub fn wire_id(id: &str) -> String {
    format!("wamid.{id}")
}

/// Meta's routes.
pub fn routes() -> Router<MockCore> {
    Router::new().route("/{version}/{phone_number_id}/messages", post(meta_send))
}

/// A Graph API error body with `code` (and the type Meta uses for it).
fn meta_error(status: StatusCode, code: u32, kind: &str, message: &str, details: &str) -> Response {
    (
        status,
        Json(json!({"error": {
            "message": format!("(#{code}) {message}"),
            "type": kind,
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": format!("Mock{}", uuid::Uuid::new_v4().simple()),
        }})),
    )
        .into_response()
}

/// Meta's "(#100) Invalid parameter" with what was wrong.
fn invalid_parameter(details: &str) -> Response {
    meta_error(
        StatusCode::BAD_REQUEST,
        100,
        "OAuthException",
        "Invalid parameter",
        details,
    )
}

/// How Meta reports an injected error: a scripted code as given (Meta's codes are numbers;
/// a non-numeric one is sent as a string, which the adapter classifies by status), else the
/// documented code that comes with the status; `Retry-After` when there is one.
fn injected(error: &InjectedError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let (default_code, default_message): (u32, &str) = match status.as_u16() {
        429 => (130429, "Rate limit hit"),
        401 => (190, "Invalid OAuth access token"),
        403 => (10, "Application does not have permission for this action"),
        400..=499 => (100, "Invalid parameter"),
        // 131000 is Meta's generic "Something went wrong" for server-side failures.
        _ => (131000, "Something went wrong"),
    };
    let code = match error.code.as_deref() {
        None => json!(default_code),
        Some(code) => code
            .parse::<u32>()
            .map_or_else(|_| json!(code), |n| json!(n)),
    };
    let message = match code.as_u64() {
        Some(131047) => "Re-engagement message",
        Some(131026) => "Message undeliverable",
        Some(n) if n == u64::from(default_code) => default_message,
        _ => "Scripted error",
    };
    let mut response = (
        status,
        Json(json!({"error": {
            "message": format!("(#{}) {message}", code.as_u64().map_or_else(|| code.to_string(), |n| n.to_string())),
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": "injected by the mock gateway"},
            "fbtrace_id": format!("Mock{}", uuid::Uuid::new_v4().simple()),
        }})),
    )
        .into_response();
    // Meta documents no Retry-After: only a scripted one is sent.
    if let Some(after) = error.retry_after {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(after.as_secs()));
    }
    response
}

async fn meta_send(
    State(core): State<MockCore>,
    Path((version, phone_number_id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| !token.trim().is_empty());
    if !bearer {
        return meta_error(
            StatusCode::UNAUTHORIZED,
            190,
            "OAuthException",
            "Invalid OAuth access token - Cannot parse access token",
            "missing Bearer access token",
        );
    }
    let version_ok = version
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(major, minor)| {
            [major, minor]
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        });
    if !version_ok {
        return meta_error(
            StatusCode::BAD_REQUEST,
            2500,
            "OAuthException",
            "Unknown path components",
            &format!("unknown API version {version}"),
        );
    }
    if phone_number_id.is_empty() || !phone_number_id.bytes().all(|b| b.is_ascii_digit()) {
        // What Graph answers for an object id that is not one of the token's numbers.
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {
                "message": format!("Unsupported post request. Object with ID '{phone_number_id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."),
                "type": "GraphMethodException",
                "code": 100,
                "error_subcode": 33,
                "fbtrace_id": format!("Mock{}", uuid::Uuid::new_v4().simple()),
            }})),
        )
            .into_response();
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return invalid_parameter("the body must be a JSON object");
    };
    if body.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return meta_error(
            StatusCode::BAD_REQUEST,
            100,
            "OAuthException",
            "The parameter messaging_product is required.",
            "messaging_product must be \"whatsapp\"",
        );
    }
    if let Some(kind) = body.get("recipient_type").and_then(Value::as_str)
        && kind != "individual"
    {
        return invalid_parameter("recipient_type must be \"individual\"");
    }
    // Meta takes the number with or without `+`, other punctuation not.
    let to = body
        .get("to")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let digits = to.strip_prefix('+').unwrap_or(&to).to_string();
    if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return invalid_parameter("to must be a phone number in E.164 digits");
    }
    if body
        .get("biz_opaque_callback_data")
        .and_then(Value::as_str)
        .is_some_and(|data| data.chars().count() > 512)
    {
        return invalid_parameter("biz_opaque_callback_data is limited to 512 characters");
    }
    // The rest is the message object: validate it with the canonical rules, which are Meta's.
    let message: Map<String, Value> = body
        .iter()
        .filter(|(k, _)| !ENVELOPE.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Err(e) = serde_json::from_value::<crate::job::Message>(Value::Object(message)) {
        return invalid_parameter(&e.to_string());
    }

    // Meta's status webhooks echo it: the receipts carry it back.
    let callback_data = body
        .get("biz_opaque_callback_data")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let body = Value::Object(body);
    let receipts = ReceiptsFor {
        job_id: callback_data,
        ..ReceiptsFor::new(ProviderKind::Meta, Some(&to), Some(&body))
    };
    // No idempotency key: Meta sends every request it accepts.
    let call = Call {
        path: uri.path().to_string(),
        to: Some(to.clone()),
        key: None,
        body,
        receipts: Some(receipts),
    };
    let Some(decision) = core.handle_detached(call).await else {
        return injected(&InjectedError::status(500));
    };
    let wamid = match decision {
        // Replays cannot happen without a key; answered as a fresh send if they ever did.
        Decision::Sent(id) | Decision::Replayed(id) => wire_id(&id),
        Decision::Error(error) => return injected(&error),
    };
    Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": digits}],
        "messages": [{"id": wamid}],
    }))
    .into_response()
}
