//! Status polling (SPEC §6): for channels with `poll_after`, a sent message that has no final
//! status yet is looked up at the gateway's status endpoint, and the answer is queued as a
//! receipt — the same durable path, status order and duplicate handling as a webhook.

use std::sync::Arc;
use std::time::Duration;

use lapin::types::FieldTable;
use tracing::{debug, warn};

use super::Shared;
use crate::broker::Publisher;

/// How often due polls are looked for.
const TICK: Duration = Duration::from_secs(1);
/// Messages polled per channel per tick, so one worker never floods a gateway's status API.
const BATCH: usize = 50;

/// Poll due messages until the task is aborted with its broker session.
pub(super) async fn run(shared: Arc<Shared>, publisher: Publisher) {
    let channels: Vec<_> = shared
        .channels
        .values()
        .filter_map(|c| c.config.poll_after.map(|after| (c, after)))
        .collect();
    if channels.is_empty() {
        return;
    }
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        for (channel, after) in &channels {
            let due = match shared.tracker.due_polls(&channel.name, BATCH, *after).await {
                Ok(due) => due,
                Err(e) => {
                    shared.metrics.redis_error();
                    debug!(channel = %channel.name, error = %e, "cannot read due polls");
                    continue;
                }
            };
            for id in due {
                let Some(answer) = channel.gateway.status(&id).await else {
                    continue;
                };
                let provider = channel.gateway.provider().as_str();
                match answer {
                    Ok(reply) if (200..300).contains(&reply.status) => {
                        let queued = publisher
                            .receipt(
                                &shared.topology,
                                &channel.name,
                                &reply.body,
                                FieldTable::default(),
                            )
                            .await;
                        match queued {
                            Ok(()) => shared.metrics.receipt(provider, "polled"),
                            Err(e) => {
                                warn!(channel = %channel.name, error = %e, "cannot queue a polled status")
                            }
                        }
                    }
                    Ok(reply) => {
                        shared.metrics.receipt(provider, "poll_failed");
                        debug!(channel = %channel.name, provider_message_id = %id, status = reply.status, "status poll refused");
                    }
                    Err(failure) => {
                        shared.metrics.receipt(provider, "poll_failed");
                        debug!(channel = %channel.name, provider_message_id = %id, error = %failure.message, "status poll failed");
                    }
                }
            }
        }
    }
}
