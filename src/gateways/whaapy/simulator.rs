//! The simulated Whaapy API: `POST /messages/v1`.
//!
//! Takes both request styles the documents show: Meta's (`type` + the type's object, checked
//! with the canonical rules, which are Meta's) and Whaapy's shortcuts (`content`,
//! `templateName` + `template_parameters`, `header_media`). The recipient is `to` (or its
//! alias `phone_number`) in E.164 with `+`, or a `conversationId`. Answers with the documents'
//! success body (`messaging_product`, `contacts`, `messages[0].{id,wamid}`, `data`) and fails
//! in Whaapy's error shape `{"error","message","code","action_required","data"}`. Whaapy has
//! no idempotency, so every accepted request is a new message with new ids.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::send::PATH;
use crate::config::ProviderKind;
use crate::gateways::simulator::{Call, Decision, InjectedError, MockCore, ReceiptsFor};

/// Fields of a Meta-style body that address the message rather than being the message object.
const ENVELOPE: &[&str] = &["to", "phone_number", "conversationId"];

/// What the simulator answers to an injected 429 in `Retry-After`: Whaapy documents none; one
/// second, like the in-process mock, keeps demos and tests quick.
const RETRY_AFTER_SECONDS: &str = "1";

/// Whaapy's routes.
pub fn routes() -> Router<MockCore> {
    Router::new().route(PATH, post(whaapy_send))
}

/// An error in Whaapy's shape. The names of the HTTP-level errors are not documented; these
/// are the simulator's own.
fn whaapy_error(status: StatusCode, error: &str, message: &str) -> Response {
    (status, Json(json!({ "error": error, "message": message }))).into_response()
}

fn validation(message: &str) -> Response {
    whaapy_error(StatusCode::BAD_REQUEST, "validation_error", message)
}

