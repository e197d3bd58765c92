//! The Meta adapter against Meta's documented request and response shapes (SPEC §2/§8, the
//! Meta section of RECEIPTS.md), over real HTTP: wiremock stands in for graph.facebook.com
//! and checks every byte that matters; then the adapter and the mock gateway's simulated
//! Meta API must agree with each other.
//!
//! Meta publishes no send document in `shared/providers/`, so the "document examples" are
//! SPEC §1's example job and a template with variables, as Meta's Cloud API expects them.

use std::time::Duration;

use mensajero::config::{ChannelConfig, MockOptions, Secret};
use mensajero::gateways::meta::Meta;
use mensajero::gateways::simulator::{self as mock, MockCore};
use mensajero::gateways::{Accepted, HttpGateway, SendContext};
use mensajero::job::Job;
use mensajero::retry::{ErrorClass, Sent};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PHONE_NUMBER_ID: &str = "106540352242922";
const TOKEN: &str = "EAAGm0PX4ZCpsBAtest";
const TO: &str = "+5491126032641";

fn channel(extra: &str) -> ChannelConfig {
    toml::from_str(&format!(
        "provider = \"meta\"\nbase_url = \"https://graph.facebook.com\"\nsender = \"{PHONE_NUMBER_ID}\"\n{extra}"
    ))
    .expect("valid channel")
}

fn gateway(base_url: &str, token: &str, timeout: Duration) -> HttpGateway {
    let adapter = Meta::new(
        PHONE_NUMBER_ID.into(),
        Secret::new(token),
        &channel("api_version = \"v21.0\""),
    );
    HttpGateway::new(Box::new(adapter), base_url, timeout).expect("client")
}

fn job(id: &str, message: Value) -> Job {
    let body = json!({"id": id, "channel": "meta-mx", "to": TO, "message": message});
    mensajero::job::parse(body.to_string().as_bytes()).expect("valid job")
}

fn ctx(key: &str) -> SendContext<'_> {
    SendContext {
        idempotency_key: key,
        attempt: 1,
    }
}

/// Meta's success answer, as RECEIPTS.md shows it.
fn sent(wamid: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": "5491126032641", "wa_id": "5491126032641"}],
        "messages": [{"id": wamid}]
    }))
}

/// A send Meta must receive exactly once, with exactly this body.
async fn expect_send(server: &MockServer, body: Value, answer: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(format!("/v21.0/{PHONE_NUMBER_ID}/messages")))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(body))
        .respond_with(answer)
        .expect(1)
        .mount(server)
        .await;
}

/// SPEC §1's example job, sent as Meta's Cloud API expects it.
#[tokio::test]
async fn spec_example_text_job_is_meta_send_request() {
    let server = MockServer::start().await;
    let wamid = "wamid.HBgNNTQ5MTEyNjAzMjY0MRUCABEYEjRBQkNERUYwMTIzNDU2Nzg5AA==";
    expect_send(
        &server,
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5491126032641",
            "type": "text",
            "text": {"body": "Hola! Tu pedido fue despachado."},
            "biz_opaque_callback_data": "ord-1847-confirm"
        }),
        sent(wamid),
    )
    .await;
    let spec_job = json!({
        "id": "ord-1847-confirm",
        "idempotency_key": "pedido-1847-confirmacion",
        "channel": "meta-mx",
        "to": "+5491126032641",
        "message": { "type": "text", "text": { "body": "Hola! Tu pedido fue despachado." } },
        "send_at": "2026-11-22T15:00:00Z",
        "expires_at": "2026-11-23T15:00:00Z",
        "metadata": { "order": 1847 },
        "provider_options": { }
    });
    let job = mensajero::job::parse(spec_job.to_string().as_bytes()).unwrap();
    let result = gateway(&server.uri(), TOKEN, Duration::from_secs(5))
        .send(&job, ctx("pedido-1847-confirmacion"))
        .await;
    assert_eq!(
        result,
        Ok(Accepted {
            provider_message_id: wamid.into(),
            replayed: false
        })
    );
}

