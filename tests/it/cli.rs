//! The operator commands, run as the real binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mensajero::broker::{PublishError, Publisher, Topology};
use mensajero::inbound::{self, Content, Context, InboundEvent, Reply, ReplyKind, Text};
use serde_json::json;

use crate::common::{self, unique_prefix};

fn mensajero(args: &[&str], env: &[(&str, &str)]) -> Output {
    let services = common::services();
    Command::new(env!("CARGO_BIN_EXE_mensajero"))
        .args(["--log-format", "text"])
        .args(args)
        .env("MENSAJERO__AMQP__URL", &services.amqp_url)
        .env("MENSAJERO__REDIS__URL", &services.redis_url)
        .envs(env.iter().copied())
        .output()
        .expect("run mensajero")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn config_check_reports_every_problem_at_once() {
    let path = std::env::temp_dir().join(format!("{}.toml", unique_prefix("cfg")));
    std::fs::write(
        &path,
        r#"
[worker]
max_in_flight = 0
[channels.waspy-ar]
provider = "waspy"
api_key_env = "MENSAJERO_TEST_UNSET_KEY"
timeout = "90s"
[channels.other]
provider = "mock"
failover = ["missing"]
"#,
    )
    .unwrap();
    let out = mensajero(
        &["--config", path.to_str().unwrap(), "config", "check"],
        &[],
    );
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = text(&out.stderr);
    for expected in [
        "worker.max_in_flight: must be at least 1",
        "channels.waspy-ar.base_url: required",
        "channels.waspy-ar.sender: required",
        "channels.waspy-ar.api_key_env: environment variable MENSAJERO_TEST_UNSET_KEY is not set",
        "channels.waspy-ar.timeout: must be shorter than worker.lease",
        "channels.other.failover: unknown channel `missing`",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
    assert!(stderr.starts_with("6 configuration problem(s)"), "{stderr}");
}

#[test]
fn config_check_accepts_the_demo_configuration() {
    let out = mensajero(
        &[
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml"),
            "config",
            "check",
        ],
        // What scripts/demo.sh exports: secrets come from the environment, never the file.
        &[
            ("DEMO_GATEWAY_KEY", "demo-key"),
            ("DEMO_WEBHOOK_SECRET", "demo-secret"),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains("configuration OK: 1 channel(s): demo"));
    // Without them the check names the missing variable (the worker would refuse to start).
    let out = mensajero(
        &[
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml"),
            "config",
            "check",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("DEMO_WEBHOOK_SECRET"), "{out:?}");
}

#[tokio::test]
async fn topology_is_idempotent_and_enqueue_reports_rejected_lines() {
    let prefix = unique_prefix("cli");
    let env = [("MENSAJERO__AMQP__PREFIX", prefix.as_str())];
    let topology = Topology::new(&prefix, 20);
    let _cleanup = Cleanup::new(&prefix);
    for _ in 0..2 {
        let out = mensajero(&["topology"], &env);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }

    let file = std::env::temp_dir().join(format!("{prefix}.jsonl"));
    std::fs::write(
        &file,
        concat!(
            r#"{"id":"ok-1","channel":"demo","to":"+5491126032641","message":{"type":"text","text":{"body":"Hola"}}}"#,
            "\n# comments and blank lines are skipped\n\n",
            r#"{"id":"bad-1","channel":"demo","to":"+5491126032641","message":{"type":"text","text":{"body":""}}}"#,
            "\n",
        ),
    )
    .unwrap();
    let out = mensajero(&["enqueue", "--file", file.to_str().unwrap()], &env);
    std::fs::remove_file(&file).unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("published ok-1 (text to demo)"), "{stdout}");
    assert!(
        stdout.contains(
            "line 4: rejected: invalid job: message.text.body: must be 1–4096 characters"
        ),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("1 published, 1 rejected"),
        "{stdout}"
    );

    let out = mensajero(
        &[
            "enqueue",
            "--channel",
            "demo",
            "--to",
            "+5491126032641",
            "--text",
            "Hola",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stdout));

    // Both valid jobs are in the queue, confirmed.
    let connection = mensajero::broker::connect(&common::services().amqp_url, "cli-test")
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue = channel
        .queue_declare(
            topology.send_queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(queue.message_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_prints_each_event_as_one_json_line() {
    let prefix = unique_prefix("cli-in");
    let _cleanup = Cleanup::new(&prefix);
    // --idle only bounds a broken run: --count 1 ends it.
    let mut watcher = inbound_watcher(&prefix, &["--count", "1", "--idle", "20s"]);
    assert!(
        watcher.ready.contains("binding=#"),
        "the default binding takes everything: {}",
        watcher.ready
    );

    let event = inbound_event("demo", reply_content());
    assert_eq!(event.routing_key(), "reply.demo");
    publish_inbound(&prefix, &event)
        .await
        .expect("the watcher's queue takes it");

    let (lines, status) = tokio::task::block_in_place(|| watcher.finish(Duration::from_secs(15)));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}",
        watcher.stderr()
    );
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let printed: InboundEvent = serde_json::from_str(&lines[0]).expect("an InboundEvent");
    assert_eq!(printed, event);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_with_a_type_prints_only_that_type() {
    let prefix = unique_prefix("cli-in-type");
    let _cleanup = Cleanup::new(&prefix);
    let mut watcher = inbound_watcher(
        &prefix,
        &["--type", "text", "--count", "1", "--idle", "20s"],
    );
    assert!(
        watcher.ready.contains("binding=text.*"),
        "{}",
        watcher.ready
    );

    // Nothing else is bound to this prefix's inbound exchange, so the broker returns the reply
    // today; either way it must not reach the watcher.
    let reply = inbound_event("demo", reply_content());
    match publish_inbound(&prefix, &reply).await {
        Ok(()) | Err(PublishError::Unroutable { .. }) => {}
        Err(e) => panic!("publishing the reply: {e}"),
    }
    // Published after the reply: had the reply been routed to the watcher, it would be the
    // one line printed (one queue, in order) and --count 1 would have ended the watch there.
    let text = inbound_event(
        "demo",
        Content::Text(Text {
            body: "¿Llega hoy?".into(),
        }),
    );
    let published = publish_inbound(&prefix, &text).await;

    let (lines, status) = tokio::task::block_in_place(|| watcher.finish(Duration::from_secs(15)));
    let printed: Vec<InboundEvent> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("an InboundEvent"))
        .collect();
    // First: a reply that got through also ends the watch, and then the text has no queue.
    assert_eq!(printed, [text]);
    published.expect("the watcher's queue takes text");
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}",
        watcher.stderr()
    );
}

#[test]
fn inbound_refuses_an_unknown_type_and_a_pattern_as_channel() {
    let out = mensajero(&["inbound", "--type", "voice"], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        text(&out.stderr).contains("not an inbound type; one of: text, image,"),
        "{out:?}"
    );
    // `*.demo` as a channel would bind a pattern, not name a channel.
    let out = mensajero(&["inbound", "--channel", "*.demo"], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        text(&out.stderr).contains("channel names are 1–64 of [A-Za-z0-9_-]"),
        "{out:?}"
    );
}

/// `mensajero inbound` for `prefix` with `args`, once its queue is bound.
fn inbound_watcher(prefix: &str, args: &[&str]) -> Watcher {
    let services = common::services();
    let mut command = Command::new(env!("CARGO_BIN_EXE_mensajero"));
    command
        .args(["--log-format", "text", "inbound"])
        .args(args)
        .env("MENSAJERO__AMQP__URL", &services.amqp_url)
        .env("MENSAJERO__REDIS__URL", &services.redis_url)
        .env("MENSAJERO__AMQP__PREFIX", prefix)
        // The readiness line is an info log.
        .env("RUST_LOG", "info");
    Watcher::start(&mut command, "watching")
}

/// A command that prints events as they arrive, run as a child process: its stdout lines
/// arrive on a channel, its stderr is kept for failure messages.
pub(crate) struct Watcher {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The stderr line that said it is ready.
    pub(crate) ready: String,
}

impl Watcher {
    /// Start `command` and wait (15 s at most) for a line containing `ready` on its stderr:
    /// what is published before its queue is bound never reaches it.
    pub(crate) fn start(command: &mut Command, ready: &str) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the watcher");
        let (out_tx, stdout) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if out_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (err_tx, err_rx) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (err, kept) = (child.stderr.take().expect("stderr"), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line.clone());
                let _ = err_tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(15);
        let ready = loop {
            match err_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains(ready) => break line,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "no `{ready}` on the watcher's stderr within 15 s:\n{}",
                        stderr.lock().unwrap().join("\n")
                    );
                }
            }
        };
        Self {
            child,
            stdout,
            stderr,
            ready,
        }
    }

    /// What it printed until it exited, and how it exited; `None` when it was still running
    /// after `limit` (it is killed then).
    pub(crate) fn finish(&mut self, limit: Duration) -> (Vec<String>, Option<ExitStatus>) {
        let deadline = Instant::now() + limit;
        let mut lines = Vec::new();
        loop {
            match self
                .stdout
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => lines.push(line),
                // stdout closed: the process is exiting.
                Err(RecvTimeoutError::Disconnected) => return (lines, self.child.wait().ok()),
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return (lines, None);
                }
            }
        }
    }

    /// Its stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A button reply, the routing-key type the inbound tests publish.
