//! The worker's HTTP listener (SPEC §6, §9): `/healthz`, `/readyz`, `/metrics` and
//! `/webhooks/{channel}`.
//!
//! A webhook is authenticated the way the channel's gateway signs them (its
//! [`WebhookFormat`]), then its raw body is published with confirms to the webhooks queue,
//! together with the request headers the format keeps, and only then answered 200: a receipt
//! is durable before the gateway lets go of it, whatever happens to Redis or to this process
//! next. The listener parses nothing but a format's connectivity probe; the receipt consumer
//! reads the body later (and dead-letters what it cannot read), so the answer stays fast
//! under load.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;
use tokio::sync::RwLock;
use tracing::{debug, warn};

use crate::broker::{Publisher, Topology, headers as amqp_headers};
use crate::config::{Config, ProviderKind, Secret};
use crate::gateways::webhook::WebhookRequest;
use crate::gateways::{self, WebhookFormat};
use crate::metrics::Metrics;

/// Header naming the channel a receipt came in on.
pub const CHANNEL_HEADER: &str = amqp_headers::CHANNEL;

/// Prefix of the headers carrying the request headers a webhook format keeps
/// ([`WebhookFormat::kept_headers`]): `x-mensajero-header-<lower-case name>`.
pub const KEPT_HEADER_PREFIX: &str = "x-mensajero-header-";

/// The message header that carries the kept request header `name`.
pub fn kept_header(name: &str) -> String {
    format!("{KEPT_HEADER_PREFIX}{}", name.to_ascii_lowercase())
}

/// Where receipts queued before kept headers had their own prefix carry the one header that
/// was kept then, Whaapy's `X-Webhook-Event` (see [`LEGACY_KEPT_HEADERS`]). New messages
/// never carry it.
pub const EVENT_HEADER: &str = "x-mensajero-webhook-event";

/// Message headers of receipts queued by earlier versions, with the request header each
/// carried: still read, so that receipts waiting in the queue across an upgrade lose nothing.
pub const LEGACY_KEPT_HEADERS: &[(&str, &str)] = &[(EVENT_HEADER, "x-webhook-event")];

/// Accept-queue length asked of the kernel (it caps this at `net.core.somaxconn`). tokio's
/// `TcpListener::bind` asks for 1,024: a burst of more new connections than that overflows the
/// queue, and each dropped SYN costs its client a 1 s retransmission.
const LISTEN_BACKLOG: u32 = 4096;

/// A TCP listener on `addr` with a deep accept queue (the worker's listener, the mock gateway).
pub fn bind_listener(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted process can take its port back at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How long the listener waits for the broker to confirm a receipt before answering 503:
/// under seven.io's 5 s webhook timeout, so the gateway sees our answer, not its own timeout.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(4);

/// What the listener needs from the running worker: the current broker session's publisher
/// and whether RabbitMQ and Redis answer.
#[derive(Default)]
pub struct Live {
    publisher: RwLock<Option<Publisher>>,
    amqp_up: AtomicBool,
    /// The broker blocks this worker's connection (a resource alarm). Reported by `/readyz`
    /// but not failing it: the alarm is broker-wide, every replica has it alike (see `readyz`).
    amqp_blocked: AtomicBool,
    redis_up: AtomicBool,
}

impl Live {
    /// A broker session started (`Some`) or ended (`None`).
    pub async fn set_publisher(&self, publisher: Option<Publisher>) {
        self.amqp_up.store(publisher.is_some(), Ordering::SeqCst);
        // A new session starts unblocked; an ended one blocks nothing.
        self.amqp_blocked.store(false, Ordering::SeqCst);
        *self.publisher.write().await = publisher;
    }

    /// The broker blocked (`connection.blocked`) or unblocked this worker's connection.
    pub fn set_amqp_blocked(&self, blocked: bool) {
        self.amqp_blocked.store(blocked, Ordering::SeqCst);
    }

    /// Redis answered (or stopped answering).
    pub fn set_redis(&self, up: bool) {
        self.redis_up.store(up, Ordering::SeqCst);
    }

    /// Connected to both RabbitMQ and Redis.
    pub fn ready(&self) -> bool {
        self.amqp_up.load(Ordering::SeqCst) && self.redis_up.load(Ordering::SeqCst)
    }

    async fn publisher(&self) -> Option<Publisher> {
        self.publisher
            .read()
            .await
            .clone()
            .filter(Publisher::is_open)
    }
}

/// A channel as the listener sees it.
struct WebhookChannel {
    provider: ProviderKind,
    /// Its gateway's webhooks.
    format: &'static dyn WebhookFormat,
    secret: Option<Secret>,
    verify_token: Option<Secret>,
}

struct Inner {
    channels: HashMap<String, WebhookChannel>,
    topology: Topology,
    live: Arc<Live>,
    metrics: Metrics,
    public_url: Option<String>,
    max_body: usize,
    request_timeout: Duration,
}

/// The listener's shared state.
#[derive(Clone)]
pub struct HttpState(Arc<Inner>);

impl HttpState {
    /// State for `config`'s channels, publishing through whatever session `live` holds.
    pub fn new(config: &Config, live: Arc<Live>, metrics: Metrics) -> Self {
        let channels = config
            .channels
            .iter()
            .map(|(name, channel)| {
                let state = WebhookChannel {
                    provider: channel.provider,
                    format: gateways::gateway(channel.provider).webhook(),
                    secret: config.webhook_secret(name),
                    verify_token: config.verify_token(name),
                };
                (name.clone(), state)
            })
            .collect();
        Self(Arc::new(Inner {
            channels,
            topology: Topology::from_config(&config.amqp),
            live,
            metrics,
            public_url: config
                .http
                .public_url
                .as_deref()
                .map(|u| u.trim_end_matches('/').to_string()),
            max_body: config.http.max_body,
            request_timeout: config.http.request_timeout,
        }))
    }
}

/// The listener's routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/webhooks/{channel}", get(handshake).post(webhook))
        .with_state(state)
}