/// How Whaapy reports an injected error. A scripted numeric code is a WhatsApp-level code,
/// which Whaapy passes through in `code` under its generic `message_delivery_failed`; a
/// scripted name is Whaapy's own `error`; else the status's error name. `Retry-After` when
/// scripted, and always on a 429.
fn injected(error: &InjectedError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let (name, message) = match status.as_u16() {
        401 => ("unauthorized", "API key inválida"),
        403 => (
            "insufficient_scope",
            "La API key no tiene los permisos necesarios",
        ),
        404 => ("not_found", "Recurso no encontrado"),
        429 => ("rate_limit_exceeded", "Límite de solicitudes excedido"),
        400..=499 => ("validation_error", "Solicitud inválida"),
        _ => ("internal_error", "Error interno del servidor"),
    };
    let body = match error.code.as_deref() {
        None => json!({ "error": name, "message": message }),
        Some(code) if code.bytes().all(|b| b.is_ascii_digit()) => json!({
            "error": "message_delivery_failed",
            "message": "injected by the mock gateway",
            "code": code,
        }),
        Some(code) => json!({ "error": code, "message": "injected by the mock gateway" }),
    };
    let mut response = (status, Json(body)).into_response();
    let retry_after = match error.retry_after {
        Some(after) => Some(HeaderValue::from(after.as_secs())),
        None => (status == StatusCode::TOO_MANY_REQUESTS)
            .then(|| HeaderValue::from_static(RETRY_AFTER_SECONDS)),
    };
    if let Some(value) = retry_after {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

/// The recipient's digits (`wa_id`; `None` when only a conversation addresses it), or why
/// the addressing fields are refused.
fn recipient(body: &Map<String, Value>) -> Result<Option<String>, String> {
    let to = body.get("to").or_else(|| body.get("phone_number"));
    let conversation = body.get("conversationId");
    if let Some(id) = conversation {
        let uuid = id
            .as_str()
            .is_some_and(|s| uuid::Uuid::parse_str(s).is_ok());
        if !uuid {
            return Err("conversationId debe ser un UUID".into());
        }
    }
    let Some(to) = to else {
        return if conversation.is_some() {
            Ok(None)
        } else {
            Err("Debes proporcionar to, phone_number o conversationId".into())
        };
    };
    let digits = to
        .as_str()
        .and_then(|t| t.strip_prefix('+'))
        .filter(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
        .filter(|d| !d.starts_with('0'));
    match digits {
        Some(digits) => Ok(Some(digits.to_string())),
        None => Err("to debe ser un número E.164 con código de país, p. ej. +5215512345678".into()),
    }
}

/// The message type of a valid body, or why it is refused.
fn message_type(body: &Map<String, Value>) -> Result<String, String> {
    // Whaapy's text shortcut.
    if let Some(content) = body.get("content") {
        let ok = content
            .as_str()
            .is_some_and(|c| !c.trim().is_empty() && c.chars().count() <= 4096);
        return if ok && !body.contains_key("text") {
            Ok("text".into())
        } else {
            Err("content debe ser un texto de 1 a 4096 caracteres, sin text".into())
        };
    }
    // Whaapy's template shortcut.
    if let Some(name) = body.get("templateName") {
        let name_ok = name.as_str().is_some_and(|n| !n.is_empty());
        let params_ok = body
            .get("template_parameters")
            .is_none_or(|p| p.as_array().is_some_and(|a| a.iter().all(Value::is_string)));
        let media_ok = body.get("header_media").is_none_or(|m| {
            let kind = m.get("type").and_then(Value::as_str);
            let url = m.get("url").and_then(Value::as_str);
            matches!(kind, Some("image" | "video" | "document"))
                && url.is_some_and(|u| u.starts_with("https://") || u.starts_with("http://"))
        });
        return if name_ok && params_ok && media_ok && !body.contains_key("template") {
            Ok("template".into())
        } else {
            Err("templateName, template_parameters o header_media inválidos".into())
        };
    }
    // Meta style: the rest is the message object, any type Meta's API takes.
    let kind = body.get("type").and_then(Value::as_str).unwrap_or_default();
    let message: Map<String, Value> = body
        .iter()
        .filter(|(k, _)| !ENVELOPE.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match serde_json::from_value::<crate::job::Message>(Value::Object(message)) {
        Ok(_) => Ok(kind.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn whaapy_send(
    State(core): State<MockCore>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|key| !key.trim().is_empty());
    if !bearer {
        return whaapy_error(StatusCode::UNAUTHORIZED, "unauthorized", "API key inválida");
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return validation("El cuerpo debe ser un objeto JSON");
    };
    let wa_id = match recipient(&body) {
        Ok(wa_id) => wa_id,
        Err(why) => return validation(&why),
    };
    let kind = match message_type(&body) {
        Ok(kind) => kind,
        Err(why) => return validation(&why),
    };
    let input = body.get("to").or_else(|| body.get("phone_number")).cloned();
    let conversation_id = body
        .get("conversationId")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let content = body
        .get("content")
        .or_else(|| body.get("text").and_then(|t| t.get("body")))
        .cloned();

    let body = Value::Object(body);
    let to = input.as_ref().and_then(Value::as_str);
    // A Meta-style body is the message object itself; a shortcut has no buttons.
    let receipts = ReceiptsFor::new(ProviderKind::Whaapy, to, Some(&body));
    // No idempotency key: Whaapy sends every request it accepts.
    let call = Call {
        path: uri.path().to_string(),
        to: to.map(str::to_owned),
        key: None,
        body,
        receipts: Some(receipts),
    };
    let Some(decision) = core.handle_detached(call).await else {
        return injected(&InjectedError::status(500));
    };
    let id = match decision {
        // The adapter correlates by `data.id`, which is this id.
        Decision::Sent(id) => id,
        // Replays cannot happen without a key; answered as a fresh send if they ever did.
        Decision::Replayed(id) => id,
        Decision::Error(error) => return injected(&error),
    };
    let contacts = match (input, wa_id) {
        (Some(input), Some(wa_id)) => json!([{ "input": input, "wa_id": wa_id }]),
        _ => json!([]),
    };
    let mut data = json!({
        "id": id,
        "conversationId": conversation_id,
        "messageType": kind,
        "direction": "outbound",
        "status": "sent",
        "createdAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    if let Some(content) = content {
        data["content"] = content;
    }
    Json(json!({
        "messaging_product": "whatsapp",
        "contacts": contacts,
        "messages": [{ "id": id, "wamid": format!("wamid.{}", uuid::Uuid::new_v4().simple()) }],
        "data": data,
    }))
    .into_response()
}
