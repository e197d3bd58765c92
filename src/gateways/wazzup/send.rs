//! Wazzup24 (`POST /v3/message`), per `shared/providers/wazzup-messages.txt` and the Wazzup
//! section of `shared/providers/RECEIPTS.md`.
//!
//! Wazzup is a multi-messenger inbox; its send call is a flat object, not Meta's: the sender is
//! `channelId` (the channel's `sender`), the recipient `chatId` (E.164 digits, no `+`) with
//! `chatType: "whatsapp"`, and the content is *either* `text` *or* `contentUri` (a URL Wazzup
//! downloads), or a WABA template by `templateId` + `templateValues`. Reply buttons and
//! template button payloads go in `buttonsObject`; a reply quotes `refMessageId`. Auth is
//! `Authorization: Bearer <apiKey>`. The success answer is `201 {"messageId", "chatId"}`.
//!
//! **Idempotency.** `crmMessageId` makes a send idempotent for 60 s: a repeat is refused with
//! `400 REPEATED_CRM_MESSAGE_ID` (which we count as already sent, `replayed: true`). We feed it
//! from the job's idempotency key scoped by channel ([`crm_message_id`]), so a resend after a
//! timeout inside that window is harmless. That answer does not carry the original
//! `messageId`, so such a job reports [`REPLAYED_ID_PREFIX`] + crmMessageId instead.
//!
//! **Gaps** (all fail as `unsupported_message_type`, never a silent downgrade): media with a
//! caption (text *or* content), media by id (Wazzup only downloads URLs), a document's
//! `filename`, interactive lists and interactive headers/footers, location, contacts, reaction;
//! template header parameters, currency parameters, named parameters, URL/copy-code button
//! parameters. Templates also need the channel's `templates` map (canonical name → templateId).

use reqwest::Method;

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{ChannelConfig, ProviderKind, Secret};
use crate::gateways::{self, Accepted, Adapter, HttpCall, HttpReply, SendContext, SendResult};
use crate::job::{
    Action, ButtonSubType, ComponentType, Content, Interactive, Job, Media, ParameterValue,
    Template,
};
use crate::retry::{ErrorClass, Failure, Sent};

/// The send endpoint.
pub const PATH: &str = "/v3/message";

/// Wazzup's `chatType` for WhatsApp chats (its other transports never concern mensajero).
pub const CHAT_TYPE: &str = "whatsapp";

/// What a documented Wazzup error code means for the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// A failure of this class; the gateway provably did not send.
    Failed(ErrorClass),
    /// A failure of this class after which the message may nevertheless have gone out.
    MaybeSent(ErrorClass),
    /// The gateway already sent a message under this `crmMessageId`: counts as sent (SPEC §7).
    AlreadySent,
}

// Short names keep each row of the table on one line.
const INVALID: Meaning = Meaning::Failed(ErrorClass::Invalid);
const CHANNEL: Meaning = Meaning::Failed(ErrorClass::Channel);
const AUTH: Meaning = Meaning::Failed(ErrorClass::Auth);
const TRANSIENT: Meaning = Meaning::Failed(ErrorClass::Transient);
const RATE_LIMITED: Meaning = Meaning::Failed(ErrorClass::RateLimited);
const REJECTED: Meaning = Meaning::Failed(ErrorClass::Rejected);
const WINDOW_EXPIRED: Meaning = Meaning::Failed(ErrorClass::WindowExpired);
const MAYBE_SENT: Meaning = Meaning::MaybeSent(ErrorClass::Transient);
const ALREADY_SENT: Meaning = Meaning::AlreadySent;

