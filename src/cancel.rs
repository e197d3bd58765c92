//! Cancelling a job before it is sent: the cancel message (its wire format and strict
//! parsing), and the [`Canceller`] that operators (`mensajero cancel`) and Rust callers use to
//! apply a cancel and hear at once what it found.
//!
//! Both ways in end in the one `CANCEL` script of [`crate::dedupe`]: the worker applies cancel
//! messages that producers publish on the jobs exchange (routing key `cancel`); the
//! [`Canceller`] applies its own directly against Redis, because only Redis can say whether
//! the job was sent, is being sent, or was stopped in time. A cancelled job ends `failed` /
//! `cancelled` when it next reaches a worker.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::dedupe::{CancelAnswer, Dedupe};
use crate::store::StoreError;

/// Routing key of cancel messages on the jobs exchange.
pub const CANCEL_KEY: &str = "cancel";

/// Longest `reason`, in characters: it travels in the job's outcome and in logs.
pub const MAX_REASON_CHARS: usize = 500;
// The same bounds as a job's own `id` and `idempotency_key` (crate::job): a cancel can only
// name keys a job could have.
const MAX_ID_CHARS: usize = 128;
const MAX_KEY_CHARS: usize = 256;
// A cancel is a few hundred bytes; anything much larger is not one.
const MAX_CANCEL_BYTES: usize = 4 * 1024;

/// Which job a cancel names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The job's `idempotency_key`.
    Key(String),
    /// The job's `id`, for a job that had no key of its own (its id is its key).
    Id(String),
}

impl Target {
    /// The dedupe key the job holds.
    pub fn idempotency_key(&self) -> &str {
        match self {
            Self::Key(key) | Self::Id(key) => key,
        }
    }

    /// The job's id, when the cancel names it.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            Self::Key(_) => None,
            Self::Id(id) => Some(id),
        }
    }
}

/// One cancel: which job, on which channel, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    /// The channel the job was published for.
    pub channel: String,
    /// The job.
    pub target: Target,
    /// Why, for the job's outcome (optional).
    pub reason: Option<String>,
}

/// Why a cancel message was refused (it is dead-lettered with reason `invalid_cancel`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CancelRejection(pub String);

