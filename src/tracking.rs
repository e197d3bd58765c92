//! After `sent` (SPEC §3, §6): what a receipt needs to find its job, and the status order.
//!
//! When a job's `sent` outcome is confirmed, the worker records the message under
//! `(channel, provider message id)`: the job's id, key, recipient, metadata and current status,
//! kept for `receipts.correlation_ttl` (7 days by default: Meta retries webhooks that long).
//! A receipt is applied under a short per-message lock, so two replicas handling `delivered`
//! and `read` of one message at once cannot publish them out of order: read the record,
//! publish what the receipt adds (skipped statuses as `inferred`), then move the record on.
//! A crash between publishing and moving on re-publishes the same events (same `event_id`s)
//! when the receipt is redelivered: at least once, never backwards.

use std::time::Duration;

use redis::{AsyncCommands, Script};
use serde_json::{Map, Value};

use crate::outcome::Status;
use crate::store::{Keys, NOW_MS, Redis, StoreError, millis};

/// A sent message, as receipts find it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    /// The job that sent it.
    pub job_id: String,
    /// The job's idempotency key (event ids are derived from it).
    pub idempotency_key: String,
    /// Provider name, for outcomes.
    pub provider: String,
    /// Normalised recipient.
    pub to: String,
    /// The highest status published so far.
    pub status: Status,
    /// The attempt that sent it.
    pub attempt: u32,
    /// The job's metadata, echoed on receipt outcomes.
    pub metadata: Option<Map<String, Value>>,
    /// Channels given up on before this one (failover).
    pub channels_tried: Vec<String>,
}

/// The Redis side of tracking.
#[derive(Clone)]
pub struct Tracker {
    redis: Redis,
    keys: Keys,
    ttl: Duration,
    record: Script,
    unlock: Script,
    advance: Script,
    schedule: Script,
    due: Script,
}

/// Polls of one message at most: at `poll_after`, then at doubling intervals (63 ×
/// `poll_after` in all), after which a message with no final status is left to receipts.
pub const MAX_POLLS: u32 = 6;

// KEYS[1] record; ARGV: ttl_ms, then field/value pairs. A record that exists keeps its status
// (a re-published `sent` after a crash must not undo a `read` that came in meanwhile).
const RECORD: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"#;

// KEYS[1] lock; ARGV[1] owner token.
const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

// KEYS[1] record; ARGV: status, ttl_ms. Only ever moves forward (the lock makes this the
// common case; the check keeps a lock that expired mid-way from moving a status back).
const ADVANCE: &str = r#"
local rank = {queued = 0, sent = 1, delivered = 2, read = 3, failed = 4}
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return 0 end
if current == 'failed' then return 0 end
if ARGV[1] ~= 'failed' and rank[ARGV[1]] <= rank[current] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"#;

// KEYS[1] poll set; ARGV: id, after_ms. Redis' clock, like the dedupe leases.
const SCHEDULE: &str = r#"
redis.call('ZADD', KEYS[1], 'NX', now + tonumber(ARGV[2]), ARGV[1])
return 1
"#;

// KEYS[1] poll set; ARGV: limit, base_ms, max_polls, record key prefix. Claims the due ids:
// each is moved on to its next poll time before it is returned, so two workers never poll
// one message at once; messages whose record is gone or final leave the set.
const DUE: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, id in ipairs(ids) do
  local record = ARGV[4] .. id
  local status = redis.call('HGET', record, 'status')
  if (not status) or status == 'read' or status == 'failed' then
    redis.call('ZREM', KEYS[1], id)
  else
    local n = redis.call('HINCRBY', record, 'polls', 1)
    if n >= tonumber(ARGV[3]) then
      redis.call('ZREM', KEYS[1], id)
    else
      redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]) * (2 ^ n), id)
    end
    table.insert(out, id)
  end
end
return out
"#;

impl Tracker {
    /// A tracker on `redis` with keys under `prefix`, keeping records for `ttl`.
    pub fn new(redis: impl Into<Redis>, prefix: &str, ttl: Duration) -> Self {
        let redis = redis.into();
        Self {
            keys: Keys::new(prefix, &redis),
            redis,
            ttl,
            record: Script::new(RECORD),
            unlock: Script::new(UNLOCK),
            advance: Script::new(ADVANCE),
            schedule: Script::new(&format!("{NOW_MS}{SCHEDULE}")),
            due: Script::new(&format!("{NOW_MS}{DUE}")),
        }
    }

    /// The Redis key of a sent message's record.
    pub fn key(&self, channel: &str, provider_message_id: &str) -> String {
        format!(
            "{}:{provider_message_id}",
            self.keys.channel("msg", channel)
        )
    }

    fn poll_key(&self, channel: &str) -> String {
        self.keys.channel("poll", channel)
    }

