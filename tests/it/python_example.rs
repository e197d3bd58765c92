//! `examples/python` (pika) against a real broker and worker: what a Python producer sees.
//!
//! Needs `python3` and PyPI: pika is installed into a throwaway virtualenv under the temp
//! directory, named by a hash of `requirements.txt` and reused by later runs. Without
//! `python3`, or when the virtualenv cannot be built (offline), the tests print why and pass.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lapin::ExchangeKind;
use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use mensajero::broker::PublishError;
use mensajero::inbound::{Content, InboundEvent, Text};
use serde_json::{Value, json};

use crate::cli::{self, Watcher};
use crate::common::{self, TestApp, unique_prefix};

const TO: &str = "+5491126032641";

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python")
}

/// FNV-1a: a hash that stays the same across Rust versions, for the virtualenv's name.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn imports_pika(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import pika"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The virtualenv's interpreter with the example's requirements, built once per
/// `requirements.txt`; `None` (after printing why) when that is impossible here.
fn python() -> Option<PathBuf> {
    let requirements = example_dir().join("requirements.txt");
    let hash = fnv1a(&std::fs::read(&requirements).expect("examples/python/requirements.txt"));
    let venv = std::env::temp_dir().join(format!("mensajero-py-venv-{hash:016x}"));
    let python = venv.join("bin").join("python");
    if imports_pika(&python) {
        return Some(python);
    }
    let skip = |why: String| {
        println!("skipped: {why}");
        None
    };
    match Command::new("python3").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => return skip(format!("python3 --version failed: {out:?}")),
        Err(e) => return skip(format!("no python3 on PATH ({e})")),
    }
    // Built under a name of its own and renamed into place, so tests running at once never
    // see half a virtualenv (a venv's interpreter finds its packages relative to itself).
    let building = std::env::temp_dir().join(format!(
        "mensajero-py-venv-{hash:016x}.{}",
        uuid::Uuid::new_v4().simple()
    ));
    let venv_made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&building)
        .output();
    match venv_made {
        Ok(out) if out.status.success() => {}
        other => {
            let _ = std::fs::remove_dir_all(&building);
            return skip(format!("python3 -m venv failed: {other:?}"));
        }
    }
    let installed = Command::new(building.join("bin").join("python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--timeout",
            "20",
            "--retries",
            "1",
            "-r",
        ])
        .arg(&requirements)
        .output();
    match installed {
        Ok(out) if out.status.success() => {}
        other => {
            let _ = std::fs::remove_dir_all(&building);
            let why = match other {
                // pip's last line is its verdict (the first ones are retry warnings).
                Ok(out) => String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .to_owned(),
                Err(e) => e.to_string(),
            };
            return skip(format!(
                "pip install -r {} failed: {why}",
                requirements.display()
            ));
        }
    }
    if venv.exists() && !imports_pika(&python) {
        let _ = std::fs::remove_dir_all(&venv); // a broken leftover
    }
    if std::fs::rename(&building, &venv).is_err() {
        // Another test got there first.
        let _ = std::fs::remove_dir_all(&building);
    }
    if imports_pika(&python) {
        Some(python)
    } else {
        skip(format!(
            "the virtualenv {} cannot import pika",
            venv.display()
        ))
    }
}

