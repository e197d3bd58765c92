//! The envelope (SPEC §1): [`Job`] and its [`Priority`], and [`parse`], which reads a raw AMQP
//! body into a checked job.

use std::fmt;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::error::{ErrorCode, JobError, Rejection, invalid};
use super::limits::validate_message;
use super::message::{Content, Message};
use super::strict::{StrictValue, excerpt, json_kind};
use super::wire::{deserialize_at, message_from_value};
use super::{
    MAX_BODY_BYTES, MAX_CHANNEL_CHARS, MAX_ID_CHARS, MAX_IDEMPOTENCY_KEY_CHARS, MAX_METADATA_BYTES,
    ROOT,
};

// ---------------------------------------------------------------------------------------------
// Envelope
// ---------------------------------------------------------------------------------------------

/// A validated send job (SPEC §1). `to` is normalised to "+<digits>".
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(
    deny_unknown_fields,
    title = "Job",
    description = "A mensajero send job: the body published to exchange `mensajero.jobs` (SPEC §1), at most 64 KiB of UTF-8 JSON."
)]
pub struct Job {
    /// The producer's id for this job, echoed on every outcome; 1–128 printable ASCII characters.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[\x20-\x7E]+$"))]
    pub id: String,
    /// Deduplication key (default: `id`); 1–256 printable ASCII characters, because providers get it in an HTTP header (`Idempotency-Key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[\x20-\x7E]+$"))]
    pub idempotency_key: Option<String>,
    /// Configured channel that picks the provider; 1–64 of `[A-Za-z0-9_-]`, because it is a segment of the outcome routing key.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    pub channel: String,
    /// Recipient in E.164 (`+` optional on input, 8–15 digits, the first not 0; spaces, `-`, `.`, `(`, `)` are ignored); always `+<digits>` once parsed.
    pub to: String,
    /// The canonical message: Meta Cloud API's message object (SPEC §2).
    pub message: Message,
    /// A template message sent instead of `message` when the customer's 24-hour window is
    /// closed (SPEC §10); validated like `message`, and it must be a template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Message>,
    /// RFC 3339 time before which the job must not be sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub send_at: Option<DateTime<Utc>>,
    /// RFC 3339 time after which the job must not be sent; it then fails as `expired`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub expires_at: Option<DateTime<Utc>>,
    /// Seconds after receipt after which the job must not be sent; at least 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub ttl_seconds: Option<u64>,
    /// Lane: `bulk` jobs never delay `transactional` ones (SPEC §4).
    #[serde(default)]
    pub priority: Priority,
    /// Producer data echoed on every outcome; a JSON object of at most 8 KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Provider-specific fields merged into the provider request (escape hatch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_options: Option<Map<String, Value>>,
}

impl Job {
    /// The deduplication key: `idempotency_key`, or `id` when none was given.
    pub fn idempotency_key(&self) -> &str {
        self.idempotency_key.as_deref().unwrap_or(&self.id)
    }

    /// The recipient without the leading `+`, as most gateways want it.
    pub fn to_digits(&self) -> &str {
        self.to.strip_prefix('+').unwrap_or(&self.to)
    }

    /// When the job stops being sendable: the earlier of `expires_at` and `received_at + ttl_seconds`.
    pub fn deadline(&self, received_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Checked all the way: naive arithmetic on a producer's `ttl_seconds: 1e19` would panic
        // the worker on every redelivery. A TTL past chrono's range bounds nothing.
        let by_ttl = self
            .ttl_seconds
            .and_then(|seconds| i64::try_from(seconds).ok())
            .and_then(chrono::TimeDelta::try_seconds)
            .and_then(|ttl| received_at.checked_add_signed(ttl));
        match (self.expires_at, by_ttl) {
            (Some(expires_at), Some(by_ttl)) => Some(expires_at.min(by_ttl)),
            (expires_at, by_ttl) => expires_at.or(by_ttl),
        }
    }
}

/// Applies every rule of [`parse`] except those about the raw body (size, UTF-8, duplicate keys),
/// so a job read back from elsewhere (a dead letter, a test fixture) is as valid as a consumed one.
impl<'de> Deserialize<'de> for Job {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Object(map) => job_from_map(map).map_err(de::Error::custom),
            other => Err(de::Error::custom(format_args!(
                "{ROOT}: must be a JSON object, not {}",
                json_kind(&other)
            ))),
        }
    }
}

/// Which lane a job travels in (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// One-off messages a person is waiting for; the default.
    #[default]
    Transactional,
    /// Campaigns; they have their own queue so they never hold up transactional jobs.
    Bulk,
}

