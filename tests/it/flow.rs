//! Flow control on real RabbitMQ and Redis: durable retries through delay queues, Retry-After,
//! a crash while jobs wait, scheduling and expiry, lanes, failover. Delays are shortened
//! through configuration, never by mocking time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use mensajero::config::MockOptions;
use mensajero::dedupe::{Claim, ClaimRequest, Dedupe};
use mensajero::outcome::{Outcome, Status};
use mensajero::ratelimit::{Limits, RateLimiter};
use mensajero::retry::ErrorClass;
use serde_json::{Value, json};
use wiremock::matchers::{header as header_is, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{self, TempConfig, TestApp, WorkerProcess, unique_prefix};

const KEY: &str = "wspy_flow_test";

fn channel(name: &str, base_url: &str, extra: &str) -> String {
    format!(
        r#"
[channels.{name}]
provider = "waspy"
base_url = "{base_url}"
api_key_env = "WASPY_TEST_KEY"
sender = "550e8400-e29b-41d4-a716-446655440000"
timeout = "2s"
rate_per_second = 100000
{extra}
"#
    )
}

fn created(id: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({"data": {"id": id, "status": "queued"}}))
}

fn job(id: &str, channel: &str) -> Value {
    json!({"id": id, "channel": channel, "to": "+5491126032641", "message": {"type": "text", "text": {"body": "Hola"}}})
}

async fn app(test: &str, channels: &str) -> TestApp {
    let config = common::config(&unique_prefix(test), channels, &[("WASPY_TEST_KEY", KEY)]);
    TestApp::spawn(config).await
}

fn terminal(outcomes: &[Outcome], job: &str) -> Outcome {
    outcomes
        .iter()
        .find(|o| o.job_id == job && matches!(o.status, Status::Sent | Status::Failed))
        .unwrap_or_else(|| panic!("no terminal outcome for {job}: {outcomes:#?}"))
        .clone()
}

/// A gateway failing three times then succeeding: `sent` at attempt 4, the waits spent in a
/// broker delay queue (inline_wait is 1 s, the schedule's steps are longer).
#[tokio::test]
async fn three_failures_then_success_is_sent_at_attempt_four_through_delay_queues() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(3)
        .expect(3)
        .mount(&gateway)
        .await;
    Mock::given(method("POST"))
        .respond_with(created("msg-4"))
        .expect(1)
        .mount(&gateway)
        .await;
    let app = app(
        "retry4",
        &channel("waspy-ar", &gateway.uri(), "retry_schedule = [\"1500ms\"]"),
    )
    .await;
    app.enqueue(&job("flaky", "waspy-ar")).await;

    let queued = app.next_outcome().await;
    assert_eq!(queued.status, Status::Queued);
    // While it waits it sits in a delay queue, not in the worker.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen_parked = false;
    while !seen_parked && Instant::now() < deadline {
        seen_parked = app.queue_len(&app.topology.delay_queues[0].1).await > 0;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_parked, "the job never waited in the delay queue");
    let sent = app.next_outcome().await;
    assert_eq!((sent.status, sent.attempt), (Status::Sent, 4), "{sent:#?}");
    assert_eq!(sent.provider_message_id.as_deref(), Some("msg-4"));
    // Three waits of 1.5 s ± 20 %.
    let elapsed = (sent.occurred_at - queued.occurred_at).to_std().unwrap();
    assert!(elapsed >= Duration::from_millis(3600), "{elapsed:?}");
}

/// `Retry-After: 2` is honoured (longer than the schedule's 200 ms step).
#[tokio::test]
async fn retry_after_is_honoured() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "2"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&gateway)
        .await;
    Mock::given(method("POST"))
        .respond_with(created("msg-ra"))
        .expect(1)
        .mount(&gateway)
        .await;
    let app = app(
        "retryafter",
        &channel("waspy-ar", &gateway.uri(), "retry_schedule = [\"200ms\"]"),
    )
    .await;
    app.enqueue(&job("limited", "waspy-ar")).await;
    let outcomes = app.outcomes(2).await;
    let elapsed = (outcomes[1].occurred_at - outcomes[0].occurred_at)
        .to_std()
        .unwrap();
    assert_eq!(
        (outcomes[1].status, outcomes[1].attempt),
        (Status::Sent, 2),
        "{outcomes:#?}"
    );
    assert!(elapsed >= Duration::from_secs(2), "waited only {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "waited {elapsed:?}");
}

