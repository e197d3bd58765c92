//! Configuration (SPEC §5): built-in defaults, overlaid by an optional TOML file, overlaid by
//! `MENSAJERO__SECTION__KEY` environment variables; secrets only through env references.
//!
//! Loading never stops at the first mistake: every section and every channel is checked on
//! its own and all problems come back together, each naming its field, so
//! `mensajero config check` can show an operator the whole list at once.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Value;

use crate::gateways;

/// The defaults shipped in the binary, so it runs without any file next to it.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Environment variables starting with this override configuration keys.
pub const ENV_PREFIX: &str = "MENSAJERO__";

/// The whole configuration of a worker process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Broker connection and topology naming.
    pub amqp: AmqpConfig,
    /// Redis connection and key naming.
    pub redis: RedisConfig,
    /// Concurrency, leases and shutdown.
    pub worker: WorkerConfig,
    /// The HTTP listener.
    pub http: HttpConfig,
    /// Webhook receipts: correlation and the receipt consumer.
    pub receipts: ReceiptsConfig,
    /// Channels by name: each selects a provider, its credentials and its sender.
    pub channels: BTreeMap<String, ChannelConfig>,
    /// Values of the environment variables channels reference, read once at load time.
    secrets: BTreeMap<String, Secret>,
}

/// `[amqp]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// Broker URL, credentials included (it is never logged).
    pub url: String,
    /// The nodes of a RabbitMQ cluster, instead of `url`: a worker connects to a reachable one
    /// (starting from a random one, so replicas spread) and moves to the next when it is lost.
    #[serde(default)]
    pub urls: Vec<String>,
    /// `x-quorum-initial-group-size` of the quorum queues mensajero declares; unset leaves
    /// RabbitMQ's default (three replicas, or every node of a smaller cluster).
    #[serde(default)]
    pub quorum_initial_group_size: Option<u32>,
    /// Prefix of every exchange and queue name, so several deployments (or tests) share a vhost.
    pub prefix: String,
    /// Redeliveries after which the quorum queue dead-letters a poison message.
    pub delivery_limit: u32,
    /// The broker delay queues' TTLs, one queue each.
    #[serde(with = "duration_list")]
    pub delay_tiers: Vec<Duration>,
}

/// `amqp.url`'s built-in value: `amqp.urls` may only be set while `url` keeps it.
const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

impl AmqpConfig {
    /// The broker nodes to connect to: `urls`, or `url` alone.
    pub fn nodes(&self) -> Vec<&str> {
        if self.urls.is_empty() {
            vec![self.url.as_str()]
        } else {
            self.urls.iter().map(String::as_str).collect()
        }
    }
}

/// `[redis]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Redis URL.
    pub url: String,
    /// The Sentinels watching the master, instead of `url`; the worker follows the master
    /// they name through a failover.
    #[serde(default)]
    pub sentinels: Vec<String>,
    /// The name the Sentinels monitor the master under (required with `sentinels`).
    #[serde(default)]
    pub master_name: Option<String>,
    /// Under Sentinel: replicas that must acknowledge each write (`WAIT`) before it counts,
    /// so a failover loses no acknowledged record; 0 (default) trusts asynchronous replication.
    #[serde(default)]
    pub wait_replicas: u32,
    /// Some nodes of a Redis Cluster, instead of `url`; the rest are discovered.
    #[serde(default)]
    pub cluster: Vec<String>,
    /// Prefix of every key, so several deployments (or tests) share one Redis.
    pub prefix: String,
}

/// `redis.url`'s built-in value: `sentinels` or `cluster` may only be set while `url` keeps it.
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

impl RedisConfig {
    /// Where Redis is: the Sentinels' master, a Redis Cluster, or `url` alone.
    pub fn target(&self) -> crate::store::RedisTarget {
        use crate::store::RedisTarget;
        if !self.sentinels.is_empty() {
            RedisTarget::Sentinel {
                sentinels: self.sentinels.clone(),
                master_name: self.master_name.clone().unwrap_or_default(),
                wait_replicas: self.wait_replicas,
            }
        } else if !self.cluster.is_empty() {
            RedisTarget::Cluster(self.cluster.clone())
        } else {
            RedisTarget::Node(self.url.clone())
        }
    }
}

/// `[worker]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Gateway calls running at once in this process.
    pub max_in_flight: usize,
    /// Unacknowledged deliveries the broker may push to this consumer.
    pub prefetch: u16,
    /// How long an `in_flight` dedupe entry protects a job from a second sender.
    #[serde(with = "duration")]
    pub lease: Duration,
    /// How long shutdown waits for in-flight jobs.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// Longest wait spent in the worker; longer waits park the job in a delay queue.
    #[serde(with = "duration")]
    pub inline_wait: Duration,
    /// Gateway calls at once for the bulk lane.
    pub bulk_max_in_flight: usize,
    /// Unacknowledged bulk deliveries.
    pub bulk_prefetch: u16,
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the listener for metrics, health and webhooks.
    pub listen: SocketAddr,
    /// Largest webhook body accepted; larger ones get 413 before any of it is parsed.
    pub max_body: usize,
    /// How long a client may take to send its request, and how long a connection may sit idle
    /// before its first or next request; a slow or idle client is cut off after it.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// The public base URL gateways call (`https://hooks.example.com`), for signature schemes
    /// that sign the URL (seven.io). Without it the URL is rebuilt from `Host` and
    /// `X-Forwarded-Proto`.
    #[serde(default)]
    pub public_url: Option<String>,
}

