//! The Wazzup adapter against its own document (`shared/providers/wazzup-messages.txt`): each
//! example request reproduced from a canonical job, the documented answers classified, a
//! timeout, and agreement with the simulated Wazzup API of `mensajero mock-gateway`.

use std::time::Duration;

use mensajero::config::{ChannelConfig, MockOptions, Secret};
use mensajero::gateways::simulator::{self as mock, MockCore};
use mensajero::gateways::wazzup::Wazzup;
use mensajero::gateways::{Accepted, HttpGateway, SendContext};
use mensajero::job::{Job, parse};
use mensajero::retry::{ErrorClass, Sent};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{any, body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The channelId of the document's regular and interactive examples.
const CHANNEL: &str = "e0629e11-0f67-4567-92a9-2237e91ec1b9";
/// The channelId of the document's template example.
const TEMPLATE_CHANNEL: &str = "24197d5f-06de-421f-8576-9f6e6cb67f28";
const TEMPLATE_ID: &str = "6201005a-9a6f-486f-bdd5-e6cb86c76ddb";
const KEY: &str = "wz_test_0123456789";
/// The document's `chatId` placeholders ("string-chat-id") become this real number: mensajero
/// derives `chatId` from the job's E.164 `to`.
const TO: &str = "+79994621848";
const CHAT_ID: &str = "79994621848";
/// The `messageId` of the document's success answer.
const MESSAGE_ID: &str = "f66c53a6-957a-46b2-b41b-5a2ef4844bcb";
const REF: &str = "61e5a375-1760-452f-ad73-5318844ffc4f";

fn channel() -> ChannelConfig {
    toml::from_str(&format!(
        "provider = \"wazzup\"\n[templates]\nconfirmacion_pedido = \"{TEMPLATE_ID}\"\n"
    ))
    .expect("channel config")
}

fn gateway(base_url: &str, sender: &str, key: &str, timeout: Duration) -> HttpGateway {
    let adapter = Wazzup::new(sender.into(), Secret::new(key), &channel());
    HttpGateway::new(Box::new(adapter), base_url, timeout).expect("client")
}

fn job(extra: Value, message: Value) -> Job {
    let mut body = json!({"id": "job-1", "channel": "wazzup-ru", "to": TO, "message": message});
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    parse(&serde_json::to_vec(&body).unwrap()).expect("valid job")
}

fn ctx(key: &str) -> SendContext<'_> {
    SendContext {
        idempotency_key: key,
        attempt: 1,
    }
}

/// The document's success answer.
fn created() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({ "messageId": MESSAGE_ID, "chatId": CHAT_ID }))
}

