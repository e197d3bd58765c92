//! Webhooks in (SPEC §6, §10): status receipts about what we sent, and what customers write.
//!
//! Each gateway's `webhook.rs` implements [`WebhookFormat`] for its webhooks, which is pure,
//! like the send adapters: it authenticates a webhook request ([`WebhookFormat::verify`], and
//! Meta's GET handshake), reads the status reports in its body ([`WebhookFormat::parse`]), and
//! renders and signs receipts in that format ([`WebhookFormat::render`],
//! [`WebhookFormat::sign`]) so the simulator can send them and tests can forge them.
//! Publishing, correlation and outcomes live in [`crate::http`] (the listener) and
//! [`crate::worker`] (the receipt consumer). The free functions here reach a provider's format
//! through the registry, for callers that hold a provider name.
//!
//! `fields` holds what every format needs to read a body (JSON access that names the
//! offending field, timestamps, status tables, secret checks).

pub(crate) mod fields;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::gateway;
use crate::config::{ProviderKind, Secret};
use crate::inbound::Content;
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
    /// The business number the gateway names for it (Meta's `metadata.phone_number_id`), which
    /// routes it to the channel whose sender that is when several share one callback URL.
    pub sender: Option<String>,
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
    /// Status reports, inbound messages and what else the body said (possibly nothing).
    Batch(Batch),
    /// A connectivity probe that must get 200 and publishes nothing (Wazzup's `{"test":true}`).
    Probe,
}

impl Parsed {
    /// A body holding only `receipts`.
    pub fn receipts(receipts: Vec<Receipt>) -> Self {
        Self::Batch(Batch {
            receipts,
            ..Batch::default()
        })
    }
}

/// Everything a readable webhook body held. One unreadable item does not spoil its
/// neighbours: it is listed in `unreadable` and the rest are applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Status reports about messages we sent.
    pub receipts: Vec<Receipt>,
    /// Messages customers sent.
    pub inbound: Vec<Inbound>,
    /// Errors the gateway reported about the account or the webhook rather than a message
    /// (Meta's value-level `errors[]`).
    pub notices: Vec<Notice>,
    /// Status words the gateway sent that mensajero does not track (`deleted`, `played`, …).
    pub ignored_statuses: Vec<String>,
    /// Items that could not be read, each with where it was and why.
    pub unreadable: Vec<ParseError>,
}

/// One message a customer sent, as a gateway posted it, its content in Meta's inbound shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// The gateway's id of the message (its event id derives from it).
    pub provider_message_id: String,
    /// The customer's number in E.164 with `+`, when the gateway gives a phone number.
    pub from: Option<String>,
    /// The customer's business-scoped user id (Meta's BSUID), when given.
    pub user_id: Option<String>,
    /// The customer's profile name, when given.
    pub profile_name: Option<String>,
    /// When the customer sent it, as the gateway says.
    pub timestamp: Option<DateTime<Utc>>,
    /// What it says.
    pub content: Content,
    /// The gateway's id of the message it answers, quotes or reacts to.
    pub context_id: Option<String>,
    /// The business number it was written to (Meta's `metadata.phone_number_id`), for routing.
    pub sender: Option<String>,
    /// The gateway's own item, untouched.
    pub raw: serde_json::Value,
}

/// An error a gateway reported outside any message (Meta's value-level `errors[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The gateway's code, when given.
    pub code: Option<String>,
    /// Its text.
    pub message: String,
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

/// One gateway's webhooks: how they are authenticated, read and (by the simulator and tests)
/// written. Each gateway folder's `webhook.rs` implements it.
pub trait WebhookFormat: Send + Sync + 'static {
    /// Authenticate a webhook request the way this gateway signs them. `now` bounds
    /// timestamped schemes (seven.io: 300 s either way).
    fn verify(
        &self,
        secret: &Secret,
        request: &WebhookRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError>;

    /// Whether `body` is a connectivity probe, answered 200 before authentication and
    /// publishing nothing (Wazzup's `{"test":true}`).
    fn is_probe(&self, _body: &[u8]) -> bool {
        false
    }

    /// Answer the GET verification handshake (Meta's `hub.challenge`) with `query` against
    /// the channel's verify token; `None` where the gateway has no handshake.
    fn handshake(&self, _query: &str, _token: &Secret) -> Option<Result<String, AuthError>> {
        None
    }

    /// Request headers (lower case) that [`WebhookFormat::parse`] needs besides the body: the
    /// listener keeps them with the body when it queues it.
    fn kept_headers(&self) -> &'static [&'static str] {
        &[]
    }

    /// Read the status reports and inbound messages in an authenticated body; `headers`
    /// holds the [kept](WebhookFormat::kept_headers) ones. `Err` only when the body as a whole
    /// cannot be read; an unreadable item is listed in [`Batch::unreadable`].
    fn parse(&self, body: &[u8], headers: &HeaderMap) -> Result<Parsed, ParseError>;

    /// A receipt in this format (for the simulator and tests).
    fn render(&self, receipt: &Receipt) -> Vec<u8>;

    /// An inbound message in this format (for the simulator and tests); `None` where the
    /// gateway documents no inbound format, so none can be forged faithfully.
    fn render_inbound(&self, _inbound: &Inbound) -> Option<Vec<u8>> {
        None
    }

    /// The headers (and, for schemes that sign the URL, nothing else) that authenticate
    /// `body` sent as `method` to `url`, signed at `now`.
    fn sign(
        &self,
        secret: &Secret,
        method: &str,
        url: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Vec<(HeaderName, HeaderValue)>;
}

/// Authenticate a webhook request the way `provider` signs them.
pub fn verify(
    provider: ProviderKind,
    secret: &Secret,
    request: &WebhookRequest<'_>,
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    gateway(provider).webhook().verify(secret, request, now)
}

/// Read the status reports and inbound messages in an authenticated body that came without
/// headers.
pub fn parse(provider: ProviderKind, body: &[u8]) -> Result<Parsed, ParseError> {
    gateway(provider).webhook().parse(body, &HeaderMap::new())
}

/// A receipt in `provider`'s webhook format.
pub fn render(provider: ProviderKind, receipt: &Receipt) -> Vec<u8> {
    gateway(provider).webhook().render(receipt)
}

/// An inbound message in `provider`'s webhook format, where it has one.
pub fn render_inbound(provider: ProviderKind, inbound: &Inbound) -> Option<Vec<u8>> {
    gateway(provider).webhook().render_inbound(inbound)
}

/// The headers that authenticate `body` sent as `method` to `url` for `provider`, at `now`.
pub fn sign(
    provider: ProviderKind,
    secret: &Secret,
    method: &str,
    url: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Vec<(HeaderName, HeaderValue)> {
    gateway(provider)
        .webhook()
        .sign(secret, method, url, body, now)
}

/// Compare two byte strings in constant time (for their common length; a length mismatch
/// answers false at once, which reveals only the length of a fixed-size digest).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Hex HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}