/// Running out of attempts: `failed` / `retries_exhausted` and a dead letter.
#[tokio::test]
async fn exhausted_retries_fail_and_dead_letter() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .expect(2)
        .mount(&gateway)
        .await;
    let extra = "max_attempts = 2\nretry_schedule = [\"1200ms\"]";
    let app = app("exhausted", &channel("waspy-ar", &gateway.uri(), extra)).await;
    app.enqueue(&job("doomed", "waspy-ar")).await;
    let failed = app.outcomes(2).await.pop().unwrap();
    let error = failed.error.unwrap();
    assert_eq!(
        (error.class, error.attempts),
        (ErrorClass::RetriesExhausted, 2)
    );
    let (_, headers) = app.next_dead_letter().await;
    assert_eq!(
        common::header(&headers, "x-mensajero-attempts").as_deref(),
        Some("2")
    );
    assert_eq!(
        common::header(&headers, "x-mensajero-error-class").as_deref(),
        Some("retries_exhausted")
    );
}

/// A worker killed with `kill -9` while 200 jobs sit in delay queues: after a restart every
/// one of them is sent, once.
#[tokio::test]
async fn jobs_waiting_in_delay_queues_survive_a_worker_crash() {
    const JOBS: u64 = 200;
    // Every first attempt fails; the job then waits ~3 s in the broker.
    let (gateway, url, stop) = common::start_gateway(MockOptions::default()).await;
    let failing = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&failing)
        .await;
    let app = TestApp::new(common::config(&unique_prefix("crashwait"), "", &[])).await;
    // The channel points at the failing fake first; the restarted worker's config points at the mock.
    let failing_config = TempConfig::write(
        &app,
        "inline_wait = \"1s\"",
        &channel("waspy-ar", &failing.uri(), "retry_schedule = [\"3s\"]"),
    );
    for i in 0..JOBS {
        let mut j = job(&format!("wait-{i}"), "waspy-ar");
        j["idempotency_key"] = format!("wait-key-{i}").into();
        app.enqueue(&j).await;
    }
    let worker = WorkerProcess::start(&failing_config, &[("WASPY_TEST_KEY", KEY)]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let parked: u32 = app.queue_len(&app.topology.delay_queues[0].1).await;
        if parked as u64 == JOBS {
            break;
        }
        assert!(Instant::now() < deadline, "only {parked} parked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.signal("-KILL");
    worker.wait(Duration::from_secs(10)).await;
    drop(failing_config);

    let config = TempConfig::write(
        &app,
        "inline_wait = \"1s\"",
        &channel("waspy-ar", &url, "retry_schedule = [\"3s\"]"),
    );
    let restarted = WorkerProcess::start(&config, &[("WASPY_TEST_KEY", KEY)]);
    let mut sent: HashMap<String, u32> = HashMap::new();
    while (sent.len() as u64) < JOBS {
        let o = app
            .try_next_outcome(Duration::from_secs(30))
            .await
            .expect("outcomes keep coming");
        assert_ne!(o.status, Status::Failed, "{o:#?}");
        if o.status == Status::Sent {
            sent.insert(o.job_id.clone(), o.attempt);
        }
    }
    assert!(sent.values().all(|a| *a == 2), "{sent:?}");
    let stats = gateway.stats();
    assert_eq!(stats.sent, JOBS);
    assert_eq!(stats.replayed, 0);
    restarted.signal("-TERM");
    assert!(restarted.wait(Duration::from_secs(20)).await.success());
    stop.cancel();
}

/// `send_at` parks the job and it is sent within a second or two of its time; a job past
/// `expires_at`, or one that would expire before its `send_at`, fails `expired` unsent.
#[tokio::test]
async fn scheduled_and_expired_jobs() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header_is("idempotency-key", "scheduled"))
        .respond_with(created("msg-s"))
        .expect(1)
        .mount(&gateway)
        .await;
    let app = app("schedule", &channel("waspy-ar", &gateway.uri(), "")).await;
    let send_at = Utc::now() + chrono::Duration::seconds(4);
    let mut scheduled = job("scheduled", "waspy-ar");
    scheduled["send_at"] = send_at.to_rfc3339().into();
    let mut expired = job("expired", "waspy-ar");
    expired["expires_at"] = (Utc::now() - chrono::Duration::seconds(1))
        .to_rfc3339()
        .into();
    let mut too_late = job("too-late", "waspy-ar");
    too_late["send_at"] = (Utc::now() + chrono::Duration::seconds(30))
        .to_rfc3339()
        .into();
    too_late["ttl_seconds"] = 5.into();
    for j in [&scheduled, &expired, &too_late] {
        app.enqueue(j).await;
    }
    let outcomes = app.outcomes(4).await;
    for id in ["expired", "too-late"] {
        let failed = terminal(&outcomes, id);
        assert_eq!(failed.error.unwrap().class, ErrorClass::Expired, "{id}");
    }
    let sent = terminal(&outcomes, "scheduled");
    assert_eq!(sent.status, Status::Sent);
    let late_by = (sent.occurred_at - send_at)
        .to_std()
        .expect("never before send_at");
    assert!(
        late_by < Duration::from_secs(2),
        "sent {late_by:?} after send_at"
    );
}

