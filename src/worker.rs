//! The pipeline: broker → job → dedupe → provider → outcome → broker.
//!
//! [`run`] keeps one broker session alive (reconnecting with backoff), takes a semaphore
//! permit *before* taking the next delivery, and spawns one task per job. A job task acks its
//! delivery only after every event it caused — outcome, dead letter — is confirmed by the
//! broker; anything less leaves the delivery unacked, so the broker redelivers it and the
//! dedupe state makes the repeat safe.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::broker::{self, Carried, DeadLetter, PublishError, Publisher, Topology};
use crate::config::{ChannelConfig, Config, OnAmbiguous};
use crate::dedupe::{Claim, ClaimRequest, Dedupe, DedupeError, Record};
use crate::gateways::{self, ChannelGateway, SendContext};
use crate::http::{self, HttpState, Live};
use crate::job::{self, Job};
use crate::metrics::Metrics;
use crate::outcome::{self, EventKind, Outcome, OutcomeError, Status};
use crate::ratelimit::{Limits, Permit, RateLimiter};
use crate::retry::{ErrorClass, Failure, Schedule, Sent};
use crate::tracking::{Tracked, Tracker};

mod poll;
mod receipts;

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
    channels: HashMap<String, ChannelRuntime>,
    /// Cut short retry waits and lease waits when shutdown starts.
    shutdown: CancellationToken,
    /// This worker's series.
    metrics: Metrics,
    /// What the HTTP listener sees of the current broker session and of Redis.
    live: Arc<Live>,
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
    let redis = connect_redis(&config.redis.url, &shutdown).await?;
    let Some(redis) = redis else { return Ok(()) };
    live.set_redis(true);
    let shared = Arc::new(Shared {
        topology: Topology::from_config(&config.amqp),
        dedupe: Dedupe::new(redis.clone(), &config.redis.prefix),
        limiter: RateLimiter::new(redis.clone(), &config.redis.prefix),
        tracker: Tracker::new(redis, &config.redis.prefix, config.receipts.correlation_ttl),
        channels,
        shutdown: shutdown.clone(),
        config,
        metrics,
        live,
    });
    let watch = tokio::spawn(watch_redis(shared.clone()));

    let mut backoff = reconnect_backoff();
    let result = loop {
        let mut established = false;
        match session(&shared, &mut established).await {
            Ok(()) => break Ok(()),
            Err(e) => {
                shared.live.set_publisher(None).await;
                shared.metrics.set_ready(false);
                if established {
                    // The broker was fine until this cut: reconnect fast, not after the
                    // longest wait earlier failures had built up to.
                    backoff = reconnect_backoff();
                }
                let wait = backoff.next().unwrap_or(Duration::from_secs(5));
                warn!(error = %e, retry_in = ?wait, "broker session ended; reconnecting");
                tokio::select! {
                    _ = shutdown.cancelled() => break Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
                shared.metrics.amqp_reconnect();
            }
        }
    };
    shared.live.set_publisher(None).await;
    watch.abort();
    result
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

/// Pause between a lane's last ack and closing its channel at shutdown (see `run_lane`).
const ACK_SETTLE: Duration = Duration::from_millis(250);

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

fn reconnect_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

async fn connect_redis(
    url: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<redis::aio::ConnectionManager>> {
    let client = redis::Client::open(url)?;
    let mut backoff = reconnect_backoff();
    loop {
        // The first connection retries by itself for several seconds; shutdown must not wait
        // for that (a rolling restart during a Redis outage would hang until SIGKILL).
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            connected = redis::aio::ConnectionManager::new(client.clone()) => connected,
        };
        match connected {
            Ok(manager) => return Ok(Some(manager)),
            Err(e) => {
                let wait = backoff.next().unwrap_or(Duration::from_secs(5));
                warn!(error = %e, retry_in = ?wait, "redis unreachable");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Sample queue depths and consumer counts for the metrics (alerts on backlog and on
/// queues nobody consumes need them, and KEDA-less setups can scale on them).
async fn sample_queues(shared: Arc<Shared>, channel: lapin::Channel) {
    let topology = &shared.topology;
    let queues = [
        ("send", &topology.send_queue),
        ("bulk", &topology.bulk_queue),
        ("webhooks", &topology.webhooks_queue),
        ("dead", &topology.dead_queue),
    ];
    loop {
        for (label, queue) in queues {
            let passive = lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            match channel
                .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                .await
            {
                Ok(q) => shared
                    .metrics
                    .queue_sample(label, q.message_count(), q.consumer_count()),
                // The channel is gone (session ending); the next session starts a new sampler.
                Err(_) => return,
            }
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// One work queue with its own consumer, prefetch and in-flight budget, so a flood in one
/// lane never takes the other's capacity.
#[derive(Debug, Clone, Copy)]
struct Lane {
    /// Routing key jobs of this lane carry (and that parked copies return with).
    key: &'static str,
    max_in_flight: usize,
    prefetch: u16,
}

/// One broker connection's life. `Ok` means shutdown was requested and handled;
/// `established` is set once the session could publish and consume.
async fn session(shared: &Arc<Shared>, established: &mut bool) -> anyhow::Result<()> {
    let connection = broker::connect(&shared.config.amqp.url, "mensajero-worker").await?;
    let setup = connection.create_channel().await?;
    shared.topology.declare(&setup).await?;
    let publisher = Publisher::new(connection.create_channel().await?).await?;
    shared.live.set_publisher(Some(publisher.clone())).await;
    *established = true;
    shared.metrics.set_ready(shared.live.ready());
    let sampler = tokio::spawn(sample_queues(shared.clone(), setup));
    let poller = tokio::spawn(poll::run(shared.clone(), publisher.clone()));
    let worker = &shared.config.worker;
    let receipts = &shared.config.receipts;
    let lanes = [
        Lane {
            key: broker::SEND_KEY,
            max_in_flight: worker.max_in_flight,
            prefetch: worker.prefetch,
        },
        Lane {
            key: broker::BULK_KEY,
            max_in_flight: worker.bulk_max_in_flight,
            prefetch: worker.bulk_prefetch,
        },
        Lane {
            key: broker::RECEIPT_KEY,
            max_in_flight: receipts.max_in_flight,
            prefetch: receipts.prefetch,
        },
    ];
    // Stops every lane when one fails (the connection is shared) or on shutdown.
    let stop = shared.shutdown.child_token();
    let (transactional, bulk, receipts) = tokio::join!(
        run_lane(shared, &connection, &publisher, lanes[0], &stop),
        run_lane(shared, &connection, &publisher, lanes[1], &stop),
        run_lane(shared, &connection, &publisher, lanes[2], &stop),
    );
    sampler.abort();
    poller.abort();
    shared.live.set_publisher(None).await;
    let _ = connection.close(200, "session over".into()).await;
    transactional.and(bulk).and(receipts)?;
    if !shared.shutdown.is_cancelled() {
        anyhow::bail!("the publisher channel closed");
    }
    info!("worker stopped");
    Ok(())
}

async fn run_lane(
    shared: &Arc<Shared>,
    connection: &lapin::Connection,
    publisher: &Publisher,
    lane: Lane,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let queue = match lane.key {
        broker::BULK_KEY => shared.topology.bulk_queue.as_str(),
        broker::RECEIPT_KEY => shared.topology.webhooks_queue.as_str(),
        _ => shared.topology.send_queue.as_str(),
    };
    let consume = connection.create_channel().await?;
    // Per-consumer QoS: quorum queues refuse global QoS with a connection error.
    consume
        .basic_qos(lane.prefetch, BasicQosOptions { global: false })
        .await?;
    let mut deliveries = consume
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let tag = deliveries.tag();
    info!(queue, max_in_flight = lane.max_in_flight, "consuming");

    let permits = Arc::new(Semaphore::new(lane.max_in_flight));
    let mut tasks = JoinSet::new();
    let ended = loop {
        // Reap finished tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
        // The permit comes first: never take a delivery there is no capacity for.
        let permit = tokio::select! {
            _ = stop.cancelled() => break None,
            permit = permits.clone().acquire_owned() => permit?,
        };
        let next = tokio::select! {
            _ = stop.cancelled() => break None,
            next = deliveries.next() => next,
        };
        match next {
            Some(Ok(delivery)) => {
                let shared = shared.clone();
                let publisher = publisher.clone();
                let stop = stop.clone();
                tasks.spawn(async move {
                    if lane.key == broker::RECEIPT_KEY {
                        receipts::process(&shared, &publisher, &delivery).await;
                    } else {
                        shared.metrics.job_consumed(lane.key);
                        process(&shared, &publisher, &delivery, lane.key).await;
                    }
                    if !publisher.is_open() {
                        // Nothing can be confirmed on this session any more: start a new one
                        // rather than consume jobs that can only be redelivered.
                        stop.cancel();
                    }
                    drop(permit);
                });
            }
            Some(Err(e)) => break Some(anyhow::Error::from(e).context("consumer failed")),
            None => {
                break Some(anyhow::anyhow!(
                    "the broker cancelled the consumer of {queue}"
                ));
            }
        }
    };

    if let Some(error) = ended {
        stop.cancel();
        // The channel is gone: running tasks will fail to ack and their deliveries come back.
        // Let them finish in the background; the next session starts now.
        tasks.detach_all();
        return Err(error);
    }
    if !shared.shutdown.is_cancelled() {
        // The other lane failed; this one ends with the session.
        tasks.detach_all();
        return Ok(());
    }

    info!(queue, in_flight = tasks.len(), grace = ?shared.config.worker.shutdown_grace, "shutting down: no new jobs");
    if let Err(e) = consume
        .basic_cancel(tag, BasicCancelOptions::default())
        .await
    {
        warn!(error = %e, "cancelling consumer");
    }
    let drained = tokio::time::timeout(shared.config.worker.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            queue,
            abandoned = tasks.len(),
            "grace period over; unfinished jobs go back to the broker"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    // RabbitMQ quorum queues can drop acks that arrive just before their channel closes
    // (rabbitmq-server#10327: the settlements race the consumer's removal, and the acked jobs
    // go back to the queue). Harmless for correctness — dedupe turns the redelivery into a
    // re-published outcome — but a clean shutdown should not cause redeliveries: give the last
    // acks a moment to settle, then close the channel gracefully before the connection.
    tokio::time::sleep(ACK_SETTLE).await;
    if let Err(e) = consume.close(200, "shutdown".into()).await {
        warn!(queue, error = %e, "closing the consumer channel");
    }
    // Closing the connection (in `session`) returns every unacked delivery to its queue.
    Ok(())
}

/// What to do with a delivery once its job task is done with it.
enum Disposition {
    /// Everything it caused is confirmed.
    Ack,
    /// Give it back for another worker (shutdown, dependency trouble).
    Requeue,
}

/// Why a job task stopped without deciding the delivery's fate.
#[derive(Debug, thiserror::Error)]
enum TaskError {
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("shutdown while waiting on redis")]
    Shutdown,
}

// The delivery is borrowed, not moved, down the job's calls: each async fn that takes it by
// value keeps its own copy (432 bytes) in the task for the task's whole life.
async fn process(shared: &Shared, publisher: &Publisher, delivery: &Delivery, lane: &'static str) {
    let result = handle(shared, publisher, delivery, lane).await;
    settle(publisher, delivery, result).await;
}

/// Ack a delivery whose effects are confirmed, or hand it back.
async fn settle(
    publisher: &Publisher,
    delivery: &Delivery,
    result: Result<Disposition, TaskError>,
) {
    let settled = match result {
        Ok(Disposition::Ack) => delivery.acker.ack(BasicAckOptions::default()).await,
        Ok(Disposition::Requeue) | Err(TaskError::Shutdown) => {
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
        }
        Err(TaskError::Publish(e)) if !publisher.is_open() => {
            // Not acked: the broker redelivers it, and dedupe turns the repeat into a
            // re-publish of whatever this attempt got to record.
            warn!(error = %e, "publishing failed; the job will be redelivered");
            return;
        }
        Err(TaskError::Publish(e)) => {
            // The channel lives but refused this publish (unroutable, nacked): hand the job
            // back. The pause keeps a persistent fault from spinning; the queue's delivery
            // limit dead-letters a job that never gets through.
            error!(error = %e, "publishing failed; returning the job to its queue");
            tokio::time::sleep(Duration::from_secs(1)).await;
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
        }
    };
    match settled {
        Ok(true) => {}
        Ok(false) => debug!("channel closed before settling; the job will be redelivered"),
        Err(e) => warn!(error = %e, "settling the delivery failed; the job will be redelivered"),
    }
}

async fn handle(
    shared: &Shared,
    publisher: &Publisher,
    delivery: &Delivery,
    lane: &'static str,
) -> Result<Disposition, TaskError> {
    let carried = Carried::read(&delivery.properties);
    let limit = shared.topology.delivery_limit;
    if carried.delivery_count >= limit {
        // The broker dead-letters it if this delivery fails too; say so once, here.
        error!(
            delivery_count = carried.delivery_count,
            delivery_limit = limit,
            "poison message: last delivery before the broker dead-letters it with reason delivery_limit"
        );
    }
    let job = match job::parse(&delivery.data) {
        Ok(job) => job,
        Err(rejection) => {
            let failure =
                Failure::invalid(rejection.error.code.as_str(), rejection.error.to_string());
            let known = Known {
                job_id: rejection.job_id.as_deref(),
                channel: rejection.channel.as_deref(),
                job: None,
            };
            return refuse(shared, publisher, delivery, known, &failure).await;
        }
    };
    let channel_name = carried.via.as_deref().unwrap_or(&job.channel);
    let Some(channel) = shared.channels.get(channel_name) else {
        let failure = Failure::invalid(
            "unknown_channel",
            format!("channel: `{channel_name}` is not configured"),
        );
        let known = Known {
            job_id: Some(&job.id),
            channel: Some(&job.channel),
            job: Some(&job),
        };
        return refuse(shared, publisher, delivery, known, &failure).await;
    };
    let span = info_span!("job", job_id = %job.id, channel = %channel.name, attempt = tracing::field::Empty);
    JobTask {
        shared,
        publisher,
        delivery,
        job: &job,
        lane,
        carried,
        channel,
    }
    .run()
    .instrument(span)
    .await
}

/// A step that ends a job (or publishes for it), boxed. Inline, the futures of these paths
/// (publishing with confirms, recording in Redis) would make every job task that much larger
/// for its whole life, including the long wait on the gateway when thousands are in flight;
/// boxed, each costs one allocation when it runs (bench/RESULTS.md, "Where the memory of an
/// in-flight job goes").
type Step<'s, T = Disposition> = Pin<Box<dyn Future<Output = Result<T, TaskError>> + Send + 's>>;

/// What could be read of a job that is refused.
struct Known<'a> {
    job_id: Option<&'a str>,
    channel: Option<&'a str>,
    /// The whole job, when it parsed (it names an unknown channel).
    job: Option<&'a Job>,
}

/// A job that cannot even be attempted: `failed` (when its id is readable) and a dead letter.
async fn refuse(
    shared: &Shared,
    publisher: &Publisher,
    delivery: &Delivery,
    known: Known<'_>,
    failure: &Failure,
) -> Result<Disposition, TaskError> {
    let Known {
        job_id,
        channel,
        job,
    } = known;
    warn!(job_id = job_id.unwrap_or("-"), channel = channel.unwrap_or("-"), reason = %failure.code, error = %failure.message, "refusing job");
    if let Some(job_id) = job_id {
        let channel_name = channel.unwrap_or("unknown");
        let provider = shared
            .channels
            .get(channel_name)
            .map(|c| c.gateway.provider().as_str().to_string());
        let event = Outcome {
            event_id: outcome::event_id(
                channel_name,
                job_id,
                job_id,
                EventKind::Status,
                Status::Failed,
            ),
            event: EventKind::Status,
            job_id: job_id.to_string(),
            idempotency_key: job_id.to_string(),
            channel: channel_name.to_string(),
            provider,
            to: None,
            status: Status::Failed,
            previous_status: None,
            provider_message_id: None,
            attempt: 0,
            error: Some(OutcomeError::from_failure(failure, 0)),
            occurred_at: Utc::now(),
            metadata: job.and_then(|j| j.metadata.clone()),
            original_job_id: None,
            inferred: false,
            channels_tried: Vec::new(),
        };
        publish_outcome(shared, publisher, &event).await?;
    }
    let letter = DeadLetter {
        reason: &failure.code,
        class: failure.class,
        attempts: 0,
        message: &failure.message,
        job_id,
        channel,
    };
    publish_dead_letter(shared, publisher, delivery, &letter).await?;
    Ok(Disposition::Ack)
}

/// One valid job on a known channel.
struct JobTask<'a> {
    shared: &'a Shared,
    publisher: &'a Publisher,
    delivery: &'a Delivery,
    job: &'a Job,
    /// Routing key of the lane the job came from; parked copies return to it.
    lane: &'static str,
    /// Progress carried between attempts in the message's headers.
    carried: Carried,
    /// The channel sending it now (the job's own, or a failover channel).
    channel: &'a ChannelRuntime,
}

/// How one channel's turn with a job ended.
enum Turn {
    /// The delivery's fate is decided.
    Settled(Disposition),
    /// The channel provably did not send and gave up: try the next failover channel.
    FailOver(Failure),
}

impl<'a> JobTask<'a> {
    async fn run(mut self) -> Result<Disposition, TaskError> {
        let now = Utc::now();
        let first_seen = *self.carried.first_seen.get_or_insert(now);
        let deadline = self.deadline();
        if let Some(deadline) = deadline
            && deadline <= now
        {
            let failure = Failure::new(
                ErrorClass::Expired,
                "expired",
                format!("expired at {}", outcome::timestamp(deadline)),
            );
            return self.fail_unrecorded(&failure, None).await;
        }
        // A scheduled send, or the rest of a wait a delay tier could not cover exactly.
        let not_before = match (self.carried.not_before, self.job.send_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(not_before) = not_before
            && not_before > now
        {
            if deadline.is_some_and(|d| not_before > d) {
                let failure = Failure::new(
                    ErrorClass::Expired,
                    "expired",
                    "it expires before it may be sent (send_at / retry time after expires_at)",
                );
                return self.fail_unrecorded(&failure, None).await;
            }
            let wait = (not_before - now).to_std().unwrap_or_default();
            if wait > self.shared.config.worker.inline_wait {
                self.carried.not_before = Some(not_before);
                return self.park(wait).await;
            }
            if !self.sleep(wait).await {
                return Ok(Disposition::Requeue);
            }
        }
        self.carried.not_before = None;

        loop {
            match self.on_channel(first_seen, deadline).await? {
                Turn::Settled(disposition) => return Ok(disposition),
                Turn::FailOver(failure) => {
                    let Some(next) = self.next_failover() else {
                        let failure = Failure {
                            class: failure.class.terminal(),
                            message: format!("{}; no failover channel left", failure.message),
                            ..failure
                        };
                        // The record says `failed_over`; the job itself ends here.
                        return self.fail_unrecorded(&failure, Some(Status::Queued)).await;
                    };
                    warn!(from = %self.channel.name, to = %next.name, reason = %failure.code, "failing over");
                    let record = Record {
                        status: Status::Failed,
                        job_id: self.job.id.clone(),
                        provider_message_id: None,
                        error: Some(OutcomeError {
                            class: failure.class,
                            code: FAILED_OVER.into(),
                            message: format!("failed over to {}: {}", next.name, failure.message),
                            provider_code: failure.provider_code.clone(),
                            attempts: self.carried.attempts,
                        }),
                        attempt: self.carried.attempts,
                    };
                    let key = self.job.idempotency_key();
                    let window = self.channel.config.dedupe_window;
                    self.redis(|| {
                        self.shared
                            .dedupe
                            .complete(&self.channel.name, key, &record, window)
                    })
                    .await?;
                    self.carried.tried.push(self.channel.name.clone());
                    self.carried.via = Some(next.name.clone());
                    self.carried.attempts = 0;
                    self.carried.maybe_sent = false;
                    self.channel = next;
                    tracing::Span::current().record("channel", next.name.as_str());
                }
            }
        }
    }

    /// Claim the key on the current channel and attempt until the job is settled, parked,
    /// or the channel gives up.
    async fn on_channel(
        &mut self,
        first_seen: DateTime<Utc>,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<Turn, TaskError> {
        let provider = self.channel.gateway.provider();
        let own_copy = self.delivery.redelivered || self.carried.is_internal();
        let owner = owner_token();
        let config = &self.shared.config;
        let key = self.job.idempotency_key();
        let request = ClaimRequest {
            channel: &self.channel.name,
            idempotency_key: key,
            job_id: &self.job.id,
            owner: &owner,
            lease: config.worker.lease,
            window: self.channel.config.dedupe_window,
            take_over_live: own_copy && gateways::gateway(provider).capabilities().idempotency,
            restart_failed: self.carried.replay,
        };

        let limits = Limits {
            per_second: self.channel.config.rate_per_second,
            burst: self.channel.config.rate_burst,
            recipient_interval: self.channel.config.recipient_interval,
        };
        // The first slot is booked by the claim itself (one round trip to admit a job).
        let booking = self.shared.limiter.booking(
            &self.channel.name,
            &self.job.to,
            &limits,
            config.worker.inline_wait,
        );
        let mut booked: Option<Permit>;
        // The claim can also mark the first attempt begun when the job's slot is free now,
        // saving `begin_attempt`'s round trip (one of four per job). That marks the job
        // ambiguous a moment early — before `queued` is published — so a crash in between
        // resumes it as possibly sent: retried on its own channel, never failed over. Only a
        // gateway without idempotency under `on_ambiguous = "fail"` would fail such a job, so
        // that case keeps the separate call.
        let begin_with_claim = gateways::gateway(provider).capabilities().idempotency
            || self.channel.config.on_ambiguous == OnAmbiguous::Resend;
        let mut begun: bool;

        // Whether the last attempt may have reached the gateway, for whoever resumes the job.
        let mut ambiguous = false;
        let mut attempt = loop {
            let (claim, permit) = self
                .redis(|| {
                    self.shared
                        .dedupe
                        .claim_and_book(&request, &booking, begin_with_claim)
                })
                .await?;
            begun = begin_with_claim && matches!(permit, Some(Permit::Now));
            booked = permit;
            match claim {
                Claim::Acquired => break self.carried.attempts + 1,
                Claim::Resumed {
                    ambiguous: was_ambiguous,
                    previous_attempts,
                } => {
                    ambiguous = was_ambiguous;
                    // The earlier attempt's fate is unknown: it may have sent, so this job
                    // must never be failed over to another gateway (SPEC §4).
                    self.carried.maybe_sent |= was_ambiguous;
                    if was_ambiguous
                        && !gateways::gateway(provider).capabilities().idempotency
                        && self.channel.config.on_ambiguous == OnAmbiguous::Fail
                    {
                        let failure = Failure::new(
                            ErrorClass::RetriesExhausted,
                            "ambiguous_send",
                            "an earlier attempt may have reached the gateway, which cannot deduplicate; on_ambiguous = \"fail\"",
                        );
                        return self
                            .finish_failed(previous_attempts.max(1), &failure)
                            .await
                            .map(Turn::Settled);
                    }
                    if !self.carried.is_internal() {
                        info!(previous_attempts, ambiguous, "resuming an interrupted job");
                    }
                    break previous_attempts.max(self.carried.attempts) + 1;
                }
                Claim::Busy { job_id, lease_left } if job_id == self.job.id => {
                    // Our own earlier copy may still be running somewhere (or has died holding
                    // the key: a broker does not always mark such a copy as redelivered); on
                    // a gateway without idempotency only its lease running out makes a resend
                    // safe. Reporting ourselves as a duplicate here would lose the job if that
                    // earlier copy never finishes.
                    debug!(?lease_left, "waiting for the previous attempt's lease");
                    if !self
                        .sleep(lease_left.clamp(Duration::from_millis(50), Duration::from_secs(5)))
                        .await
                    {
                        return Ok(Turn::Settled(Disposition::Requeue));
                    }
                }
                Claim::Busy { job_id, .. } => {
                    return self
                        .duplicate(&job_id, Status::Queued, None)
                        .await
                        .map(Turn::Settled);
                }
                Claim::Done(record) if record.job_id == self.job.id && own_copy => {
                    if record.error.as_ref().is_some_and(|e| e.code == FAILED_OVER) {
                        // Interrupted during a failover: carry on with the next channel.
                        let error = record
                            .error
                            .unwrap_or_else(|| unreachable!("checked above"));
                        let failure = Failure::new(error.class, error.code, error.message);
                        self.carried.attempts = record.attempt;
                        return Ok(Turn::FailOver(failure));
                    }
                    // The earlier copy got as far as recording its end; make sure the world
                    // heard about it (same event ids, so consumers drop repeats).
                    info!(
                        status = record.status.as_str(),
                        "re-publishing the outcome of an interrupted job"
                    );
                    return self.publish_terminal(&record).await.map(Turn::Settled);
                }
                Claim::Done(record) => {
                    return self
                        .duplicate(
                            &record.job_id,
                            record.status,
                            record.provider_message_id.as_deref(),
                        )
                        .await
                        .map(Turn::Settled);
                }
            }
        };

        // Copies from before the `queued` header existed tell by their progress instead.
        let announced =
            self.carried.queued || self.carried.attempts > 0 || !self.carried.tried.is_empty();
        if !announced {
            self.publish(self.event(Status::Queued, None, attempt, None, None))
                .await?;
        }
        self.carried.queued = true;

        loop {
            tracing::Span::current().record("attempt", attempt);
            let permit = match booked.take() {
                Some(permit) => permit,
                None => {
                    self.redis(|| {
                        self.shared.limiter.acquire(
                            &self.channel.name,
                            &self.job.to,
                            &limits,
                            config.worker.inline_wait,
                        )
                    })
                    .await?
                }
            };
            if !matches!(permit, Permit::Now) {
                self.shared.metrics.rate_limit_wait(&self.channel.name);
            }
            match permit {
                Permit::Now => {}
                Permit::After(wait) => {
                    if !self.sleep(wait).await {
                        let _ = self
                            .shared
                            .dedupe
                            .release(&self.channel.name, key, &owner, ambiguous)
                            .await;
                        return Ok(Turn::Settled(Disposition::Requeue));
                    }
                }
                Permit::Park(wait) => {
                    // Waiting for the channel's (or recipient's) next slot is not a failure
                    // and costs no attempt; a long wait is spent in a delay queue.
                    debug!(?wait, "rate limited; parking");
                    self.redis(|| {
                        self.shared
                            .dedupe
                            .release(&self.channel.name, key, &owner, ambiguous)
                    })
                    .await?;
                    let until = Utc::now()
                        + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                    self.carried.not_before = Some(until);
                    return self.park(wait).await.map(Turn::Settled);
                }
            }
            if !std::mem::take(&mut begun) {
                self.redis(|| {
                    self.shared.dedupe.begin_attempt(
                        &self.channel.name,
                        key,
                        &owner,
                        config.worker.lease,
                    )
                })
                .await?;
            }
            let in_flight = self.shared.metrics.in_flight(self.lane);
            in_flight.inc();
            let started = std::time::Instant::now();
            let result = self
                .channel
                .gateway
                .send(
                    self.job,
                    SendContext {
                        idempotency_key: key,
                        attempt,
                    },
                )
                .await;
            in_flight.dec();
            let metrics = &self.shared.metrics;
            let result_word = result.as_ref().map_or_else(|f| f.class.as_str(), |_| "ok");
            metrics.gateway_request(provider.as_str(), result_word, started.elapsed());
            match &result {
                Ok(_) => metrics.channel_health(&self.channel.name, true),
                Err(f) if matches!(f.class, ErrorClass::Auth | ErrorClass::Channel) => {
                    metrics.channel_health(&self.channel.name, false)
                }
                Err(_) => {}
            }
            let failure = match result {
                Ok(accepted) => {
                    info!(provider_message_id = %accepted.provider_message_id, replayed = accepted.replayed, "sent");
                    let record = Record {
                        status: Status::Sent,
                        job_id: self.job.id.clone(),
                        provider_message_id: Some(accepted.provider_message_id),
                        error: None,
                        attempt,
                    };
                    return self.complete(record).await.map(Turn::Settled);
                }
                Err(failure) => failure,
            };
            self.carried.attempts = attempt;
            ambiguous = failure.sent == Sent::Maybe;
            self.carried.maybe_sent |= ambiguous;
            if !failure.class.is_retryable() {
                warn!(class = failure.class.as_str(), code = %failure.code, error = %failure.message, "failed");
                return self
                    .finish_failed(attempt, &failure)
                    .await
                    .map(Turn::Settled);
            }

            let channel = &self.channel.config;
            let slow = matches!(failure.class, ErrorClass::Auth | ErrorClass::Channel);
            let can_fail_over = !self.carried.maybe_sent && self.next_failover().is_some();
            // Credentials and channel trouble are the failover case SPEC §4 names: another
            // channel can send now, while this one waits for an operator.
            if slow && can_fail_over {
                return Ok(Turn::FailOver(failure));
            }
            // auth/channel trouble is retried until max_age (an operator can fix it and the
            // backlog drains); everything else also stops at max_attempts.
            if !slow && attempt >= channel.max_attempts {
                if can_fail_over {
                    return Ok(Turn::FailOver(failure));
                }
                return self
                    .give_up(attempt, failure, "max_attempts")
                    .await
                    .map(Turn::Settled);
            }
            let wait = retry_wait(channel, attempt, &failure);
            let next =
                Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
            if next
                > first_seen
                    + chrono::Duration::from_std(channel.max_age).unwrap_or(chrono::Duration::MAX)
            {
                return self
                    .give_up(attempt, failure, "max_age")
                    .await
                    .map(Turn::Settled);
            }
            if let Some(deadline) = deadline
                && next > deadline
            {
                let expired = Failure {
                    class: ErrorClass::Expired,
                    message: format!(
                        "expires before the next attempt could be made; last error: {}",
                        failure.message
                    ),
                    ..failure
                };
                return self
                    .finish_failed(attempt, &expired)
                    .await
                    .map(Turn::Settled);
            }
            warn!(class = failure.class.as_str(), code = %failure.code, error = %failure.message, retry_in = ?wait, "attempt failed; will retry");
            if wait > config.worker.inline_wait {
                // Long waits are durable: the job waits in a broker delay queue, not here.
                let ambiguous = failure.sent == Sent::Maybe;
                self.redis(|| {
                    self.shared
                        .dedupe
                        .release(&self.channel.name, key, &owner, ambiguous)
                })
                .await?;
                self.carried.not_before = Some(next);
                let tier = broker::tier_name(self.shared.topology.tier_for(wait));
                self.shared.metrics.retry(&self.channel.name, &tier);
                return self.park(wait).await.map(Turn::Settled);
            }
            self.shared.metrics.retry(&self.channel.name, "inline");
            if !self.sleep(wait).await {
                let ambiguous = failure.sent == Sent::Maybe;
                let _ = self
                    .shared
                    .dedupe
                    .release(&self.channel.name, key, &owner, ambiguous)
                    .await;
                return Ok(Turn::Settled(Disposition::Requeue));
            }
            attempt += 1;
        }
    }

    /// Stop retrying: `retries_exhausted` (or the `auth` / `channel` class it kept failing with).
    fn give_up<'s>(&'s self, attempt: u32, failure: Failure, limit: &'s str) -> Step<'s> {
        Box::pin(async move {
            let failure = Failure {
                class: failure.class.terminal(),
                message: format!(
                    "gave up after {attempt} attempts ({limit}): {}",
                    failure.message
                ),
                ..failure
            };
            warn!(class = failure.class.as_str(), code = %failure.code, error = %failure.message, "failed");
            self.finish_failed(attempt, &failure).await
        })
    }

    /// The next failover channel that can express this message, if any.
    fn next_failover(&self) -> Option<&'a ChannelRuntime> {
        let shared: &'a Shared = self.shared;
        let origin = shared.channels.get(&self.job.channel)?;
        origin
            .config
            .failover
            .iter()
            .filter(|name| **name != self.channel.name && !self.carried.tried.contains(name))
            .filter_map(|name| shared.channels.get(name))
            .find(|candidate| candidate.gateway.can_express(self.job))
    }

    /// Park the job in a delay queue with its progress in the headers; ack the original once
    /// the broker has the copy.
    fn park(&self, wait: Duration) -> Step<'_> {
        Box::pin(async move {
            let tier = self
                .publisher
                .park(
                    &self.shared.topology,
                    self.lane,
                    &self.delivery.data,
                    &self.delivery.properties,
                    &self.carried,
                    wait,
                )
                .await?;
            debug!(?wait, ?tier, "parked");
            Ok(Disposition::Ack)
        })
    }

    /// Sleep unless shutdown starts first; false when shutdown cut it short.
    async fn sleep(&self, wait: Duration) -> bool {
        tokio::select! {
            _ = self.shared.shutdown.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    fn finish_failed<'s>(&'s self, attempt: u32, failure: &'s Failure) -> Step<'s> {
        Box::pin(async move {
            let record = Record {
                status: Status::Failed,
                job_id: self.job.id.clone(),
                provider_message_id: None,
                error: Some(OutcomeError::from_failure(failure, attempt)),
                attempt,
            };
            self.complete(record).await
        })
    }

    /// Record the terminal state, then publish it (or, if another worker recorded one first,
    /// publish that instead).
    fn complete(&self, record: Record) -> Step<'_> {
        Box::pin(async move {
            let key = self.job.idempotency_key();
            let window = self.channel.config.dedupe_window;
            let existing = self
                .redis(|| {
                    self.shared
                        .dedupe
                        .complete(&self.channel.name, key, &record, window)
                })
                .await?;
            self.publish_terminal(existing.as_ref().unwrap_or(&record))
                .await
        })
    }

    /// Publish a terminal record's outcome (and, for failures, the dead letter).
    fn publish_terminal<'s>(&'s self, record: &'s Record) -> Step<'s> {
        Box::pin(async move {
            let event = self.event(
                record.status,
                Some(Status::Queued),
                record.attempt,
                record.provider_message_id.clone(),
                record.error.clone(),
            );
            self.publish(event).await?;
            if let Some(error) = &record.error {
                self.dead_letter(error.class, &error.code, &error.message, error.attempts)
                    .await?;
            }
            if let (Status::Sent, Some(id)) = (record.status, &record.provider_message_id) {
                // Only after `sent` is confirmed: a receipt must never be published before it.
                // Until this is written, a receipt for `id` waits as unknown and is retried.
                let tracked = Tracked {
                    job_id: self.job.id.clone(),
                    idempotency_key: self.job.idempotency_key().to_string(),
                    provider: self.channel.gateway.provider().as_str().to_string(),
                    to: self.job.to.clone(),
                    status: Status::Sent,
                    attempt: record.attempt,
                    metadata: self.job.metadata.clone(),
                    channels_tried: self.carried.tried.clone(),
                };
                let tracker = &self.shared.tracker;
                self.redis(|| tracker.record_sent(&self.channel.name, id, &tracked))
                    .await?;
                if let Some(after) = self.channel.config.poll_after {
                    self.redis(|| tracker.schedule_poll(&self.channel.name, id, after))
                        .await?;
                }
            }
            Ok(Disposition::Ack)
        })
    }

    /// Publish `failed` and the dead letter without touching the dedupe record: before any
    /// claim (expired, `previous` None), or after a failover whose bookkeeping already wrote
    /// the record (`previous` queued).
    fn fail_unrecorded<'s>(&'s self, failure: &'s Failure, previous: Option<Status>) -> Step<'s> {
        Box::pin(async move {
            warn!(class = failure.class.as_str(), code = %failure.code, error = %failure.message, "failed");
            let attempts = self.carried.attempts;
            let error = OutcomeError::from_failure(failure, attempts);
            self.publish(self.event(Status::Failed, previous, attempts, None, Some(error)))
                .await?;
            self.dead_letter(failure.class, &failure.code, &failure.message, attempts)
                .await?;
            Ok(Disposition::Ack)
        })
    }

    fn duplicate<'s>(
        &'s self,
        original: &'s str,
        status: Status,
        provider_message_id: Option<&'s str>,
    ) -> Step<'s> {
        Box::pin(async move {
            info!(
                original_job_id = original,
                status = status.as_str(),
                "duplicate; not sent"
            );
            let mut event = self.event(
                status,
                None,
                0,
                provider_message_id.map(str::to_owned),
                None,
            );
            event.event = EventKind::Duplicate;
            event.event_id = outcome::event_id(
                &self.channel.name,
                self.job.idempotency_key(),
                &self.job.id,
                EventKind::Duplicate,
                status,
            );
            event.original_job_id = Some(original.to_string());
            self.publish(event).await?;
            Ok(Disposition::Ack)
        })
    }

    async fn dead_letter(
        &self,
        class: ErrorClass,
        reason: &str,
        message: &str,
        attempts: u32,
    ) -> Result<(), TaskError> {
        let letter = DeadLetter {
            reason,
            class,
            attempts,
            message,
            job_id: Some(&self.job.id),
            channel: Some(&self.job.channel),
        };
        publish_dead_letter(self.shared, self.publisher, self.delivery, &letter).await
    }

    fn publish(&self, event: Outcome) -> Step<'_, ()> {
        Box::pin(async move { publish_outcome(self.shared, self.publisher, &event).await })
    }

    fn event(
        &self,
        status: Status,
        previous_status: Option<Status>,
        attempt: u32,
        provider_message_id: Option<String>,
        error: Option<OutcomeError>,
    ) -> Outcome {
        let key = self.job.idempotency_key();
        Outcome {
            event_id: outcome::event_id(
                &self.channel.name,
                key,
                &self.job.id,
                EventKind::Status,
                status,
            ),
            event: EventKind::Status,
            job_id: self.job.id.clone(),
            idempotency_key: key.to_string(),
            channel: self.channel.name.clone(),
            provider: Some(self.channel.gateway.provider().as_str().to_string()),
            to: Some(self.job.to.clone()),
            status,
            previous_status,
            provider_message_id,
            attempt,
            error,
            occurred_at: Utc::now(),
            metadata: self.job.metadata.clone(),
            original_job_id: None,
            inferred: false,
            channels_tried: self.carried.tried.clone(),
        }
    }

    /// When the job stops being sendable: `expires_at`, or `ttl_seconds` after it was
    /// published (the AMQP timestamp; without one, counting from its first sight).
    fn deadline(&self) -> Option<DateTime<Utc>> {
        let published = self
            .delivery
            .properties
            .timestamp()
            .and_then(|t| i64::try_from(t).ok())
            .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
            .or(self.carried.first_seen)
            .unwrap_or_else(Utc::now);
        self.job.deadline(published)
    }

    async fn redis<T, F, Fut>(&self, op: F) -> Result<T, TaskError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, DedupeError>>,
    {
        with_redis(self.shared, op).await
    }
}

/// Run a Redis operation until it succeeds: Redis trouble is never the job's (or the
/// receipt's) fault, so it waits, holding its delivery, instead of failing. Shutdown ends the
/// wait.
async fn with_redis<T, F, Fut>(shared: &Shared, op: F) -> Result<T, TaskError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, DedupeError>>,
{
    let mut backoff = reconnect_backoff();
    loop {
        // Boxed for the same reason as the publisher's future: a Redis call's future is
        // ~0.8 KiB and short-lived; inline, every job task would carry it while it waits on
        // the gateway.
        match Box::pin(op()).await {
            Ok(value) => return Ok(value),
            Err(e) => {
                shared.metrics.redis_error();
                shared.live.set_redis(false);
                let wait = backoff
                    .next()
                    .unwrap_or(Duration::from_secs(2))
                    .min(Duration::from_secs(2));
                error!(error = %e, retry_in = ?wait, "redis unavailable");
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return Err(TaskError::Shutdown),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Publish an outcome (confirmed) and count it.
async fn publish_outcome(
    shared: &Shared,
    publisher: &Publisher,
    event: &Outcome,
) -> Result<(), TaskError> {
    publisher.outcome(&shared.topology, event).await?;
    let metrics = &shared.metrics;
    match event.event {
        EventKind::Duplicate => metrics.duplicate(&event.channel),
        EventKind::Status => metrics.outcome(event.status.as_str(), &event.channel),
    }
    if let (EventKind::Status, Some(error)) = (event.event, &event.error) {
        metrics.failure(&event.channel, error.class.as_str(), &error.code);
    }
    Ok(())
}

/// Dead-letter a delivery (its body untouched, `letter` in the headers), confirmed, and count it.
async fn publish_dead_letter(
    shared: &Shared,
    publisher: &Publisher,
    delivery: &Delivery,
    letter: &DeadLetter<'_>,
) -> Result<(), TaskError> {
    publisher
        .dead_letter(
            &shared.topology,
            &delivery.data,
            &delivery.properties,
            letter,
        )
        .await?;
    shared.metrics.dead_letter(letter.reason);
    Ok(())
}

/// Code of the dedupe record a channel keeps after handing a job to a failover channel.
const FAILED_OVER: &str = "failed_over";

/// The wait before the next attempt: the channel's schedule (jittered), never shorter than the
/// gateway's `Retry-After`, with floors for classes that need time to clear.
fn retry_wait(channel: &ChannelConfig, attempt: u32, failure: &Failure) -> Duration {
    let wait = Schedule::new(channel.retry_schedule.clone()).delay(attempt, failure.retry_after);
    match failure.class {
        ErrorClass::RateLimited if failure.retry_after.is_none() => {
            wait.max(channel.rate_limited_backoff)
        }
        ErrorClass::Auth | ErrorClass::Channel => wait.max(channel.slow_backoff),
        _ => wait,
    }
}
