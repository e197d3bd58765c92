//! seven.io (`POST /api/waba/messages`), per `shared/providers/seven-waba-messages.txt` and the
//! seven.io section of `shared/providers/RECEIPTS.md`.
//!
//! - **Body**: flat, not Meta's nesting. `from` is the channel's `sender` (the WhatsApp
//!   Business number, digits), `to` the recipient's digits; then per type `text`; `type` +
//!   `url` (+ `caption`, `filename`); `template` (the name) + `language` (the code) +
//!   `components{header, body, buttons}` with positional string values; `latitude`,
//!   `longitude`, `name`, `address`; `contacts[{name{first_name, last_name}, phones}]`;
//!   `interactive_type` `button` (`body`, `buttons[{id, title}]`) or `list` (`body`,
//!   `button_text`, `sections`), each with an optional text `header` and `footer`. A plain text
//!   message carries no `type`, exactly as the document's example. Reactions are not messages
//!   at seven.io: they go to `POST /api/waba/events` as `{"event": "reaction", "msg_id",
//!   "emoji"}`, which answers `{"success": true}` without an id.
//! - **Auth**: `X-Api-Key: <key>` (marked sensitive, so it never shows in debug output).
//! - **Idempotency**: `foreign_id` ([`foreign_id`]) carries the job's idempotency key on every
//!   attempt. The document only promises to *echo* it in status callbacks; it does not say
//!   seven.io refuses a repeat. So a resend after an ambiguous attempt may duplicate at
//!   seven.io (SPEC §4 counts on a dedupe there); the id at least lets an operator find both.
//! - **Errors**: `{"success": "100", "messages": [{"id"}]}` is the only success of a send; any
//!   other `success`, an `error_code`, a 2xx whose body names an error, or an HTTP error is
//!   classified by [`ERROR_TABLE`] (the codes the document lists), else by HTTP status with a
//!   warning. `Retry-After` is honoured wherever it appears. A 2xx without an id may have sent
//!   the message: transient, [`Sent::Maybe`](crate::retry::Sent::Maybe).
//! - **Gaps** (all fail as `unsupported_message_type`, never a silent downgrade): replies
//!   (`context`: the document has no field for the quoted message), media by id (seven.io
//!   fetches a public `url`), interactive media headers, reply-button messages with one button
//!   (the document takes 2–3), template video/document headers and media body parameters, named
//!   template parameters, template button parameters other than `text`, contact fields beyond
//!   name and phones. `preview_url` is dropped: a rendering hint with no seven.io field, the
//!   text itself arrives intact.

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Accepted, Adapter, HttpCall, HttpReply, SendContext, SendResult};
use crate::config::{ProviderKind, Secret};
use crate::job::{
    Action, ButtonSubType, ComponentType, Contact, Content, Header, Interactive, Job, Media,
    ParameterValue, Reaction, Template,
};
use crate::retry::{ErrorClass, Failure};

/// The send endpoint.
pub const PATH: &str = "/api/waba/messages";

/// The conversation-event endpoint, which is where reactions go.
pub const EVENTS_PATH: &str = "/api/waba/events";

/// The authentication header.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The `success` code of an accepted send ("El mensaje ha sido aceptado por la pasarela").
pub const SUCCESS: &str = "100";

/// Longest `foreign_id` seven.io accepts.
pub const MAX_FOREIGN_ID: usize = 64;

/// Marks a `foreign_id` derived by hashing. Raw keys that start with it are hashed too, so a
/// raw id can never equal a hashed one.
pub const HASHED_PREFIX: &str = "sha256.";

/// `provider_message_id` prefix for a reaction: `/api/waba/events` answers `{"success": true}`
/// without any id, and an outcome needs one. A fresh UUID follows, so two reactions never share
/// an id; it is never a seven.io id and no receipt will ever name it.
pub const EVENT_ID_PREFIX: &str = "event:";

/// What a documented seven.io code means for the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// The gateway accepted the message.
    Accepted,
    /// A failure of this class; the gateway provably did not send.
    Failed(ErrorClass),
    /// A failure of this class after which the message may nevertheless have gone out.
    MaybeSent(ErrorClass),
}

