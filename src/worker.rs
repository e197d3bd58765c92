//! The pipeline: broker → job → dedupe → provider → outcome → broker.
//!
//! [`run`] keeps one broker session alive (reconnecting with backoff), takes a semaphore
//! permit *before* taking the next delivery, and spawns one task per job. A job task acks its
//! delivery only after every event it caused — outcome, dead letter — is confirmed by the
//! broker; anything less leaves the delivery unacked, so the broker redelivers it and the
//! dedupe state makes the repeat safe.

use std::collections::HashMap;
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

use crate::broker::{self, DeadLetter, PublishError, Publisher, Topology};
use crate::config::{ChannelConfig, Config, OnAmbiguous};
use crate::dedupe::{Claim, Dedupe, DedupeError, Record};
use crate::job::{self, Job};
use crate::outcome::{self, EventKind, Outcome, OutcomeError, Status};
use crate::providers::{Gateway, SendContext};
use crate::retry::{ErrorClass, Failure, Sent};

/// A configured channel, ready to send.
pub struct ChannelRuntime {
    /// The channel's name (routing-key word, Redis key part).
    pub name: String,
    /// Its configuration.
    pub config: ChannelConfig,
    /// Its gateway.
    pub gateway: Gateway,
}

/// Everything job tasks share.
struct Shared {
    config: Config,
    topology: Topology,
    dedupe: Dedupe,
    channels: HashMap<String, ChannelRuntime>,
    /// Cut short retry waits and lease waits when shutdown starts.
    shutdown: CancellationToken,
}