/// `[receipts]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptsConfig {
    /// Receipts processed at once by this worker.
    pub max_in_flight: usize,
    /// Unacknowledged receipt deliveries.
    pub prefetch: u16,
    /// How long a receipt for an unknown message id is retried (it may have overtaken the
    /// send's record) before it is dead-lettered.
    #[serde(with = "duration")]
    pub unknown_retry: Duration,
    /// How long a sent message's correlation record (provider id → job) is kept for receipts.
    #[serde(with = "duration")]
    pub correlation_ttl: Duration,
    /// What becomes of a receipt still unknown after `unknown_retry`.
    #[serde(default)]
    pub unknown: UnknownReceipts,
    /// Keep each job's `metadata` in its correlation record, so receipt outcomes and replies
    /// echo it; `false` keeps records small for those who join outcomes to jobs by id.
    #[serde(default = "defaults::echo_metadata")]
    pub echo_metadata: bool,
}

/// `receipts.unknown`: what becomes of a receipt whose message is still unknown after
/// `receipts.unknown_retry` (SPEC §10).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownReceipts {
    /// Dead-letter it as `unknown_message`, for an operator to look at.
    #[default]
    DeadLetter,
    /// Count it (`mensajero_receipts_total{result="unknown_dropped"}`) and drop it: for a
    /// number shared with other senders, whose messages' receipts are none of ours.
    Count,
}

/// `window`: what a channel does about WhatsApp's 24-hour customer-service window (SPEC §10).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowMode {
    /// Record nothing; a gateway's window-expired answer still sends the job's `fallback`.
    Off,
    /// Record when each customer last wrote; send as asked, and the `fallback` when the
    /// gateway answers window-expired.
    #[default]
    Track,
    /// Record, and send free-form messages outside the window as their `fallback` at once
    /// (or fail them `window_expired`) without asking the gateway.
    Enforce,
}

impl WindowMode {
    /// Whether inbound messages are recorded.
    pub fn records(self) -> bool {
        self != Self::Off
    }
}

/// Which gateway API a channel speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Waspy (`POST /api/v2/messages`).
    Waspy,
    /// Whaapy (`POST /messages/v1`).
    Whaapy,
    /// Wazzup24 (`POST /v3/message`).
    Wazzup,
    /// seven.io (`POST /api/waba/messages`).
    Seven,
    /// Meta's WhatsApp Cloud API.
    Meta,
    /// The built-in gateway simulator, in process.
    Mock,
}

impl ProviderKind {
    /// The provider's name in outcomes and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waspy => "waspy",
            Self::Whaapy => "whaapy",
            Self::Wazzup => "wazzup",
            Self::Seven => "seven",
            Self::Meta => "meta",
            Self::Mock => "mock",
        }
    }
}

/// Whether the secrets channels reference must be present in the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Secrets {
    /// A worker: it will call gateways and check webhooks.
    Required,
    /// A tool that never does.
    Optional,
}

/// What to do with a job whose previous attempt may have reached a gateway that has no
/// idempotency mechanism (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnAmbiguous {
    /// Send again: a possible duplicate beats a possibly lost message.
    Resend,
    /// Fail the job rather than risk a duplicate.
    Fail,
}

/// `[channels.<name>]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// The gateway API this channel speaks.
    pub provider: ProviderKind,
    /// The gateway's base URL (not needed for `mock`).
    pub base_url: Option<String>,
    /// Meta Graph API version (`v21.0`).
    pub api_version: Option<String>,
    /// Name of the environment variable that holds the API key.
    pub api_key_env: Option<String>,
    /// The sending identity: Waspy phoneNumberId, Wazzup channelId, seven.io from, Meta phone_number_id.
    pub sender: Option<String>,
    /// Messages per second across all replicas.
    #[serde(default = "defaults::rate_per_second")]
    pub rate_per_second: u32,
    /// Messages that may go at once before the rate applies.
    #[serde(default = "defaults::rate_burst")]
    pub rate_burst: u32,
    /// How long an idempotency key stays taken on this channel.
    #[serde(default = "defaults::dedupe_window", with = "duration")]
    pub dedupe_window: Duration,
    /// Name of the environment variable holding the webhook secret.
    pub webhook_secret_env: Option<String>,
    /// Name of the environment variable holding Meta's verify token.
    pub verify_token_env: Option<String>,
    /// Per gateway request.
    #[serde(default = "defaults::timeout", with = "duration")]
    pub timeout: Duration,
    /// Attempts in all before `retries_exhausted`.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// Age after which a job is no longer retried.
    #[serde(default = "defaults::max_age", with = "duration")]
    pub max_age: Duration,
    /// Delay before attempt 2, 3, …; the last repeats.
    #[serde(default = "defaults::retry_schedule", with = "duration_list")]
    pub retry_schedule: Vec<Duration>,
    /// Shortest wait after a rate-limit answer that gave no `Retry-After`.
    #[serde(default = "defaults::rate_limited_backoff", with = "duration")]
    pub rate_limited_backoff: Duration,
    /// Shortest wait after an `auth` or `channel` failure: an operator has to act first.
    #[serde(default = "defaults::slow_backoff", with = "duration")]
    pub slow_backoff: Duration,
    /// Channels to try when this one provably did not send.
    #[serde(default)]
    pub failover: Vec<String>,
    /// Minimum spacing between two messages to the same recipient.
    #[serde(default, with = "optional_duration")]
    pub recipient_interval: Option<Duration>,
    /// What to do after an ambiguous attempt on a gateway without idempotency.
    #[serde(default = "defaults::on_ambiguous")]
    pub on_ambiguous: OnAmbiguous,
    /// Template name → gateway template id (Wazzup sends templates by id).
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
    /// Poll the gateway's status endpoint for a sent message that got no final receipt
    /// after this long (Waspy only); unset means receipts alone.
    #[serde(default, with = "optional_duration")]
    pub poll_after: Option<Duration>,
    /// The 24-hour customer-service window: `off`, `track` (default) or `enforce`.
    #[serde(default)]
    pub window: WindowMode,
    /// Behaviour of the `mock` provider.
    #[serde(default)]
    pub mock: MockOptions,
}

