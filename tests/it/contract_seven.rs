//! The seven.io adapter against its own document (`shared/providers/seven-waba-messages.txt`):
//! every example request reproduced from a canonical job, every documented error code
//! classified through HTTP, a 200 that failed, a timeout, and agreement with the simulated
//! seven.io API of `mensajero mock-gateway`.

use std::time::Duration;

use mensajero::config::{MockOptions, Secret};
use mensajero::gateways::seven::send::{self as seven, ERROR_TABLE, Meaning, Seven};
use mensajero::gateways::simulator::{self as mock, MockCore};
use mensajero::gateways::{Accepted, HttpGateway, SendContext};
use mensajero::job::{Job, parse};
use mensajero::retry::{ErrorClass, Failure, Sent};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{any, body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The document's API key placeholder, sender and recipient.
const KEY: &str = "SU_CLAVE_API";
const FROM: &str = "4915112345678";
const TO: &str = "+4917612345678";
const TO_DIGITS: &str = "4917612345678";
/// The id of the document's success answer.
const MESSAGE_ID: &str = "12345678";
/// The idempotency key of the document jobs; it fits seven.io's alphabet, so it is the
/// `foreign_id` as it is.
const IDEMPOTENCY_KEY: &str = "pedido-1847";

fn gateway(base_url: &str, sender: &str, key: &str, timeout: Duration) -> HttpGateway {
    let adapter = Seven::new(sender.into(), Secret::new(key));
    HttpGateway::new(Box::new(adapter), base_url, timeout).expect("client")
}

fn job(message: Value) -> Job {
    let body = json!({"id": "job-1", "idempotency_key": IDEMPOTENCY_KEY, "channel": "seven-de",
                      "to": TO, "message": message});
    parse(&serde_json::to_vec(&body).unwrap()).expect("valid job")
}

fn ctx(key: &str) -> SendContext<'_> {
    SendContext {
        idempotency_key: key,
        attempt: 1,
    }
}

/// Send a plain text through the gateway at `server` and return why it failed.
async fn hola_failure(server: &MockServer, timeout: Duration) -> Failure {
    gateway(&server.uri(), FROM, KEY, timeout)
        .send(
            &job(json!({"type": "text", "text": {"body": "Hola"}})),
            ctx("k"),
        )
        .await
        .unwrap_err()
}

/// The document's success answer for a send.
fn success() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "success": "100", "total_price": 0.0735, "balance": 123.45, "debug": "false", "sms_type": "WA",
        "messages": [{"id": MESSAGE_ID, "sender": FROM, "recipient": TO_DIGITS,
            "text": "{\"type\":\"template\",\"template\":\"hello_world\",\"language\":\"de\",\"rendered\":{\"body\":\"Hallo Welt!\"}}",
            "encoding": "gsm", "label": null, "parts": 1, "udh": null, "is_binary": false,
            "price": 0.0735, "channel": "WA", "success": true, "error": null, "error_text": null}]
    }))
}

/// Send `message` and require exactly the document's request: method, path, key, JSON body.
/// The document's examples send no `foreign_id`; mensajero always does (SPEC §4), so it is
/// the one addition to each of them.
async fn doc_example(name: &str, message: Value, mut expected: Value) {
    expected["foreign_id"] = json!(IDEMPOTENCY_KEY);
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/waba/messages"))
        .and(header("x-api-key", KEY))
        .and(header("content-type", "application/json"))
        .and(body_json(&expected))
        .respond_with(success())
        .expect(1)
        .named(name)
        .mount(&server)
        .await;
    let job = job(message);
    let result = gateway(&server.uri(), FROM, KEY, Duration::from_secs(5))
        .send(&job, ctx(job.idempotency_key()))
        .await;
    assert_eq!(
        result,
        Ok(Accepted {
            provider_message_id: MESSAGE_ID.into(),
            replayed: false
        }),
        "{name}"
    );
}

#[tokio::test]
async fn doc_template_message() {
    doc_example(
        "Mensaje de plantilla",
        json!({"type": "template", "template": {"name": "hello_world", "language": {"code": "de"}}}),
        json!({"from": FROM, "to": TO_DIGITS, "type": "template", "template": "hello_world", "language": "de"}),
    )
    .await;
}

