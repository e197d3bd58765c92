//! Meta's WhatsApp Cloud API status webhooks, per the Meta section of
//! `shared/providers/RECEIPTS.md`.
//!
//! - **Auth**: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`. The
//!   subscription handshake (`GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`),
//!   which answers the challenge, is [`handshake`].
//! - **Body**: `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages",
//!   "value":{"metadata":{…},"statuses":[…]}}]}]}`. One POST may hold many entries, changes and
//!   statuses; inbound `messages`, changes of other fields and other `object`s carry no receipts.
//! - **Correlation**: `statuses[].id` is the wamid the send answer gave;
//!   `biz_opaque_callback_data` echoes the job id the send adapter put there.
//! - **Errors**: `errors[0]` of a `failed` status: `code` (a number, kept as text) and a message
//!   built from `message` (or `title`) and `error_data.details`, which is the useful part.
//! - Order is not guaranteed and Meta retries deliveries for 7 days: duplicates and `read`
//!   before `delivered` are the consumer's business (SPEC §6), not this parser's.

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::config::Secret;
use crate::gateways::webhook::fields::{self, Object};
use crate::gateways::webhook::{
    AuthError, Batch, Inbound, Notice, ParseError, Parsed, Receipt, ReceiptError, WebhookFormat,
    WebhookRequest, constant_time_eq, hmac_sha256_hex,
};
use crate::inbound::{self, Content, Reply, ReplyKind};
use crate::outcome::Status;

/// The signature header (lower case, as `HeaderName` wants it).
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// What precedes the hex digest in [`SIGNATURE_HEADER`].
const SIGNATURE_PREFIX: &str = "sha256=";

/// The `object` of WhatsApp Business Account webhooks; other objects carry no receipts.
pub const OBJECT: &str = "whatsapp_business_account";

/// The change `field` that carries message statuses.
const MESSAGES_FIELD: &str = "messages";

/// Meta's status words. Anything else (the deprecated `deleted`, `warning`) is skipped.
pub const STATUSES: &[(&str, Status)] = &[
    ("sent", Status::Sent),
    ("delivered", Status::Delivered),
    ("read", Status::Read),
    ("failed", Status::Failed),
];

/// Check `X-Hub-Signature-256` against the app secret.
pub fn verify(secret: &Secret, request: &WebhookRequest<'_>) -> Result<(), AuthError> {
    const NAME: &str = "X-Hub-Signature-256";
    let key = fields::secret_bytes(secret)?;
    let received = request
        .headers
        .get(SIGNATURE_HEADER)
        .ok_or(AuthError::Missing(NAME))?
        .as_bytes();
    let digest = received
        .strip_prefix(SIGNATURE_PREFIX.as_bytes())
        .ok_or(AuthError::Mismatch(NAME))?;
    if fields::hex_matches(&hmac_sha256_hex(key, request.body), digest) {
        Ok(())
    } else {
        Err(AuthError::Mismatch(NAME))
    }
}

/// Answer Meta's subscription handshake: the `hub.challenge` to echo when `hub.mode` is
/// `subscribe` and `hub.verify_token` matches (the listener answers 403 on any error).
pub fn handshake(query: &str, verify_token: &Secret) -> Result<String, AuthError> {
    let expected = fields::secret_bytes(verify_token)?;
    match fields::query_param(query, "hub.mode").as_deref() {
        Some("subscribe") => {}
        Some(_) => return Err(AuthError::Mismatch("hub.mode")),
        None => return Err(AuthError::Missing("hub.mode")),
    }
    let token = fields::query_param(query, "hub.verify_token")
        .ok_or(AuthError::Missing("hub.verify_token"))?;
    if !constant_time_eq(token.as_bytes(), expected) {
        return Err(AuthError::Mismatch("hub.verify_token"));
    }
    fields::query_param(query, "hub.challenge").ok_or(AuthError::Missing("hub.challenge"))
}

/// Read every status, inbound message and value-level error in a webhook body. Only a body
/// that is not a JSON object with an `entry` array fails as a whole; an item that cannot be
/// read is listed in [`Batch::unreadable`] and its neighbours are still read.
pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let root = fields::body_object(body)?;
    if let Some(object) = fields::opt_str(&root, "object", "")?
        && object != OBJECT
    {
        tracing::debug!(object = %fields::preview(object), "meta webhook for another object");
        return Ok(Parsed::receipts(Vec::new()));
    }
    let entries =
        fields::opt_array(&root, "entry", "")?.ok_or_else(|| ParseError("missing entry".into()))?;
    let mut batch = Batch::default();
    for (i, entry) in entries.iter().enumerate() {
        if let Err(e) = read_entry(entry, &format!("entry[{i}]"), &mut batch) {
            batch.unreadable.push(e);
        }
    }
    Ok(Parsed::Batch(batch))
}

