//! Whaapy (`POST /messages/v1`), per `shared/providers/whaapy-messages-text.txt`,
//! `shared/providers/whaapy-messages-template.txt` and the Whaapy section of
//! `shared/providers/RECEIPTS.md`.
//!
//! - **Body**: Whaapy takes two request styles ("Formato Híbrido"): its own shortcuts
//!   (`content`, `templateName` + `template_parameters`, `header_media`) and Meta's. We always
//!   send Meta's (`to` in E.164 *with* `+`, `type` and the type's object) because the canonical
//!   message already is Meta's object: nothing is translated, so nothing can be lost. Templates
//!   always carry `language.policy = "deterministic"`, which the document recommends so that
//!   WhatsApp uses exactly the language asked for. A `conversationId` (Whaapy's conversation
//!   UUID) comes from the job's `provider_options` and sits at the top level beside `to`, where
//!   the document places it.
//! - **Auth**: `Authorization: Bearer wha_…`. There is no sender in the request: the key
//!   belongs to one Whaapy account, which owns the number (the channel's `sender` is unused).
//! - **Idempotency**: none. Whaapy documents no idempotency key, so a resend after an
//!   ambiguous attempt (timeout, a 2xx without an id) may send the message twice; the
//!   channel's `on_ambiguous` decides (SPEC §4). (`POST /messages/v1/{id}/retry` resends a
//!   message Whaapy itself marked failed; it is not a deduplication mechanism.)
//! - **Answer**: the Whaapy message id is `data.id` (also `messages[0].id`); `messages[0].wamid`
//!   is Meta's id, only logged, because receipts are correlated by the Whaapy id.
//! - **Errors**: `{"error","message","code","action_required","data"}`, where `error` is
//!   Whaapy's name and `code` a WhatsApp-level (Meta) code when WhatsApp refused the message.
//!   The class follows the Meta code first, then Whaapy's name, then the HTTP status
//!   ([`ERROR_TABLE`]). Failures can come with HTTP 200, so the body decides.
//! - **Gaps**: the stored documents show only text and templates; the list of the other types'
//!   pages is cut off ("Para otros tipos, consulta:"). We follow SPEC §8, which lists image,
//!   video, audio, document and interactive as documented, and refuse location, contacts,
//!   sticker and reaction. Whaapy documents no reply `context`, so replies are refused too
//!   rather than sent without the quote. `Retry-After` is not documented; it is honoured if
//!   present.

use std::ops::RangeInclusive;

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::{Map, Value};

use super::{Accepted, Adapter, HttpCall, HttpReply, SendContext, SendResult};
use crate::config::{ProviderKind, Secret};
use crate::job::Job;
use crate::retry::{ErrorClass, Failure};

/// The send endpoint.
pub const PATH: &str = "/messages/v1";

/// Message types Whaapy documents (SPEC §8); every other canonical type is refused up front.
pub const SUPPORTED_TYPES: &[&str] = &[
    "text",
    "image",
    "video",
    "audio",
    "document",
    "template",
    "interactive",
];

/// The only template language policy; the document asks for it to pin the language.
pub const LANGUAGE_POLICY: &str = "deterministic";

/// Body fields `provider_options` may not add: each would re-address the message (`phone_number`
/// is an alias of `to`) or give Whaapy a second, competing content in its shortcut style.
pub const RESERVED_OPTIONS: &[&str] = &[
    "phone_number",
    "content",
    "templateName",
    "template_parameters",
    "header_media",
];

/// The `provider_options` key naming a Whaapy conversation to send in.
pub const CONVERSATION_ID: &str = "conversationId";

/// What one row of [`ERROR_TABLE`] matches in an error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// WhatsApp-level (Meta) codes in the body's `code`, e.g. `"131047"`.
    Code(RangeInclusive<u32>),
    /// Whaapy's own error name in the body's `error`, e.g. `invalid_template_parameters`.
    Error(&'static str),
    /// An HTTP status, for answers whose body names no documented code.
    Status(u16),
}

