//! Gateways (SPEC §8): one folder per gateway API, behind one seam.
//!
//! A gateway's folder (`gateways/<name>/`) holds everything about it: `send.rs`, its
//! [`Adapter`] and error table; `webhook.rs`, its [`WebhookFormat`] (verify, parse, render,
//! sign); `simulator.rs`, the routes the mock gateway speaks its API with; and `mod.rs`, its
//! [`Gateway`]: what it can do ([`Capabilities`]) and how a channel sends through it.
//! [`gateway`] maps a provider name to it, [`registry`] walks them all: shared code asks a
//! gateway, it never names one. `simulator/` is the mock gateway's shared core; `mock/` the
//! in-process `mock` provider, which borrows Waspy's formats.
//!
//! An [`Adapter`] is pure: it turns a canonical [`Job`] into an [`HttpCall`] and an
//! [`HttpReply`] into an [`Accepted`] or a classified [`Failure`]. It knows nothing of
//! RabbitMQ or Redis, so it is tested against an HTTP fake alone. [`HttpGateway`] runs
//! the call with reqwest and classifies transport errors the same way for every provider;
//! [`ChannelGateway`] is what the worker holds per channel.

pub mod meta;
pub mod mock;
pub mod seven;
pub mod simulator;
pub mod waspy;
pub mod wazzup;
pub mod webhook;
pub mod whaapy;

use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::config::{ChannelConfig, ProviderKind, Secret};
use crate::job::Job;
use crate::retry::{ErrorClass, Failure, Sent};
use simulator::MockCore;
pub use webhook::WebhookFormat;

/// Everything shared code may ask about one gateway. One implementation per gateway folder,
/// a unit struct in its `mod.rs`; [`gateway`] finds it by provider name.
pub trait Gateway: Send + Sync + 'static {
    /// The provider name this gateway answers to.
    fn kind(&self) -> ProviderKind;

    /// What this gateway can do, which the configuration check and the pipeline go by.
    fn capabilities(&self) -> Capabilities;

    /// What sends one channel's jobs: this gateway's [`Adapter`], run over HTTP at the
    /// channel's `base_url` ([`ChannelSetup::over_http`]), or, for the in-process `mock`,
    /// the simulator itself.
    fn connect(&self, setup: ChannelSetup<'_>) -> anyhow::Result<ChannelGateway>;

    /// Its webhooks: how the listener authenticates them, how the receipt consumer reads
    /// them, how the simulator writes them.
    fn webhook(&self) -> &'static dyn WebhookFormat;

    /// The simulator's routes speaking this gateway's API (`mensajero mock-gateway` merges
    /// every gateway's); `None` for the in-process mock, which has no API of its own.
    fn simulator(&self) -> Option<Router<MockCore>>;

    /// How this API writes the simulator's message id `id` in its answers and receipts.
    fn wire_id(&self, id: &str) -> String {
        id.to_owned()
    }
}

/// What a gateway can do. Shared code decides by these, never by the gateway's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// It deduplicates a repeated request by our idempotency key, which makes resending after
    /// an ambiguous failure safe (a dedupe lease may be taken over, `on_ambiguous` is moot).
    pub idempotency: bool,
    /// A channel must name its sending identity (`sender`): the gateway's API key alone does
    /// not select the number.
    pub needs_sender: bool,
    /// It has a status endpoint, so a channel may set `poll_after`.
    pub polling: bool,
    /// It is called over HTTP, so a channel needs a `base_url` and an API key.
    pub remote: bool,
}

/// One line per gateway: the match behind [`gateway`] and the list behind [`registry`] are
/// written from the same lines, so they cannot disagree (and the match is exhaustive).
macro_rules! registry {
    ($($kind:ident => $gateway:path,)*) => {
        /// The gateway a provider name maps to: the one place that does.
        pub fn gateway(kind: ProviderKind) -> &'static dyn Gateway {
            match kind {
                $(ProviderKind::$kind => &$gateway,)*
            }
        }

        /// Every gateway, once each, for code that walks them (the simulator's router, tests).
        pub fn registry() -> impl Iterator<Item = &'static dyn Gateway> {
            const ALL: &[&dyn Gateway] = &[$(&$gateway,)*];
            ALL.iter().copied()
        }
    };
}

