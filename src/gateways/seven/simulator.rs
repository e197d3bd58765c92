//! The simulated seven.io WhatsApp API: `POST /api/waba/messages`, `POST /api/waba/events` and
//! `DELETE /api/waba/messages/{id}`, per `shared/providers/seven-waba-messages.txt`.
//!
//! Checks `X-Api-Key` and what the document marks as required, and answers in seven.io's
//! shapes: the document's success body (`success: "100"`, `messages[0].id`) for a send,
//! `{"success": true}` for an event, `{"success": false, "error_code", "error_message"}` for
//! errors. Unlike seven.io, which only echoes `foreign_id`, the simulator deduplicates by it
//! (a repeat gets the original id), so tests can count sends per idempotency key.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::send::{API_KEY_HEADER, EVENTS_PATH, MAX_FOREIGN_ID, PATH, SUCCESS};
use crate::config::ProviderKind;
use crate::gateways::simulator::{Call, Decision, InjectedError, MockCore, ReceiptsFor};

/// The message types the document lists (`text` may also be left out).
const TYPES: &[&str] = &[
    "text",
    "template",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
];

/// The document's limit on `label`.
const MAX_LABEL: usize = 100;

/// The document's price per message in its example answer.
const PRICE: f64 = 0.0735;

/// seven.io's routes.
pub fn routes() -> Router<MockCore> {
    Router::new()
        .route(PATH, post(seven_send))
        .route(EVENTS_PATH, post(seven_event))
        .route(&format!("{PATH}/{{id}}"), delete(seven_delete))
}

/// The document's error body.
fn seven_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        Json(json!({"success": false, "error_code": code, "error_message": message})),
    )
        .into_response()
}

fn invalid(message: &str) -> Response {
    seven_error(StatusCode::BAD_REQUEST, 400, message)
}

/// Whether the request carries an API key (any non-empty one: the simulator has no accounts).
/// seven.io's code for a failed authentication is 900; the HTTP status it comes with is not
/// documented, 401 is what a client expects.
fn unauthenticated(headers: &HeaderMap) -> Option<Response> {
    let present = headers
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty());
    (!present).then(|| {
        seven_error(
            StatusCode::UNAUTHORIZED,
            900,
            "Authentication failed. Check the API key.",
        )
    })
}

fn digits(value: Option<&Value>) -> bool {
    value
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
}

/// `[A-Za-z0-9.\-_@]{1,max}`, the alphabet of `foreign_id` and `label`.
fn id_like(value: &Value, max: usize) -> bool {
    value.as_str().is_some_and(|s| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@'))
    })
}

fn non_empty_str(body: &Value, field: &str) -> bool {
    body.get(field)
        .and_then(Value::as_str)
        .is_some_and(|s| !s.trim().is_empty())
}

/// The first problem the document's parameter list gives `body`, as seven.io's 400.
fn validation_error(body: &Value) -> Option<Response> {
    if !digits(body.get("from")) {
        return Some(invalid("Invalid WhatsApp sender number"));
    }
    if !digits(body.get("to")) {
        return Some(invalid("Invalid recipient number"));
    }
    if body
        .get("foreign_id")
        .is_some_and(|v| !id_like(v, MAX_FOREIGN_ID))
    {
        return Some(invalid("Invalid foreign_id"));
    }
    if body.get("label").is_some_and(|v| !id_like(v, MAX_LABEL)) {
        return Some(invalid("Invalid label"));
    }
    let kind = match body.get("type") {
        None => "text",
        Some(kind) => match kind.as_str().filter(|k| TYPES.contains(k)) {
            Some(kind) => kind,
            None => return Some(invalid("Invalid message type")),
        },
    };
    let https = |field: &str| {
        body.get(field)
            .and_then(Value::as_str)
            .is_some_and(|u| u.starts_with("https://") || u.starts_with("http://"))
    };
    let problem = match kind {
        "text" => (!non_empty_str(body, "text")).then_some("Missing text"),
        "template" => (!non_empty_str(body, "template") || !non_empty_str(body, "language"))
            .then_some("Missing template or language"),
        "image" | "video" | "audio" | "sticker" => (!https("url")).then_some("Invalid url"),
        "document" => (!https("url") || !non_empty_str(body, "filename"))
            .then_some("Invalid url or missing filename"),
        "location" => {
            let number = |f: &str| body.get(f).is_some_and(Value::is_number);
            (!number("latitude") || !number("longitude")).then_some("Invalid coordinates")
        }
        "contacts" => {
            let ok = body
                .get("contacts")
                .and_then(Value::as_array)
                .is_some_and(|c| {
                    !c.is_empty()
                        && c.iter().all(|c| {
                            c.pointer("/name/first_name").is_some_and(Value::is_string)
                                && c.get("phones")
                                    .and_then(Value::as_array)
                                    .is_some_and(|p| !p.is_empty())
                        })
                });
            (!ok).then_some("Invalid contacts")
        }
        _ => interactive_problem(body),
    };
    problem.map(invalid)
}