/// One `entry[]`: its `messages` changes (other fields carry nothing for us).
fn read_entry(entry: &Value, at: &str, batch: &mut Batch) -> Result<(), ParseError> {
    let entry = fields::as_object(entry, at)?;
    let changes = fields::opt_array(entry, "changes", at)?.unwrap_or_default();
    for (j, change) in changes.iter().enumerate() {
        let at = format!("{at}.changes[{j}]");
        if let Err(e) = read_change(change, &at, batch) {
            batch.unreadable.push(e);
        }
    }
    Ok(())
}

fn read_change(change: &Value, at: &str, batch: &mut Batch) -> Result<(), ParseError> {
    let change = fields::as_object(change, at)?;
    if fields::opt_str(change, "field", at)? != Some(MESSAGES_FIELD) {
        return Ok(());
    }
    let Some(value) = fields::opt_object(change, "value", at)? else {
        return Ok(());
    };
    let at = format!("{at}.value");
    let sender = match fields::opt_object(value, "metadata", &at)? {
        Some(metadata) => fields::opt_text(metadata, "phone_number_id", &format!("{at}.metadata"))?,
        None => None,
    };
    // Items are read one by one, so one bad item leaves its neighbours intact.
    let mut each = |key: &str, read: &mut dyn FnMut(&Value, &str) -> Result<(), ParseError>| {
        match fields::opt_array(value, key, &at) {
            Ok(items) => {
                for (k, item) in items.unwrap_or_default().iter().enumerate() {
                    if let Err(e) = read(item, &format!("{at}.{key}[{k}]")) {
                        batch.unreadable.push(e);
                    }
                }
            }
            Err(e) => batch.unreadable.push(e),
        }
    };
    let mut receipts = Vec::new();
    let mut ignored = Vec::new();
    each("statuses", &mut |item, at| {
        match status(item, at)? {
            Ok(mut receipt) => {
                receipt.sender.clone_from(&sender);
                receipts.push(receipt);
            }
            Err(word) => ignored.push(word),
        }
        Ok(())
    });
    let contacts = fields::opt_array(value, "contacts", &at)
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut inbound = Vec::new();
    each("messages", &mut |item, at| {
        let mut message = message(item, contacts, at)?;
        message.sender.clone_from(&sender);
        inbound.push(message);
        Ok(())
    });
    let mut notices = Vec::new();
    each("errors", &mut |item, at| {
        notices.push(notice(item, at)?);
        Ok(())
    });
    batch.receipts.append(&mut receipts);
    batch.ignored_statuses.append(&mut ignored);
    batch.inbound.append(&mut inbound);
    batch.notices.append(&mut notices);
    Ok(())
}

/// One `statuses[]` item; `Err(word)` for a status word we do not track.
fn status(item: &Value, at: &str) -> Result<Result<Receipt, String>, ParseError> {
    let item = fields::as_object(item, at)?;
    let id = fields::req_str(item, "id", at)?;
    let word = fields::req_str(item, "status", at)?;
    let occurred_at = fields::opt_timestamp(item, "timestamp", at)?;
    let job_id = fields::opt_str(item, "biz_opaque_callback_data", at)?.map(str::to_owned);
    let Some(status) = fields::lookup(STATUSES, word) else {
        tracing::debug!(status = %fields::preview(word), at, "meta status skipped");
        return Ok(Err(fields::preview(word)));
    };
    let error = match fields::opt_array(item, "errors", at)?.and_then(<[Value]>::first) {
        Some(first) if status == Status::Failed => Some(error(first, &format!("{at}.errors[0]"))?),
        _ => None,
    };
    Ok(Ok(Receipt {
        provider_message_id: id.to_owned(),
        status,
        job_id,
        error,
        occurred_at,
        sender: None,
    }))
}

/// A value-level `errors[]` item: about the account or the webhook, not one message.
fn notice(item: &Value, at: &str) -> Result<Notice, ParseError> {
    let ReceiptError { code, message } = error(item, at)?;
    Ok(Notice { code, message })
}