// The registry: adding a gateway is its folder plus one line here (and its name in
// `config::ProviderKind`).
registry! {
    Meta => meta::MetaGateway,
    Waspy => waspy::WaspyGateway,
    Whaapy => whaapy::WhaapyGateway,
    Wazzup => wazzup::WazzupGateway,
    Seven => seven::SevenGateway,
    Mock => mock::MockGateway,
}

/// One channel as its gateway is built for it.
pub struct ChannelSetup<'a> {
    /// The channel's name, for error messages.
    pub name: &'a str,
    /// Its configuration.
    pub config: &'a ChannelConfig,
    /// Its API key, when the environment holds it.
    pub api_key: Option<Secret>,
    /// Its webhook secret: the in-process simulator signs its receipts with it.
    pub webhook_secret: Option<Secret>,
}

impl ChannelSetup<'_> {
    /// The channel sending through the adapter `make` builds from its `sender` (empty when it
    /// names none) and API key, over HTTP at its `base_url`.
    pub fn over_http(
        self,
        make: impl FnOnce(String, Secret) -> Box<dyn Adapter>,
    ) -> anyhow::Result<ChannelGateway> {
        let name = self.name;
        let api_key = self
            .api_key
            .ok_or_else(|| anyhow::anyhow!("channel {name}: API key missing"))?;
        let adapter = make(self.config.sender.clone().unwrap_or_default(), api_key);
        let base_url = self
            .config
            .base_url
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("channel {name}: base_url missing"))?;
        Ok(ChannelGateway::Http(HttpGateway::new(
            adapter,
            base_url,
            self.config.timeout,
        )?))
    }
}

/// What one send needs besides the job itself.
#[derive(Debug, Clone, Copy)]
pub struct SendContext<'a> {
    /// Handed to the gateway's own idempotency mechanism on every attempt.
    pub idempotency_key: &'a str,
    /// 1-based attempt number.
    pub attempt: u32,
}

/// The gateway took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The gateway's id for the message, used to correlate receipts.
    pub provider_message_id: String,
    /// The gateway answered from its idempotency cache: an earlier attempt had already sent it.
    pub replayed: bool,
}

/// The outcome of one send attempt.
pub type SendResult = Result<Accepted, Failure>;

/// An HTTP request as an adapter describes it, independent of the HTTP client.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCall {
    /// HTTP method.
    pub method: reqwest::Method,
    /// Path (and query) appended to the channel's `base_url`.
    pub path: String,
    /// Headers, authentication included.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// JSON body.
    pub body: Value,
}

/// An HTTP answer as the adapter sees it.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Response headers (`Retry-After`, replay markers).
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Bytes,
}

impl HttpReply {
    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The `Retry-After` header, parsed.
    pub fn retry_after(&self) -> Option<Duration> {
        self.headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::retry::parse_retry_after)
    }
}

/// A provider API: canonical job in, HTTP request out; HTTP answer in, classified result out.
pub trait Adapter: Send + Sync + 'static {
    /// Which provider this adapter speaks.
    fn provider(&self) -> ProviderKind;

    /// Build the send request, or fail the job when this gateway cannot express it.
    fn request(&self, job: &Job, ctx: SendContext<'_>) -> Result<HttpCall, Failure>;

    /// Classify the gateway's answer.
    fn response(&self, reply: &HttpReply) -> SendResult;

    /// The request asking the gateway for a sent message's current status, for gateways that
    /// offer one (Waspy's `GET /api/v2/messages/{id}`): receipts lost on the way can be
    /// filled in by polling (SPEC §6). Its answer body must be readable by this provider's
    /// receipt parser. `None` where the gateway has no such endpoint.
    fn status_request(&self, _provider_message_id: &str) -> Option<HttpCall> {
        None
    }

    /// The class of one of this gateway's error codes, as its error table has it: what a
    /// `failed` receipt carrying that code means (SPEC §3's error on a job that failed after
    /// `sent`). `None` for codes the table does not name.
    fn code_class(&self, _code: &str) -> Option<ErrorClass> {
        None
    }
}

/// An adapter plus the HTTP client that runs its calls.
pub struct HttpGateway {
    adapter: Box<dyn Adapter>,
    client: reqwest::Client,
    base_url: String,
}

