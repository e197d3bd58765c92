//! Error classification (SPEC §7) and the retry schedule.
//!
//! Every failure anywhere in the pipeline ends up as a [`Failure`]: a class that decides what
//! happens next (retry, fail, fail over) plus the details an operator needs. Adapters build
//! them from their error tables; the worker only ever looks at the class.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// What kind of failure happened, and therefore whether it is worth another attempt (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Connect/timeout errors, 5xx, conflicts: retried with backoff.
    Transient,
    /// 429 and gateway throughput codes: retried after `Retry-After` or the next step.
    RateLimited,
    /// Credentials refused: retried slowly so an operator fix drains the backlog.
    Auth,
    /// The sender channel is disconnected, blocked or out of balance: retried slowly.
    Channel,
    /// WhatsApp's 24 h customer-service window closed: a template is needed, never retried.
    WindowExpired,
    /// The job or its content is wrong: never retried.
    Invalid,
    /// The gateway or WhatsApp refused this recipient or content: never retried.
    Rejected,
    /// The job's `expires_at` / `ttl_seconds` / `max_age` passed before it could be sent.
    Expired,
    /// A retryable failure that ran out of attempts.
    RetriesExhausted,
}

impl ErrorClass {
    /// Whether another attempt can succeed without anyone changing the job.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Transient | Self::RateLimited | Self::Auth | Self::Channel
        )
    }

    /// The snake_case name used in outcomes, headers and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::RateLimited => "rate_limited",
            Self::Auth => "auth",
            Self::Channel => "channel",
            Self::WindowExpired => "window_expired",
            Self::Invalid => "invalid",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::RetriesExhausted => "retries_exhausted",
        }
    }

    /// The class a job's final outcome carries once retries stop on a failure of this class.
    ///
    /// Transient trouble becomes `retries_exhausted`; `auth` and `channel` keep their own
    /// class because they tell the operator exactly what to fix.
    pub fn terminal(self) -> Self {
        match self {
            Self::Transient | Self::RateLimited => Self::RetriesExhausted,
            other => other,
        }
    }
}

/// Whether a failed call may have reached the gateway.
///
/// Failover and `on_ambiguous` depend on it: a job that may have been sent is never sent
/// through another channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The gateway provably did not take the message (refused connection, 4xx answer, …).
    No,
    /// The request left and no answer came back (timeout, reset mid-response).
    Maybe,
}

/// A classified failure: enough to decide the next step and to tell a human what happened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{class:?} {code}: {message}")]
pub struct Failure {
    /// Decides retry / fail / fail over.
    pub class: ErrorClass,
    /// Stable machine-readable code (`INVALID_PHONE`, `http_503`, `timeout`, `invalid_field`…).
    pub code: String,
    /// Human-readable detail; never contains secrets.
    pub message: String,
    /// The gateway's own error code when it gave one.
    pub provider_code: Option<String>,
    /// The gateway's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
    /// Whether the gateway may have sent the message despite the failure.
    pub sent: Sent,
}

impl Failure {
    /// A failure that provably did not reach a gateway.
    pub fn new(class: ErrorClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class,
            code: code.into(),
            message: message.into(),
            provider_code: None,
            retry_after: None,
            sent: Sent::No,
        }
    }

    /// The job cannot be sent as written.
    pub fn invalid(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Invalid, code, message)
    }

    /// Attach the gateway's own error code.
    pub fn with_provider_code(mut self, code: impl Into<String>) -> Self {
        self.provider_code = Some(code.into());
        self
    }

    /// Attach the gateway's `Retry-After`.
    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// Mark the failure as possibly having reached the gateway.
    pub fn maybe_sent(mut self) -> Self {
        self.sent = Sent::Maybe;
        self
    }

    /// Say whether the failure may have reached the gateway.
    pub fn with_sent(mut self, sent: Sent) -> Self {
        self.sent = sent;
        self
    }
}

/// Delays between attempts, kept as data (svix-style): entry `n` is the wait before attempt
/// `n + 2`; the last entry repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    steps: Vec<Duration>,
    jitter: f64,
}

/// ±20 %: enough to spread a thundering herd after a gateway outage, small enough that the
/// schedule a user configured still means what it says.
pub const DEFAULT_JITTER: f64 = 0.2;

impl Schedule {
    /// A schedule from its steps (must not be empty) with the default jitter.
    pub fn new(steps: Vec<Duration>) -> Self {
        assert!(!steps.is_empty(), "retry schedule needs at least one step");
        Self {
            steps,
            jitter: DEFAULT_JITTER,
        }
    }

    /// Same steps, other jitter (0 for deterministic tests).
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// The configured steps.
    pub fn steps(&self) -> &[Duration] {
        &self.steps
    }

    /// The nominal (unjittered) wait after failed attempt number `attempt` (1-based).
    pub fn nominal(&self, attempt: u32) -> Duration {
        let index = (attempt.max(1) as usize - 1).min(self.steps.len() - 1);
        self.steps[index]
    }

    /// The wait after failed attempt `attempt`, jittered and never shorter than the gateway's
    /// `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let nominal = self.nominal(attempt);
        let factor = if self.jitter > 0.0 {
            rand::rng().random_range(1.0 - self.jitter..=1.0 + self.jitter)
        } else {
            1.0
        };
        let jittered = nominal.mul_f64(factor);
        match retry_after {
            Some(after) => jittered.max(after),
            None => jittered,
        }
    }
}

/// Parse an HTTP `Retry-After` value: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_repeats_last_step_and_honours_retry_after() {
        let s =
            Schedule::new(vec![Duration::from_secs(5), Duration::from_secs(30)]).with_jitter(0.0);
        assert_eq!(s.delay(1, None), Duration::from_secs(5));
        assert_eq!(s.delay(2, None), Duration::from_secs(30));
        assert_eq!(s.delay(9, None), Duration::from_secs(30));
        assert_eq!(
            s.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let s = Schedule::new(vec![Duration::from_secs(10)]);
        for _ in 0..1000 {
            let d = s.delay(1, None);
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
                "{d:?}"
            );
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn terminal_classes() {
        assert_eq!(
            ErrorClass::Transient.terminal(),
            ErrorClass::RetriesExhausted
        );
        assert_eq!(
            ErrorClass::RateLimited.terminal(),
            ErrorClass::RetriesExhausted
        );
        assert_eq!(ErrorClass::Auth.terminal(), ErrorClass::Auth);
        assert!(!ErrorClass::Invalid.is_retryable());
    }
}
