//! Outcome events (SPEC §3): what the worker tells the world about a job.
//!
//! Every status transition becomes one [`Outcome`], published to the outcomes exchange with
//! routing key `<status>.<channel>`. `event_id` is derived from the job and the status, so
//! an event re-published after a crash carries the same id and consumers can deduplicate.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::retry::{ErrorClass, Failure};

/// A job's position in its life cycle; the order of the variants is the order of SPEC §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted by a worker: valid, not a duplicate, durable from here.
    Queued,
    /// The gateway accepted it and gave a provider message id.
    Sent,
    /// The gateway reports it reached the phone.
    Delivered,
    /// The recipient opened it.
    Read,
    /// Terminal: it will not be (or was not) delivered.
    Failed,
}

impl Status {
    /// The lowercase name used in outcomes and routing keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
        }
    }

    /// Whether a job in status `self` may move on to `next` (statuses never go backwards;
    /// `failed` may follow anything but itself, and nothing follows `failed`).
    pub fn can_advance_to(self, next: Status) -> bool {
        match (self, next) {
            (Self::Failed, _) => false,
            (_, Self::Failed) => true,
            (from, to) => rank(to) > rank(from),
        }
    }
}

fn rank(status: Status) -> u8 {
    match status {
        Status::Queued => 0,
        Status::Sent => 1,
        Status::Delivered => 2,
        Status::Read => 3,
        Status::Failed => 4,
    }
}

/// Whether an outcome reports a status transition or a refused duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A status transition of the job itself.
    Status,
    /// The job repeated an idempotency key already taken inside the channel's window.
    Duplicate,
}

/// The error object carried by `failed` outcomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeError {
    /// SPEC §7 class.
    pub class: ErrorClass,
    /// Stable machine-readable code.
    pub code: String,
    /// Human-readable detail, free of secrets.
    pub message: String,
    /// The gateway's own code, when there was one.
    pub provider_code: Option<String>,
    /// Attempts made before giving up.
    pub attempts: u32,
}

impl OutcomeError {
    /// The outcome form of a failure after `attempts` attempts.
    pub fn from_failure(failure: &Failure, attempts: u32) -> Self {
        Self {
            class: failure.class,
            code: failure.code.clone(),
            message: failure.message.clone(),
            provider_code: failure.provider_code.clone(),
            attempts,
        }
    }
}

/// One event on the outcomes exchange (SPEC §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Stable per (job, status): consumers deduplicate on it.
    pub event_id: String,
    /// `status` or `duplicate`.
    pub event: EventKind,
    /// The job's id, echoed.
    pub job_id: String,
    /// The key deduplication used (the job id when the job gave none).
    pub idempotency_key: String,
    /// The channel the job named (or `unknown` when it named none readable).
    pub channel: String,
    /// The provider behind the channel, when the channel is known.
    pub provider: Option<String>,
    /// Normalised recipient, when readable.
    pub to: Option<String>,
    /// The status reached (for `duplicate` events: the original's current status).
    pub status: Status,
    /// The status before this one, when there was one.
    pub previous_status: Option<Status>,
    /// The gateway's message id, once known.
    pub provider_message_id: Option<String>,
    /// Attempt number that produced this event (1-based).
    pub attempt: u32,
    /// Set on `failed`.
    pub error: Option<OutcomeError>,
    /// When the transition happened.
    #[serde(with = "millis")]
    pub occurred_at: DateTime<Utc>,
    /// The job's metadata, echoed.
    pub metadata: Option<Map<String, Value>>,
    /// On `duplicate` events: the job that holds the idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_job_id: Option<String>,
    /// True when the status was not reported but implied by a later one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inferred: bool,
    /// Channels that gave up on the job before `channel` took it over (failover, SPEC §4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels_tried: Vec<String>,
    /// On `sent`: the job's `fallback` template was sent instead of its message, because the
    /// customer's 24-hour window was closed (SPEC §10).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fallback: bool,
}

impl Outcome {
    /// A `status` event: `job_id`'s transition to `status` under `idempotency_key` on
    /// `channel`, happening now, with its stable event id. Everything else starts empty; set
    /// what the event knows with struct update syntax (`Outcome { to, ..Outcome::status(…) }`).
    pub fn status(channel: &str, idempotency_key: &str, job_id: &str, status: Status) -> Self {
        Self {
            event_id: event_id(channel, idempotency_key, job_id, EventKind::Status, status),
            event: EventKind::Status,
            job_id: job_id.to_string(),
            idempotency_key: idempotency_key.to_string(),
            channel: channel.to_string(),
            provider: None,
            to: None,
            status,
            previous_status: None,
            provider_message_id: None,
            attempt: 0,
            error: None,
            occurred_at: Utc::now(),
            metadata: None,
            original_job_id: None,
            inferred: false,
            channels_tried: Vec::new(),
            fallback: false,
        }
    }