impl HttpGateway {
    /// A gateway for `adapter` at `base_url`, with per-request `timeout`.
    pub fn new(
        adapter: Box<dyn Adapter>,
        base_url: &str,
        timeout: Duration,
    ) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            // Keep every connection the concurrency needs: a cap below `max_in_flight` closes
            // the excess each time calls come in waves, and each new one costs a TCP (and TLS)
            // handshake. Idle ones still close after hyper's idle timeout.
            .pool_max_idle_per_host(usize::MAX)
            // Gateways do not redirect API calls: a redirect means `base_url` is wrong, and
            // following it would turn a 301/302'd POST into a GET (see `redirect_failure`).
            .redirect(reqwest::redirect::Policy::none())
            // HTTP/1.1 only, also over TLS where ALPN would pick HTTP/2: hyper puts every call
            // to a host on one HTTP/2 connection and never opens a second when the gateway's
            // stream limit is reached (hyperium/hyper#2197), so calls in flight would be
            // capped at that limit (often 100-250) whatever `max_in_flight` says.
            .http1_only()
            .user_agent(concat!("mensajero/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            adapter,
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
        })
    }

    /// Send one attempt.
    pub async fn send(&self, job: &Job, ctx: SendContext<'_>) -> SendResult {
        let call = self.adapter.request(job, ctx)?;
        let reply = self.execute(call).await?;
        if let Some(failure) = redirect_failure(&reply) {
            return Err(failure);
        }
        self.adapter.response(&reply)
    }

    /// Ask the gateway for a sent message's status. `None` when it has no status endpoint;
    /// otherwise the raw answer (any status code), or why there was none.
    pub async fn status(&self, provider_message_id: &str) -> Option<Result<HttpReply, Failure>> {
        let call = self.adapter.status_request(provider_message_id)?;
        Some(self.execute(call).await)
    }

    /// Run a call: transport errors are classified like every send's; a call that got an
    /// answer whose body could not be read may have been acted on (`maybe_sent`).
    async fn execute(&self, call: HttpCall) -> Result<HttpReply, Failure> {
        let HttpCall {
            method,
            path,
            headers,
            body,
        } = call;
        let url = format!("{}{}", self.base_url, path);
        // Status lookups are GETs without a body; every send carries its JSON.
        let has_body = method != reqwest::Method::GET;
        let mut request = self.client.request(method, &url);
        if has_body {
            request = request.json(&body);
        }
        // Serialized: the JSON tree is not kept for the whole wait on the gateway.
        drop(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(transport_failure)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| {
            // The gateway answered, so it may well have taken the message.
            Failure::new(
                ErrorClass::Transient,
                "read_error",
                format!("reading the answer failed: {}", without_url(&e)),
            )
            .maybe_sent()
        })?;
        Ok(HttpReply {
            status,
            headers,
            body,
        })
    }
}

/// A redirect instead of an answer: the gateway did not take the message, and the channel's
/// `base_url` points at the wrong place (`http://` for `https://`, a moved host). Channel
/// trouble, so it shows on `mensajero_channel_healthy` and may fail over; the target is named
/// without its query string, which could carry a credential.
fn redirect_failure(reply: &HttpReply) -> Option<Failure> {
    if !(300..400).contains(&reply.status) {
        return None;
    }
    let location = reply
        .headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map_or("nowhere (no Location)", |l| {
            l.split('?').next().unwrap_or(l)
        });
    Some(Failure::new(
        ErrorClass::Channel,
        "redirect",
        format!(
            "the gateway answered HTTP {} redirecting to {location}: check the channel's base_url",
            reply.status
        ),
    ))
}

/// Classify a reqwest error. Connect failures provably did not send; anything later may have.
fn transport_failure(e: reqwest::Error) -> Failure {
    let detail = without_url(&e);
    if e.is_connect() {
        Failure::new(
            ErrorClass::Transient,
            "connect",
            format!("cannot connect: {detail}"),
        )
    } else if e.is_timeout() {
        Failure::new(
            ErrorClass::Transient,
            "timeout",
            format!("no answer in time: {detail}"),
        )
        .maybe_sent()
    } else {
        Failure::new(ErrorClass::Transient, "transport", detail).maybe_sent()
    }
}

/// reqwest's Display includes the URL; a gateway URL may carry a key in its query string.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<gateway>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What the worker holds per channel.
pub enum ChannelGateway {
    /// A real gateway over HTTP.
    Http(HttpGateway),
    /// The in-process simulator (the `mock` provider).
    InProcess(mock::InProcess),
}

