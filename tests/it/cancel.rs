//! Cancelling a job before it is sent, in every place a job can wait: not yet published,
//! in its queue, in a delay queue for a retry or a rate-limit slot, scheduled with `send_at`;
//! the race with an in-flight call; the broker message, the library and the CLI.

use std::time::{Duration, Instant};

use chrono::Utc;
use mensajero::broker::headers;
use mensajero::cancel::{CancelRequest, Canceller, Target};
use mensajero::dedupe::CancelAnswer;
use mensajero::outcome::{Outcome, Status};
use mensajero::retry::ErrorClass;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{self, TempConfig, TestApp, WorkerProcess, unique_prefix};

const KEY: &str = "wspy_cancel_test";
const CHANNEL: &str = "waspy-ar";

fn channel(base_url: &str, extra: &str) -> String {
    format!(
        r#"
[channels.{CHANNEL}]
provider = "waspy"
base_url = "{base_url}"
api_key_env = "WASPY_TEST_KEY"
sender = "550e8400-e29b-41d4-a716-446655440000"
timeout = "5s"
rate_per_second = 100000
{extra}
"#
    )
}

fn created(id: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({"data": {"id": id, "status": "queued"}}))
}

fn job(id: &str, key: Option<&str>) -> Value {
    let mut job = json!({"id": id, "channel": CHANNEL, "to": "+5491126032641", "message": {"type": "text", "text": {"body": "Hola"}}});
    if let Some(key) = key {
        job["idempotency_key"] = key.into();
    }
    job
}

fn config(test: &str, channels: &str) -> mensajero::config::Config {
    common::config(&unique_prefix(test), channels, &[("WASPY_TEST_KEY", KEY)])
}

async fn canceller(app: &TestApp) -> Canceller {
    Canceller::connect(&app.config).await.expect("canceller")
}

fn key(k: &str) -> Target {
    Target::Key(k.into())
}

/// The job's terminal outcome, waiting for it among the next events.
async fn terminal(app: &TestApp, job_id: &str) -> Outcome {
    loop {
        let o = app
            .try_next_outcome(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("no terminal outcome for {job_id}"));
        if o.job_id == job_id && matches!(o.status, Status::Sent | Status::Failed) {
            return o;
        }
    }
}

fn assert_cancelled(o: &Outcome, reason: &str) {
    assert_eq!(o.status, Status::Failed, "{o:#?}");
    let error = o.error.as_ref().expect("error");
    assert_eq!(error.class, ErrorClass::Cancelled, "{o:#?}");
    assert_eq!(error.code, "cancelled");
    assert!(error.message.contains(reason), "{o:#?}");
}

async fn wait_for_parked(app: &TestApp, at_least: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut parked = 0;
        for (_, queue) in &app.topology.delay_queues {
            parked += app.queue_len(queue).await;
        }
        if parked >= at_least {
            return;
        }
        assert!(Instant::now() < deadline, "only {parked} parked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// No dead letter for a cancelled job: an operator's decision is not an error.
async fn assert_no_dead_letters(app: &TestApp) {
    assert_eq!(app.queue_len(&app.topology.dead_queue).await, 0);
}

#[tokio::test]
async fn a_cancel_before_the_job_arrives_cancels_it_on_arrival() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created("never"))
        .expect(0)
        .mount(&gateway)
        .await;
    let app = TestApp::spawn(config("cxearly", &channel(&gateway.uri(), ""))).await;
    let answer = canceller(&app)
        .await
        .cancel(CHANNEL, key("order-1"), Some("order cancelled".into()))
        .await
        .unwrap();
    assert_eq!(answer, CancelAnswer::Cancelled { maybe_sent: false });
    assert_eq!(answer.to_string(), "cancelled before sending");
    // Nothing is published for the job until it arrives.
    app.assert_quiet(Duration::from_millis(500)).await;
    app.enqueue(&job("early-1", Some("order-1"))).await;
    let o = app.next_outcome().await;
    assert_cancelled(&o, "order cancelled");
    assert_eq!(o.job_id, "early-1");
    assert_eq!(o.previous_status, None);
    // A repeat inside the window is cancelled too; a second cancel says it already was.
    app.enqueue(&job("early-2", Some("order-1"))).await;
    assert_cancelled(&app.next_outcome().await, "order cancelled");
    let again = canceller(&app)
        .await
        .cancel(CHANNEL, key("order-1"), None)
        .await
        .unwrap();
    assert!(
        matches!(again, CancelAnswer::AlreadyCancelled { at: Some(_) }),
        "{again:?}"
    );
    assert_no_dead_letters(&app).await;
}

