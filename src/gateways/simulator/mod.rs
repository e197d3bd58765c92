//! The built-in gateway simulator (SPEC §8 `mock`): the shared core.
//!
//! One core, [`MockCore`], decides what a gateway would answer: injected latency and
//! errors, idempotency by key (a repeat gets the original id, marked replayed), and
//! counters per key so tests and benchmarks can prove each key was sent once. It runs
//! in process behind the `mock` provider ([`super::mock::InProcess`], Waspy's semantics) and
//! as an HTTP server speaking every gateway's API ([`serve`], `mensajero mock-gateway`): each
//! gateway's folder holds its routes (`gateways/<name>/simulator.rs`), answering with that
//! gateway's own paths and bodies.
//!
//! # Errors: random and scripted
//!
//! `error_rate` answers a random fraction of requests with `error_status`, the way a flaky
//! gateway does. Scripted errors ([`script`](Script)) answer *chosen* requests, so a test can
//! say exactly what the gateway does next. A rule is JSON (or TOML in
//! `[channels.x.mock] script = [...]`, for the in-process provider):
//!
//! ```json
//! {"path": "/api/v2/messages", "to": "+5491126032641", "status": 403,
//!  "code": "SERVICE_WINDOW_EXPIRED", "times": 3, "retry_after": 2}
//! ```
//!
//! Only `status` is required. `path` matches the request path (a trailing `*` a prefix),
//! `to` the recipient by digits (each API writes numbers its own way), `code` is rendered in
//! the called gateway's own error body (Waspy `error.code`, Meta `error.code`, Wazzup
//! `error`, seven.io `error_code`, Whaapy `code` for WhatsApp's numeric codes or `error` for
//! its names) so its adapter classifies it as it would the real thing, `times` uses the rule
//! up (default: until cleared), `retry_after` adds a `Retry-After` in seconds. Rules are
//! tried in order, before the random errors; the first match answers. Over HTTP:
//! `POST /_mock/script` (one rule or an array) appends, `GET` lists with the uses left,
//! `DELETE` clears. Scripted answers count in [`Stats::errors`], [`Stats::scripted`] and
//! [`Stats::errors_by_key`] (`GET /_mock/stats`).
//!
//! # Receipts
//!
//! With `receipts_url` and `delivered_after` and/or `read_after`, every fresh send (not a
//! replay) is followed by `delivered` / `read` webhooks to that URL, in the called API's
//! webhook format and signed with the webhook secret the way that gateway signs them
//! ([`super::WebhookFormat::render`], [`super::WebhookFormat::sign`]). The ids are those the
//! send answered (Meta's `wamid.…`), and Meta's receipts echo `biz_opaque_callback_data`,
//! seven.io's `foreign_id`, as the real ones do. They run on their own tasks, are retried for
//! about two minutes ([`RETRY_DELAYS`]), and at most [`MAX_PENDING`] sends wait for theirs
//! (see `simulator/receipts.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod receipts;
mod script;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rand::RngExt;
use serde::Serialize;
use serde_json::{Value, json};

pub use receipts::{MAX_PENDING, RETRY_DELAYS, SentMessage};
pub use script::{InjectedError, Script, Target};

use super::{gateway, registry};
use crate::config::{MockOptions, ProviderKind, ScriptRule, Secret};
use crate::retry::Failure;

/// What the simulated gateway decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Sent now, under this new id.
    Sent(String),
    /// Already sent under this key: the original id, replayed.
    Replayed(String),
    /// An injected error (random or scripted), which each API renders in its own body.
    Error(InjectedError),
}

/// One send request as a simulated API hands it to the core.
#[derive(Debug, Clone, Default)]
pub struct Call {
    /// The request path, which script rules match.
    pub path: String,
    /// The recipient as the API writes it, which script rules match by digits.
    pub to: Option<String>,
    /// The gateway's idempotency key, if the request carries one.
    pub key: Option<String>,
    /// The request body, kept for `GET /api/v2/messages/{id}`.
    pub body: Value,
    /// Whose receipts a fresh send schedules, if the API sends any for this call.
    pub receipts: Option<ReceiptsFor>,
}

