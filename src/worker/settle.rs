//! The end of a delivery's turn: acked once everything it caused is confirmed, or handed
//! back; and the confirmed publishes (outcomes, dead letters) and Redis calls it waits on.

use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tracing::{debug, error, warn};

use super::{REDIS_RETRY_MAX, Shared};
use crate::broker::{DeadLetter, PublishError, Publisher};
use crate::outcome::{EventKind, Outcome};
use crate::retry::Backoff;
use crate::store::StoreError;

/// What to do with a delivery once its job task is done with it.
pub(super) enum Disposition {
    /// Everything it caused is confirmed.
    Ack,
    /// Give it back for another worker (shutdown, dependency trouble).
    Requeue,
}

/// Why a job task stopped without deciding the delivery's fate.
#[derive(Debug, thiserror::Error)]
pub(super) enum TaskError {
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("shutdown while waiting on redis")]
    Shutdown,
}

/// Ack a delivery whose effects are confirmed, or hand it back.
pub(super) async fn settle(
    publisher: &Publisher,
    delivery: &Delivery,
    result: Result<Disposition, TaskError>,
) {
    let requeue = BasicNackOptions {
        requeue: true,
        ..Default::default()
    };
    let settled = match result {
        Ok(Disposition::Ack) => delivery.acker.ack(BasicAckOptions::default()).await,
        Ok(Disposition::Requeue) | Err(TaskError::Shutdown) => delivery.acker.nack(requeue).await,
        Err(TaskError::Publish(e)) if !publisher.is_open() => {
            // Not acked: the broker redelivers it, and dedupe turns the repeat into a
            // re-publish of whatever this attempt got to record.
            warn!(error = %e, "publishing failed; the job will be redelivered");
            return;
        }
        Err(TaskError::Publish(e)) => {
            // The channel lives but refused this publish (unroutable, nacked): hand the job
            // back. The pause keeps a persistent fault from spinning; the queue's delivery
            // limit dead-letters a job that never gets through.
            error!(error = %e, "publishing failed; returning the job to its queue");
            tokio::time::sleep(Duration::from_secs(1)).await;
            delivery.acker.nack(requeue).await
        }
    };
    match settled {
        Ok(true) => {}
        Ok(false) => debug!("channel closed before settling; the job will be redelivered"),
        Err(e) => warn!(error = %e, "settling the delivery failed; the job will be redelivered"),
    }
}

/// Run a Redis operation until it succeeds: Redis trouble is never the job's (or the
/// receipt's) fault, so it waits, holding its delivery, instead of failing. Shutdown ends the
/// wait.
pub(super) async fn with_redis<T, F, Fut>(shared: &Shared, op: F) -> Result<T, TaskError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    // Boxed for the same reason as the publisher's future: a Redis call's future is ~0.8 KiB
    // and short-lived; inline, every job task would carry it while it waits on the gateway.
    let unavailable = |e: &StoreError, wait: Duration| {
        shared.metrics.redis_error();
        shared.live.set_redis(false);
        error!(error = %e, retry_in = ?wait, "redis unavailable");
    };
    Backoff::new(&shared.shutdown, REDIS_RETRY_MAX)
        .retry(|| Box::pin(op()), unavailable)
        .await
        .ok_or(TaskError::Shutdown)
}

/// Publish an outcome (confirmed) and count it.
pub(super) async fn publish_outcome(
    shared: &Shared,
    publisher: &Publisher,
    event: &Outcome,
) -> Result<(), TaskError> {
    publisher.outcome(&shared.topology, event).await?;
    let metrics = &shared.metrics;
    match event.event {
        EventKind::Duplicate => metrics.duplicate(&event.channel),
        EventKind::Status => metrics.outcome(event.status.as_str(), &event.channel),
    }
    if let (EventKind::Status, Some(error)) = (event.event, &event.error) {
        metrics.failure(&event.channel, error.class.as_str(), &error.code);
    }
    Ok(())
}

/// Dead-letter a delivery (its body untouched, `letter` in the headers), confirmed, and count it.
pub(super) async fn publish_dead_letter(
    shared: &Shared,
    publisher: &Publisher,
    delivery: &Delivery,
    letter: &DeadLetter<'_>,
) -> Result<(), TaskError> {
    publisher
        .dead_letter(
            &shared.topology,
            &delivery.data,
            &delivery.properties,
            letter,
        )
        .await?;
    shared.metrics.dead_letter(letter.reason);
    Ok(())
}
