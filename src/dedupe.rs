//! Deduplication (SPEC §4): one Redis hash per (channel, idempotency key).
//!
//! ```text
//!            claim                       complete(sent|failed)
//!  (none) ───────────▶ in_flight(lease) ─────────────────────▶ sent | failed   (TTL = window)
//!                        │    ▲
//!      lease expired, or │    │ the same job resumes it (crash, redelivery)
//!      redelivered job   └────┘
//!
//!  (none) | in_flight(lease released) ──cancel──▶ cancelled   (TTL = window)
//! ```
//!
//! A cancel ends a key that no gateway call holds: an absent one (the job has not arrived),
//! or one whose job waits in a delay queue having given its lease up. A live lease means a
//! call may be running, and the call wins. The job meets `cancelled` at its next claim.
//!
//! Each transition is one Lua script, so two workers racing for a key see one winner. The
//! lease bounds how long a crashed worker's claim blocks the job; `ambiguous` remembers
//! whether the last attempt may have reached the gateway, which decides what a resumed
//! job may do on a gateway without idempotency.

use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::{Script, Value};

use crate::outcome::{OutcomeError, Status};
use crate::ratelimit::{Booking, Permit};
use crate::store::{Keys, NOW_MS, Redis, StoreError, millis};

/// A (channel, key) entry's terminal record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `sent` or `failed`.
    pub status: Status,
    /// The job that holds the key.
    pub job_id: String,
    /// The gateway's message id, when sent.
    pub provider_message_id: Option<String>,
    /// The error, when failed.
    pub error: Option<OutcomeError>,
    /// The attempt that ended it.
    pub attempt: u32,
    /// It was sent as the job's `fallback` template (SPEC §10), so a re-published `sent` says so.
    pub fallback: bool,
}

/// What [`Dedupe::claim_and_book`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The key was free: this worker owns it now; nothing was ever sent for it.
    Acquired,
    /// This job's own earlier claim was taken over (crash or redelivery). `ambiguous` says
    /// whether that earlier attempt may have reached the gateway.
    Resumed {
        /// The earlier attempt may have been sent.
        ambiguous: bool,
        /// Attempts already begun under earlier claims.
        previous_attempts: u32,
    },
    /// Another holder's lease is live.
    Busy {
        /// The job holding the key.
        job_id: String,
        /// Time left on its lease.
        lease_left: Duration,
    },
    /// The key already has a terminal record.
    Done(Record),
    /// An operator or producer cancelled the job before it was sent: end it, send nothing.
    Cancelled {
        /// Why, as the cancel said (empty when it gave no reason).
        reason: String,
        /// Attempts begun before the cancel (a job cancelled while parked for a retry).
        attempts: u32,
    },
}

/// What a cancel found, and did (SPEC: "Cancelling a job").
#[derive(Debug, Clone, PartialEq)]
pub enum CancelAnswer {
    /// The job had not been sent: it is cancelled now, and ends `failed` / `cancelled` when
    /// it next reaches a worker (or on arrival, if it has not been published yet).
    Cancelled {
        /// An earlier attempt of the job (parked for a retry) may have reached the gateway.
        maybe_sent: bool,
    },
    /// An earlier cancel got there first; nothing changed.
    AlreadyCancelled {
        /// When that cancel was applied.
        at: Option<DateTime<Utc>>,
    },
    /// Too late: the job was sent.
    Sent {
        /// When it was recorded as sent (unknown for records older than this field).
        at: Option<DateTime<Utc>>,
        /// The gateway's message id.
        provider_message_id: Option<String>,
    },
    /// Too late: the job already ended `failed`.
    Failed {
        /// When it was recorded as failed.
        at: Option<DateTime<Utc>>,
        /// Its error class.
        class: Option<crate::retry::ErrorClass>,
    },
    /// Too late: a gateway call for the job is running (its lease is live); the call wins.
    InFlight {
        /// The job holding the key.
        job_id: String,
    },
}

impl CancelAnswer {
    /// Whether the job is (now or already) cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled { .. } | Self::AlreadyCancelled { .. })
    }

    /// A word for logs and metrics labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Cancelled { .. } => "cancelled",
            Self::AlreadyCancelled { .. } => "already_cancelled",
            Self::Sent { .. } => "too_late_sent",
            Self::Failed { .. } => "too_late_failed",
            Self::InFlight { .. } => "too_late_in_flight",
        }
    }
}

