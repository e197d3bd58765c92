//! The core pipeline end to end on real RabbitMQ and Redis, with Waspy faked at the HTTP
//! level: every message type, deduplication, bad input, retries and error classes.

use std::collections::HashMap;
use std::time::Duration;

use mensajero::outcome::{EventKind, Outcome, Status};
use mensajero::retry::ErrorClass;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header as header_is, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{self, TestApp, header, unique_prefix};

const SENDER: &str = "550e8400-e29b-41d4-a716-446655440000";
const KEY: &str = "wspy_test_0123456789";
const TO: &str = "+5491126032641";

fn waspy_channel(base_url: &str, extra: &str) -> String {
    format!(
        r#"
[channels.waspy-ar]
provider = "waspy"
base_url = "{base_url}"
api_key_env = "WASPY_TEST_KEY"
sender = "{SENDER}"
timeout = "2s"
rate_per_second = 100000
{extra}
"#
    )
}

async fn waspy_app(test: &str, gateway: &MockServer, extra: &str) -> TestApp {
    let prefix = unique_prefix(test);
    let config = common::config(
        &prefix,
        &waspy_channel(&gateway.uri(), extra),
        &[("WASPY_TEST_KEY", KEY)],
    );
    TestApp::spawn(config).await
}

fn created(id: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "data": {"id": id, "conversationId": "conv-uuid", "direction": "outbound", "type": "text",
                 "status": "queued", "createdAt": "2026-04-13T15:00:00.000Z"},
        "meta": {"requestId": "req"}
    }))
}

fn job(id: &str, message: Value) -> Value {
    json!({"id": id, "channel": "waspy-ar", "to": TO, "message": message})
}

fn by_job(outcomes: Vec<Outcome>) -> HashMap<String, Vec<Outcome>> {
    let mut map: HashMap<String, Vec<Outcome>> = HashMap::new();
    for o in outcomes {
        map.entry(o.job_id.clone()).or_default().push(o);
    }
    map
}