/// Every error code Wazzup documents for sending (and editing/deleting, which share the list),
/// with the HTTP status the document shows for it (`None`: not given) and what it means.
///
/// Codes are matched ignoring case and underscores, because the document spells the repeat
/// error both `REPEATED_CRM_MESSAGE_ID` and `repeatedCrmMessageId`.
pub const ERROR_TABLE: &[(&str, Option<u16>, Meaning)] = &[
    // --- The three errors the document shows with their full bodies.
    ("INVALID_MESSAGE_DATA", Some(400), INVALID),
    // The channelId is not a WhatsApp channel: the channel's `sender` is wrong, an operator fix.
    ("WRONG_TRANSPORT", Some(400), CHANNEL),
    ("REPEATED_CRM_MESSAGE_ID", Some(400), ALREADY_SENT),
    // --- The error list ("Errores al enviar, editar y eliminar mensajes"), no statuses given.
    ("BALANCE_IS_EMPTY", None, CHANNEL),
    ("MESSAGE_WRONG_CONTENT_TYPE", None, INVALID),
    ("MESSAGE_ONLY_TEXT_OR_CONTENT", None, INVALID),
    ("MESSAGE_NOTHING_TO_SEND", None, INVALID),
    ("MESSAGE_TEXT_TOO_LONG", None, INVALID),
    ("MESSAGES_TOO_LONG_INSTAGRAM", None, INVALID),
    ("MESSAGES_TOO_LONG_TELEGRAM", None, INVALID),
    ("MESSAGES_TOO_LONG_WABA", None, INVALID),
    ("MESSAGES_CONTENT_CAN_NOT_BE_BLANK", None, INVALID),
    ("MESSAGES_CONTENT_SIZE_EXCEEDED", None, INVALID),
    ("MESSAGES_TEXT_CAN_NOT_BE_BLANK", None, INVALID),
    // The channel is not (or no longer) in the integration: the `sender` needs an operator.
    ("CHANNEL_NOT_FOUND", None, CHANNEL),
    ("CHANNEL_BLOCKED", None, CHANNEL),
    // Meta blocked the WABA channel: only the account owner can lift it.
    ("CHANNEL_WAPI_REJECTED", None, CHANNEL),
    // The link may be briefly unreachable (like Meta's 131053): retried, bounded by max_attempts.
    ("MESSAGE_DOWNLOAD_CONTENT_ERROR", None, TRANSIENT),
    // "Inbox" plans cannot write first: like a closed service window, only the contact writing
    // (or a template on another plan) opens it, so retrying cannot help.
    ("MESSAGES_NOT_TEXT_FIRST", None, WINDOW_EXPIRED),
    ("MESSAGES_IS_SPAM", None, REJECTED),
    ("VALIDATION_ERROR", None, INVALID),
    // Unpaid channel: an operator pays and the backlog drains.
    ("CHANNEL_NO_MONEY", None, CHANNEL),
    // "Phone unavailable" / "wait a minute": a passing channel state (SPEC §7).
    ("MESSAGE_CHANNEL_UNAVAILABLE", None, TRANSIENT),
    // The contact exists under another messenger: this job's recipient cannot be reached so.
    ("MESSAGES_ABNORMAL_SEND", None, INVALID),
    ("MESSAGES_INVALID_CONTACT_TYPE", None, INVALID),
    // "Not sent, unexpected server error": explicitly not sent, so plain transient.
    ("MESSAGES_CAN_NOT_ADD", None, TRANSIENT),
    ("MESSAGES_CONTENT_SIZE_EXCEEDED_WABA", None, INVALID),
    ("MESSAGES_CONTENT_SIZE_EXCEEDED_TELEGRAM", None, INVALID),
    ("MESSAGES_TOO_LONG_VIBER", None, INVALID),
    ("MESSAGES_TOO_LONG_WABA_HEADER", None, INVALID),
    ("MESSAGES_TOO_LONG_WABA_TEMPLATE", None, INVALID),
    // The quoted message (message.context) is unknown to Wazzup.
    ("REFERENCE_MESSAGE_NOT_FOUND", None, INVALID),
    // Nothing says whether the message went out: retry (crmMessageId dedupes for 60 s), but
    // never fail over to another channel, which could send it twice.
    ("UNKNOWN_ERROR", None, MAYBE_SENT),
    ("UNKNOWN_ERROR_WITH_TRACE_ID", None, MAYBE_SENT),
    // Edit/delete errors: never the answer to a send, listed so they classify if they ever are.
    ("MESSAGES_EDITING_TIME_EXPIRED", None, INVALID),
    ("MESSAGES_CONTAIN_BUTTONS", None, INVALID),
    ("MESSAGES_ONLY_TEXT_OR_CONTENT", None, INVALID),
    ("CHANNEL_INVALID_TRANSPORT_FOR_EDITING", None, INVALID),
    (
        "CHANNEL_INVALID_TRANSPORT_FOR_CONTENT_EDITING",
        None,
        INVALID,
    ),
    // The API key's user has no access to the chat: access settings are the operator's to fix.
    ("CHAT_NO_ACCESS", None, AUTH),
    ("MESSAGES_NOT_FOUND", None, INVALID),
    // Too many active dialogs on the channel: a throughput limit (SPEC §7).
    ("CHANNEL_LIMIT_EXCEEDED", None, RATE_LIMITED),
    ("MESSAGES_DELETION_TIME_EXPIRED", None, INVALID),
    ("CHANNEL_INVALID_TRANSPORT_FOR_DELETION", None, INVALID),
    ("TEMPLATE_REJECTED", None, REJECTED),
    // "Maybe not on WhatsApp… try later": SPEC §7 files it under rejected; retrying a number
    // that is not on WhatsApp only delays the producer's fallback.
    ("BAD_CONTACT", None, REJECTED),
    // --- Codes RECEIPTS.md lists on failed status webhooks; the same code in a send answer
    // must mean the same thing.
    ("TOO_LONG_TEXT", None, INVALID),
    ("TOO_BIG_CONTENT", None, INVALID),
    ("SPAM", None, REJECTED),
    ("24_HOURS_EXCEEDED", None, WINDOW_EXPIRED),
];

/// HTTP statuses RECEIPTS.md documents without naming a body code: 401 bad key, 403 route not
/// allowed for the key, 429 above 500 requests per 5 s.
pub const STATUS_TABLE: &[(u16, ErrorClass)] = &[
    (401, ErrorClass::Auth),
    (403, ErrorClass::Auth),
    (429, ErrorClass::RateLimited),
];

/// Wazzup's rate-limit window resets every 5 s, so without a `Retry-After` that is the wait.
pub const RATE_WINDOW: Duration = Duration::from_secs(5);

/// Longest `crmMessageId` we build from a readable key. The document sets no limit; this
/// conservative bound (with [`readable_key`]'s charset) keeps an undocumented one from ever
/// turning a valid job into `INVALID_MESSAGE_DATA`. Longer or unusual keys get a digest.
pub const MAX_CRM_MESSAGE_ID: usize = 64;

/// How much of the channelId tags a readable `crmMessageId` (8 hex digits of a random UUID:
/// two channels of one account share them about once in four billion pairs).
const CHANNEL_TAG_CHARS: usize = 8;

/// `provider_message_id` reported for a `REPEATED_CRM_MESSAGE_ID` answer, which does not carry
/// the original `messageId`: this prefix plus the `crmMessageId`. It is never a Wazzup id, so
/// receipts for the original message will not correlate (they are retried, then dead-lettered,
/// never dropped), but the job is truthfully `sent` and the value says why.
pub const REPLAYED_ID_PREFIX: &str = "crm:";

/// The Wazzup adapter for one channel.
pub struct Wazzup {
    /// The channel's `channelId` (a UUID from Wazzup's channel list).
    sender: String,
    /// API key (or Sidecar key), sent as a Bearer token.
    api_key: Secret,
    /// Canonical template name → Wazzup `templateId`, from the channel's `templates` map.
    templates: BTreeMap<String, String>,
}

impl Wazzup {
    /// An adapter sending from `sender` with `api_key`, templates mapped by `channel.templates`.
    pub fn new(sender: String, api_key: Secret, channel: &ChannelConfig) -> Self {
        Self {
            sender,
            api_key,
            templates: channel.templates.clone(),
        }
    }

    /// The body fields that carry the message content itself.
    fn content(&self, job: &Job) -> Result<Map<String, Value>, Failure> {
        let mut out = Map::new();
        match &job.message.content {
            // `preview_url` is a rendering hint Wazzup does not expose; the text arrives intact.
            Content::Text(text) => {
                out.insert("text".into(), json!(text.body));
            }
            Content::Image(media)
            | Content::Video(media)
            | Content::Audio(media)
            | Content::Document(media)
            | Content::Sticker(media) => {
                out.insert("contentUri".into(), json!(media_uri(job, media)?));
            }
            Content::Template(template) => self.template(job, template, &mut out)?,
            Content::Interactive(interactive) => interactive_buttons(interactive, &mut out)?,
            Content::Location(_) => return Err(unsupported("location messages")),
            Content::Contacts(_) => return Err(unsupported("contacts messages")),
            Content::Reaction(_) => return Err(unsupported("reaction messages")),
        }
        Ok(out)
    }