impl std::fmt::Display for CancelAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let when = |at: &Option<DateTime<Utc>>| {
            at.map_or_else(|| "an unknown time".to_string(), crate::outcome::timestamp)
        };
        match self {
            Self::Cancelled { maybe_sent: false } => write!(f, "cancelled before sending"),
            Self::Cancelled { maybe_sent: true } => write!(
                f,
                "cancelled before sending again (an earlier attempt may have reached the gateway)"
            ),
            Self::AlreadyCancelled { at } => write!(f, "already cancelled at {}", when(at)),
            Self::Sent {
                at,
                provider_message_id,
            } => write!(
                f,
                "too late: sent at {}, provider id {}",
                when(at),
                provider_message_id.as_deref().unwrap_or("unknown")
            ),
            Self::Failed { at, class } => write!(
                f,
                "too late: failed at {} ({})",
                when(at),
                class.map_or("unknown", |c| c.as_str())
            ),
            Self::InFlight { .. } => write!(f, "too late: a gateway call is in flight"),
        }
    }
}

/// What [`Dedupe::claim_and_book`] needs to know.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    /// The channel sending the job.
    pub channel: &'a str,
    /// The job's idempotency key.
    pub idempotency_key: &'a str,
    /// The job's id: a claim held under the same id is the job's own (a crash, a retry).
    pub job_id: &'a str,
    /// This attempt's unique owner token.
    pub owner: &'a str,
    /// How long the claim protects the job.
    pub lease: Duration,
    /// The channel's dedupe window.
    pub window: Duration,
    /// Resume the job's own claim before its lease ends (safe only where the gateway
    /// deduplicates by key, and only for a copy that cannot run concurrently with the first).
    pub take_over_live: bool,
    /// Start over from the job's own `failed` record (a replay from the dead-letter queue).
    pub restart_failed: bool,
}

/// The dedupe store.
#[derive(Clone)]
pub struct Dedupe {
    redis: Redis,
    keys: Keys,
    claim_and_book: Script,
    complete: Script,
    renew: Script,
    release: Script,
    cancel: Script,
}

// KEYS[1] entry; ARGV: job_id, owner, lease_ms, in_flight_ttl_ms, take_over_live ('1'/'0'),
// restart_failed ('1'/'0': a replayed job may start over from its own `failed` record)
const CLAIM: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'failed' and ARGV[6] == '1' and redis.call('HGET', KEYS[1], 'job') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  state = nil
end
if not state then
  redis.call('HSET', KEYS[1], 'state', 'in_flight', 'job', ARGV[1], 'owner', ARGV[2],
    'lease_until', now + tonumber(ARGV[3]), 'attempts', 0, 'ambiguous', 0, 'claim', 'acquired:0:0')
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {'acquired'}
end
if state == 'in_flight' then
  local job = redis.call('HGET', KEYS[1], 'job')
  local lease_until = tonumber(redis.call('HGET', KEYS[1], 'lease_until')) or 0
  if job == ARGV[1] and redis.call('HGET', KEYS[1], 'owner') == ARGV[2] then
    -- This attempt's own claim, asked again because its reply was lost (a timeout after the
    -- script ran): the answer it had, not 'busy' for its own lease. More attempts than the
    -- claim found means claim_and_book began one then, its slot being free (`begun`).
    redis.call('HSET', KEYS[1], 'lease_until', now + tonumber(ARGV[3]))
    local _, _, kind, amb, attempts = string.find(redis.call('HGET', KEYS[1], 'claim') or '',
      '^(%a+):(%d):(%d+)$')
    local begun = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') > tonumber(attempts or '0')
    if kind == 'resumed' then return {'resumed', amb, attempts}, begun end
    return {'acquired'}, begun
  end
  if job == ARGV[1] and (lease_until <= now or ARGV[5] == '1') then
    local amb = redis.call('HGET', KEYS[1], 'ambiguous') or '0'
    local attempts = redis.call('HGET', KEYS[1], 'attempts') or '0'
    redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'lease_until', now + tonumber(ARGV[3]),
      'claim', 'resumed:' .. amb .. ':' .. attempts)
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
    return {'resumed', amb, attempts}
  end
  return {'busy', job, tostring(math.max(lease_until - now, 0))}
end
if state == 'cancelled' then
  return {'cancelled', redis.call('HGET', KEYS[1], 'reason') or '',
    redis.call('HGET', KEYS[1], 'attempts') or '0'}
end
return {'done', state, redis.call('HGET', KEYS[1], 'job') or '',
  redis.call('HGET', KEYS[1], 'pmid') or '', redis.call('HGET', KEYS[1], 'error') or '',
  redis.call('HGET', KEYS[1], 'attempt') or '0', redis.call('HGET', KEYS[1], 'fallback') or ''}
