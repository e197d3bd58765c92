//! The worker as a real process: `kill -9` with hundreds of jobs in flight loses nothing and
//! sends nothing twice; SIGTERM finishes in-flight jobs and exits 0.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use mensajero::config::MockOptions;
use mensajero::gateways::simulator::MockCore;
use mensajero::outcome::{EventKind, Status};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::common::{self, TempConfig, TestApp, WorkerProcess, unique_prefix};

async fn start_gateway(latency: Duration) -> (MockCore, String, CancellationToken) {
    common::start_gateway(MockOptions {
        latency,
        error_rate: 0.0,
        error_status: 503,
        ..MockOptions::default()
    })
    .await
}

fn write_config(app: &TestApp, gateway_url: &str, max_in_flight: usize) -> TempConfig {
    let worker = format!(
        "max_in_flight = {max_in_flight}\nprefetch = {max_in_flight}\nlease = \"5s\"\nshutdown_grace = \"20s\""
    );
    let channels = format!(
        r#"
[channels.waspy-ar]
provider = "waspy"
base_url = "{gateway_url}"
api_key_env = "WASPY_TEST_KEY"
sender = "550e8400-e29b-41d4-a716-446655440000"
timeout = "3s"
rate_per_second = 100000
"#
    );
    TempConfig::write(app, &worker, &channels)
}

struct Worker;

impl Worker {
    fn start(config: &std::path::Path) -> WorkerProcess {
        WorkerProcess::start(config, &[("WASPY_TEST_KEY", "wspy_process_test")])
    }
}

fn text_job(i: usize) -> serde_json::Value {
    json!({
        "id": format!("job-{i}"),
        "idempotency_key": format!("key-{i}"),
        "channel": "waspy-ar",
        "to": "+5491126032641",
        "message": {"type": "text", "text": {"body": format!("mensaje {i}")}}
    })
}

#[tokio::test]
async fn kill_9_with_jobs_in_flight_loses_nothing_and_sends_nothing_twice() {
    const JOBS: usize = 500;
    // Slow enough that hundreds of calls are in flight when the kill lands.
    let (gateway, url, stop_gateway) = start_gateway(Duration::from_millis(300)).await;
    let app = TestApp::new(common::config(&unique_prefix("kill9"), "", &[])).await;
    let config = write_config(&app, &url, 256);
    for i in 0..JOBS {
        app.enqueue(&text_job(i)).await;
    }

    let worker = Worker::start(&config);
    // Kill without warning once some sends completed and many more are mid-call, so the
    // restart meets every state: never started, in flight, sent but not recorded, done.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while gateway.stats().sent < 50 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at_kill = gateway.stats();
    worker.signal("-KILL");
    worker.wait(Duration::from_secs(10)).await;
    // The kill must land with sends still to do and calls cut off mid-flight.
    assert!(
        at_kill.sent < JOBS as u64,
        "the kill landed too late to prove anything"
    );
    assert!(
        at_kill.requests > at_kill.sent,
        "no call was in flight at the kill"
    );

    let restarted = Worker::start(&config);
    let mut terminal: HashMap<String, Status> = HashMap::new();
    let mut seen_event_ids: HashMap<String, usize> = HashMap::new();
    while terminal.len() < JOBS {
        let o = app
            .try_next_outcome(Duration::from_secs(60))
            .await
            .unwrap_or_else(|| {
                panic!(
                    "only {} of {JOBS} jobs reached a terminal outcome",
                    terminal.len()
                )
            });
        assert_eq!(
            o.event,
            EventKind::Status,
            "no job is a duplicate of itself: {o:#?}"
        );
        *seen_event_ids.entry(o.event_id.clone()).or_default() += 1;
        if matches!(o.status, Status::Sent | Status::Failed) {
            assert_eq!(o.status, Status::Sent, "{o:#?}");
            if let Some(previous) = terminal.insert(o.job_id.clone(), o.status) {
                // A re-published terminal event after the crash must be the same event.
                assert_eq!(previous, o.status);
            }
        }
    }
    restarted.signal("-TERM");
    assert!(restarted.wait(Duration::from_secs(30)).await.success());

    let stats = gateway.stats();
    let keys: HashSet<String> = (0..JOBS).map(|i| format!("key-{i}")).collect();
    assert_eq!(
        stats
            .requests_by_key
            .keys()
            .cloned()
            .collect::<HashSet<_>>(),
        keys
    );
    // Each key was sent exactly once; any repeat was answered from the gateway's
    // idempotency cache (a call cut off by the kill, resumed after restart).
    assert_eq!(stats.sent, JOBS as u64, "{stats:?}");
    assert!(stats.requests >= stats.sent + stats.replayed);
    assert_eq!(app.settled_queue_len(&app.topology.send_queue, 0).await, 0);
    assert_eq!(app.settled_queue_len(&app.topology.dead_queue, 0).await, 0);
    eprintln!(
        "kill -9: {JOBS} jobs, {} calls in flight at the kill, {} sent before it, {} replays after restart, {} re-published events",
        at_kill.requests - at_kill.sent,
        at_kill.sent,
        stats.replayed,
        seen_event_ids.values().filter(|n| **n > 1).count()
    );
    stop_gateway.cancel();
}

