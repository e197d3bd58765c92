//! The dead-letter tools, through the real binary, on real RabbitMQ.

use std::process::{Command, Output};

use lapin::BasicProperties;
use lapin::options::BasicGetOptions;
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use mensajero::broker::{DeadLetter, Publisher};
use mensajero::retry::ErrorClass;
use serde_json::Value;

use crate::common::{self, TestApp, header, unique_prefix};

fn mensajero(app: &TestApp, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mensajero"))
        .args(["--log-format", "text", "dlq"])
        .args(args)
        .env("MENSAJERO__AMQP__URL", &app.config.amqp.url)
        .env("MENSAJERO__AMQP__PREFIX", &app.prefix)
        .output()
        .expect("run mensajero")
}

fn json(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("JSON output")
}

async fn fill(app: &TestApp) {
    let publisher = Publisher::new(app.connection.create_channel().await.unwrap())
        .await
        .unwrap();
    let props = BasicProperties::default();
    for (id, reason, class) in [
        ("a", "invalid_phone", ErrorClass::Invalid),
        ("b", "invalid_phone", ErrorClass::Invalid),
        ("c", "retries_exhausted", ErrorClass::RetriesExhausted),
    ] {
        let body = format!(
            r#"{{"id":"{id}","channel":"demo","to":"+5491126032641","message":{{"type":"text","text":{{"body":"hi"}}}}}}"#
        );
        let letter = DeadLetter {
            reason,
            class,
            attempts: 3,
            message: "why",
            job_id: Some(id),
            channel: Some("demo"),
        };
        publisher
            .dead_letter(&app.topology, body.as_bytes(), &props, &letter)
            .await
            .unwrap();
    }
    // A poison message RabbitMQ dead-lettered itself, two hours ago.
    let mut death = FieldTable::default();
    death.insert(
        "reason".into(),
        AMQPValue::LongString("delivery_limit".into()),
    );
    let two_hours_ago = (chrono::Utc::now().timestamp() - 7200) as u64;
    death.insert("time".into(), AMQPValue::Timestamp(two_hours_ago));
    let mut headers = FieldTable::default();
    headers.insert(
        "x-first-death-reason".into(),
        AMQPValue::LongString("delivery_limit".into()),
    );
    headers.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
    );
    let body = br#"{"id":"poison","channel":"demo","to":"+5491126032641","message":{"type":"text","text":{"body":"x"}},"priority":"bulk"}"#;
    publisher
        .publish(
            &app.topology.dead_exchange,
            "delivery_limit",
            body,
            BasicProperties::default().with_headers(headers),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn list_replay_and_purge_dead_letters() {
    let app = TestApp::new(common::config(&unique_prefix("dlq"), "", &[])).await;
    fill(&app).await;
    let dead = &app.topology.dead_queue;
    assert_eq!(app.queue_len(dead).await, 4);

    // Listing leaves the queue as it was.
    let all = json(&mensajero(&app, &["list", "--json"]));
    assert_eq!(all.len(), 4);
    let poison = all
        .iter()
        .find(|v| v["reason"] == "delivery_limit")
        .expect("broker dead letter");
    assert_eq!(poison["job_id"], "poison");
    assert_eq!(
        json(&mensajero(
            &app,
            &["list", "--reason", "invalid_phone", "--json"]
        ))
        .len(),
        2
    );
    assert_eq!(
        json(&mensajero(&app, &["list", "--id", "c", "--json"]))[0]["class"],
        "retries_exhausted"
    );
    let table = String::from_utf8(mensajero(&app, &["list"]).stdout).unwrap();
    assert!(table.starts_with("JOB ID"), "{table}");
    assert!(table.contains("4 dead letter(s)"), "{table}");
    assert_eq!(app.settled_queue_len(dead, 4).await, 4);

    // A dry run changes nothing.
    assert_eq!(
        json(&mensajero(
            &app,
            &["replay", "--reason", "invalid_phone", "--dry-run", "--json"]
        ))
        .len(),
        2
    );
    assert_eq!(app.queue_len(&app.topology.send_queue).await, 0);

    // Replay by reason moves exactly those, with fresh headers, to their lane.
    assert_eq!(
        json(&mensajero(
            &app,
            &["replay", "--reason", "retries_exhausted", "--json"]
        ))
        .len(),
        1
    );
    assert_eq!(
        json(&mensajero(&app, &["replay", "--id", "poison", "--json"])).len(),
        1
    );
    let channel = app.connection.create_channel().await.unwrap();
    let replayed = channel
        .basic_get(
            app.topology.send_queue.as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("the replayed job is in the send queue");
    let headers = replayed
        .delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    assert_eq!(
        headers.inner().get("x-mensajero-replay"),
        Some(&AMQPValue::Boolean(true))
    );
    assert_eq!(header(&headers, "x-mensajero-reason"), None);
    assert_eq!(header(&headers, "x-mensajero-attempts"), None);
    assert_eq!(
        serde_json::from_slice::<Value>(&replayed.delivery.data).unwrap()["id"],
        "c"
    );
    let bulk = channel
        .basic_get(
            app.topology.bulk_queue.as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("the bulk job went back to the bulk lane");
    assert!(
        bulk.delivery
            .properties
            .headers()
            .as_ref()
            .unwrap()
            .inner()
            .get("x-death")
            .is_none()
    );
    assert_eq!(app.settled_queue_len(dead, 2).await, 2);

    // Purge needs --yes, and removes only what is old enough.
    assert_eq!(
        mensajero(&app, &["purge", "--older-than", "1h"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        json(&mensajero(
            &app,
            &["purge", "--older-than", "1h", "--yes", "--json"]
        ))
        .len(),
        0
    );
    assert_eq!(
        json(&mensajero(
            &app,
            &["purge", "--older-than", "0s", "--yes", "--json"]
        ))
        .len(),
        2
    );
    assert_eq!(app.settled_queue_len(dead, 0).await, 0);
}
