//! The mock gateway's scripted errors and receipts.
//!
//! (a) Scripted errors, sent through each real adapter's `HttpGateway` against `mock::serve`,
//! come back classified as the adapter would classify the real gateway's error; `times` runs
//! out, `DELETE /_mock/script` clears, `/_mock/stats` counts them. No broker needed.
//! (b) End to end with a real worker (RabbitMQ, Redis): the mock's signed receipts, in the
//! called API's format, turn a job into `queued → sent → delivered → read`, and its customer
//! replies become inbound events naming the job they answer, in process and over HTTP.

use std::time::Duration;

use mensajero::config::{ChannelConfig, MockOptions, Secret};
use mensajero::gateways::simulator::{self as mock, MockCore};
use mensajero::gateways::{ChannelGateway, SendContext};
use mensajero::inbound::{Content, InboundEvent, ReplyKind};
use mensajero::outcome::Status;
use mensajero::retry::ErrorClass;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::{self, TestApp, unique_prefix};

const TO: &str = "+5491126032641";
const KEY: &str = "key_0123456789";
const HOOK_SECRET: &str = "hook-secret-0123456789";

/// Each gateway API: its channel TOML (without base_url), its send path, and a scripted error
/// meaning "the 24 h window is closed" in its own words, with the class its adapter gives it.
struct Api {
    channel: &'static str,
    toml: &'static str,
    path: &'static str,
    window: (u16, &'static str),
    window_class: ErrorClass,
}

const APIS: &[Api] = &[
    Api {
        channel: "waspy-ar",
        toml: "provider = \"waspy\"\nsender = \"550e8400-e29b-41d4-a716-446655440000\"",
        path: "/api/v2/messages",
        window: (403, "SERVICE_WINDOW_EXPIRED"),
        window_class: ErrorClass::WindowExpired,
    },
    Api {
        channel: "meta-mx",
        toml: "provider = \"meta\"\nsender = \"106540352242922\"\napi_version = \"v21.0\"",
        // A prefix rule: every Graph call of this API version.
        path: "/v21.0/*",
        window: (400, "131047"),
        window_class: ErrorClass::WindowExpired,
    },
    Api {
        channel: "wazzup-ru",
        toml: "provider = \"wazzup\"\nsender = \"e0629e11-0f67-4567-92a9-2237e91ec1b9\"",
        path: "/v3/message",
        // Wazzup's "not on WhatsApp": the adapter's `rejected`.
        window: (400, "BAD_CONTACT"),
        window_class: ErrorClass::Rejected,
    },
    Api {
        channel: "seven-de",
        toml: "provider = \"seven\"\nsender = \"4915112345678\"",
        path: "/api/waba/messages",
        window: (400, "7002001"),
        window_class: ErrorClass::WindowExpired,
    },
    Api {
        channel: "whaapy-mx",
        toml: "provider = \"whaapy\"",
        path: "/messages/v1",
        window: (400, "131047"),
        window_class: ErrorClass::WindowExpired,
    },
];

/// Serve `core` on an already bound listener until the token is cancelled.
fn serve(listener: tokio::net::TcpListener, core: MockCore) -> CancellationToken {
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(mock::serve(listener, core, async move {
        token.cancelled().await
    }));
    stop
}

async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    (listener, url)
}

fn gateway(api: &Api, base_url: &str) -> ChannelGateway {
    let channel: ChannelConfig = toml::from_str(&format!(
        "{}\nbase_url = \"{base_url}\"\ntimeout = \"5s\"",
        api.toml
    ))
    .expect("channel config");
    ChannelGateway::from_config(api.channel, &channel, Some(Secret::new(KEY)), None)
        .expect("gateway")
}

fn job(id: &str, to: &str) -> mensajero::job::Job {
    let body = json!({
        "id": id, "channel": "any", "to": to,
        "message": {"type": "text", "text": {"body": "Hola"}}
    });
    mensajero::job::parse(body.to_string().as_bytes()).expect("valid job")
}

async fn send(gateway: &ChannelGateway, id: &str, to: &str) -> mensajero::gateways::SendResult {
    let ctx = SendContext {
        idempotency_key: id,
        attempt: 1,
    };
    gateway.send(&job(id, to), ctx).await
}

async fn script(base_url: &str, rules: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base_url}/_mock/script"))
        .json(&rules)
        .send()
        .await
        .expect("mock answers")
}

