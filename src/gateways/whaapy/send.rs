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
//!   The class follows the Meta code when there is one, else Whaapy's name, else the HTTP
//!   status ([`ERROR_TABLE`]). Failures can come with HTTP 200, so the body decides.
//! - **Gaps**: the stored documents show only text and templates; the list of the other types'
//!   pages is cut off ("Para otros tipos, consulta:"). We follow SPEC §8, which lists image,
//!   video, audio, document and interactive as documented, and refuse location, contacts,
//!   sticker and reaction. Whaapy documents no reply `context`, so replies are refused too
//!   rather than sent without the quote. `Retry-After` is not documented; it is honoured if
//!   present.

use std::ops::RangeInclusive;

use reqwest::Method;

use serde_json::{Map, Value};

use crate::config::{ProviderKind, Secret};
use crate::gateways::{self, Accepted, Adapter, HttpCall, HttpReply, SendContext, SendResult};
use crate::job::Job;
use crate::retry::{ErrorClass, Failure, Sent};

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
/// `code` when the body has one (the most specific: which WhatsApp rule refused it), else by
/// `error`; then by the HTTP status. Anything else (an unknown code or name, an unknown
/// status) falls back on [`gateways::class_for_status`] with a warning.
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

/// Meta's per-user marketing limit, which waits at least
/// [`gateways::meta::send::MARKETING_LIMIT_WAIT`] here too, since the code means the same.
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
        gateways::require_expressible(ProviderKind::Whaapy, job, SUPPORTED_TYPES)?;
        let kind = job.message.type_name();
        let canonical = serde_json::to_value(&job.message)
            .map_err(|e| Failure::invalid("invalid_field", format!("message: {e}")))?;
        let mut content = canonical.get(kind).cloned().unwrap_or(Value::Null);
        if kind == "template"
            && let Some(language) = content.get_mut("language").and_then(Value::as_object_mut)
        {
            language.insert("policy".into(), Value::from(LANGUAGE_POLICY));
        }

        let mut body = Map::new();
        body.insert("to".into(), Value::from(job.to.clone()));
        body.insert("type".into(), Value::from(kind));
        body.insert(kind.into(), content);
        check_options(job)?;
        gateways::merge_options(&mut body, job)?;

        let auth = gateways::bearer(&self.api_key)?;
        // No idempotency header: Whaapy has none (see the module documentation).
        Ok(HttpCall {
            method: Method::POST,
            path: PATH.into(),
            headers: vec![auth],
            body: Value::Object(body),
        })
    }

    fn code_class(&self, code: &str) -> Option<ErrorClass> {
        let numeric = code.trim().parse::<u32>().ok();
        ERROR_TABLE
            .iter()
            .find(|(key, _)| match key {
                Key::Code(codes) => numeric.is_some_and(|n| codes.contains(&n)),
                Key::Error(name) => name.eq_ignore_ascii_case(code),
                Key::Status(_) => false,
            })
            .map(|(_, class)| *class)
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
    let known = match &code {
        // A code names the WhatsApp rule precisely; an unknown one is not overridden by the
        // generic name around it (`message_delivery_failed`): the status decides it.
        Some(_) => numeric.and_then(|n| find(&|k| matches!(k, Key::Code(r) if r.contains(&n)))),
        None => name.and_then(|n| find(&|k| matches!(k, Key::Error(e) if *e == n))),
    };
    let by_status = || find(&|k| *k == Key::Status(reply.status));
    // A code or name the table names is Whaapy refusing the message; a bare status follows
    // the shared rule for whether it may have gone out, whatever class the table gives it.
    let sent = if known.is_some() {
        Sent::No
    } else {
        gateways::sent_for_status(reply.status)
    };
    let class = match known {
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
            documented_status.unwrap_or_else(|| gateways::class_for_status(reply.status))
        }
    };
    let mut retry_after = reply.retry_after();
    if numeric == Some(MARKETING_LIMIT_CODE) {
        let floor = gateways::meta::send::MARKETING_LIMIT_WAIT;
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
    .with_retry_after(retry_after)
    .with_sent(sent);
    if let Some(code) = provider_code {
        failure = failure.with_provider_code(code);
    }
    failure
}

