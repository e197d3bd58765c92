//! The send job (SPEC §1) and its canonical message (SPEC §2): what producers publish, parsed and
//! checked before anything is sent.
//!
//! Parsing is two-phase. The body first becomes a `serde_json::Value` (duplicate keys refused, so
//! no two parsers can disagree about what a job says); then each piece is deserialized with
//! `serde_path_to_error`, so every error names its JSON path. Meta's tagged shapes
//! (`{"type": "x", "x": {…}}`) are split by hand: serde's internally tagged enums buffer their
//! content and lose the path of any error inside it.
//!
//! Shape errors (unknown, missing or mistyped fields) are reported before limit errors, and those
//! of the whole job before those of the envelope's values: a typo in a producer breaks every job
//! it sends, so it is the first thing worth fixing.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

/// Largest accepted AMQP body in bytes (SPEC §1).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest accepted `metadata` object, measured as compact JSON, in bytes (SPEC §1).
pub const MAX_METADATA_BYTES: usize = 8 * 1024;

/// Path of errors about the body as a whole.
const ROOT: &str = "$";
const MAX_ID_CHARS: usize = 128;
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 256;
// The channel becomes a segment of the outcome routing key, so it must stay a single word.
const MAX_CHANNEL_CHARS: usize = 64;

// Meta's limits (SPEC §2): checking them here turns a provider rejection after a network round
// trip, possibly on a retry, into an immediate `invalid` outcome that names the field.
const MAX_TEXT_BODY_CHARS: usize = 4096;
const MAX_CAPTION_CHARS: usize = 1024;
const MAX_TEMPLATE_NAME_CHARS: usize = 512;
const MAX_COUPON_CODE_CHARS: usize = 15;
const MAX_REPLY_BUTTONS: usize = 3;
const MAX_BUTTON_TITLE_CHARS: usize = 20;
const MAX_BUTTON_ID_CHARS: usize = 256;
const MAX_LIST_BUTTON_CHARS: usize = 20;
const MAX_SECTIONS: usize = 10;
const MAX_ROWS: usize = 10;
const MAX_SECTION_TITLE_CHARS: usize = 24;
const MAX_ROW_TITLE_CHARS: usize = 24;
const MAX_ROW_DESCRIPTION_CHARS: usize = 72;
const MAX_ROW_ID_CHARS: usize = 200;
const MAX_INTERACTIVE_BODY_CHARS: usize = 1024;
const MAX_FOOTER_CHARS: usize = 60;
const MAX_HEADER_TEXT_CHARS: usize = 60;

// Error texts echo producer input into outcomes and logs; these keep them short.
const MAX_ECHO_CHARS: usize = 64;
const MAX_RULE_CHARS: usize = 400;

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
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a body was refused; carries what could still be read so the worker can publish a `failed` outcome.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct Rejection {
    /// The first problem found.
    pub error: JobError,
    /// The body's `id`, when it was a valid one, so the outcome can name the job.
    pub job_id: Option<String>,
    /// The body's `channel`, when it was a valid name, so the outcome gets its routing key.
    pub channel: Option<String>,
}

/// One problem with a job: where it is (a JSON path, `$` for the body itself) and which rule it breaks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {rule}")]
pub struct JobError {
    /// Machine-readable kind, used as the outcome's error code.
    pub code: ErrorCode,
    /// JSON path of the offending value, e.g. `message.interactive.action.buttons[3]`; `$` for the whole body.
    pub path: String,
    /// The rule broken, for humans, e.g. `at most 3 reply buttons`.
    pub rule: String,
}

impl JobError {
    fn new(code: ErrorCode, path: impl Into<String>, rule: impl Into<String>) -> Self {
        let mut rule = rule.into();
        truncate_chars(&mut rule, MAX_RULE_CHARS);
        JobError {
            code,
            path: path.into(),
            rule,
        }
    }
}

/// The kind of a [`JobError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is larger than [`MAX_BODY_BYTES`].
    Oversize,
    /// The body is not UTF-8, not JSON, or not a JSON object.
    Malformed,
    /// A field that the contract does not define (often a typo).
    UnknownField,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong type or breaks a limit.
    InvalidField,
    /// `to` is not an E.164 number.
    InvalidPhone,
}

impl ErrorCode {
    /// The wire name, e.g. `unknown_field`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::Oversize => "oversize",
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::InvalidPhone => "invalid_phone",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn invalid(path: impl Into<String>, rule: impl Into<String>) -> JobError {
    JobError::new(ErrorCode::InvalidField, path, rule)
}

fn missing(path: impl Into<String>, rule: impl Into<String>) -> JobError {
    JobError::new(ErrorCode::MissingField, path, rule)
}

fn unknown(path: impl Into<String>, rule: impl Into<String>) -> JobError {
    JobError::new(ErrorCode::UnknownField, path, rule)
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

    Ok(Job {
        id: wire.id,
        idempotency_key: wire.idempotency_key,
        channel: wire.channel,
        to,
        message,
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

// ---------------------------------------------------------------------------------------------
// The canonical message
// ---------------------------------------------------------------------------------------------

/// The canonical message (SPEC §2): Meta Cloud API's message object without `messaging_product`, `recipient_type` and `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Meta's `{"message_id": …}`: makes the message a reply to that one.
    pub context: Option<Context>,
    /// What is sent; its variant is the wire `type`.
    pub content: Content,
}

impl Message {
    /// The wire `type`: "text", "image", ….
    pub fn type_name(&self) -> &'static str {
        self.content.type_name()
    }
}

/// Validates like [`parse`] does, with paths relative to the message (`text.body`), so gateway
/// simulators and adapters can read Meta-style message objects with the same rules.
impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let message = message_from_value(value, "").map_err(de::Error::custom)?;
        validate_message(&message, "").map_err(de::Error::custom)?;
        Ok(message)
    }
}

/// The payload of a [`Message`], one variant per Meta message type.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// `text`: a plain text message.
    Text(Text),
    /// `image`: an image, with an optional caption.
    Image(Media),
    /// `video`: a video, with an optional caption.
    Video(Media),
    /// `audio`: an audio file or voice note.
    Audio(Media),
    /// `document`: a file, with optional caption and filename.
    Document(Media),
    /// `sticker`: a sticker.
    Sticker(Media),
    /// `template`: a pre-approved template, the only kind allowed outside the 24 h window.
    Template(Template),
    /// `interactive`: reply buttons or a list.
    Interactive(Interactive),
    /// `location`: a map pin.
    Location(Location),
    /// `contacts`: one or more contact cards.
    Contacts(Vec<Contact>),
    /// `reaction`: an emoji on an earlier message.
    Reaction(Reaction),
}

impl Content {
    /// The wire `type`: "text", "image", ….
    pub fn type_name(&self) -> &'static str {
        match self {
            Content::Text(_) => "text",
            Content::Image(_) => "image",
            Content::Video(_) => "video",
            Content::Audio(_) => "audio",
            Content::Document(_) => "document",
            Content::Sticker(_) => "sticker",
            Content::Template(_) => "template",
            Content::Interactive(_) => "interactive",
            Content::Location(_) => "location",
            Content::Contacts(_) => "contacts",
            Content::Reaction(_) => "reaction",
        }
    }
}

/// Meta's `context` object: the message being replied to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// Provider message id (wamid) of the message being replied to.
    pub message_id: String,
}

/// Meta's `text` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Text {
    /// The text, 1–4096 characters.
    #[schemars(length(min = 1, max = 4096))]
    pub body: String,
    /// Whether WhatsApp renders a preview of the first URL in `body`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview_url: Option<bool>,
}

/// Meta's media object (`image`, `video`, `audio`, `document`, `sticker`, and media in headers and template parameters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Media {
    /// Media id from an earlier upload to the provider; exclusive with `link`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Public `https://` URL the provider fetches; exclusive with `id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Caption of an image, video or document message, at most 1024 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub caption: Option<String>,
    /// File name shown for a document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// Meta's `template` object.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Template {
    /// Template name as approved by Meta: `[a-z0-9_]{1,512}`.
    #[schemars(regex(pattern = r"^[a-z0-9_]{1,512}$"))]
    pub name: String,
    /// Which translation of the template to send.
    pub language: Language,
    /// Values for the template's variables and buttons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<Component>>,
}

/// Meta's template `language` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Language {
    /// Language and locale code, e.g. `es_AR`.
    #[schemars(length(min = 1))]
    pub code: String,
    /// Language policy; Meta only knows `deterministic`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// One template component: the values for a header, body, footer or button.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Component {
    /// Which part of the template the parameters fill.
    #[serde(rename = "type")]
    pub kind: ComponentType,
    /// Kind of button; required on button components only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_type: Option<ButtonSubType>,
    /// Position of the button (0–9); required on button components only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<ButtonIndex>,
    /// Values for the component's variables, in order (or by `parameter_name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Vec<Parameter>>,
}

/// Template component `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ComponentType {
    /// The template's header.
    Header,
    /// The template's body.
    Body,
    /// The template's footer.
    Footer,
    /// One of the template's buttons, chosen by `index`.
    Button,
}

/// Template button component `sub_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ButtonSubType {
    /// A quick-reply button; its parameter is a `payload`.
    QuickReply,
    /// A URL button; its parameter is the `text` appended to the URL.
    Url,
    /// A copy-code button; its parameter is a `coupon_code`.
    CopyCode,
}

/// A button component's position (0–9). Meta's examples send a string, so both forms are accepted and kept as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ButtonIndex {
    /// Sent as a JSON integer.
    Number(u8),
    /// Sent as a one-digit JSON string.
    Digit(u8),
}

impl ButtonIndex {
    /// The position, 0–9, whichever form it arrived in.
    pub fn value(self) -> u8 {
        match self {
            ButtonIndex::Number(n) | ButtonIndex::Digit(n) => n,
        }
    }
}

/// A template parameter: Meta's `{"type": "<kind>", "<kind>": …}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    /// Name of the variable, for templates with named parameters.
    pub parameter_name: Option<String>,
    /// The value; its variant is the wire `type`.
    pub value: ParameterValue,
}

/// The value of a template [`Parameter`].
#[derive(Debug, Clone, PartialEq)]
pub enum ParameterValue {
    /// `text`: replaces a variable with text.
    Text(String),
    /// `currency`: an amount, localised by WhatsApp.
    Currency(Currency),
    /// `date_time`: a date shown as given.
    DateTime(DateTimeParameter),
    /// `image`: media of an image header.
    Image(Media),
    /// `video`: media of a video header.
    Video(Media),
    /// `document`: media of a document header.
    Document(Media),
    /// `payload`: what a quick-reply button sends back.
    Payload(String),
    /// `coupon_code`: what a copy-code button copies.
    CouponCode(String),
}

impl ParameterValue {
    /// The wire `type`: "text", "currency", ….
    pub fn type_name(&self) -> &'static str {
        match self {
            ParameterValue::Text(_) => "text",
            ParameterValue::Currency(_) => "currency",
            ParameterValue::DateTime(_) => "date_time",
            ParameterValue::Image(_) => "image",
            ParameterValue::Video(_) => "video",
            ParameterValue::Document(_) => "document",
            ParameterValue::Payload(_) => "payload",
            ParameterValue::CouponCode(_) => "coupon_code",
        }
    }
}

/// Meta's `currency` parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Currency {
    /// Shown where WhatsApp cannot localise the amount.
    pub fallback_value: String,
    /// ISO 4217 currency code, e.g. `ARS`.
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    pub code: String,
    /// Amount multiplied by 1000 (so 12.34 is 12340).
    pub amount_1000: i64,
}

/// Meta's `date_time` parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DateTimeParameter {
    /// The date as it is shown.
    pub fallback_value: String,
}