/// Run a worker until `shutdown` is cancelled; returns once in-flight jobs are finished (or
/// the grace period ran out and the rest were handed back to the broker).
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut channels = HashMap::new();
    for (name, channel) in &config.channels {
        let gateway = Gateway::from_config(name, channel, config.api_key(name))?;
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
    let shared = Arc::new(Shared {
        topology: Topology::from_config(&config.amqp),
        dedupe: Dedupe::new(redis, &config.redis.prefix),
        channels,
        shutdown: shutdown.clone(),
        config,
    });

    let mut backoff = reconnect_backoff();
    loop {
        match session(&shared).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let wait = backoff.next().unwrap_or(Duration::from_secs(5));
                warn!(error = %e, retry_in = ?wait, "broker session ended; reconnecting");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
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
        match redis::aio::ConnectionManager::new(client.clone()).await {
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

/// One broker connection's life. `Ok` means shutdown was requested and handled.
async fn session(shared: &Arc<Shared>) -> anyhow::Result<()> {
    let connection = broker::connect(&shared.config.amqp.url, "mensajero-worker").await?;
    let setup = connection.create_channel().await?;
    shared.topology.declare(&setup).await?;
    let publisher = Publisher::new(connection.create_channel().await?).await?;
    let consume = connection.create_channel().await?;
    // Per-consumer QoS: quorum queues refuse global QoS with a connection error.
    consume
        .basic_qos(
            shared.config.worker.prefetch,
            BasicQosOptions { global: false },
        )
        .await?;
    let mut consumers = Vec::new();
    for queue in shared.topology.work_queues() {
        let consumer = consume
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        consumers.push(consumer);
    }
    let tags: Vec<_> = consumers.iter().map(|c| c.tag()).collect();
    let mut deliveries = futures_util::stream::select_all(consumers);
    info!(queues = ?shared.topology.work_queues(), "consuming");

    let permits = Arc::new(Semaphore::new(shared.config.worker.max_in_flight));
    let mut tasks = JoinSet::new();
    let ended = loop {
        // Reap finished tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = shared.shutdown.cancelled() => break None,
            permit = permits.clone().acquire_owned() => permit?,
        };
        let next = tokio::select! {
            _ = shared.shutdown.cancelled() => break None,
            next = deliveries.next() => next,
        };
        match next {
            Some(Ok(delivery)) => {
                let shared = shared.clone();
                let publisher = publisher.clone();
                tasks.spawn(async move {
                    process(&shared, &publisher, delivery).await;
                    drop(permit);
                });
            }
            Some(Err(e)) => break Some(anyhow::Error::from(e).context("consumer failed")),
            None => break Some(anyhow::anyhow!("the broker cancelled the consumer")),
        }
    };

    if let Some(error) = ended {
        // The channel is gone: running tasks will fail to ack and their deliveries come back.
        // Let them finish in the background; the next session starts now.
        tasks.detach_all();
        let _ = connection.close(320, "session failed".into()).await;
        return Err(error);
    }

    info!(in_flight = tasks.len(), grace = ?shared.config.worker.shutdown_grace, "shutting down: no new jobs");
    for tag in tags {
        if let Err(e) = consume
            .basic_cancel(tag, BasicCancelOptions::default())
            .await
        {
            warn!(error = %e, "cancelling consumer");
        }
    }
    let drained = tokio::time::timeout(shared.config.worker.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            abandoned = tasks.len(),
            "grace period over; unfinished jobs go back to the broker"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    // Closing returns every unacked delivery (prefetched, never started) to the queue.
    let _ = connection.close(200, "shutdown".into()).await;
    info!("worker stopped");
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

async fn process(shared: &Shared, publisher: &Publisher, delivery: Delivery) {
    let result = handle(shared, publisher, &delivery).await;
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
        Err(TaskError::Publish(e)) => {
            // Not acked: the broker redelivers it, and dedupe turns the repeat into a
            // re-publish of whatever this attempt got to record.
            warn!(error = %e, "publishing failed; the job will be redelivered");
            return;
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
) -> Result<Disposition, TaskError> {
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
    let Some(channel) = shared.channels.get(&job.channel) else {
        let failure = Failure::invalid(
            "unknown_channel",
            format!("channel: `{}` is not configured", job.channel),
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
        channel,
    }
    .run()
    .instrument(span)
    .await
}

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
        };
        publisher.outcome(&shared.topology, &event).await?;
    }
    let letter = DeadLetter {
        reason: &failure.code,
        class: failure.class,
        attempts: 0,
        message: &failure.message,
        job_id,
        channel,
    };
    publisher
        .dead_letter(
            &shared.topology,
            &delivery.data,
            &delivery.properties,
            &letter,
        )
        .await?;
    Ok(Disposition::Ack)
}

/// One valid job on a known channel.
struct JobTask<'a> {
    shared: &'a Shared,
    publisher: &'a Publisher,
    delivery: &'a Delivery,
    job: &'a Job,
    channel: &'a ChannelRuntime,
}

impl JobTask<'_> {
    async fn run(self) -> Result<Disposition, TaskError> {
        let now = Utc::now();
        if let Some(deadline) = self.deadline()
            && deadline <= now
        {
            let failure = Failure::new(
                ErrorClass::Expired,
                "expired",
                format!("expired at {}", outcome::timestamp(deadline)),
            );
            return self.fail_without_claim(&failure).await;
        }
        if let Some(send_at) = self.job.send_at
            && send_at > now + chrono::Duration::seconds(1)
        {
            // Durable scheduling needs the broker delay queues; until they exist, refusing is
            // the only way to honour "never before send_at" without holding the delivery.
            let failure = Failure::invalid(
                "scheduling_unavailable",
                "send_at: scheduled sends are not available in this version yet",
            );
            return self.fail_without_claim(&failure).await;
        }

        let idempotency_key = self.job.idempotency_key();
        let provider = self.channel.gateway.provider();
        let take_over_live = self.delivery.redelivered && provider.has_idempotency();
        let owner = uuid::Uuid::new_v4().to_string();
        let lease = self.shared.config.worker.lease;
        let window = self.channel.config.dedupe_window;

        let first_attempt = loop {
            let claim = self
                .redis(|| {
                    self.shared.dedupe.claim(
                        &self.channel.name,
                        idempotency_key,
                        &self.job.id,
                        &owner,
                        lease,
                        window,
                        take_over_live,
                    )
                })
                .await?;
            match claim {
                Claim::Acquired => break 1,
                Claim::Resumed {
                    ambiguous,
                    previous_attempts,
                } => {
                    if ambiguous
                        && !provider.has_idempotency()
                        && self.channel.config.on_ambiguous == OnAmbiguous::Fail
                    {
                        let failure = Failure::new(
                            ErrorClass::RetriesExhausted,
                            "ambiguous_send",
                            "an earlier attempt may have reached the gateway, which cannot deduplicate; on_ambiguous = \"fail\"",
                        );
                        return self
                            .finish_failed(&owner, previous_attempts.max(1), &failure)
                            .await;
                    }
                    info!(previous_attempts, ambiguous, "resuming an interrupted job");
                    break previous_attempts + 1;
                }
                Claim::Busy { job_id, lease_left }
                    if job_id == self.job.id && self.delivery.redelivered =>
                {
                    // Our own earlier delivery may still be running somewhere; on a gateway
                    // without idempotency only its lease running out makes a resend safe.
                    debug!(?lease_left, "waiting for the previous attempt's lease");
                    let wait = lease_left.clamp(Duration::from_millis(50), Duration::from_secs(5));
                    tokio::select! {
                        _ = self.shared.shutdown.cancelled() => return Ok(Disposition::Requeue),
                        _ = tokio::time::sleep(wait) => continue,
                    }
                }
                Claim::Busy { job_id, .. } => {
                    return self.duplicate(&job_id, Status::Queued, None).await;
                }
                Claim::Done(record)
                    if record.job_id == self.job.id && self.delivery.redelivered =>
                {
                    // The earlier delivery got as far as recording its end; make sure the
                    // world heard about it (same event ids, so consumers drop repeats).
                    info!(
                        status = record.status.as_str(),
                        "re-publishing the outcome of an interrupted job"
                    );
                    return self.publish_terminal(&record).await;
                }
                Claim::Done(record) => {
                    return self
                        .duplicate(
                            &record.job_id,
                            record.status,
                            record.provider_message_id.as_deref(),
                        )
                        .await;
                }
            }
        };

        self.publish(self.event(Status::Queued, None, first_attempt, None, None))
            .await?;
        self.attempts(&owner, first_attempt).await
    }

    /// The send loop: attempts with short in-process backoff until success, a final failure,
    /// or the attempt budget runs out.
    async fn attempts(&self, owner: &str, first_attempt: u32) -> Result<Disposition, TaskError> {
        let config = &self.shared.config;
        let budget = self
            .channel
            .config
            .max_attempts
            .min(config.worker.inline_attempts);
        let last_attempt = budget.max(first_attempt);
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(INLINE_MAX_DELAY)
            .with_jitter()
            .without_max_times()
            .build();
        let key = self.job.idempotency_key();
        let mut attempt = first_attempt;
        loop {
            tracing::Span::current().record("attempt", attempt);
            self.redis(|| {
                self.shared.dedupe.begin_attempt(
                    &self.channel.name,
                    key,
                    owner,
                    config.worker.lease,
                )
            })
            .await?;
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
            match result {
                Ok(accepted) => {
                    info!(provider_message_id = %accepted.provider_message_id, replayed = accepted.replayed, "sent");
                    let record = Record {
                        status: Status::Sent,
                        job_id: self.job.id.clone(),
                        provider_message_id: Some(accepted.provider_message_id),
                        error: None,
                        attempt,
                    };
                    return self.complete(record).await;
                }
                Err(failure) if failure.class.is_retryable() && attempt < last_attempt => {
                    let wait = backoff.next().unwrap_or(INLINE_MAX_DELAY).max(
                        failure
                            .retry_after
                            .unwrap_or_default()
                            .min(INLINE_MAX_RETRY_AFTER),
                    );
                    warn!(class = failure.class.as_str(), code = %failure.code, error = %failure.message, retry_in = ?wait, "attempt failed; retrying");
                    tokio::select! {
                        _ = self.shared.shutdown.cancelled() => {
                            let ambiguous = failure.sent == Sent::Maybe;
                            let _ = self.shared.dedupe.release(&self.channel.name, key, owner, ambiguous).await;
                            return Ok(Disposition::Requeue);
                        }
                        _ = tokio::time::sleep(wait) => {}
                    }
                    attempt += 1;
                }
                Err(failure) => {
                    let failure = if failure.class.is_retryable() {
                        Failure {
                            class: failure.class.terminal(),
                            message: format!(
                                "gave up after {attempt} attempts: {}",
                                failure.message
                            ),
                            ..failure
                        }
                    } else {
                        failure
                    };
                    warn!(class = failure.class.as_str(), code = %failure.code, error = %failure.message, "failed");
                    return self.finish_failed(owner, attempt, &failure).await;
                }
            }
        }
    }

    async fn finish_failed(
        &self,
        _owner: &str,
        attempt: u32,
        failure: &Failure,
    ) -> Result<Disposition, TaskError> {
        let record = Record {
            status: Status::Failed,
            job_id: self.job.id.clone(),
            provider_message_id: None,
            error: Some(OutcomeError::from_failure(failure, attempt)),
            attempt,
        };
        self.complete(record).await
    }

    /// Record the terminal state, then publish it (or, if another worker recorded one first,
    /// publish that instead).
    async fn complete(&self, record: Record) -> Result<Disposition, TaskError> {
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
    }

    /// Publish a terminal record's outcome (and, for failures, the dead letter).
    async fn publish_terminal(&self, record: &Record) -> Result<Disposition, TaskError> {
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
        Ok(Disposition::Ack)
    }

    /// Expired (or unschedulable) before any claim: nothing was sent, nothing is recorded.
    async fn fail_without_claim(&self, failure: &Failure) -> Result<Disposition, TaskError> {
        warn!(class = failure.class.as_str(), code = %failure.code, error = %failure.message, "failed before sending");
        let error = OutcomeError::from_failure(failure, 0);
        self.publish(self.event(Status::Failed, None, 0, None, Some(error)))
            .await?;
        self.dead_letter(failure.class, &failure.code, &failure.message, 0)
            .await?;
        Ok(Disposition::Ack)
    }

    async fn duplicate(
        &self,
        original: &str,
        status: Status,
        provider_message_id: Option<&str>,
    ) -> Result<Disposition, TaskError> {
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
            channel: Some(&self.channel.name),
        };
        self.publisher
            .dead_letter(
                &self.shared.topology,
                &self.delivery.data,
                &self.delivery.properties,
                &letter,
            )
            .await?;
        Ok(())
    }

    async fn publish(&self, event: Outcome) -> Result<(), TaskError> {
        self.publisher
            .outcome(&self.shared.topology, &event)
            .await?;
        Ok(())
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
        }
    }

    /// When the job stops being sendable: `expires_at`, or `ttl_seconds` after it was
    /// published (the AMQP timestamp; without one, counting from now is the best we can do).
    fn deadline(&self) -> Option<DateTime<Utc>> {
        let published = self
            .delivery
            .properties
            .timestamp()
            .and_then(|t| i64::try_from(t).ok())
            .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
            .unwrap_or_else(Utc::now);
        self.job.deadline(published)
    }

    /// Run a Redis operation until it succeeds: Redis trouble is never the job's fault, so the
    /// job waits (holding its delivery) instead of failing. Shutdown ends the wait.
    async fn redis<T, F, Fut>(&self, op: F) -> Result<T, TaskError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, DedupeError>>,
    {
        let mut backoff = reconnect_backoff();
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(e) => {
                    let wait = backoff
                        .next()
                        .unwrap_or(Duration::from_secs(2))
                        .min(Duration::from_secs(2));
                    error!(error = %e, retry_in = ?wait, "dedupe store unavailable");
                    tokio::select! {
                        _ = self.shared.shutdown.cancelled() => return Err(TaskError::Shutdown),
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

/// Longest in-process wait between attempts: longer waits belong in broker delay queues,
/// not in a held delivery.
const INLINE_MAX_DELAY: Duration = Duration::from_secs(5);
/// A gateway's `Retry-After` is honoured in process up to this much.
const INLINE_MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
