//! JSON Schema of the job wire format (`docs/job.schema.json`): derived for most types, written
//! by hand for Meta's tagged shapes.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::envelope::Job;
use super::message::{
    ButtonAction, ButtonIndex, Contact, Context, Currency, DateTimeParameter, Header, Interactive,
    InteractiveText, ListAction, Location, Media, Message, Parameter, Reaction, Template, Text,
};
use super::{MAX_COUPON_CODE_CHARS, MAX_HEADER_TEXT_CHARS};

/// JSON Schema of the job wire format, as pretty JSON text with a trailing newline, deterministic.
pub fn json_schema_text() -> String {
    let schema = schemars::schema_for!(Job);
    // `{:#}` is serde_json's infallible pretty printer.
    format!("{:#}\n", schema.as_value())
}

fn schema_from(value: Value) -> Schema {
    match value {
        Value::Object(map) => Schema::from(map),
        Value::Bool(b) => Schema::from(b),
        // Only ever called with object literals below.
        _ => Schema::default(),
    }
}

/// The Media schema restricted to the fields a given place allows, with `link` xor `id`.
fn media_schema(generator: &mut SchemaGenerator, caption: bool, filename: bool) -> Value {
    let mut schema = Media::json_schema(generator).to_value();
    if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        if !caption {
            properties.remove("caption");
        }
        if !filename {
            properties.remove("filename");
        }
    }
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "oneOf".to_owned(),
            json!([{ "required": ["link"] }, { "required": ["id"] }]),
        );
    }
    schema
}

/// One branch of a `{"type": "<tag>", "<tag>": payload, …}` union.
fn tagged_branch(tag: &str, payload: Value, extra: &[(&str, Value)]) -> Value {
    let mut properties = Map::new();
    properties.insert("type".to_owned(), json!({ "const": tag }));
    properties.insert(tag.to_owned(), payload);
    for (name, schema) in extra {
        properties.insert((*name).to_owned(), schema.clone());
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": ["type", tag],
        "additionalProperties": false,
    })
}

impl JsonSchema for Message {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Message")
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let context = generator.subschema_for::<Context>().to_value();
        let extra = [("context", context)];
        let contacts = json!({
            "type": "array",
            "minItems": 1,
            "items": generator.subschema_for::<Contact>(),
        });
        let branches = vec![
            tagged_branch("text", generator.subschema_for::<Text>().to_value(), &extra),
            tagged_branch("image", media_schema(generator, true, false), &extra),
            tagged_branch("video", media_schema(generator, true, false), &extra),
            tagged_branch("audio", media_schema(generator, false, false), &extra),
            tagged_branch("document", media_schema(generator, true, true), &extra),
            tagged_branch("sticker", media_schema(generator, false, false), &extra),
            tagged_branch(
                "template",
                generator.subschema_for::<Template>().to_value(),
                &extra,
            ),
            tagged_branch(
                "interactive",
                generator.subschema_for::<Interactive>().to_value(),
                &extra,
            ),
            tagged_branch(
                "location",
                generator.subschema_for::<Location>().to_value(),
                &extra,
            ),
            tagged_branch("contacts", contacts, &extra),
            tagged_branch(
                "reaction",
                generator.subschema_for::<Reaction>().to_value(),
                &extra,
            ),
        ];
        schema_from(json!({
            "description": "Meta Cloud API message object (SPEC §2): `type` names the one payload object present.",
            "oneOf": branches,
        }))
    }
}

impl JsonSchema for Parameter {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Parameter")
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let extra = [(
            "parameter_name",
            json!({ "type": "string", "minLength": 1 }),
        )];
        let non_empty = json!({ "type": "string", "minLength": 1 });
        let branches = vec![
            tagged_branch("text", non_empty.clone(), &extra),
            tagged_branch(
                "currency",
                generator.subschema_for::<Currency>().to_value(),
                &extra,
            ),
            tagged_branch(
                "date_time",
                generator.subschema_for::<DateTimeParameter>().to_value(),
                &extra,
            ),
            tagged_branch("image", media_schema(generator, false, false), &extra),
            tagged_branch("video", media_schema(generator, false, false), &extra),
            tagged_branch("document", media_schema(generator, false, true), &extra),
            tagged_branch("payload", non_empty, &extra),
            tagged_branch(
                "coupon_code",
                json!({ "type": "string", "minLength": 1, "maxLength": MAX_COUPON_CODE_CHARS }),
                &extra,
            ),
        ];
        schema_from(json!({
            "description": "A template parameter: `type` names the one value present.",
            "oneOf": branches,
        }))
    }
}

impl JsonSchema for Header {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Header")
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let branches = vec![
            tagged_branch(
                "text",
                json!({ "type": "string", "minLength": 1, "maxLength": MAX_HEADER_TEXT_CHARS }),
                &[],
            ),
            tagged_branch("image", media_schema(generator, false, false), &[]),
            tagged_branch("video", media_schema(generator, false, false), &[]),
            tagged_branch("document", media_schema(generator, false, true), &[]),
        ];
        schema_from(json!({
            "description": "An interactive message header: text or media.",
            "oneOf": branches,
        }))
    }
}

impl JsonSchema for Interactive {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Interactive")
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let header = generator.subschema_for::<Header>().to_value();
        let text = generator.subschema_for::<InteractiveText>().to_value();
        let branch = |kind: &str, action: Value| {
            json!({
                "type": "object",
                "properties": {
                    "type": { "const": kind },
                    "header": header,
                    "body": text,
                    "footer": text,
                    "action": action,
                },
                "required": ["type", "body", "action"],
                "additionalProperties": false,
            })
        };
        let buttons = branch(
            "button",
            generator.subschema_for::<ButtonAction>().to_value(),
        );
        let list = branch("list", generator.subschema_for::<ListAction>().to_value());
        schema_from(json!({
            "description": "Meta's interactive object: reply buttons (`button`) or a list (`list`).",
            "oneOf": [buttons, list],
        }))
    }
}

impl JsonSchema for ButtonIndex {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("ButtonIndex")
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schema_from(json!({
            "description": "Position of the button, 0–9, as an integer or a one-digit string.",
            "oneOf": [
                { "type": "integer", "minimum": 0, "maximum": 9 },
                { "type": "string", "pattern": "^[0-9]$" },
            ],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::wire::MESSAGE_KINDS;

    #[test]
    fn json_schema_is_deterministic_and_closed() {
        let text = json_schema_text();
        assert_eq!(text, json_schema_text());
        assert!(text.ends_with("}\n"));
        let schema: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(schema["additionalProperties"], json!(false));
        assert!(text.contains("\"additionalProperties\": false"));
        assert_eq!(schema["title"], json!("Job"));
        let required = schema["required"].as_array().unwrap();
        for field in ["id", "channel", "to", "message"] {
            assert!(required.contains(&json!(field)), "{field} not required");
        }
        assert!(!required.contains(&json!("priority")));
        let message = &schema["$defs"]["Message"];
        let branches = message["oneOf"].as_array().unwrap();
        assert_eq!(branches.len(), MESSAGE_KINDS.len());
        for branch in branches {
            assert_eq!(branch["additionalProperties"], json!(false));
        }
        // Audio has neither caption nor filename on the wire, so the schema must not offer them.
        let audio = &branches[3]["properties"]["audio"]["properties"];
        assert!(audio.get("caption").is_none() && audio.get("link").is_some());
    }
}
