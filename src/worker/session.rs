//! One broker connection's life: the topology, the publisher, and one lane per work queue
//! (transactional, bulk, receipts), each with its own consumer, prefetch and in-flight budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{PROBE_EVERY, Shared, job, poll, receipts};
use crate::broker::{self, Publisher};

/// Pause between a lane's last ack and closing its channel at shutdown (see `run_lane`).
const ACK_SETTLE: Duration = Duration::from_millis(250);

/// Sample queue depths and consumer counts for the metrics (alerts on backlog and on
/// queues nobody consumes need them, and KEDA-less setups can scale on them).
async fn sample_queues(shared: Arc<Shared>, channel: lapin::Channel) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        if !sample_queues_once(&shared, &channel).await {
            // The channel is gone (session ending); the next session starts a new sampler.
            return;
        }
    }
}

/// One sample of every queue; false when the channel is gone.
async fn sample_queues_once(shared: &Shared, channel: &lapin::Channel) -> bool {
    let topology = &shared.topology;
    let queues = [
        ("send", &topology.send_queue),
        ("bulk", &topology.bulk_queue),
        ("webhooks", &topology.webhooks_queue),
        ("dead", &topology.dead_queue),
    ];
    for (label, queue) in queues {
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        match channel
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
        {
            Ok(q) => shared
                .metrics
                .queue_sample(label, q.message_count(), q.consumer_count()),
            Err(_) => return false,
        }
    }
    true
}

/// Make a broker that blocks this session's connection visible: RabbitMQ sends
/// `connection.blocked` (with its reason, e.g. "low on memory") when a resource alarm stops
/// publishers, and `connection.unblocked` when it clears. lapin announces the
/// `connection.blocked` capability by default and surfaces both as [`lapin::Event`]s. Publishes
/// simply wait meanwhile — no job is lost or failed — so this only logs, sets
/// `mensajero_amqp_blocked` and tells `/readyz`. The session ends by aborting it; the next
/// session starts unblocked.
async fn watch_blocked(
    shared: Arc<Shared>,
    events: impl futures_util::Stream<Item = lapin::Event> + Send + 'static,
) {
    let mut events = std::pin::pin!(events);
    let mut since: Option<Instant> = None;
    while let Some(event) = events.next().await {
        match event {
            lapin::Event::ConnectionBlocked(reason) => {
                warn!(
                    reason = %reason,
                    "connection.blocked: the broker stopped our publishes (resource alarm); jobs wait"
                );
                since.get_or_insert_with(Instant::now);
                shared.metrics.set_amqp_blocked(true);
                shared.live.set_amqp_blocked(true);
            }
            lapin::Event::ConnectionUnblocked => {
                let lasted = since.take().map(|t| t.elapsed()).unwrap_or_default();
                warn!(blocked_for = ?lasted, "connection.unblocked: the broker takes our publishes again");
                shared.metrics.set_amqp_blocked(false);
                shared.live.set_amqp_blocked(false);
            }
            _ => {}
        }
    }
}

/// One work queue with its own consumer, prefetch and in-flight budget, so a flood in one
/// lane never takes the other's capacity.
#[derive(Debug, Clone, Copy)]
struct Lane {
    /// Routing key jobs of this lane carry (and that parked copies return with).
    key: &'static str,
    max_in_flight: usize,
    prefetch: u16,
}

/// One broker connection's life. `Ok` means shutdown was requested and handled;
/// `established` is set once the session could publish and consume.
pub(super) async fn session(shared: &Arc<Shared>, established: &mut bool) -> anyhow::Result<()> {
    // A cluster's nodes are tried from the one after the last session's (a lost node is
    // left behind; a single `url` is always node 0).
    let nodes = shared.config.amqp.nodes();
    let start = shared.next_node.load(std::sync::atomic::Ordering::Relaxed);
    let (connection, node) = broker::connect_any(&nodes, start, "mensajero-worker").await?;
    shared
        .next_node
        .store(node + 1, std::sync::atomic::Ordering::Relaxed);
    if nodes.len() > 1 {
        tracing::info!(node, nodes = nodes.len(), "connected to a broker node");
    }
    // Listen before anything publishes: lapin drops events nobody listens to.
    let blocked = tokio::spawn(watch_blocked(shared.clone(), connection.events_listener()));
    let setup = connection.create_channel().await?;
    shared.topology.declare(&setup).await?;
    // The queue series exist from the moment the worker reports ready.
    sample_queues_once(shared, &setup).await;
    let publisher = Publisher::new(connection.create_channel().await?).await?;
    shared.live.set_publisher(Some(publisher.clone())).await;
    *established = true;
    shared.metrics.set_ready(shared.live.ready());
    let sampler = tokio::spawn(sample_queues(shared.clone(), setup));
    let poller = tokio::spawn(poll::run(shared.clone(), publisher.clone()));
    let worker = &shared.config.worker;
    let receipts = &shared.config.receipts;
    let lanes = [
        Lane {
            key: broker::SEND_KEY,
            max_in_flight: worker.max_in_flight,
            prefetch: worker.prefetch,
        },
        Lane {
            key: broker::BULK_KEY,
            max_in_flight: worker.bulk_max_in_flight,
            prefetch: worker.bulk_prefetch,
        },
        Lane {
            key: broker::RECEIPT_KEY,
            max_in_flight: receipts.max_in_flight,
            prefetch: receipts.prefetch,
        },
    ];
    // Stops every lane when one fails (the connection is shared) or on shutdown.
    let stop = shared.shutdown.child_token();
    let (transactional, bulk, receipts) = tokio::join!(
        run_lane(shared, &connection, &publisher, lanes[0], &stop),
        run_lane(shared, &connection, &publisher, lanes[1], &stop),
        run_lane(shared, &connection, &publisher, lanes[2], &stop),
    );
    sampler.abort();
    poller.abort();
    blocked.abort();
    shared.metrics.set_amqp_blocked(false);
    shared.live.set_publisher(None).await;
    let _ = connection.close(200, "session over".into()).await;
    transactional.and(bulk).and(receipts)?;
    if !shared.shutdown.is_cancelled() {
        anyhow::bail!("the publisher channel closed");
    }
    info!("worker stopped");
    Ok(())
}