/// Every code the document lists under "Respuestas de error", with what it means. A code is
/// looked up wherever seven.io puts one: `error_code`, `code`, a `success` other than "100", a
/// bare numeric body, or (with no code in the body) the HTTP status itself.
pub const ERROR_TABLE: &[(&str, Meaning)] = &[
    // "Accepted by the gateway and being sent": the one success code of a send.
    ("100", Meaning::Accepted),
    // No open 24 h conversation: free-form messages need a template first (SPEC §7).
    ("7002001", Meaning::Failed(ErrorClass::WindowExpired)),
    // Validation error: the job must change. An invalid *sender* is the channel's fault and is
    // refined to `channel` by [`refine`].
    ("400", Meaning::Failed(ErrorClass::Invalid)),
    // The message id (a reaction's target) does not exist or is another account's.
    ("404", Meaning::Failed(ErrorClass::Invalid)),
    // Authentication failed: an operator replaces the key and the backlog drains.
    ("900", Meaning::Failed(ErrorClass::Auth)),
    // The key lacks the `waba` scope: also the key's owner's to fix.
    ("902", Meaning::Failed(ErrorClass::Auth)),
];

/// The seven.io adapter for one channel.
pub struct Seven {
    /// The channel's WhatsApp Business number (`from`), `+` optional.
    sender: String,
    /// API key, sent as `X-Api-Key`.
    api_key: Secret,
}

impl Seven {
    /// An adapter sending from the Business number `sender` with `api_key`.
    pub fn new(sender: String, api_key: Secret) -> Self {
        Self { sender, api_key }
    }

