//! Waspy (`POST /api/v2/messages`), per `shared/providers/waspy-messages.txt`.
//!
//! Meta-like objects per type under a flat envelope (`phoneNumberId`, `to` with `+`,
//! `type`), Bearer auth, and a real idempotency mechanism: the `Idempotency-Key` header
//! (≤ 256 chars, 24 h), answered with `Idempotency-Replayed: true` when a repeat is served
//! from Waspy's cache. That makes every resend after a crash safe.

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use super::{Accepted, Adapter, HttpCall, HttpReply, SendContext, SendResult};
use crate::config::{ProviderKind, Secret};
use crate::job::Job;
use crate::retry::{ErrorClass, Failure};

/// Message types Waspy's document lists; every other canonical type is refused up front.
pub const SUPPORTED_TYPES: &[&str] = &[
    "text",
    "image",
    "video",
    "audio",
    "document",
    "template",
    "interactive",
];

/// Every error code Waspy documents, with the HTTP status it comes with and its SPEC §7 class.
pub const ERROR_TABLE: &[(&str, u16, ErrorClass)] = &[
    // The 24 h window closed: only a template can reach the contact now.
    ("SERVICE_WINDOW_EXPIRED", 403, ErrorClass::WindowExpired),
    // The phoneNumberId is not ours: an operator must fix the channel's `sender`.
    ("INVALID_CHANNEL", 400, ErrorClass::Channel),
    ("CHANNEL_NOT_CONNECTED", 403, ErrorClass::Channel),
    ("INVALID_MESSAGE_TYPE", 400, ErrorClass::Invalid),
    ("INVALID_PHONE", 400, ErrorClass::Invalid),
    // Another request with this key is still being processed: retrying yields its answer.
    ("IDEMPOTENCY_CONFLICT", 409, ErrorClass::Transient),
];

/// Header Waspy sets on answers served from its idempotency cache.
pub const REPLAYED_HEADER: &str = "idempotency-replayed";

/// The Waspy adapter for one channel.
pub struct Waspy {
    /// The channel's phoneNumberId (a UUID from Waspy's `GET /channels`).
    sender: String,
    /// API key (`wspy_…`), sent as a Bearer token.
    api_key: Secret,
}

impl Waspy {
    /// An adapter sending from `sender` with `api_key`.
    pub fn new(sender: String, api_key: Secret) -> Self {
        Self { sender, api_key }
    }
}

impl Adapter for Waspy {
    fn provider(&self) -> ProviderKind {
        ProviderKind::Waspy
    }

    fn request(&self, job: &Job, ctx: SendContext<'_>) -> Result<HttpCall, Failure> {
        let kind = job.message.type_name();
        if !SUPPORTED_TYPES.contains(&kind) {
            return Err(super::unsupported(
                ProviderKind::Waspy,
                &format!("{kind} messages"),
            ));
        }
        if job.message.context.is_some() {
            // Waspy documents no reply context; dropping it would silently change the message.
            return Err(super::unsupported(
                ProviderKind::Waspy,
                "replies (message.context)",
            ));
        }
        let canonical = serde_json::to_value(&job.message)
            .map_err(|e| Failure::invalid("invalid_field", format!("message: {e}")))?;
        let content = canonical.get(kind).cloned().unwrap_or(Value::Null);

        let mut body = Map::new();
        body.insert("phoneNumberId".into(), Value::String(self.sender.clone()));
        body.insert("to".into(), Value::String(job.to.clone()));
        body.insert("type".into(), Value::String(kind.into()));
        body.insert(kind.into(), content);
        super::merge_options(&mut body, job)?;

        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.api_key.expose()))
            .map_err(|_| {
                Failure::new(
                    ErrorClass::Auth,
                    "bad_api_key",
                    "the API key is not a valid header value",
                )
            })?;
        auth.set_sensitive(true);
        let key = HeaderValue::from_str(ctx.idempotency_key).map_err(|_| {
            Failure::invalid(
                "invalid_field",
                "idempotency_key: not a valid HTTP header value",
            )
        })?;
        Ok(HttpCall {
            method: Method::POST,
            path: "/api/v2/messages".into(),
            headers: vec![
                (AUTHORIZATION, auth),
                (HeaderName::from_static("idempotency-key"), key),
            ],
            body: Value::Object(body),
        })
    }

    fn response(&self, reply: &HttpReply) -> SendResult {
        let json = reply.json();
        if (200..300).contains(&reply.status) {
            let id = json
                .as_ref()
                .and_then(|b| b.pointer("/data/id"))
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty());
            return match id {
                Some(id) => Ok(Accepted {
                    provider_message_id: id.to_string(),
                    replayed: reply
                        .headers
                        .get(REPLAYED_HEADER)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true")),
                }),
                // Accepted but unreadable: it may have been sent; the idempotency key makes a
                // retry return the original answer.
                None => Err(Failure::new(
                    ErrorClass::Transient,
                    "bad_response",
                    format!("HTTP {} without data.id", reply.status),
                )
                .maybe_sent()),
            };
        }
        Err(classify_error(reply, json.as_ref()))
    }
}

/// Map a non-2xx answer through [`ERROR_TABLE`], falling back on the HTTP status.
fn classify_error(reply: &HttpReply, json: Option<&Value>) -> Failure {
    let code = json.and_then(super::error_code);
    let message = json
        .and_then(super::error_message)
        .unwrap_or_else(|| format!("HTTP {}", reply.status));
    let known = code
        .as_deref()
        .and_then(|c| ERROR_TABLE.iter().find(|(name, _, _)| *name == c));
    let class = match known {
        Some((_, _, class)) => *class,
        None => {
            tracing::warn!(
                provider = "waspy",
                status = reply.status,
                code = code.as_deref().unwrap_or("-"),
                "gateway answered an undocumented error; classifying by HTTP status"
            );
            super::class_for_status(reply.status)
        }
    };
    let mut failure = Failure::new(
        class,
        code.clone()
            .unwrap_or_else(|| format!("http_{}", reply.status)),
        message,
    )
    .with_retry_after(reply.retry_after());
    if let Some(code) = code {
        failure = failure.with_provider_code(code);
    }
    if class == ErrorClass::Transient && reply.status == 409 {
        // A conflict means an earlier request with this key is in progress at Waspy.
        failure = failure.maybe_sent();
    }
    failure
}