/// `[channels.<name>.mock]`: how the built-in gateway simulator behaves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockOptions {
    /// Simulated gateway latency per request.
    #[serde(default, with = "duration")]
    pub latency: Duration,
    /// Fraction (0–1) of requests answered with `error_status`.
    #[serde(default)]
    pub error_rate: f64,
    /// The HTTP status injected errors use (503 or 429 are the interesting ones).
    #[serde(default = "defaults::mock_error_status")]
    pub error_status: u16,
    /// Scripted errors for chosen requests, tried in order before the random ones.
    #[serde(default)]
    pub script: Vec<ScriptRule>,
    /// Where the simulator POSTs status receipts after a send; unset sends none.
    #[serde(default)]
    pub receipts_url: Option<String>,
    /// How long after a send the `delivered` receipt goes out; unset sends none.
    #[serde(default, with = "optional_duration")]
    pub delivered_after: Option<Duration>,
    /// How long after a send the `read` receipt goes out; unset sends none.
    #[serde(default, with = "optional_duration")]
    pub read_after: Option<Duration>,
    /// How long after a send the customer's reply is posted to `receipts_url`; unset sends
    /// none.
    #[serde(default, with = "optional_duration")]
    pub reply_after: Option<Duration>,
    /// Which sends get a reply: every Nth accepted, non-replayed one (1: all of them).
    #[serde(default = "defaults::mock_reply_every")]
    pub reply_every: u32,
    /// A `mensajero mock-gateway` to send to instead of the in-process simulator, as its
    /// `/mock` API (Waspy's): several workers then share one simulator, its idempotency, its
    /// receipts and its replies, as they would a real gateway. The options above describe the
    /// in-process simulator, so they must be left out: the remote one is configured where it
    /// runs.
    #[serde(default)]
    pub gateway_url: Option<String>,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            error_rate: 0.0,
            error_status: defaults::mock_error_status(),
            script: Vec::new(),
            receipts_url: None,
            delivered_after: None,
            read_after: None,
            reply_after: None,
            reply_every: defaults::mock_reply_every(),
            gateway_url: None,
        }
    }
}

/// One scripted error of the mock gateway: which requests it answers, and how. The same
/// shape is `POST /_mock/script`'s body and `[channels.x.mock] script = [...]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptRule {
    /// The request path it matches (`/api/v2/messages`; a trailing `*` matches a prefix);
    /// unset matches every path. The in-process `mock` provider's path is Waspy's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The recipient it matches, compared by digits only (`+54 9 11…` = `54911…`), because
    /// each gateway writes numbers its own way; unset matches every recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The HTTP status of the answer (400–599).
    pub status: u16,
    /// The gateway's error code, rendered in that gateway's error body (`SERVICE_WINDOW_EXPIRED`
    /// for Waspy, `131047` for Meta); unset gives the simulator's generic code for `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// How many requests it answers before it is used up; unset means until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// Seconds for a `Retry-After` header on the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ScriptRule {
    /// What is wrong with this rule, if anything (the field named first).
    pub fn problem(&self) -> Option<String> {
        if !(400..=599).contains(&self.status) {
            return Some(format!(
                "status: {} is not an error status (400-599)",
                self.status
            ));
        }
        if self.times == Some(0) {
            return Some("times: must be at least 1 (leave it out for \"until cleared\")".into());
        }
        if let Some(to) = &self.to
            && !to.bytes().any(|b| b.is_ascii_digit())
        {
            return Some("to: has no digits to match a recipient by".into());
        }
        if self.path.as_deref().is_some_and(|p| !p.starts_with('/')) {
            return Some("path: must start with /".into());
        }
        None
    }
}

mod defaults {
    use super::OnAmbiguous;
    use std::time::Duration;

    /// Meta's standard per-number throughput.
    pub fn rate_per_second() -> u32 {
        80
    }
    /// One message at a time: the safe reading of a gateway's per-second limit.
    pub fn rate_burst() -> u32 {
        1
    }
    pub fn rate_limited_backoff() -> Duration {
        Duration::from_secs(60)
    }
    pub fn slow_backoff() -> Duration {
        Duration::from_secs(300)
    }
    pub fn dedupe_window() -> Duration {
        Duration::from_secs(24 * 3600)
    }
    pub fn timeout() -> Duration {
        Duration::from_secs(15)
    }
    pub fn max_attempts() -> u32 {
        10
    }
    pub fn max_age() -> Duration {
        Duration::from_secs(24 * 3600)
    }
    pub fn retry_schedule() -> Vec<Duration> {
        [5, 30, 120, 600, 1800, 3600, 7200, 14400]
            .into_iter()
            .map(Duration::from_secs)
            .collect()
    }
    pub fn echo_metadata() -> bool {
        true
    }