async fn expect_exactly(server: &MockServer, name: &str, body: Value) {
    Mock::given(method("POST"))
        .and(path("/v3/message"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(&body))
        .respond_with(created())
        .expect(1)
        .named(name)
        .mount(server)
        .await;
}

fn accepted() -> Accepted {
    Accepted {
        provider_message_id: MESSAGE_ID.into(),
        replayed: false,
    }
}

/// "Mensaje regular": a text reply, with crmUserId through provider_options. The example's
/// placeholder crmMessageId becomes the job's key tagged with its channel (`crm_message_id`).
#[tokio::test]
async fn doc_regular_message() {
    let server = MockServer::start().await;
    expect_exactly(
        &server,
        "regular",
        json!({ "channelId": CHANNEL, "refMessageId": REF, "crmUserId": "string-user-id",
                "crmMessageId": "string-crm-message-id@e0629e11", "chatId": CHAT_ID, "chatType": "whatsapp",
                "text": "message text" }),
    )
    .await;
    let job = job(
        json!({"idempotency_key": "string-crm-message-id", "provider_options": {"crmUserId": "string-user-id"}}),
        json!({"type": "text", "text": {"body": "message text"}, "context": {"message_id": REF}}),
    );
    let result = gateway(&server.uri(), CHANNEL, KEY, Duration::from_secs(5))
        .send(&job, ctx(job.idempotency_key()))
        .await;
    assert_eq!(result, Ok(accepted()));
}

/// "Plantilla WABA": a template with one value and a payload on each of its three buttons.
/// The example sends no crmMessageId; mensajero always does (SPEC §4), so it is the one addition.
#[tokio::test]
async fn doc_waba_template() {
    let server = MockServer::start().await;
    expect_exactly(
        &server,
        "template",
        json!({ "channelId": TEMPLATE_CHANNEL, "chatType": "whatsapp", "chatId": CHAT_ID,
                "templateId": TEMPLATE_ID, "templateValues": ["value"],
                "buttonsObject": { "buttons": [ { "payload": "button_payload 1" },
                    { "payload": "button_payload 2" }, { "payload": "button_payload 3" } ] },
                "crmMessageId": "pedido-1847@24197d5f" }),
    )
    .await;
    let button = |i: u8| {
        json!({"type": "button", "sub_type": "quick_reply", "index": i.to_string(),
               "parameters": [{"type": "payload", "payload": format!("button_payload {}", i + 1)}]})
    };
    let job = job(
        json!({"idempotency_key": "pedido-1847"}),
        json!({"type": "template", "template": {"name": "confirmacion_pedido", "language": {"code": "es_AR"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "value"}]},
                           button(0), button(1), button(2)]}}),
    );
    let result = gateway(&server.uri(), TEMPLATE_CHANNEL, KEY, Duration::from_secs(5))
        .send(&job, ctx(job.idempotency_key()))
        .await;
    assert_eq!(result, Ok(accepted()));
}

/// "Mensaje interactivo de WABA": three reply buttons without payload. Canonical reply ids
/// equal to each button's position are what Wazzup answers without a payload, so none is sent.
#[tokio::test]
async fn doc_interactive_message() {
    let server = MockServer::start().await;
    expect_exactly(
        &server,
        "interactive",
        json!({ "channelId": CHANNEL, "refMessageId": REF, "crmUserId": "string-user-id",
                "crmMessageId": "string-crm-message-id@e0629e11", "chatId": CHAT_ID, "chatType": "whatsapp",
                "text": "message text",
                "buttonsObject": { "buttons": [ {"text": "Yes", "type": "text"},
                    {"text": "No", "type": "text"}, {"text": "Maybe", "type": "text"} ] } }),
    )
    .await;
    let reply =
        |id: &str, title: &str| json!({"type": "reply", "reply": {"id": id, "title": title}});
    let job = job(
        json!({"idempotency_key": "string-crm-message-id", "provider_options": {"crmUserId": "string-user-id"}}),
        json!({"type": "interactive", "context": {"message_id": REF}, "interactive": {"type": "button",
            "body": {"text": "message text"},
            "action": {"buttons": [reply("0", "Yes"), reply("1", "No"), reply("2", "Maybe")]}}}),
    );
    let result = gateway(&server.uri(), CHANNEL, KEY, Duration::from_secs(5))
        .send(&job, ctx(job.idempotency_key()))
        .await;
    assert_eq!(result, Ok(accepted()));
}

/// Media without caption go out as `contentUri` (the document has no media example; its
/// parameter table defines the field).
#[tokio::test]
async fn media_links_become_content_uri() {
    let server = MockServer::start().await;
    let kinds = ["image", "video", "audio", "document", "sticker"];
    for kind in kinds {
        let link = format!("https://ejemplo.com/archivo-{kind}");
        expect_exactly(
            &server,
            kind,
            json!({ "channelId": CHANNEL, "chatType": "whatsapp", "chatId": CHAT_ID,
                    "crmMessageId": format!("{kind}@e0629e11"), "contentUri": link }),
        )
        .await;
    }
    let gateway = gateway(&server.uri(), CHANNEL, KEY, Duration::from_secs(5));
    for kind in kinds {
        let mut message = json!({"type": kind});
        message[kind] = json!({"link": format!("https://ejemplo.com/archivo-{kind}")});
        let result = gateway.send(&job(json!({}), message), ctx(kind)).await;
        assert_eq!(result, Ok(accepted()), "{kind}");
    }
}