/// `python mensajero_py.py <args>` in examples/python.
fn example(python: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(python);
    command
        .arg("mensajero_py.py")
        .args(args)
        .current_dir(example_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env_remove("MENSAJERO__AMQP__URL")
        .env_remove("MENSAJERO__AMQP__PREFIX");
    command
}

fn run(python: &Path, args: &[&str]) -> (Option<i32>, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = example(python, args).output().expect("run the example");
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr);
    (status.code(), format!("{stdout}{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_producer_sends_a_job_and_watches_it_queued_and_sent() {
    let Some(python) = python() else { return };
    let started = Instant::now();
    let channels = "[channels.demo]\nprovider = \"mock\"\n";
    let app = TestApp::spawn(common::config(&unique_prefix("py"), channels, &[])).await;
    let url = common::services().amqp_url;

    // Everything below blocks (processes, pipes) while the worker runs on the runtime.
    tokio::task::block_in_place(|| watch_and_send(&python, &url, &app.prefix));
    println!("took {:.1?}", started.elapsed());
}

fn watch_and_send(python: &Path, url: &str, prefix: &str) {
    let common_args = ["--url", url, "--prefix", prefix];
    // The watcher, as a user runs it in another terminal; its lines arrive on `lines`.
    let mut watcher = example(python, &["watch"])
        .args(common_args)
        .args(["--binding", "*.demo", "--count", "2", "--idle", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the watcher");
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = watcher.stdout.take().expect("watcher stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = lines
        .recv_timeout(Duration::from_secs(15))
        .expect("the watcher is bound within 15 s");
    assert_eq!(
        ready,
        format!("watching {}.outcomes (*.demo)", prefix),
        "watcher's first line"
    );

    let job_id = "py-ord-1847";
    let (code, out) = run(
        python,
        &[
            "send",
            "--url",
            url,
            "--prefix",
            prefix,
            "--channel",
            "demo",
            "--to",
            TO,
            "--text",
            "Hola desde Python",
            "--id",
            job_id,
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out.trim_end(),
        format!("published {job_id} to {prefix}.jobs with routing key 'send' (confirmed)")
    );

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    let words = |line: &String| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(
        seen.len() == 2
            && words(&seen[0])[..4] == ["queued.demo", job_id, "attempt", "1"]
            && words(&seen[1])[..6] == ["sent.demo", job_id, "attempt", "1", "provider", "id"],
        "the watcher printed: {seen:#?}"
    );
}

#[tokio::test]
async fn a_python_producer_reports_returns_and_a_missing_exchange() {
    let Some(python) = python() else { return };
    // A bare jobs exchange with nothing bound: every mandatory publish to it is returned. (Not
    // the worker's topology, so the cancel check holds once workers bind `cancel`.)
    let prefix = unique_prefix("py-ret");
    let exchange = format!("{prefix}.jobs");
    let url = common::services().amqp_url;
    let connection = mensajero::broker::connect(&url, "python-example-test")
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare the jobs exchange");
    let example = |args: &[&str]| {
        let mut all = vec!["--url", url.as_str(), "--prefix", prefix.as_str()];
        all.splice(0..0, args.iter().copied());
        run(&python, &all)
    };

    // A job on a routing key no queue is bound to.
    let (code, out) = example(&[
        "send",
        "--to",
        TO,
        "--text",
        "Hola",
        "--id",
        "py-lost",
        "--routing-key",
        "nope",
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "py-lost: not published: returned by the broker: 312 NO_ROUTE (exchange {exchange}, routing key 'nope'): no queue took it"
        )),
        "{out}"
    );

    // A cancel where nothing takes `cancel` (a worker before cancel support) comes back too.
    let (code, out) = example(&["cancel", "--channel", "demo", "--key", "pedido-1847"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "cancel of key pedido-1847 on demo: not published: returned by the broker: 312 NO_ROUTE (exchange {exchange}, routing key 'cancel')"
        )),
        "{out}"
    );

    // Where something takes `cancel`, it is confirmed, in the wire format of SPEC §10.
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare");
    channel
        .queue_bind(
            queue.name().clone(),
            exchange.as_str().into(),
            "cancel".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    let (code, out) = example(&[
        "cancel",
        "--channel",
        "demo",
        "--id",
        "py-ord-9",
        "--reason",
        "customer asked",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out.trim_end(),
        "cancel of id py-ord-9 on demo published (confirmed)"
    );
    let got = channel
        .basic_get(queue.name().clone(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic_get")
        .expect("the cancel is in the queue");
    let body: Value = serde_json::from_slice(&got.delivery.data).expect("JSON");
    assert_eq!(
        body,
        json!({"cancel": {"channel": "demo", "id": "py-ord-9", "reason": "customer asked"}})
    );
    let properties = &got.delivery.properties;
    assert_eq!(*properties.delivery_mode(), Some(2), "persistent");
    assert_eq!(
        properties.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert!(properties.timestamp().is_some(), "timestamped");

    // A prefix nobody declared: no exchange, said so.
    let (code, out) = run(
        &python,
        &[
            "send",
            "--url",
            &url,
            "--prefix",
            "t-py-nowhere",
            "--to",
            TO,
            "--text",
            "Hola",
            "--id",
            "py-nowhere",
        ],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("py-nowhere: not published: exchange t-py-nowhere.jobs does not exist"),
        "{out}"
    );

    channel
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete the exchange");
    let _ = connection.close(200, "done".into()).await;
}

/// A cancel published by the Python example is applied by a real worker: the job the
/// producer publishes afterwards ends `failed` with class `cancelled` and the reason, and no
/// gateway call is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_cancel_is_applied_by_the_worker() {
    let Some(python) = python() else { return };
    let channels = "[channels.demo]\nprovider = \"mock\"\n";
    let app = TestApp::spawn(common::config(&unique_prefix("py-cancel"), channels, &[])).await;
    let url = common::services().amqp_url;
    let job_id = "py-cancelled-1";
    let common_args = ["--url", url.as_str(), "--prefix", app.prefix.as_str()];

    let (code, out) = tokio::task::block_in_place(|| {
        let mut args = vec!["cancel"];
        args.extend(common_args);
        args.extend([
            "--channel",
            "demo",
            "--id",
            job_id,
            "--reason",
            "pedido anulado",
        ]);
        run(&python, &args)
    });
    assert_eq!(code, Some(0), "{out}");
    // The worker applies the cancel before the job exists; wait until it has.
    let applied = "mensajero_cancels_total{channel=\"demo\",result=\"cancelled\"} 1";
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = reqwest::get(app.url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        if metrics.contains(applied) {
            break;
        }
        assert!(Instant::now() < deadline, "the cancel was not applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (code, out) = tokio::task::block_in_place(|| {
        let mut args = vec!["send"];
        args.extend(common_args);
        args.extend([
            "--channel",
            "demo",
            "--to",
            TO,
            "--text",
            "Sale hoy",
            "--id",
            job_id,
        ]);
        run(&python, &args)
    });
    assert_eq!(code, Some(0), "{out}");
    let failed = app.next_outcome().await;
    assert_eq!(
        (failed.job_id.as_str(), failed.status),
        (job_id, mensajero::outcome::Status::Failed),
        "{failed:#?}"
    );
    let error = failed.error.expect("error");
    assert_eq!(error.class, mensajero::retry::ErrorClass::Cancelled);
    assert!(
        error.message.contains("pedido anulado"),
        "{}",
        error.message
    );
    app.assert_quiet(Duration::from_millis(500)).await;
}

/// `watch_inbound` as `mensajero_py.py inbound` runs it: an event published on the inbound
/// exchange comes out as one JSON line equal to it, and `--binding` decides which do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_watcher_prints_inbound_messages() {
    let Some(python) = python() else { return };
    let prefix = unique_prefix("py-in");
    // The watcher declares the inbound exchange itself; this deletes it afterwards.
    let _cleanup = cli::Cleanup::new(&prefix);
    let url = common::services().amqp_url;
    let mut watcher = tokio::task::block_in_place(|| {
        Watcher::start(
            example(&python, &["inbound", "--url", &url, "--prefix", &prefix]).args([
                "--binding",
                "reply.*",
                "--count",
                "1",
                "--idle",
                "20",
            ]),
            "watching",
        )
    });
    assert_eq!(
        watcher.ready,
        format!("watching {prefix}.inbound (reply.*)")
    );

    // A text first: outside the binding, so the reply after it must be the one line printed.
    let text = cli::inbound_event(
        "demo",
        Content::Text(Text {
            body: "Hola, ¿llega hoy?".into(),
        }),
    );
    match cli::publish_inbound(&prefix, &text).await {
        Ok(()) | Err(PublishError::Unroutable { .. }) => {}
        Err(e) => panic!("publishing the text: {e}"),
    }
    let reply = cli::inbound_event("demo", cli::reply_content());
    let published = cli::publish_inbound(&prefix, &reply).await;

    let (lines, status) = tokio::task::block_in_place(|| watcher.finish(Duration::from_secs(20)));
    let printed: Vec<InboundEvent> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("an InboundEvent"))
        .collect();
    // First: a text that got through also ends the watch, and then the reply has no queue.
    assert_eq!(printed, [reply]);
    published.expect("the watcher's queue takes the reply");
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}",
        watcher.stderr()
    );
}
