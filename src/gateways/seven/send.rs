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

use crate::config::{ProviderKind, Secret};
use crate::gateways::{self, Accepted, Adapter, HttpCall, HttpReply, SendContext, SendResult};
use crate::job::{
    Action, ButtonSubType, ComponentType, Contact, Content, Header, Interactive, Job, Media,
    ParameterValue, Reaction, Template,
};
use crate::retry::{ErrorClass, Failure, Sent};

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
        gateways::credential_header(self.api_key.expose())
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
    gateways::unsupported(ProviderKind::Seven, what)
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
        gateways::merge_options(&mut body, job)?;
        Ok(HttpCall {
            method: Method::POST,
            path: path.into(),
            headers: vec![(HeaderName::from_static(API_KEY_HEADER), self.auth()?)],
            body: Value::Object(body),
        })
    }

    fn code_class(&self, code: &str) -> Option<ErrorClass> {
        match lookup(code)? {
            Meaning::Failed(class) | Meaning::MaybeSent(class) => Some(class),
            Meaning::Accepted => None,
        }
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
            gateways::error_message(b).or_else(|| {
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
            let class = gateways::class_for_status(reply.status);
            match gateways::sent_for_status(reply.status) {
                Sent::Maybe => Meaning::MaybeSent(class),
                Sent::No => Meaning::Failed(class),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::Sent;
    use bytes::Bytes;
    use reqwest::header::HeaderMap;
    use std::time::Duration;

    /// The document's sender and recipient.
    const FROM: &str = "4915112345678";
    const TO: &str = "+4917612345678";

    fn adapter() -> Seven {
        Seven::new(FROM.into(), Secret::new("seven-key"))
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

    fn raw_reply(status: u16, body: &'static [u8]) -> HttpReply {
        HttpReply {
            status,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body),
        }
    }

    /// The document's success answer, trimmed to what matters.
    fn success_body(id: Value) -> Value {
        json!({"success": "100", "total_price": 0.0735, "balance": 123.45, "debug": "false",
               "sms_type": "WA", "messages": [{"id": id, "sender": FROM, "recipient": "4917612345678",
               "success": true, "error": null, "error_text": null}]})
    }

    /// The document's "Respuesta de error" shape.
    fn error_body(code: &str) -> Value {
        let code: Value = code
            .parse::<u64>()
            .map_or_else(|_| json!(code), |n| json!(n));
        json!({"success": false, "error_code": code, "error_message": "mensaje"})
    }

    fn job(message: Value) -> Job {
        crate::job::parse(
            &serde_json::to_vec(&json!({
                "id": "job-1", "channel": "seven-de", "to": TO, "message": message
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

    /// The body without the fields every send carries, checked once in `request_envelope`.
    fn content_of(message: Value) -> Value {
        let mut body = request(message).expect("expressible").body;
        let object = body.as_object_mut().unwrap();
        for field in ["from", "to", "foreign_id"] {
            object.remove(field);
        }
        body
    }

    /// One row of [`ERROR_TABLE`], checked against an expectation written independently of it:
    /// in the document's error body under HTTP 400 and under HTTP 200, and as `success`.
    fn check_row(code: &str, expected: Meaning) {
        assert!(lookup(code).is_some(), "{code} is not in ERROR_TABLE");
        match expected {
            Meaning::Accepted => {
                let accepted = adapter()
                    .response(&reply(200, success_body(json!(77)), None))
                    .expect(code);
                assert_eq!(accepted.provider_message_id, "77");
                assert!(!accepted.replayed);
            }
            Meaning::Failed(class) | Meaning::MaybeSent(class) => {
                let sent = if matches!(expected, Meaning::MaybeSent(_)) {
                    Sent::Maybe
                } else {
                    Sent::No
                };
                let as_success = json!({"success": code, "messages": []});
                for (status, body) in [
                    (400, error_body(code)),
                    (200, error_body(code)),
                    (200, as_success),
                ] {
                    let f = adapter()
                        .response(&reply(status, body.clone(), Some("7")))
                        .expect_err(code);
                    assert_eq!(f.class, class, "{code} {status} {body}");
                    assert_eq!(f.code, code);
                    assert_eq!(f.provider_code.as_deref(), Some(code));
                    assert_eq!(f.retry_after, Some(Duration::from_secs(7)), "{code}");
                    assert_eq!(f.sent, sent, "{code} {status} {body}");
                }
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

    use ErrorClass::{Auth, Invalid, WindowExpired};
    use Meaning::{Accepted as Ok100, Failed};

    row_tests! {
        row_100_accepted: "100" => Ok100;
        row_7002001_no_conversation: "7002001" => Failed(WindowExpired);
        row_400_invalid_request: "400" => Failed(Invalid);
        row_404_message_not_found: "404" => Failed(Invalid);
        row_900_authentication_failed: "900" => Failed(Auth);
        row_902_no_waba_scope: "902" => Failed(Auth);
    }

    #[test]
    fn every_row_is_tested() {
        let mut table: Vec<&str> = ERROR_TABLE.iter().map(|(c, _)| *c).collect();
        let mut tested = TESTED_CODES.to_vec();
        table.sort_unstable();
        tested.sort_unstable();
        assert_eq!(table, tested);
    }

    #[test]
    fn documented_http_statuses_without_a_body_code() {
        // The document's DELETE 404 body: `code`, not `error_code`.
        let f = adapter()
            .response(&reply(
                404,
                json!({"code": 404, "message": "Page not found", "errors": []}),
                None,
            ))
            .unwrap_err();
        assert_eq!((f.class, f.code.as_str()), (ErrorClass::Invalid, "404"));
        assert_eq!(f.message, "Page not found");
        // A bare status with a body that is not JSON: the status is the code.
        for (status, class) in [(400, ErrorClass::Invalid), (404, ErrorClass::Invalid)] {
            let f = adapter().response(&raw_reply(status, b"nope")).unwrap_err();
            assert_eq!(f.class, class, "{status}");
            assert_eq!(
                f.provider_code.as_deref(),
                Some(status.to_string().as_str())
            );
            assert_eq!(f.sent, Sent::No);
        }
    }

    #[test]
    fn an_invalid_sender_is_the_channels_fault() {
        // The document's own 400 example.
        let body = json!({"success": false, "error_code": 400,
                          "error_message": "Invalid WhatsApp sender number"});
        let f = adapter().response(&reply(400, body, None)).unwrap_err();
        assert_eq!(f.class, ErrorClass::Channel);
        assert_eq!(f.provider_code.as_deref(), Some("400"));
        assert_eq!(f.message, "Invalid WhatsApp sender number");
        // Any other 400 stays the job's fault.
        let body = json!({"error_code": 400, "error_message": "Invalid recipient number"});
        let f = adapter().response(&reply(400, body, None)).unwrap_err();
        assert_eq!(f.class, ErrorClass::Invalid);
    }

    #[test]
    fn bare_numeric_bodies_are_codes() {
        let f = adapter().response(&raw_reply(200, b"900")).unwrap_err();
        assert_eq!((f.class, f.code.as_str()), (ErrorClass::Auth, "900"));
        let f = adapter().response(&raw_reply(200, b"7002001")).unwrap_err();
        assert_eq!(f.class, ErrorClass::WindowExpired);
    }

    #[test]
    fn success_needs_100_and_an_id() {
        assert_eq!(
            adapter().response(&reply(200, success_body(json!("12345678")), None)),
            Ok(Accepted {
                provider_message_id: "12345678".into(),
                replayed: false
            })
        );
        // `success: 100` as a number is the same code.
        let mut body = success_body(json!(1));
        body["success"] = json!(100);
        assert!(adapter().response(&reply(200, body, None)).is_ok());
        // "100" without an id, or a body without success: maybe sent.
        for body in [
            json!({"success": "100", "messages": []}),
            json!({"messages": [{"id": "1"}]}),
            json!({}),
        ] {
            let f = adapter()
                .response(&reply(200, body.clone(), None))
                .unwrap_err();
            assert_eq!(
                (f.class, f.code.as_str(), f.sent),
                (ErrorClass::Transient, "bad_response", Sent::Maybe),
                "{body}"
            );
        }
        let f = adapter().response(&raw_reply(200, b"")).unwrap_err();
        assert_eq!(f.sent, Sent::Maybe);
    }

    #[test]
    fn a_200_whose_message_failed_is_a_failure() {
        let mut body = success_body(json!("1"));
        body["messages"][0]["success"] = json!(false);
        body["messages"][0]["error"] = json!("7002001");
        body["messages"][0]["error_text"] = json!("Sin conversación activa");
        let f = adapter().response(&reply(200, body, None)).unwrap_err();
        assert_eq!(f.class, ErrorClass::WindowExpired);
        assert_eq!(f.message, "Sin conversación activa");
        // success: false without a code: unknown, so transient and possibly sent.
        let f = adapter()
            .response(&reply(200, json!({"success": false}), None))
            .unwrap_err();
        assert_eq!((f.class, f.sent), (ErrorClass::Transient, Sent::Maybe));
    }

    #[test]
    fn unknown_codes_fall_back_on_the_status() {
        let f = adapter()
            .response(&reply(422, error_body("12345"), None))
            .unwrap_err();
        assert_eq!(f.class, ErrorClass::Invalid);
        assert_eq!(f.provider_code.as_deref(), Some("12345"));
        assert_eq!(f.sent, Sent::No);

        let f = adapter()
            .response(&reply(503, error_body("12345"), Some("3")))
            .unwrap_err();
        assert_eq!(f.class, ErrorClass::Transient);
        assert_eq!(f.retry_after, Some(Duration::from_secs(3)));
        assert_eq!(f.sent, Sent::No, "a 503 refused the work");

        let f = adapter()
            .response(&reply(500, error_body("12345"), None))
            .unwrap_err();
        assert_eq!((f.class, f.sent), (ErrorClass::Transient, Sent::Maybe));

        let f = adapter()
            .response(&raw_reply(502, b"<html>bad gateway</html>"))
            .unwrap_err();
        assert_eq!(
            (f.class, f.code.as_str()),
            (ErrorClass::Transient, "http_502")
        );
        assert_eq!(f.provider_code, None);
        assert_eq!(f.message, "HTTP 502");

        for (status, class) in [
            (401, ErrorClass::Auth),
            (403, ErrorClass::Auth),
            (429, ErrorClass::RateLimited),
        ] {
            let f = adapter()
                .response(&reply(status, json!({}), Some("2")))
                .unwrap_err();
            assert_eq!(f.class, class, "{status}");
            assert_eq!(f.retry_after, Some(Duration::from_secs(2)));
        }
    }

    #[test]
    fn the_events_answer_is_accepted_under_a_fresh_id() {
        let first = adapter()
            .response(&reply(200, json!({"success": true}), None))
            .unwrap();
        let second = adapter()
            .response(&reply(200, json!({"success": true}), None))
            .unwrap();
        assert!(first.provider_message_id.starts_with(EVENT_ID_PREFIX));
        assert_ne!(first.provider_message_id, second.provider_message_id);
        // The events error answer.
        let f = adapter()
            .response(&reply(200, error_body("404"), None))
            .unwrap_err();
        assert_eq!(f.class, ErrorClass::Invalid);
    }

    #[test]
    fn request_envelope() {
        let call = request(json!({"type": "text", "text": {"body": "Hola", "preview_url": true}}))
            .unwrap();
        assert_eq!(call.method, Method::POST);
        assert_eq!(call.path, "/api/waba/messages");
        let (name, value) = &call.headers[0];
        assert_eq!(name.as_str(), "x-api-key");
        assert_eq!(value, "seven-key");
        assert!(value.is_sensitive());
        assert_eq!(
            call.body,
            json!({"from": FROM, "to": "4917612345678", "foreign_id": "key-1", "text": "Hola"})
        );
        // A `+` in the configured sender is dropped; anything else is the channel's problem.
        let plus = Seven::new(format!("+{FROM}"), Secret::new("k"));
        let ctx = SendContext {
            idempotency_key: "k",
            attempt: 1,
        };
        let text = job(json!({"type": "text", "text": {"body": "Hola"}}));
        assert_eq!(plus.request(&text, ctx).unwrap().body["from"], FROM);
        let bad = Seven::new("e0629e11-0f67".into(), Secret::new("k"));
        let f = bad.request(&text, ctx).unwrap_err();
        assert_eq!(
            (f.class, f.code.as_str()),
            (ErrorClass::Channel, "bad_sender")
        );
        let f = Seven::new(FROM.into(), Secret::new("bad\nkey"))
            .request(&text, ctx)
            .unwrap_err();
        assert_eq!(f.class, ErrorClass::Auth);
        assert!(!f.message.contains("bad\nkey"));
    }

    #[test]
    fn media_shapes() {
        assert_eq!(
            content_of(
                json!({"type": "image", "image": {"link": "https://e.com/p.jpg", "caption": "Mire"}})
            ),
            json!({"type": "image", "url": "https://e.com/p.jpg", "caption": "Mire"})
        );
        assert_eq!(
            content_of(json!({"type": "video", "video": {"link": "https://e.com/v.mp4"}})),
            json!({"type": "video", "url": "https://e.com/v.mp4"})
        );
        assert_eq!(
            content_of(json!({"type": "audio", "audio": {"link": "https://e.com/a.mp3"}})),
            json!({"type": "audio", "url": "https://e.com/a.mp3"})
        );
        assert_eq!(
            content_of(json!({"type": "sticker", "sticker": {"link": "https://e.com/s.webp"}})),
            json!({"type": "sticker", "url": "https://e.com/s.webp"})
        );
        assert_eq!(
            content_of(
                json!({"type": "document", "document": {"link": "https://e.com/f.pdf",
                "filename": "factura.pdf", "caption": "Su factura"}})
            ),
            json!({"type": "document", "url": "https://e.com/f.pdf", "filename": "factura.pdf",
                   "caption": "Su factura"})
        );
        // Without a filename, the link's own file name (the document requires one).
        assert_eq!(
            content_of(
                json!({"type": "document", "document": {"link": "https://e.com/d/f.pdf?t=1#x"}})
            ),
            json!({"type": "document", "url": "https://e.com/d/f.pdf?t=1#x", "filename": "f.pdf"})
        );
        assert_eq!(
            content_of(json!({"type": "document", "document": {"link": "https://e.com/"}})),
            json!({"type": "document", "url": "https://e.com/"})
        );
    }

    #[test]
    fn template_shapes() {
        assert_eq!(
            content_of(
                json!({"type": "template", "template": {"name": "hello_world",
                "language": {"code": "de", "policy": "deterministic"}}})
            ),
            json!({"type": "template", "template": "hello_world", "language": "de"})
        );
        let body = content_of(
            json!({"type": "template", "template": {"name": "appointment_reminder",
            "language": {"code": "es"}, "components": [
                {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "b"}]},
                {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://e.com/h.jpg"}}]},
                {"type": "body", "parameters": [{"type": "text", "text": "Max"},
                    {"type": "date_time", "date_time": {"fallback_value": "15/02/2026"}},
                    {"type": "currency", "currency": {"fallback_value": "€10", "code": "EUR", "amount_1000": 10000}}]},
                {"type": "button", "sub_type": "quick_reply", "index": 0},
                {"type": "button", "sub_type": "url", "index": 0, "parameters": [{"type": "text", "text": "a"}]}
            ]}}),
        );
        assert_eq!(
            body["components"],
            json!({"header": ["https://e.com/h.jpg"], "body": ["Max", "15/02/2026", "€10"],
                   "buttons": [
                       {"type": "button", "sub_type": "url", "parameters": [{"type": "text", "text": "a"}]},
                       {"type": "button", "sub_type": "url", "parameters": [{"type": "text", "text": "b"}]}]})
        );
        // A text header.
        let body = content_of(
            json!({"type": "template", "template": {"name": "t", "language": {"code": "es"},
            "components": [{"type": "header", "parameters": [{"type": "text", "text": "Cita"}]}]}}),
        );
        assert_eq!(body["components"], json!({"header": ["Cita"]}));
        // A twice-given button index is the job's error.
        let f = request(json!({"type": "template", "template": {"name": "t", "language": {"code": "es"},
            "components": [
                {"type": "button", "sub_type": "url", "index": 0, "parameters": [{"type": "text", "text": "a"}]},
                {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "b"}]}]}}))
        .unwrap_err();
        assert_eq!(f.code, "invalid_field");
    }

    #[test]
    fn interactive_location_and_contacts_shapes() {
        let reply =
            |id: &str, title: &str| json!({"type": "reply", "reply": {"id": id, "title": title}});
        assert_eq!(
            content_of(
                json!({"type": "interactive", "interactive": {"type": "button",
                "header": {"type": "text", "text": "Soporte"}, "body": {"text": "¿Cómo?"},
                "footer": {"text": "Toque"}, "action": {"buttons": [reply("a", "A"), reply("b", "B")]}}})
            ),
            json!({"type": "interactive", "interactive_type": "button", "header": "Soporte",
                   "body": "¿Cómo?", "footer": "Toque",
                   "buttons": [{"id": "a", "title": "A"}, {"id": "b", "title": "B"}]})
        );
        assert_eq!(
            content_of(
                json!({"type": "interactive", "interactive": {"type": "list",
                "body": {"text": "Elija"}, "action": {"button": "Ver", "sections": [
                    {"rows": [{"id": "r1", "title": "Uno", "description": "d"}, {"id": "r2", "title": "Dos"}]}]}}})
            ),
            json!({"type": "interactive", "interactive_type": "list", "body": "Elija",
                   "button_text": "Ver", "sections": [{"rows": [
                       {"id": "r1", "title": "Uno", "description": "d"}, {"id": "r2", "title": "Dos"}]}]})
        );
        assert_eq!(
            content_of(
                json!({"type": "location", "location": {"latitude": -34.6, "longitude": -58.38}})
            ),
            json!({"type": "location", "latitude": -34.6, "longitude": -58.38})
        );
        assert_eq!(
            content_of(json!({"type": "contacts", "contacts": [
                {"name": {"formatted_name": "Soporte"}, "phones": [{"phone": "+34 1", "type": "WORK"}]},
                {"name": {"formatted_name": "Juan García", "first_name": "Juan", "last_name": "García"},
                 "phones": [{"phone": "+342"}]}]})),
            json!({"type": "contacts", "contacts": [
                {"name": {"first_name": "Soporte"}, "phones": [{"phone": "+34 1", "type": "work"}]},
                {"name": {"first_name": "Juan", "last_name": "García"}, "phones": [{"phone": "+342"}]}]})
        );
    }

    #[test]
    fn reactions_go_to_the_events_endpoint() {
        let call = request(
            json!({"type": "reaction", "reaction": {"message_id": "123456789", "emoji": "👍"}}),
        )
        .unwrap();
        assert_eq!(call.path, "/api/waba/events");
        assert_eq!(call.headers[0].0.as_str(), "x-api-key");
        assert_eq!(
            call.body,
            json!({"event": "reaction", "msg_id": "123456789", "emoji": "👍"})
        );
    }

    #[test]
    fn unsupported_types_and_fields_name_seven() {
        let template = |components: Value| {
            json!({"type": "template", "template": {"name": "t", "language": {"code": "es"},
                "components": components}})
        };
        let two = json!([{"type": "reply", "reply": {"id": "a", "title": "A"}},
                         {"type": "reply", "reply": {"id": "b", "title": "B"}}]);
        let cases = [
            (
                "replies",
                json!({"type": "text", "text": {"body": "Hola"}, "context": {"message_id": "1"}}),
            ),
            (
                "media id",
                json!({"type": "image", "image": {"id": "1013859600285441"}}),
            ),
            (
                "media id",
                json!({"type": "document", "document": {"id": "1"}}),
            ),
            (
                "single reply button",
                json!({"type": "interactive", "interactive": {"type": "button",
                "body": {"text": "?"}, "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "A"}}]}}}),
            ),
            (
                "image headers",
                json!({"type": "interactive", "interactive": {"type": "button",
                "header": {"type": "image", "image": {"link": "https://e.com/a.jpg"}},
                "body": {"text": "?"}, "action": {"buttons": two}}}),
            ),
            (
                "named",
                template(
                    json!([{"type": "body", "parameters": [{"type": "text", "text": "x", "parameter_name": "n"}]}]),
                ),
            ),
            (
                "video template header",
                template(
                    json!([{"type": "header", "parameters": [{"type": "video", "video": {"link": "https://e.com/v.mp4"}}]}]),
                ),
            ),
            (
                "document template header",
                template(
                    json!([{"type": "header", "parameters": [{"type": "document", "document": {"link": "https://e.com/d.pdf"}}]}]),
                ),
            ),
            (
                "header images by media id",
                template(
                    json!([{"type": "header", "parameters": [{"type": "image", "image": {"id": "5"}}]}]),
                ),
            ),
            (
                "payload template button",
                template(
                    json!([{"type": "button", "sub_type": "quick_reply", "index": 0, "parameters": [{"type": "payload", "payload": "p"}]}]),
                ),
            ),
            (
                "coupon_code template button",
                template(
                    json!([{"type": "button", "sub_type": "copy_code", "index": 0, "parameters": [{"type": "coupon_code", "coupon_code": "C"}]}]),
                ),
            ),
            (
                "skip a button",
                template(
                    json!([{"type": "button", "sub_type": "url", "index": 1, "parameters": [{"type": "text", "text": "x"}]}]),
                ),
            ),
            (
                "emails",
                json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "A"},
                "phones": [{"phone": "+1"}], "emails": [{"email": "a@e.com"}]}]}),
            ),
            (
                "org",
                json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "A"},
                "phones": [{"phone": "+1"}], "org": {"company": "E"}}]}),
            ),
            (
                "name.prefix",
                json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "A", "prefix": "Dr."},
                "phones": [{"phone": "+1"}]}]}),
            ),
            (
                "without phones",
                json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "A"}}]}),
            ),
            (
                "wa_id",
                json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "A"},
                "phones": [{"phone": "+1", "wa_id": "1"}]}]}),
            ),
        ];
        for (what, message) in cases {
            let f = request(message.clone()).expect_err(what);
            assert_eq!(f.class, ErrorClass::Invalid, "{what}");
            assert_eq!(f.code, "unsupported_message_type", "{what}");
            assert!(f.message.starts_with("seven cannot send"), "{}", f.message);
            assert!(f.message.contains(what), "{what}: {}", f.message);
        }
    }

    #[test]
    fn provider_options_add_but_never_replace() {
        let mut job = job(json!({"type": "text", "text": {"body": "Hola"}}));
        job.provider_options = Some(
            json!({"label": "pedidos", "ttl": 60, "performance_tracking": true})
                .as_object()
                .unwrap()
                .clone(),
        );
        let ctx = SendContext {
            idempotency_key: "k",
            attempt: 1,
        };
        let call = adapter().request(&job, ctx).unwrap();
        assert_eq!(call.body["label"], "pedidos");
        assert_eq!(call.body["ttl"], 60);
        assert_eq!(call.body["performance_tracking"], true);
        for field in ["from", "to", "foreign_id", "text"] {
            let mut options = Map::new();
            options.insert(field.into(), json!("x"));
            job.provider_options = Some(options);
            let f = adapter().request(&job, ctx).unwrap_err();
            assert_eq!(f.code, "invalid_field", "{field}");
        }
    }

    #[test]
    fn foreign_id_is_the_key_when_it_fits_else_a_prefixed_digest() {
        let fits = |id: &str| {
            id.len() <= MAX_FOREIGN_ID
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
        };
        assert_eq!(
            foreign_id("pedido-1847.confirmacion_2@x"),
            "pedido-1847.confirmacion_2@x"
        );
        let longest = "k".repeat(MAX_FOREIGN_ID);
        assert_eq!(foreign_id(&longest), longest);

        let too_long = "k".repeat(MAX_FOREIGN_ID + 1);
        let spaced = "pedido 1847";
        let unicode = "pedido-ñ";
        for key in [too_long.as_str(), spaced, unicode] {
            let id = foreign_id(key);
            assert!(id.starts_with(HASHED_PREFIX), "{key} → {id}");
            assert_eq!(id.len(), MAX_FOREIGN_ID);
            assert!(fits(&id), "{id}");
            assert_eq!(id, foreign_id(key), "stable across calls");
        }
        // A fitting key that looks like a hashed id is hashed too, so it cannot collide with the
        // id of the key it imitates.
        let hashed = foreign_id(spaced);
        assert_ne!(foreign_id(&hashed), hashed);
        assert!(foreign_id(&hashed).starts_with(HASHED_PREFIX));
        assert_ne!(foreign_id("sha256."), "sha256.");
        // Edge cases that must stay distinct.
        let keys = [
            "a".to_string(),
            "A".to_string(),
            "a ".to_string(),
            "a.".to_string(),
            longest.clone(),
            too_long.clone(),
            format!("{too_long}k"),
            hashed.clone(),
            "pedido 1847".to_string(),
            "pedido_1847".to_string(),
            "pedido-1847".to_string(),
        ];
        let ids: std::collections::HashSet<String> = keys.iter().map(|k| foreign_id(k)).collect();
        assert_eq!(ids.len(), keys.len());
    }
}
