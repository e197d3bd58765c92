//! The built-in gateway simulator (SPEC §8 `mock`).
//!
//! One core, [`MockCore`], decides what a gateway would answer: injected latency and
//! errors, idempotency by key (a repeat gets the original id, marked replayed), and
//! counters per key so tests and benchmarks can prove each key was sent once. It runs
//! in process behind the `mock` provider ([`InProcess`]) and as an HTTP server speaking
//! Waspy's API ([`serve`], `mensajero mock-gateway`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng;
use serde::Serialize;
use serde_json::{Value, json};

use super::{Accepted, SendContext, SendResult};
use crate::config::MockOptions;
use crate::job::Job;
use crate::retry::Failure;

/// What the simulated gateway decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Sent now, under this new id.
    Sent(String),
    /// Already sent under this key: the original id, replayed.
    Replayed(String),
    /// An injected error with this HTTP status.
    Error(u16),
}

/// Counters a test or benchmark reads back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Requests received (counted on arrival), errors included.
    pub requests: u64,
    /// Messages actually sent (first request per key, or keyless).
    pub sent: u64,
    /// Requests answered from the idempotency cache.
    pub replayed: u64,
    /// Injected errors.
    pub errors: u64,
    /// Requests per idempotency key.
    pub requests_by_key: HashMap<String, u64>,
}

#[derive(Default)]
struct Inner {
    stats: Stats,
    /// Idempotency key → message id.
    by_key: HashMap<String, String>,
    /// Message id → (key, body) for `GET /api/v2/messages/{id}`.
    messages: HashMap<String, Value>,
}

/// The simulator's decision logic and state, shared by the in-process provider and the server.
#[derive(Clone)]
pub struct MockCore {
    options: MockOptions,
    inner: Arc<Mutex<Inner>>,
}

impl MockCore {
    /// A simulator behaving as `options` say.
    pub fn new(options: MockOptions) -> Self {
        Self {
            options,
            inner: Arc::default(),
        }
    }

    /// Count the request, wait the configured latency, then decide the answer for `key`.
    ///
    /// Requests are counted on arrival, so a test can tell how many calls are in flight
    /// (`requests` minus the decided ones); a call whose client went away mid-latency is
    /// counted as a request and nothing else, like a real gateway that never finished it.
    pub async fn handle(&self, key: Option<&str>, body: Value) -> Decision {
        {
            let mut inner = self.lock();
            inner.stats.requests += 1;
            if let Some(key) = key {
                *inner
                    .stats
                    .requests_by_key
                    .entry(key.to_string())
                    .or_default() += 1;
            }
        }
        if !self.options.latency.is_zero() {
            tokio::time::sleep(self.options.latency).await;
        }
        let inject =
            self.options.error_rate > 0.0 && rand::rng().random_bool(self.options.error_rate);
        let mut inner = self.lock();
        if inject {
            inner.stats.errors += 1;
            return Decision::Error(self.options.error_status);
        }
        if let Some(id) = key.and_then(|k| inner.by_key.get(k)).cloned() {
            inner.stats.replayed += 1;
            return Decision::Replayed(id);
        }
        let id = uuid::Uuid::new_v4().to_string();
        inner.stats.sent += 1;
        if let Some(key) = key {
            inner.by_key.insert(key.to_string(), id.clone());
        }
        inner.messages.insert(id.clone(), body);
        Decision::Sent(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the simulator down with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    fn message(&self, id: &str) -> Option<Value> {
        self.lock().messages.get(id).cloned()
    }
}

/// The `mock` provider: the simulator called directly, no HTTP.
pub struct InProcess {
    core: MockCore,
}

impl InProcess {
    /// An in-process simulator behaving as `options` say.
    pub fn new(options: MockOptions) -> Self {
        Self {
            core: MockCore::new(options),
        }
    }

    /// The simulator behind this provider.
    pub fn core(&self) -> &MockCore {
        &self.core
    }

    /// Simulate one send. Every canonical type is accepted: the mock stands for a gateway
    /// that can express everything, so the demo shows every type going through.
    pub async fn send(&self, job: &Job, ctx: SendContext<'_>) -> SendResult {
        let body = serde_json::to_value(&job.message).unwrap_or(Value::Null);
        match self.core.handle(Some(ctx.idempotency_key), body).await {
            Decision::Sent(id) => Ok(Accepted {
                provider_message_id: id,
                replayed: false,
            }),
            Decision::Replayed(id) => Ok(Accepted {
                provider_message_id: id,
                replayed: true,
            }),
            Decision::Error(status) => Err(injected(status)),
        }
    }
}

fn injected(status: u16) -> Failure {
    let failure = Failure::new(
        super::class_for_status(status),
        format!("http_{status}"),
        format!("mock gateway injected HTTP {status}"),
    );
    if status == 429 {
        failure.with_retry_after(Some(Duration::from_secs(1)))
    } else {
        failure
    }
}

/// The simulator as an HTTP server speaking Waspy's API, until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    core: MockCore,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(core))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Routes of the simulated Waspy API plus `GET /_mock/stats`.
pub fn router(core: MockCore) -> Router {
    Router::new()
        .route("/api/v2/messages", post(waspy_send))
        .route("/api/v2/messages/{id}", get(waspy_get))
        .route("/_mock/stats", get(stats))
        .with_state(core)
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
    if !super::waspy::SUPPORTED_TYPES.contains(&kind) || body.get(kind).is_none() {
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
        response.headers_mut().insert(
            super::waspy::REPLAYED_HEADER,
            "true".parse().expect("static header"),
        );
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

async fn stats(State(core): State<MockCore>) -> Json<Stats> {
    Json(core.stats())
}