/// Connections served at once; more are closed on arrival. Gateways send a few webhooks at a
/// time each and Prometheus one scrape: this only bounds what a flood of idle sockets can hold.
const MAX_CONNECTIONS: usize = 1024;

/// Serve `router(state)` on `listener` until `shutdown` resolves.
///
/// Served with hyper directly rather than `axum::serve`, which sets no timer. Every
/// connection must send its next request's headers within `http.request_timeout`: the timer
/// starts as soon as the connection is accepted and again whenever it falls idle between
/// requests, so a socket that never sends a byte, a keep-alive connection left open and a
/// slowloris client are all cut off. Bodies are bounded by the same timeout in the handler,
/// and at most [`MAX_CONNECTIONS`] connections are open at once.
///
/// HTTP/1.1 only. hyper's version-detecting server reads the first bytes to tell HTTP/1 from
/// an HTTP/2 preface with no timer at all, and an HTTP/2 connection with no open stream has
/// none either, so either let an idle socket hold a slot for ever (1,024 of them locked every
/// gateway out). No gateway posts webhooks as cleartext HTTP/2 and Prometheus scrapes over
/// HTTP/1.1; a TLS terminator in front speaks HTTP/1.1 to us whatever its clients speak.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper::server::conn::http1::Builder;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let header_timeout = state.0.request_timeout;
    let app = router(state);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!("connection limit reached; closing a new connection");
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %e, "http connection ended with an error");
            }
            drop(slot);
        });
    }
    // In-flight requests (a webhook waiting for its confirm) get a moment to finish.
    let _ = tokio::time::timeout(CONFIRM_TIMEOUT, graceful.shutdown()).await;
    Ok(())
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 while connected to RabbitMQ and Redis. A broker that blocks publishers (a resource
/// alarm) is reported in the body, `"amqp_blocked": true`, but keeps the answer 200: the alarm
/// is broker-wide, so every replica would fail together and a load balancer would drop them all,
/// turning receipts that would wait and be answered (200 once the alarm clears, or 503 after
/// `CONFIRM_TIMEOUT`, which gateways retry) into connection errors, and flapping readiness with
/// every short alarm. No replica can do better than another: `mensajero_amqp_blocked` and its
/// alert are the signal, for the operator who can clear the alarm.
async fn readyz(State(state): State<HttpState>) -> Response {
    let live = &state.0.live;
    let amqp = live.amqp_up.load(Ordering::SeqCst);
    let redis = live.redis_up.load(Ordering::SeqCst);
    let blocked = live.amqp_blocked.load(Ordering::SeqCst);
    let status = if amqp && redis {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"amqp": amqp, "amqp_blocked": blocked, "redis": redis});
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.0.metrics.render(),
    )
        .into_response()
}

/// A gateway's verification handshake (Meta's): the challenge back when the verify token
/// matches; 405 on channels whose gateway has none or that configure no verify token.
async fn handshake(
    State(state): State<HttpState>,
    Path(channel): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(ch) = state.0.channels.get(&channel) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let answer = ch
        .verify_token
        .as_ref()
        .and_then(|token| ch.format.handshake(query.as_deref().unwrap_or(""), token));
    match answer {
        None => StatusCode::METHOD_NOT_ALLOWED.into_response(),
        Some(Ok(challenge)) => challenge.into_response(),
        Some(Err(e)) => {
            warn!(channel, error = %e, "webhook verification handshake refused");
            StatusCode::FORBIDDEN.into_response()
        }
    }
}