/// Every HTTP status and body code Whaapy documents, with its SPEC §7 class. Looked up by
/// `code` first (the most specific: which WhatsApp rule refused it), then `error`, then the
/// HTTP status; anything else falls back on [`super::class_for_status`] with a warning.
///
/// The Meta codes are those RECEIPTS.md lists for Meta: Whaapy says its WhatsApp-level codes
/// "follow Meta's", so they mean what they mean there — with one difference. Graph-level
/// token and permission codes (0, 3, 10, 190, 200–299, 131005) concern *Whaapy's* access to
/// our WhatsApp account, not our Whaapy key, so they are `channel` here (reconnect the number
/// in Whaapy), while Meta's adapter files them under `auth`.
pub const ERROR_TABLE: &[(Key, ErrorClass)] = &[
    // --- WhatsApp-level codes Whaapy passes through in `code`.
    // The 24 h customer-service window is closed: only a template reaches the user now.
    (Key::Code(131047..=131047), ErrorClass::WindowExpired),
    // Undeliverable (not on WhatsApp, old client): resending will not help.
    (Key::Code(131026..=131026), ErrorClass::Rejected),
    // Bad parameters and template errors (132000: not found or not approved): fix the job.
    (Key::Code(100..=100), ErrorClass::Invalid),
    (Key::Code(131008..=131008), ErrorClass::Invalid),
    (Key::Code(131009..=131009), ErrorClass::Invalid),
    (Key::Code(132000..=132000), ErrorClass::Invalid),
    (Key::Code(132001..=132001), ErrorClass::Invalid),
    (Key::Code(132012..=132012), ErrorClass::Invalid),
    // Throughput, pair, spam and API-call limits: wait and retry.
    (Key::Code(130429..=130429), ErrorClass::RateLimited),
    (Key::Code(131056..=131056), ErrorClass::RateLimited),
    (Key::Code(131048..=131048), ErrorClass::RateLimited),
    (Key::Code(4..=4), ErrorClass::RateLimited),
    (Key::Code(80007..=80007), ErrorClass::RateLimited),
    (Key::Code(133016..=133016), ErrorClass::RateLimited),
    // Per-user marketing limit: retried no sooner than a day (see `MARKETING_LIMIT_CODE`).
    (Key::Code(131049..=131049), ErrorClass::RateLimited),
    // Server-side trouble at Meta, a number being upgraded, media briefly unfetchable.
    (Key::Code(1..=1), ErrorClass::Transient),
    (Key::Code(2..=2), ErrorClass::Transient),
    (Key::Code(131000..=131000), ErrorClass::Transient),
    (Key::Code(131016..=131016), ErrorClass::Transient),
    (Key::Code(131057..=131057), ErrorClass::Transient),
    (Key::Code(131053..=131053), ErrorClass::Transient),
    // Whaapy's own access to our WhatsApp account (see above), and the account itself
    // (policy block, locked, unpaid): an operator fixes them, then the backlog drains.
    (Key::Code(0..=0), ErrorClass::Channel),
    (Key::Code(3..=3), ErrorClass::Channel),
    (Key::Code(10..=10), ErrorClass::Channel),
    (Key::Code(190..=190), ErrorClass::Channel),
    (Key::Code(200..=299), ErrorClass::Channel),
    (Key::Code(131005..=131005), ErrorClass::Channel),
    (Key::Code(368..=368), ErrorClass::Channel),
    (Key::Code(131031..=131031), ErrorClass::Channel),
    (Key::Code(131042..=131042), ErrorClass::Channel),
    // --- Whaapy's own names in `error`, for answers without a known `code`.
    // Wrong number of template parameters: the job must change.
    (
        Key::Error("invalid_template_parameters"),
        ErrorClass::Invalid,
    ),
    // Template missing or not approved (documented with code 132000).
    (Key::Error("template_not_found"), ErrorClass::Invalid),
    // Whaapy's wrapper for a failure WhatsApp reported; its `code` (looked up first) says
    // which. Without one nothing blames the job, and `data.status: failed` says it did not go
    // out: retried, bounded by max_attempts.
    (Key::Error("message_delivery_failed"), ErrorClass::Transient),
    // --- HTTP statuses RECEIPTS.md lists (400 validation, 401 bad key, 403 missing scopes,
    // 404, 429, 500).
    (Key::Status(400), ErrorClass::Invalid),
    (Key::Status(401), ErrorClass::Auth),
    // The key lacks a scope: granting it is an operator's fix, like a bad key.
    (Key::Status(403), ErrorClass::Auth),
    // The path is fixed, so a 404 names something in the job (an unknown conversationId).
    (Key::Status(404), ErrorClass::Invalid),
    (Key::Status(429), ErrorClass::RateLimited),
    (Key::Status(500), ErrorClass::Transient),
];