/// A template with variables (SPEC §2's example, with a second variable and a URL button).
#[tokio::test]
async fn template_with_variables_is_meta_send_request() {
    let server = MockServer::start().await;
    let template = json!({
        "name": "confirmacion_pedido",
        "language": {"code": "es_AR"},
        "components": [
            {"type": "body", "parameters": [
                {"type": "text", "text": "María"},
                {"type": "text", "text": "#1847"}
            ]},
            {"type": "button", "sub_type": "url", "index": "0", "parameters": [
                {"type": "text", "text": "1847"}
            ]}
        ]
    });
    expect_send(
        &server,
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "5491126032641",
            "type": "template",
            "template": template,
            "biz_opaque_callback_data": "ord-1847-template"
        }),
        sent("wamid.template"),
    )
    .await;
    let result = gateway(&server.uri(), TOKEN, Duration::from_secs(5))
        .send(
            &job(
                "ord-1847-template",
                json!({"type": "template", "template": template}),
            ),
            ctx("k"),
        )
        .await;
    assert_eq!(result.unwrap().provider_message_id, "wamid.template");
}

/// Every other canonical type, each with what other gateways drop (caption, filename, reply
/// context, headers), arrives whole: Meta's body is the canonical message plus the envelope.
#[tokio::test]
async fn every_canonical_type_reaches_meta_whole() {
    let server = MockServer::start().await;
    let cases: Vec<(&str, Value)> = vec![
        (
            "image",
            json!({"type": "image", "image": {"link": "https://ejemplo.com/producto.jpg", "caption": "Producto nuevo"}}),
        ),
        (
            "video",
            json!({"type": "video", "video": {"id": "1013859600285441", "caption": "Unboxing"}}),
        ),
        (
            "audio",
            json!({"type": "audio", "audio": {"link": "https://ejemplo.com/a.ogg"}}),
        ),
        (
            "document",
            json!({"type": "document", "document": {"link": "https://ejemplo.com/f.pdf", "caption": "Factura", "filename": "factura.pdf"}}),
        ),
        (
            "sticker",
            json!({"type": "sticker", "sticker": {"id": "798882015472548"}}),
        ),
        (
            "reply",
            json!({"type": "text", "text": {"body": "Sí, llega mañana", "preview_url": false},
                   "context": {"message_id": "wamid.PREVIOUS"}}),
        ),
        (
            "buttons",
            json!({"type": "interactive", "interactive": {"type": "button",
                "header": {"type": "image", "image": {"link": "https://ejemplo.com/h.jpg"}},
                "body": {"text": "¿Confirmás?"}, "footer": {"text": "Tienda"},
                "action": {"buttons": [{"type": "reply", "reply": {"id": "si", "title": "Sí"}},
                                       {"type": "reply", "reply": {"id": "no", "title": "No"}}]}}}),
        ),
        (
            "list",
            json!({"type": "interactive", "interactive": {"type": "list",
                "header": {"type": "text", "text": "Turnos"}, "body": {"text": "Elegí"},
                "action": {"button": "Ver", "sections": [
                    {"title": "Mañana", "rows": [{"id": "m9", "title": "9 a 12 h", "description": "Temprano"}]},
                    {"title": "Tarde", "rows": [{"id": "t14", "title": "14 a 18 h"}]}]}}}),
        ),
        (
            "location",
            json!({"type": "location", "location": {"latitude": -34.6037, "longitude": -58.3816,
                   "name": "Obelisco", "address": "Av. 9 de Julio s/n"}}),
        ),
        (
            "contacts",
            json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Soporte Tienda", "first_name": "Soporte"},
                   "phones": [{"phone": "+34600000000", "type": "CELL"}]}]}),
        ),
        (
            "reaction",
            json!({"type": "reaction", "reaction": {"message_id": "wamid.PREVIOUS", "emoji": "👍"}}),
        ),
    ];
    for (id, message) in &cases {
        let mut expected = message.clone();
        let fields = expected.as_object_mut().unwrap();
        fields.insert("messaging_product".into(), json!("whatsapp"));
        fields.insert("recipient_type".into(), json!("individual"));
        fields.insert("to".into(), json!("5491126032641"));
        fields.insert("biz_opaque_callback_data".into(), json!(id));
        expect_send(&server, expected, sent(&format!("wamid.{id}"))).await;
    }
    let gateway = gateway(&server.uri(), TOKEN, Duration::from_secs(5));
    for (id, message) in cases {
        let result = gateway.send(&job(id, message), ctx(id)).await;
        assert_eq!(
            result.map(|a| a.provider_message_id),
            Ok(format!("wamid.{id}")),
            "{id}"
        );
    }
}

