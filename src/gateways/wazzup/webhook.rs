//! Wazzup24's webhooks, per the Wazzup section of `shared/providers/RECEIPTS.md` (the status
//! payload there is from secondary sources).
//!
//! - **Auth**: `Authorization: Bearer <crmKey>`, the channel's webhook secret, compared in
//!   constant time. Wazzup has no HMAC.
//! - **Probe**: setting the webhook makes Wazzup POST `{"test":true}` first, which must get 200
//!   and publishes nothing: [`Parsed::Probe`]. Only exactly that JSON object (whitespace aside)
//!   is a probe, answered before authentication; a body with any other field is authenticated
//!   and read like every other.
//! - **Body**: `{"statuses":[{"messageId","timestamp","status","error"}],"messages":[…]}`,
//!   either or both. A `statuses` or `messages` that is not an array fails the body; an item
//!   that cannot be read is listed in [`Batch::unreadable`] and its neighbours are still read.
//!   `messageId` is the id of the send answer. `status` is `sent|delivered|read|error|edited`:
//!   `error` is a failure; `edited` (and any word we do not know) is not a delivery status and
//!   is listed in [`Batch::ignored_statuses`].
//! - **Inbound** (envelope: <https://wazzup24.com/help/api-documentation-en/webhooks/>; the
//!   `messages[]` field list is known only from secondary copies of that page and production
//!   bodies): an item with `isEcho: false` (or, without `isEcho`, `status: "inbound"`) is a
//!   customer's message. Its id is `messageId` (a Wazzup GUID: no wamid is exposed), the
//!   customer's number `chatId` (only when `chatType` is `whatsapp`: other messengers' chat
//!   ids are no numbers), their name `contact.name`, the time `dateTime`, the business
//!   channel `channelId` (the channel's `sender`), and the quoted message
//!   `quotedMessage.messageId`, a Wazzup GUID like those our send answers record. Type `text` is
//!   `text`; `image|video|audio|document` are media at `contentUri` with `text` as caption;
//!   every other type (`vcard`, `geo`, `wapi_template`, `unsupported`, `missing_call`, …) has
//!   no documented payload and is `unsupported`. Button replies are described only in prose,
//!   without a field name, so they arrive as whatever type Wazzup gives them. An edit or a
//!   deletion (`isEdited`, `isDeleted`) keeps its content under a derived id, so it is not
//!   taken for a retry of the original: `<messageId>#deleted`, `<messageId>#edited@<dateTime>`
//!   (`edit_id` says why).
//! - **Echoes**: an `isEcho: true` item is an outgoing message (ours, or typed in the phone
//!   app). With `status: "error"` it is a `failed` receipt for its `messageId`, explained by
//!   its `error` object; otherwise it carries nothing.
//! - **Assumptions**: `timestamp` is an ISO string or unix seconds/milliseconds; the `error`
//!   object has Wazzup's error-body shape `{"error": "BAD_CONTACT", "description": …}` (`code`
//!   and `message` are accepted too), or is a bare code string.

use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::config::Secret;
use crate::gateways::webhook::fields::{self, Object};
use crate::gateways::webhook::{
    AuthError, Batch, Inbound, ParseError, Parsed, Receipt, ReceiptError, WebhookFormat,
    WebhookRequest, constant_time_eq,
};
use crate::inbound::{self, Content, Media};
use crate::outcome::Status;

/// Wazzup's status words. `edited` (and anything unknown) is no receipt.
pub const STATUSES: &[(&str, Status)] = &[
    ("sent", Status::Sent),
    ("delivered", Status::Delivered),
    ("read", Status::Read),
    ("error", Status::Failed),
];

/// The authorization scheme Wazzup uses for the crmKey.
const BEARER: &[u8] = b"bearer ";

/// The `chatType` of WhatsApp chats, whose `chatId` is the customer's number.
const WHATSAPP: &str = "whatsapp";

/// The `status` of a customer's message.
const INBOUND_STATUS: &str = "inbound";

/// The `status` of an outgoing message Wazzup could not send.
const ERROR_STATUS: &str = "error";

/// What follows `messageId` in the id of a deletion.
const DELETED_SUFFIX: &str = "#deleted";

/// What follows `messageId`, before the edit's time, in the id of an edit.
const EDITED_MARK: &str = "#edited@";

/// Check `Authorization: Bearer <crmKey>`.
pub fn verify(secret: &Secret, request: &WebhookRequest<'_>) -> Result<(), AuthError> {
    const NAME: &str = "Authorization";
    let expected = fields::secret_bytes(secret)?;
    let received = request
        .headers
        .get(AUTHORIZATION)
        .ok_or(AuthError::Missing(NAME))?
        .as_bytes();
    // The scheme name is case-insensitive (RFC 9110); the key itself is not.
    let scheme_ok =
        received.len() > BEARER.len() && received[..BEARER.len()].eq_ignore_ascii_case(BEARER);
    if scheme_ok && constant_time_eq(received[BEARER.len()..].trim_ascii(), expected) {
        Ok(())
    } else {
        Err(AuthError::Mismatch(NAME))
    }
}