#[tokio::test]
async fn doc_template_with_parameters() {
    doc_example(
        "Plantilla con parámetros",
        json!({"type": "template", "template": {"name": "order_confirmation", "language": {"code": "de"},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "Max Mustermann"},
                                                {"type": "text", "text": "ORD-12345"}]},
                {"type": "button", "sub_type": "url", "index": "0",
                 "parameters": [{"type": "text", "text": "ORD-12345"}]}]}}),
        json!({"from": FROM, "to": TO_DIGITS, "type": "template", "template": "order_confirmation",
               "language": "de", "components": {
                   "body": ["Max Mustermann", "ORD-12345"],
                   "buttons": [{"type": "button", "sub_type": "url",
                                "parameters": [{"type": "text", "text": "ORD-12345"}]}]}}),
    )
    .await;
}

#[tokio::test]
async fn doc_header_body_and_buttons() {
    doc_example(
        "Encabezado + Cuerpo + Botones",
        json!({"type": "template", "template": {"name": "appointment_reminder", "language": {"code": "es"},
            "components": [
                {"type": "header", "parameters": [{"type": "text", "text": "Confirmación de cita"}]},
                {"type": "body", "parameters": [{"type": "text", "text": "Max Mustermann"},
                    {"type": "text", "text": "15/02/2026"}, {"type": "text", "text": "14:00"},
                    {"type": "text", "text": "Dr. Schmidt"}]},
                {"type": "button", "sub_type": "url", "index": 0,
                 "parameters": [{"type": "text", "text": "abc123"}]}]}}),
        json!({"from": FROM, "to": TO_DIGITS, "type": "template", "template": "appointment_reminder",
               "language": "es", "components": {
                   "header": ["Confirmación de cita"],
                   "body": ["Max Mustermann", "15/02/2026", "14:00", "Dr. Schmidt"],
                   "buttons": [{"type": "button", "sub_type": "url",
                                "parameters": [{"type": "text", "text": "abc123"}]}]}}),
    )
    .await;
}

#[tokio::test]
async fn doc_image_header_and_body() {
    doc_example(
        "Encabezado de imagen + Cuerpo",
        json!({"type": "template", "template": {"name": "product_available", "language": {"code": "es"},
            "components": [
                {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://example.com/product.jpg"}}]},
                {"type": "body", "parameters": [{"type": "text", "text": "Premium Widget"}]}]}}),
        json!({"from": FROM, "to": TO_DIGITS, "type": "template", "template": "product_available",
               "language": "es", "components": {
                   "header": ["https://example.com/product.jpg"], "body": ["Premium Widget"]}}),
    )
    .await;
}

#[tokio::test]
async fn doc_text_message() {
    doc_example(
        "Mensaje de texto libre",
        json!({"type": "text", "text": {"body": "Gracias por su mensaje, nos ocuparemos de ello."}}),
        json!({"from": FROM, "to": TO_DIGITS, "text": "Gracias por su mensaje, nos ocuparemos de ello."}),
    )
    .await;
}

#[tokio::test]
async fn doc_media_messages() {
    let cases = [
        (
            json!({"type": "image", "image": {"link": "https://example.com/photo.jpg", "caption": "¡Mire esta imagen!"}}),
            json!({"type": "image", "url": "https://example.com/photo.jpg", "caption": "¡Mire esta imagen!"}),
        ),
        (
            json!({"type": "video", "video": {"link": "https://example.com/video.mp4", "caption": "Vea este vídeo"}}),
            json!({"type": "video", "url": "https://example.com/video.mp4", "caption": "Vea este vídeo"}),
        ),
        (
            json!({"type": "audio", "audio": {"link": "https://example.com/audio.mp3"}}),
            json!({"type": "audio", "url": "https://example.com/audio.mp3"}),
        ),
        (
            json!({"type": "document", "document": {"link": "https://example.com/factura.pdf",
                "filename": "factura.pdf", "caption": "Su factura"}}),
            json!({"type": "document", "url": "https://example.com/factura.pdf",
                   "filename": "factura.pdf", "caption": "Su factura"}),
        ),
        (
            json!({"type": "sticker", "sticker": {"link": "https://example.com/sticker.webp"}}),
            json!({"type": "sticker", "url": "https://example.com/sticker.webp"}),
        ),
    ];
    for (message, mut expected) in cases {
        expected["from"] = json!(FROM);
        expected["to"] = json!(TO_DIGITS);
        let name = message["type"].as_str().unwrap().to_string();
        doc_example(&name, message, expected).await;
    }
}

#[tokio::test]
async fn doc_location_message() {
    doc_example(
        "Mensaje de ubicación",
        json!({"type": "location", "location": {"latitude": 48.8566, "longitude": 2.3522,
            "name": "Torre Eiffel", "address": "5 Avenue Anatole France, 75007 París"}}),
        json!({"from": FROM, "to": TO_DIGITS, "type": "location", "latitude": 48.8566,
               "longitude": 2.3522, "name": "Torre Eiffel",
               "address": "5 Avenue Anatole France, 75007 París"}),
    )
    .await;
}

#[tokio::test]
async fn doc_contacts_message() {
    doc_example(
        "Mensaje de contactos",
        json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Juan García",
            "first_name": "Juan", "last_name": "García"}, "phones": [{"phone": "+34123456789"}]}]}),
        json!({"from": FROM, "to": TO_DIGITS, "type": "contacts", "contacts": [
            {"name": {"first_name": "Juan", "last_name": "García"}, "phones": [{"phone": "+34123456789"}]}]}),
    )
    .await;
}

