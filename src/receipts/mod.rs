//! Status receipts (SPEC §6): what gateways tell us after a send, through webhooks.
//!
//! This module is pure, like the send adapters: per provider it authenticates a webhook
//! request ([`verify`]) and reads the status reports in its body ([`parse`]). It also renders
//! and signs receipts in each gateway's format ([`render`], [`sign`]) so the mock gateway can
//! send them and tests can forge them. Publishing, correlation and outcomes live in
//! [`crate::http`] (the listener) and [`crate::worker`] (the receipt consumer).
//!
//! One file per gateway: `meta`, `waspy` (also the in-process `mock` provider's format),
//! `whaapy`, `wazzup`, `seven`.

mod fields;
pub mod meta;
pub mod seven;
pub mod waspy;
pub mod wazzup;
pub mod whaapy;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{ProviderKind, Secret};
use crate::outcome::Status;

/// One status report about one message, as a gateway sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// The gateway's id of the message (the one its send answer gave), used to correlate.
    pub provider_message_id: String,
    /// `Sent`, `Delivered`, `Read` or `Failed` (never `Queued`).
    pub status: Status,
    /// The job id the gateway echoes, where it does (Meta's `biz_opaque_callback_data`).
    pub job_id: Option<String>,
    /// Why it failed, on `Failed`.
    pub error: Option<ReceiptError>,
    /// When the gateway says it happened.
    pub occurred_at: Option<DateTime<Utc>>,
}

/// A gateway's reason for a `failed` receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptError {
    /// The gateway's code (`131047`, `BAD_CONTACT`, …), when it gave one.
    pub code: Option<String>,
    /// Human-readable detail from the gateway.
    pub message: String,
}

/// What a webhook body held.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Status reports (possibly none: inbound messages and other events are ignored).
    Receipts(Vec<Receipt>),
    /// A connectivity probe that must get 200 and publishes nothing (Wazzup's `{"test":true}`).
    Probe,
}

/// A webhook request as the listener received it.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    /// HTTP method, upper case.
    pub method: &'a str,
    /// The full URL the gateway called (scheme, host, path and query), as seven.io signs it.
    pub url: &'a str,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The raw query string, if any.
    pub query: Option<&'a str>,
    /// The raw body, exactly as received (signatures cover these bytes).
    pub body: &'a [u8],
}

/// Why a webhook request was not authenticated. Never carries the secret or the signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The signature (or secret, or token) header is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// It is present but does not match.
    #[error("{0} does not match")]
    Mismatch(&'static str),
    /// The signed timestamp is outside the allowed clock skew (a replay, or a wrong clock).
    #[error("timestamp outside the allowed window")]
    Stale,
    /// The channel has no webhook secret configured, so nothing can be accepted.
    #[error("no webhook secret configured for this channel")]
    NotConfigured,
}

/// Why a body could not be read as receipts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Authenticate a webhook request the way `provider` signs them. `now` bounds timestamped
/// schemes (seven.io: 300 s either way).
pub fn verify(
    provider: ProviderKind,
    secret: &Secret,
    request: &WebhookRequest<'_>,
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    match provider {
        ProviderKind::Meta => meta::verify(secret, request),
        ProviderKind::Whaapy => whaapy::verify(secret, request),
        ProviderKind::Wazzup => wazzup::verify(secret, request),
        ProviderKind::Seven => seven::verify(secret, request, now),
        ProviderKind::Waspy | ProviderKind::Mock => waspy::verify(secret, request),
    }
}

/// Read the status reports in an authenticated body.
pub fn parse(provider: ProviderKind, body: &[u8]) -> Result<Parsed, ParseError> {
    match provider {
        ProviderKind::Meta => meta::parse(body),
        ProviderKind::Whaapy => whaapy::parse(body),
        ProviderKind::Wazzup => wazzup::parse(body),
        ProviderKind::Seven => seven::parse(body),
        ProviderKind::Waspy | ProviderKind::Mock => waspy::parse(body),
    }
}