"#;

// KEYS[1]; ARGV: job_id, status, pmid, error_json, attempt, window_ms, fallback ('1' or '0').
// A terminal record is written once; a late writer gets the existing one back. A `cancelled`
// record found here was written while this job's call ran past its lease: the call happened,
// so its result replaces the cancel (the call wins, as it does against a live lease).
const COMPLETE: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if state and state ~= 'in_flight' and state ~= 'cancelled' then
  return {'done', state, redis.call('HGET', KEYS[1], 'job') or '',
    redis.call('HGET', KEYS[1], 'pmid') or '', redis.call('HGET', KEYS[1], 'error') or '',
    redis.call('HGET', KEYS[1], 'attempt') or '0', redis.call('HGET', KEYS[1], 'fallback') or ''}
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'job', ARGV[1], 'pmid', ARGV[3], 'error', ARGV[4], 'attempt', ARGV[5], 'at', now)
if ARGV[7] == '1' then redis.call('HSET', KEYS[1], 'fallback', 1) end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return {'ok'}
"#;

// KEYS[1]; ARGV: job_id ('' when only the key is known), reason, window_ms.
// Cancels a key no gateway call holds: absent (the job has not arrived: the record waits for
// it), or `in_flight` with its lease given up or run out (the job waits in a delay queue).
// A live lease, `sent` or `failed` is too late; the reply says which, for the answer.
const CANCEL: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'cancelled' then
  return {'already', redis.call('HGET', KEYS[1], 'at') or ''}
end
local ambiguous, attempts, job = '0', '0', ARGV[1]
if state == 'in_flight' then
  local lease_until = tonumber(redis.call('HGET', KEYS[1], 'lease_until')) or 0
  if lease_until > now then
    return {'in_flight', redis.call('HGET', KEYS[1], 'job') or ''}
  end
  ambiguous = redis.call('HGET', KEYS[1], 'ambiguous') or '0'
  attempts = redis.call('HGET', KEYS[1], 'attempts') or '0'
  job = redis.call('HGET', KEYS[1], 'job') or job
elseif state then
  return {'done', state, redis.call('HGET', KEYS[1], 'at') or '',
    redis.call('HGET', KEYS[1], 'pmid') or '', redis.call('HGET', KEYS[1], 'error') or ''}
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'job', job, 'reason', ARGV[2], 'at', now,
  'ambiguous', ambiguous, 'attempts', attempts)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'cancelled', ambiguous}
"#;

// KEYS[1]; ARGV: owner, lease_ms. Marks an attempt as begun (possibly reaching the gateway).
const RENEW: &str = r#"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'lease_until', now + tonumber(ARGV[2]), 'ambiguous', 1)
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
return 1
"#;

// KEYS[1]; ARGV: owner, ambiguous. Gives the lease up so a redelivery need not wait for it.
const RELEASE: &str = r#"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'lease_until', 0, 'ambiguous', ARGV[2])
return 1
"#;

// `claim` and the rate limiter's GCRA in one script, so a job's admission is one round trip:
// KEYS[1] entry, KEYS[2..3] the GCRA's; ARGV[1..6] CLAIM's, ARGV[7..10] the GCRA's, ARGV[11]
// begin ('1'/'0'). A slot is booked only for a job that may go ahead (acquired or resumed):
// duplicates book nothing. With begin, a job whose slot is free now also has its first
// attempt marked begun — RENEW's bookkeeping; the claim has just set the lease.
fn claim_and_book_script() -> String {
    format!(
        "{NOW_MS}local function claim(KEYS, ARGV)\n{CLAIM}\nend\n\
         local function book(KEYS, ARGV)\n{gcra}\nend\n\
         local c, begun = claim({{KEYS[1]}}, {{ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]}})\n\
         if c[1] ~= 'acquired' and c[1] ~= 'resumed' then return {{c}} end\n\
         if begun then return {{c, 0}} end\n\
         local wait = book({{KEYS[2], KEYS[3]}}, {{ARGV[7], ARGV[8], ARGV[9], ARGV[10]}})\n\
         if wait == 0 and ARGV[11] == '1' then\n\
           redis.call('HSET', KEYS[1], 'ambiguous', 1)\n\
           redis.call('HINCRBY', KEYS[1], 'attempts', 1)\n\
         end\n\
         return {{c, wait}}\n",
        gcra = crate::ratelimit::gcra_script(),
    )
}