#[tokio::test]
async fn doc_interactive_buttons() {
    let reply =
        |id: &str, title: &str| json!({"type": "reply", "reply": {"id": id, "title": title}});
    doc_example(
        "Mensaje interactivo de botones",
        json!({"type": "interactive", "interactive": {"type": "button",
            "header": {"type": "text", "text": "Soporte"}, "body": {"text": "¿Cómo podemos ayudarle?"},
            "footer": {"text": "Toque un botón"}, "action": {"buttons": [
                reply("btn_ventas", "Ventas"), reply("btn_soporte", "Soporte"), reply("btn_otro", "Otro")]}}}),
        json!({"from": FROM, "to": TO_DIGITS, "type": "interactive", "interactive_type": "button",
               "header": "Soporte", "body": "¿Cómo podemos ayudarle?", "footer": "Toque un botón",
               "buttons": [{"id": "btn_ventas", "title": "Ventas"}, {"id": "btn_soporte", "title": "Soporte"},
                           {"id": "btn_otro", "title": "Otro"}]}),
    )
    .await;
}

#[tokio::test]
async fn doc_interactive_list() {
    doc_example(
        "Mensaje interactivo de lista",
        json!({"type": "interactive", "interactive": {"type": "list",
            "header": {"type": "text", "text": "Nuestros Productos"},
            "body": {"text": "Explore nuestras categorías:"}, "footer": {"text": "Seleccione una opción"},
            "action": {"button": "Ver opciones", "sections": [{"title": "Electrónica", "rows": [
                {"id": "smartphones", "title": "Smartphones", "description": "Últimos modelos"},
                {"id": "portatiles", "title": "Portátiles", "description": "Business & Gaming"}]}]}}}),
        json!({"from": FROM, "to": TO_DIGITS, "type": "interactive", "interactive_type": "list",
               "header": "Nuestros Productos", "body": "Explore nuestras categorías:",
               "footer": "Seleccione una opción", "button_text": "Ver opciones",
               "sections": [{"title": "Electrónica", "rows": [
                   {"id": "smartphones", "title": "Smartphones", "description": "Últimos modelos"},
                   {"id": "portatiles", "title": "Portátiles", "description": "Business & Gaming"}]}]}),
    )
    .await;
}

