//! The bad-input catalogue (issue "Reliability proof"): malformed jobs and malformed or forged
//! receipts thrown at one real worker (real RabbitMQ and Redis, the mock gateway behind every
//! channel), each row with the answer a user must see:
//!
//! - a job: its `failed` outcome with the error code (when its id is readable) and its dead
//!   letter, body untouched, with the reason in `x-mensajero-reason`;
//! - a receipt: the HTTP answer; a forged one publishes nothing, an authenticated but
//!   unreadable one is dead-lettered as `invalid_receipt`, a readable one that reports nothing
//!   new publishes nothing.
//!
//! Afterwards the worker is still healthy and still sends, and a flood of a few hundred
//! oversized or malformed jobs is worked off (memory stays bounded: bodies are refused by
//! length before parsing, and every one is settled).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use lapin::types::FieldTable;
use mensajero::config::{MockOptions, ProviderKind, Secret};
use mensajero::gateways::webhook::{self as receipts, Receipt};
use mensajero::outcome::{Outcome, Status};
use mensajero::retry::ErrorClass;
use reqwest::StatusCode;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::common::{self, HOOK_SECRET, TestApp, header, unique_prefix};

const TO: &str = "+5491126032641";
/// The own idempotency key of the job that names an unknown channel.
const UNKNOWN_CHANNEL_KEY: &str = "order-1847-unknown-channel";