/// A human message from Whaapy's error body: `message`, what it asks to do
/// (`action_required`), the template it names (`details`) and the Whaapy id of the failed
/// message (`data.id`, what `POST /messages/v1/{id}/retry` and support ask for).
fn describe(status: u16, body: &Value) -> String {
    let mut text = gateways::error_message(body)
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

#[cfg(test)]
mod tests {
    use reqwest::header::{AUTHORIZATION, HeaderValue};
    use std::time::Duration;

    use reqwest::header::{HeaderMap, HeaderName};
    use serde_json::json;

    use super::*;
    use crate::retry::Sent;

    const TO: &str = "+5215512345678";
    const CONVERSATION: &str = "550e8400-e29b-41d4-a716-446655440000";

    fn whaapy() -> Whaapy {
        Whaapy::new(Secret::new("wha_unit"))
    }

    fn reply(status: u16, body: Value, headers: &[(&str, &str)]) -> HttpReply {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        HttpReply {
            status,
            headers: map,
            body: body.to_string().into(),
        }
    }

    fn job_with(message: Value, options: Option<Value>) -> Job {
        let mut body = json!({"id": "ord-1847", "channel": "whaapy-mx", "to": TO,
                              "message": message});
        if let Some(options) = options {
            body["provider_options"] = options;
        }
        crate::job::parse(body.to_string().as_bytes()).expect("valid job")
    }

    fn job(message: Value) -> Job {
        job_with(message, None)
    }

    fn ctx() -> SendContext<'static> {
        SendContext {
            idempotency_key: "pedido-1847",
            attempt: 1,
        }
    }

    fn fail(status: u16, body: Value) -> Failure {
        whaapy().response(&reply(status, body, &[])).unwrap_err()
    }

    /// The document's error body shape around a WhatsApp-level code.
    fn code_error(code: u32) -> Value {
        json!({"error": "message_delivery_failed", "message": "detalle", "code": code.to_string(),
               "action_required": "revisar", "data": {"id": "w-1", "status": "failed"}})
    }

    fn assert_code(code: u32, class: ErrorClass) {
        // Whaapy's statuses vary (the document's 131047 comes with 200); the code decides.
        for status in [200, 400, 401, 403, 404, 429, 500] {
            let failure = fail(status, code_error(code));
            assert_eq!(failure.class, class, "{code} on HTTP {status}");
            assert_eq!(failure.code, code.to_string());
            assert_eq!(failure.provider_code, Some(code.to_string()));
            assert_eq!(failure.sent, Sent::No);
            assert_eq!(
                failure.message,
                "detalle (action required: revisar) [whaapy id w-1]"
            );
        }
    }

    fn assert_name(name: &str, class: ErrorClass) {
        for status in [200, 400, 404, 500] {
            let failure = fail(status, json!({"error": name, "message": "m"}));
            assert_eq!(failure.class, class, "{name} on HTTP {status}");
            assert_eq!(failure.code, name);
            assert_eq!(failure.provider_code.as_deref(), Some(name));
            assert_eq!(failure.message, "m");
        }
    }

    fn assert_status(status: u16, class: ErrorClass) {
        for body in [json!({"message": "m"}), json!(null)] {
            let failure = fail(status, body);
            assert_eq!(failure.class, class, "HTTP {status}");
            assert_eq!(failure.code, format!("http_{status}"));
            assert_eq!(failure.provider_code, None);
        }
    }

    #[test]
    fn window_expired_131047() {
        assert_code(131047, ErrorClass::WindowExpired);
    }

    #[test]
    fn undeliverable_131026_is_rejected() {
        assert_code(131026, ErrorClass::Rejected);
    }

    #[test]
    fn parameter_and_template_codes_are_invalid() {
        for code in [100, 131008, 131009, 132000, 132001, 132012] {
            assert_code(code, ErrorClass::Invalid);
        }
    }

    #[test]
    fn limit_codes_are_rate_limited() {
        for code in [130429, 131056, 131048, 4, 80007, 133016, 131049] {
            assert_code(code, ErrorClass::RateLimited);
        }
    }

    #[test]
    fn marketing_limit_131049_waits_at_least_a_day() {
        let day = gateways::meta::send::MARKETING_LIMIT_WAIT;
        assert_eq!(fail(400, code_error(131049)).retry_after, Some(day));
        let longer = whaapy()
            .response(&reply(
                400,
                code_error(131049),
                &[("retry-after", "100000")],
            ))
            .unwrap_err();
        assert_eq!(longer.retry_after, Some(Duration::from_secs(100_000)));
    }

    #[test]
    fn server_side_codes_are_transient() {
        for code in [1, 2, 131000, 131016, 131057, 131053] {
            assert_code(code, ErrorClass::Transient);
        }
    }

    #[test]
    fn whaapys_access_and_account_codes_are_channel() {
        for code in [0, 3, 10, 190, 200, 250, 299, 131005, 368, 131031, 131042] {
            assert_code(code, ErrorClass::Channel);
        }
        // Just outside the permission range: unknown, so the status decides, not the
        // generic `message_delivery_failed` around it.
        assert_eq!(fail(400, code_error(300)).class, ErrorClass::Invalid);
        assert_eq!(fail(401, code_error(300)).class, ErrorClass::Auth);
        assert_eq!(fail(500, code_error(199)).class, ErrorClass::Transient);
    }

    #[test]
    fn invalid_template_parameters_is_invalid() {
        assert_name("invalid_template_parameters", ErrorClass::Invalid);
        // The document's body, verbatim.
        let failure = fail(
            400,
            json!({"error": "invalid_template_parameters",
                   "message": "El template requiere 3 parámetros, se recibieron 2"}),
        );
        assert_eq!(
            failure.message,
            "El template requiere 3 parámetros, se recibieron 2"
        );
    }

    #[test]
    fn template_not_found_is_invalid() {
        assert_name("template_not_found", ErrorClass::Invalid);
        // The document's body, verbatim: the code and the name agree, the details are kept.
        let failure = fail(
            404,
            json!({"error": "template_not_found",
                   "message": "El template no existe o no está aprobado", "code": "132000",
                   "details": {"template_name": "orden_confirmada", "language": "es_MX"}}),
        );
        assert_eq!(
            (failure.class, failure.code.as_str()),
            (ErrorClass::Invalid, "132000")
        );
        assert_eq!(
            failure.message,
            "El template no existe o no está aprobado (template orden_confirmada, es_MX)"
        );
    }

    #[test]
    fn delivery_failed_without_a_code_is_transient() {
        assert_name("message_delivery_failed", ErrorClass::Transient);
    }

    #[test]
    fn documented_statuses() {
        assert_status(400, ErrorClass::Invalid);
        assert_status(401, ErrorClass::Auth);
        assert_status(403, ErrorClass::Auth);
        assert_status(404, ErrorClass::Invalid);
        assert_status(429, ErrorClass::RateLimited);
        assert_status(500, ErrorClass::Transient);
    }

    #[test]
    fn every_table_row_is_covered_by_a_test() {
        // The tests above name these; this keeps them and the table in step.
        let codes: &[u32] = &[
            131047, 131026, 100, 131008, 131009, 132000, 132001, 132012, 130429, 131056, 131048, 4,
            80007, 133016, 131049, 1, 2, 131000, 131016, 131057, 131053, 0, 3, 10, 190, 200, 299,
            131005, 368, 131031, 131042,
        ];
        let names = [
            "invalid_template_parameters",
            "template_not_found",
            "message_delivery_failed",
        ];
        let statuses = [400, 401, 403, 404, 429, 500];
        for (key, _) in ERROR_TABLE {
            let covered = match key {
                Key::Code(r) => codes.contains(r.start()) && codes.contains(r.end()),
                Key::Error(name) => names.contains(name),
                Key::Status(status) => statuses.contains(status),
            };
            assert!(covered, "{key:?} untested");
        }
    }

    #[test]
    fn document_131047_on_200_is_window_expired() {
        // The text document's example, verbatim.
        let body = json!({"error": "message_delivery_failed",
            "message": "La ventana de conversación de 24 horas ha expirado", "code": "131047",
            "action_required": "Usar template message",
            "data": {"id": "550e8400-e29b-41d4-a716-446655440000", "status": "failed"}});
        let failure = fail(200, body);
        assert_eq!(failure.class, ErrorClass::WindowExpired);
        assert_eq!(failure.provider_code.as_deref(), Some("131047"));
        assert_eq!(
            failure.message,
            "La ventana de conversación de 24 horas ha expirado \
             (action required: Usar template message) \
             [whaapy id 550e8400-e29b-41d4-a716-446655440000]"
        );
    }

    #[test]
    fn undocumented_codes_fall_back_on_the_status() {
        for (status, class) in [
            (200, ErrorClass::Transient),
            (400, ErrorClass::Invalid),
            (409, ErrorClass::Invalid),
            (401, ErrorClass::Auth),
            (429, ErrorClass::RateLimited),
            (502, ErrorClass::Transient),
        ] {
            let failure = fail(status, json!({"error": "brand_new", "code": "987654"}));
            assert_eq!(failure.class, class, "{status}");
            assert_eq!(failure.provider_code.as_deref(), Some("987654"));
            let failure = fail(status, json!({"error": "brand_new"}));
            assert_eq!(failure.class, class, "{status}");
            assert_eq!(failure.code, "brand_new");
        }
        // A proxy's HTML page: the status decides, the code names it.
        let failure = whaapy()
            .response(&HttpReply {
                status: 503,
                headers: HeaderMap::new(),
                body: "<html>Service Unavailable</html>".into(),
            })
            .unwrap_err();
        assert_eq!(
            (failure.class, failure.code.as_str(), failure.provider_code),
            (ErrorClass::Transient, "http_503", None)
        );
    }

    #[test]
    fn numeric_and_nested_codes_are_read() {
        let failure = fail(400, json!({"error": "x", "code": 131047}));
        assert_eq!(failure.class, ErrorClass::WindowExpired);
        let failure = fail(
            400,
            json!({"error": {"code": 131026, "message": "Meta's own"}}),
        );
        assert_eq!(failure.class, ErrorClass::Rejected);
        assert_eq!(failure.message, "Meta's own");
    }

    #[test]
    fn retry_after_is_read_when_given() {
        let failure = whaapy()
            .response(&reply(
                429,
                json!({"error": "rate_limit_exceeded", "message": "m"}),
                &[("retry-after", "42")],
            ))
            .unwrap_err();
        assert_eq!(failure.class, ErrorClass::RateLimited);
        assert_eq!(failure.retry_after, Some(Duration::from_secs(42)));
        assert_eq!(fail(429, json!({})).retry_after, None);
    }

    /// The documents' success answer.
    fn success() -> Value {
        json!({"messaging_product": "whatsapp",
            "contacts": [{"input": TO, "wa_id": "5215512345678"}],
            "messages": [{"id": "550e8400-e29b-41d4-a716-446655440000", "wamid": "wamid.HBgLNTIxNTUx..."}],
            "data": {"id": "550e8400-e29b-41d4-a716-446655440000",
                     "conversationId": "660e8400-e29b-41d4-a716-446655440001",
                     "messageType": "template", "direction": "outbound", "status": "sent",
                     "createdAt": "2026-01-22T10:30:00Z"}})
    }

    #[test]
    fn success_reads_data_id() {
        let mut body = success();
        body["messages"][0]["id"] = json!("other");
        assert_eq!(
            whaapy().response(&reply(200, body, &[])).unwrap(),
            Accepted {
                provider_message_id: "550e8400-e29b-41d4-a716-446655440000".into(),
                replayed: false,
            }
        );
    }

    #[test]
    fn success_falls_back_on_messages_0_id() {
        for data in [json!(null), json!({"id": ""}), json!({"status": "sent"})] {
            let mut body = success();
            body["data"] = data;
            body["messages"][0]["id"] = json!("m-1");
            let accepted = whaapy().response(&reply(201, body, &[])).unwrap();
            assert_eq!(accepted.provider_message_id, "m-1");
        }
    }

    #[test]
    fn a_2xx_without_an_id_is_an_ambiguous_failure() {
        for body in [
            json!({"messages": []}),
            json!({"data": {"id": ""}, "messages": [{"id": ""}]}),
            json!({"messages": [{"wamid": "wamid.X"}]}),
            json!(null),
        ] {
            let failure = fail(200, body);
            assert_eq!(
                (failure.class, failure.code.as_str(), failure.sent),
                (ErrorClass::Transient, "bad_response", Sent::Maybe)
            );
        }
    }

    #[test]
    fn a_2xx_with_a_failed_message_is_a_failure() {
        let mut body = success();
        body["data"]["status"] = json!("failed");
        let failure = fail(200, body);
        assert_eq!(
            (failure.class, failure.code.as_str(), failure.sent),
            (ErrorClass::Transient, "message_failed", Sent::No)
        );
    }

    #[test]
    fn request_has_path_auth_and_meta_style_text() {
        let call = whaapy()
            .request(
                &job(json!({"type": "text", "text": {"body": "Hola!", "preview_url": true}})),
                ctx(),
            )
            .unwrap();
        assert_eq!(call.method, Method::POST);
        assert_eq!(call.path, "/messages/v1");
        assert_eq!(
            call.headers.len(),
            1,
            "no idempotency header: Whaapy has none"
        );
        let (name, value) = &call.headers[0];
        assert_eq!(name, AUTHORIZATION);
        assert_eq!(value.to_str().unwrap(), "Bearer wha_unit");
        assert!(value.is_sensitive());
        assert_eq!(
            call.body,
            json!({"to": TO, "type": "text", "text": {"body": "Hola!", "preview_url": true}})
        );
    }

    #[test]
    fn recipient_keeps_its_plus() {
        let body = json!({"id": "j", "channel": "c", "to": "5215512345678",
                          "message": {"type": "text", "text": {"body": "x"}}});
        let job = crate::job::parse(body.to_string().as_bytes()).unwrap();
        let call = whaapy().request(&job, ctx()).unwrap();
        assert_eq!(call.body["to"], json!(TO));
    }

    #[test]
    fn every_supported_type_goes_through_as_meta_style() {
        let messages = [
            json!({"type": "image", "image": {"link": "https://e.com/i.jpg", "caption": "c"}}),
            json!({"type": "video", "video": {"id": "123", "caption": "c"}}),
            json!({"type": "audio", "audio": {"link": "https://e.com/a.ogg"}}),
            json!({"type": "document", "document": {"link": "https://e.com/f.pdf", "caption": "c", "filename": "f.pdf"}}),
            json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "b"},
                   "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "A"}}]}}}),
            json!({"type": "interactive", "interactive": {"type": "list", "header": {"type": "text", "text": "h"},
                   "body": {"text": "b"}, "footer": {"text": "f"},
                   "action": {"button": "Ver", "sections": [{"title": "s", "rows": [{"id": "r", "title": "R"}]}]}}}),
        ];
        for message in messages {
            let call = whaapy().request(&job(message.clone()), ctx()).unwrap();
            let mut expected = message.clone();
            expected["to"] = json!(TO);
            assert_eq!(call.body, expected, "{}", message["type"]);
        }
    }

    #[test]
    fn templates_get_the_deterministic_policy() {
        let components = json!([
            {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://example.com/recibo.jpg"}}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Juan"},
                {"type": "currency", "currency": {"fallback_value": "$1", "code": "MXN", "amount_1000": 1000}},
                {"type": "date_time", "date_time": {"fallback_value": "hoy"}}]},
            {"type": "button", "sub_type": "quick_reply", "index": "0",
             "parameters": [{"type": "payload", "payload": "p"}]},
            {"type": "button", "sub_type": "url", "index": 1, "parameters": [{"type": "text", "text": "ENV-789"}]}
        ]);
        for language in [
            json!({"code": "es_MX"}),
            json!({"code": "es_MX", "policy": "deterministic"}),
        ] {
            let message = json!({"type": "template", "template": {"name": "t", "language": language,
                                 "components": components}});
            let call = whaapy().request(&job(message), ctx()).unwrap();
            assert_eq!(
                call.body,
                json!({"to": TO, "type": "template", "template": {"name": "t",
                       "language": {"policy": "deterministic", "code": "es_MX"},
                       "components": components}})
            );
        }
    }

    #[test]
    fn types_whaapy_does_not_list_are_unsupported() {
        for message in [
            json!({"type": "location", "location": {"latitude": 19.4, "longitude": -99.1}}),
            json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "A"}}]}),
            json!({"type": "sticker", "sticker": {"id": "123"}}),
            json!({"type": "reaction", "reaction": {"message_id": "wamid.1", "emoji": "👍"}}),
        ] {
            let failure = whaapy().request(&job(message.clone()), ctx()).unwrap_err();
            assert_eq!(
                (failure.class, failure.code.as_str()),
                (ErrorClass::Invalid, gateways::UNSUPPORTED),
                "{message}"
            );
            assert!(failure.message.starts_with("whaapy cannot send"));
        }
    }

    #[test]
    fn replies_are_unsupported() {
        let message = json!({"type": "text", "text": {"body": "x"},
                             "context": {"message_id": "wamid.PREV"}});
        let failure = whaapy().request(&job(message), ctx()).unwrap_err();
        assert_eq!(failure.code, gateways::UNSUPPORTED);
        assert!(failure.message.contains("message.context"));
    }

    #[test]
    fn provider_options_add_fields_and_conversation_id() {
        let text = json!({"type": "text", "text": {"body": "x"}});
        let call = whaapy()
            .request(
                &job_with(
                    text.clone(),
                    Some(json!({CONVERSATION_ID: CONVERSATION, "tag": "a"})),
                ),
                ctx(),
            )
            .unwrap();
        assert_eq!(
            call.body,
            json!({"to": TO, "conversationId": CONVERSATION, "type": "text",
                   "text": {"body": "x"}, "tag": "a"})
        );
    }

    #[test]
    fn provider_options_cannot_override_readdress_or_add_content() {
        let text = json!({"type": "text", "text": {"body": "x"}});
        for options in [
            json!({"to": "+34600000000"}),
            json!({"type": "image"}),
            json!({"phone_number": "+34600000000"}),
            json!({"content": "otro texto"}),
            json!({"templateName": "otro"}),
            json!({"template_parameters": ["a"]}),
            json!({"header_media": {"type": "image", "url": "https://e.com/i.jpg"}}),
            json!({CONVERSATION_ID: "not-a-uuid"}),
            json!({CONVERSATION_ID: 12}),
        ] {
            let failure = whaapy()
                .request(&job_with(text.clone(), Some(options.clone())), ctx())
                .unwrap_err();
            assert_eq!(
                (failure.class, failure.code.as_str()),
                (ErrorClass::Invalid, "invalid_field"),
                "{options}"
            );
        }
    }

    #[test]
    fn a_key_unfit_for_a_header_is_an_auth_failure() {
        let failure = Whaapy::new(Secret::new("wha_bad\nkey"))
            .request(&job(json!({"type": "text", "text": {"body": "x"}})), ctx())
            .unwrap_err();
        assert_eq!(failure.class, ErrorClass::Auth);
        assert!(!failure.message.contains("wha_bad"));
    }
}