/// "Reacción": the events endpoint, with exactly the document's three fields.
#[tokio::test]
async fn doc_reaction_event() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/waba/events"))
        .and(header("x-api-key", KEY))
        .and(body_json(
            json!({"event": "reaction", "msg_id": "123456789", "emoji": "👍"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(1)
        .mount(&server)
        .await;
    let job =
        job(json!({"type": "reaction", "reaction": {"message_id": "123456789", "emoji": "👍"}}));
    let accepted = gateway(&server.uri(), FROM, KEY, Duration::from_secs(5))
        .send(&job, ctx(job.idempotency_key()))
        .await
        .expect("accepted");
    assert!(
        accepted
            .provider_message_id
            .starts_with(seven::EVENT_ID_PREFIX)
    );
}

/// `provider_options` reach the body (`label`, `ttl`), and a long key becomes a hashed id.
#[tokio::test]
async fn provider_options_and_hashed_foreign_id() {
    let server = MockServer::start().await;
    let long_key = "k".repeat(100);
    let expected = json!({"from": FROM, "to": TO_DIGITS, "text": "Hola", "label": "pedidos",
                          "ttl": 60, "foreign_id": seven::foreign_id(&long_key)});
    Mock::given(method("POST"))
        .and(path("/api/waba/messages"))
        .and(body_json(&expected))
        .respond_with(success())
        .expect(1)
        .mount(&server)
        .await;
    let mut job = job(json!({"type": "text", "text": {"body": "Hola"}}));
    job.provider_options = Some(
        json!({"label": "pedidos", "ttl": 60})
            .as_object()
            .unwrap()
            .clone(),
    );
    let result = gateway(&server.uri(), FROM, KEY, Duration::from_secs(5))
        .send(&job, ctx(&long_key))
        .await;
    assert!(result.is_ok(), "{result:?}");
    assert!(expected["foreign_id"].as_str().unwrap().len() <= seven::MAX_FOREIGN_ID);
}

/// Types seven.io cannot express fail before any call.
#[tokio::test]
async fn unsupported_messages_never_reach_the_gateway() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let gateway = gateway(&server.uri(), FROM, KEY, Duration::from_secs(5));
    for message in [
        json!({"type": "text", "text": {"body": "Hola"}, "context": {"message_id": MESSAGE_ID}}),
        json!({"type": "image", "image": {"id": "1013859600285441"}}),
        json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "?"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "A"}}]}}}),
        json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Soporte"}}]}),
    ] {
        let failure = gateway
            .send(&job(message.clone()), ctx("k"))
            .await
            .unwrap_err();
        assert_eq!(failure.class, ErrorClass::Invalid, "{message}");
        assert_eq!(failure.code, "unsupported_message_type");
        assert!(failure.message.contains("seven"), "{}", failure.message);
    }
}

/// Every documented code, as the document's error body, through HTTP; each expectation is
/// written here independently of the adapter's table, and every table row must have one.
#[tokio::test]
async fn every_documented_code_through_http() {
    let expected = [
        ("7002001", ErrorClass::WindowExpired),
        ("400", ErrorClass::Invalid),
        ("404", ErrorClass::Invalid),
        ("900", ErrorClass::Auth),
        ("902", ErrorClass::Auth),
    ];
    for (code, meaning) in ERROR_TABLE {
        if *meaning == Meaning::Accepted {
            assert_eq!(*code, seven::SUCCESS);
            continue;
        }
        let (_, class) = expected
            .iter()
            .find(|(c, _)| c == code)
            .unwrap_or_else(|| panic!("no expectation for table row {code}"));
        for status in [400, 200] {
            let server = MockServer::start().await;
            let body = json!({"success": false, "error_code": code.parse::<u64>().unwrap(),
                              "error_message": "mensaje"});
            Mock::given(method("POST"))
                .and(path("/api/waba/messages"))
                .respond_with(
                    ResponseTemplate::new(status)
                        .insert_header("retry-after", "5")
                        .set_body_json(&body),
                )
                .expect(1)
                .mount(&server)
                .await;
            let failure = hola_failure(&server, Duration::from_secs(5)).await;
            assert_eq!(failure.class, *class, "{code} under HTTP {status}");
            assert_eq!(failure.provider_code.as_deref(), Some(*code));
            assert_eq!(failure.message, "mensaje");
            assert_eq!(failure.retry_after, Some(Duration::from_secs(5)));
            assert_eq!(failure.sent, Sent::No);
        }
    }
}

/// The document's "Respuesta de error" example names the sender: an operator's fix.
#[tokio::test]
async fn documented_sender_error_is_a_channel_problem() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "success": false, "error_code": 400, "error_message": "Invalid WhatsApp sender number"})))
        .mount(&server)
        .await;
    let failure = hola_failure(&server, Duration::from_secs(5)).await;
    assert_eq!(failure.class, ErrorClass::Channel);
}

/// A 200 whose body is an error, or whose `success` is not "100", is a failure.
#[tokio::test]
async fn two_hundreds_that_failed() {
    let cases = [
        (json!({"success": "900"}), ErrorClass::Auth, Sent::No),
        (
            json!({"success": "7002001", "messages": []}),
            ErrorClass::WindowExpired,
            Sent::No,
        ),
        (
            json!({"success": false, "error_code": 902, "error_message": "scope"}),
            ErrorClass::Auth,
            Sent::No,
        ),
        // Accepted-looking but without an id: the message may be on its way.
        (
            json!({"success": "100", "messages": []}),
            ErrorClass::Transient,
            Sent::Maybe,
        ),
    ];
    for (body, class, sent) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(&body))
            .expect(1)
            .mount(&server)
            .await;
        let failure = hola_failure(&server, Duration::from_secs(5)).await;
        assert_eq!((failure.class, failure.sent), (class, sent), "{body}");
    }
}

