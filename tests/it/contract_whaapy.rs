//! The Whaapy adapter against Whaapy's own documents (`shared/providers/whaapy-messages-text.txt`,
//! `shared/providers/whaapy-messages-template.txt`) over real HTTP: wiremock stands in for
//! api.whaapy.com and checks method, path, auth header and body of every example request,
//! reproduced from a canonical job; every error-table row classifies through HTTP; then the
//! adapter and the simulated Whaapy API of `mensajero mock-gateway` must agree.
//!
//! The documents show two request styles. The Meta-style examples are reproduced byte for
//! byte. The adapter always sends Meta style (the canonical message is Meta's object), so the
//! Whaapy-style shortcut examples (`content`, `templateName` + `template_parameters`,
//! `header_media`) are checked through their Meta-style equivalents, derived from the literal
//! example by the rules the documents state ([`meta_equivalent`]).

use std::time::Duration;

use mensajero::config::{MockOptions, Secret};
use mensajero::gateways::simulator::{self as mock, MockCore};
use mensajero::gateways::whaapy::send::{ERROR_TABLE, Key, Whaapy};
use mensajero::gateways::{Accepted, HttpGateway, SendContext};
use mensajero::job::Job;
use mensajero::retry::{ErrorClass, Sent};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The documents' key placeholder, so the auth header is the examples' own.
const KEY: &str = "wha_TU_API_KEY";
/// The documents' recipient.
const TO: &str = "+5215512345678";
/// The `data.id` / `messages[0].id` of the documents' success answer.
const MESSAGE_ID: &str = "550e8400-e29b-41d4-a716-446655440000";

fn gateway(base_url: &str, key: &str, timeout: Duration) -> HttpGateway {
    HttpGateway::new(Box::new(Whaapy::new(Secret::new(key))), base_url, timeout).expect("client")
}

fn job_with(message: Value, options: Option<Value>) -> Job {
    let mut body = json!({"id": "job-1", "channel": "whaapy-mx", "to": TO, "message": message});
    if let Some(options) = options {
        body["provider_options"] = options;
    }
    mensajero::job::parse(body.to_string().as_bytes()).expect("valid job")
}

fn job(message: Value) -> Job {
    job_with(message, None)
}

fn ctx(key: &str) -> SendContext<'_> {
    SendContext {
        idempotency_key: key,
        attempt: 1,
    }
}

/// The documents' success answer.
fn success() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": TO, "wa_id": "5215512345678" }],
        "messages": [{ "id": MESSAGE_ID, "wamid": "wamid.HBgLNTIxNTUx..." }],
        "data": {
            "id": MESSAGE_ID,
            "conversationId": "660e8400-e29b-41d4-a716-446655440001",
            "messageType": "template",
            "direction": "outbound",
            "status": "sent",
            "createdAt": "2026-01-22T10:30:00Z"
        }
    }))
}

fn accepted() -> Accepted {
    Accepted {
        provider_message_id: MESSAGE_ID.into(),
        replayed: false,
    }
}