    /// Poll a sent message's status `after` from now unless a final receipt comes first.
    pub async fn schedule_poll(
        &self,
        channel: &str,
        provider_message_id: &str,
        after: Duration,
    ) -> Result<(), StoreError> {
        let _: i64 = self
            .schedule
            .key(self.poll_key(channel))
            .arg(provider_message_id)
            .arg(millis(after))
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    /// Claim up to `limit` messages of `channel` whose poll is due (see [`MAX_POLLS`]).
    pub async fn due_polls(
        &self,
        channel: &str,
        limit: usize,
        poll_after: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let ids: Vec<String> = self
            .due
            .key(self.poll_key(channel))
            .arg(limit)
            .arg(millis(poll_after))
            .arg(MAX_POLLS)
            .arg(format!("{}:", self.keys.channel("msg", channel)))
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(ids)
    }

    fn lock_key(&self, channel: &str, provider_message_id: &str) -> String {
        format!(
            "{}:{provider_message_id}",
            self.keys.channel("msglock", channel)
        )
    }

    /// Remember a sent message so its receipts find the job. Idempotent.
    pub async fn record_sent(
        &self,
        channel: &str,
        provider_message_id: &str,
        tracked: &Tracked,
    ) -> Result<(), StoreError> {
        let metadata = match &tracked.metadata {
            Some(m) => serde_json::to_string(m).map_err(StoreError::protocol)?,
            None => String::new(),
        };
        let attempt = tracked.attempt.to_string();
        let tried = tracked.channels_tried.join(",");
        // Every byte here is kept `correlation_ttl` for every message: a field that says
        // nothing (no metadata, no failover, a key that is the job id) is left out.
        let fields = [
            ("job", tracked.job_id.as_str()),
            ("key", tracked.idempotency_key.as_str()),
            ("provider", tracked.provider.as_str()),
            ("to", tracked.to.as_str()),
            ("status", tracked.status.as_str()),
            ("attempt", attempt.as_str()),
            ("metadata", metadata.as_str()),
            ("tried", tried.as_str()),
        ];
        let mut invocation = self.record.key(self.key(channel, provider_message_id));
        invocation.arg(millis(self.ttl));
        for (name, value) in fields {
            let redundant = name == "key" && value == tracked.job_id;
            if !value.is_empty() && !redundant {
                invocation.arg(name).arg(value);
            }
        }
        let _: i64 = invocation.invoke_async(&mut self.redis.clone()).await?;
        Ok(())
    }

    /// The record of a message, if it is known.
    pub async fn get(
        &self,
        channel: &str,
        provider_message_id: &str,
    ) -> Result<Option<Tracked>, StoreError> {
        let fields: std::collections::HashMap<String, String> = self
            .redis
            .clone()
            .hgetall(self.key(channel, provider_message_id))
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let text = |name: &str| fields.get(name).cloned().unwrap_or_default();
        let status = match fields.get("status").map(String::as_str) {
            Some("sent") => Status::Sent,
            Some("delivered") => Status::Delivered,
            Some("read") => Status::Read,
            Some("failed") => Status::Failed,
            other => return Err(StoreError::Protocol(format!("tracked status {other:?}"))),
        };
        let metadata = match fields.get("metadata").filter(|m| !m.is_empty()) {
            Some(m) => Some(serde_json::from_str(m).map_err(StoreError::protocol)?),
            None => None,
        };
        Ok(Some(Tracked {
            job_id: text("job"),
            // Left out when it is the job id.
            idempotency_key: fields.get("key").cloned().unwrap_or_else(|| text("job")),
            provider: text("provider"),
            to: text("to"),
            status,
            attempt: text("attempt").parse().unwrap_or(0),
            metadata,
            channels_tried: text("tried")
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
        }))
    }

    /// Take the per-message lock for `lease`; false when someone else holds it.
    pub async fn lock(
        &self,
        channel: &str,
        provider_message_id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let taken: Option<String> = redis::cmd("SET")
            .arg(self.lock_key(channel, provider_message_id))
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(millis(lease))
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(taken.is_some())
    }

    /// Give the lock back (only if still ours).
    pub async fn unlock(
        &self,
        channel: &str,
        provider_message_id: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        let _: i64 = self
            .unlock
            .key(self.lock_key(channel, provider_message_id))
            .arg(owner)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    /// Move a record on to `status` once its outcomes are published (never backwards).
    pub async fn advance(
        &self,
        channel: &str,
        provider_message_id: &str,
        status: Status,
    ) -> Result<(), StoreError> {
        let _: i64 = self
            .advance
            .key(self.key(channel, provider_message_id))
            .arg(status.as_str())
            .arg(millis(self.ttl))
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }
}

/// The statuses a receipt reporting `reported` publishes for a message at `current`, in
/// order, each with whether it was only implied (`read` before `delivered` publishes
/// `delivered` as inferred first). Empty when the receipt adds nothing: a duplicate, or a
/// status that would go backwards.
pub fn transitions(current: Status, reported: Status) -> Vec<(Status, bool)> {
    if !current.can_advance_to(reported) {
        return Vec::new();
    }
    let mut out = Vec::new();
    if reported == Status::Read && current.can_advance_to(Status::Delivered) {
        out.push((Status::Delivered, true));
    }
    out.push((reported, false));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn receipts_publish_only_what_moves_forward() {
        assert_eq!(transitions(Sent, Delivered), vec![(Delivered, false)]);
        assert_eq!(
            transitions(Sent, Read),
            vec![(Delivered, true), (Read, false)]
        );
        assert_eq!(transitions(Delivered, Read), vec![(Read, false)]);
        assert_eq!(transitions(Sent, Failed), vec![(Failed, false)]);
        // Duplicates and late arrivals add nothing.
        assert!(transitions(Sent, Sent).is_empty());
        assert!(transitions(Delivered, Delivered).is_empty());
        assert!(transitions(Read, Delivered).is_empty());
        assert!(transitions(Read, Sent).is_empty());
        assert!(transitions(Failed, Read).is_empty());
        assert!(transitions(Failed, Failed).is_empty());
    }

    fn any_status() -> impl proptest::strategy::Strategy<Value = Status> {
        proptest::sample::select(vec![Queued, Sent, Delivered, Read, Failed])
    }

    /// Receipts as a gateway may send them: any of its four words, repeated, in any order.
    fn receipts() -> impl proptest::strategy::Strategy<Value = Vec<Status>> {
        proptest::collection::vec(
            proptest::sample::select(vec![Sent, Delivered, Read, Failed]),
            0..12,
        )
    }

    /// Apply `reported` in order to a message at `start` the way the receipt consumer does:
    /// publish what `transitions` returns, then move on to the last status published.
    fn publish_all(start: Status, reported: &[Status]) -> (Vec<(Status, bool)>, Status) {
        let mut current = start;
        let mut published = Vec::new();
        for &status in reported {
            let out = transitions(current, status);
            if let Some(&(last, _)) = out.last() {
                current = last;
            }
            published.extend(out);
        }
        (published, current)
    }

    /// Where a message ends: `failed` once any receipt said so, else the highest status seen.
    fn highest(start: Status, reported: &[Status]) -> Status {
        if reported.contains(&Failed) {
            return Failed;
        }
        reported
            .iter()
            .copied()
            .fold(start, |a, b| if a.can_advance_to(b) { b } else { a })
    }

    proptest::proptest! {
        /// Any receipts, in any order, with duplicates: what is published moves strictly
        /// forward (so never repeats a status), ends at the highest status reached, publishes
        /// only reported statuses except an inferred `delivered`, and infers only a `delivered`
        /// that was skipped (immediately followed by `read`, never after a real one).
        #[test]
        fn any_receipt_sequence_publishes_a_monotone_sequence(
            start in proptest::sample::select(vec![Queued, Sent]),
            reported in receipts(),
        ) {
            let (published, end) = publish_all(start, &reported);
            let mut previous = start;
            for (i, &(status, inferred)) in published.iter().enumerate() {
                proptest::prop_assert!(previous.can_advance_to(status), "{published:?} from {start:?}");
                if inferred {
                    proptest::prop_assert_eq!(status, Delivered);
                    proptest::prop_assert_eq!(published.get(i + 1), Some(&(Read, false)));
                } else {
                    proptest::prop_assert!(reported.contains(&status));
                }
                previous = status;
            }
            let statuses: Vec<Status> = published.iter().map(|p| p.0).collect();
            let mut unique = statuses.clone();
            unique.dedup();
            proptest::prop_assert_eq!(&unique, &statuses);
            proptest::prop_assert_eq!(end, highest(start, &reported));
            proptest::prop_assert_eq!(statuses.last().copied().unwrap_or(start), end);
            if reported.contains(&Delivered) {
                let first_delivered = reported.iter().position(|&s| s == Delivered);
                let first_read = reported.iter().position(|&s| s == Read);
                if first_delivered < first_read {
                    proptest::prop_assert!(published.iter().all(|p| !p.1));
                }
            }
        }

        /// The order receipts arrive in changes what is published on the way, never where a
        /// message ends.
        #[test]
        fn the_end_state_does_not_depend_on_arrival_order(
            start in proptest::sample::select(vec![Queued, Sent]),
            reported in receipts(),
            seed in proptest::prelude::any::<u64>(),
        ) {
            use rand::{SeedableRng, seq::SliceRandom};
            let mut shuffled = reported.clone();
            shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            proptest::prop_assert_eq!(publish_all(start, &reported).1, publish_all(start, &shuffled).1);
        }

        /// A status already reached, reported again, publishes nothing.
        #[test]
        fn a_repeated_receipt_adds_nothing(start in any_status(), reported in receipts()) {
            let (_, end) = publish_all(start, &reported);
            proptest::prop_assert!(transitions(end, end).is_empty());
        }
    }
}