impl ChannelGateway {
    /// Build the gateway a channel's configuration describes. `webhook_secret` is the
    /// channel's own: the in-process simulator signs its receipts with it.
    pub fn from_config(
        name: &str,
        channel: &ChannelConfig,
        api_key: Option<Secret>,
        webhook_secret: Option<Secret>,
    ) -> anyhow::Result<Self> {
        gateway(channel.provider).connect(ChannelSetup {
            name,
            config: channel,
            api_key,
            webhook_secret,
        })
    }

    /// The provider's name, for outcomes.
    pub fn provider(&self) -> ProviderKind {
        match self {
            Self::Http(g) => g.adapter.provider(),
            Self::InProcess(m) => m.provider(),
        }
    }

    /// Whether this gateway can express the job's message at all (failover candidates).
    pub fn can_express(&self, job: &Job) -> bool {
        match self {
            Self::Http(g) => {
                let ctx = SendContext {
                    idempotency_key: job.idempotency_key(),
                    attempt: 1,
                };
                !matches!(g.adapter.request(job, ctx), Err(f) if f.code == UNSUPPORTED)
            }
            Self::InProcess(_) => true,
        }
    }

    /// Send one attempt.
    pub async fn send(&self, job: &Job, ctx: SendContext<'_>) -> SendResult {
        match self {
            Self::Http(g) => g.send(job, ctx).await,
            Self::InProcess(m) => m.send(job, ctx).await,
        }
    }

    /// The class of a gateway error code (from a `failed` receipt), if its table names it.
    pub fn code_class(&self, code: &str) -> Option<ErrorClass> {
        match self {
            Self::Http(g) => g.adapter.code_class(code),
            Self::InProcess(m) => m.code_class(code),
        }
    }

    /// Ask for a sent message's status, where the gateway has an endpoint for it.
    pub async fn status(&self, provider_message_id: &str) -> Option<Result<HttpReply, Failure>> {
        match self {
            Self::Http(g) => g.status(provider_message_id).await,
            Self::InProcess(_) => None,
        }
    }
}

/// A header value carrying a credential: marked sensitive (never shown in debug output), and
/// a key that cannot be a header value fails as `auth` without repeating it.
pub fn credential_header(value: &str) -> Result<HeaderValue, Failure> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        Failure::new(
            ErrorClass::Auth,
            "bad_api_key",
            "the API key is not a valid header value",
        )
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// `Authorization: Bearer <key>`, as Waspy, Whaapy, Wazzup and Meta take it.
pub fn bearer(key: &Secret) -> Result<(HeaderName, HeaderValue), Failure> {
    let value = credential_header(&format!("Bearer {}", key.expose()))?;
    Ok((reqwest::header::AUTHORIZATION, value))
}

/// Refuse a job whose message type is not in `supported`, or that replies to a message
/// (`context`), for gateways whose documents list neither: sending it anyway would silently
/// change the message.
pub fn require_expressible(
    provider: ProviderKind,
    job: &Job,
    supported: &[&str],
) -> Result<(), Failure> {
    let kind = job.message.type_name();
    if !supported.contains(&kind) {
        return Err(unsupported(provider, &format!("{kind} messages")));
    }
    if job.message.context.is_some() {
        return Err(unsupported(provider, "replies (message.context)"));
    }
    Ok(())
}

/// Code of failures for messages a gateway cannot express.
pub const UNSUPPORTED: &str = "unsupported_message_type";

/// A gateway that cannot express a message type fails it as `invalid` and names itself,
/// never silently downgrading it (SPEC §2).
pub fn unsupported(provider: ProviderKind, what: &str) -> Failure {
    Failure::invalid(
        UNSUPPORTED,
        format!("{} cannot send {what}", provider.as_str()),
    )
}

/// Merge a job's `provider_options` into a request body. Options may add fields but not
/// replace the ones the adapter set: a typo'd option must not silently re-address a message.
pub fn merge_options(body: &mut Map<String, Value>, job: &Job) -> Result<(), Failure> {
    let Some(options) = &job.provider_options else {
        return Ok(());
    };
    for (key, value) in options {
        if body.contains_key(key) {
            return Err(Failure::invalid(
                "invalid_field",
                format!("provider_options.{key}: conflicts with a field mensajero sets"),
            ));
        }
        body.insert(key.clone(), value.clone());
    }
    Ok(())
}