#[tokio::test]
async fn a_job_waiting_in_its_queue_is_cancelled_by_id() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created("msg-other"))
        .expect(1)
        .mount(&gateway)
        .await;
    let mut app = TestApp::new(config("cxqueue", &channel(&gateway.uri(), ""))).await;
    app.enqueue(&job("queued-1", None)).await;
    app.enqueue(&job("queued-2", None)).await;
    let answer = canceller(&app)
        .await
        .cancel(CHANNEL, Target::Id("queued-1".into()), None)
        .await
        .unwrap();
    assert_eq!(answer, CancelAnswer::Cancelled { maybe_sent: false });
    app.start_worker().await;
    let outcomes = app.outcomes(3).await;
    let cancelled = outcomes.iter().find(|o| o.job_id == "queued-1").unwrap();
    assert_cancelled(cancelled, "cancelled before sending");
    assert!(
        outcomes
            .iter()
            .any(|o| o.job_id == "queued-2" && o.status == Status::Sent),
        "{outcomes:#?}"
    );
    assert_no_dead_letters(&app).await;
}

#[tokio::test]
async fn a_job_parked_for_a_retry_is_cancelled_with_no_further_attempt() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&gateway)
        .await;
    let app = TestApp::spawn(config(
        "cxretry",
        &channel(&gateway.uri(), "retry_schedule = [\"3s\"]"),
    ))
    .await;
    app.enqueue(&job("retry-1", Some("retry-key"))).await;
    assert_eq!(app.next_outcome().await.status, Status::Queued);
    wait_for_parked(&app, 1).await;
    let answer = canceller(&app)
        .await
        .cancel(CHANNEL, key("retry-key"), Some("campaign stopped".into()))
        .await
        .unwrap();
    assert!(answer.is_cancelled(), "{answer:?}");
    let o = terminal(&app, "retry-1").await;
    assert_cancelled(&o, "campaign stopped");
    assert_eq!(o.previous_status, Some(Status::Queued));
    assert_eq!(o.attempt, 1, "the attempt made before the cancel");
    assert_no_dead_letters(&app).await;
}

#[tokio::test]
async fn a_job_parked_for_a_rate_limit_slot_is_cancelled() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created("msg-rl"))
        .mount(&gateway)
        .await;
    let extra = "rate_burst = 1";
    let channels =
        channel(&gateway.uri(), extra).replace("rate_per_second = 100000", "rate_per_second = 1");
    let app = TestApp::spawn(config("cxrate", &channels)).await;
    for i in 0..5 {
        app.enqueue(&job(&format!("rl-{i}"), None)).await;
    }
    // At one a second, the later jobs wait for their slots in delay queues.
    wait_for_parked(&app, 2).await;
    // The last published waits longest; cancel it while it is parked.
    let answers = cancel_by_ids(&app, &["rl-3", "rl-4"]).await;
    let cancelled: Vec<_> = answers.iter().filter(|(_, a)| a.is_cancelled()).collect();
    assert!(!cancelled.is_empty(), "{answers:?}");
    let mut sent = 0;
    let mut ended = 0;
    while ended < 5 {
        let o = app
            .try_next_outcome(Duration::from_secs(20))
            .await
            .expect("outcomes");
        match o.status {
            Status::Sent => {
                sent += 1;
                ended += 1;
                assert!(!cancelled.iter().any(|(id, _)| *id == o.job_id), "{o:#?}");
            }
            Status::Failed => {
                ended += 1;
                assert_cancelled(&o, "cancelled before sending");
                assert!(cancelled.iter().any(|(id, _)| *id == o.job_id), "{o:#?}");
            }
            _ => {}
        }
    }
    assert_eq!(sent, 5 - cancelled.len());
    let requests = gateway.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), sent);
    assert_no_dead_letters(&app).await;
}

async fn cancel_by_ids(app: &TestApp, ids: &[&str]) -> Vec<(String, CancelAnswer)> {
    let canceller = canceller(app).await;
    let mut answers = Vec::new();
    for id in ids {
        let answer = canceller
            .cancel(CHANNEL, Target::Id((*id).into()), None)
            .await
            .unwrap();
        answers.push((id.to_string(), answer));
    }
    answers
}

