//! The collector: a private queue bound to every outcome, and what the outcomes say about
//! each job (when it was picked up, when it was sent, how many terminal events it got).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use mensajero::broker::Topology;
use mensajero::outcome::{EventKind, Outcome, Status};

/// What the outcomes said about one job.
#[derive(Debug, Default, Clone)]
pub struct Track {
    /// `queued.occurred_at` (ms): the worker took the job (pickup).
    pub queued_at: Option<i64>,
    /// First `sent.occurred_at` (ms).
    pub sent_at: Option<i64>,
    /// First terminal (`sent` or `failed`) time (ms).
    pub done_at: Option<i64>,
    /// Terminal events received: exactly one is right; more is a duplicate outcome (allowed
    /// by at-least-once delivery, but counted), none is a lost job.
    pub terminal: u32,
    /// `failed` among them.
    pub failed: u32,
    /// `duplicate` events (the worker thought the key was taken by another job).
    pub duplicate_events: u32,
    /// When the load generator published it (`metadata.t_pub`, ms).
    pub published_at: Option<i64>,
}

/// Everything collected so far, by job id.
#[derive(Debug, Default)]
pub struct Collected {
    /// Per job.
    pub jobs: HashMap<String, Track>,
    /// Outcome events of any kind.
    pub events: u64,
}

impl Collected {
    fn record(&mut self, o: &Outcome) {
        self.events += 1;
        let at = o.occurred_at.timestamp_millis();
        let track = self.jobs.entry(o.job_id.clone()).or_default();
        if track.published_at.is_none() {
            track.published_at = o
                .metadata
                .as_ref()
                .and_then(|m| m.get("t_pub"))
                .and_then(serde_json::Value::as_i64);
        }
        if o.event == EventKind::Duplicate {
            track.duplicate_events += 1;
            return;
        }
        match o.status {
            Status::Queued => {
                track.queued_at.get_or_insert(at);
            }
            Status::Sent | Status::Failed => {
                track.terminal += 1;
                track.done_at.get_or_insert(at);
                if o.status == Status::Sent {
                    track.sent_at.get_or_insert(at);
                } else {
                    track.failed += 1;
                }
            }
            // Receipts never come from the mock: nothing to do.
            _ => {}
        }
    }
}

/// A running collector.
pub struct Collector {
    /// Shared with the consuming task.
    pub data: Arc<Mutex<Collected>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    /// Bind a private auto-delete queue to every outcome of `topology` and start consuming.
    /// Declares the topology first so it exists before any worker runs.
    pub async fn start(
        connection: &lapin::Connection,
        topology: &Topology,
    ) -> anyhow::Result<Self> {
        let channel = connection.create_channel().await?;
        topology.declare(&channel).await?;
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
            .await?;
        channel
            .queue_bind(
                queue.name().clone(),
                topology.outcomes_exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        // no_ack: the collector must keep up with the worker and its queue is throwaway.
        let mut consumer = channel
            .basic_consume(
                queue.name().clone(),
                "bench-collector".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let data = Arc::new(Mutex::new(Collected::default()));
        let sink = data.clone();
        let task = tokio::spawn(async move {
            // Keeps the channel alive as long as the task runs.
            let _channel = channel;
            while let Some(Ok(delivery)) = consumer.next().await {
                if let Ok(outcome) = serde_json::from_slice::<Outcome>(&delivery.data) {
                    sink.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .record(&outcome);
                }
            }
        });
        Ok(Self { data, task })
    }

    /// The collected data.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Collected> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stop consuming.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// The `q`-quantile (0–1) of `values`, which it sorts; `None` when empty.
pub fn quantile(values: &mut [i64], q: f64) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let index = ((values.len() as f64 - 1.0) * q).round() as usize;
    values.get(index).copied()
}