    pub fn on_ambiguous() -> OnAmbiguous {
        OnAmbiguous::Resend
    }
    pub fn mock_error_status() -> u16 {
        503
    }
    pub fn mock_reply_every() -> u32 {
        1
    }
}

/// One thing wrong with a configuration, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the field (`channels.waspy-ar.timeout`).
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration problem(s):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// A secret read from the environment. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Config {
    /// Load defaults + `file` (if any) + the process environment, every referenced secret
    /// required (what a worker needs).
    pub fn load(file: Option<&Path>) -> Result<Config, Problems> {
        Self::load_with(file, Secrets::Required)
    }

    /// Load for operator and producer tools (`enqueue`, `outcomes`, `dlq`, `topology`), which
    /// never call a gateway: channels' secrets may be absent from their environment.
    pub fn load_for_tools(file: Option<&Path>) -> Result<Config, Problems> {
        Self::load_with(file, Secrets::Optional)
    }

    fn load_with(file: Option<&Path>, secrets: Secrets) -> Result<Config, Problems> {
        let overlay = match file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                Problems(vec![Problem {
                    path: path.display().to_string(),
                    message: format!("cannot read: {e}"),
                }])
            })?),
            None => None,
        };
        Self::build(overlay.as_deref(), std::env::vars(), secrets)
    }

    /// Build from an optional TOML overlay and an explicit environment (testable).
    pub fn from_sources(
        overlay: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Problems> {
        Self::build(overlay, env, Secrets::Required)
    }

    fn build(
        overlay: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
        required: Secrets,
    ) -> Result<Config, Problems> {
        let mut problems = Vec::new();
        let mut root = parse_toml("config/default.toml", DEFAULT_TOML, &mut problems);
        if let Some(text) = overlay {
            let over = parse_toml("--config", text, &mut problems);
            merge(&mut root, over);
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        apply_env(&mut root, env.iter().cloned(), &mut problems);
        if !problems.is_empty() {
            return Err(Problems(problems));
        }

        let table = match root {
            Value::Table(t) => t,
            _ => unreachable!("parse_toml returns tables"),
        };
        for key in table.keys() {
            if !["amqp", "redis", "worker", "http", "receipts", "channels"].contains(&key.as_str())
            {
                problems.push(Problem {
                    path: key.clone(),
                    message: "unknown section".into(),
                });
            }
        }
        let amqp = section::<AmqpConfig>(&table, "amqp", &mut problems);
        let redis = section::<RedisConfig>(&table, "redis", &mut problems);
        let worker = section::<WorkerConfig>(&table, "worker", &mut problems);
        let http = section::<HttpConfig>(&table, "http", &mut problems);
        let receipts = section::<ReceiptsConfig>(&table, "receipts", &mut problems);
        let mut channels = BTreeMap::new();
        match table.get("channels") {
            None => {}
            Some(Value::Table(t)) => {
                for (name, value) in t {
                    let path = format!("channels.{name}");
                    if let Some(channel) =
                        typed::<ChannelConfig>(value.clone(), &path, &mut problems)
                    {
                        channels.insert(name.clone(), channel);
                    }
                }
            }
            Some(_) => problems.push(Problem {
                path: "channels".into(),
                message: "must be a table of channels".into(),
            }),
        }

        let (Some(amqp), Some(redis), Some(worker), Some(http), Some(receipts)) =
            (amqp, redis, worker, http, receipts)
        else {
            return Err(Problems(problems));
        };
        let referenced: Vec<&String> = channels
            .values()
            .flat_map(|c| [&c.api_key_env, &c.webhook_secret_env, &c.verify_token_env])
            .flatten()
            .collect();
        let secrets = env
            .into_iter()
            .filter(|(k, _)| referenced.contains(&k))
            .map(|(k, v)| (k, Secret(v)))
            .collect();
        let config = Config {
            amqp,
            redis,
            worker,
            http,
            receipts,
            channels,
            secrets,
        };
        problems.extend(config.semantic_problems(required));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(Problems(problems))
        }
    }

    /// Checks that need more than one field, or the environment (referenced secrets must exist).
    fn semantic_problems(&self, required: Secrets) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut push = |path: String, message: String| out.push(Problem { path, message });
        let missing =
            |var: &String| required == Secrets::Required && !self.secrets.contains_key(var);
        if self.worker.max_in_flight == 0 {
            push("worker.max_in_flight".into(), "must be at least 1".into());
        }
        if self.worker.prefetch == 0 {
            push("worker.prefetch".into(), "must be at least 1".into());
        }
        if self.worker.bulk_max_in_flight == 0 {
            push(
                "worker.bulk_max_in_flight".into(),
                "must be at least 1".into(),
            );
        }
        if self.worker.bulk_prefetch == 0 {
            push("worker.bulk_prefetch".into(), "must be at least 1".into());
        }
        if self.amqp.delay_tiers.is_empty() {
            push("amqp.delay_tiers".into(), "needs at least one tier".into());
        } else if self.amqp.delay_tiers.iter().any(|t| t.as_millis() < 100) {
            push(
                "amqp.delay_tiers".into(),
                "tiers must be at least 100ms".into(),
            );
        } else if self
            .amqp
            .delay_tiers
            .iter()
            .min()
            .is_some_and(|t| *t > self.worker.inline_wait)
        {
            // Otherwise a wait just over inline_wait would overshoot by a whole tier.
            push(
                "worker.inline_wait".into(),
                "must be at least the shortest of amqp.delay_tiers".into(),
            );
        }
        if !valid_name(&self.amqp.prefix) {
            push(
                "amqp.prefix".into(),
                "use letters, digits, '_', '-' and '.'".into(),
            );
        }
        if self.receipts.max_in_flight == 0 {
            push("receipts.max_in_flight".into(), "must be at least 1".into());
        }
        if self.receipts.prefetch == 0 {
            push("receipts.prefetch".into(), "must be at least 1".into());
        }
        if self.http.max_body < 1024 {
            push("http.max_body".into(), "must be at least 1024 bytes".into());
        }
        if let Some(url) = &self.http.public_url
            && reqwest::Url::parse(url).is_err()
        {
            push("http.public_url".into(), format!("not a URL: {url}"));
        }
        if !self.amqp.urls.is_empty() && self.amqp.url != DEFAULT_AMQP_URL {
            push(
                "amqp.urls".into(),
                "set either amqp.url (one broker) or amqp.urls (a cluster's nodes), not both"
                    .into(),
            );
        }
        for (i, url) in self.amqp.urls.iter().enumerate() {
            if url.parse::<lapin::uri::AMQPUri>().is_err() {
                // Never the URL itself: it holds the credentials.
                push(format!("amqp.urls[{i}]"), "not an AMQP URL".into());
            }
        }
        let redis = &self.redis;
        let chosen = [
            redis.url != DEFAULT_REDIS_URL,
            !redis.sentinels.is_empty(),
            !redis.cluster.is_empty(),
        ];
        if chosen.iter().filter(|set| **set).count() > 1 {
            push(
                "redis".into(),
                "set one of redis.url (one server), redis.sentinels (with master_name) or \
                 redis.cluster (a Redis Cluster's nodes)"
                    .into(),
            );
        }
        // `url` too: the worker retries an unreachable Redis forever, so an unreadable URL
        // must be refused here rather than retried as if Redis were down.
        let mut named: Vec<(String, &String)> = vec![("redis.url".into(), &redis.url)];
        for (field, urls) in [("sentinels", &redis.sentinels), ("cluster", &redis.cluster)] {
            named.extend(
                urls.iter()
                    .enumerate()
                    .map(|(i, url)| (format!("redis.{field}[{i}]"), url)),
            );
        }
        for (at, url) in named {
            if redis::IntoConnectionInfo::into_connection_info(url.as_str()).is_err() {
                // Never the URL itself: it may hold a password.
                push(at, "not a Redis URL".into());
            }
        }
        if redis.wait_replicas > 0 && redis.sentinels.is_empty() {
            push(
                "redis.wait_replicas".into(),
                "only means something with redis.sentinels".into(),
            );
        }
        match (&redis.master_name, redis.sentinels.is_empty()) {
            (None, false) => push(
                "redis.master_name".into(),
                "required with redis.sentinels: the name they monitor the master under".into(),
            ),
            (Some(_), true) => push(
                "redis.master_name".into(),
                "only means something with redis.sentinels".into(),
            ),
            _ => {}
        }
        if self.amqp.quorum_initial_group_size == Some(0) {
            push(
                "amqp.quorum_initial_group_size".into(),
                "must be at least 1".into(),
            );
        }
        if self.amqp.delivery_limit == 0 {
            push("amqp.delivery_limit".into(), "must be at least 1".into());
        }
        for (name, ch) in &self.channels {
            let at = |field: &str| format!("channels.{name}.{field}");
            if !valid_channel_name(name) {
                push(
                    format!("channels.{name}"),
                    "channel names are 1–64 of [A-Za-z0-9_-] (they become routing-key words)"
                        .into(),
                );
            }
            // What the channel's gateway can do decides what it must configure.
            let can = gateways::gateway(ch.provider).capabilities();
            if can.remote {
                match &ch.base_url {
                    None => push(at("base_url"), "required for this provider".into()),
                    Some(url) if reqwest::Url::parse(url).is_err() => {
                        push(at("base_url"), format!("not a URL: {url}"))
                    }
                    Some(_) => {}
                }
                // A gateway whose API key selects the sending account (Whaapy) needs none.
                if ch.sender.is_none() && can.needs_sender {
                    push(at("sender"), "required for this provider".into());
                }
                match &ch.api_key_env {
                    None => push(
                        at("api_key_env"),
                        "name the environment variable holding the API key".into(),
                    ),
                    Some(var) if missing(var) => push(
                        at("api_key_env"),
                        format!("environment variable {var} is not set"),
                    ),
                    Some(_) => {}
                }
            }
            for (field, var) in [
                ("webhook_secret_env", &ch.webhook_secret_env),
                ("verify_token_env", &ch.verify_token_env),
            ] {
                if let Some(var) = var
                    && missing(var)
                {
                    push(at(field), format!("environment variable {var} is not set"));
                }
            }
            if ch.rate_per_second == 0 {
                push(at("rate_per_second"), "must be at least 1".into());
            }
            if ch.rate_burst == 0 {
                push(at("rate_burst"), "must be at least 1".into());
            }
            if ch.max_attempts == 0 {
                push(at("max_attempts"), "must be at least 1".into());
            }
            if ch.retry_schedule.is_empty() {
                push(at("retry_schedule"), "needs at least one step".into());
            }
            if ch.timeout.is_zero() {
                push(at("timeout"), "must be more than 0".into());
            }
            if self.worker.lease <= ch.timeout {
                // svix's lesson: a lease shorter than the call it protects lets a second
                // worker send while the first one is still waiting for the gateway.
                push(
                    at("timeout"),
                    format!(
                        "must be shorter than worker.lease ({}), or a slow call loses its dedupe lease",
                        humantime::format_duration(self.worker.lease)
                    ),
                );
            }
            for other in &ch.failover {
                if !self.channels.contains_key(other) {
                    push(at("failover"), format!("unknown channel `{other}`"));
                }
            }
            if ch.poll_after.is_some() && !can.polling {
                let pollable: Vec<&str> = gateways::registry()
                    .filter(|g| g.capabilities().polling)
                    .map(|g| g.kind().as_str())
                    .collect();
                push(
                    at("poll_after"),
                    format!(
                        "only {} offers a status endpoint to poll",
                        pollable.join(", ")
                    ),
                );
            }
            if !(0.0..=1.0).contains(&ch.mock.error_rate) {
                push(at("mock.error_rate"), "must be between 0 and 1".into());
            }
            let mock = &ch.mock;
            if let Some(url) = &mock.receipts_url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    push(at("mock.receipts_url"), "must be an http(s) URL".into());
                }
            } else if mock.delivered_after.is_some()
                || mock.read_after.is_some()
                || mock.reply_after.is_some()
            {
                push(
                    at("mock.receipts_url"),
                    "delivered_after/read_after/reply_after need a receipts_url to send to".into(),
                );
            }
            if mock.reply_every == 0 {
                push(
                    at("mock.reply_every"),
                    "must be at least 1 (leave reply_after out for no replies)".into(),
                );
            }
            if let Some(url) = &mock.gateway_url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    push(at("mock.gateway_url"), "must be an http(s) URL".into());
                }
                // Silently ignored options would make a test or a demo lie about what it runs.
                let in_process = !mock.latency.is_zero()
                    || mock.error_rate > 0.0
                    || !mock.script.is_empty()
                    || mock.receipts_url.is_some();
                if in_process {
                    push(
                        at("mock.gateway_url"),
                        "latency, error_rate, script and receipts describe the in-process simulator; configure the remote one where it runs".into(),
                    );
                }
            }
            for (i, rule) in ch.mock.script.iter().enumerate() {
                if let Some(problem) = rule.problem() {
                    push(at(&format!("mock.script[{i}]")), problem);
                }
            }
        }
        out
    }

    /// The API key a channel references (None for providers that need none).
    pub fn api_key(&self, channel: &str) -> Option<Secret> {
        let var = self.channels.get(channel)?.api_key_env.as_ref()?;
        self.secrets.get(var).cloned()
    }

    /// The secret a channel's webhooks are authenticated with (HMAC key, shared secret or
    /// Wazzup crmKey), if configured.
    pub fn webhook_secret(&self, channel: &str) -> Option<Secret> {
        let var = self.channels.get(channel)?.webhook_secret_env.as_ref()?;
        self.secrets.get(var).cloned()
    }

    /// Meta's `hub.verify_token` for a channel's verification handshake, if configured.
    pub fn verify_token(&self, channel: &str) -> Option<Secret> {
        let var = self.channels.get(channel)?.verify_token_env.as_ref()?;
        self.secrets.get(var).cloned()
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Channel names become words of topic routing keys, so no dots.
pub fn valid_channel_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

fn parse_toml(origin: &str, text: &str, problems: &mut Vec<Problem>) -> Value {
    match text.parse::<toml::Table>() {
        Ok(t) => Value::Table(t),
        Err(e) => {
            problems.push(Problem {
                path: origin.into(),
                message: format!("not valid TOML: {}", e.message()),
            });
            Value::Table(Default::default())
        }
    }
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Table(b), Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Apply `MENSAJERO__A__B=value`. Segments are matched case-insensitively against existing
/// keys with `_` standing for `-` too, because env names cannot hold `-` (`WASPY_AR` finds
/// channel `waspy-ar`). Values parse as TOML when they can (`80`, `true`, `["5s","30s"]`),
/// else stay strings.
fn apply_env(
    root: &mut Value,
    env: impl IntoIterator<Item = (String, String)>,
    problems: &mut Vec<Problem>,
) {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    for (key, raw) in vars {
        let segments: Vec<&str> = key[ENV_PREFIX.len()..].split("__").collect();
        if segments.iter().any(|s| s.is_empty()) {
            problems.push(Problem {
                path: key.clone(),
                message: "malformed variable name".into(),
            });
            continue;
        }
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| Value::String(raw.clone()));
        let mut node = &mut *root;
        for (i, seg) in segments.iter().enumerate() {
            let Value::Table(table) = node else {
                problems.push(Problem {
                    path: key.clone(),
                    message: "overrides a value that is not a table".into(),
                });
                break;
            };
            let wanted = seg.to_ascii_lowercase();
            let existing = table
                .keys()
                .find(|k| k.to_ascii_lowercase().replace('-', "_") == wanted)
                .cloned();
            let name = existing.unwrap_or(wanted);
            if i + 1 == segments.len() {
                table.insert(name, value.clone());
                break;
            }
            node = table
                .entry(name)
                .or_insert_with(|| Value::Table(Default::default()));
        }
    }
}

fn section<T: DeserializeOwned>(
    table: &toml::Table,
    name: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let value = table
        .get(name)
        .cloned()
        .unwrap_or_else(|| Value::Table(Default::default()));
    typed(value, name, problems)
}

fn typed<T: DeserializeOwned>(value: Value, path: &str, problems: &mut Vec<Problem>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let path = if inner == "." || inner.is_empty() {
                path.to_string()
            } else {
                format!("{path}.{inner}")
            };
            problems.push(Problem {
                path,
                message: e.into_inner().to_string(),
            });
            None
        }
    }
}