#[tokio::test]
async fn a_scheduled_job_is_cancelled_before_its_send_at() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created("never"))
        .expect(0)
        .mount(&gateway)
        .await;
    let app = TestApp::spawn(config("cxsched", &channel(&gateway.uri(), ""))).await;
    let send_at = Utc::now() + chrono::Duration::seconds(8);
    let mut scheduled = job("sched-1", Some("sched-key"));
    scheduled["send_at"] = send_at.to_rfc3339().into();
    app.enqueue(&scheduled).await;
    wait_for_parked(&app, 1).await;
    let answer = canceller(&app)
        .await
        .cancel(CHANNEL, key("sched-key"), Some("order cancelled".into()))
        .await
        .unwrap();
    assert_eq!(answer, CancelAnswer::Cancelled { maybe_sent: false });
    let o = terminal(&app, "sched-1").await;
    assert_cancelled(&o, "order cancelled");
    // It ended at its next hop through the delay queues, not at its send_at.
    assert!(o.occurred_at < send_at, "{o:#?}");
    assert_no_dead_letters(&app).await;
}

#[tokio::test]
async fn the_in_flight_call_wins_and_the_answer_says_so() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created("msg-slow").set_delay(Duration::from_secs(2)))
        .expect(1)
        .mount(&gateway)
        .await;
    let app = TestApp::spawn(config("cxrace", &channel(&gateway.uri(), ""))).await;
    app.enqueue(&job("race-1", Some("race-key"))).await;
    assert_eq!(app.next_outcome().await.status, Status::Queued);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let canceller = canceller(&app).await;
    let answer = canceller
        .cancel(CHANNEL, key("race-key"), None)
        .await
        .unwrap();
    assert_eq!(
        answer,
        CancelAnswer::InFlight {
            job_id: "race-1".into()
        }
    );
    assert_eq!(answer.to_string(), "too late: a gateway call is in flight");
    let o = terminal(&app, "race-1").await;
    assert_eq!(o.status, Status::Sent);
    // After `sent`, the answer names when and the provider's id.
    let answer = canceller
        .cancel(CHANNEL, key("race-key"), None)
        .await
        .unwrap();
    let CancelAnswer::Sent {
        at: Some(_),
        provider_message_id: Some(id),
    } = &answer
    else {
        panic!("{answer:?}");
    };
    assert_eq!(id, "msg-slow");
    let text = answer.to_string();
    assert!(
        text.starts_with("too late: sent at ") && text.ends_with(", provider id msg-slow"),
        "{text}"
    );
}

#[tokio::test]
async fn broker_cancels_apply_across_two_workers_and_malformed_ones_are_dead_lettered() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created("msg-two"))
        .mount(&gateway)
        .await;
    let channels = channel(&gateway.uri(), "");
    let app = TestApp::spawn(config("cxtwo", &channels)).await;
    let file = TempConfig::write(&app, "inline_wait = \"1s\"", &channels);
    let _second = WorkerProcess::start(&file, &[("WASPY_TEST_KEY", KEY)]);
    // Scheduled a few seconds ahead, so the cancels (taken by either worker) come first.
    let send_at = Utc::now() + chrono::Duration::seconds(6);
    for i in 0..6 {
        let mut j = job(&format!("two-{i}"), Some(&format!("two-key-{i}")));
        j["send_at"] = send_at.to_rfc3339().into();
        app.enqueue(&j).await;
    }
    for i in 0..3 {
        let request = CancelRequest::new(
            CHANNEL,
            Target::Key(format!("two-key-{i}")),
            Some("stopped by producer".into()),
        )
        .unwrap();
        app.producer.cancel(&request).await.unwrap();
    }
    app.producer
        .publish_keyed(
            br#"{"cancel": {"channel": "waspy-ar", "id": "x", "idempotency_key": "y"}}"#,
            "cancel",
        )
        .await
        .unwrap();
    let (body, headers_found) = app.next_dead_letter().await;
    assert!(String::from_utf8_lossy(&body).contains("\"cancel\""));
    assert_eq!(
        common::header(&headers_found, headers::REASON).as_deref(),
        Some("invalid_cancel")
    );
    let mut sent = 0;
    let mut cancelled = 0;
    while sent + cancelled < 6 {
        let o = app
            .try_next_outcome(Duration::from_secs(30))
            .await
            .expect("outcomes");
        let n: usize = o.job_id.trim_start_matches("two-").parse().unwrap();
        match o.status {
            Status::Sent => {
                assert!(n >= 3, "{o:#?}");
                sent += 1;
            }
            Status::Failed => {
                assert!(n < 3, "{o:#?}");
                assert_cancelled(&o, "stopped by producer");
                cancelled += 1;
            }
            _ => {}
        }
    }
    assert_eq!(
        gateway.received_requests().await.unwrap_or_default().len(),
        3
    );
    assert_no_dead_letters(&app).await;
}