/// Whaapy must receive exactly this request, once.
async fn expect_exactly(server: &MockServer, name: &str, body: &Value) {
    Mock::given(method("POST"))
        .and(path("/messages/v1"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(body))
        .respond_with(success())
        .expect(1)
        .named(name)
        .mount(server)
        .await;
}

/// The canonical message a Meta-style example request carries: the request without `to`,
/// and without `language.policy`, which the adapter adds to every template.
fn canonical(request: &Value) -> Value {
    let mut message = request.clone();
    let object = message.as_object_mut().expect("object");
    object.remove("to");
    if let Some(language) = message.pointer_mut("/template/language") {
        language.as_object_mut().expect("object").remove("policy");
    }
    message
}

/// Send `request`'s canonical message and require Whaapy to receive exactly `request`.
async fn reproduce(name: &str, request: Value, options: Option<Value>) {
    let server = MockServer::start().await;
    expect_exactly(&server, name, &request).await;
    let job = job_with(canonical(&request), options);
    let result = gateway(&server.uri(), KEY, Duration::from_secs(5))
        .send(&job, ctx("k"))
        .await;
    assert_eq!(result, Ok(accepted()), "{name}");
}

/// "Texto con Vista Previa de URL (Estilo Meta)", verbatim.
#[tokio::test]
async fn doc_text_with_url_preview() {
    let request = json!({
      "to": "+5215512345678",
      "type": "text",
      "text": {
        "body": "Mira nuestro catálogo: https://whaapy.com/productos",
        "preview_url": true
      }
    });
    reproduce("text preview_url", request, None).await;
}

/// The four "Formato Meta Completo" template examples, verbatim.
#[tokio::test]
async fn doc_meta_style_templates() {
    let examples = [
        (
            "Template Básico",
            json!({
              "to": "+5215512345678",
              "type": "template",
              "template": {
                "name": "orden_confirmada",
                "language": { "policy": "deterministic", "code": "es_MX" },
                "components": [
                  { "type": "body", "parameters": [
                      { "type": "text", "text": "Juan Pérez" },
                      { "type": "text", "text": "#ORD-12345" } ] }
                ]
              }
            }),
        ),
        (
            "Template con Header de Imagen",
            json!({
              "to": "+5215512345678",
              "type": "template",
              "template": {
                "name": "confirmacion_pago",
                "language": { "policy": "deterministic", "code": "es_MX" },
                "components": [
                  { "type": "header", "parameters": [
                      { "type": "image", "image": { "link": "https://example.com/recibo.jpg" } } ] },
                  { "type": "body", "parameters": [
                      { "type": "text", "text": "Juan Pérez" },
                      { "type": "text", "text": "#ORD-12345" } ] }
                ]
              }
            }),
        ),
        (
            "Template con Currency y Date",
            json!({
              "to": "+5215512345678",
              "type": "template",
              "template": {
                "name": "resumen_compra",
                "language": { "policy": "deterministic", "code": "es_MX" },
                "components": [
                  { "type": "body", "parameters": [
                      { "type": "text", "text": "Juan Pérez" },
                      { "type": "text", "text": "#ORD-12345" },
                      { "type": "currency", "currency": {
                          "fallback_value": "$1,500.00 MXN", "code": "MXN", "amount_1000": 1500000 } },
                      { "type": "date_time", "date_time": { "fallback_value": "25 de enero, 2026" } } ] }
                ]
              }
            }),
        ),
        (
            "Template con Botones",
            json!({
              "to": "+5215512345678",
              "type": "template",
              "template": {
                "name": "confirmacion_envio",
                "language": { "policy": "deterministic", "code": "es_MX" },
                "components": [
                  { "type": "body", "parameters": [
                      { "type": "text", "text": "Juan" },
                      { "type": "text", "text": "#ENV-789" } ] },
                  { "type": "button", "sub_type": "quick_reply", "index": "0",
                    "parameters": [ { "type": "payload", "payload": "confirmar_recibido_789" } ] },
                  { "type": "button", "sub_type": "url", "index": "1",
                    "parameters": [ { "type": "text", "text": "ENV-789" } ] }
                ]
              }
            }),
        ),
    ];
    for (name, request) in examples {
        reproduce(name, request, None).await;
    }
}

/// A Whaapy-style example translated to Meta style by the documents' own rules: `content` is
/// `text.body`; the template shortcut is a template in `es_MX` ("El shortcut asume idioma es_MX
/// por defecto") whose `template_parameters` are the body's text parameters, in order, and
/// whose `header_media` is a header parameter of that media type with `link` = `url`.
fn meta_equivalent(example: &Value) -> Value {
    let mut out = Map::new();
    for field in ["to", "conversationId"] {
        if let Some(value) = example.get(field) {
            out.insert(field.into(), value.clone());
        }
    }
    if let Some(content) = example.get("content") {
        out.insert("type".into(), json!("text"));
        out.insert("text".into(), json!({ "body": content }));
    }
    if let Some(name) = example.get("templateName") {
        let mut components = Vec::new();
        if let Some(media) = example.get("header_media") {
            let kind = media["type"].as_str().expect("media type");
            let mut parameter = json!({ "type": kind });
            parameter[kind] = json!({ "link": media["url"] });
            components.push(json!({ "type": "header", "parameters": [parameter] }));
        }
        let texts: Vec<Value> = example["template_parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .map(|text| json!({ "type": "text", "text": text }))
            .collect();
        components.push(json!({ "type": "body", "parameters": texts }));
        out.insert("type".into(), json!("template"));
        out.insert(
            "template".into(),
            json!({ "name": name, "language": { "policy": "deterministic", "code": "es_MX" },
                    "components": components }),
        );
    }
    Value::Object(out)
}

/// Every Whaapy-style example (`content`, template shortcut, `header_media`), through its
/// Meta-style equivalent.
#[tokio::test]
async fn doc_whaapy_style_examples_as_meta_style() {
    let examples = [
        (
            "Texto Simple (Estilo Whaapy)",
            json!({ "to": "+5215512345678",
                    "content": "¡Hola! Gracias por tu mensaje. Te responderemos pronto." }),
        ),
        (
            "Formato minimalista",
            json!({ "to": "+5215512345678", "content": "¡Hola! Gracias por contactarnos." }),
        ),
        (
            "Shortcut Whaapy (Simplificado)",
            json!({ "to": "+5215512345678", "type": "template", "templateName": "orden_confirmada",
                    "template_parameters": ["Juan Pérez", "#ORD-12345", "$1,500.00"] }),
        ),
        (
            "Formatos de Envío",
            json!({ "to": "+5215512345678", "type": "template", "templateName": "orden_confirmada",
                    "template_parameters": ["Juan", "#12345"] }),
        ),
        (
            "Shortcut con Header Media",
            json!({ "to": "+5215512345678", "type": "template", "templateName": "promo_navidad",
                    "template_parameters": ["30%", "25 de diciembre"],
                    "header_media": { "type": "image", "url": "https://example.com/navidad-promo.jpg" } }),
        ),
        (
            "Con Video",
            json!({ "to": "+5215512345678", "type": "template", "templateName": "tutorial_producto",
                    "template_parameters": ["Producto X"],
                    "header_media": { "type": "video", "url": "https://example.com/tutorial.mp4" } }),
        ),
        (
            "Con Documento",
            json!({ "to": "+5215512345678", "type": "template", "templateName": "factura_mensual",
                    "template_parameters": ["Enero 2026", "$2,500.00"],
                    "header_media": { "type": "document", "url": "https://example.com/factura.pdf" } }),
        ),
    ];
    for (name, example) in examples {
        reproduce(name, meta_equivalent(&example), None).await;
    }
}

/// "Responder a Conversación Existente": `conversationId` comes from `provider_options` and
/// goes beside the recipient. The example omits `to`; a job always has one and mensajero
/// always sends it (the job's recipient is what its outcomes report).
#[tokio::test]
async fn doc_reply_to_existing_conversation() {
    let example = json!({
      "conversationId": "550e8400-e29b-41d4-a716-446655440000",
      "content": "Gracias por tu paciencia. Ya tenemos tu pedido listo."
    });
    let mut request = meta_equivalent(&example);
    request["to"] = json!(TO);
    let options = json!({ "conversationId": example["conversationId"] });
    let server = MockServer::start().await;
    expect_exactly(&server, "conversation", &request).await;
    let job = job_with(
        json!({"type": "text", "text": {"body": example["content"]}}),
        Some(options),
    );
    let result = gateway(&server.uri(), KEY, Duration::from_secs(5))
        .send(&job, ctx("k"))
        .await;
    assert_eq!(result, Ok(accepted()));
}

async fn answer(status: u16, body: Value, headers: &[(&str, &str)]) -> mensajero::retry::Failure {
    let server = MockServer::start().await;
    let mut template = ResponseTemplate::new(status).set_body_json(body);
    for (k, v) in headers {
        template = template.insert_header(*k, *v);
    }
    Mock::given(method("POST"))
        .and(path("/messages/v1"))
        .respond_with(template)
        .expect(1)
        .mount(&server)
        .await;
    gateway(&server.uri(), KEY, Duration::from_secs(5))
        .send(
            &job(json!({"type": "text", "text": {"body": "Hola"}})),
            ctx("k"),
        )
        .await
        .unwrap_err()
}

/// Every row of the error table, through HTTP, in Whaapy's error shape.
#[tokio::test]
async fn every_error_table_row_classifies_over_http() {
    for (key, class) in ERROR_TABLE {
        let cases: Vec<(u16, Value)> = match key {
            Key::Code(codes) => [codes.start(), codes.end()]
                .into_iter()
                .map(|code| {
                    (
                        400,
                        json!({"error": "message_delivery_failed", "message": "m",
                               "code": code.to_string(), "action_required": "a",
                               "data": {"id": MESSAGE_ID, "status": "failed"}}),
                    )
                })
                .collect(),
            Key::Error(name) => vec![(400, json!({"error": name, "message": "m"}))],
            Key::Status(status) => vec![(*status, json!({"message": "m"}))],
        };
        for (status, body) in cases {
            let failure = answer(status, body.clone(), &[]).await;
            assert_eq!(failure.class, *class, "{key:?}: {body}");
            // A documented code or name is Whaapy refusing the message; a bare status follows
            // the one rule every gateway shares.
            let sent = match key {
                Key::Status(status) => mensajero::gateways::sent_for_status(*status),
                _ => Sent::No,
            };
            assert_eq!(failure.sent, sent, "{key:?}");
        }
    }
}

/// The documents' three error bodies, verbatim, with the statuses a client would see.
#[tokio::test]
async fn documented_error_bodies() {
    let window = json!({
      "error": "message_delivery_failed",
      "message": "La ventana de conversación de 24 horas ha expirado",
      "code": "131047",
      "action_required": "Usar template message",
      "data": { "id": "550e8400-e29b-41d4-a716-446655440000", "status": "failed" }
    });
    let not_found = json!({
      "error": "template_not_found",
      "message": "El template no existe o no está aprobado",
      "code": "132000",
      "details": { "template_name": "orden_confirmada", "language": "es_MX" }
    });
    let parameters = json!({
      "error": "invalid_template_parameters",
      "message": "El template requiere 3 parámetros, se recibieron 2"
    });
    for (status, body, class, code) in [
        (400, window.clone(), ErrorClass::WindowExpired, "131047"),
        (404, not_found, ErrorClass::Invalid, "132000"),
        (
            400,
            parameters,
            ErrorClass::Invalid,
            "invalid_template_parameters",
        ),
    ] {
        let failure = answer(status, body, &[]).await;
        assert_eq!(failure.class, class, "{code}");
        assert_eq!(failure.provider_code.as_deref(), Some(code));
    }
}

/// A 200 whose body is an error is a failure, classified by its code.
#[tokio::test]
async fn a_200_with_an_error_body_is_a_failure() {
    let body = json!({
      "error": "message_delivery_failed",
      "message": "La ventana de conversación de 24 horas ha expirado",
      "code": "131047",
      "action_required": "Usar template message",
      "data": { "id": "550e8400-e29b-41d4-a716-446655440000", "status": "failed" }
    });
    let failure = answer(200, body, &[]).await;
    assert_eq!(failure.class, ErrorClass::WindowExpired);
    assert_eq!(failure.sent, Sent::No);
    assert!(failure.message.contains("Usar template message"));
}

/// A 2xx without any id: maybe sent, and Whaapy cannot deduplicate a resend.
#[tokio::test]
async fn a_2xx_without_an_id_is_ambiguous() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"messaging_product": "whatsapp"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let failure = gateway(&server.uri(), KEY, Duration::from_secs(5))
        .send(
            &job(json!({"type": "text", "text": {"body": "Hola"}})),
            ctx("k"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (failure.class, failure.code.as_str(), failure.sent),
        (ErrorClass::Transient, "bad_response", Sent::Maybe)
    );
}

/// 429 (100 requests/min): retried after the gateway's Retry-After.
#[tokio::test]
async fn rate_limited_with_retry_after() {
    let failure = answer(
        429,
        json!({"error": "rate_limit_exceeded", "message": "Demasiadas solicitudes"}),
        &[("retry-after", "30")],
    )
    .await;
    assert_eq!(failure.class, ErrorClass::RateLimited);
    assert_eq!(failure.retry_after, Some(Duration::from_secs(30)));
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
    let failure = gateway(&server.uri(), KEY, Duration::from_millis(200))
        .send(
            &job(json!({"type": "text", "text": {"body": "Hola"}})),
            ctx("k"),
        )
        .await
        .unwrap_err();
    assert_eq!(failure.class, ErrorClass::Transient);
    assert_eq!(failure.code, "timeout");
    assert_eq!(failure.sent, Sent::Maybe);
}

/// Whaapy takes Meta's message object as it is: location, contacts, sticker, reaction and a
/// reply's context reach it exactly in Meta's shape, and are sent.
#[tokio::test]
async fn every_type_and_replies_reach_whaapy_in_metas_shape() {
    let messages = [
        json!({"type": "location", "location": {"latitude": 19.43, "longitude": -99.13,
               "name": "Sucursal Centro"}}),
        json!({"type": "contacts", "contacts": [{"name": {"formatted_name": "Soporte"},
               "phones": [{"phone": "+5215512345678", "type": "WORK"}]}]}),
        json!({"type": "sticker", "sticker": {"link": "https://example.com/s.webp"}}),
        json!({"type": "reaction", "reaction": {"message_id": MESSAGE_ID, "emoji": "👍"}}),
        json!({"type": "text", "text": {"body": "Sí"}, "context": {"message_id": "wamid.X"}}),
    ];
    let server = MockServer::start().await;
    for message in &messages {
        let mut wire = message.as_object().unwrap().clone();
        wire.insert("to".into(), json!(TO));
        Mock::given(method("POST"))
            .and(path("/messages/v1"))
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .and(body_json(Value::Object(wire)))
            .respond_with(success())
            .expect(1)
            .mount(&server)
            .await;
    }
    let gateway = gateway(&server.uri(), KEY, Duration::from_secs(5));
    for message in messages {
        let accepted = gateway
            .send(&job(message.clone()), ctx("k"))
            .await
            .unwrap_or_else(|f| panic!("{message}: {f:?}"));
        assert_eq!(accepted.provider_message_id, MESSAGE_ID, "{message}");
    }
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

fn quiet(error_rate: f64, error_status: u16) -> MockOptions {
    MockOptions {
        latency: Duration::ZERO,
        error_rate,
        error_status,
        ..MockOptions::default()
    }
}

/// The adapter and the simulated Whaapy API agree: every supported type is accepted under a
/// fresh id, a repeat is a new message (no idempotency), a bad key is `auth`.
#[tokio::test]
async fn adapter_and_mock_gateway_agree() {
    let (core, url, stop) = start_simulator(quiet(0.0, 503)).await;
    let whaapy = gateway(&url, KEY, Duration::from_secs(5));
    let messages = [
        json!({"type": "text", "text": {"body": "Hola", "preview_url": true}}),
        json!({"type": "image", "image": {"link": "https://example.com/p.jpg", "caption": "Producto"}}),
        json!({"type": "video", "video": {"link": "https://example.com/v.mp4"}}),
        json!({"type": "audio", "audio": {"id": "1234567890"}}),
        json!({"type": "document", "document": {"link": "https://example.com/f.pdf", "filename": "f.pdf"}}),
        json!({"type": "template", "template": {"name": "orden_confirmada", "language": {"code": "es_MX"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "Juan"}]},
                           {"type": "button", "sub_type": "quick_reply", "index": "0",
                            "parameters": [{"type": "payload", "payload": "p"}]}]}}),
        json!({"type": "interactive", "interactive": {"type": "button", "body": {"text": "¿Confirmás?"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "si", "title": "Sí"}}]}}}),
    ];
    let mut ids = std::collections::HashSet::new();
    for message in &messages {
        let accepted = whaapy
            .send(&job(message.clone()), ctx("same-key"))
            .await
            .unwrap_or_else(|f| panic!("{message}: {f:?}"));
        assert!(!accepted.replayed);
        let stored = core.message(&accepted.provider_message_id).expect("stored");
        assert_eq!(stored["to"], json!(TO));
        assert!(ids.insert(accepted.provider_message_id));
    }
    // In a conversation.
    let accepted = whaapy
        .send(
            &job_with(
                messages[0].clone(),
                Some(json!({"conversationId": "660e8400-e29b-41d4-a716-446655440001"})),
            ),
            ctx("same-key"),
        )
        .await
        .expect("conversation send");
    assert!(ids.insert(accepted.provider_message_id));
    let stats = core.stats();
    assert_eq!((stats.sent, stats.replayed), (ids.len() as u64, 0));

    let failure = gateway(&url, "", Duration::from_secs(5))
        .send(&job(messages[0].clone()), ctx("no-key"))
        .await
        .unwrap_err();
    assert_eq!(failure.class, ErrorClass::Auth);
    stop.cancel();
}

