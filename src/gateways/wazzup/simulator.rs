//! The simulated Wazzup24 API: `POST /v3/message`, for one WhatsApp Business (WABA) channel.
//!
//! Validates what the document gives error bodies for (channelId/chatType/chatId, text *or*
//! content, lengths) and answers in Wazzup's error format
//! `{"status", "requestId", "error", "description", "data"}`; a repeated `crmMessageId` gets
//! `400 REPEATED_CRM_MESSAGE_ID` without the original id, as the document shows. Unlike Wazzup,
//! whose window is 60 s, the simulator remembers keys for its whole life.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::send::{CHAT_TYPE, PATH};
use crate::config::ProviderKind;
use crate::gateways::simulator::{Call, Decision, InjectedError, MockCore, ReceiptsFor};

/// WABA's main-text limit (`MESSAGES_TOO_LONG_WABA`).
const MAX_WABA_TEXT_CHARS: usize = 4096;
/// Wazzup's limit for any text (`MESSAGE_TEXT_TOO_LONG`).
const MAX_TEXT_CHARS: usize = 10_000;
/// The `chatType` values Wazzup knows; another transport than WhatsApp is `WRONG_TRANSPORT`.
const CHAT_TYPES: &[&str] = &[
    "whatsapp",
    "whatsgroup",
    "instagram",
    "telegram",
    "telegroup",
    "vk",
    "avito",
    "viber",
];

/// Wazzup's routes.
pub fn routes() -> Router<MockCore> {
    Router::new().route(PATH, post(wazzup_send))
}

fn wazzup_error(status: StatusCode, code: &str, description: &str, data: Value) -> Response {
    (
        status,
        Json(json!({
            "status": status.as_u16(),
            "requestId": uuid::Uuid::new_v4().simple().to_string(),
            "error": code,
            "description": description,
            "data": data,
        })),
    )
        .into_response()
}

fn invalid_field(field: &str) -> Response {
    wazzup_error(
        StatusCode::BAD_REQUEST,
        "INVALID_MESSAGE_DATA",
        "Los datos del mensaje no son válidos",
        json!({ "fields": [field] }),
    )
}

fn bad_request(code: &str, description: &str) -> Response {
    wazzup_error(StatusCode::BAD_REQUEST, code, description, json!({}))
}

/// The first documented validation error `body` earns, if any.
fn validation_error(body: &Value) -> Option<Response> {
    let channel_ok = body
        .get("channelId")
        .and_then(Value::as_str)
        .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok());
    if !channel_ok {
        return Some(invalid_field("channelId"));
    }
    let chat_type = body.get("chatType").and_then(Value::as_str);
    let Some(chat_type) = chat_type.filter(|t| CHAT_TYPES.contains(t)) else {
        return Some(invalid_field("chatType"));
    };
    if chat_type != CHAT_TYPE {
        return Some(wazzup_error(
            StatusCode::BAD_REQUEST,
            "WRONG_TRANSPORT",
            &format!("No puedes enviar un mensaje de WhatsApp a un chat de {chat_type}"),
            json!({ "channelId": body["channelId"], "transport": CHAT_TYPE, "chatType": chat_type }),
        ));
    }
    let chat_ok = body
        .get("chatId")
        .and_then(Value::as_str)
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
    if !chat_ok {
        return Some(invalid_field("chatId"));
    }
    for field in ["crmMessageId", "refMessageId", "templateId"] {
        if body.get(field).is_some_and(|v| !v.is_string()) {
            return Some(invalid_field(field));
        }
    }
    let text = body.get("text");
    let content = body.get("contentUri");
    if text.is_some() && content.is_some() {
        return Some(bad_request(
            "MESSAGE_ONLY_TEXT_OR_CONTENT",
            "El mensaje puede contener texto o contenido",
        ));
    }
    if let Some(text) = text {
        let Some(text) = text.as_str() else {
            return Some(invalid_field("text"));
        };
        let chars = text.chars().count();
        if text.trim().is_empty() {
            return Some(bad_request(
                "MESSAGES_TEXT_CAN_NOT_BE_BLANK",
                "El mensaje de texto no puede estar vacío",
            ));
        }
        if chars > MAX_TEXT_CHARS {
            return Some(bad_request(
                "MESSAGE_TEXT_TOO_LONG",
                "La longitud del mensaje de texto supera los 10 000 caracteres",
            ));
        }
        if chars > MAX_WABA_TEXT_CHARS {
            return Some(bad_request(
                "MESSAGES_TOO_LONG_WABA",
                "El texto del mensaje WABA es demasiado largo",
            ));
        }
    }
    if let Some(uri) = content {
        let fetchable = uri
            .as_str()
            .is_some_and(|u| u.starts_with("https://") || u.starts_with("http://"));
        if !fetchable {
            return Some(bad_request(
                "MESSAGE_DOWNLOAD_CONTENT_ERROR",
                "No se pudo descargar el contenido del enlace especificado",
            ));
        }
    }
    if text.is_none() && content.is_none() && body.get("templateId").is_none() {
        return Some(bad_request(
            "MESSAGE_NOTHING_TO_SEND",
            "No se encontró ningún texto del mensaje",
        ));
    }
    None
}

async fn wazzup_send(
    State(core): State<MockCore>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7);
    if !bearer {
        // RECEIPTS.md: "401 bad key" in the usual error body; the code's name is undocumented.
        return wazzup_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "missing Bearer API key",
            json!({}),
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("VALIDATION_ERROR", "body is not JSON");
    };
    if let Some(response) = validation_error(&body) {
        return response;
    }
    let key = body
        .get("crmMessageId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let chat_id = body["chatId"].clone();
    // The recipient is the chat; its buttons are Wazzup's own `buttonsObject`, not Meta's.
    let receipts = ReceiptsFor::new(ProviderKind::Wazzup, chat_id.as_str(), None);
    let call = Call {
        path: uri.path().to_string(),
        to: chat_id.as_str().map(str::to_owned),
        key: key.clone(),
        body,
        receipts: Some(receipts),
    };
    let Some(decision) = core.handle_detached(call).await else {
        return wazzup_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN_ERROR",
            "mock gateway task failed",
            json!({}),
        );
    };
    match decision {
        Decision::Sent(id) => (
            StatusCode::CREATED,
            Json(json!({ "messageId": id, "chatId": chat_id })),
        )
            .into_response(),
        // The document's answer to a repeat: no messageId, only the echoed crmMessageId.
        Decision::Replayed(_) => bad_request_with(
            "REPEATED_CRM_MESSAGE_ID",
            "Ya has enviado un mensaje con el mismo crmMessageId",
            json!({ "crmMessageId": key }),
        ),
        Decision::Error(error) => injected(&error),
    }
}

/// An injected error in Wazzup's body: a scripted code in `error`, else Wazzup's catch-all
/// for the status (it names no code for 401 and 429); `Retry-After` when there is one.
fn injected(error: &InjectedError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let code = error.code.as_deref().unwrap_or(match status.as_u16() {
        401 => "UNAUTHORIZED",
        429 => "TOO_MANY_REQUESTS",
        500..=599 => "UNKNOWN_ERROR",
        _ => "VALIDATION_ERROR",
    });
    let mut response = wazzup_error(status, code, "injected by the mock gateway", json!({}));
    // Only a scripted Retry-After: the random injection never sent one here.
    if let Some(after) = error.retry_after {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(after.as_secs()));
    }
    response
}

fn bad_request_with(code: &str, description: &str, data: Value) -> Response {
    wazzup_error(StatusCode::BAD_REQUEST, code, description, data)
}