    /// `templateId` from the channel's map, `templateValues` from the body parameters, and
    /// quick-reply payloads as `buttonsObject.buttons[index].payload`.
    fn template(
        &self,
        job: &Job,
        template: &Template,
        out: &mut Map<String, Value>,
    ) -> Result<(), Failure> {
        // The templateId names one approved template in one language, so the canonical
        // `language.code` is decided by the map, not sent.
        let Some(id) = self.templates.get(&template.name) else {
            return Err(Failure::invalid(
                "template_not_mapped",
                format!(
                    "template `{}` has no Wazzup templateId in channels.{}.templates \
                     (Wazzup sends templates by id: map the name to it)",
                    template.name, job.channel
                ),
            ));
        };
        let mut values = Vec::new();
        let mut payloads: BTreeMap<u8, String> = BTreeMap::new();
        for component in template.components.iter().flatten() {
            let parameters = component.parameters.as_deref().unwrap_or_default();
            match component.kind {
                ComponentType::Body => {
                    for parameter in parameters {
                        if parameter.parameter_name.is_some() {
                            // templateValues is positional; a named template cannot be filled.
                            return Err(unsupported("named template parameters"));
                        }
                        values.push(match &parameter.value {
                            ParameterValue::Text(text) => text.clone(),
                            // Meta shows date_time parameters as their fallback_value anyway.
                            ParameterValue::DateTime(date) => date.fallback_value.clone(),
                            other => {
                                return Err(unsupported(&format!(
                                    "{} template parameters (templateValues are plain strings)",
                                    other.type_name()
                                )));
                            }
                        });
                    }
                }
                // The document gives templateValues for "the template's variables" without a
                // way to address a header, so header variables and media cannot be placed.
                ComponentType::Header if !parameters.is_empty() => {
                    return Err(unsupported("template header parameters"));
                }
                ComponentType::Header | ComponentType::Footer => {}
                ComponentType::Button => {
                    let index = component.index.map(|i| i.value()).unwrap_or_default();
                    match component.sub_type {
                        Some(ButtonSubType::QuickReply) => {}
                        _ if parameters.is_empty() => continue,
                        _ => {
                            return Err(unsupported("url or copy_code template button parameters"));
                        }
                    }
                    for parameter in parameters {
                        let ParameterValue::Payload(payload) = &parameter.value else {
                            return Err(unsupported(&format!(
                                "{} parameters on quick_reply buttons (only payload)",
                                parameter.value.type_name()
                            )));
                        };
                        if payloads.insert(index, payload.clone()).is_some() {
                            return Err(Failure::invalid(
                                "invalid_field",
                                format!("template button index {index} is given twice"),
                            ));
                        }
                    }
                }
            }
        }
        out.insert("templateId".into(), json!(id));
        if !values.is_empty() {
            out.insert("templateValues".into(), json!(values));
        }
        if !payloads.is_empty() {
            // buttonsObject.buttons is positional; a gap has no documented filler.
            if payloads.keys().copied().ne(0..payloads.len() as u8) {
                return Err(unsupported(
                    "template button payloads that skip a button (buttonsObject.buttons is \
                     positional: give payloads for buttons 0, 1, … in order)",
                ));
            }
            let buttons: Vec<Value> = payloads
                .into_values()
                .map(|p| json!({ "payload": p }))
                .collect();
            out.insert("buttonsObject".into(), json!({ "buttons": buttons }));
        }
        Ok(())
    }
}

/// Reply buttons as `text` + `buttonsObject.buttons[{text, type: "text"}]`.
fn interactive_buttons(
    interactive: &Interactive,
    out: &mut Map<String, Value>,
) -> Result<(), Failure> {
    let Action::Button(action) = &interactive.action else {
        return Err(unsupported(
            "interactive list messages (only reply buttons)",
        ));
    };
    if interactive.header.is_some() {
        return Err(unsupported("interactive headers"));
    }
    if interactive.footer.is_some() {
        return Err(unsupported("interactive footers"));
    }
    let buttons: Vec<Value> = action
        .buttons
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut button = json!({ "text": b.reply.title, "type": "text" });
            // Without a payload Wazzup reports the button's position ("0", "1", …) in the
            // answer; a reply id equal to it needs no payload, any other id is kept as one.
            if b.reply.id != i.to_string() {
                button["payload"] = json!(b.reply.id);
            }
            button
        })
        .collect();
    out.insert("text".into(), json!(interactive.body.text));
    out.insert("buttonsObject".into(), json!({ "buttons": buttons }));
    Ok(())
}

/// A media message as `contentUri`: only a link, and only without what Wazzup cannot carry.
fn media_uri<'a>(job: &Job, media: &'a Media) -> Result<&'a str, Failure> {
    let kind = job.message.type_name();
    if media.caption.is_some() {
        return Err(unsupported(&format!(
            "{kind} with a caption (a message is text or content, not both)"
        )));
    }
    if media.filename.is_some() {
        return Err(unsupported(&format!(
            "{kind} with a filename (contentUri carries no file name)"
        )));
    }
    media.link.as_deref().ok_or_else(|| {
        unsupported(&format!(
            "{kind} by media id (Wazzup only downloads content from a link)"
        ))
    })
}

fn unsupported(what: &str) -> Failure {
    gateways::unsupported(ProviderKind::Wazzup, what)
}

/// The `crmMessageId` for an idempotency key on a channel.
///
/// Wazzup's crmMessageId is most likely unique per account, not per channel (the document does
/// not say), while mensajero keys are unique per channel: the same key on two channels of one
/// account (or a failover between them) must not read as a repeat, or the second message would
/// be counted as sent and never go out. So the value is scoped by channel: `<key>@<first 8 of
/// channelId>` when that is short and plain (readable in Wazzup), else `mj-<UUIDv5 of channelId
/// and key>`. Both are stable across attempts and workers, so the 60 s dedupe catches resends.
pub fn crm_message_id(channel_id: &str, idempotency_key: &str) -> String {
    let tag: String = channel_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(CHANNEL_TAG_CHARS)
        .collect();
    if readable_key(idempotency_key) && idempotency_key.len() + 1 + tag.len() <= MAX_CRM_MESSAGE_ID
    {
        return format!("{idempotency_key}@{tag}");
    }
    let namespace = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"urn:mensajero:wazzup");
    let name = format!("{channel_id}\n{idempotency_key}");
    format!("mj-{}", uuid::Uuid::new_v5(&namespace, name.as_bytes()))
}

