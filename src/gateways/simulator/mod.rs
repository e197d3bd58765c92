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
//!
//! # Replies
//!
//! With `reply_after` too, every `reply_every`th fresh send is answered by its recipient: a
//! customer's message to the same URL, signed the same way, on the same retries and bound,
//! rendered with [`super::WebhookFormat::render_inbound`]. It quotes the sent message
//! (`context`), so the receiver can name the job it answers, and its id is `reply-<sent id>`,
//! so a retried POST is the same message. It presses the first reply button of an
//! interactive buttons message ([`ReceiptsFor::button`]) and otherwise says "Gracias". An API
//! whose inbound format is not documented gets none, counted in
//! [`Stats::replies_unrenderable`].

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

/// How a fresh send's receipts and reply must look: scheduled by [`MockCore::handle`] itself,
/// so a send whose client hung up mid-call still gets them, as with a real gateway.
#[derive(Debug, Clone)]
pub struct ReceiptsFor {
    /// Whose webhook format to use: the API that was called.
    pub provider: ProviderKind,
    /// What the gateway echoes of the request (Meta's `biz_opaque_callback_data`, seven.io's
    /// `foreign_id`), if anything.
    pub job_id: Option<String>,
    /// The recipient in E.164 with `+`: the customer a reply comes from.
    pub recipient: Option<String>,
    /// The first reply button of an interactive buttons message: what a reply presses.
    pub button: Option<ReplyButton>,
}

impl ReceiptsFor {
    /// Webhooks in `provider`'s format about a send to `to` (however the API writes the
    /// number) of `message`, a Meta-style message object where the API has one; echoing nothing.
    pub fn new(provider: ProviderKind, to: Option<&str>, message: Option<&Value>) -> Self {
        Self {
            provider,
            job_id: None,
            recipient: to.and_then(crate::inbound::e164),
            button: message.and_then(ReplyButton::first_of),
        }
    }
}

/// A reply button as a message offered it (Meta's `interactive.action.buttons[].reply`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyButton {
    /// The id the button was sent with, which the reply carries back.
    pub id: String,
    /// The text the customer sees on it.
    pub title: String,
}

impl ReplyButton {
    /// The first reply button of a Meta-style interactive buttons message; `None` for any
    /// other message.
    pub fn first_of(message: &Value) -> Option<Self> {
        if message.get("type")?.as_str()? != "interactive" {
            return None;
        }
        let interactive = message.get("interactive")?;
        if interactive.get("type")?.as_str()? != "button" {
            return None;
        }
        let reply = interactive.pointer("/action/buttons/0/reply")?;
        Some(Self {
            id: reply.get("id")?.as_str()?.to_owned(),
            title: reply.get("title")?.as_str()?.to_owned(),
        })
    }
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
    /// Sends whose receipts (and reply) were dropped because too many were pending.
    pub receipts_dropped: u64,
    /// Customer replies the receiver accepted (2xx).
    pub replies_sent: u64,
    /// Replies given up on after every retry.
    pub replies_failed: u64,
    /// Replies not sent because the called API documents no inbound format to render them in.
    pub replies_unrenderable: u64,
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