/// Meta's `interactive` object; its wire `type` follows from `action`.
#[derive(Debug, Clone, PartialEq)]
pub struct Interactive {
    /// Optional header: text or media.
    pub header: Option<Header>,
    /// The message text, 1–1024 characters.
    pub body: InteractiveText,
    /// Optional footer, 1–60 characters.
    pub footer: Option<InteractiveText>,
    /// Reply buttons (`type: button`) or a list (`type: list`).
    pub action: Action,
}

impl Interactive {
    /// The wire `type`: "button" or "list".
    pub fn type_name(&self) -> &'static str {
        match self.action {
            Action::Button(_) => "button",
            Action::List(_) => "list",
        }
    }
}

/// Meta's `{"text": …}` object used by an interactive body and footer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InteractiveText {
    /// The text.
    #[schemars(length(min = 1))]
    pub text: String,
}

/// An interactive header: Meta's `{"type": "<kind>", "<kind>": …}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Header {
    /// `text`: up to 60 characters.
    Text(String),
    /// `image`: an image header.
    Image(Media),
    /// `video`: a video header.
    Video(Media),
    /// `document`: a document header.
    Document(Media),
}

impl Header {
    /// The wire `type`: "text", "image", "video" or "document".
    pub fn type_name(&self) -> &'static str {
        match self {
            Header::Text(_) => "text",
            Header::Image(_) => "image",
            Header::Video(_) => "video",
            Header::Document(_) => "document",
        }
    }
}

/// An interactive `action`, whose shape depends on the interactive type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Action {
    /// For `type: button`.
    Button(ButtonAction),
    /// For `type: list`.
    List(ListAction),
}

/// The action of a reply-button message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ButtonAction {
    /// 1–3 reply buttons.
    #[schemars(length(min = 1, max = 3))]
    pub buttons: Vec<ReplyButton>,
}

/// One reply button.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyButton {
    /// Always `reply`.
    #[serde(rename = "type")]
    pub kind: ReplyButtonType,
    /// The button's id and label.
    pub reply: Reply,
}

/// Reply button `type`; Meta defines only `reply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplyButtonType {
    /// A quick-reply button.
    Reply,
}

/// A reply button's id and label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// Sent back in the user's answer; 1–256 characters, unique within the message.
    #[schemars(length(min = 1, max = 256))]
    pub id: String,
    /// The label, 1–20 characters.
    #[schemars(length(min = 1, max = 20))]
    pub title: String,
}

/// The action of a list message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListAction {
    /// Label of the button that opens the list, 1–20 characters.
    #[schemars(length(min = 1, max = 20))]
    pub button: String,
    /// 1–10 sections holding 1–10 rows in all.
    #[schemars(length(min = 1, max = 10))]
    pub sections: Vec<Section>,
}

/// A section of a list message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// Section title, up to 24 characters; required when there is more than one section.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 24))]
    pub title: Option<String>,
    /// The section's rows (at least 1).
    #[schemars(length(min = 1, max = 10))]
    pub rows: Vec<Row>,
}

/// A row of a list message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// Sent back in the user's answer; 1–200 characters, unique within the message.
    #[schemars(length(min = 1, max = 200))]
    pub id: String,
    /// The row's label, 1–24 characters.
    #[schemars(length(min = 1, max = 24))]
    pub title: String,
    /// Text under the label, up to 72 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 72))]
    pub description: Option<String>,
}

/// Meta's `location` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Degrees north, -90 to 90.
    #[schemars(range(min = -90.0, max = 90.0))]
    pub latitude: f64,
    /// Degrees east, -180 to 180.
    #[schemars(range(min = -180.0, max = 180.0))]
    pub longitude: f64,
    /// Name of the place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Address of the place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// Meta's contact card object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// The contact's name; `formatted_name` is required.
    pub name: ContactName,
    /// Phone numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phones: Option<Vec<ContactPhone>>,
    /// Email addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emails: Option<Vec<ContactEmail>>,
    /// Postal addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<ContactAddress>>,
    /// Employer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<ContactOrg>,
    /// Web sites.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<ContactUrl>>,
    /// Birthday as `YYYY-MM-DD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date"))]
    pub birthday: Option<String>,
}

/// A contact's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactName {
    /// The full name as shown; required and non-empty.
    #[schemars(length(min = 1))]
    pub formatted_name: String,
    /// Given name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Family name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Middle name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    /// Name prefix, e.g. "Dr.".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Name suffix, e.g. "Jr.".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

/// A contact's phone number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPhone {
    /// The number as shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Kind, e.g. `CELL`, `MAIN`, `IPHONE`, `HOME`, `WORK`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// WhatsApp id, which adds a "Message" button to the card.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
}

/// A contact's email address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactEmail {
    /// The address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Kind, e.g. `HOME`, `WORK`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// A contact's postal address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactAddress {
    /// Street and number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    /// City.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// State or province.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Postal code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zip: Option<String>,
    /// Country name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Two-letter country code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    /// Kind, e.g. `HOME`, `WORK`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// A contact's employer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactOrg {
    /// Company name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// Department.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Job title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// A contact's web site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactUrl {
    /// The URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Kind, e.g. `HOME`, `WORK`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// Meta's `reaction` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reaction {
    /// Provider message id (wamid) of the message reacted to.
    #[schemars(length(min = 1))]
    pub message_id: String,
    /// The emoji; an empty string removes an earlier reaction.
    pub emoji: String,
}

// ---------------------------------------------------------------------------------------------
// Wire form out (Serialize) for the tagged shapes
// ---------------------------------------------------------------------------------------------

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let tag = self.type_name();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", tag)?;
        match &self.content {
            Content::Text(v) => map.serialize_entry(tag, v)?,
            Content::Image(v)
            | Content::Video(v)
            | Content::Audio(v)
            | Content::Document(v)
            | Content::Sticker(v) => map.serialize_entry(tag, v)?,
            Content::Template(v) => map.serialize_entry(tag, v)?,
            Content::Interactive(v) => map.serialize_entry(tag, v)?,
            Content::Location(v) => map.serialize_entry(tag, v)?,
            Content::Contacts(v) => map.serialize_entry(tag, v)?,
            Content::Reaction(v) => map.serialize_entry(tag, v)?,
        }
        if let Some(context) = &self.context {
            map.serialize_entry("context", context)?;
        }
        map.end()
    }
}

impl Serialize for Parameter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let tag = self.value.type_name();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", tag)?;
        match &self.value {
            ParameterValue::Text(v)
            | ParameterValue::Payload(v)
            | ParameterValue::CouponCode(v) => map.serialize_entry(tag, v)?,
            ParameterValue::Currency(v) => map.serialize_entry(tag, v)?,
            ParameterValue::DateTime(v) => map.serialize_entry(tag, v)?,
            ParameterValue::Image(v) | ParameterValue::Video(v) | ParameterValue::Document(v) => {
                map.serialize_entry(tag, v)?
            }
        }
        if let Some(name) = &self.parameter_name {
            map.serialize_entry("parameter_name", name)?;
        }
        map.end()
    }
}

impl Serialize for Header {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let tag = self.type_name();
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("type", tag)?;
        match self {
            Header::Text(v) => map.serialize_entry(tag, v)?,
            Header::Image(v) | Header::Video(v) | Header::Document(v) => {
                map.serialize_entry(tag, v)?
            }
        }
        map.end()
    }
}

impl Serialize for Interactive {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", self.type_name())?;
        if let Some(header) = &self.header {
            map.serialize_entry("header", header)?;
        }
        map.serialize_entry("body", &self.body)?;
        if let Some(footer) = &self.footer {
            map.serialize_entry("footer", footer)?;
        }
        map.serialize_entry("action", &self.action)?;
        map.end()
    }
}

impl Serialize for ButtonIndex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            ButtonIndex::Number(n) => serializer.serialize_u8(n),
            ButtonIndex::Digit(n) => serializer.serialize_str(&n.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for ButtonIndex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IndexVisitor;
        const RULE: &str = "must be 0–9, as an integer or a one-digit string";
        impl Visitor<'_> for IndexVisitor {
            type Value = ButtonIndex;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a button index 0–9 (integer or one-digit string)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ButtonIndex, E> {
                match u8::try_from(v) {
                    Ok(n) if n <= 9 => Ok(ButtonIndex::Number(n)),
                    _ => Err(E::custom(RULE)),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ButtonIndex, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(RULE))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ButtonIndex, E> {
                match v.as_bytes() {
                    [d @ b'0'..=b'9'] => Ok(ButtonIndex::Digit(d - b'0')),
                    _ => Err(E::custom(RULE)),
                }
            }
        }
        deserializer.deserialize_any(IndexVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Wire form in: tagged shapes split by hand, the rest through serde with paths
// ---------------------------------------------------------------------------------------------

/// Deserializes `value` (found at `path`) so that errors carry the full JSON path.
fn deserialize_at<T: DeserializeOwned>(value: Value, path: &str) -> Result<T, JobError> {
    serde_path_to_error::deserialize(value).map_err(|e| serde_error(path, &e))
}

fn serde_error(base: &str, err: &serde_path_to_error::Error<serde_json::Error>) -> JobError {
    let mut path = base.to_owned();
    for segment in err.path().iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => path = index_path(&path, *index),
            serde_path_to_error::Segment::Map { key } => path = field_path(&path, key),
            serde_path_to_error::Segment::Enum { variant } => path = field_path(&path, variant),
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    let message = err.inner().to_string();
    // serde's wording for these two is fixed (serde::de::Error::unknown_field / missing_field).
    // An unknown field's path already ends in its key; a missing one's ends at its parent.
    if message.starts_with("unknown field `") {
        // The key is the path's last segment; cutting it off by name stays right even when the
        // key itself holds a backtick.
        let key = match err.path().iter().next_back() {
            Some(serde_path_to_error::Segment::Map { key }) => key.as_str(),
            _ => "",
        };
        let expected = message
            .strip_prefix(&format!("unknown field `{key}`, "))
            .unwrap_or("");
        let rule = if expected.is_empty() || expected == "there are no fields" {
            "unknown field".to_owned()
        } else {
            format!("unknown field ({expected})")
        };
        return unknown(path_or_root(path), rule);
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return missing(field_path(&path, field), "missing field");
    }
    invalid(path_or_root(path), message)
}

fn path_or_root(path: String) -> String {
    if path.is_empty() {
        ROOT.to_owned()
    } else {
        path
    }
}

fn field_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= MAX_ECHO_CHARS
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        if parent.is_empty() {
            key.to_owned()
        } else {
            format!("{parent}.{key}")
        }
    } else {
        // Keys from the input may hold dots, quotes or control characters: quote them so the
        // path stays unambiguous and printable.
        let quoted =
            serde_json::to_string(excerpt(key).as_ref()).unwrap_or_else(|_| String::from("\"?\""));
        format!("{parent}[{quoted}]")
    }
}

fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// A `{"type": "<tag>", "<tag>": payload, …}` object taken apart.
struct Tagged<K> {
    kind: K,
    payload: Value,
    rest: Map<String, Value>,
}

