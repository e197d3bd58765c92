//! The pipeline: broker → job → dedupe → gateway → outcome → broker.
//!
//! [`run`] keeps one broker session alive (reconnecting with backoff), takes a semaphore
//! permit *before* taking the next delivery, and spawns one task per job. A job task acks its
//! delivery only after every event it caused — outcome, dead letter — is confirmed by the
//! broker; anything less leaves the delivery unacked, so the broker redelivers it and the
//! dedupe state makes the repeat safe.
//!
//! The files follow the seams: this one starts the worker and holds what its tasks share;
//! `session` keeps a broker connection and its lanes (one consumer each); `job` is the task
//! that carries one job through; `policy` decides, purely, what that task does next; `settle`
//! acks or hands back a delivery and publishes what it caused; `receipts` and `poll` apply
//! gateway receipts, pushed and polled.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::broker::{self, Topology};
use crate::config::{ChannelConfig, Config, ProviderKind};
use crate::conversation::Conversations;
use crate::dedupe::Dedupe;
use crate::gateways::ChannelGateway;
use crate::http::{self, HttpState, Live};
use crate::metrics::{Known, Metrics};
use crate::ratelimit::RateLimiter;
use crate::retry::{Backoff, ErrorClass};
use crate::store::{Redis, RedisTarget};
use crate::tracking::Tracker;

mod job;
mod policy;
mod poll;
mod receipts;
mod session;
mod settle;

/// A configured channel, ready to send.
pub struct ChannelRuntime {
    /// The channel's name (routing-key word, Redis key part).
    pub name: String,
    /// Its configuration.
    pub config: ChannelConfig,
    /// Its gateway.
    pub gateway: ChannelGateway,
}

/// Everything job tasks share.
struct Shared {
    config: Config,
    topology: Topology,
    dedupe: Dedupe,
    limiter: RateLimiter,
    /// Sent messages' records, for receipts.
    tracker: Tracker,
    /// Inbound messages published, and customers' windows.
    conversations: Conversations,
    channels: HashMap<String, ChannelRuntime>,
    /// (provider, sender) → channel: where a webhook item naming its business number goes
    /// when several channels share one callback URL (Meta's `phone_number_id`).
    senders: HashMap<(ProviderKind, String), String>,
    /// Cut short retry waits and lease waits when shutdown starts.
    shutdown: CancellationToken,
    /// This worker's series.
    metrics: Metrics,
    /// What the HTTP listener sees of the current broker session and of Redis.
    live: Arc<Live>,
    /// The broker node the next session tries first: random at start, so replicas spread
    /// over a cluster; then the one after the node the last session used.
    next_node: std::sync::atomic::AtomicUsize,
}

/// A worker that has bound its HTTP listener and is running.
pub struct Running {
    /// Where the listener is bound (useful with port 0).
    pub http_addr: SocketAddr,
    /// Resolves when the worker has stopped.
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Bind the HTTP listener, then run the worker in the background until `shutdown` is cancelled.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let listener = crate::http::bind_listener(config.http.listen)
        .map_err(|e| anyhow::anyhow!("binding http.listen {}: {e}", config.http.listen))?;
    let http_addr = listener.local_addr()?;
    let task = tokio::spawn(run_with(config, shutdown, listener));
    Ok(Running { http_addr, task })
}

/// Run a worker until `shutdown` is cancelled; returns once in-flight jobs are finished (or
/// the grace period ran out and the rest were handed back to the broker).
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(config, shutdown).await?.task.await?
}

async fn run_with(
    config: Config,
    shutdown: CancellationToken,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    prime_metrics(&metrics, &config);
    let live = Arc::new(Live::default());
    // The listener runs from the start, so /healthz and /readyz answer while dependencies are
    // still coming up, and stops last, so webhooks are taken until the broker session ends.
    let http_stop = CancellationToken::new();
    let http = {
        let state = HttpState::new(&config, live.clone(), metrics.clone());
        let stop = http_stop.clone();
        tokio::spawn(http::serve(listener, state, async move {
            stop.cancelled().await
        }))
    };
    let result = serve_jobs(config, shutdown, metrics, live).await;
    http_stop.cancel();
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "http listener failed"),
        Err(e) => warn!(error = %e, "http listener task failed"),
    }
    result
}

/// Create every series whose labels the configuration already tells, at 0.
fn prime_metrics(metrics: &Metrics, config: &Config) {
    let channels: Vec<(&str, &str)> = config
        .channels
        .iter()
        .map(|(name, channel)| (name.as_str(), channel.provider.as_str()))
        .collect();
    let classes = ErrorClass::ALL.map(ErrorClass::as_str);
    let tiers: Vec<String> = Topology::from_config(&config.amqp)
        .delay_queues
        .iter()
        .map(|(tier, _)| broker::tier_name(*tier))
        .collect();
    metrics.prime(&Known {
        channels: &channels,
        classes: &classes,
        tiers: &tiers,
    });
}