/// A flooded bulk lane does not delay a transactional job.
#[tokio::test]
async fn a_flooded_bulk_lane_does_not_delay_transactional_jobs() {
    let (gateway, url, stop) = common::start_gateway(MockOptions {
        latency: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let prefix = unique_prefix("lanes");
    let mut config = common::config(
        &prefix,
        &channel("waspy-ar", &url, ""),
        &[("WASPY_TEST_KEY", KEY)],
    );
    config.worker.bulk_max_in_flight = 4;
    let app = TestApp::spawn(config).await;
    for i in 0..200 {
        let mut j = job(&format!("bulk-{i}"), "waspy-ar");
        j["priority"] = "bulk".into();
        app.enqueue(&j).await;
    }
    // Let the bulk lane get busy.
    while gateway.stats().requests < 4 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Utc::now();
    app.enqueue(&job("urgent", "waspy-ar")).await;
    let sent = loop {
        let o = app.next_outcome().await;
        if o.job_id == "urgent" && o.status == Status::Sent {
            break o;
        }
    };
    let latency = (sent.occurred_at - started).to_std().unwrap();
    // One gateway call (300 ms) plus overhead, with room for a loaded CI machine; behind the
    // bulk backlog it would take ~15 s (200 jobs × 300 ms / 4 in flight).
    assert!(
        latency < Duration::from_millis(3000),
        "transactional latency {latency:?}"
    );
    let bulk_calls = gateway.stats().requests - 1;
    assert!(
        bulk_calls < 100,
        "the bulk lane should still be busy: {bulk_calls} calls so far"
    );
    stop.cancel();
}

/// A channel whose credentials are refused fails over to the next one; a gateway that may
/// have sent (timeout) is never failed over.
#[tokio::test]
async fn failover_only_when_the_gateway_provably_did_not_send() {
    let refused = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header_is("idempotency-key", "fo-auth"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"error": {"code": "UNAUTHORIZED"}})),
        )
        .expect(1)
        .mount(&refused)
        .await;
    Mock::given(method("POST"))
        .and(header_is("idempotency-key", "fo-timeout"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(3)))
        .expect(2)
        .mount(&refused)
        .await;
    let backup = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header_is("idempotency-key", "fo-auth"))
        .respond_with(created("msg-backup"))
        .expect(1)
        .mount(&backup)
        .await;
    let channels = format!(
        "{}{}",
        channel("primary", &refused.uri(), "failover = [\"backup\"]\ntimeout = \"1s\"\nmax_attempts = 2\nretry_schedule = [\"100ms\"]"),
        channel("backup", &backup.uri(), "")
    )
    .replace("timeout = \"2s\"\nrate_per_second = 100000\nfailover", "rate_per_second = 100000\nfailover");
    let app = app("failover", &channels).await;
    app.enqueue(&job("fo-auth", "primary")).await;
    app.enqueue(&job("fo-timeout", "primary")).await;
    let outcomes = app.outcomes(4).await;
    let sent = terminal(&outcomes, "fo-auth");
    assert_eq!(sent.status, Status::Sent);
    assert_eq!(sent.channel, "backup");
    assert_eq!(sent.channels_tried, ["primary"]);
    assert_eq!(sent.routing_key(), "sent.backup");
    let failed = terminal(&outcomes, "fo-timeout");
    assert_eq!(
        failed.status,
        Status::Failed,
        "a maybe-sent job must not fail over"
    );
    assert_eq!(failed.channel, "primary");
    assert_eq!(failed.error.unwrap().class, ErrorClass::RetriesExhausted);
}