async fn stats(base_url: &str) -> Value {
    reqwest::get(format!("{base_url}/_mock/stats"))
        .await
        .expect("mock answers")
        .json()
        .await
        .expect("stats JSON")
}

#[tokio::test]
async fn scripted_errors_are_classified_by_every_adapter() {
    for api in APIS {
        let name = api.channel;
        let (listener, url) = bind().await;
        let stop = serve(listener, MockCore::new(MockOptions::default()));
        let gateway = gateway(api, &url);

        // Per recipient, in the gateway's own code, compared by digits ("+54 9 11 …").
        let (status, code) = api.window;
        let rule = json!({"to": "+54 9 11 2603-2641", "status": status, "code": code});
        assert!(script(&url, rule).await.status().is_success(), "{name}");
        // The next 2 calls on this path: 503 with Retry-After.
        let rule = json!([{"path": api.path, "status": 503, "times": 2, "retry_after": 3}]);
        assert!(script(&url, rule).await.status().is_success(), "{name}");

        let failure = send(&gateway, "k-window", TO).await.expect_err(name);
        assert_eq!(failure.class, api.window_class, "{name}: {failure:?}");
        assert_eq!(failure.provider_code.as_deref(), Some(code), "{name}");

        let other = "+4915199999999";
        for attempt in 1..=2 {
            let failure = send(&gateway, "k-busy", other).await.expect_err(name);
            assert_eq!(failure.class, ErrorClass::Transient, "{name} #{attempt}");
            assert_eq!(failure.retry_after, Some(Duration::from_secs(3)), "{name}");
        }
        // `times` ran out: the other recipient goes through now; the window rule stays.
        let sent = send(&gateway, "k-busy", other).await.expect(name);
        assert!(!sent.provider_message_id.is_empty(), "{name}");
        let rules: Vec<Value> = reqwest::get(format!("{url}/_mock/script"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(rules.len(), 1, "{name}: {rules:?}");
        assert!(send(&gateway, "k-window-2", TO).await.is_err(), "{name}");

        let stats = stats(&url).await;
        assert_eq!(stats["errors"], 4, "{name}: {stats}");
        assert_eq!(stats["scripted"], 4, "{name}: {stats}");
        assert_eq!(stats["sent"], 1, "{name}: {stats}");

        // DELETE clears: the recipient is reachable again.
        let cleared: Value = reqwest::Client::new()
            .delete(format!("{url}/_mock/script"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(cleared["cleared"], 1, "{name}");
        assert!(send(&gateway, "k-window-3", TO).await.is_ok(), "{name}");
        stop.cancel();
    }
}

#[tokio::test]
async fn scripted_errors_are_counted_per_key_and_bad_rules_refused() {
    let (listener, url) = bind().await;
    let stop = serve(listener, MockCore::new(MockOptions::default()));
    let gateway = gateway(&APIS[0], &url);
    let rule = json!({"status": 429, "times": 1});
    assert!(script(&url, rule).await.status().is_success());
    let failure = send(&gateway, "k-limited", TO).await.expect_err("scripted");
    assert_eq!(failure.class, ErrorClass::RateLimited);
    // Without a scripted Retry-After, a 429 keeps the simulator's usual one second.
    assert_eq!(failure.retry_after, Some(Duration::from_secs(1)));
    assert!(send(&gateway, "k-limited", TO).await.is_ok());
    let stats = stats(&url).await;
    assert_eq!(stats["errors_by_key"]["k-limited"], 1, "{stats}");
    assert_eq!(stats["requests_by_key"]["k-limited"], 2, "{stats}");

    for bad in [
        json!({"status": 200}),
        json!({"status": 503, "times": 0}),
        json!({"status": 503, "tiems": 2}),
        json!([{"status": 503}, {"status": 99}]),
    ] {
        let response = script(&url, bad.clone()).await;
        assert_eq!(response.status(), reqwest::StatusCode::BAD_REQUEST, "{bad}");
    }
    let rules: Vec<Value> = reqwest::get(format!("{url}/_mock/script"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(rules.is_empty(), "a refused batch adds nothing: {rules:?}");
    stop.cancel();
}

const ENV: &[(&str, &str)] = &[("T_KEY", KEY), ("T_HOOK", HOOK_SECRET)];

/// Publish a text job and expect `queued → sent → delivered → read`, none inferred, all with
/// the id the send answered.
async fn expect_receipts_chain(app: &TestApp, channel: &str) {
    let job_id = format!("mock-rc-{channel}");
    app.enqueue(&json!({
        "id": job_id, "channel": channel, "to": TO,
        "message": {"type": "text", "text": {"body": "Hola"}}
    }))
    .await;
    let events = app.outcomes(4).await;
    let statuses: Vec<_> = events.iter().map(|o| (o.status, o.inferred)).collect();
    assert_eq!(
        statuses,
        [
            (Status::Queued, false),
            (Status::Sent, false),
            (Status::Delivered, false),
            (Status::Read, false)
        ],
        "{channel}: {events:#?}"
    );
    let id = events[1].provider_message_id.clone().expect("provider id");
    for event in &events[1..] {
        assert_eq!(event.job_id, job_id, "{channel}");
        assert_eq!(event.provider_message_id.as_deref(), Some(id.as_str()));
    }
}

#[tokio::test]
async fn in_process_mock_sends_its_own_receipts() {
    // The mock channel POSTs to the worker's own listener, so its port is chosen first.
    let port = common::free_port();
    let channels = format!(
        r#"
[channels.demo]
provider = "mock"
webhook_secret_env = "T_HOOK"
[channels.demo.mock]
receipts_url = "http://127.0.0.1:{port}/webhooks/demo"
delivered_after = "200ms"
read_after = "400ms"
"#
    );
    let mut config = common::config(&unique_prefix("mock-rc-inproc"), &channels, ENV);
    config.http.listen = format!("127.0.0.1:{port}").parse().expect("address");
    let app = TestApp::spawn(config).await;
    expect_receipts_chain(&app, "demo").await;
    app.assert_quiet(Duration::from_millis(800)).await;
}

#[tokio::test]
async fn http_mock_sends_receipts_in_each_apis_format() {
    // One simulator per API, since each has one receipts URL; bound first so the worker's
    // configuration can name them, served once the worker's listener is known.
    let mut listeners = Vec::new();
    let mut channels = String::new();
    for api in APIS {
        let (listener, url) = bind().await;
        channels.push_str(&format!(
            "[channels.{}]\n{}\nbase_url = \"{url}\"\napi_key_env = \"T_KEY\"\nwebhook_secret_env = \"T_HOOK\"\ntimeout = \"5s\"\n",
            api.channel, api.toml
        ));
        listeners.push((api.channel, listener));
    }
    let config = common::config(&unique_prefix("mock-rc-http"), &channels, ENV);
    let app = TestApp::spawn(config).await;
    let mut cores = Vec::new();
    let mut stops = Vec::new();
    for (channel, listener) in listeners {
        let options = MockOptions {
            receipts_url: Some(app.url(&format!("/webhooks/{channel}"))),
            delivered_after: Some(Duration::from_millis(200)),
            read_after: Some(Duration::from_millis(400)),
            ..MockOptions::default()
        };
        let core = MockCore::with_webhook_secret(options, Some(Secret::new(HOOK_SECRET)));
        stops.push(serve(listener, core.clone()));
        cores.push((channel, core));
    }
    for (channel, core) in &cores {
        expect_receipts_chain(&app, channel).await;
        let stats = core.stats();
        assert_eq!(
            (stats.receipts_sent, stats.receipts_failed),
            (2, 0),
            "{channel}"
        );
    }
    app.assert_quiet(Duration::from_millis(800)).await;
    for stop in stops {
        stop.cancel();
    }
}

/// The customer's reply to the `sent` outcome's message: one inbound event quoting it, from
/// the recipient, carrying the job's id and metadata.
async fn expect_reply(app: &TestApp, sent: &mensajero::outcome::Outcome) -> InboundEvent {
    let event = app.inbound_events(1).await.remove(0);
    let id = sent.provider_message_id.clone().expect("provider id");
    assert_eq!(
        event.provider_message_id,
        format!("reply-{id}"),
        "{event:#?}"
    );
    assert_eq!(event.from.as_deref(), Some(TO));
    assert_eq!(event.provider, "mock");
    let context = event.context.clone().expect("the reply quotes our message");
    assert_eq!(context.message_id, id);
    assert_eq!(context.job_id.as_deref(), Some(sent.job_id.as_str()));
    assert_eq!(context.metadata, sent.metadata);
    event
}

#[tokio::test]
async fn in_process_mock_replies_to_buttons_with_the_first_one() {
    let port = common::free_port();
    let channels = format!(
        r#"
[channels.demo]
provider = "mock"
webhook_secret_env = "T_HOOK"
[channels.demo.mock]
receipts_url = "http://127.0.0.1:{port}/webhooks/demo"
reply_after = "200ms"
reply_every = 1
"#
    );
    let mut config = common::config(&unique_prefix("mock-reply"), &channels, ENV);
    config.http.listen = format!("127.0.0.1:{port}").parse().expect("address");
    let app = TestApp::spawn(config).await;
    let buttons = json!({"type": "interactive", "interactive": {
        "type": "button",
        "body": {"text": "¿Confirmás el turno del martes?"},
        "action": {"buttons": [
            {"type": "reply", "reply": {"id": "confirmar", "title": "Confirmar"}},
            {"type": "reply", "reply": {"id": "cambiar", "title": "Cambiar"}}
        ]}
    }});
    app.enqueue(&json!({
        "id": "mock-reply-buttons", "channel": "demo", "to": TO,
        "message": buttons, "metadata": {"turno": 1847}
    }))
    .await;
    let events = app.outcomes(2).await;
    assert_eq!(events[1].status, Status::Sent, "{events:#?}");
    assert_eq!(
        events[1].metadata,
        Some(json!({"turno": 1847}).as_object().unwrap().clone())
    );
    let reply = expect_reply(&app, &events[1]).await;
    assert_eq!(reply.routing_key(), "reply.demo");
    let Content::Reply(pressed) = &reply.content else {
        panic!("{reply:#?}");
    };
    assert_eq!(pressed.kind, ReplyKind::Button);
    assert_eq!(pressed.id.as_deref(), Some("confirmar"));
    assert_eq!(pressed.title.as_deref(), Some("Confirmar"));
    assert!(
        app.try_next_inbound(Duration::from_millis(800))
            .await
            .is_none()
    );
}

/// A `mock` channel pointed at a simulator (`mock.gateway_url`) sends through its `/mock` API:
/// the receipts come back as the in-process mock's do, and the reply in the mock's format.
#[tokio::test]
async fn remote_mock_sends_receipts_and_a_reply_through_the_simulator() {
    let (listener, url) = bind().await;
    let channels = format!(
        r#"
[channels.demo]
provider = "mock"
api_key_env = "T_KEY"
webhook_secret_env = "T_HOOK"
timeout = "5s"
[channels.demo.mock]
gateway_url = "{url}"
"#
    );
    let config = common::config(&unique_prefix("mock-remote"), &channels, ENV);
    let app = TestApp::spawn(config).await;
    let core = MockCore::with_webhook_secret(
        MockOptions {
            receipts_url: Some(app.url("/webhooks/demo")),
            delivered_after: Some(Duration::from_millis(200)),
            read_after: Some(Duration::from_millis(400)),
            reply_after: Some(Duration::from_millis(300)),
            ..MockOptions::default()
        },
        Some(Secret::new(HOOK_SECRET)),
    );
    let stop = serve(listener, core.clone());
    app.enqueue(&json!({
        "id": "mock-remote-1", "channel": "demo", "to": TO,
        "message": {"type": "text", "text": {"body": "Hola"}},
        "metadata": {"order": 7}
    }))
    .await;
    let events = app.outcomes(4).await;
    let statuses: Vec<_> = events.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        [
            Status::Queued,
            Status::Sent,
            Status::Delivered,
            Status::Read
        ],
        "{events:#?}"
    );
    assert_eq!(events[1].provider.as_deref(), Some("mock"));
    let reply = expect_reply(&app, &events[1]).await;
    assert_eq!(reply.routing_key(), "text.demo");
    assert!(matches!(&reply.content, Content::Text(text) if text.body == "Gracias"));
    app.assert_quiet(Duration::from_millis(800)).await;
    // Read after the quiet spell: each counter moves once the receiver has answered.
    let stats = core.stats();
    assert_eq!(
        (stats.sent, stats.receipts_sent, stats.replies_sent),
        (1, 2, 1),
        "{stats:?}"
    );
    assert_eq!(
        stats.requests_by_key.len(),
        1,
        "sent with its idempotency key"
    );
    stop.cancel();
}