pub(crate) fn reply_content() -> Content {
    Content::Reply(Reply {
        kind: ReplyKind::Button,
        id: Some("confirm".into()),
        title: Some("Sí, confirmo".into()),
        description: None,
        payload: None,
    })
}

/// An inbound event as the receipt lane publishes it: a customer's `content` on `channel`,
/// answering a job of ours.
pub(crate) fn inbound_event(channel: &str, content: Content) -> InboundEvent {
    let provider_message_id = format!("wamid.{}", uuid::Uuid::new_v4().simple());
    InboundEvent {
        event_id: inbound::event_id("meta", &provider_message_id),
        channel: channel.into(),
        provider: "meta".into(),
        from: Some("+5491126032641".into()),
        user_id: None,
        profile_name: Some("Ana Pérez".into()),
        timestamp: Some("2026-12-03T10:00:00.000Z".into()),
        received_at: inbound::timestamp(chrono::Utc::now()),
        kind: content.kind(),
        raw: json!({"id": provider_message_id, "type": content.kind().as_str()}),
        provider_message_id,
        content,
        context: Some(Context {
            message_id: "wamid.out-1847".into(),
            job_id: Some("ord-1847".into()),
            idempotency_key: Some("pedido-1847".into()),
            metadata: json!({"order": 1847}).as_object().cloned(),
        }),
    }
}