/// A resumed job whose key Waspy is still processing (`409 IDEMPOTENCY_CONFLICT`, "otra
/// request con la misma key está en proceso") is asked again about a second later, in
/// process, not after the schedule's first durable step (a minute here).
#[tokio::test]
async fn a_call_still_in_progress_at_the_gateway_is_asked_again_within_seconds() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({
            "error": {"code": "IDEMPOTENCY_CONFLICT",
                      "message": "Otra request con la misma key está en proceso"}
        })))
        .up_to_n_times(2)
        .expect(2)
        .mount(&gateway)
        .await;
    Mock::given(method("POST"))
        .respond_with(created("msg-after-conflict"))
        .expect(1)
        .mount(&gateway)
        .await;
    let app = app(
        "in-progress",
        &channel("waspy-ar", &gateway.uri(), "retry_schedule = [\"60s\"]"),
    )
    .await;
    app.enqueue(&job("conflicted", "waspy-ar")).await;
    let outcomes = app.outcomes(2).await;
    let sent = terminal(&outcomes, "conflicted");
    assert_eq!(
        (sent.status, sent.attempt),
        (Status::Sent, 3),
        "{outcomes:#?}"
    );
    assert_eq!(
        sent.provider_message_id.as_deref(),
        Some("msg-after-conflict")
    );
}

/// A Meta channel (no idempotency of its own) whose Graph API answers 500 is never failed
/// over: the message may have gone out, and a second gateway would send it again. The same
/// channel answering 503 (the service refused the work) fails over once its attempts run out.
#[tokio::test]
async fn a_meta_500_may_have_sent_and_is_not_failed_over_but_a_503_is() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::body_partial_json(
            json!({"biz_opaque_callback_data": "meta-500"}),
        ))
        .respond_with(ResponseTemplate::new(500).set_body_string("<html>oops</html>"))
        .expect(2)
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::body_partial_json(
            json!({"biz_opaque_callback_data": "meta-503"}),
        ))
        .respond_with(ResponseTemplate::new(503))
        .expect(2)
        .mount(&graph)
        .await;
    let backup = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header_is("idempotency-key", "meta-503"))
        .respond_with(created("msg-backup"))
        .expect(1)
        .mount(&backup)
        .await;
    let channels = format!(
        r#"
[channels.meta-primary]
provider = "meta"
base_url = "{}"
api_key_env = "WASPY_TEST_KEY"
sender = "106540352242922"
rate_per_second = 100000
max_attempts = 2
retry_schedule = ["100ms"]
failover = ["backup"]
{}"#,
        graph.uri(),
        channel("backup", &backup.uri(), "")
    );
    let app = app("meta-500", &channels).await;
    app.enqueue(&job("meta-500", "meta-primary")).await;
    app.enqueue(&job("meta-503", "meta-primary")).await;
    let outcomes = app.outcomes(4).await;
    let failed = terminal(&outcomes, "meta-500");
    assert_eq!(
        (failed.status, failed.channel.as_str()),
        (Status::Failed, "meta-primary"),
        "a 500 may have sent: {failed:#?}"
    );
    assert_eq!(failed.error.unwrap().class, ErrorClass::RetriesExhausted);
    let sent = terminal(&outcomes, "meta-503");
    assert_eq!(
        (sent.status, sent.channel.as_str()),
        (Status::Sent, "backup")
    );
    assert_eq!(sent.channels_tried, ["meta-primary"]);
    app.assert_quiet(Duration::from_millis(500)).await;
}

