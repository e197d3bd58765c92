//! Inbound messages (SPEC §10): what customers write back, as events on `mensajero.inbound`.
//!
//! Each gateway's webhook parser turns the messages in a webhook body into [`Inbound`] items,
//! the type's content already in Meta's inbound shape (the canonical inbound message, as
//! Meta's message object is the canonical outbound one). The receipt lane correlates each
//! with the message of ours it answers and publishes it as an [`InboundEvent`], routing key
//! `<type>.<channel>`, with an `event_id` derived from the provider and its message id, so a
//! gateway's retry of the same webhook yields the same event.

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What kind of message a customer sent (the first segment of the routing key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InboundType {
    /// Plain text.
    Text,
    /// A picture.
    Image,
    /// A video.
    Video,
    /// A voice note or audio file.
    Audio,
    /// A file.
    Document,
    /// A sticker.
    Sticker,
    /// A shared location.
    Location,
    /// Shared contact cards.
    Contacts,
    /// An answer to buttons, a list, a template's quick reply or a flow.
    Reply,
    /// An emoji reaction to a message (an empty emoji removes it).
    Reaction,
    /// An order from the catalogue.
    Order,
    /// A system notice (the customer changed number, …).
    System,
    /// Anything the gateway sent that is not one of the above, or a gateway whose inbound
    /// format is not documented: the item is in `raw`, untouched.
    Unsupported,
}

impl InboundType {
    /// Every type, in the routing-key order of SPEC §10.
    pub const ALL: [InboundType; 13] = [
        Self::Text,
        Self::Image,
        Self::Video,
        Self::Audio,
        Self::Document,
        Self::Sticker,
        Self::Location,
        Self::Contacts,
        Self::Reply,
        Self::Reaction,
        Self::Order,
        Self::System,
        Self::Unsupported,
    ];

    /// The wire name (`text`, `reply`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Document => "document",
            Self::Sticker => "sticker",
            Self::Location => "location",
            Self::Contacts => "contacts",
            Self::Reply => "reply",
            Self::Reaction => "reaction",
            Self::Order => "order",
            Self::System => "system",
            Self::Unsupported => "unsupported",
        }
    }
}

/// A text message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Text {
    /// What the customer wrote.
    pub body: String,
}

/// A media message's content (image, video, audio, document, sticker), as Meta posts it: the
/// media id to download it with, not the bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Media {
    /// The gateway's media id (Meta: fetch it with `GET /{media-id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A download URL, where the gateway gives one instead of (or besides) an id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// MIME type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// SHA-256 of the file, as the gateway gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The customer's caption.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// The document's file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Whether an audio message is a voice note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice: Option<bool>,
    /// Whether a sticker is animated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub animated: Option<bool>,
}

/// A shared location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Latitude in degrees.
    pub latitude: f64,
    /// Longitude in degrees.
    pub longitude: f64,
    /// The place's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The place's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// A link about the place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// What a reply answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// A reply button of an interactive message (Meta `interactive.button_reply`).
    Button,
    /// A row of an interactive list (Meta `interactive.list_reply`).
    List,
    /// A template's quick-reply button (Meta `button`).
    QuickReply,
    /// A WhatsApp Flow's answer (Meta `interactive.nfm_reply`): `payload` is the flow's
    /// `response_json`. An addition to SPEC §10's three kinds, so flow answers are not lost.
    Flow,
}

/// An answer to buttons, a list, a template's quick reply or a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// What was answered.
    pub kind: ReplyKind,
    /// The id the button or row was sent with (buttons and lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The text the customer saw and pressed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The list row's description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The developer payload (quick replies) or the flow's response JSON text (flows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

/// A reaction to a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reaction {
    /// The id of the message reacted to (the gateway's message id).
    pub message_id: String,
    /// The emoji; absent when the customer removed a reaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
}

/// Why an item is published as `unsupported`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Unsupported {
    /// What the gateway said (Meta's error title) or why mensajero could not normalise it.
    pub reason: String,
}

/// The type's object, under the type's name (`"text": {"body": …}`), in Meta's inbound shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    /// `text`.
    Text(Text),
    /// `image`.
    Image(Media),
    /// `video`.
    Video(Media),
    /// `audio`.
    Audio(Media),
    /// `document`.
    Document(Media),
    /// `sticker`.
    Sticker(Media),
    /// `location`.
    Location(Location),
    /// `contacts`: Meta's contact objects, as posted.
    Contacts(Vec<Value>),
    /// `reply`.
    Reply(Reply),
    /// `reaction`.
    Reaction(Reaction),
    /// `order`: Meta's order object (`catalog_id`, `product_items`, `text`), as posted.
    Order(Value),
    /// `system`: Meta's system object (`body`, `type`, `wa_id`, …), as posted.
    System(Value),
    /// `unsupported`.
    Unsupported(Unsupported),
}

impl Content {
    /// The message type this content is.
    pub fn kind(&self) -> InboundType {
        match self {
            Self::Text(_) => InboundType::Text,
            Self::Image(_) => InboundType::Image,
            Self::Video(_) => InboundType::Video,
            Self::Audio(_) => InboundType::Audio,
            Self::Document(_) => InboundType::Document,
            Self::Sticker(_) => InboundType::Sticker,
            Self::Location(_) => InboundType::Location,
            Self::Contacts(_) => InboundType::Contacts,
            Self::Reply(_) => InboundType::Reply,
            Self::Reaction(_) => InboundType::Reaction,
            Self::Order(_) => InboundType::Order,
            Self::System(_) => InboundType::System,
            Self::Unsupported(_) => InboundType::Unsupported,
        }
    }

