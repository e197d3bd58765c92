//! The simulated Waspy API: `POST /api/v2/messages`, `GET /api/v2/messages/{id}`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::send::{REPLAYED_HEADER, SUPPORTED_TYPES};
use crate::config::ProviderKind;
use crate::gateways::simulator::{Call, Decision, InjectedError, MockCore, ReceiptsFor};
use crate::gateways::{Adapter, HttpReply};
use crate::retry::Failure;

/// Waspy's send path (also what the in-process `mock` provider's script rules match).
pub const PATH: &str = "/api/v2/messages";

/// Waspy's routes.
pub fn routes() -> Router<MockCore> {
    Router::new()
        .route(PATH, post(waspy_send))
        .route(&format!("{PATH}/{{id}}"), get(waspy_get))
}

/// An injected error as Waspy would answer it: status, `{"error":{"code","message"}}` and a
/// `Retry-After` when there is one. Without a scripted code, `MOCK_INJECTED` (which no
/// adapter table knows, so the status decides the class).
fn injected_parts(error: &InjectedError) -> (StatusCode, Value, Option<String>) {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let code = error.code.as_deref().unwrap_or("MOCK_INJECTED");
    let body = json!({"error": {"code": code, "message": "injected by the mock gateway"}});
    (status, body, error.retry_after_header())
}

fn injected(error: &InjectedError) -> Response {
    let (status, body, retry_after) = injected_parts(error);
    let mut response = (status, Json(body)).into_response();
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

/// How the Waspy adapter classifies this error in Waspy's answer: the in-process `mock`
/// provider's scripted errors mean what they would mean from Waspy.
pub fn classify(error: &InjectedError) -> Failure {
    let (status, body, retry_after) = injected_parts(error);
    let mut headers = HeaderMap::new();
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.insert("retry-after", value);
    }
    let reply = HttpReply {
        status: status.as_u16(),
        headers,
        body: body.to_string().into(),
    };
    // The adapter's answer classification needs neither its sender nor its key.
    let adapter = super::send::Waspy::new(String::new(), crate::config::Secret::new(String::new()));
    match adapter.response(&reply) {
        Err(failure) => failure,
        // An error status never reads as accepted; kept total rather than panicking.
        Ok(_) => crate::gateways::simulator::injected(error.status),
    }
}

fn waspy_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn waspy_send(
    State(core): State<MockCore>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    send_as(ProviderKind::Waspy, core, uri, headers, body).await
}

/// A send to Waspy's API, answered as Waspy answers it, its receipts and reply in
/// `provider`'s webhook format: the remote `mock` provider speaks Waspy's API but has webhooks
/// of its own (`gateways/mock/simulator.rs`).
pub(crate) async fn send_as(
    provider: ProviderKind,
    core: MockCore,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7);
    if !bearer {
        return waspy_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "missing Bearer API key",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return waspy_error(StatusCode::BAD_REQUEST, "INVALID_BODY", "body is not JSON");
    };
    let kind = body.get("type").and_then(Value::as_str).unwrap_or_default();
    if !SUPPORTED_TYPES.contains(&kind) || body.get(kind).is_none() {
        return waspy_error(
            StatusCode::BAD_REQUEST,
            "INVALID_MESSAGE_TYPE",
            "unknown or empty message type",
        );
    }
    let phone_ok = body
        .get("to")
        .and_then(Value::as_str)
        .is_some_and(|to| to.starts_with('+') && to.len() > 8);
    if !phone_ok {
        return waspy_error(
            StatusCode::BAD_REQUEST,
            "INVALID_PHONE",
            "to must be E.164 with +",
        );
    }
    if body.get("phoneNumberId").and_then(Value::as_str).is_none() {
        return waspy_error(
            StatusCode::BAD_REQUEST,
            "INVALID_CHANNEL",
            "phoneNumberId missing",
        );
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let to = body.get("to").and_then(Value::as_str).map(str::to_owned);
    // The message object is Meta's, flattened into the envelope: `type` and `interactive`.
    let receipts = ReceiptsFor::new(provider, to.as_deref(), Some(&body));
    let call = Call {
        path: uri.path().to_string(),
        to,
        key,
        body: body.clone(),
        receipts: Some(receipts),
    };
    let Some(decision) = core.handle_detached(call).await else {
        return waspy_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "MOCK_FAILED",
            "mock gateway task failed",
        );
    };
    let (status, id, replayed) = match decision {
        Decision::Sent(id) => (StatusCode::CREATED, id, false),
        Decision::Replayed(id) => (StatusCode::CREATED, id, true),
        Decision::Error(error) => return injected(&error),
    };
    let mut response = (
        status,
        Json(json!({
            "data": {
                "id": id,
                "conversationId": uuid::Uuid::new_v4().to_string(),
                "direction": "outbound",
                "type": kind,
                "status": "queued",
                "createdAt": crate::outcome::timestamp(chrono::Utc::now()),
            },
            "meta": {"requestId": uuid::Uuid::new_v4().to_string()}
        })),
    )
        .into_response();
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, "true".parse().expect("static header"));
    }
    response
}

async fn waspy_get(State(core): State<MockCore>, Path(id): Path<String>) -> Response {
    match core.message(&id) {
        Some(body) => Json(json!({
            "data": {
                "id": id,
                "direction": "outbound",
                "type": body.get("type"),
                "content": body,
                "status": "sent",
                "errorCode": null,
                "errorMessage": null,
            }
        }))
        .into_response(),
        None => waspy_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such message"),
    }
}