/// A job whose earlier attempt may have reached the gateway (its worker died mid-call: the
/// dedupe entry says ambiguous and the lease has run out) is never failed over, even when the
/// gateway now refuses it in a way that proves this attempt did not send.
#[tokio::test]
async fn a_job_resumed_after_a_crash_mid_call_is_not_failed_over() {
    const ID: &str = "fo-crashed";
    let refused = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"error": {"code": "UNAUTHORIZED"}})),
        )
        .expect(1)
        .mount(&refused)
        .await;
    let backup = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created("msg-backup"))
        .expect(0)
        .mount(&backup)
        .await;
    // max_age 1 s: the refused credentials give up at once instead of waiting for an operator.
    let channels = format!(
        "{}{}",
        channel(
            "primary",
            &refused.uri(),
            "failover = [\"backup\"]\nmax_age = \"1s\""
        ),
        channel("backup", &backup.uri(), "")
    );
    let config = common::config(
        &unique_prefix("fo-crashed"),
        &channels,
        &[("WASPY_TEST_KEY", KEY)],
    );
    let mut app = TestApp::new(config).await;
    // The crashed worker's claim: an attempt begun, then its lease ran out.
    let client = redis::Client::open(app.config.redis.url.as_str()).expect("redis url");
    let manager = redis::aio::ConnectionManager::new(client)
        .await
        .expect("redis");
    let dedupe = Dedupe::new(manager.clone(), &app.config.redis.prefix);
    let limiter = RateLimiter::new(manager, &app.config.redis.prefix);
    let lease = Duration::from_millis(50);
    let limits = Limits {
        per_second: 1000,
        burst: 1000,
        recipient_interval: None,
    };
    let booking = limiter.booking("primary", "+5491126032641", &limits, lease);
    let (claim, _) = dedupe
        .claim_and_book(
            &ClaimRequest {
                channel: "primary",
                idempotency_key: ID,
                job_id: ID,
                owner: "crashed-worker",
                lease,
                window: Duration::from_secs(60),
                take_over_live: false,
                restart_failed: false,
            },
            &booking,
            false,
        )
        .await
        .expect("redis");
    assert_eq!(claim, Claim::Acquired);
    assert!(
        dedupe
            .begin_attempt("primary", ID, "crashed-worker", lease)
            .await
            .expect("redis")
    );
    tokio::time::sleep(lease * 3).await;

    app.start_worker().await;
    app.enqueue(&job(ID, "primary")).await;
    let outcomes = app.outcomes(2).await;
    let failed = terminal(&outcomes, ID);
    assert_eq!(
        (failed.status, failed.channel.as_str()),
        (Status::Failed, "primary"),
        "a maybe-sent job must not fail over: {failed:#?}"
    );
    assert_eq!(failed.error.unwrap().class, ErrorClass::Auth);
    app.assert_quiet(Duration::from_millis(500)).await;
}