/// Meta's per-user marketing limit, which waits at least [`super::meta::MARKETING_LIMIT_WAIT`]
/// here too, since the code means the same.
const MARKETING_LIMIT_CODE: u32 = 131049;

/// The Whaapy adapter for one channel (one Whaapy account).
pub struct Whaapy {
    /// API key (`wha_…`), sent as a Bearer token; it also selects the sending account.
    api_key: Secret,
}

impl Whaapy {
    /// An adapter sending with `api_key`.
    pub fn new(api_key: Secret) -> Self {
        Self { api_key }
    }
}

impl Adapter for Whaapy {
    fn provider(&self) -> ProviderKind {
        ProviderKind::Whaapy
    }

    fn request(&self, job: &Job, _ctx: SendContext<'_>) -> Result<HttpCall, Failure> {
        let kind = job.message.type_name();
        if !SUPPORTED_TYPES.contains(&kind) {
            return Err(super::unsupported(
                ProviderKind::Whaapy,
                &format!("{kind} messages"),
            ));
        }
        if job.message.context.is_some() {
            // Whaapy documents no reply context; dropping it would silently change the message.
            return Err(super::unsupported(
                ProviderKind::Whaapy,
                "replies (message.context)",
            ));
        }
        let canonical = serde_json::to_value(&job.message)
            .map_err(|e| Failure::invalid("invalid_field", format!("message: {e}")))?;
        let mut content = canonical.get(kind).cloned().unwrap_or(Value::Null);
        if kind == "template" {
            if let Some(language) = content.get_mut("language").and_then(Value::as_object_mut) {
                language.insert("policy".into(), Value::from(LANGUAGE_POLICY));
            }
        }

        let mut body = Map::new();
        body.insert("to".into(), Value::from(job.to.clone()));
        body.insert("type".into(), Value::from(kind));
        body.insert(kind.into(), content);
        check_options(job)?;
        super::merge_options(&mut body, job)?;

        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.api_key.expose()))
            .map_err(|_| {
                Failure::new(
                    ErrorClass::Auth,
                    "bad_api_key",
                    "the API key is not a valid header value",
                )
            })?;
        auth.set_sensitive(true);
        // No idempotency header: Whaapy has none (see the module documentation).
        Ok(HttpCall {
            method: Method::POST,
            path: PATH.into(),
            headers: vec![(AUTHORIZATION, auth)],
            body: Value::Object(body),
        })
    }

    fn response(&self, reply: &HttpReply) -> SendResult {
        let json = reply.json();
        // Whaapy's errors carry `error`; one on a 2xx (its 131047 example) is still a failure.
        let error_body = json
            .as_ref()
            .filter(|b| b.get("error").is_some_and(|e| !e.is_null()));
        if let Some(body) = error_body {
            return Err(classify_error(reply, body));
        }
        if !(200..300).contains(&reply.status) {
            return Err(classify_error(reply, json.as_ref().unwrap_or(&Value::Null)));
        }
        let json = json.unwrap_or(Value::Null);
        if json.pointer("/data/status").and_then(Value::as_str) == Some("failed") {
            // A failed message record without an error: Whaapy says it did not go out, and
            // says nothing against the job.
            return Err(Failure::new(
                ErrorClass::Transient,
                "message_failed",
                format!("HTTP {} with data.status \"failed\"", reply.status),
            ));
        }
        let non_empty = |pointer: &str| {
            json.pointer(pointer)
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
        };
        match non_empty("/data/id").or_else(|| non_empty("/messages/0/id")) {
            Some(id) => {
                tracing::debug!(
                    provider = "whaapy",
                    provider_message_id = id,
                    wamid = non_empty("/messages/0/wamid").unwrap_or("-"),
                    "whaapy accepted the message"
                );
                Ok(Accepted {
                    provider_message_id: id.to_string(),
                    // Whaapy never replays: every accepted request is a new message.
                    replayed: false,
                })
            }
            // Accepted but unreadable: it was probably sent. Whaapy has no idempotency, so
            // this is left to `on_ambiguous`.
            None => Err(Failure::new(
                ErrorClass::Transient,
                "bad_response",
                format!("HTTP {} without data.id or messages[0].id", reply.status),
            )
            .maybe_sent()),
        }
    }
}