impl Dedupe {
    /// A store on `redis` with keys under `prefix`.
    pub fn new(redis: impl Into<Redis>, prefix: &str) -> Self {
        let script = |body: &str| Script::new(&format!("{NOW_MS}{body}"));
        let redis = redis.into();
        Self {
            keys: Keys::new(prefix, &redis),
            redis,
            claim_and_book: Script::new(&claim_and_book_script()),
            complete: script(COMPLETE),
            renew: script(RENEW),
            release: script(RELEASE),
            cancel: script(CANCEL),
        }
    }

    /// The Redis key of a (channel, idempotency key) entry.
    pub fn key(&self, channel: &str, idempotency_key: &str) -> String {
        format!("{}:{idempotency_key}", self.keys.channel("dedupe", channel))
    }

    /// Try to take the key for a job and, when it may go ahead, book its rate-limit slot in the
    /// same round trip (`Some(permit)`; `None` for `Busy` and `Done`). With `begin`, a permit of
    /// [`Permit::Now`] also means the first attempt is marked begun, as
    /// [`Dedupe::begin_attempt`] would: the caller goes straight to the gateway.
    pub async fn claim_and_book(
        &self,
        request: &ClaimRequest<'_>,
        booking: &Booking,
        begin: bool,
    ) -> Result<(Claim, Option<Permit>), StoreError> {
        let ttl = request.window.max(request.lease * 2);
        let flag = |b: bool| if b { "1" } else { "0" };
        let mut invocation = self.claim_and_book.prepare_invoke();
        invocation.key(self.key(request.channel, request.idempotency_key));
        for key in &booking.keys {
            invocation.key(key);
        }
        invocation
            .arg(request.job_id)
            .arg(request.owner)
            .arg(millis(request.lease))
            .arg(millis(ttl))
            .arg(flag(request.take_over_live))
            .arg(flag(request.restart_failed));
        for arg in booking.args {
            invocation.arg(arg);
        }
        invocation.arg(flag(begin));
        let reply: Vec<Value> = invocation.invoke_async(&mut self.redis.clone()).await?;
        let claim: Vec<String> = match reply.first() {
            Some(first) => redis::FromRedisValue::from_redis_value(first.clone())
                .map_err(StoreError::protocol)?,
            None => return Err(StoreError::Protocol("empty claim_and_book reply".into())),
        };
        let permit = match reply.get(1) {
            Some(wait) => Some(crate::ratelimit::permit(
                redis::FromRedisValue::from_redis_value(wait.clone())
                    .map_err(StoreError::protocol)?,
            )),
            None => None,
        };
        Ok((claim_from(&claim)?, permit))
    }

    /// Note that an attempt is starting: extends the lease and marks the entry ambiguous.
    /// Returns false when another owner took the entry over.
    pub async fn begin_attempt(
        &self,
        channel: &str,
        idempotency_key: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let n: i64 = self
            .renew
            .key(self.key(channel, idempotency_key))
            .arg(owner)
            .arg(millis(lease))
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(n == 1)
    }

    /// Give the lease up early (shutdown, lost broker channel). `ambiguous` says whether
    /// the last attempt may have reached the gateway.
    pub async fn release(
        &self,
        channel: &str,
        idempotency_key: &str,
        owner: &str,
        ambiguous: bool,
    ) -> Result<(), StoreError> {
        let _: i64 = self
            .release
            .key(self.key(channel, idempotency_key))
            .arg(owner)
            .arg(if ambiguous { "1" } else { "0" })
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    /// Record the terminal status. Returns the record already there if another worker
    /// finished first (the caller publishes that one instead).
    pub async fn complete(
        &self,
        channel: &str,
        idempotency_key: &str,
        record: &Record,
        window: Duration,
    ) -> Result<Option<Record>, StoreError> {
        let error = match &record.error {
            Some(e) => serde_json::to_string(e).map_err(StoreError::protocol)?,
            None => String::new(),
        };
        let reply: Vec<String> = self
            .complete
            .key(self.key(channel, idempotency_key))
            .arg(&record.job_id)
            .arg(record.status.as_str())
            .arg(record.provider_message_id.as_deref().unwrap_or(""))
            .arg(error)
            .arg(record.attempt)
            .arg(millis(window))
            .arg(if record.fallback { "1" } else { "0" })
            .invoke_async(&mut self.redis.clone())
            .await?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(None),
            Some("done") => Ok(Some(record_from(&reply[1..])?)),
            _ => Err(StoreError::Protocol(format!("{reply:?}"))),
        }
    }