/// Every canonical type: Waspy's types arrive with exactly the body its document shows; the
/// rest fail as `unsupported_message_type` without a gateway call.
#[tokio::test]
async fn every_message_type_reaches_waspy_exactly_or_fails_unsupported() {
    let gateway = MockServer::start().await;
    let supported: Vec<(&str, Value)> = vec![
        // The document's own examples, byte for byte.
        (
            "doc-text",
            json!({"type": "text", "text": {"body": "Hola! Tu pedido fue despachado."}}),
        ),
        (
            "doc-template",
            json!({"type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}}),
        ),
        (
            "doc-template-vars",
            json!({"type": "template", "template": {"name": "confirmacion_pedido", "language": {"code": "es_AR"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "María"}, {"type": "text", "text": "#1847"}]}]}}),
        ),
        (
            "doc-image",
            json!({"type": "image", "image": {"link": "https://ejemplo.com/producto.jpg", "caption": "Producto nuevo"}}),
        ),
        // The types its table lists without an example.
        (
            "video",
            json!({"type": "video", "video": {"link": "https://ejemplo.com/v.mp4", "caption": "Unboxing"}}),
        ),
        (
            "audio",
            json!({"type": "audio", "audio": {"id": "1013859600285441"}}),
        ),
        (
            "document",
            json!({"type": "document", "document": {"link": "https://ejemplo.com/f.pdf", "filename": "archivo.pdf"}}),
        ),
        (
            "buttons",
            json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "¿Confirmás?"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "si", "title": "Sí"}}, {"type": "reply", "reply": {"id": "no", "title": "No"}}]}}}),
        ),
        (
            "list",
            json!({"type": "interactive", "interactive": {"type": "list", "body": {"text": "Elegí"},
            "action": {"button": "Ver", "sections": [{"title": "Mañana", "rows": [{"id": "m9", "title": "9 a 12 h"}]}]}}}),
        ),
    ];
    let unsupported: Vec<(&str, Value)> = vec![
        (
            "sticker",
            json!({"type": "sticker", "sticker": {"link": "https://ejemplo.com/s.webp"}}),
        ),
        (
            "location",
            json!({"type": "location", "location": {"latitude": -34.6, "longitude": -58.38}}),
        ),
        (
            "contacts",
            json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Soporte"}}]}),
        ),
        (
            "reaction",
            json!({"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "👍"}}),
        ),
    ];
    for (id, message) in &supported {
        let kind = message["type"].as_str().unwrap();
        let mut expected = json!({"phoneNumberId": SENDER, "to": TO, "type": kind});
        expected[kind] = message[kind].clone();
        Mock::given(method("POST"))
            .and(path("/api/v2/messages"))
            .and(header_is("authorization", format!("Bearer {KEY}").as_str()))
            .and(header_is("content-type", "application/json"))
            .and(header_is("idempotency-key", *id))
            .and(body_json(&expected))
            .respond_with(created(&format!("msg-{id}")))
            .expect(1)
            .named(*id)
            .mount(&gateway)
            .await;
    }
    let app = waspy_app("types", &gateway, "").await;
    for (id, message) in supported.iter().chain(&unsupported) {
        app.enqueue(&job(id, message.clone())).await;
    }

    let outcomes = by_job(
        app.outcomes(supported.len() * 2 + unsupported.len() * 2)
            .await,
    );
    for (id, _) in &supported {
        let events = &outcomes[*id];
        let statuses: Vec<Status> = events.iter().map(|o| o.status).collect();
        assert_eq!(
            statuses,
            [Status::Queued, Status::Sent],
            "{id}: {events:#?}"
        );
        let sent = &events[1];
        assert_eq!(
            sent.provider_message_id.as_deref(),
            Some(format!("msg-{id}").as_str())
        );
        assert_eq!(sent.previous_status, Some(Status::Queued));
        assert_eq!(sent.attempt, 1);
        assert_eq!(sent.provider.as_deref(), Some("waspy"));
        assert_eq!(sent.routing_key(), "sent.waspy-ar");
    }
    for (id, message) in &unsupported {
        let events = &outcomes[*id];
        let failed = events
            .iter()
            .find(|o| o.status == Status::Failed)
            .unwrap_or_else(|| panic!("{id}: {events:#?}"));
        let error = failed.error.as_ref().unwrap();
        assert_eq!(error.class, ErrorClass::Invalid);
        assert_eq!(error.code, "unsupported_message_type");
        assert!(error.message.contains("waspy"), "{}", error.message);
        assert!(
            error.message.contains(message["type"].as_str().unwrap()),
            "{}",
            error.message
        );
    }
    // Unsupported jobs are dead-lettered with their reason.
    for _ in &unsupported {
        let (_, headers) = app.next_dead_letter().await;
        assert_eq!(
            header(&headers, "x-mensajero-reason").as_deref(),
            Some("unsupported_message_type")
        );
    }
    // wiremock verifies each `.expect(1)` when the server drops.
}

/// The same key twice → one gateway call and one `duplicate` event; after the window the key
/// is free again.
#[tokio::test]
async fn same_idempotency_key_is_sent_once_then_again_after_the_window() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header_is("idempotency-key", "pedido-1847-confirmacion"))
        .respond_with(created("msg-1"))
        .expect(2)
        .mount(&gateway)
        .await;
    let app = waspy_app("dedupe", &gateway, "dedupe_window = \"3s\"").await;
    let text = json!({"type": "text", "text": {"body": "Hola"}});
    let mut first = job("first", text.clone());
    first["idempotency_key"] = "pedido-1847-confirmacion".into();
    first["metadata"] = json!({"order": 1847});
    app.enqueue(&first).await;
    let events = app.outcomes(2).await;
    assert_eq!(events[1].status, Status::Sent);
    assert_eq!(
        events[1].metadata,
        Some(json!({"order": 1847}).as_object().unwrap().clone())
    );

    let mut second = job("second", text.clone());
    second["idempotency_key"] = "pedido-1847-confirmacion".into();
    app.enqueue(&second).await;
    let dup = app.next_outcome().await;
    assert_eq!(dup.event, EventKind::Duplicate);
    assert_eq!(dup.routing_key(), "duplicate.waspy-ar");
    assert_eq!(dup.job_id, "second");
    assert_eq!(dup.original_job_id.as_deref(), Some("first"));
    assert_eq!(dup.status, Status::Sent);
    assert_eq!(dup.provider_message_id.as_deref(), Some("msg-1"));
    app.assert_quiet(Duration::from_millis(500)).await;

    tokio::time::sleep(Duration::from_millis(3200)).await;
    let mut third = job("third", text);
    third["idempotency_key"] = "pedido-1847-confirmacion".into();
    app.enqueue(&third).await;
    let events = app.outcomes(2).await;
    assert_eq!(
        (events[0].job_id.as_str(), events[1].status),
        ("third", Status::Sent)
    );
}