/// `id` as one URL path segment: unreserved characters as they are, the rest percent-encoded,
/// so a gateway's id can never reach another path.
pub fn path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Find an error code in the JSON body shapes gateways use: `{"error":{"code"}}`,
/// `{"code"}`, `{"error_code"}`, `{"errors":[{"code"}]}`. Numbers come back as text.
pub fn error_code(body: &Value) -> Option<String> {
    let candidates = [
        body.pointer("/error/code"),
        body.get("code"),
        body.get("error_code"),
        body.pointer("/errors/0/code"),
        body.get("error").filter(|e| e.is_string()),
    ];
    candidates.into_iter().flatten().find_map(|v| match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// Find a human error message in the usual body shapes.
pub fn error_message(body: &Value) -> Option<String> {
    [
        body.pointer("/error/message"),
        body.get("message"),
        body.get("error_message"),
        body.get("description"),
        body.pointer("/errors/0/message"),
    ]
    .into_iter()
    .flatten()
    .find_map(|v| v.as_str().map(str::to_owned))
}

/// Whether an answer that no gateway table explains may have sent the message: the one rule
/// for every gateway (README "Guarantees"), since SPEC §4 forbids failing over anything that
/// may have reached a gateway.
///
/// A 500 (the gateway failed while handling the request), 502 and 504 (a proxy lost the
/// gateway's answer, not necessarily its work) and any other server error may have sent it;
/// so may a 2xx that carries an error no table names. A 503 (the service refused to take
/// work), 501 / 505 (the request was not understood), and every 4xx (429 included) did not.
/// A gateway's table overrides this for the codes it documents.
pub fn sent_for_status(status: u16) -> Sent {
    match status {
        400..=499 | 501 | 503 | 505 => Sent::No,
        _ => Sent::Maybe,
    }
}

/// Default class for an HTTP status no table names: 5xx and unknowns are transient (safe to
/// retry), 401/403 auth, 429 rate limited, other 4xx invalid.
pub fn class_for_status(status: u16) -> ErrorClass {
    match status {
        401 | 403 => ErrorClass::Auth,
        408 => ErrorClass::Transient,
        429 => ErrorClass::RateLimited,
        400..=499 => ErrorClass::Invalid,
        _ => ErrorClass::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use chrono::{TimeZone, Utc};

    use super::webhook::{Parsed, Receipt, WebhookRequest};
    use crate::outcome::Status;

    /// Every provider name, each with a code its gateway's error table knows (the mock's
    /// receipts carry Waspy's codes) and the class the table gives it.
    const KNOWN_CODES: [(ProviderKind, &str, ErrorClass); 6] = [
        (ProviderKind::Meta, "131047", ErrorClass::WindowExpired),
        (
            ProviderKind::Waspy,
            "SERVICE_WINDOW_EXPIRED",
            ErrorClass::WindowExpired,
        ),
        (ProviderKind::Whaapy, "131047", ErrorClass::WindowExpired),
        (ProviderKind::Wazzup, "BAD_CONTACT", ErrorClass::Rejected),
        (ProviderKind::Seven, "7002001", ErrorClass::WindowExpired),
        (
            ProviderKind::Mock,
            "SERVICE_WINDOW_EXPIRED",
            ErrorClass::WindowExpired,
        ),
    ];

    /// A gateway's channel, configured with the least that every gateway accepts.
    fn connect(gateway: &dyn Gateway) -> ChannelGateway {
        let config: ChannelConfig = toml::from_str(&format!(
            "provider = \"{}\"\nbase_url = \"http://127.0.0.1:9\"\nsender = \"106540352242922\"",
            gateway.kind().as_str()
        ))
        .expect("channel config");
        gateway
            .connect(ChannelSetup {
                name: "unit",
                config: &config,
                api_key: Some(Secret::new("unit-key")),
                webhook_secret: None,
            })
            .unwrap_or_else(|e| panic!("{:?}: {e}", gateway.kind()))
    }

    /// Every real gateway's adapter, through the registry.
    fn adapters() -> Vec<Box<dyn Adapter>> {
        registry()
            .filter_map(|gateway| match connect(gateway) {
                ChannelGateway::Http(http) => Some(http.adapter),
                ChannelGateway::InProcess(_) => None,
            })
            .collect()
    }

    #[test]
    fn every_provider_is_registered_once_and_maps_to_itself() {
        assert_eq!(registry().count(), KNOWN_CODES.len());
        for (kind, _, _) in KNOWN_CODES {
            assert_eq!(
                registry().filter(|g| g.kind() == kind).count(),
                1,
                "{kind:?}"
            );
            assert_eq!(gateway(kind).kind(), kind);
        }
    }

    /// What each gateway must bring: a channel built from a minimal configuration that is
    /// called over HTTP exactly when the gateway says it is remote, an error table, simulator
    /// routes (all but the in-process mock), and a webhook format whose rendered receipt,
    /// signed, verifies and parses back (what the mock gateway does, then the listener and
    /// the consumer).
    #[test]
    fn every_registered_gateway_brings_its_whole_seam() {
        let secret = Secret::new("shared-secret");
        let now = Utc.timestamp_opt(1_790_000_000, 0).unwrap();
        let url = "https://hooks.example.com/webhooks/ch";
        for (kind, code, class) in KNOWN_CODES {
            let gateway = gateway(kind);
            let channel = connect(gateway);
            assert_eq!(channel.provider(), kind);
            assert_eq!(
                matches!(channel, ChannelGateway::Http(_)),
                gateway.capabilities().remote,
                "{kind:?}"
            );
            assert_eq!(channel.code_class(code), Some(class), "{kind:?} {code}");
            // Every gateway called over HTTP has an API the simulator speaks.
            assert_eq!(
                gateway.simulator().is_some(),
                gateway.capabilities().remote,
                "{kind:?}"
            );

            let format = gateway.webhook();
            let receipt = Receipt {
                provider_message_id: format!("{}-msg-1", kind.as_str()),
                status: Status::Delivered,
                job_id: None,
                error: None,
                occurred_at: Some(now),
                sender: None,
            };
            let body = format.render(&receipt);
            let headers: HeaderMap = format
                .sign(&secret, "POST", url, &body, now)
                .into_iter()
                .collect();
            let request = WebhookRequest {
                method: "POST",
                url,
                headers: &headers,
                query: None,
                body: &body,
            };
            assert_eq!(format.verify(&secret, &request, now), Ok(()), "{kind:?}");
            let other = Secret::new("other-secret");
            assert!(format.verify(&other, &request, now).is_err(), "{kind:?}");
            assert!(!format.is_probe(&body), "{kind:?}");
            let expected = Ok(Parsed::receipts(vec![receipt]));
            assert_eq!(format.parse(&body, &headers), expected, "{kind:?}");
            assert_eq!(webhook::parse(kind, &body), expected, "{kind:?}");
        }
    }

    fn reply(status: u16, body: &'static [u8]) -> HttpReply {
        HttpReply {
            status,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body),
        }
    }

    /// SPEC §4 forbids failing over a job that may have reached a gateway, so "may this error
    /// have sent?" has one answer for every gateway when its table does not explain the
    /// answer: a 500, 502 or 504 may have sent; a 503, a 429 or any other 4xx did not.
    #[test]
    fn every_gateway_answers_may_it_have_sent_the_same_way() {
        let bodies: [&[u8]; 3] = [
            b"<html>upstream trouble</html>",
            b"",
            br#"{"error":{"code":"NO_TABLE_NAMES_THIS","message":"?"},"code":"NO_TABLE_NAMES_THIS"}"#,
        ];
        let rows = [
            (500, Sent::Maybe),
            (502, Sent::Maybe),
            (504, Sent::Maybe),
            (503, Sent::No),
            (429, Sent::No),
            (400, Sent::No),
            (401, Sent::No),
            (404, Sent::No),
        ];
        for adapter in adapters() {
            let provider = adapter.provider();
            for (status, sent) in rows {
                for body in bodies {
                    let failure = adapter
                        .response(&reply(status, body))
                        .expect_err("an error status is never accepted");
                    assert_eq!(
                        failure.sent,
                        sent,
                        "{provider:?} HTTP {status} {:?}: {failure:?}",
                        String::from_utf8_lossy(body)
                    );
                    if status >= 500 {
                        assert_eq!(
                            failure.class,
                            ErrorClass::Transient,
                            "{provider:?} {status}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_shared_rule_by_status() {
        for status in [500, 502, 504, 507, 520, 200] {
            assert_eq!(sent_for_status(status), Sent::Maybe, "{status}");
        }
        for status in [501, 503, 505, 400, 408, 409, 413, 429] {
            assert_eq!(sent_for_status(status), Sent::No, "{status}");
        }
    }
}