/// Whether the body is Wazzup's probe: the object `{"test": true}` and nothing else.
fn probe(root: &Object) -> bool {
    root.len() == 1 && root.get("test") == Some(&Value::Bool(true))
}

/// Read the statuses, customers' messages and failed echoes (or the probe) in a webhook body.
/// Only a body that is not a JSON object, or whose `statuses` or `messages` is not an array,
/// fails as a whole; an item that cannot be read is listed in [`Batch::unreadable`].
pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let root = fields::body_object(body)?;
    if probe(&root) {
        return Ok(Parsed::Probe);
    }
    let statuses = fields::opt_array(&root, "statuses", "")?.unwrap_or_default();
    let messages = fields::opt_array(&root, "messages", "")?.unwrap_or_default();
    let mut batch = Batch::default();
    for (i, item) in statuses.iter().enumerate() {
        match status(item, &format!("statuses[{i}]")) {
            Ok(Ok(receipt)) => batch.receipts.push(receipt),
            Ok(Err(word)) => batch.ignored_statuses.push(word),
            Err(e) => batch.unreadable.push(e),
        }
    }
    for (i, item) in messages.iter().enumerate() {
        match message(item, &format!("messages[{i}]")) {
            Ok(Some(Item::Inbound(inbound))) => batch.inbound.push(*inbound),
            Ok(Some(Item::Failed(receipt))) => batch.receipts.push(receipt),
            Ok(None) => {}
            Err(e) => batch.unreadable.push(e),
        }
    }
    Ok(Parsed::Batch(batch))
}

/// One `statuses[]` item; `Err(word)` for a status word we do not track.
fn status(item: &Value, at: &str) -> Result<Result<Receipt, String>, ParseError> {
    let item = fields::as_object(item, at)?;
    let id = fields::req_str(item, "messageId", at)?;
    let word = fields::req_str(item, "status", at)?;
    let occurred_at = fields::opt_timestamp(item, "timestamp", at)?;
    let Some(status) = fields::lookup(STATUSES, word) else {
        tracing::debug!(status = %fields::preview(word), at, "wazzup status skipped");
        return Ok(Err(fields::preview(word)));
    };
    let error = match status {
        Status::Failed => error(item, at)?,
        _ => None,
    };
    Ok(Ok(Receipt {
        provider_message_id: id.to_owned(),
        status,
        job_id: None,
        error,
        occurred_at,
        sender: None,
    }))
}

/// What a `messages[]` item means for us.
enum Item {
    /// A customer's message (boxed: it is much larger than a receipt).
    Inbound(Box<Inbound>),
    /// An outgoing message Wazzup reports it could not send.
    Failed(Receipt),
}

/// One `messages[]` item: a customer's message, a failed echo, or (any other echo) nothing.
fn message(value: &Value, at: &str) -> Result<Option<Item>, ParseError> {
    let item = fields::as_object(value, at)?;
    let id = fields::req_str(item, "messageId", at)?;
    let word = fields::opt_str(item, "status", at)?;
    let is = |wanted: &str| word.is_some_and(|w| w.eq_ignore_ascii_case(wanted));
    let echo = match opt_bool(item, "isEcho", at)? {
        Some(echo) => echo,
        None if is(INBOUND_STATUS) => false,
        None => {
            return Err(ParseError(format!(
                "{} is missing and {} is not `inbound`",
                fields::path(at, "isEcho"),
                fields::path(at, "status")
            )));
        }
    };
    if echo {
        if !is(ERROR_STATUS) {
            return Ok(None);
        }
        return Ok(Some(Item::Failed(Receipt {
            provider_message_id: id.to_owned(),
            status: Status::Failed,
            job_id: None,
            error: error(item, at)?,
            occurred_at: fields::opt_timestamp(item, "dateTime", at)?,
            sender: None,
        })));
    }
    let date_time = fields::opt_text(item, "dateTime", at)?;
    let timestamp = fields::opt_timestamp(item, "dateTime", at)?;
    let chat_type = fields::opt_str(item, "chatType", at)?;
    let chat_id = fields::opt_text(item, "chatId", at)?;
    let from = match chat_type {
        Some(chat_type) if chat_type.eq_ignore_ascii_case(WHATSAPP) => {
            chat_id.as_deref().and_then(inbound::e164)
        }
        _ => None,
    };
    let profile_name = match fields::opt_object(item, "contact", at)? {
        Some(contact) => fields::opt_str(contact, "name", &fields::path(at, "contact"))?,
        None => None,
    };
    let context_id = match fields::opt_object(item, "quotedMessage", at)? {
        Some(quoted) => fields::opt_text(quoted, "messageId", &fields::path(at, "quotedMessage"))?,
        None => None,
    };
    let deleted = opt_bool(item, "isDeleted", at)? == Some(true);
    let edited = opt_bool(item, "isEdited", at)? == Some(true);
    Ok(Some(Item::Inbound(Box::new(Inbound {
        provider_message_id: edit_id(id, deleted, edited, date_time.as_deref(), value),
        from,
        user_id: None,
        profile_name: profile_name.filter(|n| !n.is_empty()).map(str::to_owned),
        timestamp,
        content: content(item, fields::opt_str(item, "type", at)?),
        context_id,
        sender: fields::opt_text(item, "channelId", at)?,
        raw: value.clone(),
    }))))
}