impl Priority {
    /// The wire name: `transactional` or `bulk`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Priority::Transactional => "transactional",
            Priority::Bulk => "bulk",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing the envelope
// ---------------------------------------------------------------------------------------------

/// Parse + validate a raw AMQP body. Never panics on any input.
pub fn parse(body: &[u8]) -> Result<Job, Rejection> {
    let bare = |error| Rejection {
        error,
        job_id: None,
        channel: None,
    };
    // Checked before parsing so a huge body costs nothing but its length.
    if body.len() > MAX_BODY_BYTES {
        return Err(bare(JobError::new(
            ErrorCode::Oversize,
            ROOT,
            format!(
                "body is {} bytes; at most {MAX_BODY_BYTES} are allowed",
                body.len()
            ),
        )));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        bare(JobError::new(
            ErrorCode::Malformed,
            ROOT,
            format!("not valid UTF-8 (at byte {})", e.valid_up_to()),
        ))
    })?;
    // RFC 8259 lets parsers ignore a byte order mark; some producers' libraries write one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value = match serde_json::from_str::<StrictValue>(text) {
        Ok(StrictValue(value)) => value,
        Err(e) => {
            return Err(bare(JobError::new(
                ErrorCode::Malformed,
                ROOT,
                format!("not valid JSON: {e}"),
            )));
        }
    };
    let Value::Object(map) = value else {
        return Err(bare(JobError::new(
            ErrorCode::Malformed,
            ROOT,
            format!("must be a JSON object, not {}", json_kind(&value)),
        )));
    };
    let job_id = valid_string(&map, "id", |s| check_printable(s, MAX_ID_CHARS));
    let channel = valid_string(&map, "channel", check_channel);
    job_from_map(map).map_err(|error| Rejection {
        error,
        job_id,
        channel,
    })
}

fn valid_string(
    map: &Map<String, Value>,
    key: &str,
    check: impl Fn(&str) -> Result<(), String>,
) -> Option<String> {
    map.get(key)
        .and_then(Value::as_str)
        .filter(|s| check(s).is_ok())
        .map(str::to_owned)
}

/// The envelope as it arrives, before its values are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobWire {
    id: String,
    idempotency_key: Option<String>,
    channel: String,
    to: String,
    message: Value,
    fallback: Option<Value>,
    send_at: Option<String>,
    expires_at: Option<String>,
    ttl_seconds: Option<u64>,
    priority: Option<Priority>,
    metadata: Option<Map<String, Value>>,
    provider_options: Option<Map<String, Value>>,
}

fn job_from_map(map: Map<String, Value>) -> Result<Job, JobError> {
    let wire: JobWire = deserialize_at(Value::Object(map), "")?;
    let message = message_from_value(wire.message, "message")?;
    let fallback = wire
        .fallback
        .map(|value| message_from_value(value, "fallback"))
        .transpose()?;

    check_printable(&wire.id, MAX_ID_CHARS).map_err(|rule| invalid("id", rule))?;
    if let Some(key) = &wire.idempotency_key {
        check_printable(key, MAX_IDEMPOTENCY_KEY_CHARS)
            .map_err(|rule| invalid("idempotency_key", rule))?;
    }
    check_channel(&wire.channel).map_err(|rule| invalid("channel", rule))?;
    let to = normalize_e164(&wire.to)
        .map_err(|rule| JobError::new(ErrorCode::InvalidPhone, "to", rule))?;
    let send_at = wire
        .send_at
        .map(|s| parse_time(&s, "send_at"))
        .transpose()?;
    let expires_at = wire
        .expires_at
        .map(|s| parse_time(&s, "expires_at"))
        .transpose()?;
    if let (Some(send_at), Some(expires_at)) = (send_at, expires_at) {
        // Such a job could only ever expire; the producer has almost certainly swapped them.
        if expires_at <= send_at {
            return Err(invalid("expires_at", "must be later than send_at"));
        }
    }
    if wire.ttl_seconds == Some(0) {
        return Err(invalid("ttl_seconds", "must be at least 1"));
    }
    if let Some(metadata) = &wire.metadata {
        // Metadata rides on every outcome, so its size is bounded as it will be sent: compact JSON.
        let size = serde_json::to_string(metadata).map_or(usize::MAX, |s| s.len());
        if size > MAX_METADATA_BYTES {
            return Err(invalid(
                "metadata",
                format!("must be at most {MAX_METADATA_BYTES} bytes as JSON (is {size})"),
            ));
        }
    }
    validate_message(&message, "message")?;
    if let Some(fallback) = &fallback {
        if !matches!(fallback.content, Content::Template(_)) {
            return Err(invalid(
                "fallback.type",
                format!(
                    "must be \"template\", not \"{}\": only templates may be sent outside the 24-hour window",
                    fallback.type_name()
                ),
            ));
        }
        validate_message(fallback, "fallback")?;
    }

    Ok(Job {
        id: wire.id,
        idempotency_key: wire.idempotency_key,
        channel: wire.channel,
        to,
        message,
        fallback,
        send_at,
        expires_at,
        ttl_seconds: wire.ttl_seconds,
        priority: wire.priority.unwrap_or_default(),
        metadata: wire.metadata,
        provider_options: wire.provider_options,
    })
}

