//! Tests of the whole contract through [`parse`]: valid jobs of every message type, and the path,
//! code and rule of each way a job can be invalid.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::*;

/// A valid envelope around `message`.
fn job_with(message: Value) -> Value {
    json!({
        "id": "ord-1847-confirm",
        "channel": "waspy-ar",
        "to": "+5491126032641",
        "message": message,
    })
}

fn text_message() -> Value {
    json!({ "type": "text", "text": { "body": "Hola" } })
}

/// A valid job with `patch` merged over its top-level fields (`null` removes one).
fn envelope(patch: Value) -> Vec<u8> {
    let mut job = job_with(text_message());
    if let (Some(job), Some(patch)) = (job.as_object_mut(), patch.as_object()) {
        for (key, value) in patch {
            if value.is_null() {
                job.remove(key);
            } else {
                job.insert(key.clone(), value.clone());
            }
        }
    }
    serde_json::to_vec(&job).unwrap()
}

fn message(message: Value) -> Vec<u8> {
    serde_json::to_vec(&job_with(message)).unwrap()
}

fn interactive_buttons(count: usize) -> Value {
    let buttons: Vec<Value> = (0..count)
        .map(|i| json!({ "type": "reply", "reply": { "id": format!("b{i}"), "title": format!("Option {i}") } }))
        .collect();
    json!({
        "type": "interactive",
        "interactive": { "type": "button", "body": { "text": "Pick one" }, "action": { "buttons": buttons } }
    })
}

fn list(sections: Value) -> Value {
    json!({
        "type": "interactive",
        "interactive": {
            "type": "list",
            "body": { "text": "Choose" },
            "action": { "button": "See options", "sections": sections }
        }
    })
}

fn rows(prefix: &str, count: usize) -> Value {
    Value::Array(
        (0..count)
            .map(|i| json!({ "id": format!("{prefix}{i}"), "title": format!("Row {i}") }))
            .collect(),
    )
}

fn template(components: Value) -> Value {
    json!({
        "type": "template",
        "template": { "name": "confirmacion_pedido", "language": { "code": "es_AR" }, "components": components }
    })
}

fn reject(body: &[u8]) -> Rejection {
    match parse(body) {
        Ok(job) => panic!("expected a rejection, got {job:?}"),
        Err(rejection) => rejection,
    }
}

#[test]
fn spec_example_job_parses() {
    let body = br#"{
          "id": "ord-1847-confirm",
          "idempotency_key": "pedido-1847-confirmacion",
          "channel": "waspy-ar",
          "to": "+5491126032641",
          "message": { "type": "text", "text": { "body": "Hola! Tu pedido fue despachado." } },
          "send_at": "2026-11-22T15:00:00Z",
          "expires_at": "2026-11-23T15:00:00Z",
          "metadata": { "order": 1847 },
          "provider_options": { }
        }"#;
    let job = parse(body).unwrap();
    assert_eq!(job.id, "ord-1847-confirm");
    assert_eq!(job.idempotency_key(), "pedido-1847-confirmacion");
    assert_eq!(job.channel, "waspy-ar");
    assert_eq!(job.to, "+5491126032641");
    assert_eq!(job.to_digits(), "5491126032641");
    assert_eq!(job.message.type_name(), "text");
    assert_eq!(
        job.message.content,
        Content::Text(Text {
            body: "Hola! Tu pedido fue despachado.".into(),
            preview_url: None
        })
    );
    assert_eq!(
        job.send_at.unwrap().to_rfc3339(),
        "2026-11-22T15:00:00+00:00"
    );
    assert_eq!(
        job.expires_at.unwrap().to_rfc3339(),
        "2026-11-23T15:00:00+00:00"
    );
    assert_eq!(job.priority, Priority::Transactional);
    assert_eq!(
        job.metadata,
        Some(json!({ "order": 1847 }).as_object().unwrap().clone())
    );
    assert_eq!(job.provider_options, Some(Map::new()));
    assert_eq!(job.ttl_seconds, None);
}

#[test]
fn idempotency_key_defaults_to_id_and_phone_is_normalised() {
    let job = parse(&envelope(
        json!({ "to": "54 9 (11) 2603-2641", "priority": "bulk", "ttl_seconds": 300 }),
    ))
    .unwrap();
    assert_eq!(job.idempotency_key(), "ord-1847-confirm");
    assert_eq!(job.to, "+5491126032641");
    assert_eq!(job.priority, Priority::Bulk);
    assert_eq!(job.ttl_seconds, Some(300));
}

#[test]
fn offsets_in_timestamps_become_utc() {
    let job = parse(&envelope(json!({ "send_at": "2026-11-22T12:00:00-03:00" }))).unwrap();
    assert_eq!(
        job.send_at.unwrap().to_rfc3339(),
        "2026-11-22T15:00:00+00:00"
    );
}