/// The id of a customer's message, an edit or a deletion of one. Wazzup reports an edit or a
/// deletion under the original's `messageId`, and an inbound event id derives from the
/// message id alone, so each gets its own id or it would be dropped as a retry of the
/// original: `<messageId>#deleted` (a message is deleted once), `<messageId>#edited@<dateTime>`
/// (one per edit, as far as `dateTime` tells edits apart). Every part comes from the item,
/// so a retry of the webhook yields the same id; an edit without `dateTime` takes a hash of
/// the item instead, which differs between edits as their text does.
fn edit_id(id: &str, deleted: bool, edited: bool, date_time: Option<&str>, item: &Value) -> String {
    if deleted {
        format!("{id}{DELETED_SUFFIX}")
    } else if edited {
        let when = match date_time {
            Some(date_time) => date_time.to_owned(),
            None => fields::content_id(&serde_json::to_vec(item).unwrap_or_default()),
        };
        format!("{id}{EDITED_MARK}{when}")
    } else {
        id.to_owned()
    }
}

/// The content of a customer's message of type `kind`.
fn content(item: &Object, kind: Option<&str>) -> Content {
    let text = |key: &str| {
        item.get(key)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    };
    let media = || Media {
        url: text("contentUri"),
        caption: text("text"),
        ..Media::default()
    };
    match kind.unwrap_or("") {
        "" => Content::unsupported("the message has no type"),
        "text" => match text("text") {
            Some(body) => Content::Text(inbound::Text { body }),
            None => Content::unsupported("Wazzup text message without text"),
        },
        "image" => Content::Image(media()),
        "video" => Content::Video(media()),
        "audio" => Content::Audio(media()),
        "document" => Content::Document(media()),
        other => Content::unsupported(format!(
            "Wazzup documents no `{}` message payload",
            fields::preview(other)
        )),
    }
}

/// An optional boolean member.
fn opt_bool(obj: &Object, key: &str, at: &str) -> Result<Option<bool>, ParseError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(other) => Err(ParseError(format!(
            "{} must be a boolean, not a JSON {}",
            fields::path(at, key),
            fields::kind(other)
        ))),
    }
}

fn error(item: &Object, at: &str) -> Result<Option<ReceiptError>, ParseError> {
    let at = fields::path(at, "error");
    let error = match item.get("error") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(code)) => {
            return Ok(Some(ReceiptError {
                code: Some(code.clone()),
                message: code.clone(),
            }));
        }
        Some(value) => fields::as_object(value, &at)?,
    };
    let code = match fields::opt_text(error, "error", &at)? {
        Some(code) => Some(code),
        None => fields::opt_text(error, "code", &at)?,
    };
    let message = match fields::opt_str(error, "description", &at)? {
        Some(message) => Some(message),
        None => fields::opt_str(error, "message", &at)?,
    };
    let message = match (message, &code) {
        (Some(message), _) => message.to_owned(),
        (None, Some(code)) => code.clone(),
        (None, None) => "Wazzup gave no description".to_owned(),
    };
    Ok(Some(ReceiptError { code, message }))
}