/// Splits one of Meta's tagged objects. `extra` names the fields allowed besides `type` and
/// the payload; any other field is refused before the payload is looked at, because a stray
/// field is usually the misspelt payload.
fn split_tagged<K: Copy>(
    value: Value,
    path: &str,
    what: &str,
    kinds: &[(&'static str, K)],
    extra: &[&str],
) -> Result<Tagged<K>, JobError> {
    let names = || {
        kinds
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Value::Object(mut map) = value else {
        return Err(invalid(
            path_or_root(path.to_owned()),
            format!("must be an object, not {}", json_kind(&value)),
        ));
    };
    let type_path = field_path(path, "type");
    let tag = match map.remove("type") {
        None => {
            return Err(missing(
                type_path,
                format!("missing field (one of: {})", names()),
            ));
        }
        Some(Value::String(tag)) => tag,
        Some(other) => {
            return Err(invalid(
                type_path,
                format!("must be a string, not {}", json_kind(&other)),
            ));
        }
    };
    let Some(&(tag, kind)) = kinds.iter().find(|(name, _)| *name == tag) else {
        return Err(invalid(
            type_path,
            format!(
                "unknown {what} type {:?}; expected one of: {}",
                excerpt(&tag),
                names()
            ),
        ));
    };
    if let Some(key) = map
        .keys()
        .find(|key| key.as_str() != tag && !extra.contains(&key.as_str()))
    {
        let rule = if kinds.iter().any(|(name, _)| name == key) {
            format!("unknown field (the {what} type is {tag:?})")
        } else {
            let mut allowed = vec![format!("`type`"), format!("`{tag}`")];
            allowed.extend(extra.iter().map(|name| format!("`{name}`")));
            format!("unknown field (expected one of {})", allowed.join(", "))
        };
        return Err(unknown(field_path(path, key), rule));
    }
    let payload = map.remove(tag).ok_or_else(|| {
        missing(
            field_path(path, tag),
            format!("missing field (required for {what} type {tag:?})"),
        )
    })?;
    Ok(Tagged {
        kind,
        payload,
        rest: map,
    })
}

#[derive(Clone, Copy)]
enum MessageKind {
    Text,
    Image,
    Video,
    Audio,
    Document,
    Sticker,
    Template,
    Interactive,
    Location,
    Contacts,
    Reaction,
}

const MESSAGE_KINDS: [(&str, MessageKind); 11] = [
    ("text", MessageKind::Text),
    ("image", MessageKind::Image),
    ("video", MessageKind::Video),
    ("audio", MessageKind::Audio),
    ("document", MessageKind::Document),
    ("sticker", MessageKind::Sticker),
    ("template", MessageKind::Template),
    ("interactive", MessageKind::Interactive),
    ("location", MessageKind::Location),
    ("contacts", MessageKind::Contacts),
    ("reaction", MessageKind::Reaction),
];

fn message_from_value(value: Value, path: &str) -> Result<Message, JobError> {
    let Tagged {
        kind,
        payload,
        mut rest,
    } = split_tagged(value, path, "message", &MESSAGE_KINDS, &["context"])?;
    let at = |tag: &str| field_path(path, tag);
    let content = match kind {
        MessageKind::Text => Content::Text(deserialize_at(payload, &at("text"))?),
        MessageKind::Image => Content::Image(media_from_value(payload, &at("image"), true, false)?),
        MessageKind::Video => Content::Video(media_from_value(payload, &at("video"), true, false)?),
        MessageKind::Audio => {
            Content::Audio(media_from_value(payload, &at("audio"), false, false)?)
        }
        MessageKind::Document => {
            Content::Document(media_from_value(payload, &at("document"), true, true)?)
        }
        MessageKind::Sticker => {
            Content::Sticker(media_from_value(payload, &at("sticker"), false, false)?)
        }
        MessageKind::Template => Content::Template(template_from_value(payload, &at("template"))?),
        MessageKind::Interactive => {
            Content::Interactive(interactive_from_value(payload, &at("interactive"))?)
        }
        MessageKind::Location => Content::Location(deserialize_at(payload, &at("location"))?),
        MessageKind::Contacts => Content::Contacts(deserialize_at(payload, &at("contacts"))?),
        MessageKind::Reaction => Content::Reaction(deserialize_at(payload, &at("reaction"))?),
    };
    let context = match rest.remove("context") {
        None | Some(Value::Null) => None,
        Some(value) => Some(deserialize_at(value, &at("context"))?),
    };
    Ok(Message { context, content })
}

/// Meta's media object is one shape, but `caption` and `filename` exist only where WhatsApp
/// can show them; elsewhere they would be dropped silently, so they are refused.
fn media_from_value(
    value: Value,
    path: &str,
    caption_allowed: bool,
    filename_allowed: bool,
) -> Result<Media, JobError> {
    let media: Media = deserialize_at(value, path)?;
    if !caption_allowed && media.caption.is_some() {
        return Err(unknown(
            field_path(path, "caption"),
            "unknown field (captions exist only on image, video and document messages)",
        ));
    }
    if !filename_allowed && media.filename.is_some() {
        return Err(unknown(
            field_path(path, "filename"),
            "unknown field (only documents have a filename)",
        ));
    }
    Ok(media)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateWire {
    name: String,
    language: Language,
    components: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComponentWire {
    #[serde(rename = "type")]
    kind: ComponentType,
    sub_type: Option<ButtonSubType>,
    index: Option<ButtonIndex>,
    parameters: Option<Vec<Value>>,
}

fn template_from_value(value: Value, path: &str) -> Result<Template, JobError> {
    let wire: TemplateWire = deserialize_at(value, path)?;
    let components_path = field_path(path, "components");
    let components = wire
        .components
        .map(|items| {
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| component_from_value(item, &index_path(&components_path, i)))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(Template {
        name: wire.name,
        language: wire.language,
        components,
    })
}

fn component_from_value(value: Value, path: &str) -> Result<Component, JobError> {
    let wire: ComponentWire = deserialize_at(value, path)?;
    if wire.kind != ComponentType::Button {
        for (field, present) in [
            ("sub_type", wire.sub_type.is_some()),
            ("index", wire.index.is_some()),
        ] {
            if present {
                return Err(unknown(
                    field_path(path, field),
                    "unknown field (only button components have it)",
                ));
            }
        }
    }
    let parameters_path = field_path(path, "parameters");
    let parameters = wire
        .parameters
        .map(|items| {
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| parameter_from_value(item, &index_path(&parameters_path, i)))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(Component {
        kind: wire.kind,
        sub_type: wire.sub_type,
        index: wire.index,
        parameters,
    })
}

#[derive(Clone, Copy)]
enum ParameterKind {
    Text,
    Currency,
    DateTime,
    Image,
    Video,
    Document,
    Payload,
    CouponCode,
}

const PARAMETER_KINDS: [(&str, ParameterKind); 8] = [
    ("text", ParameterKind::Text),
    ("currency", ParameterKind::Currency),
    ("date_time", ParameterKind::DateTime),
    ("image", ParameterKind::Image),
    ("video", ParameterKind::Video),
    ("document", ParameterKind::Document),
    ("payload", ParameterKind::Payload),
    ("coupon_code", ParameterKind::CouponCode),
];

fn parameter_from_value(value: Value, path: &str) -> Result<Parameter, JobError> {
    let Tagged {
        kind,
        payload,
        mut rest,
    } = split_tagged(
        value,
        path,
        "parameter",
        &PARAMETER_KINDS,
        &["parameter_name"],
    )?;
    let at = |tag: &str| field_path(path, tag);
    let value = match kind {
        ParameterKind::Text => ParameterValue::Text(deserialize_at(payload, &at("text"))?),
        ParameterKind::Currency => {
            ParameterValue::Currency(deserialize_at(payload, &at("currency"))?)
        }
        ParameterKind::DateTime => {
            ParameterValue::DateTime(deserialize_at(payload, &at("date_time"))?)
        }
        ParameterKind::Image => {
            ParameterValue::Image(media_from_value(payload, &at("image"), false, false)?)
        }
        ParameterKind::Video => {
            ParameterValue::Video(media_from_value(payload, &at("video"), false, false)?)
        }
        ParameterKind::Document => {
            ParameterValue::Document(media_from_value(payload, &at("document"), false, true)?)
        }
        ParameterKind::Payload => ParameterValue::Payload(deserialize_at(payload, &at("payload"))?),
        ParameterKind::CouponCode => {
            ParameterValue::CouponCode(deserialize_at(payload, &at("coupon_code"))?)
        }
    };
    let parameter_name = match rest.remove("parameter_name") {
        None | Some(Value::Null) => None,
        Some(name) => Some(deserialize_at(name, &at("parameter_name"))?),
    };
    Ok(Parameter {
        parameter_name,
        value,
    })
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum InteractiveType {
    Button,
    List,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InteractiveWire {
    #[serde(rename = "type")]
    kind: InteractiveType,
    header: Option<Value>,
    body: InteractiveText,
    footer: Option<InteractiveText>,
    action: Value,
}

fn interactive_from_value(value: Value, path: &str) -> Result<Interactive, JobError> {
    let wire: InteractiveWire = deserialize_at(value, path)?;
    let header = match wire.header {
        None => None,
        Some(header) => Some(header_from_value(header, &field_path(path, "header"))?),
    };
    let action_path = field_path(path, "action");
    let action = match wire.kind {
        InteractiveType::Button => Action::Button(deserialize_at(wire.action, &action_path)?),
        InteractiveType::List => Action::List(deserialize_at(wire.action, &action_path)?),
    };
    Ok(Interactive {
        header,
        body: wire.body,
        footer: wire.footer,
        action,
    })
}

#[derive(Clone, Copy)]
enum HeaderKind {
    Text,
    Image,
    Video,
    Document,
}

const HEADER_KINDS: [(&str, HeaderKind); 4] = [
    ("text", HeaderKind::Text),
    ("image", HeaderKind::Image),
    ("video", HeaderKind::Video),
    ("document", HeaderKind::Document),
];

fn header_from_value(value: Value, path: &str) -> Result<Header, JobError> {
    let Tagged { kind, payload, .. } = split_tagged(value, path, "header", &HEADER_KINDS, &[])?;
    let at = |tag: &str| field_path(path, tag);
    Ok(match kind {
        HeaderKind::Text => Header::Text(deserialize_at(payload, &at("text"))?),
        HeaderKind::Image => Header::Image(media_from_value(payload, &at("image"), false, false)?),
        HeaderKind::Video => Header::Video(media_from_value(payload, &at("video"), false, false)?),
        HeaderKind::Document => {
            Header::Document(media_from_value(payload, &at("document"), false, true)?)
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Limits (SPEC §2)
// ---------------------------------------------------------------------------------------------

fn validate_message(message: &Message, path: &str) -> Result<(), JobError> {
    let at = field_path(path, message.type_name());
    match &message.content {
        Content::Text(text) => {
            check_chars(&field_path(&at, "body"), &text.body, 1, MAX_TEXT_BODY_CHARS)?
        }
        Content::Image(media)
        | Content::Video(media)
        | Content::Audio(media)
        | Content::Document(media)
        | Content::Sticker(media) => validate_media(media, &at)?,
        Content::Template(template) => validate_template(template, &at)?,
        Content::Interactive(interactive) => validate_interactive(interactive, &at)?,
        Content::Location(location) => validate_location(location, &at)?,
        Content::Contacts(contacts) => validate_contacts(contacts, &at)?,
        Content::Reaction(reaction) => {
            check_not_blank(&field_path(&at, "message_id"), &reaction.message_id)?
        }
    }
    if let Some(context) = &message.context {
        check_not_blank(
            &field_path(&field_path(path, "context"), "message_id"),
            &context.message_id,
        )?;
    }
    Ok(())
}

fn validate_media(media: &Media, path: &str) -> Result<(), JobError> {
    match (&media.id, &media.link) {
        (None, None) => return Err(missing(path, "needs `link` or `id`")),
        (Some(_), Some(_)) => {
            return Err(invalid(
                path,
                "`link` and `id` are mutually exclusive; send exactly one",
            ));
        }
        (Some(id), None) => check_not_blank(&field_path(path, "id"), id)?,
        (None, Some(link)) => {
            check_https_link(link).map_err(|rule| invalid(field_path(path, "link"), rule))?
        }
    }
    if let Some(caption) = &media.caption {
        check_chars(&field_path(path, "caption"), caption, 0, MAX_CAPTION_CHARS)?;
    }
    if let Some(filename) = &media.filename {
        check_not_blank(&field_path(path, "filename"), filename)?;
    }
    Ok(())
}

fn check_https_link(link: &str) -> Result<(), String> {
    if link.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be a URL without spaces or control characters".to_owned());
    }
    let has_scheme = link
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    if !has_scheme {
        return Err("must be an https:// URL".to_owned());
    }
    let authority = link[8..].split(['/', '?', '#']).next().unwrap_or_default();
    let host_and_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if host_and_port.starts_with('[') {
        host_and_port
            .split(']')
            .next()
            .unwrap_or_default()
            .trim_start_matches('[')
    } else {
        host_and_port.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err("must be an https:// URL with a host".to_owned());
    }
    Ok(())
}

fn validate_template(template: &Template, path: &str) -> Result<(), JobError> {
    let name_ok = !template.name.is_empty()
        && template.name.len() <= MAX_TEMPLATE_NAME_CHARS
        && template
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !name_ok {
        return Err(invalid(
            field_path(path, "name"),
            format!("must be 1–{MAX_TEMPLATE_NAME_CHARS} characters of [a-z0-9_]"),
        ));
    }
    let language = field_path(path, "language");
    check_not_blank(&field_path(&language, "code"), &template.language.code)?;
    if let Some(policy) = &template.language.policy
        && policy != "deterministic"
    {
        return Err(invalid(
            field_path(&language, "policy"),
            "must be \"deterministic\", the only policy Meta supports",
        ));
    }
    let components_path = field_path(path, "components");
    for (i, component) in template.components.iter().flatten().enumerate() {
        let at = index_path(&components_path, i);
        if component.kind == ComponentType::Button {
            if component.sub_type.is_none() {
                return Err(missing(
                    field_path(&at, "sub_type"),
                    "required on button components (quick_reply, url or copy_code)",
                ));
            }
            if component.index.is_none() {
                return Err(missing(
                    field_path(&at, "index"),
                    "required on button components (0–9)",
                ));
            }
        }
        let parameters_path = field_path(&at, "parameters");
        for (j, parameter) in component.parameters.iter().flatten().enumerate() {
            validate_parameter(parameter, &index_path(&parameters_path, j))?;
        }
    }
    Ok(())
}

fn validate_parameter(parameter: &Parameter, path: &str) -> Result<(), JobError> {
    let at = field_path(path, parameter.value.type_name());
    match &parameter.value {
        ParameterValue::Text(text) | ParameterValue::Payload(text) => check_not_blank(&at, text)?,
        ParameterValue::CouponCode(code) => check_chars(&at, code, 1, MAX_COUPON_CODE_CHARS)?,
        ParameterValue::Currency(currency) => {
            check_not_blank(&field_path(&at, "fallback_value"), &currency.fallback_value)?;
            let iso =
                currency.code.len() == 3 && currency.code.bytes().all(|b| b.is_ascii_uppercase());
            if !iso {
                return Err(invalid(
                    field_path(&at, "code"),
                    "must be an ISO 4217 code like USD",
                ));
            }
        }
        ParameterValue::DateTime(date) => {
            check_not_blank(&field_path(&at, "fallback_value"), &date.fallback_value)?
        }
        ParameterValue::Image(media)
        | ParameterValue::Video(media)
        | ParameterValue::Document(media) => validate_media(media, &at)?,
    }
    if let Some(name) = &parameter.parameter_name {
        check_not_blank(&field_path(path, "parameter_name"), name)?;
    }
    Ok(())
}

fn validate_interactive(interactive: &Interactive, path: &str) -> Result<(), JobError> {
    if let Some(header) = &interactive.header {
        let at = field_path(&field_path(path, "header"), header.type_name());
        match header {
            Header::Text(text) => check_chars(&at, text, 1, MAX_HEADER_TEXT_CHARS)?,
            Header::Image(media) | Header::Video(media) | Header::Document(media) => {
                validate_media(media, &at)?
            }
        }
    }
    check_chars(
        &field_path(&field_path(path, "body"), "text"),
        &interactive.body.text,
        1,
        MAX_INTERACTIVE_BODY_CHARS,
    )?;
    if let Some(footer) = &interactive.footer {
        check_chars(
            &field_path(&field_path(path, "footer"), "text"),
            &footer.text,
            1,
            MAX_FOOTER_CHARS,
        )?;
    }
    let action = field_path(path, "action");
    match &interactive.action {
        Action::Button(buttons) => validate_buttons(&buttons.buttons, &action),
        Action::List(list) => validate_list(list, &action),
    }
}

fn validate_buttons(buttons: &[ReplyButton], action: &str) -> Result<(), JobError> {
    let path = field_path(action, "buttons");
    if buttons.is_empty() {
        return Err(invalid(path, "at least 1 reply button"));
    }
    if buttons.len() > MAX_REPLY_BUTTONS {
        return Err(invalid(
            index_path(&path, MAX_REPLY_BUTTONS),
            format!("at most {MAX_REPLY_BUTTONS} reply buttons"),
        ));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, button) in buttons.iter().enumerate() {
        let reply = field_path(&index_path(&path, i), "reply");
        let id_path = field_path(&reply, "id");
        check_chars(&id_path, &button.reply.id, 1, MAX_BUTTON_ID_CHARS)?;
        if let Some(first) = seen.insert(&button.reply.id, i) {
            return Err(invalid(
                id_path,
                format!("duplicate button id (also buttons[{first}])"),
            ));
        }
        check_chars(
            &field_path(&reply, "title"),
            &button.reply.title,
            1,
            MAX_BUTTON_TITLE_CHARS,
        )?;
    }
    Ok(())
}

fn validate_list(list: &ListAction, action: &str) -> Result<(), JobError> {
    check_chars(
        &field_path(action, "button"),
        &list.button,
        1,
        MAX_LIST_BUTTON_CHARS,
    )?;
    let sections_path = field_path(action, "sections");
    if list.sections.is_empty() {
        return Err(invalid(sections_path, "at least 1 section"));
    }
    if list.sections.len() > MAX_SECTIONS {
        return Err(invalid(
            index_path(&sections_path, MAX_SECTIONS),
            format!("at most {MAX_SECTIONS} sections"),
        ));
    }
    // The row limit is over the whole list, so the first row past it is the one to name.
    let mut rows_so_far = 0;
    for (i, section) in list.sections.iter().enumerate() {
        if rows_so_far + section.rows.len() > MAX_ROWS {
            let row = MAX_ROWS - rows_so_far;
            return Err(invalid(
                format!("{sections_path}[{i}].rows[{row}]"),
                format!("at most {MAX_ROWS} rows in all sections"),
            ));
        }
        rows_so_far += section.rows.len();
    }
    let several = list.sections.len() > 1;
    let mut seen: HashMap<&str, String> = HashMap::new();
    for (i, section) in list.sections.iter().enumerate() {
        let at = index_path(&sections_path, i);
        match &section.title {
            Some(title) => {
                check_chars(&field_path(&at, "title"), title, 1, MAX_SECTION_TITLE_CHARS)?
            }
            None if several => {
                return Err(missing(
                    field_path(&at, "title"),
                    "required when there is more than one section",
                ));
            }
            None => {}
        }
        let rows_path = field_path(&at, "rows");
        if section.rows.is_empty() {
            return Err(invalid(rows_path, "at least 1 row"));
        }
        for (j, row) in section.rows.iter().enumerate() {
            let row_path = index_path(&rows_path, j);
            let id_path = field_path(&row_path, "id");
            check_chars(&id_path, &row.id, 1, MAX_ROW_ID_CHARS)?;
            if let Some(first) = seen.insert(&row.id, format!("sections[{i}].rows[{j}]")) {
                return Err(invalid(id_path, format!("duplicate row id (also {first})")));
            }
            check_chars(
                &field_path(&row_path, "title"),
                &row.title,
                1,
                MAX_ROW_TITLE_CHARS,
            )?;
            if let Some(description) = &row.description {
                check_chars(
                    &field_path(&row_path, "description"),
                    description,
                    0,
                    MAX_ROW_DESCRIPTION_CHARS,
                )?;
            }
        }
    }
    Ok(())
}

fn validate_location(location: &Location, path: &str) -> Result<(), JobError> {
    if !(location.latitude.is_finite() && (-90.0..=90.0).contains(&location.latitude)) {
        return Err(invalid(
            field_path(path, "latitude"),
            "must be between -90 and 90",
        ));
    }
    if !(location.longitude.is_finite() && (-180.0..=180.0).contains(&location.longitude)) {
        return Err(invalid(
            field_path(path, "longitude"),
            "must be between -180 and 180",
        ));
    }
    Ok(())
}

fn validate_contacts(contacts: &[Contact], path: &str) -> Result<(), JobError> {
    if contacts.is_empty() {
        return Err(invalid(path, "at least 1 contact"));
    }
    for (i, contact) in contacts.iter().enumerate() {
        let at = index_path(path, i);
        check_not_blank(
            &field_path(&field_path(&at, "name"), "formatted_name"),
            &contact.name.formatted_name,
        )?;
        if let Some(birthday) = &contact.birthday {
            let valid =
                birthday.len() == 10 && NaiveDate::parse_from_str(birthday, "%Y-%m-%d").is_ok();
            if !valid {
                return Err(invalid(
                    field_path(&at, "birthday"),
                    "must be a date as YYYY-MM-DD",
                ));
            }
        }
    }
    Ok(())
}

fn check_chars(path: &str, value: &str, min: usize, max: usize) -> Result<(), JobError> {
    let count = value.chars().count();
    if (min..=max).contains(&count) {
        return Ok(());
    }
    let rule = if min == 0 {
        format!("must be at most {max} characters")
    } else {
        format!("must be {min}–{max} characters")
    };
    Err(invalid(path, rule))
}

fn check_not_blank(path: &str, value: &str) -> Result<(), JobError> {
    if value.trim().is_empty() {
        Err(invalid(path, "must not be empty"))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Strict JSON: serde_json::Value, but a duplicate key is an error
// ---------------------------------------------------------------------------------------------

/// Parses like `serde_json::Value` but refuses duplicate keys: with them, what a job says would
/// depend on which parser reads it. serde_json's recursion limit still bounds the nesting.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {:?}",
                    excerpt(&key)
                )));
            }
            let StrictValue(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most [`MAX_ECHO_CHARS`] of producer input, for error texts.
fn excerpt(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(MAX_ECHO_CHARS) {
        None => Cow::Borrowed(s),
        Some((end, _)) => Cow::Owned(format!("{}…", &s[..end])),
    }
}

fn truncate_chars(s: &mut String, max: usize) {
    if let Some((end, _)) = s.char_indices().nth(max) {
        s.truncate(end);
        s.push('…');
    }
}

// ---------------------------------------------------------------------------------------------
// JSON Schema
// ---------------------------------------------------------------------------------------------

/// JSON Schema of the job wire format, as pretty JSON text with a trailing newline, deterministic.
pub fn json_schema_text() -> String {
    let schema = schemars::schema_for!(Job);
    // `{:#}` is serde_json's infallible pretty printer.
    format!("{:#}\n", schema.as_value())
}

fn schema_from(value: Value) -> Schema {
    match value {
        Value::Object(map) => Schema::from(map),
        Value::Bool(b) => Schema::from(b),
        // Only ever called with object literals below.
        _ => Schema::default(),
    }
}

/// The Media schema restricted to the fields a given place allows, with `link` xor `id`.
fn media_schema(generator: &mut SchemaGenerator, caption: bool, filename: bool) -> Value {
    let mut schema = Media::json_schema(generator).to_value();
    if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        if !caption {
            properties.remove("caption");
        }
        if !filename {
            properties.remove("filename");
        }
    }
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "oneOf".to_owned(),
            json!([{ "required": ["link"] }, { "required": ["id"] }]),
        );
    }
    schema
}

/// One branch of a `{"type": "<tag>", "<tag>": payload, …}` union.
fn tagged_branch(tag: &str, payload: Value, extra: &[(&str, Value)]) -> Value {
    let mut properties = Map::new();
    properties.insert("type".to_owned(), json!({ "const": tag }));
    properties.insert(tag.to_owned(), payload);
    for (name, schema) in extra {
        properties.insert((*name).to_owned(), schema.clone());
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": ["type", tag],
        "additionalProperties": false,
    })
}

impl JsonSchema for Message {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Message")
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let context = generator.subschema_for::<Context>().to_value();
        let extra = [("context", context)];
        let contacts = json!({
            "type": "array",
            "minItems": 1,
            "items": generator.subschema_for::<Contact>(),
        });
        let branches = vec![
            tagged_branch("text", generator.subschema_for::<Text>().to_value(), &extra),
            tagged_branch("image", media_schema(generator, true, false), &extra),
            tagged_branch("video", media_schema(generator, true, false), &extra),
            tagged_branch("audio", media_schema(generator, false, false), &extra),
            tagged_branch("document", media_schema(generator, true, true), &extra),
            tagged_branch("sticker", media_schema(generator, false, false), &extra),
            tagged_branch(
                "template",
                generator.subschema_for::<Template>().to_value(),
                &extra,
            ),
            tagged_branch(
                "interactive",
                generator.subschema_for::<Interactive>().to_value(),
                &extra,
            ),
            tagged_branch(
                "location",
                generator.subschema_for::<Location>().to_value(),
                &extra,
            ),
            tagged_branch("contacts", contacts, &extra),
            tagged_branch(
                "reaction",
                generator.subschema_for::<Reaction>().to_value(),
                &extra,
            ),
        ];
        schema_from(json!({
            "description": "Meta Cloud API message object (SPEC §2): `type` names the one payload object present.",
            "oneOf": branches,
        }))
    }
}

impl JsonSchema for Parameter {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Parameter")
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let extra = [(
            "parameter_name",
            json!({ "type": "string", "minLength": 1 }),
        )];
        let non_empty = json!({ "type": "string", "minLength": 1 });
        let branches = vec![
            tagged_branch("text", non_empty.clone(), &extra),
            tagged_branch(
                "currency",
                generator.subschema_for::<Currency>().to_value(),
                &extra,
            ),
            tagged_branch(
                "date_time",
                generator.subschema_for::<DateTimeParameter>().to_value(),
                &extra,
            ),
            tagged_branch("image", media_schema(generator, false, false), &extra),
            tagged_branch("video", media_schema(generator, false, false), &extra),
            tagged_branch("document", media_schema(generator, false, true), &extra),
            tagged_branch("payload", non_empty, &extra),
            tagged_branch(
                "coupon_code",
                json!({ "type": "string", "minLength": 1, "maxLength": MAX_COUPON_CODE_CHARS }),
                &extra,
            ),
        ];
        schema_from(json!({
            "description": "A template parameter: `type` names the one value present.",
            "oneOf": branches,
        }))
    }
}

impl JsonSchema for Header {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Header")
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let branches = vec![
            tagged_branch(
                "text",
                json!({ "type": "string", "minLength": 1, "maxLength": MAX_HEADER_TEXT_CHARS }),
                &[],
            ),
            tagged_branch("image", media_schema(generator, false, false), &[]),
            tagged_branch("video", media_schema(generator, false, false), &[]),
            tagged_branch("document", media_schema(generator, false, true), &[]),
        ];
        schema_from(json!({
            "description": "An interactive message header: text or media.",
            "oneOf": branches,
        }))
    }
}

impl JsonSchema for Interactive {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Interactive")
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let header = generator.subschema_for::<Header>().to_value();
        let text = generator.subschema_for::<InteractiveText>().to_value();
        let branch = |kind: &str, action: Value| {
            json!({
                "type": "object",
                "properties": {
                    "type": { "const": kind },
                    "header": header,
                    "body": text,
                    "footer": text,
                    "action": action,
                },
                "required": ["type", "body", "action"],
                "additionalProperties": false,
            })
        };
        let buttons = branch(
            "button",
            generator.subschema_for::<ButtonAction>().to_value(),
        );
        let list = branch("list", generator.subschema_for::<ListAction>().to_value());
        schema_from(json!({
            "description": "Meta's interactive object: reply buttons (`button`) or a list (`list`).",
            "oneOf": [buttons, list],
        }))
    }
}

impl JsonSchema for ButtonIndex {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("ButtonIndex")
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schema_from(json!({
            "description": "Position of the button, 0–9, as an integer or a one-digit string.",
            "oneOf": [
                { "type": "integer", "minimum": 0, "maximum": 9 },
                { "type": "string", "pattern": "^[0-9]$" },
            ],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid envelope around `message`.
    fn job_with(message: Value) -> Value {
        json!({
            "id": "ord-1847-confirm",
            "channel": "waspy-ar",
            "to": "+5491126032641",
            "message": message,
        })
    }

    fn text_message() -> Value {
        json!({ "type": "text", "text": { "body": "Hola" } })
    }

    /// A valid job with `patch` merged over its top-level fields (`null` removes one).
    fn envelope(patch: Value) -> Vec<u8> {
        let mut job = job_with(text_message());
        if let (Some(job), Some(patch)) = (job.as_object_mut(), patch.as_object()) {
            for (key, value) in patch {
                if value.is_null() {
                    job.remove(key);
                } else {
                    job.insert(key.clone(), value.clone());
                }
            }
        }
        serde_json::to_vec(&job).unwrap()
    }

    fn message(message: Value) -> Vec<u8> {
        serde_json::to_vec(&job_with(message)).unwrap()
    }

    fn interactive_buttons(count: usize) -> Value {
        let buttons: Vec<Value> = (0..count)
            .map(|i| json!({ "type": "reply", "reply": { "id": format!("b{i}"), "title": format!("Option {i}") } }))
            .collect();
        json!({
            "type": "interactive",
            "interactive": { "type": "button", "body": { "text": "Pick one" }, "action": { "buttons": buttons } }
        })
    }

    fn list(sections: Value) -> Value {
        json!({
            "type": "interactive",
            "interactive": {
                "type": "list",
                "body": { "text": "Choose" },
                "action": { "button": "See options", "sections": sections }
            }
        })
    }

    fn rows(prefix: &str, count: usize) -> Value {
        Value::Array(
            (0..count)
                .map(|i| json!({ "id": format!("{prefix}{i}"), "title": format!("Row {i}") }))
                .collect(),
        )
    }

    fn template(components: Value) -> Value {
        json!({
            "type": "template",
            "template": { "name": "confirmacion_pedido", "language": { "code": "es_AR" }, "components": components }
        })
    }

    fn reject(body: &[u8]) -> Rejection {
        match parse(body) {
            Ok(job) => panic!("expected a rejection, got {job:?}"),
            Err(rejection) => rejection,
        }
    }

    #[test]
    fn spec_example_job_parses() {
        let body = br#"{
          "id": "ord-1847-confirm",
          "idempotency_key": "pedido-1847-confirmacion",
          "channel": "waspy-ar",
          "to": "+5491126032641",
          "message": { "type": "text", "text": { "body": "Hola! Tu pedido fue despachado." } },
          "send_at": "2026-11-22T15:00:00Z",
          "expires_at": "2026-11-23T15:00:00Z",
          "metadata": { "order": 1847 },
          "provider_options": { }
        }"#;
        let job = parse(body).unwrap();
        assert_eq!(job.id, "ord-1847-confirm");
        assert_eq!(job.idempotency_key(), "pedido-1847-confirmacion");
        assert_eq!(job.channel, "waspy-ar");
        assert_eq!(job.to, "+5491126032641");
        assert_eq!(job.to_digits(), "5491126032641");
        assert_eq!(job.message.type_name(), "text");
        assert_eq!(
            job.message.content,
            Content::Text(Text {
                body: "Hola! Tu pedido fue despachado.".into(),
                preview_url: None
            })
        );
        assert_eq!(
            job.send_at.unwrap().to_rfc3339(),
            "2026-11-22T15:00:00+00:00"
        );
        assert_eq!(
            job.expires_at.unwrap().to_rfc3339(),
            "2026-11-23T15:00:00+00:00"
        );
        assert_eq!(job.priority, Priority::Transactional);
        assert_eq!(
            job.metadata,
            Some(json!({ "order": 1847 }).as_object().unwrap().clone())
        );
        assert_eq!(job.provider_options, Some(Map::new()));
        assert_eq!(job.ttl_seconds, None);
    }

    #[test]
    fn idempotency_key_defaults_to_id_and_phone_is_normalised() {
        let job = parse(&envelope(
            json!({ "to": "54 9 (11) 2603-2641", "priority": "bulk", "ttl_seconds": 300 }),
        ))
        .unwrap();
        assert_eq!(job.idempotency_key(), "ord-1847-confirm");
        assert_eq!(job.to, "+5491126032641");
        assert_eq!(job.priority, Priority::Bulk);
        assert_eq!(job.ttl_seconds, Some(300));
    }

    #[test]
    fn offsets_in_timestamps_become_utc() {
        let job = parse(&envelope(json!({ "send_at": "2026-11-22T12:00:00-03:00" }))).unwrap();
        assert_eq!(
            job.send_at.unwrap().to_rfc3339(),
            "2026-11-22T15:00:00+00:00"
        );
    }

    #[test]
    fn null_optional_fields_mean_absent() {
        let body = br#"{"id":"a","channel":"c","to":"+5491126032641","message":{"type":"text","text":{"body":"x","preview_url":null},"context":null},
            "idempotency_key":null,"send_at":null,"expires_at":null,"ttl_seconds":null,"priority":null,"metadata":null,"provider_options":null}"#;
        let job = parse(body).unwrap();
        assert_eq!(job.idempotency_key, None);
        assert_eq!(job.priority, Priority::Transactional);
        assert_eq!(
            serde_json::to_value(&job.message).unwrap(),
            json!({ "type": "text", "text": { "body": "x" } })
        );
    }

    #[test]
    fn deadline_is_the_earlier_bound_and_never_overflows() {
        let received = DateTime::parse_from_rfc3339("2026-11-22T15:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let job = parse(&envelope(json!({ "ttl_seconds": 60 }))).unwrap();
        assert_eq!(
            job.deadline(received).unwrap().to_rfc3339(),
            "2026-11-22T15:01:00+00:00"
        );
        let job = parse(&envelope(
            json!({ "ttl_seconds": 3600, "expires_at": "2026-11-22T15:30:00Z" }),
        ))
        .unwrap();
        assert_eq!(
            job.deadline(received).unwrap().to_rfc3339(),
            "2026-11-22T15:30:00+00:00"
        );
        let job = parse(&envelope(json!({ "ttl_seconds": u64::MAX }))).unwrap();
        assert_eq!(job.deadline(received), None);
        let job = parse(&envelope(json!({}))).unwrap();
        assert_eq!(job.deadline(received), None);
    }

    #[test]
    fn serde_deserialize_applies_the_same_rules() {
        let job: Job =
            serde_json::from_slice(&envelope(json!({ "to": "54 9 11 2603 2641" }))).unwrap();
        assert_eq!(job.to, "+5491126032641");
        let err = serde_json::from_slice::<Job>(&message(interactive_buttons(4))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "message.interactive.action.buttons[3]: at most 3 reply buttons"
        );
        let message: Message = serde_json::from_value(text_message()).unwrap();
        assert_eq!(serde_json::to_value(&message).unwrap(), text_message());
        let err =
            serde_json::from_value::<Message>(json!({ "type": "text", "text": { "body": "" } }))
                .unwrap_err();
        assert_eq!(err.to_string(), "text.body: must be 1–4096 characters");
        let err = serde_json::from_value::<Message>(json!({ "text": {} })).unwrap_err();
        assert!(err.to_string().starts_with("type: missing field"), "{err}");
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let mut body = "\u{feff}".as_bytes().to_vec();
        body.extend(envelope(json!({})));
        assert!(parse(&body).is_ok());
    }

    #[test]
    fn text_limits_count_characters_not_bytes() {
        let at_limit = "ñ".repeat(4096);
        assert!(
            parse(&message(
                json!({ "type": "text", "text": { "body": at_limit } })
            ))
            .is_ok()
        );
        let over = "ñ".repeat(4097);
        let rejection = reject(&message(
            json!({ "type": "text", "text": { "body": over } }),
        ));
        assert_eq!(rejection.error.path, "message.text.body");
        assert_eq!(rejection.error.rule, "must be 1–4096 characters");
        assert_eq!(
            rejection.error.to_string(),
            "message.text.body: must be 1–4096 characters"
        );
    }

    /// Found by the `job_parse` fuzz target: a long number in `metadata` parsed to an f64
    /// one ulp off, so a dead-letter replay (serialise, parse again) changed the job. serde_json
    /// parses floats correctly rounded only with its `float_roundtrip` feature.
    #[test]
    fn a_long_number_in_metadata_survives_serialising() {
        let body = br#"{"id":"j","channel":"demo","to":"+5491126032641","message":{"type":"text","text":{"body":"Hola"}},"metadata":{"order":18444444444444444444444444444444444444444444444444444444444447}}"#;
        let job = parse(body).expect("valid job");
        let again = parse(&serde_json::to_vec(&job).unwrap()).expect("still valid");
        assert_eq!(again, job);
    }

    #[test]
    fn every_message_type_round_trips_to_its_canonical_form() {
        let cases: Vec<(&str, Value)> = vec![
            (
                "text",
                json!({ "type": "text", "text": { "body": "Hola!", "preview_url": false } }),
            ),
            (
                "text",
                json!({ "type": "text", "text": { "body": "Sí, claro https://example.com", "preview_url": true }, "context": { "message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA" } }),
            ),
            (
                "image",
                json!({ "type": "image", "image": { "link": "https://cdn.example.com/a.jpg", "caption": "Tu factura" } }),
            ),
            (
                "image",
                json!({ "type": "image", "image": { "id": "1479537139650973" } }),
            ),
            (
                "video",
                json!({ "type": "video", "video": { "link": "https://cdn.example.com/v.mp4", "caption": "" } }),
            ),
            (
                "audio",
                json!({ "type": "audio", "audio": { "link": "https://cdn.example.com/a.ogg" } }),
            ),
            (
                "document",
                json!({ "type": "document", "document": { "link": "https://cdn.example.com/f.pdf", "caption": "Factura", "filename": "factura-1847.pdf" } }),
            ),
            (
                "sticker",
                json!({ "type": "sticker", "sticker": { "id": "798882015472548" } }),
            ),
            (
                "template",
                json!({ "type": "template", "template": { "name": "hello_world", "language": { "code": "en_US" } } }),
            ),
            (
                "template",
                json!({
                    "type": "template",
                    "template": {
                        "name": "confirmacion_pedido",
                        "language": { "code": "es_AR", "policy": "deterministic" },
                        "components": [
                            { "type": "header", "parameters": [ { "type": "image", "image": { "link": "https://cdn.example.com/h.png" } } ] },
                            { "type": "body", "parameters": [
                                { "type": "text", "text": "María", "parameter_name": "cliente" },
                                { "type": "currency", "currency": { "fallback_value": "$100.99", "code": "ARS", "amount_1000": 100990 } },
                                { "type": "date_time", "date_time": { "fallback_value": "22 de noviembre" } }
                            ] },
                            { "type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [ { "type": "payload", "payload": "CANCELAR-1847" } ] },
                            { "type": "button", "sub_type": "url", "index": 1, "parameters": [ { "type": "text", "text": "1847" } ] },
                            { "type": "button", "sub_type": "copy_code", "index": "2", "parameters": [ { "type": "coupon_code", "coupon_code": "25OFF" } ] }
                        ]
                    }
                }),
            ),
            (
                "template",
                json!({
                    "type": "template",
                    "template": { "name": "factura", "language": { "code": "es" }, "components": [
                        { "type": "header", "parameters": [ { "type": "document", "document": { "id": "123", "filename": "f.pdf" } } ] },
                        { "type": "footer" }
                    ] }
                }),
            ),
            (
                "interactive",
                json!({
                    "type": "interactive",
                    "interactive": {
                        "type": "button",
                        "header": { "type": "text", "text": "Pedido 1847" },
                        "body": { "text": "¿Confirmás la entrega?" },
                        "footer": { "text": "Respondé con un botón" },
                        "action": { "buttons": [
                            { "type": "reply", "reply": { "id": "si", "title": "Sí" } },
                            { "type": "reply", "reply": { "id": "no", "title": "No" } },
                            { "type": "reply", "reply": { "id": "luego", "title": "Más tarde" } }
                        ] }
                    }
                }),
            ),
            (
                "interactive",
                json!({
                    "type": "interactive",
                    "interactive": {
                        "type": "list",
                        "header": { "type": "image", "image": { "link": "https://cdn.example.com/menu.png" } },
                        "body": { "text": "Elegí un horario" },
                        "action": {
                            "button": "Horarios",
                            "sections": [
                                { "title": "Mañana", "rows": [ { "id": "m9", "title": "9:00", "description": "Primer turno" }, { "id": "m10", "title": "10:00" } ] },
                                { "title": "Tarde", "rows": [ { "id": "t15", "title": "15:00" } ] }
                            ]
                        }
                    }
                }),
            ),
            (
                "interactive",
                list(json!([ { "rows": [ { "id": "only", "title": "Única" } ] } ])),
            ),
            (
                "location",
                json!({ "type": "location", "location": { "latitude": -34.6037, "longitude": -58.3816, "name": "Obelisco", "address": "Av. 9 de Julio s/n, CABA" } }),
            ),
            (
                "location",
                json!({ "type": "location", "location": { "latitude": 90.0, "longitude": -180.0 } }),
            ),
            (
                "contacts",
                json!({
                    "type": "contacts",
                    "contacts": [{
                        "name": { "formatted_name": "María José Pérez", "first_name": "María", "middle_name": "José", "last_name": "Pérez", "prefix": "Dra.", "suffix": "Jr." },
                        "phones": [ { "phone": "+34 600 000 000", "type": "CELL", "wa_id": "34600000000" } ],
                        "emails": [ { "email": "maria@example.com", "type": "WORK" } ],
                        "addresses": [ { "street": "Calle 1", "city": "Madrid", "state": "M", "zip": "28001", "country": "España", "country_code": "ES", "type": "HOME" } ],
                        "org": { "company": "Acme", "department": "Ventas", "title": "Gerente" },
                        "urls": [ { "url": "https://example.com", "type": "WORK" } ],
                        "birthday": "1980-02-29"
                    }, {
                        "name": { "formatted_name": "Juan" }
                    }]
                }),
            ),
            (
                "reaction",
                json!({ "type": "reaction", "reaction": { "message_id": "wamid.ABC", "emoji": "👍" } }),
            ),
            (
                "reaction",
                json!({ "type": "reaction", "reaction": { "message_id": "wamid.ABC", "emoji": "" } }),
            ),
        ];
        for (type_name, canonical) in cases {
            let job = match parse(&message(canonical.clone())) {
                Ok(job) => job,
                Err(rejection) => panic!("{canonical}: {rejection}"),
            };
            assert_eq!(job.message.type_name(), type_name);
            assert_eq!(serde_json::to_value(&job.message).unwrap(), canonical);
            // The job as a whole serializes back into a body that parses to the same job.
            let again = parse(&serde_json::to_vec(&job).unwrap()).unwrap();
            assert_eq!(again, job);
        }
    }

    #[test]
    fn typed_access_to_the_parsed_message() {
        let job = parse(&message(template(json!([
            { "type": "button", "sub_type": "url", "index": "3", "parameters": [ { "type": "text", "text": "x" } ] }
        ]))))
        .unwrap();
        let Content::Template(template) = &job.message.content else {
            panic!("not a template: {:?}", job.message);
        };
        let component = &template.components.as_ref().unwrap()[0];
        assert_eq!(component.kind, ComponentType::Button);
        assert_eq!(component.sub_type, Some(ButtonSubType::Url));
        assert_eq!(component.index.map(ButtonIndex::value), Some(3));
        let parameter = &component.parameters.as_ref().unwrap()[0];
        assert_eq!(parameter.value, ParameterValue::Text("x".into()));

        let job = parse(&message(interactive_buttons(2))).unwrap();
        let Content::Interactive(interactive) = &job.message.content else {
            panic!("not interactive");
        };
        assert_eq!(interactive.type_name(), "button");
        let Action::Button(action) = &interactive.action else {
            panic!("not buttons");
        };
        assert_eq!(action.buttons[1].reply.id, "b1");
    }

    struct Invalid {
        name: &'static str,
        body: Vec<u8>,
        path: &'static str,
        code: ErrorCode,
        /// The exact rule, where the wording is part of what is tested.
        rule: Option<&'static str>,
    }

    fn case(
        name: &'static str,
        body: Vec<u8>,
        path: &'static str,
        code: ErrorCode,
        rule: Option<&'static str>,
    ) -> Invalid {
        Invalid {
            name,
            body,
            path,
            code,
            rule,
        }
    }

    #[test]
    fn invalid_jobs_name_the_path_and_the_rule() {
        use ErrorCode::*;
        let long = |n: usize| "x".repeat(n);
        let cases = vec![
            // The body as a whole.
            case("oversize", vec![b' '; MAX_BODY_BYTES + 1], "$", Oversize, Some("body is 65537 bytes; at most 65536 are allowed")),
            case("invalid utf-8", b"{\"id\": \"\xff\xfe\"}".to_vec(), "$", Malformed, Some("not valid UTF-8 (at byte 8)")),
            case("empty body", Vec::new(), "$", Malformed, None),
            case("not json", b"id=1".to_vec(), "$", Malformed, None),
            case("not an object", b"[1, 2]".to_vec(), "$", Malformed, Some("must be a JSON object, not an array")),
            case("a string", b"\"job\"".to_vec(), "$", Malformed, Some("must be a JSON object, not a string")),
            case("deep nesting", vec![b'['; 10_000], "$", Malformed, None),
            case("deep nesting in message", {
                let mut body = br#"{"id":"a","channel":"c","to":"+5491126032641","message":"#.to_vec();
                body.extend(std::iter::repeat_n(b'{', 5_000).flat_map(|_| *b"{\"a\":"));
                body
            }, "$", Malformed, None),
            case("number out of range", br#"{"id":"a","channel":"c","to":"+5491126032641","message":{"type":"location","location":{"latitude":1e400,"longitude":0}}}"#.to_vec(), "$", Malformed, None),
            case("duplicate key", br#"{"id":"a","id":"b","channel":"c","to":"+5491126032641","message":{"type":"text","text":{"body":"x"}}}"#.to_vec(), "$", Malformed, None),
            case("trailing garbage", [envelope(json!({})), b"}".to_vec()].concat(), "$", Malformed, None),
            // Envelope shape.
            case("unknown top-level field", envelope(json!({ "chanel": "waspy-ar" })), "chanel", UnknownField,
                Some("unknown field (expected one of `id`, `idempotency_key`, `channel`, `to`, `message`, `send_at`, `expires_at`, `ttl_seconds`, `priority`, `metadata`, `provider_options`)")),
            case("unknown key with a backtick", envelope(json!({ "a`, b": 1 })), "[\"a`, b\"]", UnknownField, None),
            case("odd top-level key", envelope(json!({ "a.b": 1 })), "[\"a.b\"]", UnknownField, None),
            case("missing id", envelope(json!({ "id": null })), "id", MissingField, Some("missing field")),
            case("missing channel", envelope(json!({ "channel": null })), "channel", MissingField, None),
            case("missing to", envelope(json!({ "to": null })), "to", MissingField, None),
            case("missing message", envelope(json!({ "message": null })), "message", MissingField, None),
            case("id not a string", envelope(json!({ "id": 1847 })), "id", InvalidField, Some("invalid type: integer `1847`, expected a string")),
            case("ttl negative", envelope(json!({ "ttl_seconds": -1 })), "ttl_seconds", InvalidField, None),
            case("ttl fractional", envelope(json!({ "ttl_seconds": 1.5 })), "ttl_seconds", InvalidField, None),
            case("priority unknown", envelope(json!({ "priority": "urgent" })), "priority", InvalidField, Some("unknown variant `urgent`, expected `transactional` or `bulk`")),
            case("metadata not an object", envelope(json!({ "metadata": [1] })), "metadata", InvalidField, None),
            case("provider_options not an object", envelope(json!({ "provider_options": "x" })), "provider_options", InvalidField, None),
            // Envelope values.
            case("id with a control character", envelope(json!({ "id": "ord\u{7}1" })), "id", InvalidField, Some("must be 1–128 printable ASCII characters ('\\u{7}' at byte 3 is not one)")),
            case("id empty", envelope(json!({ "id": "" })), "id", InvalidField, Some("must be 1–128 printable ASCII characters")),
            case("id too long", envelope(json!({ "id": long(129) })), "id", InvalidField, None),
            case("idempotency key not ASCII", envelope(json!({ "idempotency_key": "pedido-ñ" })), "idempotency_key", InvalidField, None),
            case("idempotency key too long", envelope(json!({ "idempotency_key": long(257) })), "idempotency_key", InvalidField, Some("must be 1–256 printable ASCII characters")),
            case("channel with a dot", envelope(json!({ "channel": "waspy.ar" })), "channel", InvalidField, Some("must be 1–64 characters of [A-Za-z0-9_-]")),
            case("channel too long", envelope(json!({ "channel": long(65) })), "channel", InvalidField, None),
            case("bad phone", envelope(json!({ "to": "+54 11 abc" })), "to", InvalidPhone, Some("invalid character 'a'; expected an E.164 number like +5491126032641")),
            case("phone starting with 0", envelope(json!({ "to": "+0491126032641" })), "to", InvalidPhone, None),
            case("phone too short", envelope(json!({ "to": "+5411234" })), "to", InvalidPhone, None),
            case("phone not a string", envelope(json!({ "to": 5491126032641_u64 })), "to", InvalidField, None),
            case("send_at not RFC 3339", envelope(json!({ "send_at": "tomorrow" })), "send_at", InvalidField, None),
            case("send_at without zone", envelope(json!({ "send_at": "2026-11-22T15:00:00" })), "send_at", InvalidField, None),
            case("expires before send", envelope(json!({ "send_at": "2026-11-22T15:00:00Z", "expires_at": "2026-11-22T14:00:00Z" })), "expires_at", InvalidField, Some("must be later than send_at")),
            case("ttl zero", envelope(json!({ "ttl_seconds": 0 })), "ttl_seconds", InvalidField, Some("must be at least 1")),
            case("metadata over 8 KiB", envelope(json!({ "metadata": { "blob": long(MAX_METADATA_BYTES) } })), "metadata", InvalidField, Some("must be at most 8192 bytes as JSON (is 8203)")),
            // Message shape.
            case("message not an object", message(json!("hola")), "message", InvalidField, Some("must be an object, not a string")),
            case("message type missing", message(json!({ "text": { "body": "x" } })), "message.type", MissingField, None),
            case("message type unknown", message(json!({ "type": "txt", "txt": { "body": "x" } })), "message.type", InvalidField, Some("unknown message type \"txt\"; expected one of: text, image, video, audio, document, sticker, template, interactive, location, contacts, reaction")),
            case("message type not a string", message(json!({ "type": 1 })), "message.type", InvalidField, Some("must be a string, not a number")),
            case("unknown message field", message(json!({ "type": "text", "text": { "body": "x" }, "foo": 1 })), "message.foo", UnknownField, Some("unknown field (expected one of `type`, `text`, `context`)")),
            case("payload of another type", message(json!({ "type": "text", "image": { "id": "1" } })), "message.image", UnknownField, Some("unknown field (the message type is \"text\")")),
            case("payload missing", message(json!({ "type": "text" })), "message.text", MissingField, None),
            case("unknown nested field", message(json!({ "type": "text", "text": { "bdy": "x" } })), "message.text.bdy", UnknownField, Some("unknown field (expected `body` or `preview_url`)")),
            case("text.body of the wrong type", message(json!({ "type": "text", "text": { "body": 42 } })), "message.text.body", InvalidField, Some("invalid type: integer `42`, expected a string")),
            case("text.body missing", message(json!({ "type": "text", "text": { "preview_url": true } })), "message.text.body", MissingField, None),
            case("unknown context field", message(json!({ "type": "text", "text": { "body": "x" }, "context": { "id": "wamid" } })), "message.context.id", UnknownField, None),
            case("caption on audio", message(json!({ "type": "audio", "audio": { "id": "1", "caption": "x" } })), "message.audio.caption", UnknownField, None),
            case("filename on image", message(json!({ "type": "image", "image": { "id": "1", "filename": "a.png" } })), "message.image.filename", UnknownField, None),
            // Message limits.
            case("empty text body", message(json!({ "type": "text", "text": { "body": "" } })), "message.text.body", InvalidField, Some("must be 1–4096 characters")),
            case("empty context id", message(json!({ "type": "text", "text": { "body": "x" }, "context": { "message_id": "" } })), "message.context.message_id", InvalidField, Some("must not be empty")),
            case("media with link and id", message(json!({ "type": "image", "image": { "id": "1", "link": "https://a.example/x.png" } })), "message.image", InvalidField, None),
            case("media with neither", message(json!({ "type": "video", "video": { "caption": "x" } })), "message.video", MissingField, Some("needs `link` or `id`")),
            case("media over http", message(json!({ "type": "image", "image": { "link": "http://a.example/x.png" } })), "message.image.link", InvalidField, Some("must be an https:// URL")),
            case("media link without host", message(json!({ "type": "document", "document": { "link": "https:///x.pdf" } })), "message.document.link", InvalidField, Some("must be an https:// URL with a host")),
            case("caption too long", message(json!({ "type": "image", "image": { "id": "1", "caption": long(1025) } })), "message.image.caption", InvalidField, Some("must be at most 1024 characters")),
            case("template name with capitals", message(json!({ "type": "template", "template": { "name": "Confirmacion", "language": { "code": "es" } } })), "message.template.name", InvalidField, Some("must be 1–512 characters of [a-z0-9_]")),
            case("template language empty", message(json!({ "type": "template", "template": { "name": "a", "language": { "code": "" } } })), "message.template.language.code", InvalidField, None),
            case("template language missing", message(json!({ "type": "template", "template": { "name": "a" } })), "message.template.language", MissingField, None),
            case("template policy", message(json!({ "type": "template", "template": { "name": "a", "language": { "code": "es", "policy": "fallback" } } })), "message.template.language.policy", InvalidField, None),
            case("button without sub_type", message(template(json!([ { "type": "button", "index": 0 } ]))), "message.template.components[0].sub_type", MissingField, None),
            case("button without index", message(template(json!([ { "type": "body" }, { "type": "button", "sub_type": "url" } ]))), "message.template.components[1].index", MissingField, None),
            case("button index 10", message(template(json!([ { "type": "button", "sub_type": "url", "index": 10 } ]))), "message.template.components[0].index", InvalidField, Some("must be 0–9, as an integer or a one-digit string")),
            case("button index not a digit", message(template(json!([ { "type": "button", "sub_type": "url", "index": "10" } ]))), "message.template.components[0].index", InvalidField, None),
            case("sub_type on a body", message(template(json!([ { "type": "body", "sub_type": "url" } ]))), "message.template.components[0].sub_type", UnknownField, None),
            case("component type unknown", message(template(json!([ { "type": "carousel" } ]))), "message.template.components[0].type", InvalidField, None),
            case("parameter type unknown", message(template(json!([ { "type": "body", "parameters": [ { "type": "txt", "txt": "x" } ] } ]))), "message.template.components[0].parameters[0].type", InvalidField, None),
            case("parameter text empty", message(template(json!([ { "type": "body", "parameters": [ { "type": "text", "text": "x" }, { "type": "text", "text": " " } ] } ]))), "message.template.components[0].parameters[1].text", InvalidField, None),
            case("currency code", message(template(json!([ { "type": "body", "parameters": [ { "type": "currency", "currency": { "fallback_value": "$1", "code": "usd", "amount_1000": 1000 } } ] } ]))), "message.template.components[0].parameters[0].currency.code", InvalidField, None),
            case("4 reply buttons", message(interactive_buttons(4)), "message.interactive.action.buttons[3]", InvalidField, Some("at most 3 reply buttons")),
            case("no reply buttons", message(interactive_buttons(0)), "message.interactive.action.buttons", InvalidField, Some("at least 1 reply button")),
            case("duplicate button ids", message(json!({ "type": "interactive", "interactive": { "type": "button", "body": { "text": "?" }, "action": { "buttons": [
                { "type": "reply", "reply": { "id": "a", "title": "A" } }, { "type": "reply", "reply": { "id": "a", "title": "B" } } ] } } })),
                "message.interactive.action.buttons[1].reply.id", InvalidField, Some("duplicate button id (also buttons[0])")),
            case("button title too long", message(json!({ "type": "interactive", "interactive": { "type": "button", "body": { "text": "?" }, "action": { "buttons": [
                { "type": "reply", "reply": { "id": "a", "title": long(21) } } ] } } })),
                "message.interactive.action.buttons[0].reply.title", InvalidField, Some("must be 1–20 characters")),
            case("interactive type unknown", message(json!({ "type": "interactive", "interactive": { "type": "product", "body": { "text": "?" }, "action": {} } })), "message.interactive.type", InvalidField, None),
            case("interactive body missing", message(json!({ "type": "interactive", "interactive": { "type": "button", "action": { "buttons": [] } } })), "message.interactive.body", MissingField, None),
            case("interactive body too long", message(json!({ "type": "interactive", "interactive": { "type": "list", "body": { "text": long(1025) }, "action": { "button": "b", "sections": [ { "rows": rows("r", 1) } ] } } })), "message.interactive.body.text", InvalidField, Some("must be 1–1024 characters")),
            case("footer too long", message(json!({ "type": "interactive", "interactive": { "type": "list", "body": { "text": "b" }, "footer": { "text": long(61) }, "action": { "button": "b", "sections": [ { "rows": rows("r", 1) } ] } } })), "message.interactive.footer.text", InvalidField, Some("must be 1–60 characters")),
            case("header text too long", message(json!({ "type": "interactive", "interactive": { "type": "list", "header": { "type": "text", "text": long(61) }, "body": { "text": "b" }, "action": { "button": "b", "sections": [ { "rows": rows("r", 1) } ] } } })), "message.interactive.header.text", InvalidField, None),
            case("header caption", message(json!({ "type": "interactive", "interactive": { "type": "button", "header": { "type": "image", "image": { "id": "1", "caption": "c" } }, "body": { "text": "b" }, "action": { "buttons": [] } } })), "message.interactive.header.image.caption", UnknownField, None),
            case("list action on a button message", message(json!({ "type": "interactive", "interactive": { "type": "button", "body": { "text": "b" }, "action": { "button": "b", "sections": [] } } })), "message.interactive.action.button", UnknownField, None),
            case("buttons on a list message", message(json!({ "type": "interactive", "interactive": { "type": "list", "body": { "text": "b" }, "action": { "button": "b", "buttons": [] } } })), "message.interactive.action.buttons", UnknownField, None),
            case("11 sections", message(list(Value::Array((0..11).map(|i| json!({ "title": format!("S{i}"), "rows": rows(&format!("s{i}-"), 1) })).collect()))), "message.interactive.action.sections[10]", InvalidField, Some("at most 10 sections")),
            case("11 rows in all", message(list(json!([ { "title": "A", "rows": rows("a", 6) }, { "title": "B", "rows": rows("b", 5) } ]))), "message.interactive.action.sections[1].rows[4]", InvalidField, Some("at most 10 rows in all sections")),
            case("section without rows", message(list(json!([ { "title": "A", "rows": [] } ]))), "message.interactive.action.sections[0].rows", InvalidField, None),
            case("untitled section among several", message(list(json!([ { "title": "A", "rows": rows("a", 1) }, { "rows": rows("b", 1) } ]))), "message.interactive.action.sections[1].title", MissingField, Some("required when there is more than one section")),
            case("row title too long", message(list(json!([ { "rows": [ { "id": "r", "title": long(25) } ] } ]))), "message.interactive.action.sections[0].rows[0].title", InvalidField, Some("must be 1–24 characters")),
            case("row description too long", message(list(json!([ { "rows": [ { "id": "r", "title": "t", "description": long(73) } ] } ]))), "message.interactive.action.sections[0].rows[0].description", InvalidField, Some("must be at most 72 characters")),
            case("duplicate row ids across sections", message(list(json!([ { "title": "A", "rows": rows("r", 2) }, { "title": "B", "rows": rows("r", 1) } ]))), "message.interactive.action.sections[1].rows[0].id", InvalidField, Some("duplicate row id (also sections[0].rows[0])")),
            case("list button too long", message(json!({ "type": "interactive", "interactive": { "type": "list", "body": { "text": "b" }, "action": { "button": long(21), "sections": [ { "rows": rows("r", 1) } ] } } })), "message.interactive.action.button", InvalidField, None),
            case("latitude out of range", message(json!({ "type": "location", "location": { "latitude": 90.5, "longitude": 0 } })), "message.location.latitude", InvalidField, Some("must be between -90 and 90")),
            case("longitude out of range", message(json!({ "type": "location", "location": { "latitude": 0, "longitude": -180.01 } })), "message.location.longitude", InvalidField, Some("must be between -180 and 180")),
            case("latitude as a string", message(json!({ "type": "location", "location": { "latitude": "1", "longitude": 0 } })), "message.location.latitude", InvalidField, None),
            case("no contacts", message(json!({ "type": "contacts", "contacts": [] })), "message.contacts", InvalidField, Some("at least 1 contact")),
            case("contact without a name", message(json!({ "type": "contacts", "contacts": [ { "name": { "formatted_name": "A" } }, { "phones": [] } ] })), "message.contacts[1].name", MissingField, None),
            case("contact name empty", message(json!({ "type": "contacts", "contacts": [ { "name": { "formatted_name": "" } } ] })), "message.contacts[0].name.formatted_name", InvalidField, None),
            case("contact phone typo", message(json!({ "type": "contacts", "contacts": [ { "name": { "formatted_name": "A" }, "phones": [ { "number": "+1" } ] } ] })), "message.contacts[0].phones[0].number", UnknownField, None),
            case("contact birthday", message(json!({ "type": "contacts", "contacts": [ { "name": { "formatted_name": "A" }, "birthday": "1980-02-30" } ] })), "message.contacts[0].birthday", InvalidField, None),
            case("reaction without message id", message(json!({ "type": "reaction", "reaction": { "message_id": "", "emoji": "👍" } })), "message.reaction.message_id", InvalidField, None),
            case("reaction without emoji", message(json!({ "type": "reaction", "reaction": { "message_id": "wamid" } })), "message.reaction.emoji", MissingField, None),
        ];
        assert!(cases.len() >= 30);
        let mut failures = Vec::new();
        for c in &cases {
            match parse(&c.body) {
                Ok(_) => failures.push(format!("{}: accepted", c.name)),
                Err(r) => {
                    let e = &r.error;
                    if e.path != c.path
                        || e.code != c.code
                        || c.rule.is_some_and(|rule| e.rule != rule)
                    {
                        failures.push(format!(
                            "{}: got {:?} {:?} {:?}, want {:?} {:?} {:?}",
                            c.name, e.code, e.path, e.rule, c.code, c.path, c.rule
                        ));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn shape_errors_come_before_value_errors() {
        // A bad phone and a typo in the message: the typo is reported, since it breaks every job.
        let mut job = job_with(json!({ "type": "text", "text": { "bdy": "x" } }));
        job["to"] = json!("123");
        let rejection = reject(&serde_json::to_vec(&job).unwrap());
        assert_eq!(rejection.error.code, ErrorCode::UnknownField);
        assert_eq!(rejection.error.path, "message.text.bdy");
    }

    #[test]
    fn rejections_carry_the_job_id_and_channel_when_valid() {
        let rejection = reject(&envelope(json!({ "to": "+0123" })));
        assert_eq!(rejection.job_id.as_deref(), Some("ord-1847-confirm"));
        assert_eq!(rejection.channel.as_deref(), Some("waspy-ar"));
        assert_eq!(rejection.to_string(), rejection.error.to_string());

        let rejection = reject(&envelope(json!({ "chanel": "x" })));
        assert_eq!(rejection.job_id.as_deref(), Some("ord-1847-confirm"));

        let rejection = reject(&envelope(json!({ "id": "bad\nid", "channel": "a.b" })));
        assert_eq!(rejection.job_id, None);
        assert_eq!(rejection.channel, None);

        let rejection = reject(&envelope(json!({ "id": 7 })));
        assert_eq!(rejection.job_id, None);
        assert_eq!(rejection.channel.as_deref(), Some("waspy-ar"));

        let mut oversize = envelope(json!({}));
        oversize.resize(MAX_BODY_BYTES + 1, b' ');
        let rejection = reject(&oversize);
        assert_eq!(rejection.error.code, ErrorCode::Oversize);
        assert_eq!(rejection.job_id, None);
    }

    #[test]
    fn a_body_of_exactly_the_limit_is_read() {
        let mut body = envelope(json!({}));
        body.resize(MAX_BODY_BYTES, b' ');
        assert!(parse(&body).is_ok());
    }

    #[test]
    fn echoed_input_is_kept_short() {
        let rejection = reject(&message(json!({ "type": "x".repeat(10_000) })));
        assert_eq!(rejection.error.path, "message.type");
        assert!(rejection.error.rule.chars().count() <= MAX_RULE_CHARS + 1);
        let rejection = reject(&envelope(
            json!({ "id": 1, "ttl_seconds": "y".repeat(10_000) }),
        ));
        assert!(rejection.error.rule.chars().count() <= MAX_RULE_CHARS + 1);
        let key = format!("k{}", "é".repeat(1000));
        let rejection = reject(&envelope(json!({ key: 1 })));
        assert_eq!(rejection.error.code, ErrorCode::UnknownField);
        assert!(
            rejection.error.path.chars().count() < 80,
            "{}",
            rejection.error.path
        );
    }

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

    #[test]
    fn codes_and_priorities_have_their_wire_names() {
        let codes = [
            (ErrorCode::Oversize, "oversize"),
            (ErrorCode::Malformed, "malformed"),
            (ErrorCode::UnknownField, "unknown_field"),
            (ErrorCode::MissingField, "missing_field"),
            (ErrorCode::InvalidField, "invalid_field"),
            (ErrorCode::InvalidPhone, "invalid_phone"),
        ];
        for (code, name) in codes {
            assert_eq!(code.as_str(), name);
            assert_eq!(serde_json::to_value(code).unwrap(), json!(name));
        }
        assert_eq!(Priority::Transactional.as_str(), "transactional");
        assert_eq!(Priority::Bulk.as_str(), "bulk");
        assert_eq!(serde_json::to_value(Priority::Bulk).unwrap(), json!("bulk"));
    }

    #[test]
    fn no_input_makes_it_panic() {
        // Every prefix and many one-byte corruptions of a rich job: all must return, Ok or Err.
        let body = message(json!({
            "type": "interactive",
            "interactive": {
                "type": "list",
                "header": { "type": "document", "document": { "link": "https://a.example/f.pdf", "filename": "f.pdf" } },
                "body": { "text": "Elegí" },
                "action": { "button": "Ver", "sections": [ { "title": "A", "rows": [ { "id": "1", "title": "Uno", "description": "d" } ] } ] }
            },
            "context": { "message_id": "wamid.X" }
        }));
        for end in 0..=body.len() {
            let _ = parse(&body[..end]);
        }
        for i in 0..body.len() {
            for replacement in [b'"', b'{', b'[', b'}', b'0', b'\\', 0xff, b'-', b'e'] {
                let mut corrupt = body.clone();
                corrupt[i] = replacement;
                let _ = parse(&corrupt);
            }
        }
        for weird in [
            &b"{}"[..],
            b"null",
            b"1e999999",
            b"-0",
            b"{\"id\":\"a\",\"channel\":\"c\",\"to\":\"+5491126032641\",\"message\":{\"type\":\"location\",\"location\":{\"latitude\":-1.7976931348623157e308,\"longitude\":1e-400}}}",
            b"{\"ttl_seconds\":18446744073709551616}",
            b"{\"message\":{\"type\":\"template\",\"template\":{\"name\":\"a\",\"language\":{\"code\":\"e\"},\"components\":[{\"type\":\"button\",\"sub_type\":\"url\",\"index\":-99999999999999999999}]}}}",
            "\"\u{0}\u{1f}\"".as_bytes(),
        ] {
            let _ = parse(weird);
        }
    }

    #[test]
    fn json_schema_is_deterministic_and_closed() {
        let text = json_schema_text();
        assert_eq!(text, json_schema_text());
        assert!(text.ends_with("}\n"));
        let schema: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(schema["additionalProperties"], json!(false));
        assert!(text.contains("\"additionalProperties\": false"));
        assert_eq!(schema["title"], json!("Job"));
        let required = schema["required"].as_array().unwrap();
        for field in ["id", "channel", "to", "message"] {
            assert!(required.contains(&json!(field)), "{field} not required");
        }
        assert!(!required.contains(&json!("priority")));
        let message = &schema["$defs"]["Message"];
        let branches = message["oneOf"].as_array().unwrap();
        assert_eq!(branches.len(), MESSAGE_KINDS.len());
        for branch in branches {
            assert_eq!(branch["additionalProperties"], json!(false));
        }
        // Audio has neither caption nor filename on the wire, so the schema must not offer them.
        let audio = &branches[3]["properties"]["audio"]["properties"];
        assert!(audio.get("caption").is_none() && audio.get("link").is_some());
    }
}