/// Publish `event` on `prefix`'s inbound exchange the way the worker does (persistent,
/// mandatory, confirmed).
pub(crate) async fn publish_inbound(
    prefix: &str,
    event: &InboundEvent,
) -> Result<(), PublishError> {
    let connection = mensajero::broker::connect(&common::services().amqp_url, "inbound-test")
        .await
        .expect("connect");
    let publisher = Publisher::new(connection.create_channel().await.expect("channel"))
        .await
        .expect("confirm mode");
    let published = publisher.inbound(&Topology::new(prefix, 20), event).await;
    let _ = connection.close(200, "done".into()).await;
    published
}

/// Deletes a test's exchanges, queues and Redis keys when dropped.
pub(crate) struct Cleanup(Topology, String);

impl Cleanup {
    /// For everything under `prefix`.
    pub(crate) fn new(prefix: &str) -> Self {
        Self(Topology::new(prefix, 20), prefix.to_owned())
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let services = common::services();
        common::cleanup(
            self.0.clone(),
            services.redis_url,
            self.1.clone(),
            services.amqp_url.clone(),
        );
        // `Topology::delete` leaves the inbound exchange behind.
        let (exchange, amqp_url) = (self.0.inbound_exchange.clone(), services.amqp_url);
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let connection = mensajero::broker::connect(&amqp_url, "mensajero-test-cleanup")
                    .await
                    .ok()?;
                let channel = connection.create_channel().await.ok()?;
                let _ = channel
                    .exchange_delete(exchange.as_str().into(), Default::default())
                    .await;
                connection.close(200, "cleanup".into()).await.ok()
            })
        })
        .join();
        if !matches!(deleted, Ok(Some(()))) {
            eprintln!("cleanup of {}.inbound failed", self.1);
        }
    }
}