/// A webhook body holding `receipt`, as Wazzup sends it.
pub fn render(receipt: &Receipt) -> Vec<u8> {
    let word = match receipt.status {
        Status::Failed => "error",
        other => other.as_str(),
    };
    let mut item = json!({"messageId": receipt.provider_message_id, "status": word});
    if let Some(at) = receipt.occurred_at {
        item["timestamp"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    if let Some(error) = &receipt.error {
        item["error"] = json!({"error": error.code, "description": error.message});
    }
    json!({"statuses": [item]}).to_string().into_bytes()
}

/// A webhook body holding `inbound` as a customer's WhatsApp message, with documented fields
/// only. Content Wazzup has no type for (stickers, locations, replies, …) is rendered as its
/// documented type `unsupported`, so it reads back as unsupported. An id `edit_id` made
/// from a `dateTime` is rendered back as the edit or deletion it came from.
pub fn render_inbound(inbound: &Inbound) -> Vec<u8> {
    let id = &inbound.provider_message_id;
    let mut item = json!({ "isEcho": false, "status": INBOUND_STATUS });
    let mut date_time = inbound
        .timestamp
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    if let Some(original) = id.strip_suffix(DELETED_SUFFIX) {
        item["messageId"] = json!(original);
        item["isDeleted"] = json!(true);
    } else if let Some((original, when)) = id.split_once(EDITED_MARK) {
        item["messageId"] = json!(original);
        item["isEdited"] = json!(true);
        date_time = Some(when.to_owned());
    } else {
        item["messageId"] = json!(id);
    }
    if let Some(date_time) = date_time {
        item["dateTime"] = json!(date_time);
    }
    if let Some(from) = &inbound.from {
        item["chatType"] = json!(WHATSAPP);
        item["chatId"] = json!(from.trim_start_matches('+'));
    }
    if let Some(channel) = &inbound.sender {
        item["channelId"] = json!(channel);
    }
    if let Some(name) = &inbound.profile_name {
        item["contact"] = json!({ "name": name });
    }
    if let Some(quoted) = &inbound.context_id {
        item["quotedMessage"] = json!({ "messageId": quoted });
    }
    let (kind, text, uri) = match &inbound.content {
        Content::Text(text) => ("text", Some(&text.body), None),
        Content::Image(m) => ("image", m.caption.as_ref(), m.url.as_ref()),
        Content::Video(m) => ("video", m.caption.as_ref(), m.url.as_ref()),
        Content::Audio(m) => ("audio", m.caption.as_ref(), m.url.as_ref()),
        Content::Document(m) => ("document", m.caption.as_ref(), m.url.as_ref()),
        _ => ("unsupported", None, None),
    };
    item["type"] = json!(kind);
    if let Some(text) = text {
        item["text"] = json!(text);
    }
    if let Some(uri) = uri {
        item["contentUri"] = json!(uri);
    }
    json!({ "messages": [item] }).to_string().into_bytes()
}

/// The `Authorization: Bearer <crmKey>` header (marked sensitive so it is never logged).
pub fn sign(secret: &Secret) -> Vec<(HeaderName, HeaderValue)> {
    fields::header(
        "authorization",
        &format!("Bearer {}", secret.expose()),
        true,
    )
    .into_iter()
    .collect()
}

/// Wazzup24's webhook format.
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

    fn is_probe(&self, body: &[u8]) -> bool {
        fields::body_object(body).is_ok_and(|root| probe(&root))
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
        _body: &[u8],
        _now: DateTime<Utc>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        sign(secret)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use reqwest::header::HeaderMap;

    use super::*;
    use crate::gateways::webhook::fields::testing;

    const CRM_KEY: &str = "crm-key-123";

    /// RECEIPTS.md's status payload with an inbound message in the same POST, an `edited`
    /// status, both timestamp forms and a failed item with an error object.
    const FIXTURE: &str = r#"{
      "messages": [{"messageId": "in-1", "channelId": "ch", "chatType": "whatsapp",
                    "chatId": "79998887766", "dateTime": "2026-03-01T10:00:00.000Z",
                    "type": "text", "status": "inbound", "text": "hola"}],
      "statuses": [
        {"messageId": "11a4ba7a-1c06-4a32-9e5b-5c14e2a4a3d1", "timestamp": "2026-03-01T10:00:01.000Z", "status": "delivered"},
        {"messageId": "22b5cb8b-2d17-4b43-8f6c-6d25f3b5b4e2", "timestamp": 1772359202, "status": "error",
         "error": {"error": "BAD_CONTACT", "description": "The contact does not have WhatsApp"}},
        {"messageId": "33c6dc9c-3e28-4c54-9a7d-7e36a4c6c5f3", "timestamp": 1772359203, "status": "edited"}
      ]
    }"#;

    /// The production bodies of the research (a secondary source, verbatim but for Python's
    /// `False`/`True`): a customer's message, and a template Wazzup failed to send.
    const INBOUND: &str = r#"{
    "messages": [{
        "text": "Здравствуйте, а есть в наличии?",
        "type": "text",
        "chatId": "79001234567",
        "isEcho": false,
        "status": "inbound",
        "chatType": "whatsapp",
        "messageId": "in-1"
    }]
}"#;
    const ERROR_BAD_CONTACT: &str = r#"{
    "messages": [{
        "text": "*Здравствуйте, Даниил!*\n\n🛍 *Ваш Заказ №18185*",
        "type": "wapi_template",
        "error": {"error": "BAD_CONTACT", "description": "Number may not be on WhatsApp or uses an old version."},
        "chatId": "79199277589",
        "isEcho": true,
        "status": "error",
        "contact": {"name": "Даниил Логинов", "phone": "79199277589"},
        "chatType": "whatsapp",
        "messageId": "cfaa7ed3-ef9a-47da-80e6-c2fa17ad060b",
        "authorName": "Admin"
    }]
}"#;

    fn batch(body: &[u8]) -> Batch {
        match parse(body).unwrap() {
            Parsed::Batch(batch) => batch,
            Parsed::Probe => panic!("not a probe"),
        }
    }

    fn receipts(body: &[u8]) -> Vec<Receipt> {
        batch(body).receipts
    }

    /// The one customer's message in a body of `messages` items.
    fn one_inbound(items: &str) -> Inbound {
        let mut got = batch(format!(r#"{{"messages":[{items}]}}"#).as_bytes());
        assert!(
            got.receipts.is_empty() && got.unreadable.is_empty(),
            "{got:?}"
        );
        assert_eq!(got.inbound.len(), 1, "{items}");
        got.inbound.remove(0)
    }

    fn request<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> WebhookRequest<'a> {
        WebhookRequest {
            method: "POST",
            url: "https://hooks.example.com/webhooks/wazzup-ru",
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
                    provider_message_id: "11a4ba7a-1c06-4a32-9e5b-5c14e2a4a3d1".into(),
                    status: Status::Delivered,
                    job_id: None,
                    error: None,
                    occurred_at: Some(Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 1).unwrap()),
                    sender: None,
                },
                Receipt {
                    provider_message_id: "22b5cb8b-2d17-4b43-8f6c-6d25f3b5b4e2".into(),
                    status: Status::Failed,
                    job_id: None,
                    error: Some(ReceiptError {
                        code: Some("BAD_CONTACT".into()),
                        message: "The contact does not have WhatsApp".into(),
                    }),
                    occurred_at: Some(Utc.timestamp_opt(1_772_359_202, 0).unwrap()),
                    sender: None,
                },
            ]
        );
    }

    #[test]
    fn the_test_call_is_a_probe() {
        assert_eq!(parse(br#"{"test":true}"#), Ok(Parsed::Probe));
        assert_eq!(parse(br#"{"test":false}"#), Ok(Parsed::receipts(vec![])));
    }

    /// Only exactly `{"test":true}` is answered before authentication: anything more is
    /// authenticated, and its statuses are read.
    #[test]
    fn only_the_bare_test_object_is_a_probe() {
        for body in [r#"{"test":true}"#, " {\n  \"test\" : true\n} "] {
            assert!(Format.is_probe(body.as_bytes()), "{body}");
        }
        for body in [
            r#"{"test":true,"statuses":[]}"#,
            r#"{"test":true,"x":1}"#,
            r#"{"test":"true"}"#,
            r#"{"test":1}"#,
            r#"{"test":false}"#,
            r#"[{"test":true}]"#,
            r#"{}"#,
            "not json",
        ] {
            assert!(!Format.is_probe(body.as_bytes()), "{body}");
        }
        let body = br#"{"test":true,"statuses":[{"messageId":"m","status":"read"}]}"#;
        assert_eq!(receipts(body).len(), 1);
        assert_eq!(receipts(body)[0].status, Status::Read);
    }

    #[test]
    fn inbound_only_and_unrelated_bodies_give_no_receipts() {
        for (body, ignored) in [
            (
                r#"{"messages":[{"messageId":"in-1","status":"inbound","text":"hola"}]}"#,
                vec![],
            ),
            (r#"{"createContact":{"id":"c1"}}"#, vec![]),
            (
                r#"{"statuses":[{"messageId":"m","status":"edited"}]}"#,
                vec!["edited"],
            ),
        ] {
            let got = batch(body.as_bytes());
            assert!(got.receipts.is_empty(), "{body}");
            assert_eq!(got.ignored_statuses, ignored, "{body}");
        }
    }

    #[test]
    fn the_production_inbound_body_is_the_expected_inbound() {
        let got = batch(INBOUND.as_bytes());
        let raw: Value = serde_json::from_str(INBOUND).unwrap();
        assert_eq!(
            got,
            Batch {
                inbound: vec![Inbound {
                    provider_message_id: "in-1".into(),
                    from: Some("+79001234567".into()),
                    user_id: None,
                    profile_name: None,
                    timestamp: None,
                    content: Content::Text(inbound::Text {
                        body: "Здравствуйте, а есть в наличии?".into()
                    }),
                    context_id: None,
                    sender: None,
                    raw: raw["messages"][0].clone(),
                }],
                ..Batch::default()
            }
        );
        assert_eq!(batch(INBOUND.as_bytes()), got, "a retry is the same");
    }

    #[test]
    fn a_failed_echo_is_a_failed_receipt() {
        assert_eq!(
            batch(ERROR_BAD_CONTACT.as_bytes()),
            Batch {
                receipts: vec![Receipt {
                    provider_message_id: "cfaa7ed3-ef9a-47da-80e6-c2fa17ad060b".into(),
                    status: Status::Failed,
                    job_id: None,
                    error: Some(ReceiptError {
                        code: Some("BAD_CONTACT".into()),
                        message: "Number may not be on WhatsApp or uses an old version.".into(),
                    }),
                    occurred_at: None,
                    sender: None,
                }],
                ..Batch::default()
            }
        );
        // Other echoes (ours, or typed in the phone app) say nothing, and are not unreadable.
        let echoes = r#"{"messages":[
            {"messageId":"e1","isEcho":true,"status":"sent","type":"text","text":"x","chatType":"whatsapp","chatId":"79001234567"},
            {"messageId":"e2","isEcho":true,"type":"text","text":"from the phone","sentFromApp":true},
            {"messageId":"e3","isEcho":true,"status":"read","isEdited":true}]}"#;
        assert_eq!(batch(echoes.as_bytes()), Batch::default());
    }

    #[test]
    fn every_documented_type_maps() {
        let item = |kind: &str, extra: &str| {
            one_inbound(&format!(
                r#"{{"messageId":"m","isEcho":false,"status":"inbound","chatType":"whatsapp",
                "chatId":"79001234567","type":"{kind}"{extra}}}"#
            ))
            .content
        };
        let uri = r#","contentUri":"https://store.wazzup24.com/f.jpg""#;
        let media = |caption: Option<&str>| Media {
            url: Some("https://store.wazzup24.com/f.jpg".into()),
            caption: caption.map(str::to_owned),
            ..Media::default()
        };
        assert_eq!(
            item("image", &format!(r#"{uri},"text":"mira""#)),
            Content::Image(media(Some("mira")))
        );
        assert_eq!(item("video", uri), Content::Video(media(None)));
        assert_eq!(item("audio", uri), Content::Audio(media(None)));
        assert_eq!(
            item("document", &format!(r#"{uri},"text":"""#)),
            Content::Document(media(None))
        );
        for kind in [
            "vcard",
            "geo",
            "wapi_template",
            "unsupported",
            "missing_call",
        ] {
            assert_eq!(
                item(kind, r#","text":"x""#),
                Content::unsupported(format!("Wazzup documents no `{kind}` message payload")),
            );
        }
        assert_eq!(
            item("text", ""),
            Content::unsupported("Wazzup text message without text")
        );
        let untyped = one_inbound(r#"{"messageId":"m","isEcho":false}"#);
        assert_eq!(
            untyped.content,
            Content::unsupported("the message has no type")
        );
    }

    #[test]
    fn customer_fields_quote_and_chat_type() {
        let got = one_inbound(
            r#"{"messageId":"m1","channelId":"ch-1","chatType":"whatsapp","chatId":"79001234567",
            "dateTime":"2026-07-31T15:27:44.832Z","type":"text","isEcho":false,"status":"inbound",
            "text":"да","contact":{"name":"Анна","avatarUri":"https://x"},
            "quotedMessage":{"messageId":"f66c53a6-957a-46b2-b41b-5a2ef4844bcb","text":"¿Confirmas?"}}"#,
        );
        assert_eq!(got.from.as_deref(), Some("+79001234567"));
        assert_eq!(got.profile_name.as_deref(), Some("Анна"));
        assert_eq!(got.sender.as_deref(), Some("ch-1"));
        assert_eq!(
            got.context_id.as_deref(),
            Some("f66c53a6-957a-46b2-b41b-5a2ef4844bcb")
        );
        assert_eq!(
            got.timestamp,
            Utc.with_ymd_and_hms(2026, 7, 31, 15, 27, 44)
                .single()
                .map(|t| t + chrono::Duration::milliseconds(832))
        );
        // Another messenger's chat id is no phone number.
        let telegram = one_inbound(
            r#"{"messageId":"m2","chatType":"telegram","chatId":"79001234567","isEcho":false,"type":"text","text":"x"}"#,
        );
        assert_eq!(telegram.from, None);
    }

    #[test]
    fn edits_and_deletions_get_their_own_stable_ids() {
        let original = r#"{"messageId":"m1","isEcho":false,"type":"text","text":"hola",
            "dateTime":"2026-07-31T15:00:00.000Z"}"#;
        let edit = |at: &str| {
            format!(
                r#"{{"messageId":"m1","isEcho":false,"isEdited":true,"type":"text","text":"hola!",
                "dateTime":"{at}"}}"#
            )
        };
        let deleted = r#"{"messageId":"m1","isEcho":false,"isDeleted":true,"type":"text",
            "text":"hola","dateTime":"2026-07-31T15:09:00.000Z"}"#;
        let first = one_inbound(&edit("2026-07-31T15:05:00.000Z"));
        assert_eq!(
            first.provider_message_id,
            "m1#edited@2026-07-31T15:05:00.000Z"
        );
        assert_eq!(
            first.content,
            Content::Text(inbound::Text {
                body: "hola!".into()
            })
        );
        let ids = [
            one_inbound(original).provider_message_id,
            first.provider_message_id.clone(),
            one_inbound(&edit("2026-07-31T15:06:00.000Z")).provider_message_id,
            one_inbound(deleted).provider_message_id,
        ];
        assert_eq!(ids[0], "m1");
        assert_eq!(ids[3], "m1#deleted");
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "{ids:?}");
        // A retry of the same webhook names the same edit, even without a dateTime.
        let undated =
            r#"{"messageId":"m1","isEcho":false,"isEdited":true,"type":"text","text":"b"}"#;
        let undated_id = one_inbound(undated).provider_message_id;
        assert!(undated_id.starts_with("m1#edited@sha256:"), "{undated_id}");
        assert_eq!(one_inbound(undated).provider_message_id, undated_id);
        assert_eq!(
            one_inbound(&edit("2026-07-31T15:05:00.000Z")).provider_message_id,
            first.provider_message_id
        );
    }

    #[test]
    fn a_malformed_item_spoils_only_itself() {
        let good_status = r#"{"messageId":"s-good","status":"read"}"#;
        let good_message = r#"{"messageId":"in-good","isEcho":false,"type":"text","text":"hi"}"#;
        let cases = [
            (
                format!(
                    r#"{{"statuses":[{{"status":"read"}},{good_status}],"messages":[{good_message}]}}"#
                ),
                "missing statuses[0].messageId",
            ),
            (
                format!(r#"{{"statuses":[5,{good_status}],"messages":[{good_message}]}}"#),
                "statuses[0] must be an object",
            ),
            (
                format!(
                    r#"{{"statuses":[{good_status}],"messages":[{{"isEcho":false,"chatId":"79001234567"}},{good_message}]}}"#
                ),
                "missing messages[0].messageId",
            ),
            (
                format!(
                    r#"{{"statuses":[{good_status}],"messages":[{{"messageId":"x","isEcho":"no"}},{good_message}]}}"#
                ),
                "messages[0].isEcho must be a boolean",
            ),
            (
                format!(
                    r#"{{"statuses":[{good_status}],"messages":[{{"messageId":"x","type":"text"}},{good_message}]}}"#
                ),
                "messages[0].isEcho is missing and messages[0].status is not `inbound`",
            ),
            (
                format!(
                    r#"{{"statuses":[{good_status}],"messages":[{{"messageId":"x","isEcho":false,"chatId":{{"n":"79001234567"}}}},{good_message}]}}"#
                ),
                "messages[0].chatId must be",
            ),
            (
                format!(
                    r#"{{"statuses":[{good_status}],"messages":[{{"messageId":"x","isEcho":false,"quotedMessage":"79001234567"}},{good_message}]}}"#
                ),
                "messages[0].quotedMessage must be an object",
            ),
            (
                format!(
                    r#"{{"statuses":[{good_status}],"messages":[{{"messageId":"x","isEcho":true,"status":"error","error":[1]}},{good_message}]}}"#
                ),
                "messages[0].error must be an object",
            ),
        ];
        for (body, needle) in cases {
            let got = batch(body.as_bytes());
            assert_eq!(got.unreadable.len(), 1, "{body}");
            assert!(
                got.unreadable[0].0.contains(needle),
                "{body}: {:?}",
                got.unreadable
            );
            assert!(
                !got.unreadable[0].0.contains("7900"),
                "{:?}",
                got.unreadable
            );
            assert_eq!(got.receipts.len(), 1, "{body}");
            assert_eq!(got.receipts[0].provider_message_id, "s-good");
            assert_eq!(got.inbound.len(), 1, "{body}");
            assert_eq!(got.inbound[0].provider_message_id, "in-good");
        }
    }

    #[test]
    fn render_inbound_then_parse_round_trips() {
        let base = Inbound {
            provider_message_id: "4f1e2d3c-0000-4000-8000-000000000001".into(),
            from: Some("+79001234567".into()),
            user_id: None,
            profile_name: Some("Анна".into()),
            timestamp: Utc.timestamp_opt(1_785_511_664, 832_000_000).single(),
            content: Content::Text(inbound::Text {
                body: "да".into()
            }),
            context_id: Some("f66c53a6-957a-46b2-b41b-5a2ef4844bcb".into()),
            sender: Some("ch-1".into()),
            raw: Value::Null,
        };
        let image = Content::Image(Media {
            url: Some("https://store.wazzup24.com/f.jpg".into()),
            caption: Some("mira".into()),
            ..Media::default()
        });
        let cases = [
            base.clone(),
            Inbound {
                content: image,
                ..base.clone()
            },
            Inbound {
                content: Content::Document(Media {
                    url: Some("https://store.wazzup24.com/f.pdf".into()),
                    ..Media::default()
                }),
                context_id: None,
                profile_name: None,
                sender: None,
                ..base.clone()
            },
            Inbound {
                provider_message_id: format!("m1{EDITED_MARK}2026-07-31T15:27:44.832Z"),
                ..base.clone()
            },
            Inbound {
                provider_message_id: format!("m1{DELETED_SUFFIX}"),
                ..base.clone()
            },
        ];
        for inbound in cases {
            let body = Format.render_inbound(&inbound).unwrap();
            let mut got = batch(&body);
            assert!(
                got.receipts.is_empty() && got.unreadable.is_empty(),
                "{got:?}"
            );
            let mut read = got.inbound.remove(0);
            read.raw = Value::Null;
            assert_eq!(read, inbound);
        }
        // What Wazzup has no type for is rendered as its type `unsupported`.
        let location = Inbound {
            content: Content::Location(inbound::Location {
                latitude: 55.75,
                longitude: 37.62,
                name: None,
                address: None,
                url: None,
            }),
            ..base.clone()
        };
        let mut read = batch(&render_inbound(&location)).inbound.remove(0);
        read.raw = Value::Null;
        assert_eq!(
            read,
            Inbound {
                content: Content::unsupported("Wazzup documents no `unsupported` message payload"),
                ..base
            }
        );
    }

    #[test]
    fn a_bare_error_code_is_kept() {
        let body = br#"{"statuses":[{"messageId":"m","status":"error","error":"SPAM"}]}"#;
        assert_eq!(
            receipts(body)[0].error,
            Some(ReceiptError {
                code: Some("SPAM".into()),
                message: "SPAM".into()
            })
        );
    }

    #[test]
    fn malformed_bodies_name_the_field() {
        let whole = [
            (r#"{"statuses":{}}"#, "statuses must be an array"),
            (r#"{"messages":"hola"}"#, "messages must be an array"),
        ];
        for (body, needle) in whole {
            let err = parse(body.as_bytes()).unwrap_err();
            assert!(err.0.contains(needle), "{body}: {err}");
        }
        let items = [
            (
                r#"{"statuses":[{"messageId":1,"status":"sent"}]}"#,
                "statuses[0].messageId must be",
            ),
            (
                r#"{"statuses":[{"messageId":"m"}]}"#,
                "missing statuses[0].status",
            ),
            (
                r#"{"statuses":[{"messageId":"m","status":"read","timestamp":true}]}"#,
                "statuses[0].timestamp",
            ),
            (
                r#"{"statuses":[{"messageId":"m","status":"error","error":[1]}]}"#,
                "statuses[0].error",
            ),
        ];
        for (body, needle) in items {
            let got = batch(body.as_bytes());
            assert_eq!(got.unreadable.len(), 1, "{body}");
            assert!(
                got.unreadable[0].0.contains(needle),
                "{body}: {:?}",
                got.unreadable
            );
        }
        for body in testing::hostile_bodies() {
            assert!(parse(&body).is_err());
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
                provider_message_id: "m-round".into(),
                status,
                job_id: None,
                error: (status == Status::Failed).then(|| ReceiptError {
                    code: Some("24_HOURS_EXCEEDED".into()),
                    message: "window closed".into(),
                }),
                occurred_at: Some(Utc.timestamp_opt(1_772_359_202, 0).unwrap()),
                sender: None,
            };
            assert_eq!(receipts(&render(&receipt)), vec![receipt]);
        }
    }

    #[test]
    fn good_key_passes_and_sign_round_trips() {
        let secret = Secret::new(CRM_KEY);
        let signed = testing::signed(sign(&secret));
        assert_eq!(verify(&secret, &request(&signed, b"{}")), Ok(()));
        let lower = testing::headers(&[("Authorization", "bearer crm-key-123")]);
        assert_eq!(verify(&secret, &request(&lower, b"{}")), Ok(()));
    }

    #[test]
    fn wrong_or_missing_key_fails() {
        let secret = Secret::new(CRM_KEY);
        let mismatch = Err(AuthError::Mismatch("Authorization"));
        for value in [
            "Bearer crm-key-12",
            "Basic crm-key-123",
            "crm-key-123",
            "Bearer ",
        ] {
            let headers = testing::headers(&[("Authorization", value)]);
            assert_eq!(
                verify(&secret, &request(&headers, b"{}")),
                mismatch,
                "{value}"
            );
        }
        let none = HeaderMap::new();
        assert_eq!(
            verify(&secret, &request(&none, b"{}")),
            Err(AuthError::Missing("Authorization"))
        );
        let headers = testing::headers(&[("Authorization", "Bearer ")]);
        assert_eq!(
            verify(&Secret::new(""), &request(&headers, b"{}")),
            Err(AuthError::NotConfigured)
        );
    }
}