async fn run_lane(
    shared: &Arc<Shared>,
    connection: &lapin::Connection,
    publisher: &Publisher,
    lane: Lane,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let queue = match lane.key {
        broker::BULK_KEY => shared.topology.bulk_queue.as_str(),
        broker::RECEIPT_KEY => shared.topology.webhooks_queue.as_str(),
        _ => shared.topology.send_queue.as_str(),
    };
    let consume = connection.create_channel().await?;
    // Per-consumer QoS: quorum queues refuse global QoS with a connection error.
    consume
        .basic_qos(lane.prefetch, BasicQosOptions { global: false })
        .await?;
    let mut deliveries = consume
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let tag = deliveries.tag();
    info!(queue, max_in_flight = lane.max_in_flight, "consuming");

    let permits = Arc::new(Semaphore::new(lane.max_in_flight));
    let mut tasks = JoinSet::new();
    let ended = loop {
        // Reap finished tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
        // The permit comes first: never take a delivery there is no capacity for.
        let permit = tokio::select! {
            _ = stop.cancelled() => break None,
            permit = permits.clone().acquire_owned() => permit?,
        };
        let next = tokio::select! {
            _ = stop.cancelled() => break None,
            next = deliveries.next() => next,
        };
        match next {
            Some(Ok(delivery)) => {
                let shared = shared.clone();
                let publisher = publisher.clone();
                let stop = stop.clone();
                tasks.spawn(async move {
                    if lane.key == broker::RECEIPT_KEY {
                        receipts::process(&shared, &publisher, &delivery).await;
                    } else {
                        shared.metrics.job_consumed(lane.key);
                        job::process(&shared, &publisher, &delivery, lane.key).await;
                    }
                    if !publisher.is_open() {
                        // Nothing can be confirmed on this session any more: start a new one
                        // rather than consume jobs that can only be redelivered.
                        stop.cancel();
                    }
                    drop(permit);
                });
            }
            Some(Err(e)) => break Some(anyhow::Error::from(e).context("consumer failed")),
            None => {
                break Some(anyhow::anyhow!(
                    "the broker cancelled the consumer of {queue}"
                ));
            }
        }
    };

    if let Some(error) = ended {
        stop.cancel();
        // The channel is gone: running tasks will fail to ack and their deliveries come back.
        // Let them finish in the background; the next session starts now.
        tasks.detach_all();
        return Err(error);
    }
    if !shared.shutdown.is_cancelled() {
        // The other lane failed; this one ends with the session.
        tasks.detach_all();
        return Ok(());
    }

    info!(queue, in_flight = tasks.len(), grace = ?shared.config.worker.shutdown_grace, "shutting down: no new jobs");
    if let Err(e) = consume
        .basic_cancel(tag, BasicCancelOptions::default())
        .await
    {
        warn!(error = %e, "cancelling consumer");
    }
    let drained = tokio::time::timeout(shared.config.worker.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            queue,
            abandoned = tasks.len(),
            "grace period over; unfinished jobs go back to the broker"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    // RabbitMQ quorum queues can drop acks that arrive just before their channel closes
    // (rabbitmq-server#10327: the settlements race the consumer's removal, and the acked jobs
    // go back to the queue). Harmless for correctness — dedupe turns the redelivery into a
    // re-published outcome — but a clean shutdown should not cause redeliveries: give the last
    // acks a moment to settle, then close the channel gracefully before the connection.
    tokio::time::sleep(ACK_SETTLE).await;
    if let Err(e) = consume.close(200, "shutdown".into()).await {
        warn!(queue, error = %e, "closing the consumer channel");
    }
    // Closing the connection (in `session`) returns every unacked delivery to its queue.
    Ok(())
}