/// Whether a key can appear in a `crmMessageId` as it is: only `[A-Za-z0-9._:@-]`.
fn readable_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
}

impl Adapter for Wazzup {
    fn provider(&self) -> ProviderKind {
        ProviderKind::Wazzup
    }

    fn request(&self, job: &Job, ctx: SendContext<'_>) -> Result<HttpCall, Failure> {
        let mut body = self.content(job)?;
        body.insert("channelId".into(), json!(self.sender));
        body.insert("chatType".into(), json!(CHAT_TYPE));
        body.insert("chatId".into(), json!(job.to_digits()));
        body.insert(
            "crmMessageId".into(),
            json!(crm_message_id(&self.sender, ctx.idempotency_key)),
        );
        if let Some(context) = &job.message.context {
            body.insert("refMessageId".into(), json!(context.message_id));
        }
        gateways::merge_options(&mut body, job)?;

        let auth = gateways::bearer(&self.api_key)?;
        Ok(HttpCall {
            method: Method::POST,
            path: PATH.into(),
            headers: vec![auth],
            body: Value::Object(body),
        })
    }

    fn code_class(&self, code: &str) -> Option<ErrorClass> {
        match lookup(code)? {
            Meaning::Failed(class) | Meaning::MaybeSent(class) => Some(class),
            Meaning::AlreadySent => None,
        }
    }

    fn response(&self, reply: &HttpReply) -> SendResult {
        let json = reply.json();
        let code = json.as_ref().and_then(body_code);
        if (200..300).contains(&reply.status) && code.is_none() {
            let id = json
                .as_ref()
                .and_then(|b| b.get("messageId"))
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty());
            return match id {
                Some(id) => Ok(Accepted {
                    provider_message_id: id.to_string(),
                    replayed: false,
                }),
                // Accepted but unreadable: it may have been sent; crmMessageId makes a prompt
                // retry answer REPEATED_CRM_MESSAGE_ID instead of sending twice.
                None => Err(Failure::new(
                    ErrorClass::Transient,
                    "bad_response",
                    format!("HTTP {} without messageId", reply.status),
                )
                .maybe_sent()),
            };
        }
        classify_error(reply, json.as_ref(), code)
    }
}

/// The error code of a Wazzup body: `error` (a string), or a `code` other than `OK` (the
/// document's "messageId only appears when code=OK" implies bodies with another `code`).
fn body_code(body: &Value) -> Option<String> {
    let error = body.get("error").and_then(Value::as_str);
    let code = body
        .get("code")
        .and_then(Value::as_str)
        .filter(|c| !c.eq_ignore_ascii_case("OK"));
    error.or(code).filter(|c| !c.is_empty()).map(str::to_owned)
}

/// Compare codes ignoring case and underscores (`repeatedCrmMessageId` is
/// `REPEATED_CRM_MESSAGE_ID`).
fn same_code(a: &str, b: &str) -> bool {
    let squash = |s: &str| {
        s.chars()
            .filter(|c| *c != '_')
            .map(|c| c.to_ascii_uppercase())
            .collect::<String>()
    };
    squash(a) == squash(b)
}

/// The table row for a code, if Wazzup documents it.
pub fn lookup(code: &str) -> Option<Meaning> {
    ERROR_TABLE
        .iter()
        .find(|(name, _, _)| same_code(name, code))
        .map(|(_, _, meaning)| *meaning)
}

/// Map an error answer (any status, or a 2xx whose body names an error) to a result.
fn classify_error(reply: &HttpReply, json: Option<&Value>, code: Option<String>) -> SendResult {
    let message = json
        .and_then(gateways::error_message)
        .unwrap_or_else(|| format!("HTTP {}", reply.status));
    let meaning = match code.as_deref().and_then(lookup) {
        Some(meaning) => meaning,
        None => match STATUS_TABLE.iter().find(|(s, _)| *s == reply.status) {
            Some((_, class)) => Meaning::Failed(*class),
            None => {
                tracing::warn!(
                    provider = "wazzup",
                    status = reply.status,
                    code = code.as_deref().unwrap_or("-"),
                    "gateway answered an undocumented error; classifying by HTTP status"
                );
                let class = gateways::class_for_status(reply.status);
                match gateways::sent_for_status(reply.status) {
                    Sent::Maybe => Meaning::MaybeSent(class),
                    Sent::No => Meaning::Failed(class),
                }
            }
        },
    };
    let class = match meaning {
        Meaning::AlreadySent => return Ok(replayed(json)),
        Meaning::Failed(class) | Meaning::MaybeSent(class) => refine(class, code.as_deref(), json),
    };
    let mut retry_after = reply.retry_after();
    if class == ErrorClass::RateLimited && reply.status == 429 && retry_after.is_none() {
        retry_after = Some(RATE_WINDOW);
    }
    let mut failure = Failure::new(
        class,
        code.clone()
            .unwrap_or_else(|| format!("http_{}", reply.status)),
        message,
    )
    .with_retry_after(retry_after);
    if let Some(code) = code {
        failure = failure.with_provider_code(code);
    }
    if matches!(meaning, Meaning::MaybeSent(_)) {
        failure = failure.maybe_sent();
    }
    Err(failure)
}

/// `INVALID_MESSAGE_DATA` naming `channelId` is not the job's fault: the channel's `sender`
/// is wrong, which an operator fixes (class `channel`, so the backlog drains afterwards).
fn refine(class: ErrorClass, code: Option<&str>, json: Option<&Value>) -> ErrorClass {
    let names_channel = json
        .and_then(|b| b.pointer("/data/fields"))
        .and_then(Value::as_array)
        .is_some_and(|fields| fields.iter().any(|f| f == "channelId"));
    if code.is_some_and(|c| same_code(c, "INVALID_MESSAGE_DATA")) && names_channel {
        ErrorClass::Channel
    } else {
        class
    }
}