/// Like [`parse`], with the request's headers for gateways that may name the event only there
/// (Whaapy's `X-Webhook-Event`); the same as [`parse`] for the others.
pub fn parse_request(
    provider: ProviderKind,
    request: &WebhookRequest<'_>,
) -> Result<Parsed, ParseError> {
    match provider {
        ProviderKind::Whaapy => {
            let event = request
                .headers
                .get(whaapy::EVENT_HEADER)
                .and_then(|value| value.to_str().ok());
            whaapy::parse_with_event(request.body, event)
        }
        other => parse(other, request.body),
    }
}

/// A receipt in `provider`'s webhook format (for the mock gateway and tests).
pub fn render(provider: ProviderKind, receipt: &Receipt) -> Vec<u8> {
    match provider {
        ProviderKind::Meta => meta::render(receipt),
        ProviderKind::Whaapy => whaapy::render(receipt),
        ProviderKind::Wazzup => wazzup::render(receipt),
        ProviderKind::Seven => seven::render(receipt),
        ProviderKind::Waspy | ProviderKind::Mock => waspy::render(receipt),
    }
}

/// The headers (and, for schemes that sign the URL, nothing else) that authenticate `body`
/// sent as `method` to `url` for `provider`, signed at `now`.
pub fn sign(
    provider: ProviderKind,
    secret: &Secret,
    method: &str,
    url: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Vec<(HeaderName, HeaderValue)> {
    match provider {
        ProviderKind::Meta => meta::sign(secret, body),
        ProviderKind::Whaapy => whaapy::sign(secret, body, now),
        ProviderKind::Wazzup => wazzup::sign(secret),
        ProviderKind::Seven => seven::sign(secret, method, url, body, now),
        ProviderKind::Waspy | ProviderKind::Mock => waspy::sign(secret),
    }
}

/// Compare two byte strings in constant time (for their common length; a length mismatch
/// answers false at once, which reveals only the length of a fixed-size digest).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Hex HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const ALL: [ProviderKind; 6] = [
        ProviderKind::Meta,
        ProviderKind::Waspy,
        ProviderKind::Whaapy,
        ProviderKind::Wazzup,
        ProviderKind::Seven,
        ProviderKind::Mock,
    ];

    /// What the mock gateway does (render, sign) and what the listener and consumer do
    /// (verify, parse), through the dispatchers, for every provider.
    #[test]
    fn every_provider_round_trips_through_the_dispatchers() {
        let secret = Secret::new("shared-secret");
        let now = Utc.timestamp_opt(1_790_000_000, 0).unwrap();
        let url = "https://hooks.example.com/webhooks/ch";
        for provider in ALL {
            let receipt = Receipt {
                provider_message_id: format!("{}-msg-1", provider.as_str()),
                status: Status::Delivered,
                job_id: None,
                error: None,
                occurred_at: Some(now),
            };
            let body = render(provider, &receipt);
            let headers: HeaderMap = sign(provider, &secret, "POST", url, &body, now)
                .into_iter()
                .collect();
            let request = WebhookRequest {
                method: "POST",
                url,
                headers: &headers,
                query: None,
                body: &body,
            };
            assert_eq!(
                verify(provider, &secret, &request, now),
                Ok(()),
                "{provider:?}"
            );
            let other = Secret::new("other-secret");
            assert!(
                verify(provider, &other, &request, now).is_err(),
                "{provider:?}"
            );
            let expected = Parsed::Receipts(vec![receipt]);
            assert_eq!(parse(provider, &body), Ok(expected.clone()), "{provider:?}");
            assert_eq!(
                parse_request(provider, &request),
                Ok(expected),
                "{provider:?}"
            );
        }
    }

    #[test]
    fn whaapy_event_header_is_used_by_parse_request() {
        let body = br#"{"data":{"id":"m1"}}"#;
        let headers: HeaderMap = [(
            HeaderName::from_static(whaapy::EVENT_HEADER),
            HeaderValue::from_static("message.read"),
        )]
        .into_iter()
        .collect();
        let request = WebhookRequest {
            method: "POST",
            url: "https://hooks.example.com/webhooks/whaapy",
            headers: &headers,
            query: None,
            body,
        };
        assert!(parse(ProviderKind::Whaapy, body).is_err());
        let Ok(Parsed::Receipts(receipts)) = parse_request(ProviderKind::Whaapy, &request) else {
            panic!("not receipts");
        };
        assert_eq!(receipts.len(), 1);
        assert_eq!(receipts[0].status, Status::Read);
    }
}
