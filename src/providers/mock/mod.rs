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

mod meta;
mod seven;
mod waspy;
mod wazzup;
mod whaapy;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use rand::Rng;
use serde::Serialize;
use serde_json::Value;

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

    /// The body of a message the simulator sent, by id.
    pub fn message(&self, id: &str) -> Option<Value> {
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

/// Every simulated gateway API plus `GET /_mock/stats`. Each provider's routes live in their
/// own file (`mock/<provider>.rs`) and answer with that gateway's own paths and bodies.
pub fn router(core: MockCore) -> Router {
    Router::new()
        .merge(waspy::routes())
        .merge(meta::routes())
        .merge(wazzup::routes())
        .merge(seven::routes())
        .merge(whaapy::routes())
        .route("/_mock/stats", get(stats))
        .with_state(core)
}

async fn stats(State(core): State<MockCore>) -> Json<Stats> {
    Json(core.stats())
}