/// A `REPEATED_CRM_MESSAGE_ID` answer: already sent. The document's body has no `messageId`;
/// one is used if present, else [`REPLAYED_ID_PREFIX`] + the echoed `crmMessageId`.
fn replayed(json: Option<&Value>) -> Accepted {
    let original = json
        .and_then(|b| b.get("messageId").or_else(|| b.pointer("/data/messageId")))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    let echoed = json
        .and_then(|b| b.pointer("/data/crmMessageId"))
        .and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "unknown".into());
    Accepted {
        provider_message_id: original.unwrap_or_else(|| format!("{REPLAYED_ID_PREFIX}{echoed}")),
        replayed: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::Sent;
    use bytes::Bytes;
    use reqwest::header::AUTHORIZATION;
    use reqwest::header::HeaderMap;

    const SENDER: &str = "e0629e11-0f67-4567-92a9-2237e91ec1b9";

    fn adapter() -> Wazzup {
        let channel: ChannelConfig = toml::from_str(
            r#"
            provider = "wazzup"
            [templates]
            confirmacion_pedido = "6201005a-9a6f-486f-bdd5-e6cb86c76ddb"
            "#,
        )
        .expect("channel config");
        Wazzup::new(SENDER.into(), Secret::new("wz-key"), &channel)
    }

    fn reply(status: u16, body: Value, retry_after: Option<&str>) -> HttpReply {
        let mut headers = HeaderMap::new();
        if let Some(after) = retry_after {
            headers.insert(reqwest::header::RETRY_AFTER, after.parse().unwrap());
        }
        HttpReply {
            status,
            headers,
            body: Bytes::from(serde_json::to_vec(&body).unwrap()),
        }
    }

    /// Wazzup's documented error body.
    fn error_body(status: u16, code: &str) -> Value {
        json!({"status": status, "requestId": "7ca68797d127735e72b066b0080e2cc0",
               "error": code, "description": "descripción", "data": {"fields": ["chatId"]}})
    }

    fn job(message: Value) -> Job {
        crate::job::parse(
            &serde_json::to_vec(&json!({
                "id": "job-1", "channel": "wazzup-ru", "to": "+79994621848", "message": message
            }))
            .unwrap(),
        )
        .expect("valid job")
    }

    fn request(message: Value) -> Result<HttpCall, Failure> {
        adapter().request(
            &job(message),
            SendContext {
                idempotency_key: "key-1",
                attempt: 1,
            },
        )
    }

    /// One row of [`ERROR_TABLE`] as Wazzup would send it (documented status, else 400, with a
    /// `Retry-After`), checked against the expectation written independently of the table.
    fn check_row(code: &str, expected: Meaning) {
        let status = ERROR_TABLE
            .iter()
            .find(|(c, _, _)| *c == code)
            .unwrap_or_else(|| panic!("{code} is not in ERROR_TABLE"))
            .1
            .unwrap_or(400);
        let answer = adapter().response(&reply(status, error_body(status, code), Some("7")));
        match expected {
            Meaning::AlreadySent => {
                let accepted = answer.expect(code);
                assert!(accepted.replayed, "{code}");
            }
            Meaning::Failed(class) | Meaning::MaybeSent(class) => {
                let f = answer.expect_err(code);
                assert_eq!(f.class, class, "{code}");
                assert_eq!(f.code, code);
                assert_eq!(f.provider_code.as_deref(), Some(code));
                assert_eq!(f.message, "descripción");
                assert_eq!(f.retry_after, Some(Duration::from_secs(7)), "{code}");
                let sent = if matches!(expected, Meaning::MaybeSent(_)) {
                    Sent::Maybe
                } else {
                    Sent::No
                };
                assert_eq!(f.sent, sent, "{code}");
            }
        }
    }

    /// One `#[test]` per table row, plus the list of codes they cover.
    macro_rules! row_tests {
        ($($name:ident: $code:literal => $expected:expr;)*) => {
            $(
                #[test]
                fn $name() {
                    check_row($code, $expected);
                }
            )*
            const TESTED_CODES: &[&str] = &[$($code),*];
        };
    }

    use ErrorClass::{Auth, Channel, Invalid, RateLimited, Rejected, Transient, WindowExpired};
    use Meaning::{AlreadySent, Failed, MaybeSent};

    row_tests! {
        row_invalid_message_data: "INVALID_MESSAGE_DATA" => Failed(Invalid);
        row_wrong_transport: "WRONG_TRANSPORT" => Failed(Channel);
        row_repeated_crm_message_id: "REPEATED_CRM_MESSAGE_ID" => AlreadySent;
        row_balance_is_empty: "BALANCE_IS_EMPTY" => Failed(Channel);
        row_message_wrong_content_type: "MESSAGE_WRONG_CONTENT_TYPE" => Failed(Invalid);
        row_message_only_text_or_content: "MESSAGE_ONLY_TEXT_OR_CONTENT" => Failed(Invalid);
        row_message_nothing_to_send: "MESSAGE_NOTHING_TO_SEND" => Failed(Invalid);
        row_message_text_too_long: "MESSAGE_TEXT_TOO_LONG" => Failed(Invalid);
        row_messages_too_long_instagram: "MESSAGES_TOO_LONG_INSTAGRAM" => Failed(Invalid);
        row_messages_too_long_telegram: "MESSAGES_TOO_LONG_TELEGRAM" => Failed(Invalid);
        row_messages_too_long_waba: "MESSAGES_TOO_LONG_WABA" => Failed(Invalid);
        row_messages_content_can_not_be_blank: "MESSAGES_CONTENT_CAN_NOT_BE_BLANK" => Failed(Invalid);
        row_messages_content_size_exceeded: "MESSAGES_CONTENT_SIZE_EXCEEDED" => Failed(Invalid);
        row_messages_text_can_not_be_blank: "MESSAGES_TEXT_CAN_NOT_BE_BLANK" => Failed(Invalid);
        row_channel_not_found: "CHANNEL_NOT_FOUND" => Failed(Channel);
        row_channel_blocked: "CHANNEL_BLOCKED" => Failed(Channel);
        row_channel_wapi_rejected: "CHANNEL_WAPI_REJECTED" => Failed(Channel);
        row_message_download_content_error: "MESSAGE_DOWNLOAD_CONTENT_ERROR" => Failed(Transient);
        row_messages_not_text_first: "MESSAGES_NOT_TEXT_FIRST" => Failed(WindowExpired);
        row_messages_is_spam: "MESSAGES_IS_SPAM" => Failed(Rejected);
        row_validation_error: "VALIDATION_ERROR" => Failed(Invalid);
        row_channel_no_money: "CHANNEL_NO_MONEY" => Failed(Channel);
        row_message_channel_unavailable: "MESSAGE_CHANNEL_UNAVAILABLE" => Failed(Transient);
        row_messages_abnormal_send: "MESSAGES_ABNORMAL_SEND" => Failed(Invalid);
        row_messages_invalid_contact_type: "MESSAGES_INVALID_CONTACT_TYPE" => Failed(Invalid);
        row_messages_can_not_add: "MESSAGES_CAN_NOT_ADD" => Failed(Transient);
        row_messages_content_size_exceeded_waba: "MESSAGES_CONTENT_SIZE_EXCEEDED_WABA" => Failed(Invalid);
        row_messages_content_size_exceeded_telegram: "MESSAGES_CONTENT_SIZE_EXCEEDED_TELEGRAM" => Failed(Invalid);
        row_messages_too_long_viber: "MESSAGES_TOO_LONG_VIBER" => Failed(Invalid);
        row_messages_too_long_waba_header: "MESSAGES_TOO_LONG_WABA_HEADER" => Failed(Invalid);
        row_messages_too_long_waba_template: "MESSAGES_TOO_LONG_WABA_TEMPLATE" => Failed(Invalid);
        row_reference_message_not_found: "REFERENCE_MESSAGE_NOT_FOUND" => Failed(Invalid);
        row_unknown_error: "UNKNOWN_ERROR" => MaybeSent(Transient);
        row_unknown_error_with_trace_id: "UNKNOWN_ERROR_WITH_TRACE_ID" => MaybeSent(Transient);
        row_messages_editing_time_expired: "MESSAGES_EDITING_TIME_EXPIRED" => Failed(Invalid);
        row_messages_contain_buttons: "MESSAGES_CONTAIN_BUTTONS" => Failed(Invalid);
        row_messages_only_text_or_content: "MESSAGES_ONLY_TEXT_OR_CONTENT" => Failed(Invalid);
        row_channel_invalid_transport_for_editing: "CHANNEL_INVALID_TRANSPORT_FOR_EDITING" => Failed(Invalid);
        row_channel_invalid_transport_for_content_editing: "CHANNEL_INVALID_TRANSPORT_FOR_CONTENT_EDITING" => Failed(Invalid);
        row_chat_no_access: "CHAT_NO_ACCESS" => Failed(Auth);
        row_messages_not_found: "MESSAGES_NOT_FOUND" => Failed(Invalid);
        row_channel_limit_exceeded: "CHANNEL_LIMIT_EXCEEDED" => Failed(RateLimited);
        row_messages_deletion_time_expired: "MESSAGES_DELETION_TIME_EXPIRED" => Failed(Invalid);
        row_channel_invalid_transport_for_deletion: "CHANNEL_INVALID_TRANSPORT_FOR_DELETION" => Failed(Invalid);
        row_template_rejected: "TEMPLATE_REJECTED" => Failed(Rejected);
        row_bad_contact: "BAD_CONTACT" => Failed(Rejected);
        row_too_long_text: "TOO_LONG_TEXT" => Failed(Invalid);
        row_too_big_content: "TOO_BIG_CONTENT" => Failed(Invalid);
        row_spam: "SPAM" => Failed(Rejected);
        row_24_hours_exceeded: "24_HOURS_EXCEEDED" => Failed(WindowExpired);
    }

    #[test]
    fn every_table_row_has_its_test_and_appears_once() {
        let table: Vec<&str> = ERROR_TABLE.iter().map(|(c, _, _)| *c).collect();
        assert_eq!(table, TESTED_CODES, "ERROR_TABLE and its row tests differ");
        for (i, code) in table.iter().enumerate() {
            assert!(!table[..i].contains(code), "{code} listed twice");
        }
    }

    #[test]
    fn the_three_documented_error_bodies() {
        let invalid = json!({ "status": 400, "requestId": "7ca68797d127735e72b066b0080e2cc0",
            "error": "INVALID_MESSAGE_DATA", "description": "Los datos del mensaje no son válidos",
            "data": { "fields": ["chatId"] } });
        let f = adapter().response(&reply(400, invalid, None)).unwrap_err();
        assert_eq!(f.class, ErrorClass::Invalid);
        assert_eq!(f.message, "Los datos del mensaje no son válidos");
        assert_eq!(f.retry_after, None);

        let transport = json!({ "status": 400, "requestId": "21a9be7692d378b0270e7fc1d993381a",
            "error": "WRONG_TRANSPORT", "description": "No puedes enviar un mensaje de WhatsApp a un chat de VK",
            "data": { "channelId": "dffa1c7b-6db8-4b8f-b559-91166aba879e", "transport": "whatsapp", "chatType": "vk" } });
        let f = adapter()
            .response(&reply(400, transport, None))
            .unwrap_err();
        assert_eq!(f.class, ErrorClass::Channel);
        assert_eq!(f.provider_code.as_deref(), Some("WRONG_TRANSPORT"));

        let repeated = json!({ "status": 400, "requestId": "c1005276e8a2b5aa23fcc94407d39f49",
            "error": "REPEATED_CRM_MESSAGE_ID", "description": "Ya has enviado un mensaje con el mismo crmMessageId",
            "data": { "crmMessageId": "1" } });
        assert_eq!(
            adapter().response(&reply(400, repeated, None)),
            Ok(Accepted {
                provider_message_id: "crm:1".into(),
                replayed: true
            })
        );
    }

    #[test]
    fn repeated_in_its_camel_case_spelling_is_already_sent_too() {
        // The document's parameter section shows this shorter body for the same case.
        let body = json!({ "error": "repeatedCrmMessageId",
            "description": "Ya has enviado un mensaje con el mismo crmMessageId" });
        let accepted = adapter().response(&reply(400, body, None)).unwrap();
        assert_eq!(accepted.provider_message_id, "crm:unknown");
        assert!(accepted.replayed);
        // A body that does carry the original id is believed.
        let body = json!({ "error": "REPEATED_CRM_MESSAGE_ID",
            "data": { "crmMessageId": "k", "messageId": "f66c53a6-957a-46b2-b41b-5a2ef4844bcb" } });
        let accepted = adapter().response(&reply(400, body, None)).unwrap();
        assert_eq!(
            accepted.provider_message_id,
            "f66c53a6-957a-46b2-b41b-5a2ef4844bcb"
        );
    }

    #[test]
    fn invalid_channel_id_is_a_channel_problem() {
        let mut body = error_body(400, "INVALID_MESSAGE_DATA");
        body["data"]["fields"] = json!(["channelId"]);
        let f = adapter().response(&reply(400, body, None)).unwrap_err();
        assert_eq!(f.class, ErrorClass::Channel);
        assert_eq!(f.code, "INVALID_MESSAGE_DATA");
    }

    #[test]
    fn status_rows_without_a_documented_code() {
        for (status, class) in STATUS_TABLE {
            let f = adapter()
                .response(&reply(
                    *status,
                    json!({"error": "SOMETHING", "description": "d"}),
                    None,
                ))
                .unwrap_err();
            assert_eq!(f.class, *class, "{status}");
            assert_eq!(f.sent, Sent::No);
        }
        // 429 without Retry-After waits for Wazzup's 5 s window; with one, honours it.
        let f = adapter()
            .response(&reply(429, json!({}), None))
            .unwrap_err();
        assert_eq!(f.code, "http_429");
        assert_eq!(f.retry_after, Some(RATE_WINDOW));
        let f = adapter()
            .response(&reply(429, json!({}), Some("2")))
            .unwrap_err();
        assert_eq!(f.retry_after, Some(Duration::from_secs(2)));
    }

    #[test]
    fn unknown_codes_fall_back_on_the_status() {
        let f = adapter()
            .response(&reply(422, error_body(422, "BRAND_NEW_CODE"), None))
            .unwrap_err();
        assert_eq!(f.class, ErrorClass::Invalid);
        assert_eq!(f.provider_code.as_deref(), Some("BRAND_NEW_CODE"));
        assert_eq!(f.sent, Sent::No);

        let f = adapter()
            .response(&reply(503, error_body(503, "BRAND_NEW_CODE"), Some("3")))
            .unwrap_err();
        assert_eq!(f.class, ErrorClass::Transient);
        assert_eq!(f.retry_after, Some(Duration::from_secs(3)));
        assert_eq!(f.sent, Sent::No, "a 503 refused the work");

        let f = adapter()
            .response(&reply(500, error_body(500, "BRAND_NEW_CODE"), None))
            .unwrap_err();
        assert_eq!((f.class, f.sent), (ErrorClass::Transient, Sent::Maybe));

        let plain = HttpReply {
            status: 502,
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"<html>bad gateway</html>"),
        };
        let f = adapter().response(&plain).unwrap_err();
        assert_eq!(f.class, ErrorClass::Transient);
        assert_eq!(f.code, "http_502");
        assert_eq!(f.provider_code, None);
        assert_eq!(f.message, "HTTP 502");
    }

    #[test]
    fn success_and_two_hundreds_that_failed() {
        let ok =
            json!({ "messageId": "f66c53a6-957a-46b2-b41b-5a2ef4844bcb", "chatId": "79999999999" });
        assert_eq!(
            adapter().response(&reply(201, ok, None)),
            Ok(Accepted {
                provider_message_id: "f66c53a6-957a-46b2-b41b-5a2ef4844bcb".into(),
                replayed: false
            })
        );
        let ok = json!({ "code": "OK", "messageId": "m-1", "chatId": "79999999999" });
        assert_eq!(
            adapter()
                .response(&reply(200, ok, None))
                .unwrap()
                .provider_message_id,
            "m-1"
        );
        // "messageId only appears when code=OK": another code is a failure, classified.
        let failed = json!({ "code": "BAD_CONTACT", "description": "no WhatsApp" });
        let f = adapter().response(&reply(200, failed, None)).unwrap_err();
        assert_eq!(f.class, ErrorClass::Rejected);
        assert_eq!(f.provider_code.as_deref(), Some("BAD_CONTACT"));
        let failed = json!({ "error": "MESSAGE_CHANNEL_UNAVAILABLE" });
        let f = adapter().response(&reply(201, failed, None)).unwrap_err();
        assert_eq!(f.class, ErrorClass::Transient);
        // Accepted without an id: maybe sent.
        let f = adapter()
            .response(&reply(201, json!({"chatId": "1"}), None))
            .unwrap_err();
        assert_eq!(
            (f.class, f.code.as_str(), f.sent),
            (ErrorClass::Transient, "bad_response", Sent::Maybe)
        );
    }

    #[test]
    fn unsupported_types_and_fields_name_wazzup() {
        let cases = [
            (
                "location",
                json!({"type": "location", "location": {"latitude": -34.6, "longitude": -58.38}}),
            ),
            (
                "contacts",
                json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Soporte"}}]}),
            ),
            (
                "reaction",
                json!({"type": "reaction", "reaction": {"message_id": "m", "emoji": "👍"}}),
            ),
            (
                "caption",
                json!({"type": "image", "image": {"link": "https://e.com/a.jpg", "caption": "Hola"}}),
            ),
            (
                "caption",
                json!({"type": "video", "video": {"link": "https://e.com/a.mp4", "caption": "Hola"}}),
            ),
            (
                "caption",
                json!({"type": "document", "document": {"link": "https://e.com/a.pdf", "caption": "Hola"}}),
            ),
            (
                "filename",
                json!({"type": "document", "document": {"link": "https://e.com/a.pdf", "filename": "a.pdf"}}),
            ),
            (
                "media id",
                json!({"type": "audio", "audio": {"id": "1013859600285441"}}),
            ),
            (
                "media id",
                json!({"type": "sticker", "sticker": {"id": "55"}}),
            ),
            (
                "list",
                json!({"type": "interactive", "interactive": {"type": "list", "body": {"text": "Elegí"},
                "action": {"button": "Ver", "sections": [{"rows": [{"id": "a", "title": "A"}]}]}}}),
            ),
            (
                "headers",
                json!({"type": "interactive", "interactive": {"type": "button", "header": {"type": "text", "text": "H"},
                "body": {"text": "?"}, "action": {"buttons": [{"type": "reply", "reply": {"id": "0", "title": "Sí"}}]}}}),
            ),
            (
                "footers",
                json!({"type": "interactive", "interactive": {"type": "button", "footer": {"text": "F"},
                "body": {"text": "?"}, "action": {"buttons": [{"type": "reply", "reply": {"id": "0", "title": "Sí"}}]}}}),
            ),
            (
                "header parameters",
                template(
                    json!([{"type": "header", "parameters": [{"type": "text", "text": "x"}]}]),
                ),
            ),
            (
                "header parameters",
                template(
                    json!([{"type": "header", "parameters": [{"type": "image", "image": {"link": "https://e.com/a.jpg"}}]}]),
                ),
            ),
            (
                "currency",
                template(json!([{"type": "body", "parameters": [{"type": "currency",
                "currency": {"fallback_value": "$10", "code": "USD", "amount_1000": 10000}}]}])),
            ),
            (
                "named",
                template(
                    json!([{"type": "body", "parameters": [{"type": "text", "text": "x", "parameter_name": "nombre"}]}]),
                ),
            ),
            (
                "url or copy_code",
                template(
                    json!([{"type": "button", "sub_type": "url", "index": 0, "parameters": [{"type": "text", "text": "abc"}]}]),
                ),
            ),
            (
                "url or copy_code",
                template(
                    json!([{"type": "button", "sub_type": "copy_code", "index": 0, "parameters": [{"type": "coupon_code", "coupon_code": "ABC"}]}]),
                ),
            ),
            (
                "skip a button",
                template(
                    json!([{"type": "button", "sub_type": "quick_reply", "index": 1, "parameters": [{"type": "payload", "payload": "p"}]}]),
                ),
            ),
        ];
        for (what, message) in cases {
            let f = request(message.clone()).expect_err(what);
            assert_eq!(f.class, ErrorClass::Invalid, "{what}");
            assert_eq!(f.code, "unsupported_message_type", "{what}");
            assert!(f.message.starts_with("wazzup cannot send"), "{}", f.message);
            assert!(f.message.contains(what), "{what}: {}", f.message);
        }
    }

    fn template(components: Value) -> Value {
        json!({"type": "template", "template": {"name": "confirmacion_pedido",
            "language": {"code": "es_AR"}, "components": components}})
    }

    #[test]
    fn an_unmapped_template_names_the_channel_map() {
        let f = request(
            json!({"type": "template", "template": {"name": "otra", "language": {"code": "es"}}}),
        )
        .unwrap_err();
        assert_eq!(f.class, ErrorClass::Invalid);
        assert_eq!(f.code, "template_not_mapped");
        assert!(
            f.message.contains("channels.wazzup-ru.templates"),
            "{}",
            f.message
        );
        assert!(f.message.contains("`otra`"), "{}", f.message);
    }

    #[test]
    fn request_shape() {
        let call = request(
            json!({"type": "text", "text": {"body": "Hola", "preview_url": true},
            "context": {"message_id": "61e5a375-1760-452f-ad73-5318844ffc4f"}}),
        )
        .unwrap();
        assert_eq!(call.method, Method::POST);
        assert_eq!(call.path, "/v3/message");
        let (name, value) = &call.headers[0];
        assert_eq!(name, AUTHORIZATION);
        assert_eq!(value, "Bearer wz-key");
        assert!(value.is_sensitive());
        assert_eq!(
            call.body,
            json!({"channelId": SENDER, "chatType": "whatsapp", "chatId": "79994621848",
                   "crmMessageId": "key-1@e0629e11", "text": "Hola",
                   "refMessageId": "61e5a375-1760-452f-ad73-5318844ffc4f"})
        );
        // Template: body values in order (date_time as shown), quick-reply payloads by index.
        let call = request(template(json!([
            {"type": "body", "parameters": [{"type": "text", "text": "María"},
                {"type": "date_time", "date_time": {"fallback_value": "22/11"}}]},
            {"type": "button", "sub_type": "quick_reply", "index": "1", "parameters": [{"type": "payload", "payload": "b"}]},
            {"type": "button", "sub_type": "quick_reply", "index": 0, "parameters": [{"type": "payload", "payload": "a"}]}
        ])))
        .unwrap();
        assert_eq!(
            call.body["templateId"],
            "6201005a-9a6f-486f-bdd5-e6cb86c76ddb"
        );
        assert_eq!(call.body["templateValues"], json!(["María", "22/11"]));
        assert_eq!(
            call.body["buttonsObject"],
            json!({"buttons": [{"payload": "a"}, {"payload": "b"}]})
        );
        // Reply ids other than the button's position travel as payloads.
        let call = request(
            json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "?"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "si", "title": "Sí"}},
                                   {"type": "reply", "reply": {"id": "1", "title": "No"}}]}}}),
        )
        .unwrap();
        assert_eq!(
            call.body["buttonsObject"],
            json!({"buttons": [{"text": "Sí", "type": "text", "payload": "si"}, {"text": "No", "type": "text"}]})
        );
        // Media by link.
        let call = request(json!({"type": "sticker", "sticker": {"link": "https://e.com/s.webp"}}))
            .unwrap();
        assert_eq!(call.body["contentUri"], "https://e.com/s.webp");
        assert!(call.body.get("text").is_none());
    }

    #[test]
    fn provider_options_add_but_never_replace() {
        let mut job = job(json!({"type": "text", "text": {"body": "Hola"}}));
        job.provider_options = Some(
            json!({"clearUnanswered": false, "crmUserId": "u-1"})
                .as_object()
                .unwrap()
                .clone(),
        );
        let ctx = SendContext {
            idempotency_key: "k",
            attempt: 1,
        };
        let call = adapter().request(&job, ctx).unwrap();
        assert_eq!(call.body["clearUnanswered"], false);
        assert_eq!(call.body["crmUserId"], "u-1");
        job.provider_options = Some(json!({"chatId": "1"}).as_object().unwrap().clone());
        let f = adapter().request(&job, ctx).unwrap_err();
        assert_eq!(f.code, "invalid_field");
    }

    #[test]
    fn crm_message_id_is_the_key_scoped_by_channel_or_a_stable_digest() {
        assert_eq!(
            crm_message_id(SENDER, "pedido-1847-confirmacion"),
            "pedido-1847-confirmacion@e0629e11"
        );
        // The same key on another channel is another message.
        assert_eq!(
            crm_message_id(
                "24197d5f-06de-421f-8576-9f6e6cb67f28",
                "pedido-1847-confirmacion"
            ),
            "pedido-1847-confirmacion@24197d5f"
        );
        let longest = "k".repeat(MAX_CRM_MESSAGE_ID - 9);
        assert_eq!(crm_message_id(SENDER, &longest).len(), MAX_CRM_MESSAGE_ID);
        let long = "k".repeat(MAX_CRM_MESSAGE_ID - 8);
        let derived = crm_message_id(SENDER, &long);
        assert!(
            derived.starts_with("mj-") && derived.len() == 39,
            "{derived}"
        );
        assert_eq!(
            derived,
            crm_message_id(SENDER, &long),
            "stable across calls"
        );
        assert_ne!(derived, crm_message_id("other-channel", &long));
        assert_ne!(derived, crm_message_id(SENDER, &format!("{long}k")));
        let spaced = crm_message_id(SENDER, "pedido 1847");
        assert!(spaced.starts_with("mj-"), "{spaced}");
    }
}