    /// This event as a `duplicate` report: the job was not sent because `original_job_id`
    /// holds its key (its status is the original's), with the duplicate's own event id.
    pub fn into_duplicate(self, original_job_id: &str) -> Self {
        Self {
            event_id: event_id(
                &self.channel,
                &self.idempotency_key,
                &self.job_id,
                EventKind::Duplicate,
                self.status,
            ),
            event: EventKind::Duplicate,
            original_job_id: Some(original_job_id.to_string()),
            ..self
        }
    }

    /// The AMQP routing key: `<status>.<channel>`, or `duplicate.<channel>`.
    pub fn routing_key(&self) -> String {
        let head = match self.event {
            EventKind::Status => self.status.as_str(),
            EventKind::Duplicate => "duplicate",
        };
        format!("{head}.{}", self.channel)
    }
}

/// The stable `event_id` of `kind`/`status` for the job `job_id` under `idempotency_key` on
/// `channel`: a UUIDv5, so a re-published event keeps its id.
pub fn event_id(
    channel: &str,
    idempotency_key: &str,
    job_id: &str,
    kind: EventKind,
    status: Status,
) -> String {
    let kind = match kind {
        EventKind::Status => "status",
        EventKind::Duplicate => "duplicate",
    };
    // NUL cannot occur in any of these fields (validated printable), so the join is unambiguous.
    let name = format!(
        "{channel}\0{idempotency_key}\0{job_id}\0{kind}\0{}",
        status.as_str()
    );
    uuid::Uuid::new_v5(&EVENT_NAMESPACE, name.as_bytes()).to_string()
}

/// Namespace of mensajero's event ids (a fixed random UUID).
const EVENT_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6d3c_2a4e_91f0_4b7e_8c55_0e1d_7a2b_3f90);

mod millis {
    //! RFC 3339 with milliseconds and `Z`, as in SPEC §3's example.
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// Format a time the way outcomes and headers do.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The constructor's event id is the one `event_id` gives for the same job, key and
    /// status, and a duplicate report gets a different, equally stable one.
    #[test]
    fn constructed_events_carry_their_stable_ids() {
        let sent = Outcome::status("waspy-ar", "order-1847", "job-1", Status::Sent);
        assert_eq!(
            sent.event_id,
            event_id(
                "waspy-ar",
                "order-1847",
                "job-1",
                EventKind::Status,
                Status::Sent
            )
        );
        assert_eq!(sent.routing_key(), "sent.waspy-ar");
        assert_eq!(sent.idempotency_key, "order-1847");
        let duplicate = sent.clone().into_duplicate("job-0");
        assert_eq!(
            duplicate.event_id,
            event_id(
                "waspy-ar",
                "order-1847",
                "job-1",
                EventKind::Duplicate,
                Status::Sent
            )
        );
        assert_ne!(duplicate.event_id, sent.event_id);
        assert_eq!(duplicate.original_job_id.as_deref(), Some("job-0"));
        assert_eq!(duplicate.routing_key(), "duplicate.waspy-ar");
    }

    #[test]
    fn statuses_never_go_backwards() {
        use Status::*;
        assert!(Queued.can_advance_to(Sent));
        assert!(Sent.can_advance_to(Read));
        assert!(!Read.can_advance_to(Delivered));
        assert!(!Sent.can_advance_to(Sent));
        assert!(Sent.can_advance_to(Failed));
        assert!(!Failed.can_advance_to(Sent));
        assert!(!Failed.can_advance_to(Failed));
    }

    #[test]
    fn event_ids_are_stable_and_distinct() {
        let a = event_id("c", "k", "j", EventKind::Status, Status::Sent);
        assert_eq!(a, event_id("c", "k", "j", EventKind::Status, Status::Sent));
        assert_ne!(
            a,
            event_id("c", "k", "j", EventKind::Status, Status::Queued)
        );
        assert_ne!(
            a,
            event_id("c", "k", "j", EventKind::Duplicate, Status::Sent)
        );
        assert_ne!(a, event_id("c2", "k", "j", EventKind::Status, Status::Sent));
    }

    /// Any status, for the properties below.
    fn any_status() -> impl proptest::strategy::Strategy<Value = Status> {
        proptest::sample::select(vec![
            Status::Queued,
            Status::Sent,
            Status::Delivered,
            Status::Read,
            Status::Failed,
        ])
    }

    proptest::proptest! {
        /// The order is strict (never to itself), `failed` is terminal and reachable from every
        /// other status, and the other four form one chain: of two distinct ones exactly one
        /// can advance to the other, and advancing is transitive.
        #[test]
        fn the_status_order_is_a_strict_chain_ending_in_failed(
            a in any_status(),
            b in any_status(),
            c in any_status(),
        ) {
            proptest::prop_assert!(!a.can_advance_to(a));
            proptest::prop_assert!(!Status::Failed.can_advance_to(a));
            if a != Status::Failed {
                proptest::prop_assert!(a.can_advance_to(Status::Failed));
            }
            if a != b && a != Status::Failed && b != Status::Failed {
                proptest::prop_assert!(a.can_advance_to(b) != b.can_advance_to(a));
            }
            if a.can_advance_to(b) && b.can_advance_to(c) {
                proptest::prop_assert!(a.can_advance_to(c));
            }
        }
    }
}
