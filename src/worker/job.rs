//! The job task: one valid job on a known channel, carried through claim, rate limit,
//! attempts and failover to its outcome. It talks to RabbitMQ, Redis and the gateway; what to
//! do at each turn is [`super::policy`]'s decision.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::message::Delivery;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::policy::{
    self, Admission, AfterFailure, Attempted, Claimant, Compose, FAILED_OVER, Limit, Start,
};
use super::settle::{
    Disposition, TaskError, publish_dead_letter, publish_outcome, settle, with_redis,
};
use super::{ChannelRuntime, Shared, owner_token};
use crate::broker::{self, Carried, DeadLetter, Publisher};
use crate::cancel;
use crate::config::OnAmbiguous;
use crate::dedupe::{ClaimRequest, Record};
use crate::gateways::{self, SendContext};
use crate::job::{self, Job};
use crate::outcome::{self, Outcome, OutcomeError, Status};
use crate::ratelimit::{Limits, Permit};
use crate::retry::{ErrorClass, Failure, Sent};
use crate::store::StoreError;
use crate::tracking::Tracked;

// The delivery is borrowed, not moved, down the job's calls: each async fn that takes it by
// value keeps its own copy (432 bytes) in the task for the task's whole life.
pub(super) async fn process(
    shared: &Shared,
    publisher: &Publisher,
    delivery: &Delivery,
    lane: &'static str,
) {
    let result = handle(shared, publisher, delivery, lane).await;
    settle(publisher, delivery, result).await;
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
    if delivery.routing_key.as_str() == cancel::CANCEL_KEY {
        return apply_cancel(shared, publisher, delivery).await;
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
        // A job that parsed (on an unknown channel) has its own key; an unreadable one is
        // known by its id alone, which is also the key it would have had.
        let key = job.map_or(job_id, Job::idempotency_key);
        let event = Outcome {
            provider,
            error: Some(OutcomeError::from_failure(failure, 0)),
            metadata: job.and_then(|j| j.metadata.clone()),
            ..Outcome::status(channel_name, key, job_id, Status::Failed)
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

/// A cancel message: apply it to the job's dedupe record and ack. It publishes no outcome
/// itself; the job ends `failed` / `cancelled` when it next reaches a worker. A malformed one,
/// or one for a channel this worker does not know, is dead-lettered as `invalid_cancel`.
async fn apply_cancel(
    shared: &Shared,
    publisher: &Publisher,
    delivery: &Delivery,
) -> Result<Disposition, TaskError> {
    let parsed = cancel::parse(&delivery.data).and_then(|request| {
        match shared.channels.get(&request.channel) {
            Some(channel) => Ok((request, channel.config.dedupe_window)),
            None => Err(cancel::CancelRejection(format!(
                "cancel.channel: `{}` is not configured",
                request.channel
            ))),
        }
    });
    let (request, window) = match parsed {
        Ok(parsed) => parsed,
        Err(rejection) => {
            // Refused like an unreadable job: no outcome (no job id), a dead letter with the
            // reason.
            let failure = Failure::invalid(INVALID_CANCEL, rejection.0);
            let known = Known {
                job_id: None,
                channel: None,
                job: None,
            };
            return refuse(shared, publisher, delivery, known, &failure).await;
        }
    };
    let answer = with_redis(shared, || cancel::apply(&shared.dedupe, &request, window)).await?;
    shared.metrics.cancel(&request.channel, answer.as_str());
    info!(
        channel = %request.channel,
        idempotency_key = request.target.idempotency_key(),
        result = answer.as_str(),
        "cancel: {answer}"
    );
    Ok(Disposition::Ack)
}

/// Dead-letter reason of a cancel message that cannot be applied.
const INVALID_CANCEL: &str = "invalid_cancel";

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

/// How a job lets go of its claim without ending.
#[derive(Debug, Clone, Copy)]
enum LetGo {
    /// Back to its queue at once (shutdown).
    Requeue,
    /// Into a delay queue for `wait`, due again at `until`.
    Park {
        wait: Duration,
        until: DateTime<Utc>,
    },
}

impl LetGo {
    fn park(wait: Duration) -> Self {
        let until = Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
        Self::Park { wait, until }
    }
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
        // A scheduled send, or the rest of a wait a delay tier could not cover exactly.
        let not_before = match (self.carried.not_before, self.job.send_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let inline_wait = self.shared.config.worker.inline_wait;
        match policy::start(now, deadline, not_before, inline_wait) {
            Start::Go => {}
            Start::Expired(deadline) => {
                let failure = Failure::new(
                    ErrorClass::Expired,
                    "expired",
                    format!("expired at {}", outcome::timestamp(deadline)),
                );
                return self.fail_unrecorded(&failure, None).await;
            }
            Start::DueAfterDeadline => {
                let failure = Failure::new(
                    ErrorClass::Expired,
                    "expired",
                    "it expires before it may be sent (send_at / retry time after expires_at)",
                );
                return self.fail_unrecorded(&failure, None).await;
            }
            Start::Park { wait, until } => {
                // A cancelled scheduled job ends now rather than at its `send_at`: one read
                // per hop through the delay queues, only for jobs that wait that long.
                let (channel, key) = (&self.channel.name, self.job.idempotency_key());
                let dedupe = &self.shared.dedupe;
                if let Some(reason) = self.redis(|| dedupe.cancelled(channel, key)).await? {
                    return self.cancelled(&reason).await;
                }
                self.carried.not_before = Some(until);
                return self.park(wait).await;
            }
            Start::Sleep(wait) => {
                if !self.sleep(wait).await {
                    return Ok(Disposition::Requeue);
                }
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
                        fallback: false,
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
        let idempotent = gateways::gateway(provider).capabilities().idempotency;
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
            take_over_live: own_copy && idempotent,
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
        let begin_with_claim =
            idempotent || self.channel.config.on_ambiguous == OnAmbiguous::Resend;
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
            let me = Claimant {
                job_id: &self.job.id,
                own_copy,
                idempotent,
                on_ambiguous: self.channel.config.on_ambiguous,
                attempts: self.carried.attempts,
            };
            match policy::admit(claim, &me) {
                Admission::Attempt {
                    attempt,
                    resumed,
                    ambiguous: was_ambiguous,
                } => {
                    if resumed {
                        ambiguous = was_ambiguous;
                        // The earlier attempt's fate is unknown: it may have sent, so this job
                        // must never be failed over to another gateway (SPEC §4).
                        self.carried.maybe_sent |= was_ambiguous;
                        if !self.carried.is_internal() {
                            info!(
                                previous_attempts = attempt - 1,
                                ambiguous, "resuming an interrupted job"
                            );
                        }
                    }
                    break attempt;
                }
                Admission::FailAmbiguous { attempts } => {
                    let failure = Failure::new(
                        ErrorClass::RetriesExhausted,
                        "ambiguous_send",
                        "an earlier attempt may have reached the gateway, which cannot deduplicate; on_ambiguous = \"fail\"",
                    );
                    return self
                        .finish_failed(attempts, &failure)
                        .await
                        .map(Turn::Settled);
                }
                Admission::AwaitLease(pause) => {
                    debug!(?pause, "waiting for the previous attempt's lease");
                    if !self.sleep(pause).await {
                        return Ok(Turn::Settled(Disposition::Requeue));
                    }
                }
                Admission::Duplicate {
                    original_job_id,
                    status,
                    provider_message_id,
                } => {
                    return self
                        .duplicate(&original_job_id, status, provider_message_id.as_deref())
                        .await
                        .map(Turn::Settled);
                }
                Admission::ContinueFailOver { failure, attempts } => {
                    // Interrupted during a failover: carry on with the next channel.
                    self.carried.attempts = attempts;
                    return Ok(Turn::FailOver(failure));
                }
                Admission::Cancelled { reason, attempts } => {
                    self.carried.attempts = attempts;
                    return self.cancelled(&reason).await.map(Turn::Settled);
                }
                Admission::Republish(record) => {
                    // The earlier copy got as far as recording its end; make sure the world
                    // heard about it (same event ids, so consumers drop repeats).
                    info!(
                        status = record.status.as_str(),
                        "re-publishing the outcome of an interrupted job"
                    );
                    return self.publish_terminal(&record).await.map(Turn::Settled);
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

        // Which message goes: the 24-hour window may hold a free-form one back (SPEC §10).
        let window = self.channel.config.window;
        let template = matches!(self.job.message.content, job::Content::Template(_));
        let window_open = if policy::needs_window(window, template, self.carried.fallback) {
            let conversations = &self.shared.conversations;
            let last = self
                .redis(|| conversations.last_inbound(&self.channel.name, &self.job.to))
                .await?;
            Some(last.is_some())
        } else {
            None
        };
        let has_fallback = self.job.fallback.is_some();
        match policy::compose(
            window,
            template,
            has_fallback,
            self.carried.fallback,
            window_open,
        ) {
            Compose::Message => {}
            Compose::Fallback => {
                if !self.carried.fallback {
                    info!("the customer's window is closed; sending the fallback template");
                }
                self.carried.fallback = true;
            }
            Compose::WindowClosed => {
                let failure = Failure::new(
                    ErrorClass::WindowExpired,
                    "window_expired",
                    "the customer has not written in the last 24 hours (window = \"enforce\") and the job has no fallback template; not sent",
                );
                warn!("window closed; failing without calling the gateway");
                return self
                    .finish_failed(self.carried.attempts, &failure)
                    .await
                    .map(Turn::Settled);
            }
        }
        // Built once, and only for jobs that carry a fallback.
        let fallback_job = self.job.fallback.as_ref().map(|template| Job {
            message: template.clone(),
            fallback: None,
            ..self.job.clone()
        });
        let fallback_key = format!("{key}:fallback");

        // "Still in progress" answers in a row (see policy::IN_PROGRESS_RETRIES).
        let mut in_progress = 0;
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
                        return self
                            .let_go(&owner, ambiguous, LetGo::Requeue)
                            .await
                            .map(Turn::Settled);
                    }
                }
                Permit::Park(wait) => {
                    // Waiting for the channel's (or recipient's) next slot is not a failure
                    // and costs no attempt; a long wait is spent in a delay queue.
                    debug!(?wait, "rate limited; parking");
                    return self
                        .let_go(&owner, ambiguous, LetGo::park(wait))
                        .await
                        .map(Turn::Settled);
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
            // The fallback has its own key: an idempotent gateway keeps its refusal of the
            // message under the job's key and would answer the template with it.
            let (sending, sending_key) = match (&fallback_job, self.carried.fallback) {
                (Some(fallback), true) => (fallback, fallback_key.as_str()),
                _ => (self.job, key),
            };
            let result = self
                .channel
                .gateway
                .send(
                    sending,
                    SendContext {
                        idempotency_key: sending_key,
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
                        fallback: self.carried.fallback,
                    };
                    return self.complete(record).await.map(Turn::Settled);
                }
                Err(failure) => failure,
            };
            self.carried.attempts = attempt;
            ambiguous = failure.sent == Sent::Maybe;
            let attempted = Attempted {
                attempt,
                in_progress_before: in_progress,
                channel: &self.channel.config,
                maybe_sent_before: self.carried.maybe_sent,
                failover_left: self.next_failover().is_some(),
                fallback_left: fallback_job.is_some() && !self.carried.fallback,
                now: Utc::now(),
                first_seen,
                deadline,
                inline_wait: config.worker.inline_wait,
                jitter: rand::random_range(0.0..=1.0),
            };
            self.carried.maybe_sent |= ambiguous;
            in_progress = if failure.in_progress {
                in_progress + 1
            } else {
                0
            };
            let wait = match policy::after_failure(&failure, &attempted) {
                AfterFailure::Retry { wait, durable } => {
                    warn!(class = failure.class.as_str(), code = %failure.code, error = %failure.message, retry_in = ?wait, durable, "attempt failed; will retry");
                    if durable {
                        // Long waits are durable: the job waits in a broker delay queue.
                        let tier = broker::tier_name(self.shared.topology.tier_for(wait));
                        self.shared.metrics.retry(&self.channel.name, &tier);
                        return self
                            .let_go(&owner, ambiguous, LetGo::park(wait))
                            .await
                            .map(Turn::Settled);
                    }
                    wait
                }
                AfterFailure::FailOver => return Ok(Turn::FailOver(failure)),
                AfterFailure::GiveUp(limit) => {
                    return self
                        .give_up(attempt, failure, limit)
                        .await
                        .map(Turn::Settled);
                }
                AfterFailure::Expire => {
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
                AfterFailure::Fallback => {
                    info!(code = %failure.code, "the gateway says the customer's window is closed; sending the fallback template");
                    self.carried.fallback = true;
                    attempt += 1;
                    continue;
                }
                AfterFailure::Fail => {
                    warn!(class = failure.class.as_str(), code = %failure.code, error = %failure.message, "failed");
                    return self
                        .finish_failed(attempt, &failure)
                        .await
                        .map(Turn::Settled);
                }
            };
            self.shared.metrics.retry(&self.channel.name, "inline");
            if !self.sleep(wait).await {
                return self
                    .let_go(&owner, ambiguous, LetGo::Requeue)
                    .await
                    .map(Turn::Settled);
            }
            attempt += 1;
        }
    }

    /// Give the claim's lease up without ending the job, so its next turn need not wait for
    /// the lease: back to its queue now (shutdown), or parked in a delay queue. `ambiguous`
    /// tells whoever resumes it whether the last attempt may have reached the gateway.
    fn let_go<'s>(&'s mut self, owner: &'s str, ambiguous: bool, then: LetGo) -> Step<'s> {
        if let LetGo::Park { until, .. } = then {
            self.carried.not_before = Some(until);
        }
        let this = &*self;
        Box::pin(async move {
            let key = this.job.idempotency_key();
            let dedupe = &this.shared.dedupe;
            let release = || dedupe.release(&this.channel.name, key, owner, ambiguous);
            match then {
                // Shutting down: one try; a lease left behind runs out by itself.
                LetGo::Requeue => {
                    let _ = release().await;
                    Ok(Disposition::Requeue)
                }
                LetGo::Park { wait, .. } => {
                    this.redis(release).await?;
                    this.park(wait).await
                }
            }
        })
    }

    /// Stop retrying: `retries_exhausted` (or the `auth` / `channel` class it kept failing with).
    fn give_up(&self, attempt: u32, failure: Failure, limit: Limit) -> Step<'_> {
        Box::pin(async move {
            let failure = Failure {
                class: failure.class.terminal(),
                message: format!(
                    "gave up after {attempt} attempts ({}): {}",
                    limit.as_str(),
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
                fallback: false,
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
            let event = Outcome {
                // The record's word, not this copy's header: a re-published `sent` after a
                // crash comes from a copy that may never have switched to the fallback.
                fallback: record.fallback && record.status == Status::Sent,
                ..self.event(
                    record.status,
                    Some(Status::Queued),
                    record.attempt,
                    record.provider_message_id.clone(),
                    record.error.clone(),
                )
            };
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
                    // The largest field of the record (up to 8 KiB), and only there for echoes.
                    metadata: if self.shared.config.receipts.echo_metadata {
                        self.job.metadata.clone()
                    } else {
                        None
                    },
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

    /// End a cancelled job: `failed` with class `cancelled` and the cancel's reason, no
    /// gateway call and no dead letter (an operator's decision is not an error). The record
    /// stays `cancelled`, so later copies and repeats end the same way.
    fn cancelled<'s>(&'s self, reason: &'s str) -> Step<'s> {
        Box::pin(async move {
            let message = if reason.is_empty() {
                "cancelled before sending".to_string()
            } else {
                format!("cancelled before sending: {reason}")
            };
            let failure = Failure::new(ErrorClass::Cancelled, "cancelled", message);
            info!(reason, "cancelled; not sent");
            let attempts = self.carried.attempts;
            let previous = self.carried.queued.then_some(Status::Queued);
            let error = OutcomeError::from_failure(&failure, attempts);
            self.publish(self.event(Status::Failed, previous, attempts, None, Some(error)))
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
            let event = self
                .event(
                    status,
                    None,
                    0,
                    provider_message_id.map(str::to_owned),
                    None,
                )
                .into_duplicate(original);
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
        Outcome {
            provider: Some(self.channel.gateway.provider().as_str().to_string()),
            to: Some(self.job.to.clone()),
            previous_status,
            provider_message_id,
            attempt,
            error,
            metadata: self.job.metadata.clone(),
            channels_tried: self.carried.tried.clone(),
            fallback: self.carried.fallback && status == Status::Sent,
            ..Outcome::status(
                &self.channel.name,
                self.job.idempotency_key(),
                &self.job.id,
                status,
            )
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
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        with_redis(self.shared, op).await
    }
}
