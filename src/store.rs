//! What every Redis-backed store shares: the error type, the clock fragment their Lua scripts
//! start from, and the small conversions they all need.
//!
//! [`crate::dedupe`], [`crate::ratelimit`] and [`crate::tracking`] depend on this module and
//! on nothing of each other's but what the dedupe claim borrows from the rate limiter (it
//! books a slot in the same round trip).

use std::time::Duration;

use redis::RedisError;

/// Errors talking to Redis; the caller retries them (the job is not at fault).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis did not answer or refused.
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    /// A script answered something this code does not understand.
    #[error("unexpected reply from a redis script: {0}")]
    Protocol(String),
}

impl StoreError {
    /// A reply (or a stored value) this code cannot read.
    pub fn protocol(what: impl std::fmt::Display) -> Self {
        Self::Protocol(what.to_string())
    }
}

/// The first line of a Lua script that needs the time: `now` in milliseconds from Redis' own
/// clock (`TIME`), so workers with skewed clocks agree on leases and poll times.
pub const NOW_MS: &str = "local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

/// The same in microseconds, for the rate limiter's finer slots.
pub const NOW_US: &str =
    "local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n";

/// A duration as whole milliseconds for a script argument: at least 1, since Redis refuses a
/// zero `PX` / `PEXPIRE`, and saturating.
pub fn millis(d: Duration) -> u64 {
    d.as_millis().clamp(1, u128::from(u64::MAX)) as u64
}

/// A duration as whole microseconds for a script argument, saturating at what Lua's numbers
/// and Redis' integers hold.
pub fn micros(d: Duration) -> u64 {
    d.as_micros().min(i64::MAX as u128) as u64
}