async fn webhook(
    State(state): State<HttpState>,
    Path(channel): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let inner = &state.0;
    let Some(ch) = inner.channels.get(&channel) else {
        inner.metrics.receipt("unknown", "unknown_channel");
        return (StatusCode::NOT_FOUND, "unknown channel\n").into_response();
    };
    let provider = ch.provider.as_str();
    let body = match read_body(body, &headers, inner.max_body, inner.request_timeout).await {
        Ok(body) => body,
        Err(status) => {
            inner.metrics.receipt(provider, status.1);
            return status.0.into_response();
        }
    };
    // A gateway may probe a new webhook URL (Wazzup does) possibly before a secret is set;
    // a probe publishes nothing, so answering it unauthenticated gives nothing away.
    if ch.format.is_probe(&body) {
        inner.metrics.receipt(provider, "probe");
        return StatusCode::OK.into_response();
    }
    let Some(secret) = &ch.secret else {
        warn!(
            channel,
            "webhook refused: the channel has no webhook_secret_env"
        );
        inner.metrics.receipt(provider, "unauthorized");
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let url = full_url(inner.public_url.as_deref(), &headers, &uri);
    let request = WebhookRequest {
        method: method.as_str(),
        url: &url,
        headers: &headers,
        query: uri.query(),
        body: &body,
    };
    if let Err(e) = ch.format.verify(secret, &request, Utc::now()) {
        warn!(channel, error = %e, "webhook refused");
        inner.metrics.receipt(provider, "unauthorized");
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(publisher) = inner.live.publisher().await else {
        inner.metrics.receipt(provider, "unavailable");
        return (StatusCode::SERVICE_UNAVAILABLE, "broker unavailable\n").into_response();
    };
    let mut extra = FieldTable::default();
    for &name in ch.format.kept_headers() {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            extra.insert(
                kept_header(name).into(),
                AMQPValue::LongString(value.into()),
            );
        }
    }
    let publish = publisher.receipt(&inner.topology, &channel, &body, extra);
    match tokio::time::timeout(CONFIRM_TIMEOUT, publish).await {
        Ok(Ok(())) => {
            debug!(channel, bytes = body.len(), "receipt accepted");
            inner.metrics.receipt(provider, "accepted");
            StatusCode::OK.into_response()
        }
        Ok(Err(e)) => {
            warn!(channel, error = %e, "receipt not accepted: the broker did not take it");
            inner.metrics.receipt(provider, "unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "broker unavailable\n").into_response()
        }
        Err(_) => {
            warn!(channel, "receipt not accepted: no broker confirm in time");
            inner.metrics.receipt(provider, "unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "broker unavailable\n").into_response()
        }
    }
}

/// Read a body of at most `limit` bytes within `timeout`; the error is the answer and the
/// metric's result word.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, (StatusCode, &'static str)> {
    const TOO_LARGE: (StatusCode, &str) = (StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(TOO_LARGE);
    }
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Err(TOO_LARGE)
            } else {
                Err((StatusCode::BAD_REQUEST, "bad_request"))
            }
        }
        Err(_) => Err((StatusCode::REQUEST_TIMEOUT, "timeout")),
    }
}

/// The URL the gateway called: the configured public base URL, else rebuilt from `Host` and
/// `X-Forwarded-Proto` (a TLS-terminating proxy sets it).
fn full_url(public_url: Option<&str>, headers: &HeaderMap, uri: &Uri) -> String {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if let Some(base) = public_url {
        return format!("{base}{path}");
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let scheme = text("x-forwarded-proto").unwrap_or("http");
    let host = text("host").unwrap_or("localhost");
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_url_prefers_the_configured_public_url() {
        let uri: Uri = "/webhooks/seven-de?x=1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "10.0.0.5:8080".parse().unwrap());
        assert_eq!(
            full_url(None, &headers, &uri),
            "http://10.0.0.5:8080/webhooks/seven-de?x=1"
        );
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(
            full_url(None, &headers, &uri),
            "https://10.0.0.5:8080/webhooks/seven-de?x=1"
        );
        assert_eq!(
            full_url(Some("https://hooks.example.com"), &headers, &uri),
            "https://hooks.example.com/webhooks/seven-de?x=1"
        );
    }
}
