//! The load generator: publishes jobs to the jobs exchange as a producer would (persistent,
//! mandatory, confirmed), but pipelined, so the generator is never the bottleneck.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation};
use mensajero::broker::{SEND_KEY, Topology};
use tokio::task::JoinSet;

/// Unconfirmed publishes allowed at once while preloading: enough to hide the broker's
/// confirm latency, bounded so memory stays flat.
const CONFIRM_WINDOW: usize = 2_000;

/// The bench's channel name in the worker's configuration.
pub const CHANNEL: &str = "bench";

/// Publishes jobs for one scenario.
pub struct Load {
    channel: Channel,
    exchange: String,
    pending: JoinSet<anyhow::Result<()>>,
}

/// Milliseconds since the epoch, the unit of outcome timestamps.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A small text job, like an order confirmation. `metadata.t_pub` carries the publish time
/// so the collector can measure end-to-end latency from the `sent` outcome alone.
pub fn job_body(id: &str, n: u64) -> Vec<u8> {
    serde_json::json!({
        "id": id,
        "channel": CHANNEL,
        "to": format!("+54911{:08}", n % 100_000_000),
        "message": {"type": "text", "text": {"body": "Hola! Tu pedido fue despachado."}},
        "metadata": {"t_pub": now_ms(), "bench": true},
    })
    .to_string()
    .into_bytes()
}

impl Load {
    /// A confirm-mode channel on `connection` publishing to `topology`'s jobs exchange.
    pub async fn new(connection: &lapin::Connection, topology: &Topology) -> anyhow::Result<Self> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            exchange: topology.jobs_exchange.clone(),
            pending: JoinSet::new(),
        })
    }

    /// Publish one job; its confirm is awaited in the background.
    async fn publish(&mut self, id: &str, n: u64) -> anyhow::Result<()> {
        let body = job_body(id, n);
        let confirm = self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                SEND_KEY.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &body,
                BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2),
            )
            .await?;
        self.pending.spawn(async move {
            match confirm.await? {
                // A returned (unroutable) message is acked too: it is still a lost job.
                Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
                Confirmation::Ack(Some(_)) => bail!("job returned unroutable"),
                Confirmation::Nack(_) => bail!("job nacked by the broker"),
            }
        });
        while self.pending.len() > CONFIRM_WINDOW {
            self.reap_one().await?;
        }
        Ok(())
    }

    async fn reap_one(&mut self) -> anyhow::Result<()> {
        if let Some(done) = self.pending.join_next().await {
            done.context("confirm task")??;
        }
        Ok(())
    }

    /// Wait for every outstanding confirm.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        while !self.pending.is_empty() {
            self.reap_one().await?;
        }
        Ok(())
    }

    /// Publish `count` jobs as fast as confirms allow (the queue is preloaded before the
    /// worker starts), ids `<prefix>-<n>`.
    pub async fn preload(&mut self, prefix: &str, count: u64) -> anyhow::Result<()> {
        for n in 0..count {
            self.publish(&format!("{prefix}-{n}"), n).await?;
        }
        self.flush().await
    }

    /// Open loop: publish at `rate` jobs/s for `duration`, whatever the worker does (a
    /// closed loop would slow down with the worker and hide its queueing delay). Returns how
    /// many were published.
    pub async fn open_loop(
        &mut self,
        prefix: &str,
        rate: f64,
        duration: Duration,
    ) -> anyhow::Result<u64> {
        let start = Instant::now();
        let total = (rate * duration.as_secs_f64()).round() as u64;
        let mut sent = 0u64;
        // A 5 ms tick keeps bursts small (a few jobs) at the rates a 2-core box reaches.
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while sent < total {
            tick.tick().await;
            let due = ((start.elapsed().as_secs_f64() * rate) as u64).min(total);
            while sent < due {
                self.publish(&format!("{prefix}-{sent}"), sent).await?;
                sent += 1;
            }
        }
        self.flush().await?;
        Ok(sent)
    }
}