/// One `messages[]` item, its content in the shape it already has (Meta's is the canonical
/// inbound shape). Only a missing `id` makes it unreadable: anything else mensajero cannot
/// normalise is published as `unsupported`, with the item in `raw`.
fn message(item: &Value, contacts: &[Value], at: &str) -> Result<Inbound, ParseError> {
    let object = fields::as_object(item, at)?;
    let id = fields::req_str(object, "id", at)?;
    let from_text = fields::opt_text(object, "from", at)?;
    let user_id = fields::opt_text(object, "from_user_id", at)?;
    // A timestamp that cannot be read costs the event its `timestamp`, not the message.
    let timestamp = fields::opt_timestamp(object, "timestamp", at)
        .ok()
        .flatten();
    let context_id = match fields::opt_object(object, "context", at)? {
        Some(context) => fields::opt_text(context, "id", &fields::path(at, "context"))?,
        None => None,
    };
    let content = content(object);
    let context_id = context_id.or_else(|| match &content {
        Content::Reaction(reaction) => Some(reaction.message_id.clone()),
        _ => None,
    });
    Ok(Inbound {
        provider_message_id: id.to_owned(),
        from: from_text.as_deref().and_then(inbound::e164),
        profile_name: profile_name(contacts, from_text.as_deref(), user_id.as_deref()),
        user_id,
        timestamp,
        content,
        context_id,
        sender: None,
        raw: item.clone(),
    })
}

/// The profile name of the contact that wrote: the one whose `wa_id` (or `user_id`) matches,
/// or the only one.
fn profile_name(contacts: &[Value], from: Option<&str>, user_id: Option<&str>) -> Option<String> {
    let matches = |contact: &&Value| {
        let wa_id = contact.get("wa_id").and_then(Value::as_str);
        let contact_user = contact.get("user_id").and_then(Value::as_str);
        (from.is_some() && wa_id == from) || (user_id.is_some() && contact_user == user_id)
    };
    let contact = contacts
        .iter()
        .find(matches)
        .or_else(|| (contacts.len() == 1).then(|| &contacts[0]))?;
    contact
        .pointer("/profile/name")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The content of a message item by its `type`.
fn content(item: &Object) -> Content {
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
    let body = item.get(kind).and_then(Value::as_object);
    let text =
        |object: &Object, key: &str| object.get(key).and_then(Value::as_str).map(str::to_owned);
    let media = |object: &Object| inbound::Media {
        id: text(object, "id"),
        url: text(object, "url"),
        mime_type: text(object, "mime_type"),
        sha256: text(object, "sha256"),
        caption: text(object, "caption"),
        filename: text(object, "filename"),
        voice: object.get("voice").and_then(Value::as_bool),
        animated: object.get("animated").and_then(Value::as_bool),
    };
    let unsupported = || Content::unsupported(unsupported_reason(item, kind));
    // A type mensajero reads whose content is not as Meta documents it (placeholders in test
    // payloads, a field of the wrong JSON type): kept, raw, as unsupported.
    let malformed =
        || Content::unsupported(format!("the `{kind}` content is not as Meta documents it"));
    let Some(body) = body else {
        return match (kind, item.get(kind)) {
            ("contacts", Some(Value::Array(cards))) => Content::Contacts(cards.clone()),
            _ => unsupported(),
        };
    };
    match kind {
        "text" => {
            text(body, "body").map_or_else(malformed, |body| Content::Text(inbound::Text { body }))
        }
        "image" => Content::Image(media(body)),
        "video" => Content::Video(media(body)),
        "audio" => Content::Audio(media(body)),
        "document" => Content::Document(media(body)),
        "sticker" => Content::Sticker(media(body)),
        "location" => {
            // Some senders write the degrees as strings.
            let degrees = |key: &str| {
                match body.get(key) {
                    Some(Value::String(text)) => text.trim().parse::<f64>().ok(),
                    other => other.and_then(Value::as_f64),
                }
                .filter(|d| d.is_finite())
            };
            match (degrees("latitude"), degrees("longitude")) {
                (Some(latitude), Some(longitude)) => Content::Location(inbound::Location {
                    latitude,
                    longitude,
                    name: text(body, "name"),
                    address: text(body, "address"),
                    url: text(body, "url"),
                }),
                _ => malformed(),
            }
        }
        // A template's quick-reply button.
        "button" => Content::Reply(Reply {
            kind: ReplyKind::QuickReply,
            id: None,
            title: text(body, "text"),
            description: None,
            payload: text(body, "payload"),
        }),
        "interactive" => {
            let sub = text(body, "type").unwrap_or_default();
            let other = || {
                Content::unsupported(format!(
                    "interactive type `{}` is not normalised",
                    fields::preview(&sub)
                ))
            };
            let Some(answer) = body.get(&sub).and_then(Value::as_object) else {
                return other();
            };
            let reply = |kind, payload| {
                Content::Reply(Reply {
                    kind,
                    id: text(answer, "id"),
                    title: text(answer, "title"),
                    description: text(answer, "description"),
                    payload,
                })
            };
            match sub.as_str() {
                "button_reply" => reply(ReplyKind::Button, None),
                "list_reply" => reply(ReplyKind::List, None),
                "nfm_reply" => Content::Reply(Reply {
                    kind: ReplyKind::Flow,
                    id: text(answer, "name"),
                    title: text(answer, "body"),
                    description: None,
                    // Documented as JSON text; some senders post the object itself.
                    payload: answer.get("response_json").map(|json| {
                        json.as_str()
                            .map_or_else(|| json.to_string(), str::to_owned)
                    }),
                }),
                _ => other(),
            }
        }
        "reaction" => match text(body, "message_id") {
            Some(message_id) => Content::Reaction(inbound::Reaction {
                message_id,
                // Meta removes a reaction with an empty or absent emoji.
                emoji: text(body, "emoji").filter(|e| !e.is_empty()),
            }),
            None => malformed(),
        },
        "order" => Content::Order(Value::Object(body.clone())),
        "system" => Content::System(Value::Object(body.clone())),
        _ => unsupported(),
    }
}

/// Why a message is `unsupported`: Meta's own error on it (`errors[0]`, as on type
/// `unsupported`), else the type mensajero does not normalise.
fn unsupported_reason(item: &Object, kind: &str) -> String {
    let first_error = item
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|errors| errors.first())
        .and_then(|first| error(first, "errors[0]").ok());
    match first_error {
        Some(ReceiptError {
            code: Some(code),
            message,
        }) => format!("{message} ({code})"),
        Some(ReceiptError { message, .. }) => message,
        None if kind.is_empty() => "the message has no type".to_owned(),
        None => format!("message type `{}` is not normalised", fields::preview(kind)),
    }
}