#[tokio::test]
async fn sigterm_lets_in_flight_jobs_finish_and_exits_zero() {
    const JOBS: usize = 40;
    let (gateway, url, stop_gateway) = start_gateway(Duration::from_millis(1500)).await;
    let app = TestApp::new(common::config(&unique_prefix("sigterm"), "", &[])).await;
    let config = write_config(&app, &url, 64);
    for i in 0..JOBS {
        app.enqueue(&text_job(i)).await;
    }
    let worker = Worker::start(&config);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while gateway.stats().requests < JOBS as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs never got in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every job is now inside a 1.5 s gateway call.
    assert_eq!(gateway.stats().sent, 0);
    worker.signal("-TERM");
    let status = worker.wait(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status:?}");

    let outcomes = app.outcomes(JOBS * 2).await;
    let sent: HashSet<&str> = outcomes
        .iter()
        .filter(|o| o.status == Status::Sent)
        .map(|o| o.job_id.as_str())
        .collect();
    assert_eq!(
        sent.len(),
        JOBS,
        "every in-flight job completed before exit"
    );
    assert_eq!(gateway.stats().sent, JOBS as u64);
    assert_eq!(
        app.settled_queue_len(&app.topology.send_queue, 0).await,
        0,
        "all acked"
    );
    stop_gateway.cancel();
}

/// A job whose every delivery kills its worker (here: `kill -9` while the gateway hangs) is
/// stopped by the quorum queue's delivery limit and dead-lettered with `delivery_limit`.
#[tokio::test]
async fn a_poison_job_is_dead_lettered_at_the_delivery_limit() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let hanging = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(120)))
        .mount(&hanging)
        .await;
    let mut config = common::config(&unique_prefix("poison"), "", &[]);
    config.amqp.delivery_limit = 2;
    let app = TestApp::new(config).await;
    let worker_toml = "lease = \"60s\"";
    let channels = format!(
        r#"
[channels.waspy-ar]
provider = "waspy"
base_url = "{}"
api_key_env = "WASPY_TEST_KEY"
sender = "550e8400-e29b-41d4-a716-446655440000"
timeout = "50s"
"#,
        hanging.uri()
    );
    let config = TempConfig::write(&app, worker_toml, &channels);
    let text = std::fs::read_to_string(&*config)
        .unwrap()
        .replace("[amqp]", "[amqp]\ndelivery_limit = 2");
    std::fs::write(&*config, text).unwrap();
    app.enqueue(&text_job(0)).await;

    let mut kills = 0;
    while app.queue_len(&app.topology.dead_queue).await == 0 {
        assert!(kills < 6, "the delivery limit never stopped the job");
        let seen = hanging.received_requests().await.unwrap_or_default().len();
        let worker = Worker::start(&config);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        // Kill it once it is inside the (hanging) gateway call, or once the broker gave up.
        while hanging.received_requests().await.unwrap_or_default().len() == seen
            && app.queue_len(&app.topology.dead_queue).await == 0
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the job never reached the gateway"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        worker.signal("-KILL");
        worker.wait(Duration::from_secs(10)).await;
        kills += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (body, headers) = app.next_dead_letter().await;
    assert_eq!(
        common::header(&headers, "x-first-death-reason").as_deref(),
        Some("delivery_limit")
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"],
        "job-0"
    );
    assert_eq!(app.settled_queue_len(&app.topology.send_queue, 0).await, 0);
    eprintln!("poison job dead-lettered after {kills} worker deaths");
}