fn provider_of(channel: &str) -> ProviderKind {
    match channel {
        "waspy-ar" => ProviderKind::Waspy,
        "meta-mx" => ProviderKind::Meta,
        "wazzup-ru" => ProviderKind::Wazzup,
        "seven-de" => ProviderKind::Seven,
        "whaapy-mx" => ProviderKind::Whaapy,
        other => panic!("no channel {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------------------------

/// One malformed job and what it must produce.
struct JobRow {
    name: &'static str,
    body: Vec<u8>,
    /// The id the `failed` outcome names; `None` when the body has no readable id (then there
    /// is a dead letter only).
    id: Option<&'static str>,
    /// The outcome's channel (its routing key's second part); `unknown` when unreadable.
    channel: &'static str,
    /// `x-mensajero-reason` and the outcome's error code.
    reason: &'static str,
    /// Whether the job was accepted (`queued`) before the gateway adapter refused it.
    queued_first: bool,
}

fn text() -> Value {
    json!({"type": "text", "text": {"body": "Hola"}})
}

/// A valid job on `waspy-ar`, to be broken by the row.
fn valid(id: &str) -> Value {
    json!({"id": id, "channel": "waspy-ar", "to": TO, "message": text()})
}

fn with(id: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut job = valid(id);
    edit(&mut job);
    serde_json::to_vec(&job).expect("JSON")
}

fn with_message(id: &str, message: Value) -> Vec<u8> {
    with(id, |j| j["message"] = message)
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

fn job_rows() -> Vec<JobRow> {
    let row = |name, body: Vec<u8>, id, channel, reason| JobRow {
        name,
        body,
        id,
        channel,
        reason,
        queued_first: false,
    };
    // A readable id on waspy-ar: the common case.
    let on_waspy =
        |id: &'static str, body: Vec<u8>, reason| row(id, body, Some(id), "waspy-ar", reason);
    let bare = |name, body: Vec<u8>, reason| row(name, body, None, "unknown", reason);
    let raw = |s: &str| s.as_bytes().to_vec();
    let huge = "x".repeat(70 * 1024);

    let mut rows = vec![
        // --- The body itself ---------------------------------------------------------------
        bare("empty body", Vec::new(), "malformed"),
        bare("whitespace only", raw("  \n\t "), "malformed"),
        bare("not JSON", raw("{not json"), "malformed"),
        bare(
            "truncated JSON",
            raw(r#"{"id":"trunc","channel":"waspy-ar","to""#),
            "malformed",
        ),
        bare(
            "trailing garbage",
            raw(r#"{"id":"trail"} {"id":"again"}"#),
            "malformed",
        ),
        bare("JSON array", raw("[1,2,3]"), "malformed"),
        bare("JSON string", raw(r#""a job""#), "malformed"),
        bare("JSON null", raw("null"), "malformed"),
        bare("JSON number", raw("42"), "malformed"),
        bare(
            "invalid UTF-8",
            [b"{\"id\":\"utf8-\xff\xfe\"}".as_slice()].concat(),
            "malformed",
        ),
        bare(
            "UTF-16 body",
            "{\"id\":\"u16\"}"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect(),
            "malformed",
        ),
        bare(
            "raw NUL byte in a string",
            raw("{\"id\":\"nul\0byte\",\"channel\":\"waspy-ar\"}"),
            "malformed",
        ),
        bare(
            "duplicate key",
            raw(r#"{"id":"dup","id":"dup2","channel":"waspy-ar"}"#),
            "malformed",
        ),
        bare(
            "deep nesting",
            format!(r#"{{"id":"deep","metadata":{{"a":{}}}}}"#, nested(10_000)).into_bytes(),
            "malformed",
        ),
        bare(
            "number beyond f64",
            raw(
                r#"{"id":"big-float","channel":"waspy-ar","to":"+5491126032641","message":{"type":"location","location":{"latitude":1e400,"longitude":2}}}"#,
            ),
            "malformed",
        ),
        bare(
            "over 64 KiB",
            with("oversize", |j| j["metadata"] = json!({"pad": huge})),
            "oversize",
        ),
        // --- The envelope: ids ------------------------------------------------------------------
        bare(
            "missing id",
            with("-", |j| {
                j.as_object_mut().expect("object").remove("id");
                j["metadata"] = json!({"row": "missing id"});
            }),
            "missing_field",
        ),
        bare(
            "id a number",
            with("-", |j| j["id"] = json!(1847)),
            "invalid_field",
        ),
        bare(
            "id null",
            with("-", |j| {
                j["id"] = Value::Null;
                j["metadata"] = json!({"row": "id null"});
            }),
            "invalid_field",
        ),
        bare("id empty", with("", |_| {}), "invalid_field"),
        bare(
            "id of 129 chars",
            with(&"i".repeat(129), |_| {}),
            "invalid_field",
        ),
        bare(
            "id with an escaped NUL",
            with("nul\u{0}id", |_| {}),
            "invalid_field",
        ),
        bare("id not ASCII", with("pedido-ñ", |_| {}), "invalid_field"),
        on_waspy(
            "idem-key-too-long",
            with("idem-key-too-long", |j| {
                j["idempotency_key"] = json!("k".repeat(257))
            }),
            "invalid_field",
        ),
        on_waspy(
            "idem-key-a-number",
            with("idem-key-a-number", |j| j["idempotency_key"] = json!(7)),
            "invalid_field",
        ),
        // --- Channel ----------------------------------------------------------------------------
        row(
            "missing-channel",
            with("missing-channel", |j| {
                j.as_object_mut().expect("object").remove("channel");
            }),
            Some("missing-channel"),
            "unknown",
            "missing_field",
        ),
        row(
            "channel-unknown",
            with("channel-unknown", |j| {
                j["channel"] = json!("nowhere");
                j["idempotency_key"] = json!(UNKNOWN_CHANNEL_KEY);
            }),
            Some("channel-unknown"),
            "nowhere",
            "unknown_channel",
        ),
        row(
            "channel-bad-chars",
            with("channel-bad-chars", |j| j["channel"] = json!("waspy ar.#")),
            Some("channel-bad-chars"),
            "unknown",
            "invalid_field",
        ),
        row(
            "channel-a-list",
            with("channel-a-list", |j| j["channel"] = json!(["waspy-ar"])),
            Some("channel-a-list"),
            "unknown",
            "invalid_field",
        ),
        // --- Recipient --------------------------------------------------------------------------
        on_waspy(
            "missing-to",
            with("missing-to", |j| {
                j.as_object_mut().expect("object").remove("to");
            }),
            "missing_field",
        ),
        on_waspy(
            "to-a-number",
            with("to-a-number", |j| j["to"] = json!(5491126032641_u64)),
            "invalid_field",
        ),
        on_waspy(
            "to-leading-zero",
            with("to-leading-zero", |j| j["to"] = json!("+0491126032641")),
            "invalid_phone",
        ),
        on_waspy(
            "to-00-prefix",
            with("to-00-prefix", |j| j["to"] = json!("005491126032641")),
            "invalid_phone",
        ),
        on_waspy(
            "to-too-short",
            with("to-too-short", |j| j["to"] = json!("+1234567")),
            "invalid_phone",
        ),
        on_waspy(
            "to-too-long",
            with("to-too-long", |j| j["to"] = json!("+1234567890123456")),
            "invalid_phone",
        ),
        on_waspy(
            "to-letters",
            with("to-letters", |j| j["to"] = json!("+54911CALLME")),
            "invalid_phone",
        ),
        on_waspy(
            "to-empty",
            with("to-empty", |j| j["to"] = json!("")),
            "invalid_phone",
        ),
        on_waspy(
            "to-two-plus",
            with("to-two-plus", |j| j["to"] = json!("++5491126032641")),
            "invalid_phone",
        ),
        // --- Unknown fields at several levels ------------------------------------------------
        on_waspy(
            "unknown-top-level",
            with("unknown-top-level", |j| j["colour"] = json!("red")),
            "unknown_field",
        ),
        on_waspy(
            "unknown-in-message",
            with("unknown-in-message", |j| {
                j["message"]["urgent"] = json!(true)
            }),
            "unknown_field",
        ),
        on_waspy(
            "unknown-in-text",
            with("unknown-in-text", |j| {
                j["message"]["text"]["bodyy"] = json!("typo")
            }),
            "unknown_field",
        ),
        on_waspy(
            "unknown-in-language",
            with_message(
                "unknown-in-language",
                json!({"type": "template", "template": {"name": "hola", "language": {"code": "es", "region": "AR"}}}),
            ),
            "unknown_field",
        ),
        on_waspy(
            "unknown-in-parameter",
            with_message(
                "unknown-in-parameter",
                json!({"type": "template", "template": {"name": "hola", "language": {"code": "es"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "María", "bold": true}]}]}}),
            ),
            "unknown_field",
        ),
        // --- Message: types and limits ------------------------------------------------------
        on_waspy(
            "missing-message",
            with("missing-message", |j| {
                j.as_object_mut().expect("object").remove("message");
            }),
            "missing_field",
        ),
        on_waspy(
            "message-a-string",
            with_message("message-a-string", json!("Hola")),
            "invalid_field",
        ),
        on_waspy(
            "message-type-unknown",
            with_message(
                "message-type-unknown",
                json!({"type": "carousel", "carousel": {}}),
            ),
            "invalid_field",
        ),
        on_waspy(
            "message-type-missing",
            with_message("message-type-missing", json!({"text": {"body": "Hola"}})),
            "missing_field",
        ),
        on_waspy(
            "text-body-empty",
            with_message(
                "text-body-empty",
                json!({"type": "text", "text": {"body": ""}}),
            ),
            "invalid_field",
        ),
        on_waspy(
            "text-body-4097",
            with_message(
                "text-body-4097",
                json!({"type": "text", "text": {"body": "a".repeat(4097)}}),
            ),
            "invalid_field",
        ),
        on_waspy(
            "text-body-huge",
            with_message(
                "text-body-huge",
                json!({"type": "text", "text": {"body": "ñ".repeat(30_000)}}),
            ),
            "invalid_field",
        ),
        on_waspy(
            "text-body-a-number",
            with_message(
                "text-body-a-number",
                json!({"type": "text", "text": {"body": 42}}),
            ),
            "invalid_field",
        ),
        on_waspy(
            "latitude-91",
            with_message(
                "latitude-91",
                json!({"type": "location", "location": {"latitude": 91.0, "longitude": 0.0}}),
            ),
            "invalid_field",
        ),
        on_waspy(
            "longitude-minus-181",
            with_message(
                "longitude-minus-181",
                json!({"type": "location", "location": {"latitude": 0.0, "longitude": -181.0}}),
            ),
            "invalid_field",
        ),
        on_waspy(
            "latitude-a-string",
            with_message(
                "latitude-a-string",
                json!({"type": "location", "location": {"latitude": "-34.6", "longitude": 0.0}}),
            ),
            "invalid_field",
        ),
        on_waspy(
            "image-http-link",
            with_message(
                "image-http-link",
                json!({"type": "image", "image": {"link": "http://ejemplo.com/a.jpg"}}),
            ),
            "invalid_field",
        ),
        on_waspy(
            "caption-1025",
            with_message(
                "caption-1025",
                json!({"type": "image", "image": {"link": "https://ejemplo.com/a.jpg", "caption": "c".repeat(1025)}}),
            ),
            "invalid_field",
        ),
        on_waspy(
            "template-name-capitals",
            with_message(
                "template-name-capitals",
                json!({"type": "template", "template": {"name": "Hola", "language": {"code": "es"}}}),
            ),
            "invalid_field",
        ),
        on_waspy(
            "button-index-10",
            with_message(
                "button-index-10",
                json!({"type": "template", "template": {"name": "hola", "language": {"code": "es"},
            "components": [{"type": "button", "sub_type": "quick_reply", "index": 10, "parameters": [{"type": "payload", "payload": "p"}]}]}}),
            ),
            "invalid_field",
        ),
        on_waspy(
            "button-index-huge",
            with_message(
                "button-index-huge",
                json!({"type": "template", "template": {"name": "hola", "language": {"code": "es"},
            "components": [{"type": "button", "sub_type": "url", "index": u64::MAX, "parameters": [{"type": "text", "text": "x"}]}]}}),
            ),
            "invalid_field",
        ),
        on_waspy(
            "four-reply-buttons",
            with_message(
                "four-reply-buttons",
                json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "?"},
            "action": {"buttons": (0..4).map(|i| json!({"type": "reply", "reply": {"id": format!("b{i}"), "title": "x"}})).collect::<Vec<_>>()}}}),
            ),
            "invalid_field",
        ),
        on_waspy(
            "list-eleven-rows",
            with_message(
                "list-eleven-rows",
                json!({"type": "interactive", "interactive": {"type": "list", "body": {"text": "?"},
            "action": {"button": "Ver", "sections": [{"title": "s", "rows": (0..11).map(|i| json!({"id": format!("r{i}"), "title": "t"})).collect::<Vec<_>>()}]}}}),
            ),
            "invalid_field",
        ),
        on_waspy(
            "contacts-empty",
            with_message(
                "contacts-empty",
                json!({"type": "contacts", "contacts": []}),
            ),
            "invalid_field",
        ),
        // --- Times, lanes, extras -----------------------------------------------------------
        on_waspy(
            "send-at-words",
            with("send-at-words", |j| {
                j["send_at"] = json!("tomorrow at noon")
            }),
            "invalid_field",
        ),
        on_waspy(
            "send-at-a-number",
            with("send-at-a-number", |j| j["send_at"] = json!(1_790_000_000)),
            "invalid_field",
        ),
        on_waspy(
            "expires-at-month-13",
            with("expires-at-month-13", |j| {
                j["expires_at"] = json!("2026-13-45T25:61:00Z")
            }),
            "invalid_field",
        ),
        on_waspy(
            "expires-before-send",
            with("expires-before-send", |j| {
                j["send_at"] = json!("2026-11-22T15:00:00Z");
                j["expires_at"] = json!("2026-11-22T14:00:00Z");
            }),
            "invalid_field",
        ),
        on_waspy(
            "ttl-zero",
            with("ttl-zero", |j| j["ttl_seconds"] = json!(0)),
            "invalid_field",
        ),
        on_waspy(
            "ttl-negative",
            with("ttl-negative", |j| j["ttl_seconds"] = json!(-5)),
            "invalid_field",
        ),
        on_waspy(
            "ttl-beyond-u64",
            with("ttl-beyond-u64", |j| j["ttl_seconds"] = json!(1e30)),
            "invalid_field",
        ),
        on_waspy(
            "priority-unknown",
            with("priority-unknown", |j| j["priority"] = json!("urgent")),
            "invalid_field",
        ),
        on_waspy(
            "metadata-an-array",
            with("metadata-an-array", |j| j["metadata"] = json!([1, 2])),
            "invalid_field",
        ),
        on_waspy(
            "metadata-over-8k",
            with("metadata-over-8k", |j| {
                j["metadata"] = json!({"pad": "m".repeat(9 * 1024)})
            }),
            "invalid_field",
        ),
        on_waspy(
            "provider-options-a-string",
            with("provider-options-a-string", |j| {
                j["provider_options"] = json!("label=x")
            }),
            "invalid_field",
        ),
    ];
    // Valid jobs whose channel's gateway cannot express the type: accepted, then refused by
    // the adapter (never downgraded).
    for (id, channel, message) in [
        (
            "unsupported-location-waspy",
            "waspy-ar",
            json!({"type": "location", "location": {"latitude": -34.6, "longitude": -58.38}}),
        ),
        (
            "unsupported-reaction-wazzup",
            "wazzup-ru",
            json!({"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "👍"}}),
        ),
        (
            "unsupported-sticker-waspy",
            "waspy-ar",
            json!({"type": "sticker", "sticker": {"link": "https://ejemplo.com/s.webp"}}),
        ),
    ] {
        rows.push(JobRow {
            name: id,
            body: with(id, |j| {
                j["channel"] = json!(channel);
                j["message"] = message;
            }),
            id: Some(id),
            channel,
            reason: "unsupported_message_type",
            queued_first: true,
        });
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// Receipts
// ---------------------------------------------------------------------------------------------

/// What a receipt row must cause besides its HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Then {
    /// Refused: nothing reaches the webhooks queue, nothing is published.
    Refused,
    /// Accepted (durable) but unreadable: a dead letter `invalid_receipt`, body untouched.
    DeadLetter,
    /// Accepted and read: it reports nothing new, so nothing is published.
    Nothing,
}

/// One webhook request and what it must produce.
struct ReceiptRow {
    name: &'static str,
    channel: &'static str,
    /// Path and query after `/webhooks/`; the channel name unless the row says otherwise.
    path: String,
    body: Vec<u8>,
    headers: Vec<(HeaderName, HeaderValue)>,
    answer: StatusCode,
    then: Then,
}

/// The provider message ids of one sent job per channel: forged receipts name them, so a
/// forgery that got through would show as an outcome.
type Victims = HashMap<&'static str, String>;

fn receipt(id: &str, status: Status) -> Receipt {
    Receipt {
        provider_message_id: id.to_owned(),
        status,
        job_id: None,
        error: (status == Status::Failed).then(|| receipts::ReceiptError {
            code: Some("131026".into()),
            message: "forged failure".into(),
        }),
        occurred_at: Some(Utc::now()),
        sender: None,
    }
}

fn hv(name: &'static str, value: &str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(name),
        HeaderValue::from_str(value).expect("header value"),
    )
}

/// seven.io's signature, computed here by hand so a row can sign a timestamp `sign` never
/// would.
fn seven_signature(secret: &str, timestamp: &str, nonce: &str, url: &str, body: &[u8]) -> String {
    use md5::Digest;
    let md5 = hex::encode(md5::Md5::digest(body));
    let text = format!("{timestamp}\n{nonce}\nPOST\n{url}\n{md5}");
    receipts::hmac_sha256_hex(secret.as_bytes(), text.as_bytes())
}

fn receipt_rows(app: &TestApp, victims: &Victims) -> Vec<ReceiptRow> {
    let url = |channel: &str| app.url(&format!("/webhooks/{channel}"));
    let forged = |channel: &str| {
        receipts::render(
            provider_of(channel),
            &receipt(&victims[channel], Status::Failed),
        )
    };
    let sign_at = |channel: &str, secret: &str, body: &[u8], at: chrono::DateTime<Utc>| {
        receipts::sign(
            provider_of(channel),
            &Secret::new(secret),
            "POST",
            &url(channel),
            body,
            at,
        )
    };
    let signed = |channel: &str, body: &[u8]| sign_at(channel, HOOK_SECRET, body, Utc::now());
    let row = |name, channel: &'static str, body: Vec<u8>, headers, answer, then| ReceiptRow {
        name,
        channel,
        path: channel.to_owned(),
        body,
        headers,
        answer,
        then,
    };
    let refused = |name, channel: &'static str, body: Vec<u8>, headers| {
        row(
            name,
            channel,
            body,
            headers,
            StatusCode::UNAUTHORIZED,
            Then::Refused,
        )
    };
    let authentic = |name, channel: &'static str, body: Vec<u8>, then| {
        let headers = signed(channel, &body);
        row(name, channel, body, headers, StatusCode::OK, then)
    };
    let minutes = |m| TimeDelta::try_minutes(m).expect("minutes");
    let other_body = br#"{"harmless":true}"#;

    let seven_ts_words = {
        let body = forged("seven-de");
        let signature = seven_signature(HOOK_SECRET, "yesterday", "n-1", &url("seven-de"), &body);
        let headers = vec![
            hv("x-signature", &signature),
            hv("x-timestamp", "yesterday"),
            hv("x-nonce", "n-1"),
        ];
        refused(
            "seven.io timestamp not a number (but signed)",
            "seven-de",
            body,
            headers,
        )
    };
    let seven_no_nonce = {
        let body = forged("seven-de");
        let headers = signed("seven-de", &body)
            .into_iter()
            .filter(|(name, _)| name.as_str() != "x-nonce")
            .collect();
        refused("seven.io without X-Nonce", "seven-de", body, headers)
    };
    let mut query_secret = refused(
        "waspy wrong secret in the query",
        "waspy-ar",
        forged("waspy-ar"),
        Vec::new(),
    );
    query_secret.path = "waspy-ar?secret=guess".into();

    let mut rows = vec![
        // --- Forged: 401 and nothing published ---------------------------------------------------
        refused("waspy without a secret", "waspy-ar", forged("waspy-ar"), Vec::new()),
        refused("waspy wrong secret", "waspy-ar", forged("waspy-ar"), sign_at("waspy-ar", "not-the-secret", b"", Utc::now())),
        refused("waspy empty secret header", "waspy-ar", forged("waspy-ar"), vec![hv("x-webhook-secret", "")]),
        query_secret,
        refused("meta without a signature", "meta-mx", forged("meta-mx"), Vec::new()),
        refused("meta signature of another body", "meta-mx", forged("meta-mx"), signed("meta-mx", other_body)),
        refused("meta signed with the wrong secret", "meta-mx", forged("meta-mx"), sign_at("meta-mx", "not-the-secret", &forged("meta-mx"), Utc::now())),
        refused("meta signature not hex", "meta-mx", forged("meta-mx"), vec![hv("x-hub-signature-256", "sha256=zzzz")]),
        refused("meta signature truncated", "meta-mx", forged("meta-mx"), {
            let full = signed("meta-mx", &forged("meta-mx"));
            full.into_iter().map(|(n, v)| (n, HeaderValue::from_bytes(&v.as_bytes()[..20]).expect("prefix"))).collect()
        }),
        refused("whaapy without a signature", "whaapy-mx", forged("whaapy-mx"), Vec::new()),
        refused("whaapy signature of another body", "whaapy-mx", forged("whaapy-mx"), signed("whaapy-mx", other_body)),
        refused("wazzup wrong bearer", "wazzup-ru", forged("wazzup-ru"), sign_at("wazzup-ru", "not-the-secret", b"", Utc::now())),
        refused("wazzup no Authorization", "wazzup-ru", forged("wazzup-ru"), Vec::new()),
        refused("seven.io replayed 10 minutes later", "seven-de", forged("seven-de"), sign_at("seven-de", HOOK_SECRET, &forged("seven-de"), Utc::now() - minutes(10))),
        refused("seven.io timestamp 10 minutes ahead", "seven-de", forged("seven-de"), sign_at("seven-de", HOOK_SECRET, &forged("seven-de"), Utc::now() + minutes(10))),
        refused("seven.io signed for another URL", "seven-de", forged("seven-de"), receipts::sign(ProviderKind::Seven, &Secret::new(HOOK_SECRET), "POST", &url("waspy-ar"), &forged("seven-de"), Utc::now())),
        refused("seven.io wrong secret", "seven-de", forged("seven-de"), sign_at("seven-de", "not-the-secret", &forged("seven-de"), Utc::now())),
        refused("seven.io signature of another body", "seven-de", forged("seven-de"), signed("seven-de", other_body)),
        seven_ts_words,
        seven_no_nonce,
        // --- Refused before authentication ------------------------------------------------------
        row("unknown channel", "waspy-ar", forged("waspy-ar"), signed("waspy-ar", &forged("waspy-ar")), StatusCode::NOT_FOUND, Then::Refused),
        {
            let huge = vec![b' '; 300 * 1024];
            let headers = signed("meta-mx", &huge);
            row("huge body, signed", "meta-mx", huge, headers, StatusCode::PAYLOAD_TOO_LARGE, Then::Refused)
        },
        row("huge body, unsigned", "seven-de", vec![b'{'; 2 * 1024 * 1024], Vec::new(), StatusCode::PAYLOAD_TOO_LARGE, Then::Refused),
        // --- Authentic but unreadable: 200, then a dead letter `invalid_receipt` -----------------
        authentic("waspy truncated JSON", "waspy-ar", br#"{"data": {"id": "trunc", "status": "deliv"#.to_vec(), Then::DeadLetter),
        authentic("waspy empty body", "waspy-ar", Vec::new(), Then::DeadLetter),
        authentic("waspy data a string", "waspy-ar", br#"{"data": "delivered"}"#.to_vec(), Then::DeadLetter),
        authentic("waspy status a number", "waspy-ar", br#"{"data": {"id": "m-1", "status": 3}}"#.to_vec(), Then::DeadLetter),
        authentic("meta entry a string", "meta-mx", br#"{"object":"whatsapp_business_account","entry":"statuses"}"#.to_vec(), Then::DeadLetter),
        authentic("meta invalid UTF-8", "meta-mx", b"{\"object\":\"whatsapp_business_account\",\"entry\":[\xff\xfe]}".to_vec(), Then::DeadLetter),
        authentic("whaapy deep nesting", "whaapy-mx", format!(r#"{{"event":"message.read","data":{}}}"#, nested(5000)).into_bytes(), Then::DeadLetter),
        authentic("whaapy JSON array", "whaapy-mx", b"[{\"event\":\"message.read\"}]".to_vec(), Then::DeadLetter),
        authentic("wazzup statuses an object", "wazzup-ru", br#"{"statuses": {"messageId": "m", "status": "read"}}"#.to_vec(), Then::DeadLetter),
        authentic("wazzup status without messageId", "wazzup-ru", br#"{"statuses": [{"status": "read"}]}"#.to_vec(), Then::DeadLetter),
        authentic("seven.io data a number", "seven-de", br#"{"webhook_event":"dlr","data":42}"#.to_vec(), Then::DeadLetter),
        authentic("seven.io not JSON", "seven-de", b"msg_id=1&status=DELIVERED".to_vec(), Then::DeadLetter),
        // --- Authentic, readable, nothing new: 200 and nothing published -------------------------
        authentic("waspy unknown status word", "waspy-ar", serde_json::to_vec(&json!({"data": {"id": victims["waspy-ar"], "status": "teleported"}})).expect("JSON"), Then::Nothing),
        authentic("wazzup empty statuses list", "wazzup-ru", br#"{"statuses": []}"#.to_vec(), Then::Nothing),
        authentic("wazzup unknown status word", "wazzup-ru", serde_json::to_vec(&json!({"statuses": [{"messageId": victims["wazzup-ru"], "status": "edited"}]})).expect("JSON"), Then::Nothing),
        authentic("meta inbound message only", "meta-mx", serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550000000", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": "5491126032641"}],
            "messages": [{"from": "5491126032641", "id": "wamid.IN", "timestamp": "1790000000", "type": "text", "text": {"body": "hola"}}]}}]}]})).expect("JSON"), Then::Nothing),
        authentic("meta empty entry list", "meta-mx", br#"{"object":"whatsapp_business_account","entry":[]}"#.to_vec(), Then::Nothing),
        authentic("seven.io inbound message", "seven-de", serde_json::to_vec(&json!({"webhook_event": "sms_mo", "data": {"id": "in-1", "direction": "inbound", "text": "hola"}})).expect("JSON"), Then::Nothing),
        authentic("whaapy inbound event", "whaapy-mx", serde_json::to_vec(&json!({"event": "message.received", "data": {"id": "in-2", "direction": "inbound"}})).expect("JSON"), Then::Nothing),
        row("wazzup probe, unsigned", "wazzup-ru", br#"{"test":true}"#.to_vec(), Vec::new(), StatusCode::OK, Then::Nothing),
    ];
    rows.iter_mut()
        .find(|r| r.name == "unknown channel")
        .expect("row")
        .path = "no-such-channel".into();
    rows
}

// ---------------------------------------------------------------------------------------------
// The campaign
// ---------------------------------------------------------------------------------------------

/// Send a valid job and return its provider message id (from its `sent` outcome).
async fn send_ok(app: &TestApp, id: &str, channel: &str) -> String {
    app.enqueue(&json!({"id": id, "channel": channel, "to": TO, "message": text()}))
        .await;
    let events = app.outcomes(2).await;
    let statuses: Vec<_> = events
        .iter()
        .map(|o| (o.job_id.as_str(), o.status))
        .collect();
    assert_eq!(
        statuses,
        [(id, Status::Queued), (id, Status::Sent)],
        "{events:#?}"
    );
    events[1]
        .provider_message_id
        .clone()
        .expect("provider message id")
}

/// Take `n` dead letters.
async fn dead_letters(app: &TestApp, n: usize) -> Vec<(Vec<u8>, FieldTable)> {
    let mut letters = Vec::with_capacity(n);
    for _ in 0..n {
        letters.push(app.next_dead_letter().await);
    }
    letters
}

async fn post(app: &TestApp, row: &ReceiptRow) -> StatusCode {
    let mut request = reqwest::Client::new()
        .post(app.url(&format!("/webhooks/{}", row.path)))
        .body(row.body.clone());
    for (name, value) in &row.headers {
        request = request.header(name, value);
    }
    request.send().await.expect("listener answers").status()
}

async fn jobs_phase(app: &TestApp) {
    let rows = job_rows();
    assert!(
        rows.len() >= 40,
        "the catalogue has {} job rows",
        rows.len()
    );
    let bodies: HashSet<&[u8]> = rows.iter().map(|r| r.body.as_slice()).collect();
    assert_eq!(bodies.len(), rows.len(), "every row's body is unique");

    for row in &rows {
        app.enqueue_raw(&row.body).await;
    }

    // Dead letters: one per row, its body untouched, with the row's reason.
    let mut letters = dead_letters(app, rows.len()).await;
    for row in &rows {
        let at = letters
            .iter()
            .position(|(body, _)| body == &row.body)
            .unwrap_or_else(|| panic!("{}: no dead letter", row.name));
        let (_, headers) = letters.swap_remove(at);
        assert_eq!(
            header(&headers, "x-mensajero-reason").as_deref(),
            Some(row.reason),
            "{}: reason ({:?})",
            row.name,
            header(&headers, "x-mensajero-error")
        );
        assert_eq!(
            header(&headers, "x-mensajero-error-class").as_deref(),
            Some("invalid"),
            "{}",
            row.name
        );
        assert_eq!(
            header(&headers, "x-mensajero-job-id").as_deref(),
            row.id,
            "{}: job id header",
            row.name
        );
    }

    // Outcomes: a `failed` (class invalid, the row's code) for every readable id, after its
    // `queued` where the job was accepted first; nothing for unreadable ids.
    let expected: usize = rows
        .iter()
        .filter(|r| r.id.is_some())
        .map(|r| if r.queued_first { 2 } else { 1 })
        .sum();
    let mut by_job: HashMap<String, Vec<Outcome>> = HashMap::new();
    for o in app.outcomes(expected).await {
        by_job.entry(o.job_id.clone()).or_default().push(o);
    }
    for row in rows.iter().filter(|r| r.id.is_some()) {
        let id = row.id.expect("readable");
        let events = by_job
            .remove(id)
            .unwrap_or_else(|| panic!("{}: no outcome", row.name));
        let statuses: Vec<Status> = events.iter().map(|o| o.status).collect();
        let want: &[Status] = if row.queued_first {
            &[Status::Queued, Status::Failed]
        } else {
            &[Status::Failed]
        };
        assert_eq!(statuses, want, "{}: {events:#?}", row.name);
        let failed = events.last().expect("failed");
        let error = failed.error.as_ref().expect("error on failed");
        assert_eq!(error.class, ErrorClass::Invalid, "{}", row.name);
        assert_eq!(error.code, row.reason, "{}: {}", row.name, error.message);
        assert_eq!(
            failed.routing_key(),
            format!("failed.{}", row.channel),
            "{}",
            row.name
        );
        // A job that parsed is known by its own key, even on a channel nobody configured.
        if id == "channel-unknown" {
            assert_eq!(failed.idempotency_key, UNKNOWN_CHANNEL_KEY);
            assert_eq!(
                failed.event_id,
                mensajero::outcome::event_id(
                    "nowhere",
                    UNKNOWN_CHANNEL_KEY,
                    id,
                    mensajero::outcome::EventKind::Status,
                    Status::Failed
                )
            );
        }
    }
    assert!(by_job.is_empty(), "outcomes for no row: {by_job:#?}");
}

async fn receipts_phase(app: &TestApp, victims: &Victims) {
    let rows = receipt_rows(app, victims);
    assert!(
        rows.len() >= 20,
        "the catalogue has {} receipt rows",
        rows.len()
    );
    for row in &rows {
        assert_eq!(post(app, row).await, row.answer, "{}", row.name);
    }

    let unreadable: Vec<&ReceiptRow> = rows.iter().filter(|r| r.then == Then::DeadLetter).collect();
    let mut letters = dead_letters(app, unreadable.len()).await;
    for row in &unreadable {
        let at = letters
            .iter()
            .position(|(body, _)| body == &row.body)
            .unwrap_or_else(|| panic!("{}: no dead letter", row.name));
        let (_, headers) = letters.swap_remove(at);
        assert_eq!(
            header(&headers, "x-mensajero-reason").as_deref(),
            Some("invalid_receipt"),
            "{}",
            row.name
        );
        assert_eq!(
            header(&headers, "x-mensajero-channel").as_deref(),
            Some(row.channel),
            "{}",
            row.name
        );
    }
    // Forged receipts named the sent jobs' ids with `failed`: had any got through, a `failed`
    // outcome would follow. Readable ones with nothing new publish nothing either.
    app.assert_quiet(Duration::from_millis(1500)).await;
    assert_eq!(
        app.settled_queue_len(&app.topology.dead_queue, 0).await,
        0,
        "no other dead letter"
    );
    assert_eq!(
        app.settled_queue_len(&app.topology.webhooks_queue, 0).await,
        0,
        "every accepted receipt was consumed"
    );
}

/// A few hundred oversized or malformed jobs are all worked off: dead-lettered (and `failed`
/// where the id is readable), none left in the queue.
async fn flood_phase(app: &TestApp) {
    const FLOOD: usize = 300;
    let oversized = vec![b'['; 100 * 1024];
    let mut readable = 0;
    for i in 0..FLOOD {
        match i % 3 {
            0 => app.enqueue_raw(&oversized).await,
            1 => {
                app.enqueue_raw(format!("{{\"id\":\"flood-{i}\",\"x\":").as_bytes())
                    .await
            }
            _ => {
                readable += 1;
                app.enqueue_raw(&with(&format!("flood-{i}"), |j| j["to"] = json!("+0")))
                    .await;
            }
        }
    }
    let failed = app.outcomes(readable).await;
    assert!(failed.iter().all(|o| o.status == Status::Failed));
    // Completion, not speed: wait (generously) until every one is dead-lettered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let dead = app.queue_len(&app.topology.dead_queue).await as usize;
        if dead == FLOOD {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {dead} of {FLOOD} flood jobs dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.settled_queue_len(&app.topology.send_queue, 0).await, 0);
}

/// Every bad job and every bad receipt gets its answer, row by row; then the worker is still
/// healthy and still sends.
#[tokio::test]
async fn the_bad_input_catalogue_gets_its_answers_and_the_worker_survives() {
    let (_core, gateway, _stop) = common::start_gateway(MockOptions::default()).await;
    let prefix = unique_prefix("bad-input");
    let app = TestApp::spawn(common::config(
        &prefix,
        &common::gateway_channels(&gateway),
        common::GATEWAY_ENV,
    ))
    .await;

    let mut victims = Victims::new();
    for channel in ["waspy-ar", "meta-mx", "wazzup-ru", "seven-de", "whaapy-mx"] {
        let id = send_ok(&app, &format!("victim-{channel}"), channel).await;
        victims.insert(channel, id);
    }

    jobs_phase(&app).await;
    receipts_phase(&app, &victims).await;
    flood_phase(&app).await;

    // Never panicked: alive, ready, and a normal job still goes through.
    let client = reqwest::Client::new();
    let health = client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    let ready = client.get(app.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    send_ok(&app, "after-the-campaign", "waspy-ar").await;
}

/// Idle sockets past the listener's connection cap lock no gateway out: sockets that never
/// send a byte and HTTP/2 connections that send their preface and nothing else are cut off
/// after `http.request_timeout`, so an authenticated receipt, retried as a gateway retries,
/// is accepted within that time while every idle socket is still held open by its client.
#[tokio::test]
async fn idle_connections_past_the_cap_do_not_lock_the_listener_shut() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// The listener's cap (`http::MAX_CONNECTIONS`) and a few more.
    const IDLE: usize = 1030;
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
    let (_core, gateway, _stop) = common::start_gateway(MockOptions::default()).await;
    let mut config = common::config(
        &unique_prefix("bad-idle"),
        &common::gateway_channels(&gateway),
        common::GATEWAY_ENV,
    );
    config.http.request_timeout = REQUEST_TIMEOUT;
    let app = TestApp::spawn(config).await;
    let id = send_ok(&app, "idle-flood-victim", "waspy-ar").await;

    let address = app.url("").trim_start_matches("http://").to_string();
    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let mut socket = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        if i % 2 == 1 {
            socket
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                .await
                .expect("preface");
        }
        idle.push(socket);
    }

    let body = receipts::render(ProviderKind::Waspy, &receipt(&id, Status::Delivered));
    let url = app.url("/webhooks/waspy-ar");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let started = tokio::time::Instant::now();
    let accepted = loop {
        let mut request = client.post(&url).body(body.clone());
        for (name, value) in receipts::sign(
            ProviderKind::Waspy,
            &Secret::new(HOOK_SECRET),
            "POST",
            &url,
            &body,
            Utc::now(),
        ) {
            request = request.header(name, value);
        }
        if let Ok(answer) = request.send().await {
            break answer.status();
        }
        assert!(
            started.elapsed() < REQUEST_TIMEOUT * 2,
            "the receipt was refused for {:?} while {IDLE} idle sockets stayed open",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(accepted, StatusCode::OK);
    let delivered = app.next_outcome().await;
    assert_eq!(
        (delivered.job_id.as_str(), delivered.status),
        ("idle-flood-victim", Status::Delivered)
    );

    // The server, not the client, closed every idle socket.
    for socket in &mut idle {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(REQUEST_TIMEOUT * 2, socket.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "an idle socket is still open");
    }
}