/// How a fresh send's receipts must look: scheduled by [`MockCore::handle`] itself, so a send
/// whose client hung up mid-call still gets its receipts, as with a real gateway.
#[derive(Debug, Clone)]
pub struct ReceiptsFor {
    /// Whose webhook format to use: the API that was called.
    pub provider: ProviderKind,
    /// What the gateway echoes of the request (Meta's `biz_opaque_callback_data`, seven.io's
    /// `foreign_id`), if anything.
    pub job_id: Option<String>,
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
    /// Injected errors, random and scripted.
    pub errors: u64,
    /// Of `errors`, those a script rule answered.
    pub scripted: u64,
    /// Requests per idempotency key.
    pub requests_by_key: HashMap<String, u64>,
    /// Injected errors per idempotency key, so a test can tell which job a rule hit.
    pub errors_by_key: HashMap<String, u64>,
    /// Receipts the receiver accepted (2xx).
    pub receipts_sent: u64,
    /// Receipts given up on after every retry.
    pub receipts_failed: u64,
    /// Sends whose receipts were dropped because too many were pending.
    pub receipts_dropped: u64,
}

#[derive(Default)]
struct Inner {
    stats: Stats,
    /// Idempotency key → message id.
    by_key: HashMap<String, String>,
    /// Message id → (key, body) for `GET /api/v2/messages/{id}`.
    messages: HashMap<String, Value>,
    /// Scripted errors in force.
    script: Script,
}

/// The simulator's decision logic and state, shared by the in-process provider and the server.
#[derive(Clone)]
pub struct MockCore {
    options: MockOptions,
    inner: Arc<Mutex<Inner>>,
    /// Sends receipts when the options ask for them.
    receipts: Option<Arc<receipts::ReceiptSender>>,
    receipt_counters: Arc<receipts::Counters>,
}

impl MockCore {
    /// A simulator behaving as `options` say; its receipts, if any, go out unsigned.
    pub fn new(options: MockOptions) -> Self {
        Self::with_webhook_secret(options, None)
    }

    /// A simulator behaving as `options` say, signing its receipts with `secret` the way the
    /// called API signs its webhooks.
    pub fn with_webhook_secret(options: MockOptions, secret: Option<Secret>) -> Self {
        let mut inner = Inner::default();
        inner.script.extend(options.script.iter().cloned());
        let receipt_counters = Arc::new(receipts::Counters::default());
        let receipts =
            receipts::ReceiptSender::new(&options, secret, receipt_counters.clone()).map(Arc::new);
        Self {
            options,
            inner: Arc::new(Mutex::new(inner)),
            receipts,
            receipt_counters,
        }
    }

    /// Schedule the receipts of an accepted send (none unless configured): for fresh sends
    /// only, since a replay's receipts already went out.
    fn send_receipts(&self, message: SentMessage) {
        if let Some(sender) = &self.receipts {
            sender.schedule(message);
        }
    }

