//! The simulated Waspy API: `POST /api/v2/messages`, `GET /api/v2/messages/{id}`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{Decision, MockCore};
use crate::providers::waspy::{REPLAYED_HEADER, SUPPORTED_TYPES};

/// Waspy's routes.
pub fn routes() -> Router<MockCore> {
    Router::new()
        .route("/api/v2/messages", post(waspy_send))
        .route("/api/v2/messages/{id}", get(waspy_get))
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
    // A real gateway finishes a send even when the client hangs up mid-call; running the
    // decision on its own task keeps that true here (hyper drops a handler whose client left).
    let decision = {
        let core = core.clone();
        let body = body.clone();
        tokio::spawn(async move { core.handle(key.as_deref(), body).await })
    };
    let Ok(decision) = decision.await else {
        return waspy_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "MOCK_FAILED",
            "mock gateway task failed",
        );
    };
    let (status, id, replayed) = match decision {
        Decision::Sent(id) => (StatusCode::CREATED, id, false),
        Decision::Replayed(id) => (StatusCode::CREATED, id, true),
        Decision::Error(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut response = waspy_error(status, "MOCK_INJECTED", "injected by the mock gateway");
            if status == StatusCode::TOO_MANY_REQUESTS {
                response
                    .headers_mut()
                    .insert("retry-after", "1".parse().expect("static header"));
            }
            return response;
        }
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
