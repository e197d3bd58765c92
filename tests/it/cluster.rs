//! Beyond one machine: a worker given a cluster's nodes (`[amqp] urls`) connects to one that
//! answers and moves on when its node is lost.

use std::time::Duration;

use mensajero::outcome::Status;
use serde_json::json;

use crate::common::{self, TestApp, unique_prefix};

/// A node that refuses connections (nothing listens on port 1), then the real broker: the
/// worker skips the dead one, whichever it starts from, and jobs flow.
#[tokio::test]
async fn a_worker_skips_an_unreachable_node() {
    let prefix = unique_prefix("cluster-skip");
    let mut config = common::config(&prefix, "[channels.demo]\nprovider = \"mock\"\n", &[]);
    let real = config.amqp.url.clone();
    config.amqp.urls = vec!["amqp://guest:guest@127.0.0.1:1/%2f".into(), real];
    assert_eq!(config.amqp.nodes().len(), 2);
    let app = TestApp::spawn(config).await;
    for i in 0..3 {
        app.enqueue(&json!({
            "id": format!("node-{i}"), "channel": "demo", "to": "+5491126032641",
            "message": {"type": "text", "text": {"body": "hola"}}
        }))
        .await;
    }
    let sent = app
        .outcomes(6)
        .await
        .into_iter()
        .filter(|o| o.status == Status::Sent)
        .count();
    assert_eq!(sent, 3);
    app.assert_quiet(Duration::from_millis(200)).await;
}

/// Bytes of Redis memory (`MEMORY USAGE`) of every key under `prefix` whose name has `part`.
async fn memory_of(prefix: &str, part: &str) -> (usize, u64) {
    let client = redis::Client::open(common::services().redis_url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:{part}:*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    let mut bytes = 0;
    for key in &keys {
        let usage: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut conn)
            .await
            .expect("memory usage");
        bytes += usage.unwrap_or(0);
    }
    (keys.len(), bytes)
}

/// Redis memory per sent job (README "Sizing"): the dedupe record and the correlation record,
/// with small and with 8 KiB metadata, and with `receipts.echo_metadata = false`. Metadata is
/// stored once, in the correlation record, and not at all without echoes.
#[tokio::test]
async fn redis_memory_per_job_is_measured_and_metadata_is_stored_once() {
    const JOBS: usize = 50;
    let mut rows = Vec::new();
    for (label, blob, echo) in [
        ("small metadata", 16, true),
        ("8 KiB metadata", 8_100, true),
        ("8 KiB, echo_metadata = false", 8_100, false),
    ] {
        let prefix = unique_prefix("cluster-mem");
        let channels =
            format!("[receipts]\necho_metadata = {echo}\n[channels.demo]\nprovider = \"mock\"\n");
        let config = common::config(&prefix, &channels, &[]);
        let app = TestApp::spawn(config).await;
        for i in 0..JOBS {
            app.enqueue(&json!({
                "id": format!("mem-{i:04}"), "channel": "demo", "to": "+5491126032641",
                "message": {"type": "text", "text": {"body": "Tu pedido #1847 salió hoy"}},
                "metadata": {"order": 1847, "blob": "x".repeat(blob)}
            }))
            .await;
        }
        let _ = app.outcomes(2 * JOBS).await;
        let (dedupe_keys, dedupe) = memory_of(&prefix, "dedupe").await;
        let (tracked_keys, tracked) = memory_of(&prefix, "msg").await;
        assert_eq!((dedupe_keys, tracked_keys), (JOBS, JOBS), "{label}");
        let per_job = |bytes: u64| bytes / JOBS as u64;
        rows.push((label, per_job(dedupe), per_job(tracked)));
    }
    for (label, dedupe, tracked) in &rows {
        println!(
            "redis memory per job, {label:<30}: dedupe record {dedupe:>6} B, correlation record {tracked:>6} B, total {:>6} B",
            dedupe + tracked
        );
    }
    let (small, large, no_echo) = (rows[0], rows[1], rows[2]);
    assert!(
        large.1.abs_diff(small.1) < 256,
        "the dedupe record holds no metadata: {rows:?}"
    );
    assert!(
        large.2 >= small.2 + 8_000,
        "metadata is in the correlation record: {rows:?}"
    );
    assert!(
        no_echo.2 < small.2 + 256,
        "echo_metadata = false keeps none: {rows:?}"
    );
}
