//! The canonical message (SPEC §2): Meta Cloud API's message object as Rust types. Their wire
//! form is in `wire`, their limits in `limits`, their JSON Schema in `schema`.

use schemars::JsonSchema;
use serde::de;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::limits::validate_message;
use super::wire::message_from_value;

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
///
/// [`parse`]: super::parse
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