fn parse_time(raw: &str, path: &str) -> Result<DateTime<Utc>, JobError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            invalid(
                path,
                format!(
                    "must be an RFC 3339 timestamp like 2026-11-22T15:00:00Z, not {:?}",
                    excerpt(raw)
                ),
            )
        })
}

fn check_printable(value: &str, max: usize) -> Result<(), String> {
    if let Some((at, c)) = value.char_indices().find(|(_, c)| !(' '..='~').contains(c)) {
        return Err(format!(
            "must be 1–{max} printable ASCII characters ({c:?} at byte {at} is not one)"
        ));
    }
    // Only ASCII is left, so bytes are characters.
    if value.is_empty() || value.len() > max {
        return Err(format!("must be 1–{max} printable ASCII characters"));
    }
    Ok(())
}

fn check_channel(value: &str) -> Result<(), String> {
    let well_formed = !value.is_empty()
        && value.len() <= MAX_CHANNEL_CHARS
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "must be 1–{MAX_CHANNEL_CHARS} characters of [A-Za-z0-9_-]"
        ))
    }
}

/// Normalise to E.164 "+<digits>" (SPEC §1: '+' optional, then 8–15 digits, first not 0;
/// also strip spaces, '-', '.', '(', ')' that humans type). Err(rule text) otherwise.
pub fn normalize_e164(raw: &str) -> Result<String, String> {
    const EXAMPLE: &str = "an E.164 number like +5491126032641";
    let mut digits = String::with_capacity(16);
    let mut seen_plus = false;
    for c in raw.chars() {
        match c {
            ' ' | '-' | '.' | '(' | ')' => {}
            '+' if !seen_plus && digits.is_empty() => seen_plus = true,
            '+' => return Err(format!("'+' may only start the number; expected {EXAMPLE}")),
            '0'..='9' => {
                digits.push(c);
                // Stop early so a 64 KiB string of digits is not copied just to be refused.
                if digits.len() > 15 {
                    return Err(format!("must have 8–15 digits; expected {EXAMPLE}"));
                }
            }
            other => return Err(format!("invalid character {other:?}; expected {EXAMPLE}")),
        }
    }
    if digits.len() < 8 {
        return Err(format!(
            "must have 8–15 digits (has {}); expected {EXAMPLE}",
            digits.len()
        ));
    }
    if digits.starts_with('0') {
        return Err(format!(
            "must start with a country code, not 0 (no trunk or 00 prefix); expected {EXAMPLE}"
        ));
    }
    Ok(format!("+{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_e164_accepts_what_humans_type() {
        let ok = [
            ("+5491126032641", "+5491126032641"),
            ("5491126032641", "+5491126032641"),
            ("+54 9 11 2603-2641", "+5491126032641"),
            ("+1 (415) 555.0123", "+14155550123"),
            ("(+34) 600 000 000", "+34600000000"),
            ("+12345678", "+12345678"),
            ("+123456789012345", "+123456789012345"),
        ];
        for (raw, want) in ok {
            assert_eq!(normalize_e164(raw).as_deref(), Ok(want), "{raw}");
        }
        let bad = [
            "",
            "+",
            "+1234567",
            "+1234567890123456",
            "+0491126032641",
            "0054 9 11 2603 2641",
            "++5491126032641",
            "54+91126032641",
            "+54 9 11 2603 2641 ext 2",
            "+54\t91126032641",
            "+５４９１１２６０３２６４１",
            "tel:+5491126032641",
        ];
        for raw in bad {
            assert!(normalize_e164(raw).is_err(), "{raw:?} was accepted");
        }
        assert_eq!(
            normalize_e164("+0491126032641"),
            Err("must start with a country code, not 0 (no trunk or 00 prefix); expected an E.164 number like +5491126032641".into())
        );
    }
}