/// Why a cancel could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// The request itself is wrong.
    #[error("invalid cancel: {0}")]
    Invalid(#[from] CancelRejection),
    /// The channel is not configured (its window is unknown).
    #[error("channel `{0}` is not configured")]
    UnknownChannel(String),
    /// Redis did not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    cancel: WireBody,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBody {
    channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl CancelRequest {
    /// A request, checked as a cancel message would be.
    pub fn new(
        channel: impl Into<String>,
        target: Target,
        reason: Option<String>,
    ) -> Result<Self, CancelRejection> {
        let request = Self {
            channel: channel.into(),
            target,
            reason,
        };
        request.check()?;
        Ok(request)
    }

    /// The message body producers publish (`{"cancel": {...}}`).
    pub fn to_json(&self) -> Vec<u8> {
        let (idempotency_key, id) = match &self.target {
            Target::Key(key) => (Some(key.clone()), None),
            Target::Id(id) => (None, Some(id.clone())),
        };
        let wire = Wire {
            cancel: WireBody {
                channel: self.channel.clone(),
                idempotency_key,
                id,
                reason: self.reason.clone(),
            },
        };
        // A struct of strings always serialises.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    fn check(&self) -> Result<(), CancelRejection> {
        let reject = |m: String| Err(CancelRejection(m));
        let channel_ok = !self.channel.is_empty()
            && self.channel.len() <= 64
            && self
                .channel
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !channel_ok {
            return reject("cancel.channel: must be 1–64 characters of [A-Za-z0-9_-]".into());
        }
        let (field, value, max) = match &self.target {
            Target::Key(key) => ("idempotency_key", key, MAX_KEY_CHARS),
            Target::Id(id) => ("id", id, MAX_ID_CHARS),
        };
        if value.is_empty()
            || value.len() > max
            || !value.bytes().all(|b| (b' '..=b'~').contains(&b))
        {
            return reject(format!(
                "cancel.{field}: must be 1–{max} printable ASCII characters"
            ));
        }
        if let Some(reason) = &self.reason {
            if reason.chars().count() > MAX_REASON_CHARS {
                return reject(format!(
                    "cancel.reason: at most {MAX_REASON_CHARS} characters"
                ));
            }
            if reason.chars().any(char::is_control) {
                return reject("cancel.reason: must not contain control characters".into());
            }
        }
        Ok(())
    }
}

/// Parse a cancel message strictly: unknown fields are refused, and exactly one of
/// `idempotency_key` and `id` names the job.
pub fn parse(body: &[u8]) -> Result<CancelRequest, CancelRejection> {
    if body.len() > MAX_CANCEL_BYTES {
        return Err(CancelRejection(format!(
            "body is {} bytes; a cancel is at most {MAX_CANCEL_BYTES}",
            body.len()
        )));
    }
    let wire: Wire = serde_json::from_slice(body)
        .map_err(|e| CancelRejection(format!("not a cancel message: {e}")))?;
    let body = wire.cancel;
    let target = match (body.idempotency_key, body.id) {
        (Some(key), None) => Target::Key(key),
        (None, Some(id)) => Target::Id(id),
        _ => {
            return Err(CancelRejection(
                "cancel: give exactly one of `idempotency_key` and `id`".into(),
            ));
        }
    };
    CancelRequest::new(body.channel, target, body.reason)
}

/// Apply `request` through the `CANCEL` script, with the channel's dedupe `window`.
pub async fn apply(
    dedupe: &Dedupe,
    request: &CancelRequest,
    window: Duration,
) -> Result<CancelAnswer, StoreError> {
    dedupe
        .cancel(
            &request.channel,
            request.target.idempotency_key(),
            request.target.job_id(),
            request.reason.as_deref().unwrap_or(""),
            window,
        )
        .await
}

/// Cancels jobs against Redis and answers what it found: the way in for operators and Rust
/// callers (producers in other languages publish a cancel message instead).
#[derive(Clone)]
pub struct Canceller {
    dedupe: Dedupe,
    /// Each configured channel's dedupe window: a cancel record lasts as long.
    windows: HashMap<String, Duration>,
}

impl Canceller {
    /// A canceller on the configuration's Redis (server, Sentinels or cluster; key prefix)
    /// and channels.
    pub async fn connect(config: &Config) -> Result<Self, StoreError> {
        let redis = crate::store::Redis::connect(&config.redis.target()).await?;
        Ok(Self::new(Dedupe::new(redis, &config.redis.prefix), config))
    }

    /// A canceller on an existing dedupe store.
    pub fn new(dedupe: Dedupe, config: &Config) -> Self {
        let windows = config
            .channels
            .iter()
            .map(|(name, channel)| (name.clone(), channel.dedupe_window))
            .collect();
        Self { dedupe, windows }
    }

    /// Cancel the job `target` names on `channel`, unless it is being sent or has ended.
    pub async fn cancel(
        &self,
        channel: &str,
        target: Target,
        reason: Option<String>,
    ) -> Result<CancelAnswer, CancelError> {
        let request = CancelRequest::new(channel, target, reason)?;
        let window = *self
            .windows
            .get(channel)
            .ok_or_else(|| CancelError::UnknownChannel(channel.to_string()))?;
        Ok(apply(&self.dedupe, &request, window).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_cancel_by_key_and_by_id() {
        let by_key = parse(
            br#"{"cancel": {"channel": "main", "idempotency_key": "order-1", "reason": "order cancelled"}}"#,
        )
        .unwrap();
        assert_eq!(by_key.target, Target::Key("order-1".into()));
        assert_eq!(by_key.reason.as_deref(), Some("order cancelled"));
        let by_id = parse(br#"{"cancel": {"channel": "main", "id": "job-1"}}"#).unwrap();
        assert_eq!(by_id.target, Target::Id("job-1".into()));
        assert_eq!(parse(&by_id.to_json()).unwrap(), by_id);
        assert_eq!(parse(&by_key.to_json()).unwrap(), by_key);
    }

    #[test]
    fn refuses_malformed_cancels() {
        let long_reason = format!(
            r#"{{"cancel": {{"channel": "main", "id": "j", "reason": "{}"}}}}"#,
            "x".repeat(MAX_REASON_CHARS + 1)
        );
        let rows: [(&[u8], &str); 7] = [
            (b"not json", "not a cancel message"),
            (br#"{"cancel": {"channel": "main"}}"#, "exactly one"),
            (
                br#"{"cancel": {"channel": "main", "id": "a", "idempotency_key": "b"}}"#,
                "exactly one",
            ),
            (
                br#"{"cancel": {"channel": "main", "id": "a", "extra": 1}}"#,
                "unknown field",
            ),
            (
                br#"{"cancel": {"channel": "ma in", "id": "a"}}"#,
                "cancel.channel",
            ),
            (br#"{"cancel": {"channel": "main", "id": ""}}"#, "cancel.id"),
            (long_reason.as_bytes(), "cancel.reason"),
        ];
        for (body, want) in rows {
            let err = parse(body).unwrap_err();
            assert!(
                err.0.contains(want),
                "{}: {err}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
