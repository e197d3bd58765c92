//! The job's decisions, as pure functions of data: when it may start, what its dedupe claim
//! lets it do, and what follows a failed attempt. The job task ([`super::job`]) talks to
//! RabbitMQ, Redis and the gateway and carries these decisions out; every rule is here, tested
//! as a table in milliseconds with no services.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{ChannelConfig, OnAmbiguous, WindowMode};
use crate::dedupe::{Claim, Record};
use crate::outcome::Status;
use crate::retry::{ErrorClass, Failure, Schedule, Sent};

/// Code of the dedupe record a channel keeps after handing a job to a failover channel.
pub const FAILED_OVER: &str = "failed_over";

/// How a job's turn starts, before any claim: it may be over already, or not due yet.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// Due now.
    Go,
    /// Its deadline has passed.
    Expired(DateTime<Utc>),
    /// It is due only after its deadline (`send_at` or a retry time past `expires_at`).
    DueAfterDeadline,
    /// Due in a moment: wait here.
    Sleep(Duration),
    /// Due later than the worker waits in process: park it in a delay queue until `until`.
    Park {
        /// The wait, for the delay tier.
        wait: Duration,
        /// When it is due, carried in its headers.
        until: DateTime<Utc>,
    },
}

/// When a job taken from the queue at `now` may start, given its `deadline` (expiry) and its
/// `not_before` (a scheduled `send_at`, or the rest of a wait a delay tier could not cover
/// exactly). Waits up to `inline_wait` are spent in process.
pub fn start(
    now: DateTime<Utc>,
    deadline: Option<DateTime<Utc>>,
    not_before: Option<DateTime<Utc>>,
    inline_wait: Duration,
) -> Start {
    if let Some(deadline) = deadline
        && deadline <= now
    {
        return Start::Expired(deadline);
    }
    let Some(not_before) = not_before.filter(|t| *t > now) else {
        return Start::Go;
    };
    if deadline.is_some_and(|d| not_before > d) {
        return Start::DueAfterDeadline;
    }
    let wait = (not_before - now).to_std().unwrap_or_default();
    if wait > inline_wait {
        Start::Park {
            wait,
            until: not_before,
        }
    } else {
        Start::Sleep(wait)
    }
}

/// What the job knows about itself when its claim answers.
#[derive(Debug, Clone, Copy)]
pub struct Claimant<'a> {
    /// The job's id: a claim or record under the same id is its own.
    pub job_id: &'a str,
    /// This delivery is a copy of the job that may have run before (redelivered by the broker,
    /// or parked / failed over by mensajero).
    pub own_copy: bool,
    /// The channel's gateway deduplicates by our key, so resending is safe.
    pub idempotent: bool,
    /// The channel's `on_ambiguous`.
    pub on_ambiguous: OnAmbiguous,
    /// Attempts already made on this channel, as the job's headers carry them.
    pub attempts: u32,
}

/// What the dedupe claim lets a job do.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Go ahead with attempt number `attempt`.
    Attempt {
        /// 1-based attempt number on this channel.
        attempt: u32,
        /// The job's own earlier claim was taken over (a crash, a redelivery).
        resumed: bool,
        /// That earlier attempt may have reached the gateway: never fail this job over.
        ambiguous: bool,
    },
    /// An earlier attempt may have reached a gateway that cannot deduplicate, and the channel
    /// says `on_ambiguous = "fail"`.
    FailAmbiguous {
        /// Attempts the job had made.
        attempts: u32,
    },
    /// The job's own earlier copy holds a live lease (it may still be running): wait this
    /// long, then claim again.
    AwaitLease(Duration),
    /// Another job holds the key, or already ended it: report a duplicate.
    Duplicate {
        /// The job that holds the key.
        original_job_id: String,
        /// The state the key is in.
        status: Status,
        /// The original's message id, when it was sent.
        provider_message_id: Option<String>,
    },
    /// The job's own earlier copy was failing over when it stopped: carry on with the next
    /// channel.
    ContinueFailOver {
        /// Why the earlier copy left this channel.
        failure: Failure,
        /// Attempts it had made here.
        attempts: u32,
    },
    /// The job's own earlier copy recorded its end: publish that again (same event ids).
    Republish(Record),
    /// The job was cancelled before it was sent: end it `failed` / `cancelled`, no gateway
    /// call, no dead letter.
    Cancelled {
        /// The cancel's reason (empty when it gave none).
        reason: String,
        /// Attempts made before the cancel (the larger of the record's and the headers').
        attempts: u32,
    },
}