/// Each kind of bad input: a `failed`/`invalid` outcome when the id is readable, always a
/// dead letter with the body untouched and the reason in headers, and the worker goes on.
#[tokio::test]
async fn bad_input_is_dead_lettered_with_its_reason_and_the_worker_keeps_going() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created("msg-ok"))
        .expect(1)
        .mount(&gateway)
        .await;
    let app = waspy_app("badinput", &gateway, "").await;

    let text = json!({"type": "text", "text": {"body": "Hola"}});
    let mut unknown_field = job("bad-field", text.clone());
    unknown_field["colour"] = "red".into();
    let mut bad_number = job("bad-number", text.clone());
    bad_number["to"] = "+0123".into();
    let mut unknown_channel = job("bad-channel", text.clone());
    unknown_channel["channel"] = "nowhere".into();
    let buttons: Vec<Value> = (0..4)
        .map(|i| json!({"type": "reply", "reply": {"id": format!("b{i}"), "title": "x"}}))
        .collect();
    let too_many_buttons = job(
        "bad-buttons",
        json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "?"}, "action": {"buttons": buttons}}}),
    );
    let mut oversize = job(
        "bad-oversize",
        json!({"type": "text", "text": {"body": "x"}}),
    );
    oversize["metadata"] = json!({"pad": "y".repeat(70 * 1024)});

    // (body, readable id, reason header)
    let cases: Vec<(Vec<u8>, Option<&str>, &str)> = vec![
        (b"{not json".to_vec(), None, "malformed"),
        (vec![0xff, 0xfe, 0x00], None, "malformed"),
        (b"[1,2,3]".to_vec(), None, "malformed"),
        (oversize.to_string().into_bytes(), None, "oversize"),
        (
            unknown_field.to_string().into_bytes(),
            Some("bad-field"),
            "unknown_field",
        ),
        (
            bad_number.to_string().into_bytes(),
            Some("bad-number"),
            "invalid_phone",
        ),
        (
            unknown_channel.to_string().into_bytes(),
            Some("bad-channel"),
            "unknown_channel",
        ),
        (
            too_many_buttons.to_string().into_bytes(),
            Some("bad-buttons"),
            "invalid_field",
        ),
    ];
    for (body, _, _) in &cases {
        app.enqueue_raw(body).await;
        // One at a time, so dead letters come back in order.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut letters = Vec::new();
    for _ in &cases {
        letters.push(app.next_dead_letter().await);
    }
    for (body, id, reason) in &cases {
        let (dead_body, headers) = letters
            .iter()
            .find(|(b, _)| b == body)
            .unwrap_or_else(|| panic!("no dead letter for {reason}"));
        assert_eq!(dead_body, body, "body untouched");
        assert_eq!(
            header(headers, "x-mensajero-reason").as_deref(),
            Some(*reason)
        );
        assert_eq!(
            header(headers, "x-mensajero-error-class").as_deref(),
            Some("invalid")
        );
        assert_eq!(
            header(headers, "x-mensajero-attempts").as_deref(),
            Some("0")
        );
        assert!(header(headers, "x-mensajero-failed-at").is_some());
        assert_eq!(header(headers, "x-mensajero-job-id").as_deref(), *id);
    }
    let buttons_letter = letters.iter().find(|(b, _)| b == &cases[7].0).unwrap();
    assert_eq!(
        header(&buttons_letter.1, "x-mensajero-error").as_deref(),
        Some("message.interactive.action.buttons[3]: at most 3 reply buttons")
    );

    let readable = cases.iter().filter(|c| c.1.is_some()).count();
    let failed = app.outcomes(readable).await;
    for o in &failed {
        assert_eq!(o.status, Status::Failed);
        assert_eq!(o.error.as_ref().unwrap().class, ErrorClass::Invalid);
    }
    let mut ids: Vec<&str> = failed.iter().map(|o| o.job_id.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["bad-buttons", "bad-channel", "bad-field", "bad-number"]
    );
    let channel_outcome = failed.iter().find(|o| o.job_id == "bad-channel").unwrap();
    assert_eq!(channel_outcome.routing_key(), "failed.nowhere");

    // Still alive.
    app.enqueue(&job("good", text)).await;
    let events = app.outcomes(2).await;
    assert_eq!(events[1].status, Status::Sent);
    assert_eq!(app.settled_queue_len(&app.topology.send_queue, 0).await, 0);
}