/// Two worker processes on one channel limited to 20/s send at 20/s together (±10 %); jobs
/// parked for a slot (most of them, past `inline_wait`) announce `queued` once, not on every
/// return from the delay queue.
#[tokio::test]
async fn two_workers_share_one_rate_limit() {
    const JOBS: usize = 100;
    const RATE: f64 = 20.0;
    let (gateway, url, stop) = common::start_gateway(MockOptions::default()).await;
    let app = TestApp::new(common::config(&unique_prefix("rate2"), "", &[])).await;
    let channels =
        channel("waspy-ar", &url, "").replace("rate_per_second = 100000", "rate_per_second = 20");
    let config = TempConfig::write(&app, "inline_wait = \"2s\"", &channels);
    for i in 0..JOBS {
        let mut j = job(&format!("rate-{i}"), "waspy-ar");
        // Distinct recipients: only the channel's limit applies.
        j["to"] = format!("+54911260{i:05}").into();
        app.enqueue(&j).await;
    }
    let workers = [
        WorkerProcess::start(&config, &[("WASPY_TEST_KEY", KEY)]),
        WorkerProcess::start(&config, &[("WASPY_TEST_KEY", KEY)]),
    ];
    let mut sent = Vec::new();
    let mut queued = 0;
    while sent.len() < JOBS {
        let o = app
            .try_next_outcome(Duration::from_secs(30))
            .await
            .expect("outcomes keep coming");
        match o.status {
            Status::Sent => sent.push(o.occurred_at),
            Status::Queued => queued += 1,
            _ => {}
        }
    }
    // Each job's `queued` comes before its `sent`: all are in.
    assert_eq!(queued, JOBS, "one queued message per job");
    sent.sort();
    let span = (sent[JOBS - 1] - sent[0]).to_std().unwrap().as_secs_f64();
    let measured = (JOBS - 1) as f64 / span;
    eprintln!("two workers, limit {RATE}/s: measured {measured:.2}/s over {span:.2} s");
    assert!(
        (measured - RATE).abs() <= RATE * 0.1,
        "measured {measured:.2}/s, limit {RATE}/s"
    );
    assert_eq!(gateway.stats().sent, JOBS as u64);
    for worker in &workers {
        worker.signal("-TERM");
    }
    for worker in workers {
        assert!(worker.wait(Duration::from_secs(20)).await.success());
    }
    stop.cancel();
}

/// A replayed dead letter (`x-mensajero-replay: true`) starts over from its own `failed`
/// record instead of being reported as a duplicate of itself; a plain repeat is a duplicate.
#[tokio::test]
async fn a_replayed_job_starts_over_and_a_repeat_is_a_duplicate() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"error": {"code": "CHANNEL_NOT_CONNECTED"}})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&gateway)
        .await;
    Mock::given(method("POST"))
        .respond_with(created("msg-replayed"))
        .expect(1)
        .mount(&gateway)
        .await;
    // Channel trouble retries slowly until max_age: a short max_age makes it fail at once.
    let app = app(
        "replay",
        &channel(
            "waspy-ar",
            &gateway.uri(),
            "max_age = \"1s\"\nslow_backoff = \"2s\"",
        ),
    )
    .await;
    let body = job("to-replay", "waspy-ar").to_string();
    app.enqueue_raw(body.as_bytes()).await;
    let failed = app.outcomes(2).await.pop().unwrap();
    assert_eq!(failed.error.unwrap().class, ErrorClass::Channel);
    let (dead_body, _) = app.next_dead_letter().await;

    // A plain repeat of the same job is refused as a duplicate of it.
    app.enqueue_raw(&dead_body).await;
    let duplicate = app.next_outcome().await;
    assert_eq!(
        (duplicate.event, duplicate.status),
        (mensajero::outcome::EventKind::Duplicate, Status::Failed)
    );

    // The operator fixed the channel and replays it.
    let mut headers = lapin::types::FieldTable::default();
    headers.insert(
        "x-mensajero-replay".into(),
        lapin::types::AMQPValue::Boolean(true),
    );
    let properties = lapin::BasicProperties::default().with_headers(headers);
    let publisher =
        mensajero::broker::Publisher::new(app.connection.create_channel().await.unwrap())
            .await
            .unwrap();
    publisher
        .publish(&app.topology.jobs_exchange, "send", &dead_body, properties)
        .await
        .unwrap();
    let outcomes = app.outcomes(2).await;
    let sent = terminal(&outcomes, "to-replay");
    assert_eq!(
        (sent.status, sent.provider_message_id.as_deref()),
        (Status::Sent, Some("msg-replayed"))
    );
}