    /// The sender as seven.io's `from`: digits only. A malformed sender is an operator's fix,
    /// so it fails as `channel` (retried slowly until the configuration changes).
    fn from(&self) -> Result<&str, Failure> {
        let digits = self.sender.strip_prefix('+').unwrap_or(&self.sender);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Failure::new(
                ErrorClass::Channel,
                "bad_sender",
                "the channel's sender must be the WhatsApp Business number in digits",
            ));
        }
        Ok(digits)
    }

    fn auth(&self) -> Result<HeaderValue, Failure> {
        let mut value = HeaderValue::from_str(self.api_key.expose()).map_err(|_| {
            Failure::new(
                ErrorClass::Auth,
                "bad_api_key",
                "the API key is not a valid header value",
            )
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// The body fields that carry the message content itself (everything but `from`/`to`).
fn content(job: &Job, out: &mut Map<String, Value>) -> Result<(), Failure> {
    let kind = job.message.type_name();
    match &job.message.content {
        // The document's text example omits `type` ("Establezca text u omítalo").
        Content::Text(text) => {
            out.insert("text".into(), json!(text.body));
        }
        Content::Image(media)
        | Content::Video(media)
        | Content::Audio(media)
        | Content::Document(media)
        | Content::Sticker(media) => self::media(kind, media, out)?,
        Content::Template(template) => self::template(template, out)?,
        Content::Interactive(interactive) => self::interactive(interactive, out)?,
        Content::Location(location) => {
            out.insert("type".into(), json!("location"));
            out.insert("latitude".into(), json!(location.latitude));
            out.insert("longitude".into(), json!(location.longitude));
            insert_some(out, "name", location.name.as_deref());
            insert_some(out, "address", location.address.as_deref());
        }
        Content::Contacts(contacts) => {
            let contacts = contacts
                .iter()
                .map(contact)
                .collect::<Result<Vec<_>, _>>()?;
            out.insert("type".into(), json!("contacts"));
            out.insert("contacts".into(), Value::Array(contacts));
        }
        // Routed to the events endpoint before this is reached.
        Content::Reaction(_) => return Err(unsupported("reactions as messages")),
    }
    Ok(())
}

fn insert_some(out: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        out.insert(key.into(), json!(value));
    }
}

/// `type` + `url` (+ `caption` on image, video and document, + `filename` on document).
fn media(kind: &str, media: &Media, out: &mut Map<String, Value>) -> Result<(), Failure> {
    let Some(url) = media.link.as_deref() else {
        return Err(unsupported(&format!(
            "{kind} by media id (seven.io fetches media from a public url)"
        )));
    };
    out.insert("type".into(), json!(kind));
    out.insert("url".into(), json!(url));
    // The job parser only allows captions on image, video and document, which is exactly where
    // the document has one.
    insert_some(out, "caption", media.caption.as_deref());
    if kind == "document" {
        // The document lists `filename` without "Optional", while the canonical one is optional:
        // WhatsApp would show the link's file name anyway, so that is what we send.
        let filename = media
            .filename
            .clone()
            .or_else(|| filename_from_url(url).map(str::to_owned));
        insert_some(out, "filename", filename.as_deref());
    }
    Ok(())
}

/// The last path segment of a URL, without query or fragment (`…/factura.pdf?x=1` →
/// `factura.pdf`); `None` when the path ends in `/` or has no segment.
fn filename_from_url(url: &str) -> Option<&str> {
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = without_scheme.split(['?', '#']).next().unwrap_or_default();
    let (_, path) = path.split_once('/')?;
    path.rsplit('/').next().filter(|s| !s.is_empty())
}

/// `template` (name), `language` (code) and `components{header, body, buttons}`.
fn template(template: &Template, out: &mut Map<String, Value>) -> Result<(), Failure> {
    let mut header = Vec::new();
    let mut body = Vec::new();
    let mut buttons: Vec<(u8, Value)> = Vec::new();
    for component in template.components.iter().flatten() {
        let parameters = component.parameters.as_deref().unwrap_or_default();
        if parameters.iter().any(|p| p.parameter_name.is_some()) {
            // seven.io's values are positional ({{1}}, {{2}}, …).
            return Err(unsupported("named template parameters"));
        }
        match component.kind {
            ComponentType::Header => {
                for parameter in parameters {
                    header.push(match &parameter.value {
                        ParameterValue::Image(media) => match media.link.as_deref() {
                            // "Para encabezados de imagen, proporcione una URL".
                            Some(url) => json!(url),
                            None => return Err(unsupported("template header images by media id")),
                        },
                        other => json!(template_text(other, "header")?),
                    });
                }
            }
            ComponentType::Body => {
                for parameter in parameters {
                    body.push(json!(template_text(&parameter.value, "body")?));
                }
            }
            ComponentType::Footer => {}
            ComponentType::Button => {
                // A button without parameters is static: nothing to fill.
                if parameters.is_empty() {
                    continue;
                }
                let index = component.index.map(|i| i.value()).unwrap_or_default();
                if buttons.iter().any(|(i, _)| *i == index) {
                    return Err(Failure::invalid(
                        "invalid_field",
                        format!("template button index {index} is given twice"),
                    ));
                }
                let parameters = parameters
                    .iter()
                    .map(|p| match &p.value {
                        ParameterValue::Text(text) => Ok(json!({"type": "text", "text": text})),
                        // The document's button parameters are `{type, text}` objects only.
                        other => Err(unsupported(&format!(
                            "{} template button parameters (seven.io takes text ones)",
                            other.type_name()
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let sub_type = match component.sub_type {
                    Some(ButtonSubType::QuickReply) => "quick_reply",
                    Some(ButtonSubType::CopyCode) => "copy_code",
                    Some(ButtonSubType::Url) | None => "url",
                };
                buttons.push((
                    index,
                    json!({"type": "button", "sub_type": sub_type, "parameters": parameters}),
                ));
            }
        }
    }
    buttons.sort_by_key(|(i, _)| *i);
    // The document's `buttons` entries carry no index: the array is positional, so it can only
    // address buttons 0, 1, … without a gap.
    if buttons.iter().map(|(i, _)| *i).ne(0..buttons.len() as u8) {
        return Err(unsupported(
            "template button parameters that skip a button (seven.io's buttons array is \
             positional: give buttons 0, 1, … in order)",
        ));
    }
    out.insert("type".into(), json!("template"));
    out.insert("template".into(), json!(template.name));
    // `language.policy` has one value (`deterministic`) and no seven.io field.
    out.insert("language".into(), json!(template.language.code));
    let mut components = Map::new();
    if !header.is_empty() {
        components.insert("header".into(), Value::Array(header));
    }
    if !body.is_empty() {
        components.insert("body".into(), Value::Array(body));
    }
    if !buttons.is_empty() {
        let buttons = buttons.into_iter().map(|(_, b)| b).collect();
        components.insert("buttons".into(), Value::Array(buttons));
    }
    // The document's template without variables has no `components` at all.
    if !components.is_empty() {
        out.insert("components".into(), Value::Object(components));
    }
    Ok(())
}

/// A template value as the plain string seven.io substitutes.
fn template_text<'a>(value: &'a ParameterValue, part: &str) -> Result<&'a str, Failure> {
    match value {
        ParameterValue::Text(text) => Ok(text),
        // WhatsApp renders date_time and currency parameters as their fallback_value (Meta
        // stopped localising them), so the string is exactly what the recipient would see.
        ParameterValue::DateTime(date) => Ok(&date.fallback_value),
        ParameterValue::Currency(currency) => Ok(&currency.fallback_value),
        other => Err(unsupported(&format!(
            "{} template {part} parameters",
            other.type_name()
        ))),
    }
}

/// `interactive_type` `button` or `list`, with text `header`/`footer`.
fn interactive(interactive: &Interactive, out: &mut Map<String, Value>) -> Result<(), Failure> {
    out.insert("type".into(), json!("interactive"));
    out.insert("interactive_type".into(), json!(interactive.type_name()));
    match &interactive.header {
        None => {}
        Some(Header::Text(text)) => {
            out.insert("header".into(), json!(text));
        }
        Some(other) => {
            return Err(unsupported(&format!(
                "interactive {} headers (seven.io takes a text header)",
                other.type_name()
            )));
        }
    }
    out.insert("body".into(), json!(interactive.body.text));
    if let Some(footer) = &interactive.footer {
        out.insert("footer".into(), json!(footer.text));
    }
    match &interactive.action {
        Action::Button(action) => {
            // "Array de 2-3 objetos de botón": WhatsApp takes one, seven.io says it does not.
            if action.buttons.len() < 2 {
                return Err(unsupported(
                    "interactive messages with a single reply button (seven.io takes 2–3)",
                ));
            }
            let buttons: Vec<Value> = action
                .buttons
                .iter()
                .map(|b| json!({"id": b.reply.id, "title": b.reply.title}))
                .collect();
            out.insert("buttons".into(), Value::Array(buttons));
        }
        Action::List(action) => {
            out.insert("button_text".into(), json!(action.button));
            // Section and row objects are Meta's own (title, rows, id, title, description),
            // so the canonical ones serialise as seven.io wants them; an untitled single
            // section stays untitled, as WhatsApp allows.
            out.insert("sections".into(), json!(action.sections));
        }
    }
    Ok(())
}

/// A contact card as seven.io's `{name{first_name, last_name}, phones[{phone, type}]}`.
fn contact(contact: &Contact) -> Result<Value, Failure> {
    let name = &contact.name;
    let extra = [
        ("emails", contact.emails.is_some()),
        ("addresses", contact.addresses.is_some()),
        ("org", contact.org.is_some()),
        ("urls", contact.urls.is_some()),
        ("birthday", contact.birthday.is_some()),
        ("name.middle_name", name.middle_name.is_some()),
        ("name.prefix", name.prefix.is_some()),
        ("name.suffix", name.suffix.is_some()),
    ];
    if let Some((field, _)) = extra.iter().find(|(_, present)| *present) {
        return Err(unsupported(&format!(
            "contact {field} (seven.io's contact has a name and phones)"
        )));
    }
    // seven.io builds the shown name from first and last name; without a first name the
    // canonical formatted_name is the best first name (it is what WhatsApp would show).
    let mut out_name = Map::new();
    out_name.insert(
        "first_name".into(),
        json!(name.first_name.as_deref().unwrap_or(&name.formatted_name)),
    );
    insert_some(&mut out_name, "last_name", name.last_name.as_deref());

    let Some(phones) = contact.phones.as_ref().filter(|p| !p.is_empty()) else {
        return Err(unsupported(
            "contacts without phones (seven.io requires a phones array)",
        ));
    };
    let mut out_phones = Vec::new();
    for phone in phones {
        if phone.wa_id.is_some() {
            return Err(unsupported("contact phone wa_id"));
        }
        let Some(number) = &phone.phone else {
            return Err(unsupported("contact phones without a phone number"));
        };
        let mut entry = Map::new();
        entry.insert("phone".into(), json!(number));
        // seven.io lists the types in lower case (cell, main, iphone, home, work); Meta's are
        // upper case (CELL, …).
        if let Some(kind) = &phone.kind {
            entry.insert("type".into(), json!(kind.to_ascii_lowercase()));
        }
        out_phones.push(Value::Object(entry));
    }
    Ok(json!({"name": out_name, "phones": out_phones}))
}

/// The events body for a reaction, exactly the document's: no `from`/`to` (the message id
/// names the conversation) and no `foreign_id` (not an events field). Resending a reaction is
/// harmless: WhatsApp keeps one reaction per message and sender, so a repeat replaces itself.
fn reaction(reaction: &Reaction) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("event".into(), json!("reaction"));
    body.insert("msg_id".into(), json!(reaction.message_id));
    body.insert("emoji".into(), json!(reaction.emoji));
    body
}

fn unsupported(what: &str) -> Failure {
    super::unsupported(ProviderKind::Seven, what)
}

/// The `foreign_id` for an idempotency key: at most [`MAX_FOREIGN_ID`] characters of
/// `[A-Za-z0-9.\-_@]`, the same on every attempt.
///
/// A key that already fits (and does not start with [`HASHED_PREFIX`]) is sent as it is, so
/// operators recognise it in seven.io's reports and callbacks. Any other key becomes
/// [`HASHED_PREFIX`] + the first 57 hex digits of its SHA-256 (228 bits: collisions are not a
/// practical concern). Raw ids never start with the prefix and hashed ids always do, so a raw id
/// can never equal a hashed one, and two different keys map to one id only through a SHA-256
/// collision. No channel scoping is needed: seven.io only echoes the value.
pub fn foreign_id(idempotency_key: &str) -> String {
    let fits = !idempotency_key.is_empty()
        && idempotency_key.len() <= MAX_FOREIGN_ID
        && idempotency_key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@'));
    if fits && !idempotency_key.starts_with(HASHED_PREFIX) {
        return idempotency_key.to_string();
    }
    let digest = hex::encode(Sha256::digest(idempotency_key.as_bytes()));
    let room = MAX_FOREIGN_ID - HASHED_PREFIX.len();
    format!("{HASHED_PREFIX}{}", &digest[..room])
}

impl Adapter for Seven {
    fn provider(&self) -> ProviderKind {
        ProviderKind::Seven
    }

    fn request(&self, job: &Job, ctx: SendContext<'_>) -> Result<HttpCall, Failure> {
        if job.message.context.is_some() {
            return Err(unsupported(
                "replies (message.context: seven.io's send has no field for the quoted message)",
            ));
        }
        let (path, mut body) = match &job.message.content {
            Content::Reaction(r) => (EVENTS_PATH, reaction(r)),
            _ => {
                let mut body = Map::new();
                body.insert("from".into(), json!(self.from()?));
                body.insert("to".into(), json!(job.to_digits()));
                content(job, &mut body)?;
                body.insert("foreign_id".into(), json!(foreign_id(ctx.idempotency_key)));
                (PATH, body)
            }
        };
        super::merge_options(&mut body, job)?;
        Ok(HttpCall {
            method: Method::POST,
            path: path.into(),
            headers: vec![(HeaderName::from_static(API_KEY_HEADER), self.auth()?)],
            body: Value::Object(body),
        })
    }

    fn response(&self, reply: &HttpReply) -> SendResult {
        let json = reply.json();
        let code = json.as_ref().and_then(body_code);
        let explicit_failure = json.as_ref().is_some_and(says_failed);
        if (200..300).contains(&reply.status) && code.is_none() && !explicit_failure {
            if let Some(id) = json.as_ref().and_then(message_id) {
                return Ok(Accepted {
                    provider_message_id: id,
                    replayed: false,
                });
            }
            if json.as_ref().is_some_and(is_event_success) {
                return Ok(Accepted {
                    provider_message_id: format!(
                        "{EVENT_ID_PREFIX}{}",
                        uuid::Uuid::new_v4().simple()
                    ),
                    replayed: false,
                });
            }
            // Accepted but unreadable: seven.io may well be sending it.
            return Err(Failure::new(
                ErrorClass::Transient,
                "bad_response",
                format!(
                    "HTTP {} without success \"100\" and messages[0].id",
                    reply.status
                ),
            )
            .maybe_sent());
        }
        classify_error(reply, json.as_ref(), code)
    }
}

/// A JSON scalar as code text: `"7002001"` and `7002001` are the same code.
fn scalar(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The error code of a seven.io body, wherever it is: `error_code` (the document's error
/// bodies), `code` (its 404 body), a `success` other than "100" (seven.io's API answers codes
/// in `success`), the failed first message's `error`, or a bare numeric body (`900`).
fn body_code(body: &Value) -> Option<String> {
    if let Value::Number(n) = body {
        return Some(n.to_string()).filter(|c| !is_success(c));
    }
    scalar(body.get("error_code"))
        .or_else(|| scalar(body.get("code")))
        .or_else(|| scalar(body.get("success")).filter(|c| !is_success(c)))
        .or_else(|| {
            let first = body.pointer("/messages/0")?;
            if first.get("success") == Some(&Value::Bool(false)) {
                scalar(first.get("error"))
            } else {
                None
            }
        })
}

/// `success: false` at the top or on the first message: failed, whatever else the body says.
fn says_failed(body: &Value) -> bool {
    body.get("success") == Some(&Value::Bool(false))
        || body.pointer("/messages/0/success") == Some(&Value::Bool(false))
}

/// Whether `code` is the table's success code.
fn is_success(code: &str) -> bool {
    lookup(code) == Some(Meaning::Accepted)
}

/// `messages[0].id` of a `success: "100"` answer.
fn message_id(body: &Value) -> Option<String> {
    let success = scalar(body.get("success"))?;
    if !is_success(&success) {
        return None;
    }
    scalar(body.pointer("/messages/0/id"))
}

/// The events endpoint's `{"success": true}` (no messages: that would be a send answer).
fn is_event_success(body: &Value) -> bool {
    body.get("success") == Some(&Value::Bool(true)) && body.get("messages").is_none()
}

/// The table row for a code, if the document lists it.
pub fn lookup(code: &str) -> Option<Meaning> {
    ERROR_TABLE
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, meaning)| *meaning)
}

/// Map an error answer (any status, or a 2xx whose body names an error) to a result.
fn classify_error(reply: &HttpReply, json: Option<&Value>, code: Option<String>) -> SendResult {
    let message = json
        .and_then(|b| {
            super::error_message(b).or_else(|| {
                b.pointer("/messages/0/error_text")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
        })
        .unwrap_or_else(|| format!("HTTP {}", reply.status));
    // Without a code in the body, an HTTP error status is the code (the document's 400 and 404
    // are both).
    let status_code = (reply.status >= 400).then(|| reply.status.to_string());
    let provider_code = code.or(status_code.filter(|s| lookup(s).is_some()));
    let meaning = match provider_code.as_deref().and_then(lookup) {
        // A non-2xx answer (or a 2xx body with an error) never means accepted, even if it
        // somehow carries "100".
        Some(Meaning::Accepted) | None => {
            tracing::warn!(
                provider = "seven",
                status = reply.status,
                code = provider_code.as_deref().unwrap_or("-"),
                "gateway answered an undocumented error; classifying by HTTP status"
            );
            match super::class_for_status(reply.status) {
                // A 5xx (or a 2xx with an unknown error) says nothing about whether the
                // message went out; failing over could send it twice.
                ErrorClass::Transient => Meaning::MaybeSent(ErrorClass::Transient),
                class => Meaning::Failed(class),
            }
        }
        Some(meaning) => meaning,
    };
    let (class, maybe) = match meaning {
        Meaning::Failed(class) => (class, false),
        Meaning::MaybeSent(class) => (class, true),
        Meaning::Accepted => (ErrorClass::Transient, true),
    };
    let class = refine(class, provider_code.as_deref(), &message);
    let mut failure = Failure::new(
        class,
        provider_code
            .clone()
            .unwrap_or_else(|| format!("http_{}", reply.status)),
        message,
    )
    .with_retry_after(reply.retry_after());
    if let Some(code) = provider_code {
        failure = failure.with_provider_code(code);
    }
    if maybe {
        failure = failure.maybe_sent();
    }
    Err(failure)
}

/// A 400 about the *sender* ("Invalid WhatsApp sender number", the document's own example) is
/// not the job's fault: the channel's `sender` is wrong, which an operator fixes (class
/// `channel`, so the backlog drains afterwards instead of every job failing for good).
fn refine(class: ErrorClass, code: Option<&str>, message: &str) -> ErrorClass {
    let lower = message.to_ascii_lowercase();
    if code == Some("400") && (lower.contains("sender") || lower.contains("remitente")) {
        ErrorClass::Channel
    } else {
        class
    }
}