async fn serve_jobs(
    config: Config,
    shutdown: CancellationToken,
    metrics: Metrics,
    live: Arc<Live>,
) -> anyhow::Result<()> {
    let mut channels = HashMap::new();
    for (name, channel) in &config.channels {
        let gateway = ChannelGateway::from_config(
            name,
            channel,
            config.api_key(name),
            config.webhook_secret(name),
        )?;
        channels.insert(
            name.clone(),
            ChannelRuntime {
                name: name.clone(),
                config: channel.clone(),
                gateway,
            },
        );
    }
    let redis = connect_redis(&config.redis.target(), &shutdown).await?;
    let Some(redis) = redis else { return Ok(()) };
    live.set_redis(true);
    let shared = Arc::new(Shared {
        topology: Topology::from_config(&config.amqp),
        dedupe: Dedupe::new(redis.clone(), &config.redis.prefix),
        limiter: RateLimiter::new(redis.clone(), &config.redis.prefix),
        tracker: Tracker::new(
            redis.clone(),
            &config.redis.prefix,
            config.receipts.correlation_ttl,
        ),
        conversations: Conversations::new(
            redis,
            &config.redis.prefix,
            config.receipts.correlation_ttl,
        ),
        senders: senders(&channels),
        channels,
        shutdown: shutdown.clone(),
        config,
        metrics,
        live,
        next_node: std::sync::atomic::AtomicUsize::new(rand::random_range(0..usize::MAX / 2)),
    });
    let watch = tokio::spawn(watch_redis(shared.clone()));

    let mut backoff = Backoff::new(&shutdown, RECONNECT_MAX);
    let result = loop {
        let mut established = false;
        match session::session(&shared, &mut established).await {
            Ok(()) => break Ok(()),
            Err(e) => {
                shared.live.set_publisher(None).await;
                shared.metrics.set_ready(false);
                if established {
                    // The broker was fine until this cut: reconnect fast, not after the
                    // longest wait earlier failures had built up to.
                    backoff.reset();
                }
                let wait = backoff.next_wait();
                warn!(error = %e, retry_in = ?wait, "broker session ended; reconnecting");
                if !backoff.sleep(wait).await {
                    break Ok(());
                }
                shared.metrics.amqp_reconnect();
            }
        }
    };
    shared.live.set_publisher(None).await;
    watch.abort();
    result
}

/// The sender map of [`Shared::senders`]: the first channel (by name) of each provider and
/// sender, so routing is the same on every replica.
fn senders(channels: &HashMap<String, ChannelRuntime>) -> HashMap<(ProviderKind, String), String> {
    let mut names: Vec<&String> = channels.keys().collect();
    names.sort();
    let mut map = HashMap::new();
    for name in names {
        let channel = &channels[name];
        if let Some(sender) = &channel.config.sender {
            map.entry((channel.gateway.provider(), sender.clone()))
                .or_insert_with(|| name.clone());
        }
    }
    map
}

/// A token unique to one claim across every worker: this process's random id and a counter.
/// (A fresh UUIDv4 per job cost a `getrandom` syscall per job.)
fn owner_token() -> String {
    use std::sync::LazyLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PROCESS: LazyLock<String> = LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string());
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", *PROCESS, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// How often readiness re-checks Redis (and the queue sampler looks at the broker).
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Keep `/readyz` and `mensajero_ready` true to whether Redis answers.
async fn watch_redis(shared: Arc<Shared>) {
    loop {
        let up = matches!(
            tokio::time::timeout(PROBE_EVERY, shared.dedupe.ping()).await,
            Ok(Ok(()))
        );
        shared.live.set_redis(up);
        shared.metrics.set_ready(shared.live.ready());
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// The longest wait between two tries to reach the broker or Redis at start-up.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The longest wait between two tries of one Redis call a job or receipt holds its delivery
/// for: short, so the backlog moves as soon as Redis is back.
const REDIS_RETRY_MAX: Duration = Duration::from_secs(2);

/// Connect to Redis, retrying until it answers; `None` when shutdown came first.
async fn connect_redis(
    target: &RedisTarget,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Redis>> {
    let connect = || async {
        // The first connection retries by itself for several seconds; shutdown must not wait
        // for that (a rolling restart during a Redis outage would hang until SIGKILL).
        tokio::select! {
            _ = shutdown.cancelled() => Err(None),
            connected = Redis::connect(target) => connected.map_err(Some),
        }
    };
    let unreachable = |e: &Option<redis::RedisError>, wait: Duration| {
        if let Some(e) = e {
            warn!(error = %e, retry_in = ?wait, "redis unreachable");
        }
    };
    Ok(Backoff::new(shutdown, RECONNECT_MAX)
        .retry(connect, unreachable)
        .await)
}