/// The shortest and longest pause before claiming again while the job's own earlier copy
/// holds the key: short enough to follow a lease that is about to end, long enough not to
/// hammer Redis when it has minutes left.
const LEASE_POLL: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(5));

/// What `claim` lets the job described by `me` do.
pub fn admit(claim: Claim, me: &Claimant<'_>) -> Admission {
    match claim {
        Claim::Acquired => Admission::Attempt {
            attempt: me.attempts + 1,
            resumed: false,
            ambiguous: false,
        },
        Claim::Resumed {
            ambiguous,
            previous_attempts,
        } => {
            if ambiguous && !me.idempotent && me.on_ambiguous == OnAmbiguous::Fail {
                return Admission::FailAmbiguous {
                    attempts: previous_attempts.max(1),
                };
            }
            Admission::Attempt {
                attempt: previous_attempts.max(me.attempts) + 1,
                resumed: true,
                ambiguous,
            }
        }
        // Our own earlier copy may still be running somewhere (or died holding the key: a
        // broker does not always mark such a copy as redelivered); on a gateway without
        // idempotency only its lease running out makes a resend safe. Reporting ourselves as
        // a duplicate here would lose the job if that earlier copy never finishes.
        Claim::Busy { job_id, lease_left } if job_id == me.job_id => {
            Admission::AwaitLease(lease_left.clamp(LEASE_POLL.0, LEASE_POLL.1))
        }
        Claim::Busy { job_id, .. } => Admission::Duplicate {
            original_job_id: job_id,
            status: Status::Queued,
            provider_message_id: None,
        },
        Claim::Done(record) if record.job_id == me.job_id && me.own_copy => match record.error {
            Some(error) if error.code == FAILED_OVER => Admission::ContinueFailOver {
                failure: Failure::new(error.class, error.code, error.message),
                attempts: record.attempt,
            },
            _ => Admission::Republish(record),
        },
        Claim::Done(record) => Admission::Duplicate {
            original_job_id: record.job_id,
            status: record.status,
            provider_message_id: record.provider_message_id,
        },
        // Whichever job arrives with a cancelled key ends: a cancel names the key, not one
        // delivery, so a producer's repeat inside the window is cancelled too.
        Claim::Cancelled { reason, attempts } => Admission::Cancelled {
            reason,
            attempts: attempts.max(me.attempts),
        },
    }
}

/// Which limit ended the retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The channel's `max_attempts`.
    MaxAttempts,
    /// The channel's `max_age` would pass before the next attempt.
    MaxAge,
}

impl Limit {
    /// The setting's name, for the outcome's message.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxAttempts => "max_attempts",
            Self::MaxAge => "max_age",
        }
    }
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AfterFailure {
    /// Attempt again after `wait`: in a delay queue when `durable`, else in process.
    Retry {
        /// The wait before the next attempt.
        wait: Duration,
        /// Longer than the worker waits in process: park the job.
        durable: bool,
    },
    /// This channel provably did not send and gives up: try the next failover channel.
    FailOver,
    /// Stop retrying: the failure's terminal class, because of `Limit`.
    GiveUp(Limit),
    /// The job expires before the next attempt could be made.
    Expire,
    /// Not worth another attempt: fail with the failure as it is.
    Fail,
    /// The customer's window is closed and the job has a template for that: send it now.
    Fallback,
}

/// Which message an attempt sends, as the 24-hour window decides (SPEC §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compose {
    /// The job's `message`.
    Message,
    /// The job's `fallback` template, under the derived key `<key>:fallback`.
    Fallback,
    /// Nothing: the window is known closed and there is no fallback (`window_expired`).
    WindowClosed,
}