    /// Cancel the job holding (or about to hold) a key, unless a gateway call holds it or it
    /// has ended; the record lasts `window`. `job_id` names the job when the caller knows it.
    pub async fn cancel(
        &self,
        channel: &str,
        idempotency_key: &str,
        job_id: Option<&str>,
        reason: &str,
        window: Duration,
    ) -> Result<CancelAnswer, StoreError> {
        let reply: Vec<String> = self
            .cancel
            .key(self.key(channel, idempotency_key))
            .arg(job_id.unwrap_or(""))
            .arg(reason)
            .arg(millis(window))
            .invoke_async(&mut self.redis.clone())
            .await?;
        cancel_answer_from(&reply)
    }

    /// The cancel's reason when the key's record says `cancelled` (a scheduled job checks
    /// before it parks), else `None`.
    pub async fn cancelled(
        &self,
        channel: &str,
        idempotency_key: &str,
    ) -> Result<Option<String>, StoreError> {
        let (state, reason): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.key(channel, idempotency_key))
            .arg("state")
            .arg("reason")
            .query_async(&mut self.redis.clone())
            .await?;
        Ok((state.as_deref() == Some("cancelled")).then(|| reason.unwrap_or_default()))
    }

    /// Ping Redis (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: Value = redis::cmd("PING")
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }
}

/// Decode a CLAIM script reply.
fn claim_from(reply: &[String]) -> Result<Claim, StoreError> {
    match reply.first().map(String::as_str) {
        Some("acquired") => Ok(Claim::Acquired),
        Some("resumed") => Ok(Claim::Resumed {
            ambiguous: reply.get(1).is_some_and(|a| a == "1"),
            previous_attempts: number(reply.get(2)),
        }),
        Some("busy") => Ok(Claim::Busy {
            job_id: reply.get(1).cloned().unwrap_or_default(),
            lease_left: Duration::from_millis(number(reply.get(2)).into()),
        }),
        Some("done") => Ok(Claim::Done(record_from(&reply[1..])?)),
        Some("cancelled") => Ok(Claim::Cancelled {
            reason: reply.get(1).cloned().unwrap_or_default(),
            attempts: number(reply.get(2)),
        }),
        _ => Err(StoreError::Protocol(format!("{reply:?}"))),
    }
}

/// Decode a CANCEL script reply.
fn cancel_answer_from(reply: &[String]) -> Result<CancelAnswer, StoreError> {
    let at = |i: usize| {
        reply
            .get(i)
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(DateTime::<Utc>::from_timestamp_millis)
    };
    match reply.first().map(String::as_str) {
        Some("cancelled") => Ok(CancelAnswer::Cancelled {
            maybe_sent: reply.get(1).is_some_and(|a| a == "1"),
        }),
        Some("already") => Ok(CancelAnswer::AlreadyCancelled { at: at(1) }),
        Some("in_flight") => Ok(CancelAnswer::InFlight {
            job_id: reply.get(1).cloned().unwrap_or_default(),
        }),
        Some("done") if reply.get(1).is_some_and(|s| s == "sent") => Ok(CancelAnswer::Sent {
            at: at(2),
            provider_message_id: reply.get(3).filter(|p| !p.is_empty()).cloned(),
        }),
        Some("done") => Ok(CancelAnswer::Failed {
            at: at(2),
            class: reply
                .get(4)
                .and_then(|e| serde_json::from_str::<OutcomeError>(e).ok())
                .map(|e| e.class),
        }),
        _ => Err(StoreError::Protocol(format!("{reply:?}"))),
    }
}

fn number(s: Option<&String>) -> u32 {
    s.and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Decode `[state, job, pmid, error_json, attempt]`.
fn record_from(fields: &[String]) -> Result<Record, StoreError> {
    let (state, job, pmid, error, attempt, fallback) = match fields {
        [state, job, pmid, error, attempt, fallback] => {
            (state, job, pmid, error, attempt, fallback == "1")
        }
        _ => return Err(StoreError::Protocol(format!("{fields:?}"))),
    };
    let status = match state.as_str() {
        "sent" => Status::Sent,
        "failed" => Status::Failed,
        other => return Err(StoreError::Protocol(format!("state {other}"))),
    };
    let error = if error.is_empty() {
        None
    } else {
        Some(serde_json::from_str(error).map_err(StoreError::protocol)?)
    };
    Ok(Record {
        status,
        job_id: job.clone(),
        provider_message_id: (!pmid.is_empty()).then(|| pmid.clone()),
        error,
        attempt: attempt.parse().unwrap_or(0),
        fallback,
    })
}
