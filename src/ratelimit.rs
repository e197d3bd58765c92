//! Rate limits shared by every replica (SPEC §4): a GCRA per channel, plus optional spacing
//! per recipient, in one Lua script — one Redis round trip per job.
//!
//! The script books a send time for the job instead of answering yes/no: a job told to wait
//! `After(d)` owns its slot and sends after sleeping once, so waiting jobs neither fail nor
//! spin. A slot further away than the caller can wait in process is not booked (`Park`): the
//! job is parked in a delay queue and asks again when it returns.

use std::time::Duration;

use redis::Script;

use crate::store::{Keys, NOW_US, Redis, StoreError, micros};

/// The limits of one channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Sustained messages per second, across all replicas.
    pub per_second: u32,
    /// Messages that may go back to back before the rate applies.
    pub burst: u32,
    /// Minimum spacing between two messages to the same recipient.
    pub recipient_interval: Option<Duration>,
}

/// What a job may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Send now.
    Now,
    /// A slot is booked: send after this wait. Never ask again for it.
    After(Duration),
    /// The next slot is further away than the caller can wait; nothing was booked. Park the
    /// job and ask again after about this long.
    Park(Duration),
}

/// The shared limiter.
#[derive(Clone)]
pub struct RateLimiter {
    redis: Redis,
    keys: Keys,
    script: Script,
}

// KEYS[1] channel TAT, KEYS[2] recipient next-allowed time (may be unused).
// ARGV: interval_us, tolerance_us, recipient_interval_us (0 = none), max_wait_us.
// Times are microseconds from Redis' clock, so replicas with skewed clocks agree.
// Returns the wait in microseconds; negative = "not booked, park this long".
// The body follows `NOW_US` (see `gcra_script`).
const GCRA: &str = r#"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local spacing = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
-- The channel allows a send once the TAT is within the burst tolerance of it.
local at = tat - tolerance
if at < now then at = now end
if spacing > 0 then
  local next_for_recipient = tonumber(redis.call('GET', KEYS[2]) or '0')
  if next_for_recipient > at then at = next_for_recipient end
end
local wait = at - now
if wait > max_wait then
  return -math.max(wait, 1)
end
-- Book: the channel's TAT moves one interval past the booked time.
local new_tat = math.max(tat, at) + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
if spacing > 0 then
  redis.call('SET', KEYS[2], string.format('%d', at + spacing), 'PX', math.ceil((at + spacing - now) / 1000) + 1000)
end
return wait
"#;

impl RateLimiter {
    /// A limiter on `redis` with keys under `prefix`.
    pub fn new(redis: impl Into<Redis>, prefix: &str) -> Self {
        let redis = redis.into();
        Self {
            keys: Keys::new(prefix, &redis),
            redis,
            script: Script::new(&gcra_script()),
        }
    }

    /// Book a send slot for a job to `recipient` on `channel`, waiting at most `max_wait`.
    pub async fn acquire(
        &self,
        channel: &str,
        recipient: &str,
        limits: &Limits,
        max_wait: Duration,
    ) -> Result<Permit, StoreError> {
        let booking = self.booking(channel, recipient, limits, max_wait);
        let mut invocation = self.script.prepare_invoke();
        for key in &booking.keys {
            invocation.key(key);
        }
        for arg in booking.args {
            invocation.arg(arg);
        }
        let wait_us: i64 = invocation.invoke_async(&mut self.redis.clone()).await?;
        Ok(permit(wait_us))
    }

    /// The keys and arguments of the GCRA script for one booking, for callers that run it
    /// inside a larger script (the dedupe claim books its slot in the same round trip).
    pub fn booking(
        &self,
        channel: &str,
        recipient: &str,
        limits: &Limits,
        max_wait: Duration,
    ) -> Booking {
        let interval_us = 1_000_000 / u64::from(limits.per_second.max(1));
        let tolerance_us = interval_us * u64::from(limits.burst.max(1) - 1);
        let spacing_us = limits.recipient_interval.map_or(0, micros);
        Booking {
            keys: [
                self.keys.channel("rate", channel),
                format!("{}:to:{recipient}", self.keys.channel("rate", channel)),
            ],
            args: [interval_us, tolerance_us, spacing_us, micros(max_wait)],
        }
    }
}

/// The GCRA as a whole script: Redis' clock in microseconds, then the booking. The dedupe
/// claim embeds the same as a Lua function (it books in its own round trip).
pub(crate) fn gcra_script() -> String {
    format!("{NOW_US}{GCRA}")
}