/// Durations as humantime strings (`"60s"`, `"24h"`, `"500ms"`).
pub mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    /// Deserialize a humantime duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration ({e}); write e.g. \"30s\""
            ))
        })
    }
}

mod optional_duration {
    use serde::Deserializer;
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(d).map(Some)
    }
}

mod duration_list {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let texts = Vec::<String>::deserialize(d)?;
        texts
            .iter()
            .map(|t| {
                humantime::parse_duration(t)
                    .map_err(|e| serde::de::Error::custom(format!("`{t}` is not a duration ({e})")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The problems `overlay` is refused with, as the worker prints them.
    fn refused(overlay: &str) -> String {
        Config::from_sources(Some(overlay), env(&[]))
            .unwrap_err()
            .to_string()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_env_overrides_apply() {
        let overlay = "[channels.waspy-ar]\nprovider = \"mock\"\n";
        let c = Config::from_sources(
            Some(overlay),
            env(&[
                ("MENSAJERO__WORKER__MAX_IN_FLIGHT", "7"),
                ("MENSAJERO__CHANNELS__WASPY_AR__RATE_PER_SECOND", "20"),
                (
                    "MENSAJERO__CHANNELS__WASPY_AR__RETRY_SCHEDULE",
                    "[\"1s\", \"2s\"]",
                ),
                ("MENSAJERO__AMQP__PREFIX", "t-1"),
                ("OTHER", "ignored"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.worker.max_in_flight, 7);
        assert_eq!(c.worker.lease, Duration::from_secs(60));
        assert_eq!(c.amqp.prefix, "t-1");
        let ch = &c.channels["waspy-ar"];
        assert_eq!(ch.rate_per_second, 20);
        assert_eq!(
            ch.retry_schedule,
            vec![Duration::from_secs(1), Duration::from_secs(2)]
        );
        assert_eq!(ch.dedupe_window, Duration::from_secs(86400));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let overlay = r#"
            [worker]
            lease = "forever"
            [channels.a]
            provider = "waspy"
            timeout = "90s"
            [channels.b]
            provider = "carrier-pigeon"
            [channels."bad.name"]
            provider = "mock"
            failover = ["nowhere"]
            [surprise]
            x = 1
        "#;
        let err = Config::from_sources(Some(overlay), env(&[])).unwrap_err();
        let paths: Vec<&str> = err.0.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"surprise"), "{err}");
        assert!(paths.contains(&"worker.lease"), "{err}");
        assert!(paths.contains(&"channels.b.provider"), "{err}");
        // The worker section failed, so cross-field checks cannot run; a fixed lease shows them.
        let overlay = overlay
            .replace("\"forever\"", "\"60s\"")
            .replace("[surprise]\n            x = 1", "");
        let overlay = overlay.replace("provider = \"carrier-pigeon\"", "provider = \"mock\"");
        let err = Config::from_sources(Some(&overlay), env(&[])).unwrap_err();
        let paths: Vec<&str> = err.0.iter().map(|p| p.path.as_str()).collect();
        for expected in [
            "channels.a.base_url",
            "channels.a.sender",
            "channels.a.api_key_env",
            "channels.a.timeout",
            "channels.bad.name",
            "channels.bad.name.failover",
        ] {
            assert!(paths.contains(&expected), "missing {expected} in {err}");
        }
    }

    #[test]
    fn tools_load_without_the_channels_secrets_but_workers_do_not() {
        let overlay = "[channels.w]\nprovider = \"waspy\"\nbase_url = \"https://x\"\nsender = \"s\"\napi_key_env = \"K\"\nwebhook_secret_env = \"H\"\n";
        let err = Config::from_sources(Some(overlay), env(&[])).unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert!(
            err.to_string()
                .contains("environment variable K is not set")
        );
        let config = Config::build(Some(overlay), env(&[]), Secrets::Optional).unwrap();
        assert!(config.api_key("w").is_none());
        // Everything else is still checked.
        let bad = overlay.replace("https://x", "not a url");
        assert!(Config::build(Some(&bad), env(&[]), Secrets::Optional).is_err());
    }

    #[test]
    fn a_cluster_is_urls_instead_of_url_and_each_must_parse() {
        let nodes = r#"
[amqp]
urls = ["amqp://u:secret-pass@rabbit-1:5672/%2f", "amqp://u:secret-pass@rabbit-2:5672/%2f"]
quorum_initial_group_size = 3
[channels.demo]
provider = "mock"
"#;
        let c = Config::from_sources(Some(nodes), env(&[])).unwrap();
        assert_eq!(c.amqp.nodes().len(), 2);
        assert_eq!(c.amqp.quorum_initial_group_size, Some(3));

        let both = r#"
[amqp]
url = "amqp://u:p@rabbit-1:5672/%2f"
urls = ["amqp://u:p@rabbit-2:5672/%2f", "http://not-amqp"]
quorum_initial_group_size = 0
"#;
        let err = refused(both);
        assert!(err.contains("amqp.urls: set either"), "{err}");
        assert!(err.contains("amqp.urls[1]: not an AMQP URL"), "{err}");
        assert!(err.contains("amqp.quorum_initial_group_size"), "{err}");
        assert!(
            !err.contains("not-amqp") && !err.contains("u:p@"),
            "URLs never echoed: {err}"
        );
    }

    #[test]
    fn redis_is_a_url_or_sentinels_with_a_master_name_or_a_cluster() {
        use crate::store::RedisTarget;
        let sentinel = "[redis]\nsentinels = [\"redis://:pw@s1:26379\", \"redis://:pw@s2:26379\"]\nmaster_name = \"m\"\n";
        let c = Config::from_sources(Some(sentinel), env(&[])).unwrap();
        assert!(
            matches!(c.redis.target(), RedisTarget::Sentinel { master_name, .. } if master_name == "m")
        );
        let cluster = "[redis]\ncluster = [\"redis://n1:7001\"]\n";
        let c = Config::from_sources(Some(cluster), env(&[])).unwrap();
        assert_eq!(
            c.redis.target(),
            RedisTarget::Cluster(vec!["redis://n1:7001".into()])
        );
        let c = Config::from_sources(None, env(&[])).unwrap();
        assert_eq!(
            c.redis.target(),
            RedisTarget::Node("redis://127.0.0.1:6379".into())
        );

        let wrong = "[redis]\nurl = \"redis://:secret@r:6379\"\nsentinels = [\"redis://:secret@s1:26379\", \"nonsense\"]\ncluster = [\"redis://n1:7001\"]\n";
        let err = refused(wrong);
        assert!(err.contains("redis: set one of"), "{err}");
        assert!(err.contains("redis.sentinels[1]: not a Redis URL"), "{err}");
        assert!(err.contains("redis.master_name: required"), "{err}");
        assert!(
            !err.contains("secret") && !err.contains("nonsense"),
            "URLs never echoed: {err}"
        );
        let stray = "[redis]\nurl = \"nonsense:secret\"\nmaster_name = \"m\"\nwait_replicas = 1\n";
        let err = refused(stray);
        assert!(err.contains("redis.master_name: only means"), "{err}");
        assert!(err.contains("redis.wait_replicas: only means"), "{err}");
        assert!(err.contains("redis.url: not a Redis URL"), "{err}");
        assert!(!err.contains("secret"), "URLs never echoed: {err}");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("wspy_live_123");
        assert!(!format!("{s:?}").contains("wspy"));
    }

    #[test]
    fn mock_scripts_and_receipts_are_checked_naming_the_field() {
        let toml = r#"
[channels.demo]
provider = "mock"
[channels.demo.mock]
read_after = "1s"
reply_every = 0
script = [{ status = 200 }, { status = 503, times = 3, to = "+5491126032641" }]
[channels.remote]
provider = "mock"
[channels.remote.mock]
gateway_url = "http://127.0.0.1:8090"
receipts_url = "http://127.0.0.1:8080/webhooks/remote"
"#;
        let problems = Config::from_sources(Some(toml), env(&[]))
            .expect_err("invalid")
            .to_string();
        assert!(
            problems.contains("channels.demo.mock.reply_every"),
            "{problems}"
        );
        assert!(
            problems.contains("channels.remote.mock.gateway_url"),
            "{problems}"
        );
        assert!(
            problems.contains("channels.demo.mock.script[0]"),
            "{problems}"
        );
        assert!(!problems.contains("script[1]"), "{problems}");
        assert!(
            problems.contains("channels.demo.mock.receipts_url"),
            "{problems}"
        );
        let ok = r#"
[channels.demo]
provider = "mock"
[channels.demo.mock]
receipts_url = "http://127.0.0.1:8080/webhooks/demo"
delivered_after = "200ms"
reply_after = "300ms"
script = [{ path = "/api/v2/messages", status = 503, times = 3, retry_after = 2 }]
"#;
        let config = Config::from_sources(Some(ok), env(&[])).expect("valid");
        let mock = &config.channels["demo"].mock;
        assert_eq!(mock.delivered_after, Some(Duration::from_millis(200)));
        assert_eq!(mock.script[0].times, Some(3));
        assert_eq!(mock.reply_after, Some(Duration::from_millis(300)));
        assert_eq!(mock.reply_every, 1, "every send is answered unless told");
        assert_eq!(MockOptions::default().reply_every, 1);
    }
}