    /// Schedule the receipts and reply of an accepted send (none unless configured): for
    /// fresh sends only, since a replay's already went out.
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
        // Counted under the lock, so exactly one in `reply_every` fresh sends is answered.
        let reply = self.options.reply_after.is_some()
            && inner
                .stats
                .sent
                .is_multiple_of(u64::from(self.options.reply_every.max(1)));
        if let Some(key) = key {
            inner.by_key.insert(key.to_string(), id.clone());
        }
        inner.messages.insert(id.clone(), call.body);
        drop(inner);
        if let Some(receipts) = call.receipts {
            self.send_receipts(SentMessage {
                provider_message_id: gateway(receipts.provider).wire_id(&id),
                receipts,
                reply,
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
        stats.replies_sent = self.receipt_counters.replies_sent.load(Relaxed);
        stats.replies_failed = self.receipt_counters.replies_failed.load(Relaxed);
        stats.replies_unrenderable = self.receipt_counters.replies_unrenderable.load(Relaxed);
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
        // The `mock` provider runs in process, so the registry lists no API for it; a channel
        // that points it at a simulator (`mock.gateway_url`) calls this one.
        .fold(super::mock::simulator::routes(), Router::merge)
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

    /// A webhook receiver answering 200, and the bodies it took.
    async fn receiver() -> (String, Arc<Mutex<Vec<axum::body::Bytes>>>) {
        let received = Arc::new(Mutex::new(Vec::new()));
        let bodies = received.clone();
        let app = Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| async move {
                bodies.lock().unwrap().push(body);
                StatusCode::OK
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, received)
    }

    /// Wait (up to 5 s) until `done` holds for the simulator's counters.
    async fn until(core: &MockCore, done: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let stats = core.stats();
            if done(&stats) {
                return stats;
            }
            assert!(tokio::time::Instant::now() < deadline, "{stats:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn call(provider: ProviderKind, key: &str, message: Value) -> Call {
        Call {
            path: crate::gateways::waspy::simulator::PATH.to_string(),
            to: Some("5491100000001".into()),
            key: Some(key.into()),
            receipts: Some(ReceiptsFor::new(
                provider,
                Some("5491100000001"),
                Some(&message),
            )),
            body: message,
        }
    }

    /// A gateway finishes a send whose client hung up mid-call, and its receipts follow:
    /// the simulator must not lose them with the dropped request (the fault campaigns kill
    /// workers mid-call and count every receipt).
    #[tokio::test]
    async fn a_send_whose_client_hung_up_still_gets_its_receipts() {
        let (url, received) = receiver().await;
        let core = MockCore::new(MockOptions {
            latency: Duration::from_millis(200),
            receipts_url: Some(url),
            delivered_after: Some(Duration::from_millis(10)),
            ..MockOptions::default()
        });
        let hung_up = tokio::time::timeout(
            Duration::from_millis(20),
            core.handle_detached(call(ProviderKind::Waspy, "k-1", Value::Null)),
        )
        .await;
        assert!(hung_up.is_err(), "the client left before the answer");
        let stats = until(&core, |s| s.receipts_sent == 1).await;
        assert_eq!((stats.sent, received.lock().unwrap().len()), (1, 1));
    }

    /// Every `reply_every`th fresh send is answered once, in the called API's inbound format,
    /// quoting the sent message and pressing its first button; replays are not answered
    /// again, and an API with no inbound format is counted instead.
    #[tokio::test]
    async fn every_nth_fresh_send_gets_one_reply_quoting_it() {
        let (url, received) = receiver().await;
        let core = MockCore::new(MockOptions {
            receipts_url: Some(url),
            reply_after: Some(Duration::from_millis(10)),
            reply_every: 2,
            ..MockOptions::default()
        });
        let text = serde_json::json!({"type": "text", "text": {"body": "Hola"}});
        let buttons = serde_json::json!({"type": "interactive", "interactive": {
            "type": "button", "body": {"text": "¿Confirmás?"},
            "action": {"buttons": [
                {"type": "reply", "reply": {"id": "si", "title": "Sí"}},
                {"type": "reply", "reply": {"id": "no", "title": "No"}}
            ]}
        }});
        let mut ids = Vec::new();
        for (key, message) in [("k-1", &text), ("k-2", &buttons), ("k-3", &text)] {
            match core
                .handle(call(ProviderKind::Mock, key, message.clone()))
                .await
            {
                Decision::Sent(id) => ids.push(id),
                other => panic!("{other:?}"),
            }
        }
        // A replay is not a fresh send: it neither gets a reply nor counts towards one.
        let replay = core.handle(call(ProviderKind::Mock, "k-2", buttons.clone()));
        assert!(matches!(replay.await, Decision::Replayed(_)));
        // The 4th fresh send is answered in the format of the API called (Wazzup's).
        core.handle(call(ProviderKind::Wazzup, "k-4", text.clone()))
            .await;
        let stats = until(&core, |s| s.replies_sent == 2).await;
        assert_eq!((stats.replies_failed, stats.replies_unrenderable), (0, 0));
        tokio::time::sleep(Duration::from_millis(100)).await;

        let bodies = received.lock().unwrap().clone();
        assert_eq!(bodies.len(), 2, "replies to the 2nd and 4th sends only");
        let wazzup = gateway(ProviderKind::Wazzup).webhook();
        assert!(
            bodies.iter().any(|b| matches!(
                wazzup.parse(b, &Default::default()),
                Ok(crate::gateways::webhook::Parsed::Batch(batch)) if batch.inbound.len() == 1
            )),
            "one reply is Wazzup's"
        );
        let format = gateway(ProviderKind::Mock).webhook();
        let batch = bodies
            .iter()
            .find_map(|body| match format.parse(body, &Default::default()) {
                Ok(crate::gateways::webhook::Parsed::Batch(batch))
                    if batch.inbound.first().and_then(|i| i.context_id.as_deref())
                        == Some(ids[1].as_str()) =>
                {
                    Some(batch)
                }
                _ => None,
            })
            .expect("the mock's reply to the 2nd send");
        let reply = &batch.inbound[0];
        assert_eq!(reply.provider_message_id, format!("reply-{}", ids[1]));
        assert_eq!(reply.context_id.as_deref(), Some(ids[1].as_str()));
        assert_eq!(reply.from.as_deref(), Some("+5491100000001"));
        assert!(reply.timestamp.is_some());
        let crate::inbound::Content::Reply(pressed) = &reply.content else {
            panic!("{reply:?}");
        };
        assert_eq!(
            (pressed.id.as_deref(), pressed.title.as_deref()),
            (Some("si"), Some("Sí"))
        );
    }

    #[test]
    fn only_a_meta_style_buttons_message_offers_a_button() {
        let list = serde_json::json!({"type": "interactive", "interactive": {
            "type": "list", "action": {"buttons": [{"reply": {"id": "x", "title": "X"}}]}}});
        assert_eq!(ReplyButton::first_of(&list), None);
        assert_eq!(
            ReplyButton::first_of(&serde_json::json!({"type": "text"})),
            None
        );
        assert_eq!(ReplyButton::first_of(&Value::Null), None);
    }
}