/// Meta's error body is classified by `error.code`, with the human detail kept.
#[tokio::test]
async fn error_response_is_classified_by_its_code() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "(#131047) Re-engagement message",
            "type": "OAuthException",
            "code": 131047,
            "error_data": {"messaging_product": "whatsapp",
                           "details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."},
            "fbtrace_id": "AzlAbCdEfGh"
        }})))
        .expect(1)
        .mount(&server)
        .await;
    let failure = gateway(&server.uri(), TOKEN, Duration::from_secs(5))
        .send(
            &job(
                "late",
                json!({"type": "text", "text": {"body": "¿Seguís ahí?"}}),
            ),
            ctx("late"),
        )
        .await
        .unwrap_err();
    assert_eq!(failure.class, ErrorClass::WindowExpired);
    assert_eq!(failure.provider_code.as_deref(), Some("131047"));
    assert_eq!(failure.sent, Sent::No);
    assert!(failure.message.contains("more than 24 hours"), "{failure}");
    assert!(failure.message.contains("AzlAbCdEfGh"));
}

/// A throughput error with `Retry-After` (not documented by Meta, honoured when present).
#[tokio::test]
async fn rate_limit_response_carries_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "3")
                .set_body_json(json!({"error": {"message": "(#130429) Rate limit hit",
                    "type": "OAuthException", "code": 130429, "error_subcode": 2494055,
                    "fbtrace_id": "x"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let failure = gateway(&server.uri(), TOKEN, Duration::from_secs(5))
        .send(
            &job("busy", json!({"type": "text", "text": {"body": "x"}})),
            ctx("busy"),
        )
        .await
        .unwrap_err();
    assert_eq!(failure.class, ErrorClass::RateLimited);
    assert_eq!(failure.retry_after, Some(Duration::from_secs(3)));
}

/// No answer in time: Meta may have sent it, and has no idempotency to make a resend safe.
#[tokio::test]
async fn timeout_is_transient_and_maybe_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(sent("wamid.late").set_delay(Duration::from_secs(2)))
        .expect(1)
        .mount(&server)
        .await;
    let failure = gateway(&server.uri(), TOKEN, Duration::from_millis(200))
        .send(
            &job("slow", json!({"type": "text", "text": {"body": "x"}})),
            ctx("slow"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (failure.class, failure.code.as_str(), failure.sent),
        (ErrorClass::Transient, "timeout", Sent::Maybe)
    );
}

async fn start_simulator(options: MockOptions) -> (MockCore, String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let core = MockCore::new(options);
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(mock::serve(listener, core.clone(), async move {
        token.cancelled().await
    }));
    (core, url, stop)
}

fn quiet() -> MockOptions {
    MockOptions {
        latency: Duration::ZERO,
        error_rate: 0.0,
        error_status: 503,
        ..MockOptions::default()
    }
}

/// The adapter and the mock gateway's simulated Meta API agree on requests, answers and errors.
#[tokio::test]
async fn adapter_and_simulator_agree() {
    let (core, url, stop) = start_simulator(quiet()).await;
    let gateway = gateway(&url, TOKEN, Duration::from_secs(5));
    let messages = [
        json!({"type": "text", "text": {"body": "Hola! Tu pedido fue despachado."}}),
        json!({"type": "template", "template": {"name": "confirmacion_pedido", "language": {"code": "es_AR"},
               "components": [{"type": "body", "parameters": [{"type": "text", "text": "María"}]}]}}),
        json!({"type": "image", "image": {"link": "https://ejemplo.com/p.jpg", "caption": "Nuevo"},
               "context": {"message_id": "wamid.PREVIOUS"}}),
        json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "¿Confirmás?"},
               "action": {"buttons": [{"type": "reply", "reply": {"id": "si", "title": "Sí"}}]}}}),
        json!({"type": "location", "location": {"latitude": -34.6, "longitude": -58.38}}),
        json!({"type": "reaction", "reaction": {"message_id": "wamid.PREVIOUS", "emoji": "👍"}}),
    ];
    let mut ids = Vec::new();
    for (i, message) in messages.into_iter().enumerate() {
        let id = format!("agree-{i}");
        let accepted = gateway
            .send(&job(&id, message), ctx(&id))
            .await
            .unwrap_or_else(|f| panic!("{id}: {f}"));
        assert!(accepted.provider_message_id.starts_with("wamid."));
        assert!(!accepted.replayed);
        ids.push(accepted.provider_message_id);
    }
    // Meta has no idempotency: the same job again is a second message with a new wamid.
    let again = gateway
        .send(
            &job(
                "agree-0",
                json!({"type": "text", "text": {"body": "Hola! Tu pedido fue despachado."}}),
            ),
            ctx("agree-0"),
        )
        .await
        .unwrap();
    assert!(!ids.contains(&again.provider_message_id));
    let stats = core.stats();
    assert_eq!((stats.sent, stats.replayed), (7, 0));

    // A missing token is refused in Meta's format, and the adapter reads it as `auth`.
    let failure = self::gateway(&url, "", Duration::from_secs(5))
        .send(
            &job("no-token", json!({"type": "text", "text": {"body": "x"}})),
            ctx("no-token"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (failure.class, failure.provider_code.as_deref()),
        (ErrorClass::Auth, Some("190"))
    );
    // Something the canonical rules refuse, slipped in through provider_options, gets
    // Meta's "(#100) Invalid parameter".
    let mut body = json!({"id": "typo", "channel": "meta-mx", "to": TO,
        "message": {"type": "text", "text": {"body": "x"}}, "provider_options": {"txt": "y"}});
    let typo = mensajero::job::parse(body.take().to_string().as_bytes()).unwrap();
    let failure = gateway.send(&typo, ctx("typo")).await.unwrap_err();
    assert_eq!(
        (failure.class, failure.provider_code.as_deref()),
        (ErrorClass::Invalid, Some("100"))
    );
    assert_eq!(core.stats().sent, 7);

    // Meta's `/{version}/{id}/messages` must not shadow Waspy's static `/api/v2/messages`.
    let waspy = reqwest::Client::new()
        .post(format!("{url}/api/v2/messages"))
        .bearer_auth("wspy_test")
        .json(&json!({"phoneNumberId": "p", "to": TO, "type": "text", "text": {"body": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(waspy.status(), 201);
    stop.cancel();
}

/// Injected errors come back in Meta's error format with the code that goes with the status.
#[tokio::test]
async fn simulator_injected_errors_classify_like_meta() {
    for (status, class, code) in [
        (429, ErrorClass::RateLimited, "130429"),
        (503, ErrorClass::Transient, "131000"),
        (401, ErrorClass::Auth, "190"),
    ] {
        let (core, url, stop) = start_simulator(MockOptions {
            latency: Duration::ZERO,
            error_rate: 1.0,
            error_status: status,
            ..MockOptions::default()
        })
        .await;
        let failure = gateway(&url, TOKEN, Duration::from_secs(5))
            .send(
                &job("inj", json!({"type": "text", "text": {"body": "x"}})),
                ctx("inj"),
            )
            .await
            .unwrap_err();
        assert_eq!(failure.class, class, "{status}");
        assert_eq!(failure.provider_code.as_deref(), Some(code));
        assert_eq!(core.stats().errors, 1);
        stop.cancel();
    }
}
