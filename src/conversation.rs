//! What customers wrote (SPEC §10), as the Redis state inbound messages need: which inbound
//! messages have been published (so a gateway's retry publishes nothing new), and when each
//! customer last wrote on each channel (the 24-hour customer-service window).
//!
//! Keys: `<prefix>:in:<channel>:<provider message id>` (published, kept as long as receipts'
//! correlation records, since gateways retry webhooks that long) and
//! `<prefix>:win:<channel>:<customer>` (the customer's last message time in milliseconds,
//! expiring when the window it opened closes). Each is written with a single-key command, so
//! neither needs its keys in one hash slot.

use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::{AsyncCommands, Script};

use crate::store::{Keys, NOW_MS, Redis, StoreError, millis};

/// How long a customer's message keeps the customer-service window open (WhatsApp's rule).
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);

// KEYS[1] window; ARGV: at_ms, window_ms. Keeps the latest time only (webhooks arrive out of
// order), and never writes a window that has already closed.
const RECORD: &str = r#"
local at = math.min(tonumber(ARGV[1]), now)
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if at <= current then return 0 end
local closes = at + tonumber(ARGV[2])
if closes <= now then return 0 end
redis.call('SET', KEYS[1], tostring(at), 'PXAT', closes)
return 1
"#;

/// The Redis side of conversations.
#[derive(Clone)]
pub struct Conversations {
    redis: Redis,
    keys: Keys,
    seen_ttl: Duration,
    record: Script,
}

impl Conversations {
    /// Conversations on `redis` under `prefix`; published marks are kept for `seen_ttl`.
    pub fn new(redis: impl Into<Redis>, prefix: &str, seen_ttl: Duration) -> Self {
        let redis = redis.into();
        Self {
            keys: Keys::new(prefix, &redis),
            redis,
            seen_ttl,
            record: Script::new(&format!("{NOW_MS}{RECORD}")),
        }
    }

    fn seen_key(&self, channel: &str, provider_message_id: &str) -> String {
        format!("{}:{provider_message_id}", self.keys.channel("in", channel))
    }

    /// The Redis key of a customer's window on a channel.
    pub fn window_key(&self, channel: &str, customer: &str) -> String {
        format!("{}:{customer}", self.keys.channel("win", channel))
    }

    /// Whether the inbound message has been published already.
    pub async fn published(
        &self,
        channel: &str,
        provider_message_id: &str,
    ) -> Result<bool, StoreError> {
        let exists: bool = self
            .redis
            .clone()
            .exists(self.seen_key(channel, provider_message_id))
            .await?;
        Ok(exists)
    }

    /// Remember that the inbound message has been published (after its publish is confirmed).
    pub async fn mark_published(
        &self,
        channel: &str,
        provider_message_id: &str,
    ) -> Result<(), StoreError> {
        let _: () = self
            .redis
            .clone()
            .pset_ex(
                self.seen_key(channel, provider_message_id),
                1,
                millis(self.seen_ttl),
            )
            .await?;
        Ok(())
    }

    /// Record that `customer` (E.164) wrote on `channel` at `at`: one write, which opens (or
    /// extends) their window until 24 hours after their latest message.
    pub async fn record_inbound(
        &self,
        channel: &str,
        customer: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let at_ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        let _: i64 = self
            .record
            .key(self.window_key(channel, customer))
            .arg(at_ms)
            .arg(millis(WINDOW))
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    /// When `customer` last wrote on `channel`, if that was within the last 24 hours.
    pub async fn last_inbound(
        &self,
        channel: &str,
        customer: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<String> = self
            .redis
            .clone()
            .get(self.window_key(channel, customer))
            .await?;
        Ok(at
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(DateTime::<Utc>::from_timestamp_millis))
    }
}
