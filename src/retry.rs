//! Error classification (SPEC §7) and the retry schedule.
//!
//! Every failure anywhere in the pipeline ends up as a [`Failure`]: a class that decides what
//! happens next (retry, fail, fail over) plus the details an operator needs. Adapters build
//! them from their error tables; the worker only ever looks at the class.

use std::time::Duration;

use rand::RngExt;
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
    /// An operator or producer cancelled the job before it was sent: never retried, never
    /// dead-lettered (a decision, not an error).
    Cancelled,
}

impl ErrorClass {
    /// Every class, for code that walks them (metrics created at start-up).
    pub const ALL: [Self; 10] = [
        Self::Transient,
        Self::RateLimited,
        Self::Auth,
        Self::Channel,
        Self::WindowExpired,
        Self::Invalid,
        Self::Rejected,
        Self::Expired,
        Self::RetriesExhausted,
        Self::Cancelled,
    ];

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
            Self::Cancelled => "cancelled",
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
    /// The gateway is still working on an earlier request with the same idempotency key
    /// (Waspy's `409 IDEMPOTENCY_CONFLICT`): "ask again shortly", not an outage.
    pub in_progress: bool,
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
            in_progress: false,
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

    /// Mark the failure as the gateway still working on an earlier request with this key:
    /// that request may well send, so this one may have too.
    pub fn in_progress(mut self) -> Self {
        self.in_progress = true;
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

    /// The nominal (unjittered) wait after failed attempt number `attempt` (1-based).
    pub fn nominal(&self, attempt: u32) -> Duration {
        let index = (attempt.max(1) as usize - 1).min(self.steps.len() - 1);
        self.steps[index]
    }

    /// The wait after failed attempt `attempt`, jittered at random and never shorter than the
    /// gateway's `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.delay_at(attempt, retry_after, rand::rng().random_range(0.0..=1.0))
    }

    /// [`Schedule::delay`] at a chosen place in the jitter band: `unit` 0 is the shortest
    /// wait, 1 the longest, 0.5 the nominal step.
    pub fn delay_at(&self, attempt: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let jittered = self.nominal(attempt).mul_f64(factor);
        match retry_after {
            Some(after) => jittered.max(after),
            None => jittered,
        }
    }
}

/// Waits between tries of something that is nobody's fault and must eventually work (a
/// broker connection, a Redis call): jittered exponential steps from 200 ms up to a cap, cut
/// short when shutdown starts. The one mechanism behind every "back off until shutdown" loop.
pub struct Backoff {
    steps: backon::ExponentialBackoff,
    max: Duration,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Backoff {
    /// The first wait: short, so a blip costs little.
    const MIN: Duration = Duration::from_millis(200);

    /// Steps growing up to `max`, ended by `shutdown`.
    pub fn new(shutdown: &tokio_util::sync::CancellationToken, max: Duration) -> Self {
        Self {
            steps: Self::steps(max),
            max,
            shutdown: shutdown.clone(),
        }
    }

    fn steps(max: Duration) -> backon::ExponentialBackoff {
        use backon::BackoffBuilder;
        backon::ExponentialBuilder::default()
            .with_min_delay(Self::MIN)
            .with_max_delay(max)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// Start again from the shortest wait (the thing worked for a while, then failed anew).
    pub fn reset(&mut self) {
        self.steps = Self::steps(self.max);
    }

    /// The next wait, never past the cap.
    pub fn next_wait(&mut self) -> Duration {
        self.steps.next().unwrap_or(self.max).min(self.max)
    }

    /// Sleep `wait`; false when shutdown started first (or had started).
    pub async fn sleep(&self, wait: Duration) -> bool {
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    /// Run `attempt` until it succeeds. After each failure `failed` hears the error and the
    /// wait before the next try; `None` once shutdown starts.
    pub async fn retry<T, E, F, Fut>(
        &mut self,
        mut attempt: F,
        mut failed: impl FnMut(&E, Duration),
    ) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        loop {
            match attempt().await {
                Ok(value) => return Some(value),
                Err(e) => {
                    if self.shutdown.is_cancelled() {
                        return None;
                    }
                    let wait = self.next_wait();
                    failed(&e, wait);
                    if !self.sleep(wait).await {
                        return None;
                    }
                }
            }
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

    /// Failures are retried with waits that grow up to the cap; the value comes back once the
    /// attempt works.
    #[tokio::test(start_paused = true)]
    async fn backoff_retries_until_it_works_with_capped_waits() {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let mut backoff = Backoff::new(&shutdown, Duration::from_secs(2));
        let mut tries = 0;
        let mut waits = Vec::new();
        let value = backoff
            .retry(
                || {
                    tries += 1;
                    let result = if tries < 8 { Err("down") } else { Ok(tries) };
                    async move { result }
                },
                |_, wait| waits.push(wait),
            )
            .await;
        assert_eq!(value, Some(8));
        assert_eq!(waits.len(), 7);
        assert!(waits[0] >= Duration::from_millis(200), "{waits:?}");
        assert!(
            waits.iter().all(|w| *w <= Duration::from_secs(2)),
            "{waits:?}"
        );
        assert_eq!(*waits.last().unwrap(), Duration::from_secs(2), "{waits:?}");
    }

    /// Shutdown ends the wait at once, and nothing is tried after it.
    #[tokio::test(start_paused = true)]
    async fn backoff_gives_up_when_shutdown_starts() {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let mut backoff = Backoff::new(&shutdown, Duration::from_secs(60));
        let stop = shutdown.clone();
        let started = tokio::time::Instant::now();
        let mut tries = 0;
        let value: Option<()> = backoff
            .retry(
                || {
                    tries += 1;
                    async { Err::<(), _>("down") }
                },
                |_, _| stop.cancel(),
            )
            .await;
        assert_eq!(value, None);
        assert_eq!(tries, 1);
        assert!(started.elapsed() < Duration::from_millis(100));
        assert!(!backoff.sleep(Duration::from_secs(1)).await);
    }

    /// `ALL` names every class once: a class added to the enum but not to `ALL` fails here
    /// (the match has no wildcard), and the metrics created at start-up follow `ALL`.
    #[test]
    fn all_names_every_class_once() {
        let index = |class: ErrorClass| match class {
            ErrorClass::Transient => 0,
            ErrorClass::RateLimited => 1,
            ErrorClass::Auth => 2,
            ErrorClass::Channel => 3,
            ErrorClass::WindowExpired => 4,
            ErrorClass::Invalid => 5,
            ErrorClass::Rejected => 6,
            ErrorClass::Expired => 7,
            ErrorClass::RetriesExhausted => 8,
            ErrorClass::Cancelled => 9,
        };
        let mut seen = [false; ErrorClass::ALL.len()];
        for class in ErrorClass::ALL {
            assert!(
                !std::mem::replace(&mut seen[index(class)], true),
                "{class:?} twice"
            );
        }
        assert!(seen.iter().all(|s| *s));
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
