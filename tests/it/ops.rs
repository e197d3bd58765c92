//! Operations (SPEC §9): what an operator sees of a worker is true to what happened.
//!
//! - `/metrics` after a known mix of jobs and receipts holds exactly the counts that mix
//!   should produce, with bounded labels only;
//! - `/readyz` follows the broker connection (cut with a TCP proxy, never by stopping the
//!   shared broker) while `/healthz` stays up, and work resumes after the reconnection;
//! - a worker process logging at debug never writes a channel's API key or webhook secret
//!   anywhere an operator or consumer can read, and its JSON log lines about a job name it.
//!
//! Real RabbitMQ and Redis; gateways are faked with wiremock or the mock gateway.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use mensajero::config::{MockOptions, ProviderKind, Secret};
use mensajero::gateways::webhook::{self as receipts, Receipt};
use mensajero::outcome::{EventKind, Outcome, Status};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::{self, Proxy, TempConfig, TestApp, WorkerProcess, host_port, unique_prefix};

const CHANNEL: &str = "waspy-ar";
const SENDER: &str = "550e8400-e29b-41d4-a716-446655440000";
const HOOK_SECRET: &str = "hook-secret-0123456789";

// ---------------------------------------------------------------------------------------
// The Prometheus exposition, parsed.

/// One scrape: (family sample name, sorted labels) → value.
#[derive(Debug)]
struct Scrape(BTreeMap<(String, BTreeMap<String, String>), f64>);

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("sample without a value: {line}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                    (name, parse_labels(inner))
                }
                None => (series, BTreeMap::new()),
            };
            let previous = samples.insert((name.to_string(), labels), value);
            assert!(previous.is_none(), "series exported twice: {line}");
        }
        Self(samples)
    }

    /// The value of `name` with exactly these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.0.get(&(name.to_string(), labels)).copied()
    }

    /// Every series of `name`, as (labels, value).
    fn family(&self, name: &str) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.0
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, labels), v)| (labels, *v))
            .collect()
    }

    fn label_values(&self) -> impl Iterator<Item = &str> {
        self.0
            .keys()
            .flat_map(|(_, labels)| labels.values().map(String::as_str))
    }
}

/// `a="x",b="y"` → {a: x, b: y}, honouring the exposition's escapes.
fn parse_labels(inner: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = inner;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (_, '\\') => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_string(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    labels
}

async fn scrape(url: &str) -> (Option<String>, Scrape) {
    let response = reqwest::get(url).await.expect("GET /metrics");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.unwrap();
    (content_type, Scrape::parse(&text))
}

/// A series (name, labels) and the value it must have.
type Expected<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);

// ---------------------------------------------------------------------------------------
// A Waspy gateway that answers each send with a new message id.

struct NewIds(AtomicUsize);

impl Respond for NewIds {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(201).set_body_json(json!({
            "data": {"id": format!("msg-{n}"), "status": "queued"},
            "meta": {"requestId": format!("req-{n}")}
        }))
    }
}

fn text_job(id: &str, to: &str, body: &str) -> Value {
    json!({
        "id": id, "channel": CHANNEL, "to": to,
        "message": {"type": "text", "text": {"body": body}}
    })
}

/// POST `body` to `url`, signed with `secret` the Waspy way.
async fn post_waspy_receipt(url: &str, body: &[u8], secret: &str) -> StatusCode {
    let headers = receipts::sign(
        ProviderKind::Waspy,
        &Secret::new(secret),
        "POST",
        url,
        body,
        Utc::now(),
    );
    let mut request = reqwest::Client::new().post(url).body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request.send().await.expect("listener answers").status()
}

fn delivered(provider_message_id: &str) -> Vec<u8> {
    receipts::render(
        ProviderKind::Waspy,
        &Receipt {
            provider_message_id: provider_message_id.to_string(),
            status: Status::Delivered,
            job_id: None,
            error: None,
            occurred_at: Some(Utc::now()),
            sender: None,
        },
    )
}