/// Injected simulator errors arrive in Whaapy's error shape and classify by the table.
#[tokio::test]
async fn mock_gateway_injected_errors_classify() {
    for (status, class, retry_after) in [
        (500, ErrorClass::Transient, None),
        (503, ErrorClass::Transient, None),
        (401, ErrorClass::Auth, None),
        (403, ErrorClass::Auth, None),
        (429, ErrorClass::RateLimited, Some(Duration::from_secs(1))),
    ] {
        let (_core, url, stop) = start_simulator(quiet(1.0, status)).await;
        let failure = gateway(&url, KEY, Duration::from_secs(5))
            .send(
                &job(json!({"type": "text", "text": {"body": "Hola"}})),
                ctx("k"),
            )
            .await
            .unwrap_err();
        assert_eq!(failure.class, class, "{status}");
        assert_eq!(failure.retry_after, retry_after, "{status}");
        // A bare 500 may have sent (README "Guarantees"); the rest refused the message.
        let sent = if status == 500 { Sent::Maybe } else { Sent::No };
        assert_eq!(failure.sent, sent, "{status}");
        stop.cancel();
    }
}

/// The simulator takes the documents' own requests in both styles (and any Meta message
/// object), answers in the documented success shape with fresh ids, and refuses malformed
/// requests in its error shape.
#[tokio::test]
async fn mock_gateway_takes_the_documents_requests() {
    let (core, url, stop) = start_simulator(quiet(0.0, 503)).await;
    let client = reqwest::Client::new();
    let post = |body: Value| {
        client
            .post(format!("{url}/messages/v1"))
            .bearer_auth(KEY)
            .json(&body)
            .send()
    };
    let requests = [
        json!({ "to": "+5215512345678",
                "content": "¡Hola! Gracias por tu mensaje. Te responderemos pronto." }),
        json!({ "conversationId": "550e8400-e29b-41d4-a716-446655440000",
                "content": "Gracias por tu paciencia. Ya tenemos tu pedido listo." }),
        json!({ "to": "+5215512345678", "type": "template", "templateName": "promo_navidad",
                "template_parameters": ["30%", "25 de diciembre"],
                "header_media": { "type": "image", "url": "https://example.com/navidad-promo.jpg" } }),
        json!({ "to": "+5215512345678", "type": "text",
                "text": { "body": "Mira nuestro catálogo: https://whaapy.com/productos", "preview_url": true } }),
        json!({ "to": "+5215512345678", "type": "location",
                "location": { "latitude": 19.43, "longitude": -99.13 } }),
    ];
    let mut ids = std::collections::HashSet::new();
    for request in requests {
        let response = post(request.clone()).await.expect("answer");
        assert_eq!(response.status(), 200, "{request}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["messaging_product"], json!("whatsapp"));
        assert_eq!(body["data"]["id"], body["messages"][0]["id"]);
        assert_eq!(body["data"]["status"], json!("sent"));
        assert!(
            body["messages"][0]["wamid"]
                .as_str()
                .unwrap()
                .starts_with("wamid.")
        );
        let id = body["data"]["id"].as_str().unwrap().to_string();
        assert!(core.message(&id).is_some());
        assert!(ids.insert(id), "ids are unique");
    }
    for request in [
        json!({ "to": "+5215512345678", "type": "location", "location": { "latitude": 19.43 } }),
        json!({ "to": "5215512345678", "content": "sin +" }),
        json!({ "content": "sin destinatario" }),
    ] {
        let response = post(request.clone()).await.expect("answer");
        assert_eq!(response.status(), 400, "{request}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"], json!("validation_error"), "{request}");
        assert!(body["message"].is_string());
    }
    stop.cancel();
}
