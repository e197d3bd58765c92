//! The operator commands, run as the real binary.

use std::process::{Command, Output};

use mensajero::broker::Topology;

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
    let _cleanup = Cleanup(topology.clone(), prefix.clone());
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

struct Cleanup(Topology, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let services = common::services();
        common::cleanup(
            self.0.clone(),
            services.redis_url,
            self.1.clone(),
            services.amqp_url,
        );
    }
}