fn error(value: &Value, at: &str) -> Result<ReceiptError, ParseError> {
    let error: &Object = fields::as_object(value, at)?;
    let code = fields::opt_text(error, "code", at)?;
    let headline = match fields::opt_str(error, "message", at)? {
        Some(message) => Some(message),
        None => fields::opt_str(error, "title", at)?,
    };
    let details = match fields::opt_object(error, "error_data", at)? {
        Some(data) => fields::opt_str(data, "details", &fields::path(at, "error_data"))?,
        None => None,
    };
    let message = match (headline, details) {
        (Some(headline), Some(details)) if headline != details => format!("{headline}: {details}"),
        (Some(text), _) | (None, Some(text)) => text.to_owned(),
        (None, None) => "Meta gave no message".to_owned(),
    };
    Ok(ReceiptError { code, message })
}

/// A webhook body holding `receipt`, as Meta sends it.
pub fn render(receipt: &Receipt) -> Vec<u8> {
    let mut status = json!({
        "id": receipt.provider_message_id,
        "status": receipt.status.as_str(),
    });
    if let Some(at) = receipt.occurred_at {
        status["timestamp"] = json!(at.timestamp().to_string());
    }
    if let Some(job_id) = &receipt.job_id {
        status["biz_opaque_callback_data"] = json!(job_id);
    }
    if let Some(error) = &receipt.error {
        // Meta's codes are numbers; a non-numeric code (from a test) stays a string.
        let code = match error.code.as_deref().map(str::parse::<i64>) {
            Some(Ok(number)) => json!(number),
            Some(Err(_)) => json!(error.code),
            None => Value::Null,
        };
        status["errors"] = json!([{
            "code": code,
            "title": error.message,
            "message": error.message,
        }]);
    }
    envelope(receipt.sender.as_deref(), "statuses", status, None)
}

/// A `messages` webhook body with one item under `key` of the change's value.
fn envelope(sender: Option<&str>, key: &str, item: Value, contacts: Option<Value>) -> Vec<u8> {
    let metadata = match sender {
        Some(id) => json!({ "display_phone_number": id, "phone_number_id": id }),
        None => json!({}),
    };
    let mut value = json!({
        "messaging_product": "whatsapp",
        "metadata": metadata,
        key: [item],
    });
    if let Some(contacts) = contacts {
        value["contacts"] = contacts;
    }
    json!({
        "object": OBJECT,
        "entry": [{
            "id": "0",
            "changes": [{ "field": MESSAGES_FIELD, "value": value }],
        }],
    })
    .to_string()
    .into_bytes()
}