/// What the job described sends. `window_open` is what the channel's records say of the
/// customer's window, when they were read (only under `enforce`, for a free-form message).
/// Templates are never held back; a job that already switched to its fallback keeps it.
pub fn compose(
    window: WindowMode,
    template: bool,
    has_fallback: bool,
    switched: bool,
    window_open: Option<bool>,
) -> Compose {
    if switched && has_fallback {
        return Compose::Fallback;
    }
    if template || window != WindowMode::Enforce || window_open != Some(false) {
        return Compose::Message;
    }
    if has_fallback {
        Compose::Fallback
    } else {
        Compose::WindowClosed
    }
}

/// Whether [`compose`] needs the customer's window read: only to hold a free-form message
/// back under `enforce` (one Redis read, for those jobs alone).
pub fn needs_window(window: WindowMode, template: bool, switched: bool) -> bool {
    window == WindowMode::Enforce && !template && !switched
}

/// How long to wait before asking again a gateway that is still working on an earlier
/// request with the same key: about the time such a request takes to finish.
pub const IN_PROGRESS_WAIT: Duration = Duration::from_secs(1);

/// How many "still in progress" answers in a row are retried after [`IN_PROGRESS_WAIT`]
/// before the channel's schedule takes over (the earlier request may be stuck).
pub const IN_PROGRESS_RETRIES: u32 = 3;

/// Everything [`after_failure`] weighs besides the failure itself.
#[derive(Debug, Clone, Copy)]
pub struct Attempted<'a> {
    /// The attempt that failed (1-based, on this channel).
    pub attempt: u32,
    /// "Still in progress" answers in a row before this one, in this turn.
    pub in_progress_before: u32,
    /// The channel's settings: schedule, floors, `max_attempts`, `max_age`.
    pub channel: &'a ChannelConfig,
    /// An earlier attempt on this channel may have reached the gateway.
    pub maybe_sent_before: bool,
    /// A failover channel that can express the job is left.
    pub failover_left: bool,
    /// The job has a `fallback` template that has not been tried yet.
    pub fallback_left: bool,
    /// Now.
    pub now: DateTime<Utc>,
    /// When a worker first took the job (`max_age` counts from it).
    pub first_seen: DateTime<Utc>,
    /// When the job stops being sendable.
    pub deadline: Option<DateTime<Utc>>,
    /// The longest wait spent in process; longer ones are durable.
    pub inline_wait: Duration,
    /// Where in the schedule's jitter band the wait falls: 0 the shortest, 1 the longest,
    /// 0.5 the nominal step (the caller draws it, so this stays a function of its inputs).
    pub jitter: f64,
}

/// What follows `failure` on the attempt `at` describes.
///
/// A job is failed over only when no attempt on this channel may have reached the gateway
/// (SPEC §4), and then either at once for credentials or channel trouble (another channel can
/// send now, while this one waits for an operator) or once `max_attempts` is used up. Auth
/// and channel trouble is otherwise retried until `max_age`, so an operator's fix drains the
/// backlog; everything else also stops at `max_attempts`.
///
/// A gateway still working on an earlier request with the same key (a resumed job meeting
/// its crashed predecessor's call) is asked again after [`IN_PROGRESS_WAIT`], in process, up
/// to [`IN_PROGRESS_RETRIES`] times, whatever `max_attempts` says: the earlier request is
/// about to answer, and a durable tier would hold the job for half a minute.
pub fn after_failure(failure: &Failure, at: &Attempted<'_>) -> AfterFailure {
    // The gateway says the window is closed: the template the producer gave for that goes at
    // once, in this job (SPEC §10).
    if failure.class == ErrorClass::WindowExpired && at.fallback_left {
        return AfterFailure::Fallback;
    }
    if !failure.class.is_retryable() {
        return AfterFailure::Fail;
    }
    let maybe_sent = at.maybe_sent_before || failure.sent == Sent::Maybe;
    let can_fail_over = !maybe_sent && at.failover_left;
    let slow = matches!(failure.class, ErrorClass::Auth | ErrorClass::Channel);
    let soon = failure.in_progress && at.in_progress_before < IN_PROGRESS_RETRIES;
    if slow && can_fail_over {
        return AfterFailure::FailOver;
    }
    if !soon && !slow && at.attempt >= at.channel.max_attempts {
        return if can_fail_over {
            AfterFailure::FailOver
        } else {
            AfterFailure::GiveUp(Limit::MaxAttempts)
        };
    }
    let wait = if soon {
        IN_PROGRESS_WAIT
    } else {
        retry_wait(at.channel, at.attempt, failure, at.jitter)
    };
    let next = at.now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
    let max_age = chrono::Duration::from_std(at.channel.max_age).unwrap_or(chrono::Duration::MAX);
    if at
        .first_seen
        .checked_add_signed(max_age)
        .is_some_and(|end| next > end)
    {
        return AfterFailure::GiveUp(Limit::MaxAge);
    }
    if at.deadline.is_some_and(|deadline| next > deadline) {
        return AfterFailure::Expire;
    }
    AfterFailure::Retry {
        wait,
        durable: !soon && wait > at.inline_wait,
    }
}