/// Undocumented statuses: 429 waits for Retry-After; 5xx is transient, and maybe sent unless
/// it is a 503 (the service refused the work).
#[tokio::test]
async fn undocumented_statuses() {
    for (status, class, sent) in [
        (429, ErrorClass::RateLimited, Sent::No),
        (503, ErrorClass::Transient, Sent::No),
        (500, ErrorClass::Transient, Sent::Maybe),
        (502, ErrorClass::Transient, Sent::Maybe),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).insert_header("retry-after", "3"))
            .expect(1)
            .mount(&server)
            .await;
        let failure = hola_failure(&server, Duration::from_secs(5)).await;
        assert_eq!((failure.class, failure.sent), (class, sent), "{status}");
        assert_eq!(failure.retry_after, Some(Duration::from_secs(3)));
    }
}

/// No answer in time: transient, and the message may have gone out.
#[tokio::test]
async fn timeout_is_transient_and_maybe_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(success().set_delay(Duration::from_secs(2)))
        .expect(1)
        .mount(&server)
        .await;
    let failure = hola_failure(&server, Duration::from_millis(200)).await;
    assert_eq!(failure.class, ErrorClass::Transient);
    assert_eq!(failure.code, "timeout");
    assert_eq!(failure.sent, Sent::Maybe);
}

/// A redirect (here `http://` → `https://`, the usual wrong `base_url`) is not followed — a
/// followed 301 would re-send the POST as a GET — and fails as channel trouble that provably
/// did not send, naming the target without its query. The check sits in `HttpGateway`, so it
/// holds for every gateway.
#[tokio::test]
async fn a_redirect_is_not_followed_and_is_channel_trouble() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(301).insert_header(
            "location",
            "https://gateway.example/api/sms?p=SECRET_IN_QUERY",
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(success())
        .expect(0)
        .mount(&server)
        .await;
    let failure = hola_failure(&server, Duration::from_secs(2)).await;
    assert_eq!(failure.class, ErrorClass::Channel);
    assert_eq!(failure.code, "redirect");
    assert_eq!(failure.sent, Sent::No);
    assert!(
        failure
            .message
            .contains("HTTP 301 redirecting to https://gateway.example/api/sms:"),
        "{}",
        failure.message
    );
    assert!(!failure.message.contains("SECRET"), "{}", failure.message);
}

async fn start_mock(options: MockOptions) -> (String, MockCore, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let core = MockCore::new(options);
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(mock::serve(listener, core.clone(), async move {
        token.cancelled().await
    }));
    (url, core, stop)
}

