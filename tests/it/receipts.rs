//! Receipts end to end (SPEC §3, §6): a job goes out through each gateway's API (the mock
//! gateway speaking it), the gateway's signed webhook comes back to the worker's listener, and
//! `delivered` / `read` / `failed` outcomes follow in order, once, with the job's metadata.
//! Real RabbitMQ and Redis; Redis outages are made with a TCP proxy, never by stopping it.

use std::time::Duration;

use chrono::Utc;
use mensajero::config::{MockOptions, ProviderKind, Secret};
use mensajero::gateways::webhook::{self as receipts, Receipt, ReceiptError};
use mensajero::outcome::{Outcome, Status};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{
    self, HOOK_SECRET, Proxy, TestApp, VERIFY_TOKEN, header, host_port, unique_prefix,
};

const TO: &str = "+5491126032641";
/// A worker with every gateway channel, its mock gateway, and `extra` TOML on top.
async fn app(test: &str, extra: &str) -> (TestApp, tokio_util::sync::CancellationToken) {
    let (_core, url, stop) = common::start_gateway(MockOptions::default()).await;
    let prefix = unique_prefix(test);
    let config = common::config(
        &prefix,
        &format!("{extra}\n{}", common::gateway_channels(&url)),
        common::GATEWAY_ENV,
    );
    (TestApp::spawn(config).await, stop)
}

fn provider_of(channel: &str) -> ProviderKind {
    match channel {
        "waspy-ar" => ProviderKind::Waspy,
        "meta-mx" => ProviderKind::Meta,
        "wazzup-ru" => ProviderKind::Wazzup,
        "seven-de" => ProviderKind::Seven,
        "whaapy-mx" => ProviderKind::Whaapy,
        _ => ProviderKind::Mock,
    }
}

/// Send a job and return its `sent` outcome.
async fn send(app: &TestApp, id: &str, channel: &str) -> Outcome {
    app.enqueue(&json!({
        "id": id, "channel": channel, "to": TO,
        "message": {"type": "text", "text": {"body": "Hola"}},
        "metadata": {"order": 1847}
    }))
    .await;
    let queued = app.next_outcome().await;
    assert_eq!(
        (queued.job_id.as_str(), queued.status),
        (id, Status::Queued)
    );
    let sent = app.next_outcome().await;
    assert_eq!(
        (sent.job_id.as_str(), sent.status),
        (id, Status::Sent),
        "{sent:#?}"
    );
    sent
}

fn receipt(id: &str, status: Status, job_id: Option<&str>) -> Receipt {
    Receipt {
        provider_message_id: id.to_string(),
        status,
        job_id: job_id.map(str::to_owned),
        error: (status == Status::Failed).then(|| ReceiptError {
            code: Some("131026".into()),
            message: "Message undeliverable".into(),
        }),
        occurred_at: Some(Utc::now()),
        sender: None,
    }
}

/// POST `body` to the channel's webhook, signed with `secret` the gateway's way.
async fn post_signed(app: &TestApp, channel: &str, body: &[u8], secret: &str) -> StatusCode {
    let url = app.url(&format!("/webhooks/{channel}"));
    let headers = receipts::sign(
        provider_of(channel),
        &Secret::new(secret),
        "POST",
        &url,
        body,
        Utc::now(),
    );
    let mut request = reqwest::Client::new().post(&url).body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request.send().await.expect("listener answers").status()
}

async fn post_receipt(app: &TestApp, channel: &str, receipt: &Receipt) -> StatusCode {
    let body = receipts::render(provider_of(channel), receipt);
    post_signed(app, channel, &body, HOOK_SECRET).await
}