/// A known mix of jobs and receipts, then every counter it should have moved, exactly.
#[tokio::test]
async fn metrics_count_exactly_what_happened() {
    let gateway = MockServer::start().await;
    // One job is refused by the gateway for good, one meets a 503 once, the rest are sent.
    Mock::given(method("POST"))
        .and(path("/api/v2/messages"))
        .and(body_string_contains("fail-me"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"code": "INVALID_PHONE", "message": "The number is not valid"}
        })))
        .with_priority(1)
        .mount(&gateway)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/messages"))
        .and(body_string_contains("retry-me"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&gateway)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/messages"))
        .respond_with(NewIds(AtomicUsize::new(0)))
        .with_priority(5)
        .mount(&gateway)
        .await;

    let channels = format!(
        r#"
[channels.{CHANNEL}]
provider = "waspy"
sender = "{SENDER}"
base_url = "{uri}"
api_key_env = "T_KEY"
webhook_secret_env = "T_HOOK"
timeout = "2s"
rate_per_second = 100000
# Short enough to retry in place (under inline_wait), so the step is `inline`.
retry_schedule = ["100ms"]
"#,
        uri = gateway.uri()
    );
    let prefix = unique_prefix("ops-metrics");
    let env = [("T_KEY", "wspy_key_0123456789"), ("T_HOOK", HOOK_SECRET)];
    let config = common::config(&prefix, &channels, &env);
    let app = TestApp::spawn(config).await;

    // Three plain sends; the first goes alone so the duplicate below is its duplicate.
    let phones = ["+5491126030001", "+5491126030002", "+5491126030003"];
    app.enqueue(&text_job("ok-1", phones[0], "Hola 1")).await;
    let first = app.outcomes(2).await;
    assert_eq!(first[1].status, Status::Sent, "{first:#?}");
    let first_id = first[1].provider_message_id.clone().expect("provider id");

    let mut dup = text_job("dup-of-ok-1", phones[0], "Hola 1");
    dup["idempotency_key"] = json!("ok-1");
    app.enqueue(&dup).await;
    app.enqueue(&text_job("ok-2", phones[1], "Hola 2")).await;
    app.enqueue(&text_job("ok-3", phones[2], "Hola 3")).await;
    app.enqueue(&text_job("bad-number", "+5491126030004", "fail-me"))
        .await;
    app.enqueue(&text_job("flaky", "+5491126030005", "retry-me"))
        .await;
    // Valid JSON naming its id and channel, but without a recipient.
    app.enqueue_raw(
        json!({"id": "no-recipient", "channel": CHANNEL,
               "message": {"type": "text", "text": {"body": "x"}}})
        .to_string()
        .as_bytes(),
    )
    .await;
    // dup: 1, ok-2/3: 2 each, bad-number: queued+failed, flaky: queued+sent, invalid: failed.
    let events = app.outcomes(10).await;
    let by_job = |id: &str| -> Vec<&Outcome> { events.iter().filter(|o| o.job_id == id).collect() };
    assert_eq!(by_job("dup-of-ok-1")[0].event, EventKind::Duplicate);
    assert_eq!(by_job("flaky").last().unwrap().status, Status::Sent);
    assert_eq!(by_job("flaky").last().unwrap().attempt, 2);
    assert_eq!(by_job("bad-number").last().unwrap().status, Status::Failed);
    let invalid = by_job("no-recipient");
    assert_eq!(invalid.len(), 1, "{invalid:#?}");
    assert_eq!(invalid[0].channel, CHANNEL);
    let invalid_code = invalid[0].error.as_ref().expect("error").code.clone();

    // Receipts: one accepted and applied, one forged.
    let hook = app.url(&format!("/webhooks/{CHANNEL}"));
    let receipt = delivered(&first_id);
    assert_eq!(
        post_waspy_receipt(&hook, &receipt, HOOK_SECRET).await,
        StatusCode::OK
    );
    let delivered_event = app.next_outcome().await;
    assert_eq!(
        (delivered_event.job_id.as_str(), delivered_event.status),
        ("ok-1", Status::Delivered)
    );
    assert_eq!(
        post_waspy_receipt(&hook, &receipt, "not-the-secret").await,
        StatusCode::UNAUTHORIZED
    );
    app.assert_quiet(Duration::from_millis(300)).await;

    let expected: Vec<Expected> = vec![
        ("mensajero_jobs_consumed_total", vec![("lane", "send")], 7.0),
        (
            "mensajero_outcomes_total",
            vec![("status", "queued"), ("channel", CHANNEL)],
            5.0,
        ),
        (
            "mensajero_outcomes_total",
            vec![("status", "sent"), ("channel", CHANNEL)],
            4.0,
        ),
        (
            "mensajero_outcomes_total",
            vec![("status", "failed"), ("channel", CHANNEL)],
            2.0,
        ),
        (
            "mensajero_outcomes_total",
            vec![("status", "delivered"), ("channel", CHANNEL)],
            1.0,
        ),
        (
            "mensajero_failures_total",
            vec![
                ("channel", CHANNEL),
                ("class", "invalid"),
                ("code", "INVALID_PHONE"),
            ],
            1.0,
        ),
        (
            "mensajero_failures_total",
            vec![
                ("channel", CHANNEL),
                ("class", "invalid"),
                ("code", &invalid_code),
            ],
            1.0,
        ),
        (
            "mensajero_retries_total",
            vec![("channel", CHANNEL), ("step", "inline")],
            1.0,
        ),
        (
            "mensajero_duplicates_total",
            vec![("channel", CHANNEL)],
            1.0,
        ),
        (
            "mensajero_dead_letters_total",
            vec![("reason", "INVALID_PHONE")],
            1.0,
        ),
        (
            "mensajero_dead_letters_total",
            vec![("reason", &invalid_code)],
            1.0,
        ),
        (
            "mensajero_receipts_total",
            vec![("provider", "waspy"), ("result", "accepted")],
            1.0,
        ),
        (
            "mensajero_receipts_total",
            vec![("provider", "waspy"), ("result", "applied")],
            1.0,
        ),
        (
            "mensajero_receipts_total",
            vec![("provider", "waspy"), ("result", "unauthorized")],
            1.0,
        ),
        (
            "mensajero_gateway_request_duration_seconds_count",
            vec![("provider", "waspy"), ("result", "ok")],
            4.0,
        ),
        (
            "mensajero_gateway_request_duration_seconds_count",
            vec![("provider", "waspy"), ("result", "transient")],
            1.0,
        ),
        (
            "mensajero_gateway_request_duration_seconds_count",
            vec![("provider", "waspy"), ("result", "invalid")],
            1.0,
        ),
        ("mensajero_in_flight", vec![("lane", "send")], 0.0),
        ("mensajero_channel_healthy", vec![("channel", CHANNEL)], 1.0),
        ("mensajero_ready", vec![], 1.0),
        ("mensajero_amqp_reconnects_total", vec![], 0.0),
    ];
    let mismatches = |m: &Scrape| -> Vec<String> {
        expected
            .iter()
            .filter_map(|(name, labels, want)| {
                let got = m.get(name, labels);
                (got != Some(*want)).then(|| format!("{name}{labels:?}: want {want}, got {got:?}"))
            })
            .collect()
    };
    // Counters move right after the broker confirms, a moment after the tap sees the event.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let (content_type, metrics) = loop {
        let (content_type, metrics) = scrape(&app.url("/metrics")).await;
        if mismatches(&metrics).is_empty() || tokio::time::Instant::now() > deadline {
            break (content_type, metrics);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(mismatches(&metrics), Vec::<String>::new(), "{metrics:#?}");

    // Nothing else was counted: every family holds only the series the mix explains.
    let total = |name: &str| -> f64 { metrics.family(name).iter().map(|(_, v)| v).sum() };
    assert_eq!(total("mensajero_outcomes_total"), 12.0);
    assert_eq!(total("mensajero_failures_total"), 2.0);
    assert_eq!(total("mensajero_dead_letters_total"), 2.0);
    assert_eq!(total("mensajero_retries_total"), 1.0);
    assert_eq!(total("mensajero_receipts_total"), 3.0);
    assert_eq!(
        total("mensajero_gateway_request_duration_seconds_count"),
        6.0
    );
    // Present from the start (a slow Redis answer under load may count one, so no value).
    assert!(metrics.get("mensajero_redis_errors_total", &[]).is_some());
    let lag = metrics.family("mensajero_receipt_lag_seconds_count");
    assert_eq!(lag.len(), 1);
    assert_eq!(lag[0].1, 1.0);

    // Queue samples exist for each of mensajero's queues, and this worker consumes the
    // work and receipt queues. The first sample is taken as the session starts, before the
    // consumers attach; the next comes within the sampling period (2 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    let metrics = loop {
        let (_, metrics) = scrape(&app.url("/metrics")).await;
        let consumed = ["send", "bulk", "webhooks"].iter().all(|q| {
            metrics
                .get("mensajero_queue_consumers", &[("queue", q)])
                .is_some_and(|n| n >= 1.0)
        });
        if consumed || tokio::time::Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for queue in ["send", "bulk", "webhooks", "dead"] {
        assert!(
            metrics
                .get("mensajero_queue_messages_ready", &[("queue", queue)])
                .is_some(),
            "no ready sample for {queue}"
        );
        let consumers = metrics
            .get("mensajero_queue_consumers", &[("queue", queue)])
            .unwrap_or_else(|| panic!("no consumer sample for {queue}"));
        if queue != "dead" {
            assert!(consumers >= 1.0, "{queue} consumers: {consumers}");
        }
    }

    let content_type = content_type.expect("a content type");
    assert!(
        content_type.starts_with("application/openmetrics-text")
            || content_type.starts_with("text/plain"),
        "{content_type}"
    );
    assert!(content_type.contains("version="), "{content_type}");

    // Bounded labels: no job id, idempotency key or phone number is a label value.
    let unbounded: Vec<&str> = [
        "ok-1",
        "ok-2",
        "ok-3",
        "dup-of-ok-1",
        "bad-number",
        "flaky",
        "no-recipient",
    ]
    .into_iter()
    .chain(phones)
    .chain(["+5491126030004", "+5491126030005", "5491126030001"])
    .chain([first_id.as_str()])
    .collect();
    for value in metrics.label_values() {
        assert!(
            !unbounded.iter().any(|u| value.contains(u)),
            "label value {value:?} names a job, key, message or phone"
        );
    }
}

// ---------------------------------------------------------------------------------------

/// `url` with its `host:port` replaced by `addr` (credentials, vhost and query kept).
fn through(url: &str, addr: std::net::SocketAddr) -> String {
    url.replacen(&host_port(url), &addr.to_string(), 1)
}

async fn wait_for_status(client: &reqwest::Client, url: &str, want: StatusCode) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = client.get(url).send().await.expect("listener answers");
        let status = response.status();
        let body: Value = response.json().await.expect("readyz JSON");
        if status == want {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} still {status} ({body}) after 10 s; wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The broker connection is severed while the process keeps running: readiness says so
/// within seconds, liveness does not, and after the reconnection jobs flow again.
#[tokio::test]
async fn readiness_follows_the_broker_connection_and_work_resumes() {
    let services = common::services();
    let proxy = Proxy::start(&host_port(&services.amqp_url)).await;
    let (_core, gateway, _stop) = common::start_gateway(MockOptions::default()).await;
    let prefix = unique_prefix("ops-amqp");
    let channels = format!(
        "[channels.demo]\nprovider = \"mock\"\nbase_url = \"{gateway}\"\nrate_per_second = 100000\n"
    );
    let config = common::config(&prefix, &channels, &[]);
    // The test's own connection (producer, outcome tap) stays direct; only the worker's goes
    // through the proxy.
    let mut app = TestApp::new(config).await;
    let direct = app.config.amqp.url.clone();
    app.config.amqp.url = through(&direct, proxy.addr);
    app.start_worker().await;
    app.config.amqp.url = direct;

    let client = reqwest::Client::new();
    let job = |id: &str| {
        json!({"id": id, "channel": "demo", "to": "+5491126032641",
               "message": {"type": "text", "text": {"body": "Hola"}}})
    };
    let ready = wait_for_status(&client, &app.url("/readyz"), StatusCode::OK).await;
    assert_eq!(
        ready,
        json!({"amqp": true, "amqp_blocked": false, "redis": true})
    );
    app.enqueue(&job("before-cut")).await;
    let statuses: Vec<_> = app.outcomes(2).await.iter().map(|o| o.status).collect();
    assert_eq!(statuses, [Status::Queued, Status::Sent]);

    proxy.cut();
    let down = wait_for_status(
        &client,
        &app.url("/readyz"),
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(
        down,
        json!({"amqp": false, "amqp_blocked": false, "redis": true})
    );
    let health = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let (_, metrics) = scrape(&app.url("/metrics")).await;
    assert_eq!(metrics.get("mensajero_ready", &[]), Some(0.0));
    // A job published while the worker is cut off waits in the queue for it.
    app.enqueue(&job("during-cut")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let health = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    proxy.restore();
    let ready = wait_for_status(&client, &app.url("/readyz"), StatusCode::OK).await;
    assert_eq!(
        ready,
        json!({"amqp": true, "amqp_blocked": false, "redis": true})
    );
    app.enqueue(&job("after-restore")).await;
    // Delivery is at least once: an outcome whose ack the cut interrupted may come again,
    // with the same event id. Count distinct events per job.
    let mut seen = std::collections::HashSet::new();
    let mut statuses: BTreeMap<String, Vec<Status>> = BTreeMap::new();
    let done = |s: &BTreeMap<String, Vec<Status>>| {
        ["during-cut", "after-restore"]
            .iter()
            .all(|id| s.get(*id).is_some_and(|v| v.contains(&Status::Sent)))
    };
    while !done(&statuses) {
        let event = app.next_outcome().await;
        if seen.insert(event.event_id.clone()) {
            statuses.entry(event.job_id).or_default().push(event.status);
        }
    }
    for id in ["during-cut", "after-restore"] {
        assert_eq!(statuses[id], [Status::Queued, Status::Sent], "{id}");
    }
    let health = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let (_, metrics) = scrape(&app.url("/metrics")).await;
    let reconnects = metrics.get("mensajero_amqp_reconnects_total", &[]).unwrap();
    assert!(reconnects >= 1.0, "reconnects: {reconnects}");
    assert_eq!(metrics.get("mensajero_ready", &[]), Some(1.0));
}

// ---------------------------------------------------------------------------------------

/// Distinctive secrets: if any of these bytes shows up where it should not, the test says so.
const GOOD_KEY: &str = "wspy_TOPSECRET_good_7f3a9c1e";
const BAD_KEY: &str = "wspy_TOPSECRET_bad_41d2e8b0";
const WEBHOOK_SECRET: &str = "whsec_TOPSECRET_hook_c0ffee42";
const MARKER: &str = "TOPSECRET";

/// The span (or event) field `name` of a JSON log line.
fn log_field<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line.get(name)
        .or_else(|| line.get("span").and_then(|s| s.get(name)))
}

/// A worker process at debug level, driven through auth failures, a forged and a genuine
/// receipt, an invalid job and a send: no secret reaches logs, outcomes, dead letters or
/// metrics; every log line is JSON; lines about a job name it and its channel.
#[tokio::test]
async fn secrets_never_reach_logs_outcomes_dead_letters_or_metrics() {
    let good = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/messages"))
        .respond_with(NewIds(AtomicUsize::new(0)))
        .expect(1)
        .mount(&good)
        .await;
    let refusing = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/messages"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": {"message": "invalid API key"}
        })))
        .expect(1)
        .mount(&refusing)
        .await;

    let prefix = unique_prefix("ops-secrets");
    let config = common::config(&prefix, "", &[]);
    let app = TestApp::new(config).await;
    let channels = format!(
        r#"
[channels.{CHANNEL}]
provider = "waspy"
sender = "{SENDER}"
base_url = "{good}"
api_key_env = "T_GOOD_KEY"
webhook_secret_env = "T_HOOK"
timeout = "2s"
rate_per_second = 100000

[channels.waspy-broken]
provider = "waspy"
sender = "{SENDER}"
base_url = "{refusing}"
api_key_env = "T_BAD_KEY"
webhook_secret_env = "T_HOOK"
timeout = "2s"
rate_per_second = 100000
# auth errors are retried until max_age: a short one ends the job after one attempt.
max_age = "1s"
"#,
        good = good.uri(),
        refusing = refusing.uri(),
    );
    let file = TempConfig::write(&app, "", &channels);
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let log_path = std::env::temp_dir().join(format!("{prefix}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let worker = WorkerProcess::start_with(
        &file,
        &[
            ("T_GOOD_KEY", GOOD_KEY),
            ("T_BAD_KEY", BAD_KEY),
            ("T_HOOK", WEBHOOK_SECRET),
            ("MENSAJERO__HTTP__LISTEN", &listen),
        ],
        "debug",
        log,
    );
    let base = format!("http://{listen}");
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let ready = client.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker process not ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    app.enqueue(&text_job("secret-ok", "+5491126030011", "Hola"))
        .await;
    let mut refused = text_job("secret-auth", "+5491126030012", "Hola");
    refused["channel"] = json!("waspy-broken");
    app.enqueue(&refused).await;
    app.enqueue_raw(br#"{"id": "secret-invalid", "channel": "waspy-ar"}"#)
        .await;
    // ok: queued, sent; auth: queued, failed; invalid: failed.
    let mut events = app.outcomes(5).await;
    let sent = events
        .iter()
        .find(|o| o.job_id == "secret-ok" && o.status == Status::Sent)
        .expect("secret-ok sent")
        .clone();
    let auth = events
        .iter()
        .find(|o| o.job_id == "secret-auth" && o.status == Status::Failed)
        .expect("secret-auth failed");
    assert_eq!(auth.error.as_ref().unwrap().class.as_str(), "auth");

    let hook = format!("{base}/webhooks/{CHANNEL}");
    let receipt = delivered(sent.provider_message_id.as_deref().unwrap());
    assert_eq!(
        post_waspy_receipt(&hook, &receipt, "whsec_guess").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_waspy_receipt(&hook, &receipt, WEBHOOK_SECRET).await,
        StatusCode::OK
    );
    events.push(app.next_outcome().await);
    assert_eq!(events.last().unwrap().status, Status::Delivered);

    // The keys were really used: the gateways saw them.
    for (server, key) in [(&good, GOOD_KEY), (&refusing, BAD_KEY)] {
        let requests = server.received_requests().await.unwrap();
        let auth = requests[0].headers.get("authorization").unwrap();
        assert_eq!(auth.to_str().unwrap(), format!("Bearer {key}"));
    }

    // Outcomes and dead letters.
    for event in &events {
        let text = serde_json::to_string(event).unwrap();
        assert!(!text.contains(MARKER), "secret in an outcome: {text}");
    }
    for _ in 0..2 {
        let (body, headers) = app.next_dead_letter().await;
        let text = format!("{} {headers:?}", String::from_utf8_lossy(&body));
        assert!(!text.contains(MARKER), "secret in a dead letter: {text}");
        assert!(
            common::header(&headers, "x-mensajero-reason").is_some(),
            "{text}"
        );
    }
    // Metrics.
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains(MARKER), "secret in /metrics");
    assert!(metrics.contains("mensajero_channel_healthy{channel=\"waspy-broken\"} 0"));

    // Logs: stop the worker so everything is flushed, then read them all.
    worker.signal("-TERM");
    assert!(worker.wait(Duration::from_secs(15)).await.success());
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    assert!(!logs.contains(MARKER), "a secret was logged");
    let lines: Vec<Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 10, "too few log lines: {logs}");

    let job_ids = ["secret-ok", "secret-auth", "secret-invalid"];
    for id in job_ids {
        let about: Vec<&Value> = lines
            .iter()
            .filter(|l| log_field(l, "job_id").and_then(Value::as_str) == Some(id))
            .collect();
        assert!(!about.is_empty(), "no log line names job {id}");
    }
    for line in &lines {
        let own = line["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("mensajero"));
        let text = line.to_string();
        if own && job_ids.iter().any(|id| text.contains(id)) {
            assert!(log_field(line, "job_id").is_some(), "no job_id: {text}");
            assert!(log_field(line, "channel").is_some(), "no channel: {text}");
        }
        // Lines about a gateway call name the attempt.
        let message = line["message"].as_str().unwrap_or_default();
        let gateway_call = line["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("mensajero::gateways"))
            || ["sent", "attempt failed; will retry"].contains(&message);
        if gateway_call && log_field(line, "job_id").is_some() {
            assert!(log_field(line, "attempt").is_some(), "no attempt: {text}");
        }
    }
    let sent_line = lines
        .iter()
        .find(|l| {
            l["message"] == "sent"
                && log_field(l, "job_id").and_then(Value::as_str) == Some("secret-ok")
        })
        .unwrap_or_else(|| panic!("no `sent` line for secret-ok:\n{logs}"));
    assert_eq!(log_field(sent_line, "channel"), Some(&json!(CHANNEL)));
    assert_eq!(log_field(sent_line, "attempt"), Some(&json!(1)));
    let auth_line = lines
        .iter()
        .find(|l| {
            log_field(l, "job_id").and_then(Value::as_str) == Some("secret-auth")
                && l["level"] == "WARN"
        })
        .unwrap_or_else(|| panic!("no warning for secret-auth:\n{logs}"));
    assert_eq!(
        log_field(auth_line, "channel"),
        Some(&json!("waspy-broken"))
    );
    assert!(log_field(auth_line, "attempt").is_some(), "{auth_line}");
}

// ---------------------------------------------------------------------------------------

/// Run `mensajero run` with `--log-format format` and its stderr not a terminal, against a
/// Redis that is not there; stop it with SIGTERM once its listener answers. Returns stderr.
async fn logs_of_a_worker_without_redis(format: &str) -> String {
    let prefix = unique_prefix(&format!("ops-log-{format}"));
    let dir = std::env::temp_dir();
    let config_path = dir.join(format!("{prefix}.toml"));
    let log_path = dir.join(format!("{prefix}.log"));
    let port = common::free_port();
    // Port 1 on loopback refuses connections: Redis is unreachable from the start.
    std::fs::write(
        &config_path,
        format!(
            "[redis]\nurl = \"redis://127.0.0.1:1\"\nprefix = \"{prefix}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[channels.demo]\nprovider = \"mock\"\n"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mensajero"))
        .args(["--log-format", format, "--config"])
        .arg(&config_path)
        .arg("run")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start worker");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let health = client.get(format!("{base}/healthz")).send().await;
        if health.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "listener never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Alive, not ready: it has reached neither service.
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"amqp": false, "amqp_blocked": false, "redis": false})
    );
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    // SIGTERM is honoured even while the first Redis connection is still being retried.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("worker still running 5 s after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let _ = std::fs::remove_file(&config_path);
    logs
}

/// `auto` writes JSON lines when stderr is not a terminal (a container's log collector);
/// `text` is human-readable and, into a file, free of colour escape codes.
#[tokio::test]
async fn log_formats_suit_their_reader() {
    for format in ["auto", "json"] {
        let logs = logs_of_a_worker_without_redis(format).await;
        assert!(logs.contains("shutdown requested"), "{format}: {logs}");
        for line in logs.lines().filter(|l| !l.trim().is_empty()) {
            let line: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{format}: not JSON ({e}): {line}"));
            assert!(line["level"].is_string() && line["message"].is_string());
        }
    }
    let logs = logs_of_a_worker_without_redis("text").await;
    let line = logs
        .lines()
        .find(|l| l.contains("shutdown requested"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(line.contains("INFO"), "{line}");
    assert!(serde_json::from_str::<Value>(line).is_err(), "{line}");
    assert!(
        !logs.contains('\u{1b}'),
        "escape codes in a log file: {logs:?}"
    );
}