    /// Unsupported content with `reason`.
    pub fn unsupported(reason: impl Into<String>) -> Self {
        Self::Unsupported(Unsupported {
            reason: reason.into(),
        })
    }
}

/// The message of ours an inbound message answers, quotes or reacts to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// The gateway's id of the message answered (the `provider_message_id` of its outcomes).
    pub message_id: String,
    /// The job that sent it, when mensajero did (absent for a message it did not send, or
    /// one whose correlation record has expired).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// That job's idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// That job's metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// One inbound message as published on `mensajero.inbound` (`docs/inbound.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundEvent {
    /// Stable across the gateway's retries of the webhook: derived from the provider and its
    /// message id (a UUIDv5).
    pub event_id: String,
    /// The channel the message came in on (the one whose sender number it was written to).
    pub channel: String,
    /// The channel's provider.
    pub provider: String,
    /// The customer, in E.164 with `+`; absent when the gateway identifies them only by a
    /// business-scoped user id (`user_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The customer's business-scoped user id (Meta's BSUID), when the gateway gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The customer's WhatsApp profile name, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_name: Option<String>,
    /// The gateway's id of this message.
    pub provider_message_id: String,
    /// When the customer sent it, as the gateway says (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// When mensajero's listener took the webhook (RFC 3339).
    pub received_at: String,
    /// The message type; the object of the same name holds its content.
    #[serde(rename = "type")]
    pub kind: InboundType,
    /// The type's object, under the type's name.
    #[serde(flatten)]
    pub content: Content,
    /// The message of ours it answers, quotes or reacts to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
    /// The gateway's own item, untouched.
    pub raw: Value,
}

impl InboundEvent {
    /// The routing key on `mensajero.inbound`: `<type>.<channel>`.
    pub fn routing_key(&self) -> String {
        format!("{}.{}", self.kind.as_str(), self.channel)
    }
}

/// The stable `event_id` of the inbound message `provider_message_id` of `provider`.
pub fn event_id(provider: &str, provider_message_id: &str) -> String {
    let name = format!("inbound\0{provider}\0{provider_message_id}");
    uuid::Uuid::new_v5(&EVENT_NAMESPACE, name.as_bytes()).to_string()
}

/// Namespace of inbound event ids (a fixed random UUID, not the outcomes' one).
const EVENT_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x2f7e_95c1_0a4d_4c63_b1e8_5d90_3c7a_61b4);

/// Format a time the way inbound events do (as outcomes: milliseconds, `Z`).
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A customer's number in E.164 with `+`, from a gateway's digits (with or without `+`);
/// `None` when it is not a phone number (a placeholder, a user id).
pub fn e164(number: &str) -> Option<String> {
    let digits = number.strip_prefix('+').unwrap_or(number);
    let plausible = (6..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    plausible.then(|| format!("+{digits}"))
}

/// JSON Schema of the inbound event, as pretty JSON text with a trailing newline.
pub fn json_schema_text() -> String {
    let schema = schemars::schema_for!(InboundEvent);
    format!("{:#}\n", schema.as_value())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(content: Content) -> InboundEvent {
        InboundEvent {
            event_id: event_id("meta", "wamid.in"),
            channel: "meta-mx".into(),
            provider: "meta".into(),
            from: Some("+5491155550000".into()),
            user_id: None,
            profile_name: Some("Ana".into()),
            provider_message_id: "wamid.in".into(),
            timestamp: Some("2026-12-03T10:00:00.000Z".into()),
            received_at: "2026-12-03T10:00:01.000Z".into(),
            kind: content.kind(),
            content,
            context: None,
            raw: json!({"id": "wamid.in"}),
        }
    }

    #[test]
    fn the_content_sits_under_the_type_name_and_round_trips() {
        let reply = event(Content::Reply(Reply {
            kind: ReplyKind::Button,
            id: Some("yes".into()),
            title: Some("Sí".into()),
            description: None,
            payload: None,
        }));
        let wire = serde_json::to_value(&reply).unwrap();
        assert_eq!(wire["type"], "reply");
        assert_eq!(
            wire["reply"],
            json!({"kind": "button", "id": "yes", "title": "Sí"})
        );
        assert_eq!(reply.routing_key(), "reply.meta-mx");
        let back: InboundEvent = serde_json::from_value(wire).unwrap();
        assert_eq!(back, reply);

        let unsupported = event(Content::unsupported("Message type unknown"));
        let wire = serde_json::to_value(&unsupported).unwrap();
        assert_eq!(wire["unsupported"]["reason"], "Message type unknown");
        assert_eq!(
            serde_json::from_value::<InboundEvent>(wire).unwrap(),
            unsupported
        );
    }

    #[test]
    fn every_type_has_its_wire_name() {
        for kind in InboundType::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }

    #[test]
    fn event_ids_depend_on_provider_and_id_only() {
        assert_eq!(event_id("meta", "a"), event_id("meta", "a"));
        assert_ne!(event_id("meta", "a"), event_id("meta", "b"));
        assert_ne!(event_id("meta", "a"), event_id("waspy", "a"));
    }

    #[test]
    fn numbers_become_e164_and_placeholders_do_not() {
        assert_eq!(e164("5491155550000").as_deref(), Some("+5491155550000"));
        assert_eq!(e164("+16505551234").as_deref(), Some("+16505551234"));
        assert_eq!(e164("PHONE_NUMBER"), None);
        assert_eq!(e164("5678"), None);
        assert_eq!(e164("US.1234"), None);
    }
}