/// Retryable failures are retried in process with backoff; a gateway that recovers gets the
/// job sent at a later attempt, one that does not ends `retries_exhausted`.
#[tokio::test]
async fn transient_errors_are_retried_then_exhausted() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header_is("idempotency-key", "recovers"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&gateway)
        .await;
    Mock::given(method("POST"))
        .and(header_is("idempotency-key", "recovers"))
        .respond_with(created("msg-late"))
        .expect(1)
        .mount(&gateway)
        .await;
    Mock::given(method("POST"))
        .and(header_is("idempotency-key", "never"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"error": {"code": "INTERNAL", "message": "boom"}})),
        )
        .expect(3)
        .mount(&gateway)
        .await;
    let app = waspy_app(
        "retries",
        &gateway,
        "max_attempts = 3\nretry_schedule = [\"200ms\"]",
    )
    .await;
    let text = json!({"type": "text", "text": {"body": "Hola"}});
    app.enqueue(&job("recovers", text.clone())).await;
    app.enqueue(&job("never", text)).await;
    let outcomes = by_job(app.outcomes(4).await);
    let sent = outcomes["recovers"]
        .iter()
        .find(|o| o.status == Status::Sent)
        .expect("sent");
    assert_eq!(sent.attempt, 2);
    let failed = outcomes["never"]
        .iter()
        .find(|o| o.status == Status::Failed)
        .expect("failed");
    let error = failed.error.as_ref().unwrap();
    assert_eq!(error.class, ErrorClass::RetriesExhausted);
    assert_eq!(error.attempts, 3);
    assert_eq!(error.provider_code.as_deref(), Some("INTERNAL"));
    let (_, headers) = app.next_dead_letter().await;
    assert_eq!(
        header(&headers, "x-mensajero-reason").as_deref(),
        Some("INTERNAL")
    );
    assert_eq!(
        header(&headers, "x-mensajero-error-class").as_deref(),
        Some("retries_exhausted")
    );
    assert_eq!(
        header(&headers, "x-mensajero-attempts").as_deref(),
        Some("3")
    );
}

/// Waspy's documented codes reach outcomes with their class; permanent ones are not retried,
/// and a replayed answer counts as sent.
#[tokio::test]
async fn waspy_error_codes_become_classified_outcomes() {
    let gateway = MockServer::start().await;
    let cases = [
        (
            "window",
            403,
            "SERVICE_WINDOW_EXPIRED",
            ErrorClass::WindowExpired,
        ),
        ("phone", 400, "INVALID_PHONE", ErrorClass::Invalid),
        ("mtype", 400, "INVALID_MESSAGE_TYPE", ErrorClass::Invalid),
    ];
    for (key, status, code, _) in cases {
        Mock::given(method("POST"))
            .and(header_is("idempotency-key", key))
            .respond_with(
                ResponseTemplate::new(status)
                    .set_body_json(json!({"error": {"code": code, "message": "nope"}})),
            )
            .expect(1)
            .mount(&gateway)
            .await;
    }
    Mock::given(method("POST"))
        .and(header_is("idempotency-key", "replay"))
        .respond_with(created("msg-original").insert_header("Idempotency-Replayed", "true"))
        .expect(1)
        .mount(&gateway)
        .await;
    let app = waspy_app("codes", &gateway, "").await;
    let text = json!({"type": "text", "text": {"body": "Hola"}});
    for (key, ..) in cases {
        app.enqueue(&job(key, text.clone())).await;
    }
    app.enqueue(&job("replay", text)).await;
    let outcomes = by_job(app.outcomes(8).await);
    for (key, _, code, class) in cases {
        let failed = outcomes[key]
            .iter()
            .find(|o| o.status == Status::Failed)
            .unwrap_or_else(|| panic!("{key}"));
        let error = failed.error.as_ref().unwrap();
        assert_eq!(
            (error.class, error.code.as_str(), error.attempts),
            (class, code, 1),
            "{key}"
        );
        assert_eq!(error.provider_code.as_deref(), Some(code));
    }
    let sent = outcomes["replay"]
        .iter()
        .find(|o| o.status == Status::Sent)
        .unwrap();
    assert_eq!(sent.provider_message_id.as_deref(), Some("msg-original"));
}