    /// Count the request, wait the configured latency, then decide the answer: a scripted
    /// error if a rule matches, else a random one (`error_rate`), else a replay or a send.
    ///
    /// Requests are counted on arrival, so a test can tell how many calls are in flight
    /// (`requests` minus the decided ones); a call whose client went away mid-latency is
    /// counted as a request and nothing else, like a real gateway that never finished it.
    pub async fn handle(&self, call: Call) -> Decision {
        let key = call.key.as_deref();
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
        let target = Target {
            path: &call.path,
            to: call.to.as_deref(),
        };
        let error = match inner.script.answer(target) {
            Some(error) => {
                inner.stats.scripted += 1;
                Some(error)
            }
            None => inject.then(|| InjectedError::status(self.options.error_status)),
        };
        if let Some(error) = error {
            inner.stats.errors += 1;
            if let Some(key) = key {
                *inner
                    .stats
                    .errors_by_key
                    .entry(key.to_string())
                    .or_default() += 1;
            }
            return Decision::Error(error);
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
        inner.messages.insert(id.clone(), call.body);
        drop(inner);
        if let Some(receipts) = call.receipts {
            self.send_receipts(SentMessage {
                provider_message_id: gateway(receipts.provider).wire_id(&id),
                receipts,
            });
        }
        Decision::Sent(id)
    }

    /// Run [`MockCore::handle`] on its own task: a real gateway finishes a send even when the
    /// client hangs up mid-call, and hyper drops a handler whose client left. `None` if the
    /// task failed.
    pub async fn handle_detached(&self, call: Call) -> Option<Decision> {
        let core = self.clone();
        tokio::spawn(async move { core.handle(call).await })
            .await
            .ok()
    }

    /// Append scripted error rules after the ones in force.
    pub fn add_rules(&self, rules: impl IntoIterator<Item = ScriptRule>) {
        self.lock().script.extend(rules);
    }

    /// Drop every scripted rule; returns how many there were.
    pub fn clear_rules(&self) -> usize {
        self.lock().script.clear()
    }

    /// The scripted rules in force, each with its remaining `times`.
    pub fn rules(&self) -> Vec<ScriptRule> {
        self.lock().script.rules()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the simulator down with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        use std::sync::atomic::Ordering::Relaxed;
        let mut stats = self.lock().stats.clone();
        stats.receipts_sent = self.receipt_counters.sent.load(Relaxed);
        stats.receipts_failed = self.receipt_counters.failed.load(Relaxed);
        stats.receipts_dropped = self.receipt_counters.dropped.load(Relaxed);
        stats
    }

    /// The body of a message the simulator sent, by id.
    pub fn message(&self, id: &str) -> Option<Value> {
        self.lock().messages.get(id).cloned()
    }
}

/// An injected error without a code, classified by its status alone (the in-process
/// provider's, and the fallback of a gateway's own classification).
pub(crate) fn injected(status: u16) -> Failure {
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

/// The simulator as an HTTP server speaking every gateway's API ([`router`]), until
/// `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    core: MockCore,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(core))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Every registered gateway's simulated API plus `GET /_mock/stats` and `/_mock/script`. Each
/// gateway's routes live in its own folder (`gateways/<name>/simulator.rs`) and answer with
/// that gateway's own paths and bodies.
pub fn router(core: MockCore) -> Router {
    registry()
        .filter_map(|gateway| gateway.simulator())
        .fold(Router::new(), Router::merge)
        .route("/_mock/stats", get(stats))
        .route(
            "/_mock/script",
            get(script_get).post(script_add).delete(script_clear),
        )
        .with_state(core)
}

async fn stats(State(core): State<MockCore>) -> Json<Stats> {
    Json(core.stats())
}

/// `POST /_mock/script` takes one rule or an array of them.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Rules {
    One(ScriptRule),
    Many(Vec<ScriptRule>),
}

async fn script_get(State(core): State<MockCore>) -> Json<Vec<ScriptRule>> {
    Json(core.rules())
}

/// Append the rules (all or none: one bad rule refuses the request) and answer the script.
async fn script_add(State(core): State<MockCore>, body: axum::body::Bytes) -> Response {
    let rules = match serde_json::from_slice::<Rules>(&body) {
        Ok(Rules::One(rule)) => vec![rule],
        Ok(Rules::Many(rules)) => rules,
        Err(_) => {
            // The untagged error says nothing useful; a single rule's says which field.
            let why = serde_json::from_slice::<ScriptRule>(&body)
                .err()
                .map_or_else(|| "not a rule".to_string(), |e| e.to_string());
            return bad_rule(&why);
        }
    };
    for (i, rule) in rules.iter().enumerate() {
        if let Some(problem) = rule.problem() {
            return bad_rule(&format!("rule {i}: {problem}"));
        }
    }
    core.add_rules(rules);
    Json(core.rules()).into_response()
}

fn bad_rule(why: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": why }))).into_response()
}

async fn script_clear(State(core): State<MockCore>) -> Json<Value> {
    Json(json!({ "cleared": core.clear_rules() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gateway finishes a send whose client hung up mid-call, and its receipts follow:
    /// the simulator must not lose them with the dropped request (the fault campaigns kill
    /// workers mid-call and count every receipt).
    #[tokio::test]
    async fn a_send_whose_client_hung_up_still_gets_its_receipts() {
        let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let count = received.clone();
        let receiver = Router::new().route(
            "/hook",
            axum::routing::post(move || async move {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                StatusCode::OK
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, receiver).await });
        let core = MockCore::new(MockOptions {
            latency: Duration::from_millis(200),
            receipts_url: Some(url),
            delivered_after: Some(Duration::from_millis(10)),
            ..MockOptions::default()
        });
        let call = Call {
            path: crate::gateways::waspy::simulator::PATH.to_string(),
            to: Some("+5491100000001".into()),
            key: Some("k-1".into()),
            body: Value::Null,
            receipts: Some(ReceiptsFor {
                provider: ProviderKind::Waspy,
                job_id: None,
            }),
        };
        let hung_up =
            tokio::time::timeout(Duration::from_millis(20), core.handle_detached(call)).await;
        assert!(hung_up.is_err(), "the client left before the answer");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while received.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "no receipt arrived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stats = core.stats();
        assert_eq!((stats.sent, stats.receipts_sent), (1, 1));
    }
}
