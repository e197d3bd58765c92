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