/// What is wrong with an interactive message, if anything.
fn interactive_problem(body: &Value) -> Option<&'static str> {
    if !non_empty_str(body, "body") {
        return Some("Missing body");
    }
    match body.get("interactive_type").and_then(Value::as_str) {
        Some("button") => {
            let count = body.get("buttons").and_then(Value::as_array).map(Vec::len);
            // "Array de 2-3 objetos de botón".
            (!matches!(count, Some(2..=3))).then_some("Interactive buttons need 2-3 buttons")
        }
        Some("list") => {
            let sections = body.get("sections").and_then(Value::as_array);
            (!non_empty_str(body, "button_text") || sections.is_none_or(Vec::is_empty))
                .then_some("Interactive lists need button_text and sections")
        }
        _ => Some("Invalid interactive_type"),
    }
}

/// An injected error in seven.io's body: a scripted code in `error_code` (a number when it
/// is one, as seven.io's are), else 401/403 as its auth code 900 and others under their HTTP
/// status as the code; `Retry-After` when there is one (always on a 429).
fn injected(error: &InjectedError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let code = match error.code.as_deref() {
        Some(code) => code
            .parse::<u64>()
            .map_or_else(|_| json!(code), |n| json!(n)),
        None => match status.as_u16() {
            401 | 403 => json!(900),
            other => json!(other),
        },
    };
    let mut response = (
        status,
        Json(json!({
            "success": false,
            "error_code": code,
            "error_message": "injected by the mock gateway",
        })),
    )
        .into_response();
    if let Some(value) = error
        .retry_after_header()
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

fn task_failed() -> Response {
    seven_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        500,
        "mock gateway task failed",
    )
}

async fn seven_send(
    State(core): State<MockCore>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(response) = unauthenticated(&headers) {
        return response;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return invalid("Body is not JSON");
    };
    if let Some(response) = validation_error(&body) {
        return response;
    }
    let key = body
        .get("foreign_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (sender, recipient, label) = (
        body["from"].clone(),
        body["to"].clone(),
        body.get("label").cloned().unwrap_or(Value::Null),
    );
    let mut content = body.clone();
    if let Some(object) = content.as_object_mut() {
        for field in ["from", "to", "foreign_id", "label"] {
            object.remove(field);
        }
    }
    let call = Call {
        path: uri.path().to_string(),
        to: recipient.as_str().map(str::to_owned),
        key: key.clone(),
        body,
        // seven.io's reports echo the request's foreign_id. Its buttons are its own
        // `interactive_type` fields, not Meta's.
        receipts: Some(ReceiptsFor {
            job_id: key,
            ..ReceiptsFor::new(ProviderKind::Seven, recipient.as_str(), None)
        }),
    };
    let Some(decision) = core.handle_detached(call).await else {
        return task_failed();
    };
    let id = match decision {
        Decision::Sent(id) => id,
        // seven.io itself would send a repeat again; the simulator answers with the original.
        Decision::Replayed(id) => id,
        Decision::Error(error) => return injected(&error),
    };
    // The document's answer, message content echoed as a JSON string in `text`.
    Json(json!({
        "success": SUCCESS,
        "total_price": PRICE,
        "balance": 123.45,
        "debug": "false",
        "sms_type": "WA",
        "messages": [{
            "id": id,
            "sender": sender,
            "recipient": recipient,
            "text": content.to_string(),
            "encoding": "gsm",
            "label": label,
            "parts": 1,
            "udh": null,
            "is_binary": false,
            "price": PRICE,
            "channel": "WA",
            "success": true,
            "error": null,
            "error_text": null,
        }],
    }))
    .into_response()
}

async fn seven_event(
    State(core): State<MockCore>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(response) = unauthenticated(&headers) {
        return response;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return invalid("Body is not JSON");
    };
    match body.get("event").and_then(Value::as_str) {
        Some("reaction") => {
            let Some(msg_id) = body.get("msg_id").and_then(Value::as_str) else {
                return invalid("Missing msg_id");
            };
            // An empty emoji removes the reaction, so only its presence is required.
            if !body.get("emoji").is_some_and(Value::is_string) {
                return invalid("Missing emoji");
            }
            // The document's 404: the message does not exist (in this simulator).
            if core.message(msg_id).is_none() {
                return seven_error(StatusCode::NOT_FOUND, 404, "Message not found");
            }
        }
        Some("read" | "is_typing") => {
            if !digits(body.get("from")) {
                return invalid("Invalid WhatsApp sender number");
            }
            if !digits(body.get("to")) && !non_empty_str(&body, "msg_id") {
                return invalid("Either to or msg_id is required");
            }
        }
        _ => return invalid("Invalid event"),
    }
    // Events carry no foreign_id: nothing to deduplicate by.
    let call = Call {
        path: uri.path().to_string(),
        to: body.get("to").and_then(Value::as_str).map(str::to_owned),
        key: None,
        body,
        receipts: None,
    };
    match core.handle_detached(call).await {
        None => task_failed(),
        Some(Decision::Error(error)) => injected(&error),
        Some(_) => Json(json!({"success": true})).into_response(),
    }
}

/// Messages of the simulator are sent at once, never scheduled: a known id is "already sent",
/// an unknown one the document's 404 body.
async fn seven_delete(
    State(core): State<MockCore>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(response) = unauthenticated(&headers) {
        return response;
    }
    if core.message(&id).is_some() {
        return invalid("Message already sent. WhatsApp does not support message revocation.");
    }
    (
        StatusCode::NOT_FOUND,
        Json(json!({"code": 404, "message": "Page not found", "errors": []})),
    )
        .into_response()
}