/// A webhook body holding `inbound`, as Meta posts a customer's message.
pub fn render_inbound(inbound: &Inbound) -> Vec<u8> {
    let from = inbound
        .from
        .as_deref()
        .map(|n| n.trim_start_matches('+').to_owned());
    let mut item = json!({ "id": inbound.provider_message_id });
    if let Some(from) = &from {
        item["from"] = json!(from);
    }
    if let Some(user_id) = &inbound.user_id {
        item["from_user_id"] = json!(user_id);
    }
    if let Some(at) = inbound.timestamp {
        item["timestamp"] = json!(at.timestamp().to_string());
    }
    let (kind, body) = match &inbound.content {
        Content::Reply(reply) => match reply.kind {
            ReplyKind::QuickReply => (
                "button",
                json!({ "payload": reply.payload, "text": reply.title }),
            ),
            ReplyKind::Button | ReplyKind::List | ReplyKind::Flow => {
                let sub = match reply.kind {
                    ReplyKind::Button => "button_reply",
                    ReplyKind::List => "list_reply",
                    _ => "nfm_reply",
                };
                let answer = if reply.kind == ReplyKind::Flow {
                    json!({ "name": reply.id, "body": reply.title, "response_json": reply.payload })
                } else {
                    json!({ "id": reply.id, "title": reply.title })
                };
                ("interactive", json!({ "type": sub, sub: answer }))
            }
        },
        Content::Unsupported(why) => ("unsupported", json!([{ "title": why.reason }])),
        other => {
            let tagged = serde_json::to_value(other).unwrap_or_default();
            let kind = other.kind().as_str();
            (kind, tagged.get(kind).cloned().unwrap_or_default())
        }
    };
    item["type"] = json!(kind);
    if kind == "unsupported" {
        item["errors"] = body;
    } else {
        item[kind] = body;
    }
    if let Some(id) = &inbound.context_id
        && kind != "reaction"
    {
        item["context"] = json!({ "id": id });
    }
    let contacts = from
        .as_ref()
        .map(|wa_id| json!([{ "profile": { "name": inbound.profile_name }, "wa_id": wa_id }]));
    envelope(inbound.sender.as_deref(), "messages", item, contacts)
}

/// The `X-Hub-Signature-256` header for `body`.
pub fn sign(secret: &Secret, body: &[u8]) -> Vec<(HeaderName, HeaderValue)> {
    let digest = hmac_sha256_hex(secret.expose().as_bytes(), body);
    fields::header(
        SIGNATURE_HEADER,
        &format!("{SIGNATURE_PREFIX}{digest}"),
        false,
    )
    .into_iter()
    .collect()
}

/// Meta's webhook format, as the listener and the simulator use it.
pub struct Format;

impl WebhookFormat for Format {
    fn verify(
        &self,
        secret: &Secret,
        request: &WebhookRequest<'_>,
        _now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        verify(secret, request)
    }

    fn handshake(&self, query: &str, token: &Secret) -> Option<Result<String, AuthError>> {
        Some(handshake(query, token))
    }

    fn parse(&self, body: &[u8], _headers: &HeaderMap) -> Result<Parsed, ParseError> {
        parse(body)
    }

    fn render(&self, receipt: &Receipt) -> Vec<u8> {
        render(receipt)
    }

    fn render_inbound(&self, inbound: &Inbound) -> Option<Vec<u8>> {
        Some(render_inbound(inbound))
    }