/// Types Wazzup cannot express fail before any call.
#[tokio::test]
async fn unsupported_messages_never_reach_the_gateway() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let gateway = gateway(&server.uri(), CHANNEL, KEY, Duration::from_secs(5));
    for message in [
        json!({"type": "image", "image": {"link": "https://ejemplo.com/p.jpg", "caption": "Producto"}}),
        json!({"type": "location", "location": {"latitude": -34.6, "longitude": -58.38}}),
        json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Soporte"}}]}),
        json!({"type": "reaction", "reaction": {"message_id": MESSAGE_ID, "emoji": "👍"}}),
    ] {
        let failure = gateway
            .send(&job(json!({}), message.clone()), ctx("k"))
            .await
            .unwrap_err();
        assert_eq!(failure.class, ErrorClass::Invalid, "{message}");
        assert_eq!(failure.code, "unsupported_message_type");
        assert!(failure.message.contains("wazzup"), "{}", failure.message);
    }
}

/// The document's error bodies, as Wazzup sends them.
#[tokio::test]
async fn documented_error_answers() {
    let cases = [
        (
            json!({ "status": 400, "requestId": "7ca68797d127735e72b066b0080e2cc0", "error": "INVALID_MESSAGE_DATA",
                    "description": "Los datos del mensaje no son válidos", "data": { "fields": ["chatId"] } }),
            Err(ErrorClass::Invalid),
        ),
        (
            json!({ "status": 400, "requestId": "21a9be7692d378b0270e7fc1d993381a", "error": "WRONG_TRANSPORT",
                    "description": "No puedes enviar un mensaje de WhatsApp a un chat de VK",
                    "data": { "channelId": "dffa1c7b-6db8-4b8f-b559-91166aba879e", "transport": "whatsapp", "chatType": "vk" } }),
            Err(ErrorClass::Channel),
        ),
        (
            json!({ "status": 400, "requestId": "c1005276e8a2b5aa23fcc94407d39f49", "error": "REPEATED_CRM_MESSAGE_ID",
                    "description": "Ya has enviado un mensaje con el mismo crmMessageId", "data": { "crmMessageId": "1" } }),
            Ok("crm:1"),
        ),
    ];
    for (body, expected) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v3/message"))
            .respond_with(ResponseTemplate::new(400).set_body_json(&body))
            .expect(1)
            .mount(&server)
            .await;
        let result = gateway(&server.uri(), CHANNEL, KEY, Duration::from_secs(5))
            .send(
                &job(json!({}), json!({"type": "text", "text": {"body": "Hola"}})),
                ctx("1"),
            )
            .await;
        match expected {
            Ok(id) => assert_eq!(
                result,
                Ok(Accepted {
                    provider_message_id: id.into(),
                    replayed: true
                })
            ),
            Err(class) => {
                let failure = result.unwrap_err();
                assert_eq!(failure.class, class, "{body}");
                assert_eq!(failure.provider_code.as_deref(), body["error"].as_str());
                assert_eq!(Some(failure.message.as_str()), body["description"].as_str());
                assert_eq!(failure.sent, Sent::No);
            }
        }
    }
}

/// Above 500 requests per 5 s: 429, retried after the gateway's Retry-After.
#[tokio::test]
async fn rate_limited() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "3")
                .set_body_json(json!({"error": "TOO_MANY_REQUESTS", "description": "slow down"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let failure = gateway(&server.uri(), CHANNEL, KEY, Duration::from_secs(5))
        .send(
            &job(json!({}), json!({"type": "text", "text": {"body": "Hola"}})),
            ctx("k"),
        )
        .await
        .unwrap_err();
    assert_eq!(failure.class, ErrorClass::RateLimited);
    assert_eq!(failure.retry_after, Some(Duration::from_secs(3)));
}

/// No answer in time: transient, and the message may have gone out.
#[tokio::test]
async fn timeout_is_transient_and_maybe_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created().set_delay(Duration::from_secs(2)))
        .expect(1)
        .mount(&server)
        .await;
    let failure = gateway(&server.uri(), CHANNEL, KEY, Duration::from_millis(200))
        .send(
            &job(json!({}), json!({"type": "text", "text": {"body": "Hola"}})),
            ctx("k"),
        )
        .await
        .unwrap_err();
    assert_eq!(failure.class, ErrorClass::Transient);
    assert_eq!(failure.code, "timeout");
    assert_eq!(failure.sent, Sent::Maybe);
}

