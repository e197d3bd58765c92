//! The message's wire form: `Serialize` for Meta's tagged shapes (`{"type": "x", "x": {…}}`) going
//! out, and coming in, those shapes split by hand and the rest read through serde, so that every
//! error names its JSON path.

use std::fmt;

use serde::de::{self, DeserializeOwned, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::error::{JobError, invalid, missing, unknown};
use super::message::{
    Action, ButtonIndex, ButtonSubType, Component, ComponentType, Content, Header, Interactive,
    InteractiveText, Language, Media, Message, Parameter, ParameterValue, Template,
};
use super::strict::{excerpt, json_kind};
use super::{MAX_ECHO_CHARS, ROOT};

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
pub(super) fn deserialize_at<T: DeserializeOwned>(value: Value, path: &str) -> Result<T, JobError> {
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

pub(super) fn field_path(parent: &str, key: &str) -> String {
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

pub(super) fn index_path(parent: &str, index: usize) -> String {
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
pub(super) enum MessageKind {
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

pub(super) const MESSAGE_KINDS: [(&str, MessageKind); 11] = [
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

pub(super) fn message_from_value(value: Value, path: &str) -> Result<Message, JobError> {
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