/// One booking's GCRA keys (channel TAT, recipient next-allowed) and arguments.
#[derive(Debug, Clone)]
pub struct Booking {
    /// `KEYS` of the GCRA script.
    pub keys: [String; 2],
    /// `ARGV` of the GCRA script.
    pub args: [u64; 4],
}

/// The permit a GCRA reply (microseconds; negative: park) grants.
pub fn permit(wait_us: i64) -> Permit {
    match wait_us {
        0 => Permit::Now,
        w if w > 0 => Permit::After(Duration::from_micros(w as u64)),
        w => Permit::Park(Duration::from_micros(w.unsigned_abs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limiter on the test Redis under a unique prefix (keys expire on their own).
    async fn limiter() -> Option<(RateLimiter, String)> {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let client = redis::Client::open(url).expect("REDIS_URL");
        let manager = redis::aio::ConnectionManager::new(client)
            .await
            .expect("these tests need Redis: run scripts/services.sh or set REDIS_URL");
        let prefix = format!("t-rate-{}", uuid::Uuid::new_v4().simple());
        Some((RateLimiter::new(manager, &prefix), prefix))
    }

    fn booked(p: Permit) -> Duration {
        match p {
            Permit::Now => Duration::ZERO,
            Permit::After(d) => d,
            Permit::Park(d) => panic!("parked for {d:?}"),
        }
    }

    #[tokio::test]
    async fn slots_are_spaced_at_the_rate_after_the_burst() {
        let Some((limiter, _)) = limiter().await else {
            return;
        };
        let limits = Limits {
            per_second: 20,
            burst: 3,
            recipient_interval: None,
        };
        // Each booking is a wait from Redis' "now", somewhere between our clock before and
        // after the call: keep both, so the check holds however slow the machine is.
        let mut slots = Vec::new();
        let start = std::time::Instant::now();
        for i in 0..10 {
            let before = start.elapsed();
            let p = limiter
                .acquire("c", &format!("r{i}"), &limits, Duration::from_secs(10))
                .await
                .unwrap();
            let after = start.elapsed();
            let wait = booked(p);
            slots.push((before + wait, after + wait, wait));
        }
        // The burst goes at once; then one slot per 50 ms.
        assert!(
            slots[..3].iter().all(|s| s.2 < Duration::from_millis(5)),
            "{slots:?}"
        );
        let step = Duration::from_millis(50);
        let slack = Duration::from_millis(2);
        for pair in slots[3..].windows(2) {
            let (earliest, latest) = (pair[0], pair[1]);
            let least = latest.0.saturating_sub(earliest.1);
            let most = latest.1.saturating_sub(earliest.0);
            assert!(
                least <= step + slack && step <= most + slack,
                "slot gap must be able to be 50 ms: between {least:?} and {most:?}; {slots:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_slot_beyond_max_wait_is_not_booked() {
        let Some((limiter, _)) = limiter().await else {
            return;
        };
        let limits = Limits {
            per_second: 1,
            burst: 1,
            recipient_interval: None,
        };
        assert_eq!(
            limiter
                .acquire("c", "r", &limits, Duration::from_millis(100))
                .await
                .unwrap(),
            Permit::Now
        );
        let parked = limiter
            .acquire("c", "r", &limits, Duration::from_millis(100))
            .await
            .unwrap();
        assert!(
            matches!(parked, Permit::Park(d) if d > Duration::from_millis(900)),
            "{parked:?}"
        );
        // Nothing was booked: the next caller that can wait gets the same slot.
        let next = booked(
            limiter
                .acquire("c", "r", &limits, Duration::from_secs(5))
                .await
                .unwrap(),
        );
        assert!(
            next < Duration::from_millis(1000) && next > Duration::from_millis(900),
            "{next:?}"
        );
    }

    #[tokio::test]
    async fn recipients_are_spaced_without_slowing_others() {
        let Some((limiter, _)) = limiter().await else {
            return;
        };
        let limits = Limits {
            per_second: 1000,
            burst: 10,
            recipient_interval: Some(Duration::from_secs(6)),
        };
        let max = Duration::from_secs(1);
        assert_eq!(
            limiter
                .acquire("c", "+34600000001", &limits, max)
                .await
                .unwrap(),
            Permit::Now
        );
        let again = limiter
            .acquire("c", "+34600000001", &limits, max)
            .await
            .unwrap();
        assert!(
            matches!(again, Permit::Park(d) if d > Duration::from_millis(5900)),
            "{again:?}"
        );
        assert_eq!(
            limiter
                .acquire("c", "+34600000002", &limits, max)
                .await
                .unwrap(),
            Permit::Now
        );
    }
}