/// The adapter and the simulated Wazzup API agree: canonical jobs are accepted, a repeated
/// crmMessageId counts as already sent, and the simulator's own errors classify as documented.
#[tokio::test]
async fn adapter_and_mock_gateway_agree() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let core = MockCore::new(MockOptions {
        latency: Duration::ZERO,
        error_rate: 0.0,
        error_status: 503,
        ..MockOptions::default()
    });
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(mock::serve(listener, core.clone(), async move {
        token.cancelled().await
    }));
    let wazzup = gateway(&url, CHANNEL, KEY, Duration::from_secs(5));

    let messages = [
        json!({"type": "text", "text": {"body": "Hola"}}),
        json!({"type": "text", "text": {"body": "Respuesta"}, "context": {"message_id": REF}}),
        json!({"type": "image", "image": {"link": "https://ejemplo.com/p.jpg"}}),
        json!({"type": "template", "template": {"name": "confirmacion_pedido", "language": {"code": "es_AR"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "María"}]}]}}),
        json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "¿Confirmás?"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "si", "title": "Sí"}}]}}}),
    ];
    let mut ids = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let key = format!("agree-{i}");
        let accepted = wazzup
            .send(&job(json!({}), message.clone()), ctx(&key))
            .await
            .unwrap_or_else(|f| panic!("{message}: {f:?}"));
        assert!(!accepted.replayed);
        assert!(core.message(&accepted.provider_message_id).is_some());
        ids.push(accepted.provider_message_id);
    }
    // A resend under the same key: Wazzup's REPEATED_CRM_MESSAGE_ID, counted as sent.
    let again = wazzup
        .send(&job(json!({}), messages[0].clone()), ctx("agree-0"))
        .await;
    assert_eq!(
        again,
        Ok(Accepted {
            provider_message_id: "crm:agree-0@e0629e11".into(),
            replayed: true
        })
    );
    let stats = core.stats();
    assert_eq!((stats.sent, stats.replayed), (messages.len() as u64, 1));

    // A sender that is not a channel UUID: INVALID_MESSAGE_DATA naming channelId → channel.
    let failure = gateway(&url, "not-a-uuid", KEY, Duration::from_secs(5))
        .send(&job(json!({}), messages[0].clone()), ctx("bad-sender"))
        .await
        .unwrap_err();
    assert_eq!(failure.class, ErrorClass::Channel);
    assert_eq!(
        failure.provider_code.as_deref(),
        Some("INVALID_MESSAGE_DATA")
    );
    // No API key: the simulator's 401 → auth.
    let failure = gateway(&url, CHANNEL, "", Duration::from_secs(5))
        .send(&job(json!({}), messages[0].clone()), ctx("no-key"))
        .await
        .unwrap_err();
    assert_eq!(failure.class, ErrorClass::Auth);
    stop.cancel();
}

/// Injected simulator errors arrive in Wazzup's error format and classify by it.
#[tokio::test]
async fn mock_gateway_injected_errors_classify() {
    for (status, class) in [(503, ErrorClass::Transient), (429, ErrorClass::RateLimited)] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let core = MockCore::new(MockOptions {
            latency: Duration::ZERO,
            error_rate: 1.0,
            error_status: status,
            ..MockOptions::default()
        });
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(mock::serve(listener, core, async move {
            token.cancelled().await
        }));
        let failure = gateway(&url, CHANNEL, KEY, Duration::from_secs(5))
            .send(
                &job(json!({}), json!({"type": "text", "text": {"body": "Hola"}})),
                ctx("k"),
            )
            .await
            .unwrap_err();
        assert_eq!(failure.class, class, "{status}");
        stop.cancel();
    }
}