#[tokio::test]
async fn the_cli_cancels_and_says_what_it_found() {
    let gateway = MockServer::start().await;
    let app = TestApp::new(config("cxcli", &channel(&gateway.uri(), ""))).await;
    let file = TempConfig::write(&app, "", &channel(&gateway.uri(), ""));
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mensajero"))
            .args(["--log-format", "text", "--config"])
            .arg(&*file)
            .arg("cancel")
            .args(args)
            .output()
            .expect("run mensajero")
    };
    let out = run(&[
        "--channel",
        CHANNEL,
        "--key",
        "cli-key",
        "--reason",
        "operator",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "cancelled before sending"
    );
    let out = run(&["--channel", CHANNEL, "--key", "cli-key"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("already cancelled at "));
    // Both --key and --id, or an unknown channel, are refused.
    let out = run(&["--channel", CHANNEL, "--key", "a", "--id", "b"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = run(&["--channel", "nope", "--id", "b"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("channel `nope` is not configured"));
    // The job the CLI cancelled ends cancelled when a worker meets it.
    let mut app = app;
    app.start_worker().await;
    app.enqueue(&job("cli-1", Some("cli-key"))).await;
    assert_cancelled(&app.next_outcome().await, "operator");
}

/// The `CANCEL` script's rows, on Redis directly: a live lease is too late; a released one
/// (a parked job) is cancellable, and says whether its last attempt may have sent; the next
/// claim meets `cancelled` and books no slot.
#[tokio::test]
async fn the_cancel_script_respects_live_leases_and_remembers_ambiguous_attempts() {
    use mensajero::dedupe::{Claim, ClaimRequest, Dedupe};
    use mensajero::ratelimit::{Limits, RateLimiter};

    let app = TestApp::new(config("cxscript", &channel("http://127.0.0.1:9", ""))).await;
    let client = redis::Client::open(app.config.redis.url.as_str()).expect("redis url");
    let manager = redis::aio::ConnectionManager::new(client)
        .await
        .expect("redis");
    let dedupe = Dedupe::new(manager.clone(), &app.config.redis.prefix);
    let limiter = RateLimiter::new(manager, &app.config.redis.prefix);
    let limits = Limits {
        per_second: 1000,
        burst: 1000,
        recipient_interval: None,
    };
    let booking = limiter.booking(CHANNEL, "+5491126032641", &limits, Duration::from_secs(1));
    let request = ClaimRequest {
        channel: CHANNEL,
        idempotency_key: "script-key",
        job_id: "script-job",
        owner: "worker-a",
        lease: Duration::from_secs(30),
        window: Duration::from_secs(60),
        take_over_live: false,
        restart_failed: false,
    };
    let window = Duration::from_secs(60);
    let (claim, _) = dedupe
        .claim_and_book(&request, &booking, true)
        .await
        .unwrap();
    assert_eq!(claim, Claim::Acquired);
    let cancel = || dedupe.cancel(CHANNEL, "script-key", None, "why", window);
    assert_eq!(
        cancel().await.unwrap(),
        CancelAnswer::InFlight {
            job_id: "script-job".into()
        }
    );
    // Parked after an attempt that may have reached the gateway.
    dedupe
        .release(CHANNEL, "script-key", "worker-a", true)
        .await
        .unwrap();
    assert_eq!(
        cancel().await.unwrap(),
        CancelAnswer::Cancelled { maybe_sent: true }
    );
    let (claim, permit) = dedupe
        .claim_and_book(&request, &booking, true)
        .await
        .unwrap();
    assert_eq!(
        claim,
        Claim::Cancelled {
            reason: "why".into(),
            attempts: 1
        }
    );
    assert_eq!(permit, None, "a cancelled job books no rate-limit slot");
    assert_eq!(
        dedupe.cancelled(CHANNEL, "script-key").await.unwrap(),
        Some("why".into())
    );
}