/// The whole chain for one channel: `read` before `delivered` publishes `delivered` (inferred)
/// then `read`, with the job's metadata; the same receipt again, a late `delivered` and a
/// forged receipt publish nothing; a forged one is refused with 401.
async fn chain(app: &TestApp, channel: &str) {
    let job_id = format!("chain-{channel}");
    let sent = send(app, &job_id, channel).await;
    let id = sent.provider_message_id.clone().expect("provider id");
    let read = receipt(&id, Status::Read, Some(&job_id));

    assert_eq!(post_receipt(app, channel, &read).await, StatusCode::OK);
    let events = app.outcomes(2).await;
    let statuses: Vec<_> = events.iter().map(|o| (o.status, o.inferred)).collect();
    assert_eq!(
        statuses,
        [(Status::Delivered, true), (Status::Read, false)],
        "{channel}"
    );
    for event in &events {
        assert_eq!(event.job_id, job_id);
        assert_eq!(event.channel, channel);
        assert_eq!(event.provider_message_id.as_deref(), Some(id.as_str()));
        assert_eq!(
            event.metadata,
            Some(json!({"order": 1847}).as_object().unwrap().clone())
        );
        assert_eq!(
            event.routing_key(),
            format!("{}.{channel}", event.status.as_str())
        );
    }
    assert_eq!(events[0].previous_status, Some(Status::Sent));
    assert_eq!(events[1].previous_status, Some(Status::Delivered));

    // At least once from the gateway, exactly once to the world.
    assert_eq!(post_receipt(app, channel, &read).await, StatusCode::OK);
    let late = receipt(&id, Status::Delivered, Some(&job_id));
    assert_eq!(post_receipt(app, channel, &late).await, StatusCode::OK);
    let forged = receipts::render(provider_of(channel), &receipt(&id, Status::Failed, None));
    assert_eq!(
        post_signed(app, channel, &forged, "not-the-secret").await,
        StatusCode::UNAUTHORIZED
    );
    let unsigned = reqwest::Client::new()
        .post(app.url(&format!("/webhooks/{channel}")))
        .body(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    app.assert_quiet(Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn waspy_receipts_become_outcomes_in_order_once() {
    let (app, _gw) = app("rc-waspy", "").await;
    chain(&app, "waspy-ar").await;
}

#[tokio::test]
async fn meta_receipts_become_outcomes_in_order_once() {
    let (app, _gw) = app("rc-meta", "").await;
    chain(&app, "meta-mx").await;
}

#[tokio::test]
async fn wazzup_receipts_become_outcomes_in_order_once() {
    let (app, _gw) = app("rc-wazzup", "").await;
    chain(&app, "wazzup-ru").await;
}

#[tokio::test]
async fn seven_receipts_become_outcomes_in_order_once() {
    let (app, _gw) = app("rc-seven", "").await;
    chain(&app, "seven-de").await;
}

#[tokio::test]
async fn whaapy_receipts_become_outcomes_in_order_once() {
    let (app, _gw) = app("rc-whaapy", "").await;
    chain(&app, "whaapy-mx").await;
}

/// Whaapy may name the event only in its `X-Webhook-Event` header: the receipt consumer still
/// sees it although the listener queues nothing but the body (and that header).
#[tokio::test]
async fn whaapy_event_named_only_in_the_header_is_applied() {
    let (app, _gw) = app("rc-whaapy-hdr", "").await;
    let sent = send(&app, "hdr-only", "whaapy-mx").await;
    let id = sent.provider_message_id.unwrap();
    let body = serde_json::to_vec(&json!({"data": {"id": id}})).unwrap();
    let url = app.url("/webhooks/whaapy-mx");
    let mut request = reqwest::Client::new().post(&url).body(body.clone());
    for (name, value) in receipts::sign(
        ProviderKind::Whaapy,
        &Secret::new(HOOK_SECRET),
        "POST",
        &url,
        &body,
        Utc::now(),
    ) {
        request = request.header(name, value);
    }
    let status = request
        .header("x-webhook-event", "message.delivered")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    let delivered = app.next_outcome().await;
    assert_eq!(
        (delivered.job_id.as_str(), delivered.status),
        ("hdr-only", Status::Delivered)
    );
}

#[tokio::test]
async fn mock_provider_receipts_become_outcomes_in_order_once() {
    let (app, _gw) = app("rc-mock", "").await;
    chain(&app, "demo").await;
}

/// A `failed` receipt after `sent` publishes `failed` with the gateway's code; nothing after.
#[tokio::test]
async fn a_failed_receipt_carries_the_gateways_error() {
    let (app, _gw) = app("rc-failed", "").await;
    let sent = send(&app, "fails-later", "meta-mx").await;
    let id = sent.provider_message_id.unwrap();
    let failed = receipt(&id, Status::Failed, Some("fails-later"));
    assert_eq!(post_receipt(&app, "meta-mx", &failed).await, StatusCode::OK);
    let event = app.next_outcome().await;
    assert_eq!(event.status, Status::Failed);
    assert_eq!(event.previous_status, Some(Status::Sent));
    let error = event.error.expect("error on failed");
    assert_eq!(error.provider_code.as_deref(), Some("131026"));
    // Meta's table: 131026 is undeliverable.
    assert_eq!(error.class, mensajero::retry::ErrorClass::Rejected);
    assert_eq!(error.code, "delivery_failed");
    assert!(error.message.contains("undeliverable"), "{}", error.message);
    // A window that closed between send and delivery is reported as such (Meta 131047).
    let other = send(&app, "window-closed", "meta-mx").await;
    let mut late = receipt(
        other.provider_message_id.as_deref().unwrap(),
        Status::Failed,
        Some("window-closed"),
    );
    late.error = Some(ReceiptError {
        code: Some("131047".into()),
        message: "Re-engagement message".into(),
    });
    assert_eq!(post_receipt(&app, "meta-mx", &late).await, StatusCode::OK);
    let closed = app.next_outcome().await;
    assert_eq!(
        closed.error.map(|e| e.class),
        Some(mensajero::retry::ErrorClass::WindowExpired)
    );
    // Nothing follows `failed`.
    let read = receipt(&id, Status::Read, Some("fails-later"));
    assert_eq!(post_receipt(&app, "meta-mx", &read).await, StatusCode::OK);
    app.assert_quiet(Duration::from_millis(1500)).await;
}

/// A receipt can overtake the record of its send: it waits and is applied once the send is
/// recorded. For every gateway: its API (wiremock) answers the send with a fixed id, and a
/// receipt naming that id is posted before the job is even published.
#[tokio::test]
async fn a_receipt_that_arrives_before_its_send_is_still_correlated() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let gateway = MockServer::start().await;
    // (channel, send path, the gateway's success answer naming the id).
    let answers = [
        (
            "waspy-ar",
            "/api/v2/messages",
            201,
            json!({"data": {"id": "early-waspy", "status": "queued"}, "meta": {"requestId": "r"}}),
        ),
        (
            "whaapy-mx",
            "/messages/v1",
            200,
            json!({"data": {"id": "early-whaapy", "status": "sent"}}),
        ),
        (
            "wazzup-ru",
            "/v3/message",
            201,
            json!({"messageId": "early-wazzup", "chatId": "5491126032641"}),
        ),
        (
            "seven-de",
            "/api/waba/messages",
            200,
            json!({"success": "100", "messages": [{"id": "early-seven", "success": true}]}),
        ),
        (
            "meta-mx",
            "/v21.0/106540352242922/messages",
            200,
            json!({"messaging_product": "whatsapp", "messages": [{"id": "wamid.early-meta"}]}),
        ),
    ];
    for (_, send_path, status, body) in &answers {
        Mock::given(method("POST"))
            .and(path(*send_path))
            .respond_with(ResponseTemplate::new(*status).set_body_json(body.clone()))
            .mount(&gateway)
            .await;
    }
    let prefix = unique_prefix("rc-early");
    let config = common::config(
        &prefix,
        &common::gateway_channels(&gateway.uri()),
        common::GATEWAY_ENV,
    );
    let app = TestApp::spawn(config).await;

    for (channel, _, _, body) in &answers {
        let id = body
            .pointer("/data/id")
            .or_else(|| body.get("messageId"))
            .or_else(|| body.pointer("/messages/0/id"))
            .and_then(Value::as_str)
            .unwrap();
        let job_id = format!("overtaken-{channel}");
        let early = receipt(id, Status::Delivered, Some(&job_id));
        assert_eq!(post_receipt(&app, channel, &early).await, StatusCode::OK);
        app.assert_quiet(Duration::from_millis(300)).await;
        let sent = send(&app, &job_id, channel).await;
        assert_eq!(sent.provider_message_id.as_deref(), Some(id), "{channel}");
        let delivered = app.next_outcome().await;
        assert_eq!(
            (
                delivered.job_id.as_str(),
                delivered.status,
                delivered.inferred
            ),
            (job_id.as_str(), Status::Delivered, false),
            "{channel}"
        );
    }
}

/// A receipt for an id that never gets recorded is retried for `unknown_retry`, then
/// dead-lettered with its body untouched and the reason — never dropped.
#[tokio::test]
async fn a_receipt_for_an_unknown_message_is_dead_lettered_after_the_retry_window() {
    let (app, _gw) = app("rc-unknown", "[receipts]\nunknown_retry = \"2s\"").await;
    let body = receipts::render(
        ProviderKind::Waspy,
        &receipt("never-sent", Status::Delivered, None),
    );
    assert_eq!(
        post_signed(&app, "waspy-ar", &body, HOOK_SECRET).await,
        StatusCode::OK
    );
    let (dead, headers) = app.next_dead_letter().await;
    assert_eq!(dead, body);
    assert_eq!(
        header(&headers, "x-mensajero-reason").as_deref(),
        Some("unknown_message")
    );
    assert!(
        header(&headers, "x-mensajero-error")
            .unwrap()
            .contains("never-sent")
    );
    assert_eq!(
        header(&headers, "x-mensajero-channel").as_deref(),
        Some("waspy-ar")
    );
    app.assert_quiet(Duration::from_millis(300)).await;
}

/// An authenticated body that is not a receipt is kept as a dead letter with the reason.
#[tokio::test]
async fn an_unreadable_receipt_is_dead_lettered() {
    let (app, _gw) = app("rc-invalid", "").await;
    let body = br#"{"data": "not an object"#;
    assert_eq!(
        post_signed(&app, "waspy-ar", body, HOOK_SECRET).await,
        StatusCode::OK
    );
    let (dead, headers) = app.next_dead_letter().await;
    assert_eq!(dead, body);
    assert_eq!(
        header(&headers, "x-mensajero-reason").as_deref(),
        Some("invalid_receipt")
    );
}

/// The listener's edges: body limit, unknown channels, Wazzup's probe, Meta's handshake.
#[tokio::test]
async fn the_listener_refuses_what_it_must_and_answers_probes() {
    let (app, _gw) = app("rc-edges", "").await;
    let client = reqwest::Client::new();

    let huge = vec![b'x'; 300 * 1024];
    assert_eq!(
        post_signed(&app, "waspy-ar", &huge, HOOK_SECRET).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let nowhere = client
        .post(app.url("/webhooks/nope"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);

    // Wazzup checks a new webhook URL with this body and wants 200.
    let probe = client
        .post(app.url("/webhooks/wazzup-ru"))
        .json(&json!({"test": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), StatusCode::OK);

    let challenge = client
        .get(app.url(&format!(
            "/webhooks/meta-mx?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), StatusCode::OK);
    assert_eq!(challenge.text().await.unwrap(), "1158201444");
    let wrong = client
        .get(app.url("/webhooks/meta-mx?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    app.assert_quiet(Duration::from_millis(500)).await;
}

/// Redis unreachable while receipts arrive: they are still accepted (durable in the broker)
/// and become outcomes once Redis is back.
#[tokio::test]
async fn receipts_are_accepted_while_redis_is_down_and_applied_after() {
    let services = common::services();
    let proxy = Proxy::start(&host_port(&services.redis_url)).await;
    let (_core, url, _gw) = common::start_gateway(MockOptions::default()).await;
    let prefix = unique_prefix("rc-redis");
    let mut config = common::config(
        &prefix,
        &common::gateway_channels(&url),
        common::GATEWAY_ENV,
    );
    let db = services
        .redis_url
        .rsplit_once('/')
        .map(|(_, d)| d)
        .filter(|d| d.parse::<u32>().is_ok());
    config.redis.url = format!("redis://{}/{}", proxy.addr, db.unwrap_or("0"));
    let app = TestApp::spawn(config).await;

    let gateways = [
        "waspy-ar",
        "whaapy-mx",
        "wazzup-ru",
        "seven-de",
        "meta-mx",
        "demo",
    ];
    let mut ids = Vec::new();
    for channel in gateways {
        let job_id = format!("through-outage-{channel}");
        let sent = send(&app, &job_id, channel).await;
        ids.push((channel, job_id, sent.provider_message_id.unwrap()));
    }
    proxy.cut();
    let client = reqwest::Client::new();
    // Readiness follows Redis.
    let mut ready = StatusCode::OK;
    for _ in 0..50 {
        ready = client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status();
        if ready == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE);

    // Every gateway's receipts are still taken: they wait in the broker, not in Redis.
    for (channel, job_id, id) in &ids {
        let delivered = receipt(id, Status::Delivered, Some(job_id));
        let read = receipt(id, Status::Read, Some(job_id));
        assert_eq!(
            post_receipt(&app, channel, &delivered).await,
            StatusCode::OK
        );
        assert_eq!(post_receipt(&app, channel, &read).await, StatusCode::OK);
    }
    app.assert_quiet(Duration::from_secs(2)).await;

    proxy.restore();
    let events = app.outcomes(2 * ids.len()).await;
    for (channel, job_id, _) in &ids {
        let statuses: Vec<_> = events
            .iter()
            .filter(|o| &o.job_id == job_id)
            .map(|o| (o.status, o.inferred))
            .collect();
        // Each job's two receipts were queued in order; the lane applies them in status
        // order whichever is processed first, and never backwards.
        assert!(
            statuses == [(Status::Delivered, false), (Status::Read, false)]
                || statuses == [(Status::Delivered, true), (Status::Read, false)],
            "{channel}: {statuses:?}"
        );
    }
    app.assert_quiet(Duration::from_millis(800)).await;
    // Readiness comes back with the next probe (every 2 s; one started during the cut may
    // first run into its 2 s timeout), not with the first Redis call that works.
    app.wait_ready().await;
    let body: Value = client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body,
        json!({"amqp": true, "amqp_blocked": false, "redis": true})
    );
}

/// Polling fills a lost receipt (Waspy's `GET /api/v2/messages/{id}`): no webhook comes, the
/// poller asks once the message is `poll_after` old, and the answer becomes outcomes; a final
/// status ends the polling.
#[tokio::test]
async fn polling_fills_in_receipts_that_never_came() {
    use wiremock::matchers::{header as header_is, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/messages"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "data": {"id": "msg-polled", "status": "queued"}, "meta": {"requestId": "r"}
        })))
        .mount(&gateway)
        .await;
    // The document's answer, read by now.
    Mock::given(method("GET"))
        .and(path("/api/v2/messages/msg-polled"))
        .and(header_is("authorization", "Bearer key_0123456789"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {"id": "msg-polled", "conversationId": "conv-uuid", "direction": "outbound",
                     "type": "text", "content": {"text": {"body": "Hola"}}, "status": "read",
                     "waMessageId": "wamid.HBgLNT", "errorCode": null, "errorMessage": null,
                     "createdAt": "2026-04-13T15:00:00.000Z"},
            "meta": {"requestId": "r2"}
        })))
        .expect(1)
        .mount(&gateway)
        .await;
    let prefix = unique_prefix("rc-poll");
    let channel = common::gateway_channels(&gateway.uri()).replace(
        "provider = \"waspy\"\n",
        "provider = \"waspy\"\npoll_after = \"1s\"\n",
    );
    let app = TestApp::spawn(common::config(&prefix, &channel, common::GATEWAY_ENV)).await;
    send(&app, "polled", "waspy-ar").await;
    let events = app.outcomes(2).await;
    let statuses: Vec<_> = events.iter().map(|o| (o.status, o.inferred)).collect();
    assert_eq!(statuses, [(Status::Delivered, true), (Status::Read, false)]);
    assert!(events.iter().all(|o| o.job_id == "polled"));
    // `read` is final: no second poll (the mock's expect(1) is checked when it drops).
    app.assert_quiet(Duration::from_secs(3)).await;
}

/// A client that never finishes its request headers (slowloris) is cut off after
/// `http.request_timeout`, and the listener keeps serving everyone else.
#[tokio::test]
async fn a_client_too_slow_to_send_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_core, url, _gw) = common::start_gateway(MockOptions::default()).await;
    let mut config = common::config(
        &unique_prefix("rc-slow"),
        &common::gateway_channels(&url),
        common::GATEWAY_ENV,
    );
    config.http.request_timeout = Duration::from_secs(1);
    let app = TestApp::spawn(config).await;
    let address = app.url("").trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"POST /webhooks/waspy-ar HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // The server closes it (EOF, or a 408 then EOF) well before our 10 s patience runs out.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the half-sent request was not cut off");
    let healthy = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(healthy.status(), StatusCode::OK);
}