    fn sign(
        &self,
        secret: &Secret,
        _method: &str,
        _url: &str,
        body: &[u8],
        _now: DateTime<Utc>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        sign(secret, body)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use reqwest::header::HeaderMap;

    use super::*;
    use crate::gateways::webhook::fields::testing;

    const APP_SECRET: &str = "meta-app-secret";

    /// RECEIPTS.md's status webhook: a failed and a delivered status, an inbound message and
    /// a change of another field in the same POST.
    const FIXTURE: &str = r#"{
      "object": "whatsapp_business_account",
      "entry": [{
        "id": "102290129340398",
        "changes": [
          {"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "statuses": [
              {"id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA",
               "status": "failed", "timestamp": "1750263773",
               "recipient_id": "16505551234", "biz_opaque_callback_data": "ord-1847-confirm",
               "errors": [{"code": 131047, "title": "Re-engagement message",
                           "message": "Re-engagement message",
                           "error_data": {"details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}}]},
              {"id": "wamid.second", "status": "delivered", "timestamp": "1750263780",
               "recipient_id": "16505551234",
               "conversation": {"id": "c1", "origin": {"type": "utility"}},
               "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility"}}
            ]}},
          {"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": "16505551234"}],
            "messages": [{"from": "16505551234", "id": "wamid.in", "timestamp": "1750263790",
                          "type": "text", "text": {"body": "hola"}}]}},
          {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}}
        ]
      }]
    }"#;

    fn at(secs: i64) -> chrono::DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    fn receipts(body: &[u8]) -> Vec<Receipt> {
        match parse(body).unwrap() {
            Parsed::Batch(batch) => batch.receipts,
            Parsed::Probe => panic!("meta has no probe"),
        }
    }

    fn request<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> WebhookRequest<'a> {
        WebhookRequest {
            method: "POST",
            url: "https://hooks.example.com/webhooks/meta-mx",
            headers,
            query: None,
            body,
        }
    }

    #[test]
    fn fixture_gives_the_exact_receipts() {
        assert_eq!(
            receipts(FIXTURE.as_bytes()),
            vec![
                Receipt {
                    provider_message_id:
                        "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA".into(),
                    status: Status::Failed,
                    job_id: Some("ord-1847-confirm".into()),
                    error: Some(ReceiptError {
                        code: Some("131047".into()),
                        message: "Re-engagement message: Message failed to send because more \
                                  than 24 hours have passed since the customer last replied to \
                                  this number."
                            .into(),
                    }),
                    occurred_at: Some(at(1_750_263_773)),
                    sender: Some("106540352242922".into()),
                },
                Receipt {
                    provider_message_id: "wamid.second".into(),
                    status: Status::Delivered,
                    job_id: None,
                    error: None,
                    occurred_at: Some(at(1_750_263_780)),
                    sender: Some("106540352242922".into()),
                },
            ]
        );
    }

    #[test]
    fn inbound_and_unrelated_bodies_give_no_receipts() {
        let inbound = r#"{"object":"whatsapp_business_account","entry":[{"changes":[
            {"field":"messages","value":{"messages":[{"id":"wamid.in","type":"text"}]}}]}]}"#;
        assert!(receipts(inbound.as_bytes()).is_empty());
        let other_object = r#"{"object":"page","entry":[{"changes":[]}]}"#;
        assert!(receipts(other_object.as_bytes()).is_empty());
        let other_field = r#"{"object":"whatsapp_business_account","entry":[{"changes":[
            {"field":"message_template_status_update","value":{"statuses":"not ours"}}]}]}"#;
        assert!(receipts(other_field.as_bytes()).is_empty());
    }

    #[test]
    fn unknown_status_words_are_skipped_not_errors() {
        let body = r#"{"object":"whatsapp_business_account","entry":[{"changes":[
            {"field":"messages","value":{"statuses":[
              {"id":"wamid.a","status":"deleted","timestamp":"1750263773"},
              {"id":"wamid.b","status":"read","timestamp":"1750263774"}]}}]}]}"#;
        let got = receipts(body.as_bytes());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].provider_message_id, "wamid.b");
        assert_eq!(got[0].status, Status::Read);
    }

    fn batch(body: &[u8]) -> Batch {
        match parse(body).unwrap() {
            Parsed::Batch(batch) => batch,
            Parsed::Probe => panic!("meta has no probe"),
        }
    }

    #[test]
    fn malformed_bodies_name_the_field() {
        let whole = [
            (r#"{"object":"whatsapp_business_account"}"#, "missing entry"),
            (r#"{"entry":{}}"#, "entry must be an array"),
        ];
        for (body, needle) in whole {
            let err = parse(body.as_bytes()).unwrap_err();
            assert!(err.0.contains(needle), "{body}: {err}");
        }
        for body in testing::hostile_bodies() {
            assert!(parse(&body).is_err());
        }
    }

    #[test]
    fn a_malformed_item_spoils_only_itself() {
        let cases = [
            (
                r#"{"status":"sent"}"#,
                "missing entry[0].changes[0].value.statuses[0].id",
            ),
            (
                r#"{"id":7,"status":"sent"}"#,
                "statuses[0].id must be a string",
            ),
            (
                r#"{"id":"w"}"#,
                "missing entry[0].changes[0].value.statuses[0].status",
            ),
            (
                r#"{"id":"w","status":"sent","timestamp":"soon"}"#,
                "timestamp is not",
            ),
            (
                r#"{"id":"w","status":"failed","errors":["x"]}"#,
                "errors[0] must be an object",
            ),
        ];
        for (item, needle) in cases {
            let body = format!(
                r#"{{"entry":[{{"changes":[{{"field":"messages","value":{{"statuses":[
                {item}, {{"id":"wamid.good","status":"read"}}]}}}}]}}]}}"#
            );
            let got = batch(body.as_bytes());
            assert_eq!(got.unreadable.len(), 1, "{item}");
            assert!(
                got.unreadable[0].0.contains(needle),
                "{item}: {:?}",
                got.unreadable
            );
            assert_eq!(got.receipts.len(), 1, "{item}: the good neighbour is kept");
            assert_eq!(got.receipts[0].provider_message_id, "wamid.good");
        }
        let no_id = r#"{"entry":[{"changes":[{"field":"messages","value":{"messages":[
            {"from":"5491155550000","type":"text","text":{"body":"a"}},
            {"id":"wamid.ok","from":"5491155550000","type":"text","text":{"body":"b"}}]}}]},
            "not an entry"]}"#;
        let got = batch(no_id.as_bytes());
        assert_eq!(got.inbound.len(), 1);
        assert_eq!(got.unreadable.len(), 2, "{:?}", got.unreadable);
        assert!(got.unreadable[0].0.contains("messages[0].id"));
        assert!(got.unreadable[1].0.contains("entry[1] must be an object"));
    }

    #[test]
    fn inbound_messages_are_read_in_metas_shape() {
        let got = batch(FIXTURE.as_bytes());
        assert_eq!(
            got.inbound,
            vec![Inbound {
                provider_message_id: "wamid.in".into(),
                from: Some("+16505551234".into()),
                user_id: None,
                profile_name: Some("Ana".into()),
                timestamp: Some(at(1_750_263_790)),
                content: Content::Text(inbound::Text {
                    body: "hola".into()
                }),
                context_id: None,
                sender: Some("106540352242922".into()),
                raw: serde_json::json!({"from": "16505551234", "id": "wamid.in",
                    "timestamp": "1750263790", "type": "text", "text": {"body": "hola"}}),
            }]
        );
    }

    #[test]
    fn replies_reactions_and_odd_types() {
        let item = |json: &str| {
            let body = format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"changes":[{{"field":"messages",
                "value":{{"metadata":{{"phone_number_id":"PN"}},"messages":[{json}]}}}}]}}]}}"#
            );
            let mut got = batch(body.as_bytes());
            assert!(got.unreadable.is_empty(), "{:?}", got.unreadable);
            got.inbound.remove(0)
        };
        let button = item(
            r#"{"id":"w1","from":"5491100000000","type":"interactive","context":{"from":"1555","id":"wamid.ours"},
            "interactive":{"type":"button_reply","button_reply":{"id":"yes","title":"Sí"}}}"#,
        );
        assert_eq!(button.context_id.as_deref(), Some("wamid.ours"));
        assert_eq!(
            button.content,
            Content::Reply(Reply {
                kind: ReplyKind::Button,
                id: Some("yes".into()),
                title: Some("Sí".into()),
                description: None,
                payload: None
            })
        );
        let quick = item(
            r#"{"id":"w2","from":"5491100000000","type":"button","button":{"payload":"CONFIRM","text":"Confirmar"}}"#,
        );
        assert!(matches!(&quick.content,
            Content::Reply(r) if r.kind == ReplyKind::QuickReply && r.payload.as_deref() == Some("CONFIRM")));
        let reaction = item(
            r#"{"id":"w3","from":"5491100000000","type":"reaction","reaction":{"message_id":"wamid.ours","emoji":"👍"}}"#,
        );
        assert_eq!(reaction.context_id.as_deref(), Some("wamid.ours"));
        let removed = item(
            r#"{"id":"w4","from":"5491100000000","type":"reaction","reaction":{"message_id":"wamid.ours"}}"#,
        );
        assert!(matches!(&removed.content, Content::Reaction(r) if r.emoji.is_none()));
        let unknown = item(
            r#"{"id":"w5","from":"5491100000000","type":"unsupported","errors":[{"code":131051,"title":"Message type unknown"}]}"#,
        );
        assert_eq!(
            unknown.content,
            Content::unsupported("Message type unknown (131051)")
        );
        let untyped = item(r#"{"id":"w6","from":"5491100000000"}"#);
        assert_eq!(
            untyped.content,
            Content::unsupported("the message has no type")
        );
        let bsuid =
            item(r#"{"id":"w7","from_user_id":"US.1234","type":"text","text":{"body":"x"}}"#);
        assert_eq!(
            (bsuid.from, bsuid.user_id.as_deref()),
            (None, Some("US.1234"))
        );
    }

    #[test]
    fn value_errors_and_untracked_statuses_are_reported() {
        let body = r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages",
            "value":{"errors":[{"code":0,"title":"We were unable to authenticate the app user"}],
            "statuses":[{"id":"w","status":"deleted"},{"id":"v","status":"played"}]}}]}]}"#;
        let got = batch(body.as_bytes());
        assert_eq!(
            got.notices,
            vec![Notice {
                code: Some("0".into()),
                message: "We were unable to authenticate the app user".into()
            }]
        );
        assert_eq!(got.ignored_statuses, vec!["deleted", "played"]);
        assert!(got.receipts.is_empty());
    }

    #[test]
    fn render_inbound_then_parse_round_trips_every_kind() {
        use crate::inbound::{Location, Media, Reaction, Text};
        let contents = [
            Content::Text(Text {
                body: "hola".into(),
            }),
            Content::Image(Media {
                id: Some("m1".into()),
                mime_type: Some("image/jpeg".into()),
                caption: Some("c".into()),
                ..Media::default()
            }),
            Content::Document(Media {
                id: Some("m2".into()),
                filename: Some("f.pdf".into()),
                ..Media::default()
            }),
            Content::Location(Location {
                latitude: -34.6,
                longitude: -58.4,
                name: Some("Obelisco".into()),
                address: None,
                url: None,
            }),
            Content::Reply(Reply {
                kind: ReplyKind::Button,
                id: Some("yes".into()),
                title: Some("Sí".into()),
                description: None,
                payload: None,
            }),
            Content::Reply(Reply {
                kind: ReplyKind::List,
                id: Some("r1".into()),
                title: Some("Row".into()),
                description: None,
                payload: None,
            }),
            Content::Reply(Reply {
                kind: ReplyKind::QuickReply,
                id: None,
                title: Some("Ok".into()),
                description: None,
                payload: Some("P".into()),
            }),
            Content::Reaction(Reaction {
                message_id: "wamid.ours".into(),
                emoji: Some("👍".into()),
            }),
            Content::unsupported("Message type unknown"),
        ];
        for content in contents {
            let context_id = match &content {
                Content::Reaction(r) => Some(r.message_id.clone()),
                _ => Some("wamid.ours".to_owned()),
            };
            let inbound = Inbound {
                provider_message_id: "wamid.in".into(),
                from: Some("+5491155550000".into()),
                user_id: None,
                profile_name: Some("Ana".into()),
                timestamp: Some(at(1_750_000_000)),
                content,
                context_id,
                sender: Some("PN1".into()),
                raw: Value::Null,
            };
            let mut got = batch(&render_inbound(&inbound));
            let mut read = got.inbound.remove(0);
            read.raw = Value::Null;
            assert_eq!(read, inbound);
        }
    }

    #[test]
    fn render_then_parse_round_trips_every_status() {
        for status in [
            Status::Sent,
            Status::Delivered,
            Status::Read,
            Status::Failed,
        ] {
            let receipt = Receipt {
                provider_message_id: "wamid.round".into(),
                status,
                job_id: Some("job-1".into()),
                error: (status == Status::Failed).then(|| ReceiptError {
                    code: Some("131026".into()),
                    message: "Message undeliverable".into(),
                }),
                occurred_at: Some(at(1_750_000_000)),
                sender: Some("106540352242922".into()),
            };
            assert_eq!(receipts(&render(&receipt)), vec![receipt]);
        }
    }

    #[test]
    fn good_signature_passes_and_sign_round_trips() {
        let secret = Secret::new(APP_SECRET);
        let body = FIXTURE.as_bytes();
        let headers = testing::signed(sign(&secret, body));
        assert_eq!(verify(&secret, &request(&headers, body)), Ok(()));
        // As a hand-computed header, in upper case hex too.
        let digest = hmac_sha256_hex(APP_SECRET.as_bytes(), body).to_uppercase();
        let headers = testing::headers(&[("X-Hub-Signature-256", &format!("sha256={digest}"))]);
        assert_eq!(verify(&secret, &request(&headers, body)), Ok(()));
    }

    #[test]
    fn bad_or_missing_signatures_fail() {
        let secret = Secret::new(APP_SECRET);
        let body = FIXTURE.as_bytes();
        let mismatch = Err(AuthError::Mismatch("X-Hub-Signature-256"));
        let other_key = testing::signed(sign(&Secret::new("other"), body));
        assert_eq!(verify(&secret, &request(&other_key, body)), mismatch);
        let tampered = testing::signed(sign(&secret, body));
        assert_eq!(verify(&secret, &request(&tampered, b"{}")), mismatch);
        let digest = hmac_sha256_hex(APP_SECRET.as_bytes(), body);
        let no_prefix = testing::headers(&[("X-Hub-Signature-256", &digest)]);
        assert_eq!(verify(&secret, &request(&no_prefix, body)), mismatch);
        let none = HeaderMap::new();
        assert_eq!(
            verify(&secret, &request(&none, body)),
            Err(AuthError::Missing("X-Hub-Signature-256"))
        );
        assert_eq!(
            verify(&Secret::new(""), &request(&tampered, body)),
            Err(AuthError::NotConfigured)
        );
    }

    #[test]
    fn handshake_echoes_the_challenge_only_for_the_right_token() {
        let token = Secret::new("tok en&1");
        let good = "hub.mode=subscribe&hub.verify_token=tok+en%261&hub.challenge=1158201444";
        assert_eq!(handshake(good, &token), Ok("1158201444".into()));
        assert_eq!(
            handshake(
                "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
                &token
            ),
            Err(AuthError::Mismatch("hub.verify_token"))
        );
        assert_eq!(
            handshake("hub.mode=subscribe&hub.challenge=1", &token),
            Err(AuthError::Missing("hub.verify_token"))
        );
        assert_eq!(
            handshake(
                "hub.mode=unsubscribe&hub.verify_token=tok+en%261&hub.challenge=1",
                &token
            ),
            Err(AuthError::Mismatch("hub.mode"))
        );
        assert_eq!(
            handshake("hub.mode=subscribe&hub.verify_token=tok+en%261", &token),
            Err(AuthError::Missing("hub.challenge"))
        );
        assert_eq!(
            handshake(good, &Secret::new("")),
            Err(AuthError::NotConfigured)
        );
    }
}