/// The wait before the next attempt: the channel's schedule (jittered), never shorter than the
/// gateway's `Retry-After`, with floors for classes that need time to clear.
pub fn retry_wait(
    channel: &ChannelConfig,
    attempt: u32,
    failure: &Failure,
    jitter: f64,
) -> Duration {
    let wait = Schedule::new(channel.retry_schedule.clone()).delay_at(
        attempt,
        failure.retry_after,
        jitter,
    );
    match failure.class {
        ErrorClass::RateLimited if failure.retry_after.is_none() => {
            wait.max(channel.rate_limited_backoff)
        }
        ErrorClass::Auth | ErrorClass::Channel => wait.max(channel.slow_backoff),
        _ => wait,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::outcome::OutcomeError;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn t0() -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000, 0).unwrap()
    }

    fn at(offset: i64) -> DateTime<Utc> {
        t0() + chrono::Duration::seconds(offset)
    }

    /// The defaults (schedule 5 s, 30 s, 2 min…; 10 attempts; 24 h; floors 60 s / 300 s).
    fn channel(extra: &str) -> ChannelConfig {
        toml::from_str(&format!("provider = \"waspy\"\n{extra}")).expect("channel")
    }

    fn failure(class: ErrorClass, sent: Sent, retry_after: Option<u64>) -> Failure {
        Failure::new(class, "code", "message")
            .with_retry_after(retry_after.map(secs))
            .with_sent(sent)
    }

    // ---- start ----

    #[test]
    fn start_table() {
        let inline = secs(1);
        let rows: [(Option<i64>, Option<i64>, Start); 8] = [
            (None, None, Start::Go),
            (Some(60), None, Start::Go),
            (Some(0), None, Start::Expired(at(0))),
            (Some(-5), Some(30), Start::Expired(at(-5))),
            // Due in the past: go now.
            (None, Some(-10), Start::Go),
            (None, Some(0), Start::Go),
            (Some(60), Some(120), Start::DueAfterDeadline),
            (
                None,
                Some(30),
                Start::Park {
                    wait: secs(30),
                    until: at(30),
                },
            ),
        ];
        for (deadline, not_before, want) in rows {
            let got = start(t0(), deadline.map(at), not_before.map(at), inline);
            assert_eq!(got, want, "deadline {deadline:?} not_before {not_before:?}");
        }
        let soon = t0() + chrono::Duration::milliseconds(400);
        assert_eq!(
            start(t0(), None, Some(soon), inline),
            Start::Sleep(Duration::from_millis(400))
        );
    }

    // ---- admit ----

    fn me(own_copy: bool, idempotent: bool, on_ambiguous: OnAmbiguous) -> Claimant<'static> {
        Claimant {
            job_id: "job-1",
            own_copy,
            idempotent,
            on_ambiguous,
            attempts: 2,
        }
    }

    fn record(job_id: &str, status: Status, error_code: Option<&str>) -> Record {
        Record {
            status,
            job_id: job_id.into(),
            provider_message_id: (status == Status::Sent).then(|| "msg-1".into()),
            error: error_code.map(|code| OutcomeError {
                class: ErrorClass::Auth,
                code: code.into(),
                message: "refused".into(),
                provider_code: None,
                attempts: 3,
            }),
            attempt: 3,
            fallback: false,
        }
    }

    #[test]
    fn admit_table() {
        use OnAmbiguous::{Fail, Resend};
        let resumed = |ambiguous, previous_attempts| Claim::Resumed {
            ambiguous,
            previous_attempts,
        };
        let attempt = |attempt, resumed, ambiguous| Admission::Attempt {
            attempt,
            resumed,
            ambiguous,
        };
        let rows: Vec<(&str, Claim, Claimant<'_>, Admission)> = vec![
            (
                "a free key: the attempt after those the headers carry",
                Claim::Acquired,
                me(false, false, Resend),
                attempt(3, false, false),
            ),
            (
                "resumed, not ambiguous: counts on from the larger count",
                resumed(false, 5),
                me(true, false, Fail),
                attempt(6, true, false),
            ),
            (
                "resumed ambiguous on an idempotent gateway: resend",
                resumed(true, 1),
                me(true, true, Fail),
                attempt(3, true, true),
            ),
            (
                "resumed ambiguous, no idempotency, on_ambiguous resend",
                resumed(true, 1),
                me(true, false, Resend),
                attempt(3, true, true),
            ),
            (
                "resumed ambiguous, no idempotency, on_ambiguous fail",
                resumed(true, 4),
                me(true, false, Fail),
                Admission::FailAmbiguous { attempts: 4 },
            ),
            (
                "on_ambiguous fail counts at least one attempt",
                resumed(true, 0),
                me(true, false, Fail),
                Admission::FailAmbiguous { attempts: 1 },
            ),
            (
                "our own copy's live lease: wait for it (clamped up)",
                Claim::Busy {
                    job_id: "job-1".into(),
                    lease_left: Duration::from_millis(1),
                },
                me(false, false, Resend),
                Admission::AwaitLease(Duration::from_millis(50)),
            ),
            (
                "our own copy's long lease: poll every 5 s",
                Claim::Busy {
                    job_id: "job-1".into(),
                    lease_left: secs(600),
                },
                me(true, true, Resend),
                Admission::AwaitLease(secs(5)),
            ),
            (
                "another job in flight with the key: a duplicate, queued",
                Claim::Busy {
                    job_id: "job-0".into(),
                    lease_left: secs(30),
                },
                me(false, true, Resend),
                Admission::Duplicate {
                    original_job_id: "job-0".into(),
                    status: Status::Queued,
                    provider_message_id: None,
                },
            ),
            (
                "another job sent the key: a duplicate with its message id",
                Claim::Done(record("job-0", Status::Sent, None)),
                me(true, true, Resend),
                Admission::Duplicate {
                    original_job_id: "job-0".into(),
                    status: Status::Sent,
                    provider_message_id: Some("msg-1".into()),
                },
            ),
            (
                "our own record, on a fresh delivery: a producer's repeat, a duplicate",
                Claim::Done(record("job-1", Status::Sent, None)),
                me(false, true, Resend),
                Admission::Duplicate {
                    original_job_id: "job-1".into(),
                    status: Status::Sent,
                    provider_message_id: Some("msg-1".into()),
                },
            ),
            (
                "our own record, on our own copy: publish it again",
                Claim::Done(record("job-1", Status::Sent, None)),
                me(true, true, Resend),
                Admission::Republish(record("job-1", Status::Sent, None)),
            ),
            (
                "our own failed record on our own copy: publish it again",
                Claim::Done(record("job-1", Status::Failed, Some("INVALID_PHONE"))),
                me(true, false, Resend),
                Admission::Republish(record("job-1", Status::Failed, Some("INVALID_PHONE"))),
            ),
            (
                "interrupted while failing over: carry on with the next channel",
                Claim::Done(record("job-1", Status::Failed, Some(FAILED_OVER))),
                me(true, false, Resend),
                Admission::ContinueFailOver {
                    failure: Failure::new(ErrorClass::Auth, FAILED_OVER, "refused"),
                    attempts: 3,
                },
            ),
            (
                "cancelled before it arrived: cancelled, the headers' attempts",
                Claim::Cancelled {
                    reason: "order cancelled".into(),
                    attempts: 0,
                },
                me(false, false, Resend),
                Admission::Cancelled {
                    reason: "order cancelled".into(),
                    attempts: 2,
                },
            ),
            (
                "cancelled while parked for a retry: the record's attempts",
                Claim::Cancelled {
                    reason: String::new(),
                    attempts: 4,
                },
                me(true, false, Fail),
                Admission::Cancelled {
                    reason: String::new(),
                    attempts: 4,
                },
            ),
        ];
        for (name, claim, me, want) in rows {
            assert_eq!(admit(claim, &me), want, "{name}");
        }
    }

    // ---- after_failure ----

    struct Row {
        name: &'static str,
        failure: Failure,
        attempt: u32,
        in_progress_before: u32,
        channel: &'static str,
        maybe_sent_before: bool,
        failover_left: bool,
        fallback_left: bool,
        /// Seconds since first seen.
        age: i64,
        /// Seconds from now to the deadline.
        deadline: Option<i64>,
        want: AfterFailure,
    }

    fn row(name: &'static str, failure: Failure, want: AfterFailure) -> Row {
        Row {
            name,
            failure,
            attempt: 1,
            in_progress_before: 0,
            channel: "",
            maybe_sent_before: false,
            failover_left: false,
            fallback_left: false,
            age: 0,
            deadline: None,
            want,
        }
    }

    /// What [`after_failure`] decides for a table row, one second of inline wait, mid-band jitter.
    fn decide(row: &Row) -> AfterFailure {
        let channel = channel(row.channel);
        let attempted = Attempted {
            attempt: row.attempt,
            in_progress_before: row.in_progress_before,
            channel: &channel,
            maybe_sent_before: row.maybe_sent_before,
            failover_left: row.failover_left,
            fallback_left: row.fallback_left,
            now: t0(),
            first_seen: at(-row.age),
            deadline: row.deadline.map(at),
            inline_wait: secs(1),
            jitter: 0.5,
        };
        after_failure(&row.failure, &attempted)
    }

    fn retry(wait: u64, durable: bool) -> AfterFailure {
        AfterFailure::Retry {
            wait: secs(wait),
            durable,
        }
    }

    #[test]
    fn after_failure_table() {
        use AfterFailure::{Expire, Fail, FailOver, GiveUp};
        use ErrorClass::*;
        use Sent::{Maybe, No};
        let rows = [
            Row {
                ..row(
                    "still in progress: asked again after 1 s, in process",
                    failure(Transient, No, None).in_progress(),
                    AfterFailure::Retry {
                        wait: secs(1),
                        durable: false,
                    },
                )
            },
            Row {
                in_progress_before: 2,
                ..row(
                    "the third time in a row: still soon",
                    failure(Transient, No, None).in_progress(),
                    AfterFailure::Retry {
                        wait: secs(1),
                        durable: false,
                    },
                )
            },
            Row {
                in_progress_before: 3,
                ..row(
                    "after three, the schedule takes over",
                    failure(Transient, No, None).in_progress(),
                    retry(5, true),
                )
            },
            Row {
                attempt: 10,
                ..row(
                    "in progress at max_attempts: asked again, not given up",
                    failure(Transient, No, None).in_progress(),
                    AfterFailure::Retry {
                        wait: secs(1),
                        durable: false,
                    },
                )
            },
            Row {
                attempt: 10,
                in_progress_before: 3,
                ..row(
                    "in progress at max_attempts, three times over: give up",
                    failure(Transient, No, None).in_progress(),
                    GiveUp(Limit::MaxAttempts),
                )
            },
            Row {
                failover_left: true,
                attempt: 10,
                in_progress_before: 3,
                ..row(
                    "in progress may have sent: never failed over",
                    failure(Transient, No, None).in_progress(),
                    GiveUp(Limit::MaxAttempts),
                )
            },
            Row {
                deadline: Some(0),
                ..row(
                    "in progress past the deadline: expire",
                    failure(Transient, No, None).in_progress(),
                    Expire,
                )
            },
            row("invalid: never retried", failure(Invalid, No, None), Fail),
            row("rejected: never retried", failure(Rejected, No, None), Fail),
            row(
                "window expired: never retried",
                failure(WindowExpired, No, None),
                Fail,
            ),
            row(
                "transient: the schedule's first step, durable",
                failure(Transient, No, None),
                retry(5, true),
            ),
            Row {
                attempt: 3,
                ..row(
                    "transient: the third step",
                    failure(Transient, Maybe, None),
                    retry(120, true),
                )
            },
            Row {
                attempt: 50,
                channel: "max_attempts = 100",
                ..row(
                    "past the schedule: its last step repeats",
                    failure(Transient, No, None),
                    retry(14400, true),
                )
            },
            Row {
                channel: "retry_schedule = [\"500ms\"]",
                ..row(
                    "a wait within inline_wait is spent in process",
                    failure(Transient, No, None),
                    AfterFailure::Retry {
                        wait: Duration::from_millis(500),
                        durable: false,
                    },
                )
            },
            row(
                "Retry-After longer than the step wins",
                failure(Transient, No, Some(40)),
                retry(40, true),
            ),
            row(
                "Retry-After shorter than the step does not shorten it",
                failure(Transient, No, Some(1)),
                retry(5, true),
            ),
            row(
                "rate limited without Retry-After: the 60 s floor",
                failure(RateLimited, No, None),
                retry(60, true),
            ),
            row(
                "rate limited with Retry-After: the gateway's word, no floor",
                failure(RateLimited, No, Some(2)),
                retry(5, true),
            ),
            row(
                "auth: the 300 s floor",
                failure(Auth, No, None),
                retry(300, true),
            ),
            row(
                "channel: the 300 s floor",
                failure(Channel, No, None),
                retry(300, true),
            ),
            Row {
                failover_left: true,
                ..row(
                    "auth, provably not sent, a failover left: fail over at once",
                    failure(Auth, No, None),
                    FailOver,
                )
            },
            Row {
                failover_left: true,
                ..row(
                    "channel, not sent, a failover left: fail over at once",
                    failure(Channel, No, None),
                    FailOver,
                )
            },
            Row {
                failover_left: true,
                ..row(
                    "auth that may have sent: never failed over",
                    failure(Auth, Maybe, None),
                    retry(300, true),
                )
            },
            Row {
                failover_left: true,
                maybe_sent_before: true,
                ..row(
                    "an earlier attempt may have sent: never failed over",
                    failure(Auth, No, None),
                    retry(300, true),
                )
            },
            Row {
                failover_left: true,
                ..row(
                    "transient with attempts left: retried here first",
                    failure(Transient, No, None),
                    retry(5, true),
                )
            },
            Row {
                attempt: 10,
                ..row(
                    "max_attempts reached: give up",
                    failure(Transient, No, None),
                    GiveUp(Limit::MaxAttempts),
                )
            },
            Row {
                attempt: 10,
                failover_left: true,
                ..row(
                    "max_attempts reached, not sent, a failover left: fail over",
                    failure(Transient, No, None),
                    FailOver,
                )
            },
            Row {
                attempt: 10,
                failover_left: true,
                ..row(
                    "max_attempts reached, maybe sent: give up, never fail over",
                    failure(Transient, Maybe, None),
                    GiveUp(Limit::MaxAttempts),
                )
            },
            Row {
                attempt: 10,
                failover_left: true,
                maybe_sent_before: true,
                ..row(
                    "max_attempts reached after an ambiguous attempt: give up",
                    failure(RateLimited, No, None),
                    GiveUp(Limit::MaxAttempts),
                )
            },
            Row {
                attempt: 40,
                ..row(
                    "auth is not bound by max_attempts",
                    failure(Auth, No, None),
                    retry(14400, true),
                )
            },
            Row {
                age: 24 * 3600 - 100,
                ..row(
                    "the next try would pass max_age: give up",
                    failure(Auth, No, None),
                    GiveUp(Limit::MaxAge),
                )
            },
            Row {
                age: 24 * 3600 - 400,
                ..row(
                    "the next try is within max_age",
                    failure(Auth, No, None),
                    retry(300, true),
                )
            },
            Row {
                deadline: Some(4),
                ..row(
                    "the job expires before the next try",
                    failure(Transient, No, None),
                    Expire,
                )
            },
            Row {
                deadline: Some(5),
                ..row(
                    "the next try is exactly at the deadline: still sent",
                    failure(Transient, No, None),
                    retry(5, true),
                )
            },
            Row {
                deadline: Some(3600),
                age: 24 * 3600 - 1,
                ..row(
                    "max_age is checked before the deadline",
                    failure(Transient, No, None),
                    GiveUp(Limit::MaxAge),
                )
            },
        ];
        for row in rows {
            assert_eq!(decide(&row), row.want, "{}", row.name);
        }
    }

    #[test]
    fn a_closed_window_sends_the_fallback_once() {
        use ErrorClass::*;
        use Sent::*;
        let rows = [
            Row {
                fallback_left: true,
                ..row(
                    "window expired with a fallback: send it",
                    failure(WindowExpired, No, None),
                    AfterFailure::Fallback,
                )
            },
            row(
                "window expired without a fallback: fail",
                failure(WindowExpired, No, None),
                AfterFailure::Fail,
            ),
            Row {
                fallback_left: true,
                failover_left: true,
                ..row(
                    "the fallback comes before failover",
                    failure(WindowExpired, No, None),
                    AfterFailure::Fallback,
                )
            },
            Row {
                fallback_left: true,
                ..row(
                    "other failures do not touch the fallback",
                    failure(Transient, No, None),
                    retry(5, true),
                )
            },
        ];
        for row in rows {
            assert_eq!(decide(&row), row.want, "{}", row.name);
        }
    }

    #[test]
    fn compose_table() {
        use Compose::*;
        use WindowMode::*;
        // (window, template, has_fallback, switched, window_open) → what is sent.
        let rows = [
            (
                (Track, false, true, false, None),
                Message,
                "track sends as asked",
            ),
            (
                (Off, false, true, false, None),
                Message,
                "off sends as asked",
            ),
            (
                (Enforce, false, true, false, Some(true)),
                Message,
                "open window",
            ),
            (
                (Enforce, false, true, false, Some(false)),
                Fallback,
                "closed, with fallback",
            ),
            (
                (Enforce, false, false, false, Some(false)),
                WindowClosed,
                "closed, no fallback",
            ),
            (
                (Enforce, true, false, false, None),
                Message,
                "templates are never held back",
            ),
            (
                (Track, false, true, true, None),
                Fallback,
                "a switched job keeps its fallback",
            ),
            (
                (Enforce, false, true, true, None),
                Fallback,
                "switched under enforce",
            ),
        ];
        for ((window, template, has_fallback, switched, open), want, name) in rows {
            assert_eq!(
                compose(window, template, has_fallback, switched, open),
                want,
                "{name}"
            );
            if open.is_some() {
                assert!(needs_window(window, template, switched), "{name}");
            }
        }
        assert!(!needs_window(Track, false, false));
        assert!(!needs_window(Enforce, true, false));
        assert!(!needs_window(Enforce, false, true));
    }

    /// The jitter band is the schedule's ±20 %, and floors hold at its bottom.
    #[test]
    fn jitter_moves_the_wait_within_its_band_above_the_floors() {
        let channel = channel("");
        let transient = failure(ErrorClass::Transient, Sent::No, None);
        assert_eq!(retry_wait(&channel, 2, &transient, 0.0), secs(24));
        assert_eq!(retry_wait(&channel, 2, &transient, 1.0), secs(36));
        let auth = failure(ErrorClass::Auth, Sent::No, None);
        assert_eq!(retry_wait(&channel, 1, &auth, 0.0), secs(300));
    }
}