/// Refuse `provider_options` that would re-address or replace the message, and a
/// `conversationId` that is not the UUID Whaapy's document says it is.
fn check_options(job: &Job) -> Result<(), Failure> {
    let Some(options) = &job.provider_options else {
        return Ok(());
    };
    if let Some(key) = RESERVED_OPTIONS.iter().find(|k| options.contains_key(**k)) {
        return Err(Failure::invalid(
            "invalid_field",
            format!("provider_options.{key}: conflicts with the message mensajero sends"),
        ));
    }
    if let Some(id) = options.get(CONVERSATION_ID) {
        let uuid = id
            .as_str()
            .is_some_and(|s| uuid::Uuid::parse_str(s).is_ok());
        if !uuid {
            return Err(Failure::invalid(
                "invalid_field",
                format!("provider_options.{CONVERSATION_ID}: must be a Whaapy conversation UUID"),
            ));
        }
    }
    Ok(())
}

/// The body's `code` as text (Whaapy sends it as a string, Meta as a number); a nested Meta
/// `{"error":{"code"}}` is read too, in case Whaapy ever passes Meta's body through.
fn body_code(body: &Value) -> Option<String> {
    [body.get("code"), body.pointer("/error/code")]
        .into_iter()
        .flatten()
        .find_map(|v| match v {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

/// Classify an error answer through [`ERROR_TABLE`]: `code`, then `error`, then the status.
fn classify_error(reply: &HttpReply, body: &Value) -> Failure {
    let code = body_code(body);
    let numeric = code.as_deref().and_then(|c| c.parse::<u32>().ok());
    let name = body
        .get("error")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let find = |wanted: &dyn Fn(&Key) -> bool| {
        ERROR_TABLE
            .iter()
            .find(|(key, _)| wanted(key))
            .map(|(_, class)| *class)
    };
    let by_code = numeric.and_then(|n| find(&|k| matches!(k, Key::Code(r) if r.contains(&n))));
    let by_name = || name.and_then(|n| find(&|k| matches!(k, Key::Error(e) if *e == n)));
    let by_status = || find(&|k| *k == Key::Status(reply.status));
    let class = match by_code.or_else(by_name) {
        Some(class) => class,
        None => {
            let documented_status = by_status();
            // A documented status with no code at all is fully documented; anything else
            // (an unknown code or name, an unknown status) is worth an operator's look.
            if code.is_some() || name.is_some() || documented_status.is_none() {
                tracing::warn!(
                    provider = "whaapy",
                    status = reply.status,
                    code = code.as_deref().unwrap_or("-"),
                    error = name.unwrap_or("-"),
                    "gateway answered an undocumented error; classifying by HTTP status"
                );
            }
            documented_status.unwrap_or_else(|| super::class_for_status(reply.status))
        }
    };
    let mut retry_after = reply.retry_after();
    if numeric == Some(MARKETING_LIMIT_CODE) {
        let floor = super::meta::MARKETING_LIMIT_WAIT;
        retry_after = Some(retry_after.map_or(floor, |r| r.max(floor)));
    }
    // The most specific code names the failure: the WhatsApp code, else Whaapy's name.
    let provider_code = code.or_else(|| name.map(str::to_owned));
    let mut failure = Failure::new(
        class,
        provider_code
            .clone()
            .unwrap_or_else(|| format!("http_{}", reply.status)),
        describe(reply.status, body),
    )
    .with_retry_after(retry_after);
    if let Some(code) = provider_code {
        failure = failure.with_provider_code(code);
    }
    failure
}

/// A human message from Whaapy's error body: `message`, what it asks to do
/// (`action_required`), the template it names (`details`) and the Whaapy id of the failed
/// message (`data.id`, what `POST /messages/v1/{id}/retry` and support ask for).
fn describe(status: u16, body: &Value) -> String {
    let mut text = super::error_message(body)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("HTTP {status}"));
    if let Some(action) = body.get("action_required").and_then(Value::as_str) {
        text.push_str(&format!(" (action required: {action})"));
    }
    let detail = |field: &str| body.pointer(&format!("/details/{field}"))?.as_str();
    if let Some(template) = detail("template_name") {
        text.push_str(&format!(" (template {template}"));
        if let Some(language) = detail("language") {
            text.push_str(&format!(", {language}"));
        }
        text.push(')');
    }
    if let Some(id) = body.pointer("/data/id").and_then(Value::as_str) {
        text.push_str(&format!(" [whaapy id {id}]"));
    }
    text
}