#[test]
fn null_optional_fields_mean_absent() {
    let body = br#"{"id":"a","channel":"c","to":"+5491126032641","message":{"type":"text","text":{"body":"x","preview_url":null},"context":null},
            "idempotency_key":null,"send_at":null,"expires_at":null,"ttl_seconds":null,"priority":null,"metadata":null,"provider_options":null}"#;
    let job = parse(body).unwrap();
    assert_eq!(job.idempotency_key, None);
    assert_eq!(job.priority, Priority::Transactional);
    assert_eq!(
        serde_json::to_value(&job.message).unwrap(),
        json!({ "type": "text", "text": { "body": "x" } })
    );
}

#[test]
fn deadline_is_the_earlier_bound_and_never_overflows() {
    let received = DateTime::parse_from_rfc3339("2026-11-22T15:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let job = parse(&envelope(json!({ "ttl_seconds": 60 }))).unwrap();
    assert_eq!(
        job.deadline(received).unwrap().to_rfc3339(),
        "2026-11-22T15:01:00+00:00"
    );
    let job = parse(&envelope(
        json!({ "ttl_seconds": 3600, "expires_at": "2026-11-22T15:30:00Z" }),
    ))
    .unwrap();
    assert_eq!(
        job.deadline(received).unwrap().to_rfc3339(),
        "2026-11-22T15:30:00+00:00"
    );
    let job = parse(&envelope(json!({ "ttl_seconds": u64::MAX }))).unwrap();
    assert_eq!(job.deadline(received), None);
    let job = parse(&envelope(json!({}))).unwrap();
    assert_eq!(job.deadline(received), None);
}

#[test]
fn serde_deserialize_applies_the_same_rules() {
    let job: Job = serde_json::from_slice(&envelope(json!({ "to": "54 9 11 2603 2641" }))).unwrap();
    assert_eq!(job.to, "+5491126032641");
    let err = serde_json::from_slice::<Job>(&message(interactive_buttons(4))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "message.interactive.action.buttons[3]: at most 3 reply buttons"
    );
    let message: Message = serde_json::from_value(text_message()).unwrap();
    assert_eq!(serde_json::to_value(&message).unwrap(), text_message());
    let err = serde_json::from_value::<Message>(json!({ "type": "text", "text": { "body": "" } }))
        .unwrap_err();
    assert_eq!(err.to_string(), "text.body: must be 1–4096 characters");
    let err = serde_json::from_value::<Message>(json!({ "text": {} })).unwrap_err();
    assert!(err.to_string().starts_with("type: missing field"), "{err}");
}

#[test]
fn a_byte_order_mark_is_ignored() {
    let mut body = "\u{feff}".as_bytes().to_vec();
    body.extend(envelope(json!({})));
    assert!(parse(&body).is_ok());
}

#[test]
fn text_limits_count_characters_not_bytes() {
    let at_limit = "ñ".repeat(4096);
    assert!(
        parse(&message(
            json!({ "type": "text", "text": { "body": at_limit } })
        ))
        .is_ok()
    );
    let over = "ñ".repeat(4097);
    let rejection = reject(&message(
        json!({ "type": "text", "text": { "body": over } }),
    ));
    assert_eq!(rejection.error.path, "message.text.body");
    assert_eq!(rejection.error.rule, "must be 1–4096 characters");
    assert_eq!(
        rejection.error.to_string(),
        "message.text.body: must be 1–4096 characters"
    );
}

/// Found by the `job_parse` fuzz target: a long number in `metadata` parsed to an f64
/// one ulp off, so a dead-letter replay (serialise, parse again) changed the job. serde_json
/// parses floats correctly rounded only with its `float_roundtrip` feature.
#[test]
fn a_long_number_in_metadata_survives_serialising() {
    let body = br#"{"id":"j","channel":"demo","to":"+5491126032641","message":{"type":"text","text":{"body":"Hola"}},"metadata":{"order":18444444444444444444444444444444444444444444444444444444444447}}"#;
    let job = parse(body).expect("valid job");
    let again = parse(&serde_json::to_vec(&job).unwrap()).expect("still valid");
    assert_eq!(again, job);
}

#[test]
fn every_message_type_round_trips_to_its_canonical_form() {
    let cases: Vec<(&str, Value)> = vec![
        (
            "text",
            json!({ "type": "text", "text": { "body": "Hola!", "preview_url": false } }),
        ),
        (
            "text",
            json!({ "type": "text", "text": { "body": "Sí, claro https://example.com", "preview_url": true }, "context": { "message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA" } }),
        ),
        (
            "image",
            json!({ "type": "image", "image": { "link": "https://cdn.example.com/a.jpg", "caption": "Tu factura" } }),
        ),
        (
            "image",
            json!({ "type": "image", "image": { "id": "1479537139650973" } }),
        ),
        (
            "video",
            json!({ "type": "video", "video": { "link": "https://cdn.example.com/v.mp4", "caption": "" } }),
        ),
        (
            "audio",
            json!({ "type": "audio", "audio": { "link": "https://cdn.example.com/a.ogg" } }),
        ),
        (
            "document",
            json!({ "type": "document", "document": { "link": "https://cdn.example.com/f.pdf", "caption": "Factura", "filename": "factura-1847.pdf" } }),
        ),
        (
            "sticker",
            json!({ "type": "sticker", "sticker": { "id": "798882015472548" } }),
        ),
        (
            "template",
            json!({ "type": "template", "template": { "name": "hello_world", "language": { "code": "en_US" } } }),
        ),
        (
            "template",
            json!({
                "type": "template",
                "template": {
                    "name": "confirmacion_pedido",
                    "language": { "code": "es_AR", "policy": "deterministic" },
                    "components": [
                        { "type": "header", "parameters": [ { "type": "image", "image": { "link": "https://cdn.example.com/h.png" } } ] },
                        { "type": "body", "parameters": [
                            { "type": "text", "text": "María", "parameter_name": "cliente" },
                            { "type": "currency", "currency": { "fallback_value": "$100.99", "code": "ARS", "amount_1000": 100990 } },
                            { "type": "date_time", "date_time": { "fallback_value": "22 de noviembre" } }
                        ] },
                        { "type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [ { "type": "payload", "payload": "CANCELAR-1847" } ] },
                        { "type": "button", "sub_type": "url", "index": 1, "parameters": [ { "type": "text", "text": "1847" } ] },
                        { "type": "button", "sub_type": "copy_code", "index": "2", "parameters": [ { "type": "coupon_code", "coupon_code": "25OFF" } ] }
                    ]
                }
            }),
        ),
        (
            "template",
            json!({
                "type": "template",
                "template": { "name": "factura", "language": { "code": "es" }, "components": [
                    { "type": "header", "parameters": [ { "type": "document", "document": { "id": "123", "filename": "f.pdf" } } ] },
                    { "type": "footer" }
                ] }
            }),
        ),
        (
            "interactive",
            json!({
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "header": { "type": "text", "text": "Pedido 1847" },
                    "body": { "text": "¿Confirmás la entrega?" },
                    "footer": { "text": "Respondé con un botón" },
                    "action": { "buttons": [
                        { "type": "reply", "reply": { "id": "si", "title": "Sí" } },
                        { "type": "reply", "reply": { "id": "no", "title": "No" } },
                        { "type": "reply", "reply": { "id": "luego", "title": "Más tarde" } }
                    ] }
                }
            }),
        ),
        (
            "interactive",
            json!({
                "type": "interactive",
                "interactive": {
                    "type": "list",
                    "header": { "type": "image", "image": { "link": "https://cdn.example.com/menu.png" } },
                    "body": { "text": "Elegí un horario" },
                    "action": {
                        "button": "Horarios",
                        "sections": [
                            { "title": "Mañana", "rows": [ { "id": "m9", "title": "9:00", "description": "Primer turno" }, { "id": "m10", "title": "10:00" } ] },
                            { "title": "Tarde", "rows": [ { "id": "t15", "title": "15:00" } ] }
                        ]
                    }
                }
            }),
        ),
        (
            "interactive",
            list(json!([ { "rows": [ { "id": "only", "title": "Única" } ] } ])),
        ),
        (
            "location",
            json!({ "type": "location", "location": { "latitude": -34.6037, "longitude": -58.3816, "name": "Obelisco", "address": "Av. 9 de Julio s/n, CABA" } }),
        ),
        (
            "location",
            json!({ "type": "location", "location": { "latitude": 90.0, "longitude": -180.0 } }),
        ),
        (
            "contacts",
            json!({
                "type": "contacts",
                "contacts": [{
                    "name": { "formatted_name": "María José Pérez", "first_name": "María", "middle_name": "José", "last_name": "Pérez", "prefix": "Dra.", "suffix": "Jr." },
                    "phones": [ { "phone": "+34 600 000 000", "type": "CELL", "wa_id": "34600000000" } ],
                    "emails": [ { "email": "maria@example.com", "type": "WORK" } ],
                    "addresses": [ { "street": "Calle 1", "city": "Madrid", "state": "M", "zip": "28001", "country": "España", "country_code": "ES", "type": "HOME" } ],
                    "org": { "company": "Acme", "department": "Ventas", "title": "Gerente" },
                    "urls": [ { "url": "https://example.com", "type": "WORK" } ],
                    "birthday": "1980-02-29"
                }, {
                    "name": { "formatted_name": "Juan" }
                }]
            }),
        ),
        (
            "reaction",
            json!({ "type": "reaction", "reaction": { "message_id": "wamid.ABC", "emoji": "👍" } }),
        ),
        (
            "reaction",
            json!({ "type": "reaction", "reaction": { "message_id": "wamid.ABC", "emoji": "" } }),
        ),
    ];
    for (type_name, canonical) in cases {
        let job = match parse(&message(canonical.clone())) {
            Ok(job) => job,
            Err(rejection) => panic!("{canonical}: {rejection}"),
        };
        assert_eq!(job.message.type_name(), type_name);
        assert_eq!(serde_json::to_value(&job.message).unwrap(), canonical);
        // The job as a whole serializes back into a body that parses to the same job.
        let again = parse(&serde_json::to_vec(&job).unwrap()).unwrap();
        assert_eq!(again, job);
    }
}

#[test]
fn typed_access_to_the_parsed_message() {
    let job = parse(&message(template(json!([
        { "type": "button", "sub_type": "url", "index": "3", "parameters": [ { "type": "text", "text": "x" } ] }
    ]))))
    .unwrap();
    let Content::Template(template) = &job.message.content else {
        panic!("not a template: {:?}", job.message);
    };
    let component = &template.components.as_ref().unwrap()[0];
    assert_eq!(component.kind, ComponentType::Button);
    assert_eq!(component.sub_type, Some(ButtonSubType::Url));
    assert_eq!(component.index.map(ButtonIndex::value), Some(3));
    let parameter = &component.parameters.as_ref().unwrap()[0];
    assert_eq!(parameter.value, ParameterValue::Text("x".into()));

    let job = parse(&message(interactive_buttons(2))).unwrap();
    let Content::Interactive(interactive) = &job.message.content else {
        panic!("not interactive");
    };
    assert_eq!(interactive.type_name(), "button");
    let Action::Button(action) = &interactive.action else {
        panic!("not buttons");
    };
    assert_eq!(action.buttons[1].reply.id, "b1");
}

struct Invalid {
    name: &'static str,
    body: Vec<u8>,
    path: &'static str,
    code: ErrorCode,
    /// The exact rule, where the wording is part of what is tested.
    rule: Option<&'static str>,
}

fn case(
    name: &'static str,
    body: Vec<u8>,
    path: &'static str,
    code: ErrorCode,
    rule: Option<&'static str>,
) -> Invalid {
    Invalid {
        name,
        body,
        path,
        code,
        rule,
    }
}

#[test]
fn invalid_jobs_name_the_path_and_the_rule() {
    use ErrorCode::*;
    let long = |n: usize| "x".repeat(n);
    let cases = vec![
        // The body as a whole.
        case("oversize", vec![b' '; MAX_BODY_BYTES + 1], "$", Oversize, Some("body is 65537 bytes; at most 65536 are allowed")),
        case("invalid utf-8", b"{\"id\": \"\xff\xfe\"}".to_vec(), "$", Malformed, Some("not valid UTF-8 (at byte 8)")),
        case("empty body", Vec::new(), "$", Malformed, None),
        case("not json", b"id=1".to_vec(), "$", Malformed, None),
        case("not an object", b"[1, 2]".to_vec(), "$", Malformed, Some("must be a JSON object, not an array")),
        case("a string", b"\"job\"".to_vec(), "$", Malformed, Some("must be a JSON object, not a string")),
        case("deep nesting", vec![b'['; 10_000], "$", Malformed, None),
        case("deep nesting in message", {
            let mut body = br#"{"id":"a","channel":"c","to":"+5491126032641","message":"#.to_vec();
            body.extend(std::iter::repeat_n(b'{', 5_000).flat_map(|_| *b"{\"a\":"));
            body
        }, "$", Malformed, None),
        case("number out of range", br#"{"id":"a","channel":"c","to":"+5491126032641","message":{"type":"location","location":{"latitude":1e400,"longitude":0}}}"#.to_vec(), "$", Malformed, None),
        case("duplicate key", br#"{"id":"a","id":"b","channel":"c","to":"+5491126032641","message":{"type":"text","text":{"body":"x"}}}"#.to_vec(), "$", Malformed, None),
        case("trailing garbage", [envelope(json!({})), b"}".to_vec()].concat(), "$", Malformed, None),
        // Envelope shape.
        case("unknown top-level field", envelope(json!({ "chanel": "waspy-ar" })), "chanel", UnknownField,
            Some("unknown field (expected one of `id`, `idempotency_key`, `channel`, `to`, `message`, `fallback`, `send_at`, `expires_at`, `ttl_seconds`, `priority`, `metadata`, `provider_options`)")),
        case("unknown key with a backtick", envelope(json!({ "a`, b": 1 })), "[\"a`, b\"]", UnknownField, None),
        case("odd top-level key", envelope(json!({ "a.b": 1 })), "[\"a.b\"]", UnknownField, None),
        case("missing id", envelope(json!({ "id": null })), "id", MissingField, Some("missing field")),
        case("missing channel", envelope(json!({ "channel": null })), "channel", MissingField, None),
        case("missing to", envelope(json!({ "to": null })), "to", MissingField, None),
        case("missing message", envelope(json!({ "message": null })), "message", MissingField, None),
        case("id not a string", envelope(json!({ "id": 1847 })), "id", InvalidField, Some("invalid type: integer `1847`, expected a string")),
        case("ttl negative", envelope(json!({ "ttl_seconds": -1 })), "ttl_seconds", InvalidField, None),
        case("ttl fractional", envelope(json!({ "ttl_seconds": 1.5 })), "ttl_seconds", InvalidField, None),
        case("priority unknown", envelope(json!({ "priority": "urgent" })), "priority", InvalidField, Some("unknown variant `urgent`, expected `transactional` or `bulk`")),
        case("metadata not an object", envelope(json!({ "metadata": [1] })), "metadata", InvalidField, None),
        case("provider_options not an object", envelope(json!({ "provider_options": "x" })), "provider_options", InvalidField, None),
        // Envelope values.
        case("id with a control character", envelope(json!({ "id": "ord\u{7}1" })), "id", InvalidField, Some("must be 1–128 printable ASCII characters ('\\u{7}' at byte 3 is not one)")),
        case("id empty", envelope(json!({ "id": "" })), "id", InvalidField, Some("must be 1–128 printable ASCII characters")),
        case("id too long", envelope(json!({ "id": long(129) })), "id", InvalidField, None),
        case("idempotency key not ASCII", envelope(json!({ "idempotency_key": "pedido-ñ" })), "idempotency_key", InvalidField, None),
        case("idempotency key too long", envelope(json!({ "idempotency_key": long(257) })), "idempotency_key", InvalidField, Some("must be 1–256 printable ASCII characters")),
        case("channel with a dot", envelope(json!({ "channel": "waspy.ar" })), "channel", InvalidField, Some("must be 1–64 characters of [A-Za-z0-9_-]")),
        case("channel too long", envelope(json!({ "channel": long(65) })), "channel", InvalidField, None),
        case("bad phone", envelope(json!({ "to": "+54 11 abc" })), "to", InvalidPhone, Some("invalid character 'a'; expected an E.164 number like +5491126032641")),
        case("phone starting with 0", envelope(json!({ "to": "+0491126032641" })), "to", InvalidPhone, None),
        case("phone too short", envelope(json!({ "to": "+5411234" })), "to", InvalidPhone, None),
        case("phone not a string", envelope(json!({ "to": 5491126032641_u64 })), "to", InvalidField, None),
        case("send_at not RFC 3339", envelope(json!({ "send_at": "tomorrow" })), "send_at", InvalidField, None),
        case("send_at without zone", envelope(json!({ "send_at": "2026-11-22T15:00:00" })), "send_at", InvalidField, None),
        case("expires before send", envelope(json!({ "send_at": "2026-11-22T15:00:00Z", "expires_at": "2026-11-22T14:00:00Z" })), "expires_at", InvalidField, Some("must be later than send_at")),
        case("ttl zero", envelope(json!({ "ttl_seconds": 0 })), "ttl_seconds", InvalidField, Some("must be at least 1")),
        case("metadata over 8 KiB", envelope(json!({ "metadata": { "blob": long(MAX_METADATA_BYTES) } })), "metadata", InvalidField, Some("must be at most 8192 bytes as JSON (is 8203)")),
        // Message shape.
        case("message not an object", message(json!("hola")), "message", InvalidField, Some("must be an object, not a string")),
        case("message type missing", message(json!({ "text": { "body": "x" } })), "message.type", MissingField, None),
        case("message type unknown", message(json!({ "type": "txt", "txt": { "body": "x" } })), "message.type", InvalidField, Some("unknown message type \"txt\"; expected one of: text, image, video, audio, document, sticker, template, interactive, location, contacts, reaction")),
        case("message type not a string", message(json!({ "type": 1 })), "message.type", InvalidField, Some("must be a string, not a number")),
        case("unknown message field", message(json!({ "type": "text", "text": { "body": "x" }, "foo": 1 })), "message.foo", UnknownField, Some("unknown field (expected one of `type`, `text`, `context`)")),
        case("payload of another type", message(json!({ "type": "text", "image": { "id": "1" } })), "message.image", UnknownField, Some("unknown field (the message type is \"text\")")),
        case("payload missing", message(json!({ "type": "text" })), "message.text", MissingField, None),
        case("unknown nested field", message(json!({ "type": "text", "text": { "bdy": "x" } })), "message.text.bdy", UnknownField, Some("unknown field (expected `body` or `preview_url`)")),
        case("text.body of the wrong type", message(json!({ "type": "text", "text": { "body": 42 } })), "message.text.body", InvalidField, Some("invalid type: integer `42`, expected a string")),
        case("text.body missing", message(json!({ "type": "text", "text": { "preview_url": true } })), "message.text.body", MissingField, None),
        case("unknown context field", message(json!({ "type": "text", "text": { "body": "x" }, "context": { "id": "wamid" } })), "message.context.id", UnknownField, None),
        case("caption on audio", message(json!({ "type": "audio", "audio": { "id": "1", "caption": "x" } })), "message.audio.caption", UnknownField, None),
        case("filename on image", message(json!({ "type": "image", "image": { "id": "1", "filename": "a.png" } })), "message.image.filename", UnknownField, None),
        // Message limits.
        case("empty text body", message(json!({ "type": "text", "text": { "body": "" } })), "message.text.body", InvalidField, Some("must be 1–4096 characters")),
        case("empty context id", message(json!({ "type": "text", "text": { "body": "x" }, "context": { "message_id": "" } })), "message.context.message_id", InvalidField, Some("must not be empty")),
        case("media with link and id", message(json!({ "type": "image", "image": { "id": "1", "link": "https://a.example/x.png" } })), "message.image", InvalidField, None),
        case("media with neither", message(json!({ "type": "video", "video": { "caption": "x" } })), "message.video", MissingField, Some("needs `link` or `id`")),
        case("media over http", message(json!({ "type": "image", "image": { "link": "http://a.example/x.png" } })), "message.image.link", InvalidField, Some("must be an https:// URL")),
        case("media link without host", message(json!({ "type": "document", "document": { "link": "https:///x.pdf" } })), "message.document.link", InvalidField, Some("must be an https:// URL with a host")),
        case("caption too long", message(json!({ "type": "image", "image": { "id": "1", "caption": long(1025) } })), "message.image.caption", InvalidField, Some("must be at most 1024 characters")),
        case("template name with capitals", message(json!({ "type": "template", "template": { "name": "Confirmacion", "language": { "code": "es" } } })), "message.template.name", InvalidField, Some("must be 1–512 characters of [a-z0-9_]")),
        case("template language empty", message(json!({ "type": "template", "template": { "name": "a", "language": { "code": "" } } })), "message.template.language.code", InvalidField, None),
        case("template language missing", message(json!({ "type": "template", "template": { "name": "a" } })), "message.template.language", MissingField, None),
        case("template policy", message(json!({ "type": "template", "template": { "name": "a", "language": { "code": "es", "policy": "fallback" } } })), "message.template.language.policy", InvalidField, None),
        case("button without sub_type", message(template(json!([ { "type": "button", "index": 0 } ]))), "message.template.components[0].sub_type", MissingField, None),
        case("button without index", message(template(json!([ { "type": "body" }, { "type": "button", "sub_type": "url" } ]))), "message.template.components[1].index", MissingField, None),
        case("button index 10", message(template(json!([ { "type": "button", "sub_type": "url", "index": 10 } ]))), "message.template.components[0].index", InvalidField, Some("must be 0–9, as an integer or a one-digit string")),
        case("button index not a digit", message(template(json!([ { "type": "button", "sub_type": "url", "index": "10" } ]))), "message.template.components[0].index", InvalidField, None),
        case("sub_type on a body", message(template(json!([ { "type": "body", "sub_type": "url" } ]))), "message.template.components[0].sub_type", UnknownField, None),
        case("component type unknown", message(template(json!([ { "type": "carousel" } ]))), "message.template.components[0].type", InvalidField, None),
        case("parameter type unknown", message(template(json!([ { "type": "body", "parameters": [ { "type": "txt", "txt": "x" } ] } ]))), "message.template.components[0].parameters[0].type", InvalidField, None),
        case("parameter text empty", message(template(json!([ { "type": "body", "parameters": [ { "type": "text", "text": "x" }, { "type": "text", "text": " " } ] } ]))), "message.template.components[0].parameters[1].text", InvalidField, None),
        case("currency code", message(template(json!([ { "type": "body", "parameters": [ { "type": "currency", "currency": { "fallback_value": "$1", "code": "usd", "amount_1000": 1000 } } ] } ]))), "message.template.components[0].parameters[0].currency.code", InvalidField, None),
        case("4 reply buttons", message(interactive_buttons(4)), "message.interactive.action.buttons[3]", InvalidField, Some("at most 3 reply buttons")),
        case("no reply buttons", message(interactive_buttons(0)), "message.interactive.action.buttons", InvalidField, Some("at least 1 reply button")),
        case("duplicate button ids", message(json!({ "type": "interactive", "interactive": { "type": "button", "body": { "text": "?" }, "action": { "buttons": [
            { "type": "reply", "reply": { "id": "a", "title": "A" } }, { "type": "reply", "reply": { "id": "a", "title": "B" } } ] } } })),
            "message.interactive.action.buttons[1].reply.id", InvalidField, Some("duplicate button id (also buttons[0])")),
        case("button title too long", message(json!({ "type": "interactive", "interactive": { "type": "button", "body": { "text": "?" }, "action": { "buttons": [
            { "type": "reply", "reply": { "id": "a", "title": long(21) } } ] } } })),
            "message.interactive.action.buttons[0].reply.title", InvalidField, Some("must be 1–20 characters")),
        case("interactive type unknown", message(json!({ "type": "interactive", "interactive": { "type": "product", "body": { "text": "?" }, "action": {} } })), "message.interactive.type", InvalidField, None),
        case("interactive body missing", message(json!({ "type": "interactive", "interactive": { "type": "button", "action": { "buttons": [] } } })), "message.interactive.body", MissingField, None),
        case("interactive body too long", message(json!({ "type": "interactive", "interactive": { "type": "list", "body": { "text": long(1025) }, "action": { "button": "b", "sections": [ { "rows": rows("r", 1) } ] } } })), "message.interactive.body.text", InvalidField, Some("must be 1–1024 characters")),
        case("footer too long", message(json!({ "type": "interactive", "interactive": { "type": "list", "body": { "text": "b" }, "footer": { "text": long(61) }, "action": { "button": "b", "sections": [ { "rows": rows("r", 1) } ] } } })), "message.interactive.footer.text", InvalidField, Some("must be 1–60 characters")),
        case("header text too long", message(json!({ "type": "interactive", "interactive": { "type": "list", "header": { "type": "text", "text": long(61) }, "body": { "text": "b" }, "action": { "button": "b", "sections": [ { "rows": rows("r", 1) } ] } } })), "message.interactive.header.text", InvalidField, None),
        case("header caption", message(json!({ "type": "interactive", "interactive": { "type": "button", "header": { "type": "image", "image": { "id": "1", "caption": "c" } }, "body": { "text": "b" }, "action": { "buttons": [] } } })), "message.interactive.header.image.caption", UnknownField, None),
        case("list action on a button message", message(json!({ "type": "interactive", "interactive": { "type": "button", "body": { "text": "b" }, "action": { "button": "b", "sections": [] } } })), "message.interactive.action.button", UnknownField, None),
        case("buttons on a list message", message(json!({ "type": "interactive", "interactive": { "type": "list", "body": { "text": "b" }, "action": { "button": "b", "buttons": [] } } })), "message.interactive.action.buttons", UnknownField, None),
        case("11 sections", message(list(Value::Array((0..11).map(|i| json!({ "title": format!("S{i}"), "rows": rows(&format!("s{i}-"), 1) })).collect()))), "message.interactive.action.sections[10]", InvalidField, Some("at most 10 sections")),
        case("11 rows in all", message(list(json!([ { "title": "A", "rows": rows("a", 6) }, { "title": "B", "rows": rows("b", 5) } ]))), "message.interactive.action.sections[1].rows[4]", InvalidField, Some("at most 10 rows in all sections")),
        case("section without rows", message(list(json!([ { "title": "A", "rows": [] } ]))), "message.interactive.action.sections[0].rows", InvalidField, None),
        case("untitled section among several", message(list(json!([ { "title": "A", "rows": rows("a", 1) }, { "rows": rows("b", 1) } ]))), "message.interactive.action.sections[1].title", MissingField, Some("required when there is more than one section")),
        case("row title too long", message(list(json!([ { "rows": [ { "id": "r", "title": long(25) } ] } ]))), "message.interactive.action.sections[0].rows[0].title", InvalidField, Some("must be 1–24 characters")),
        case("row description too long", message(list(json!([ { "rows": [ { "id": "r", "title": "t", "description": long(73) } ] } ]))), "message.interactive.action.sections[0].rows[0].description", InvalidField, Some("must be at most 72 characters")),
        case("duplicate row ids across sections", message(list(json!([ { "title": "A", "rows": rows("r", 2) }, { "title": "B", "rows": rows("r", 1) } ]))), "message.interactive.action.sections[1].rows[0].id", InvalidField, Some("duplicate row id (also sections[0].rows[0])")),
        case("list button too long", message(json!({ "type": "interactive", "interactive": { "type": "list", "body": { "text": "b" }, "action": { "button": long(21), "sections": [ { "rows": rows("r", 1) } ] } } })), "message.interactive.action.button", InvalidField, None),
        case("latitude out of range", message(json!({ "type": "location", "location": { "latitude": 90.5, "longitude": 0 } })), "message.location.latitude", InvalidField, Some("must be between -90 and 90")),
        case("longitude out of range", message(json!({ "type": "location", "location": { "latitude": 0, "longitude": -180.01 } })), "message.location.longitude", InvalidField, Some("must be between -180 and 180")),
        case("latitude as a string", message(json!({ "type": "location", "location": { "latitude": "1", "longitude": 0 } })), "message.location.latitude", InvalidField, None),
        case("no contacts", message(json!({ "type": "contacts", "contacts": [] })), "message.contacts", InvalidField, Some("at least 1 contact")),
        case("contact without a name", message(json!({ "type": "contacts", "contacts": [ { "name": { "formatted_name": "A" } }, { "phones": [] } ] })), "message.contacts[1].name", MissingField, None),
        case("contact name empty", message(json!({ "type": "contacts", "contacts": [ { "name": { "formatted_name": "" } } ] })), "message.contacts[0].name.formatted_name", InvalidField, None),
        case("contact phone typo", message(json!({ "type": "contacts", "contacts": [ { "name": { "formatted_name": "A" }, "phones": [ { "number": "+1" } ] } ] })), "message.contacts[0].phones[0].number", UnknownField, None),
        case("contact birthday", message(json!({ "type": "contacts", "contacts": [ { "name": { "formatted_name": "A" }, "birthday": "1980-02-30" } ] })), "message.contacts[0].birthday", InvalidField, None),
        case("reaction without message id", message(json!({ "type": "reaction", "reaction": { "message_id": "", "emoji": "👍" } })), "message.reaction.message_id", InvalidField, None),
        case("reaction without emoji", message(json!({ "type": "reaction", "reaction": { "message_id": "wamid" } })), "message.reaction.emoji", MissingField, None),
    ];
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for c in &cases {
        match parse(&c.body) {
            Ok(_) => failures.push(format!("{}: accepted", c.name)),
            Err(r) => {
                let e = &r.error;
                if e.path != c.path || e.code != c.code || c.rule.is_some_and(|rule| e.rule != rule)
                {
                    failures.push(format!(
                        "{}: got {:?} {:?} {:?}, want {:?} {:?} {:?}",
                        c.name, e.code, e.path, e.rule, c.code, c.path, c.rule
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shape_errors_come_before_value_errors() {
    // A bad phone and a typo in the message: the typo is reported, since it breaks every job.
    let mut job = job_with(json!({ "type": "text", "text": { "bdy": "x" } }));
    job["to"] = json!("123");
    let rejection = reject(&serde_json::to_vec(&job).unwrap());
    assert_eq!(rejection.error.code, ErrorCode::UnknownField);
    assert_eq!(rejection.error.path, "message.text.bdy");
}

#[test]
fn rejections_carry_the_job_id_and_channel_when_valid() {
    let rejection = reject(&envelope(json!({ "to": "+0123" })));
    assert_eq!(rejection.job_id.as_deref(), Some("ord-1847-confirm"));
    assert_eq!(rejection.channel.as_deref(), Some("waspy-ar"));
    assert_eq!(rejection.to_string(), rejection.error.to_string());

    let rejection = reject(&envelope(json!({ "chanel": "x" })));
    assert_eq!(rejection.job_id.as_deref(), Some("ord-1847-confirm"));

    let rejection = reject(&envelope(json!({ "id": "bad\nid", "channel": "a.b" })));
    assert_eq!(rejection.job_id, None);
    assert_eq!(rejection.channel, None);

    let rejection = reject(&envelope(json!({ "id": 7 })));
    assert_eq!(rejection.job_id, None);
    assert_eq!(rejection.channel.as_deref(), Some("waspy-ar"));

    let mut oversize = envelope(json!({}));
    oversize.resize(MAX_BODY_BYTES + 1, b' ');
    let rejection = reject(&oversize);
    assert_eq!(rejection.error.code, ErrorCode::Oversize);
    assert_eq!(rejection.job_id, None);
}

#[test]
fn a_body_of_exactly_the_limit_is_read() {
    let mut body = envelope(json!({}));
    body.resize(MAX_BODY_BYTES, b' ');
    assert!(parse(&body).is_ok());
}

#[test]
fn echoed_input_is_kept_short() {
    let rejection = reject(&message(json!({ "type": "x".repeat(10_000) })));
    assert_eq!(rejection.error.path, "message.type");
    assert!(rejection.error.rule.chars().count() <= MAX_RULE_CHARS + 1);
    let rejection = reject(&envelope(
        json!({ "id": 1, "ttl_seconds": "y".repeat(10_000) }),
    ));
    assert!(rejection.error.rule.chars().count() <= MAX_RULE_CHARS + 1);
    let key = format!("k{}", "é".repeat(1000));
    let rejection = reject(&envelope(json!({ key: 1 })));
    assert_eq!(rejection.error.code, ErrorCode::UnknownField);
    assert!(
        rejection.error.path.chars().count() < 80,
        "{}",
        rejection.error.path
    );
}

#[test]
fn codes_and_priorities_have_their_wire_names() {
    let codes = [
        (ErrorCode::Oversize, "oversize"),
        (ErrorCode::Malformed, "malformed"),
        (ErrorCode::UnknownField, "unknown_field"),
        (ErrorCode::MissingField, "missing_field"),
        (ErrorCode::InvalidField, "invalid_field"),
        (ErrorCode::InvalidPhone, "invalid_phone"),
    ];
    for (code, name) in codes {
        assert_eq!(code.as_str(), name);
        assert_eq!(serde_json::to_value(code).unwrap(), json!(name));
    }
    assert_eq!(Priority::Transactional.as_str(), "transactional");
    assert_eq!(Priority::Bulk.as_str(), "bulk");
    assert_eq!(serde_json::to_value(Priority::Bulk).unwrap(), json!("bulk"));
}

#[test]
fn no_input_makes_it_panic() {
    // Every prefix and many one-byte corruptions of a rich job: all must return, Ok or Err.
    let body = message(json!({
        "type": "interactive",
        "interactive": {
            "type": "list",
            "header": { "type": "document", "document": { "link": "https://a.example/f.pdf", "filename": "f.pdf" } },
            "body": { "text": "Elegí" },
            "action": { "button": "Ver", "sections": [ { "title": "A", "rows": [ { "id": "1", "title": "Uno", "description": "d" } ] } ] }
        },
        "context": { "message_id": "wamid.X" }
    }));
    for end in 0..=body.len() {
        let _ = parse(&body[..end]);
    }
    for i in 0..body.len() {
        for replacement in [b'"', b'{', b'[', b'}', b'0', b'\\', 0xff, b'-', b'e'] {
            let mut corrupt = body.clone();
            corrupt[i] = replacement;
            let _ = parse(&corrupt);
        }
    }
    for weird in [
        &b"{}"[..],
        b"null",
        b"1e999999",
        b"-0",
        b"{\"id\":\"a\",\"channel\":\"c\",\"to\":\"+5491126032641\",\"message\":{\"type\":\"location\",\"location\":{\"latitude\":-1.7976931348623157e308,\"longitude\":1e-400}}}",
        b"{\"ttl_seconds\":18446744073709551616}",
        b"{\"message\":{\"type\":\"template\",\"template\":{\"name\":\"a\",\"language\":{\"code\":\"e\"},\"components\":[{\"type\":\"button\",\"sub_type\":\"url\",\"index\":-99999999999999999999}]}}}",
        "\"\u{0}\u{1f}\"".as_bytes(),
    ] {
        let _ = parse(weird);
    }
}