/// The adapter and the simulated seven.io API agree: every expressible canonical type is
/// accepted, a reaction to a sent message goes through the events endpoint, a repeated
/// foreign_id gets the original id, and the simulator's own errors classify as documented.
#[tokio::test]
async fn adapter_and_mock_gateway_agree() {
    let (url, core, stop) = start_mock(MockOptions {
        latency: Duration::ZERO,
        error_rate: 0.0,
        error_status: 503,
        ..MockOptions::default()
    })
    .await;
    let seven = gateway(&url, FROM, KEY, Duration::from_secs(5));
    let reply = |id: &str| json!({"type": "reply", "reply": {"id": id, "title": id}});
    let messages = [
        json!({"type": "text", "text": {"body": "Hola"}}),
        json!({"type": "image", "image": {"link": "https://ejemplo.com/p.jpg", "caption": "Producto"}}),
        json!({"type": "video", "video": {"link": "https://ejemplo.com/v.mp4"}}),
        json!({"type": "audio", "audio": {"link": "https://ejemplo.com/a.mp3"}}),
        json!({"type": "document", "document": {"link": "https://ejemplo.com/factura.pdf"}}),
        json!({"type": "sticker", "sticker": {"link": "https://ejemplo.com/s.webp"}}),
        json!({"type": "template", "template": {"name": "confirmacion_pedido", "language": {"code": "es_AR"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "María"}]}]}}),
        json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "¿Confirmás?"},
            "action": {"buttons": [reply("si"), reply("no")]}}}),
        json!({"type": "interactive", "interactive": {"type": "list", "body": {"text": "Elegí"},
            "action": {"button": "Ver", "sections": [{"rows": [{"id": "a", "title": "A"}]}]}}}),
        json!({"type": "location", "location": {"latitude": -34.6, "longitude": -58.38}}),
        json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Soporte"},
            "phones": [{"phone": "+5491100000000", "type": "WORK"}]}]}),
    ];
    let mut ids = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let key = format!("agree-{i}");
        let accepted = seven
            .send(&job(message.clone()), ctx(&key))
            .await
            .unwrap_or_else(|f| panic!("{message}: {f:?}"));
        assert!(!accepted.replayed);
        assert!(core.message(&accepted.provider_message_id).is_some());
        ids.push(accepted.provider_message_id);
    }
    // A resend under the same key: the simulator dedupes by foreign_id.
    let again = seven.send(&job(messages[0].clone()), ctx("agree-0")).await;
    assert_eq!(again.map(|a| a.provider_message_id), Ok(ids[0].clone()));
    let stats = core.stats();
    assert_eq!((stats.sent, stats.replayed), (messages.len() as u64, 1));
    assert_eq!(stats.requests_by_key.get("agree-0"), Some(&2));

    // A reaction to a message it sent, then to one it never did (the document's 404).
    let reaction =
        |id: &str| json!({"type": "reaction", "reaction": {"message_id": id, "emoji": "👍"}});
    let accepted = seven
        .send(&job(reaction(&ids[0])), ctx("react"))
        .await
        .expect("reaction");
    assert!(
        accepted
            .provider_message_id
            .starts_with(seven::EVENT_ID_PREFIX)
    );
    let failure = seven
        .send(&job(reaction("no-such-message")), ctx("react-2"))
        .await
        .unwrap_err();
    assert_eq!(failure.class, ErrorClass::Invalid);
    assert_eq!(failure.provider_code.as_deref(), Some("404"));

    // No API key: seven.io's 900 → auth.
    let failure = gateway(&url, FROM, "", Duration::from_secs(5))
        .send(&job(messages[0].clone()), ctx("no-key"))
        .await
        .unwrap_err();
    assert_eq!(failure.class, ErrorClass::Auth);
    assert_eq!(failure.provider_code.as_deref(), Some("900"));
    stop.cancel();
}

/// Injected simulator errors arrive in seven.io's error body and classify by it.
#[tokio::test]
async fn mock_gateway_injected_errors_classify() {
    for (status, class, retry_after) in [
        (503, ErrorClass::Transient, None),
        (429, ErrorClass::RateLimited, Some(Duration::from_secs(1))),
        (401, ErrorClass::Auth, None),
    ] {
        let (url, _core, stop) = start_mock(MockOptions {
            latency: Duration::ZERO,
            error_rate: 1.0,
            error_status: status,
            ..MockOptions::default()
        })
        .await;
        let failure = gateway(&url, FROM, KEY, Duration::from_secs(5))
            .send(
                &job(json!({"type": "text", "text": {"body": "Hola"}})),
                ctx("k"),
            )
            .await
            .unwrap_err();
        assert_eq!(failure.class, class, "{status}");
        assert_eq!(failure.retry_after, retry_after, "{status}");
        stop.cancel();
    }
}

/// The simulator's `DELETE /api/waba/messages/{id}`: its messages are never scheduled, so a
/// known id answers the document's "already sent", an unknown one its 404 body.
#[tokio::test]
async fn mock_gateway_delete_answers_as_documented() {
    let (url, _core, stop) = start_mock(MockOptions {
        latency: Duration::ZERO,
        error_rate: 0.0,
        error_status: 503,
        ..MockOptions::default()
    })
    .await;
    let sent = gateway(&url, FROM, KEY, Duration::from_secs(5))
        .send(
            &job(json!({"type": "text", "text": {"body": "Hola"}})),
            ctx("del"),
        )
        .await
        .expect("sent");
    let client = reqwest::Client::new();
    let delete = |id: String| {
        client
            .delete(format!("{url}/api/waba/messages/{id}"))
            .header("x-api-key", KEY)
            .send()
    };
    let answer = delete(sent.provider_message_id).await.unwrap();
    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error_code"], 400);
    let answer = delete("12345678".into()).await.unwrap();
    assert_eq!(answer.status(), 404);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(
        body,
        json!({"code": 404, "message": "Page not found", "errors": []})
    );
    stop.cancel();
}
