//! The receipt lane: raw webhook bodies from the webhooks queue become `delivered`, `read`
//! and `failed` outcomes (SPEC §3, §6).
//!
//! Each receipt is matched to its job through the tracking record written when `sent` was
//! confirmed. A receipt for an id with no record yet may have overtaken that write, so its
//! message is parked in the delay queues and tried again until `receipts.unknown_retry` has
//! passed since the listener took it; then it is dead-lettered as `unknown_message`, never
//! dropped. A body that cannot be read is dead-lettered as `invalid_receipt`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::message::Delivery;
use tracing::{Instrument, debug, info_span, warn};

use super::Shared;
use super::settle::{
    Disposition, TaskError, publish_dead_letter, publish_outcome, settle, with_redis,
};
use crate::broker::{Carried, DeadLetter, Publisher, RECEIPT_KEY};
use crate::gateways::WebhookFormat;
use crate::gateways::webhook::{Parsed, Receipt};
use crate::http::{self, CHANNEL_HEADER};
use crate::outcome::{Outcome, OutcomeError, Status};
use crate::retry::{ErrorClass, Schedule};
use crate::tracking::{self, Tracked};

/// How long a receipt holds its message's lock: far longer than publishing a few outcomes
/// takes, short enough that a crashed holder delays that message's receipts only briefly.
const LOCK_LEASE: Duration = Duration::from_secs(10);

/// Waits between tries of a receipt whose message is not known yet (the last repeats): a
/// receipt that overtook its send waits about a second; one for a message that is not ours
/// backs off to two minutes until `receipts.unknown_retry` runs out.
static UNKNOWN_WAITS: std::sync::LazyLock<Schedule> = std::sync::LazyLock::new(|| {
    Schedule::new([1, 5, 30, 60, 120].map(Duration::from_secs).to_vec())
});

/// Handle one delivery from the webhooks queue and settle it.
pub(super) async fn process(shared: &Shared, publisher: &Publisher, delivery: &Delivery) {
    let channel = header_text(delivery, CHANNEL_HEADER).unwrap_or_default();
    let span = info_span!("receipt", channel = %channel);
    let result = handle(shared, publisher, delivery, &channel)
        .instrument(span)
        .await;
    settle(publisher, delivery, result).await;
}

/// What applying one receipt did.
enum Applied {
    /// Published the outcomes it added.
    Published,
    /// It added nothing (a repeat, or a status behind the current one).
    Nothing,
    /// No sent message with that id is recorded (yet).
    Unknown,
    /// Another receipt of the same message holds its lock for too long: try again later.
    Busy,
}

async fn handle(
    shared: &Shared,
    publisher: &Publisher,
    delivery: &Delivery,
    channel_name: &str,
) -> Result<Disposition, TaskError> {
    let carried = Carried::read(&delivery.properties);
    let received = carried.first_seen.unwrap_or_else(Utc::now);
    let Some(channel) = shared.channels.get(channel_name) else {
        let message = format!("channel `{channel_name}` is not configured");
        return dead_letter(
            shared,
            publisher,
            delivery,
            "unknown_channel",
            &message,
            None,
        )
        .await;
    };
    let provider = channel.gateway.provider();
    let format = crate::gateways::gateway(provider).webhook();
    let headers = kept_headers(delivery, format);
    let items = match format.parse(&delivery.data, &headers) {
        Ok(Parsed::Batch(batch)) => batch.receipts,
        Ok(Parsed::Probe) => return Ok(Disposition::Ack),
        Err(e) => {
            warn!(error = %e, "unreadable receipt; dead-lettering it");
            shared.metrics.receipt(provider.as_str(), "invalid");
            let message = format!("unreadable receipt: {e}");
            return dead_letter(
                shared,
                publisher,
                delivery,
                "invalid_receipt",
                &message,
                Some(channel_name),
            )
            .await;
        }
    };

    let mut unknown = Vec::new();
    for receipt in &items {
        let applied = apply(shared, publisher, channel_name, receipt, received).await?;
        let result = match applied {
            // What was applied so far adds nothing when the whole body comes back.
            Applied::Busy => return Ok(Disposition::Requeue),
            Applied::Published => "applied",
            Applied::Nothing => "duplicate",
            Applied::Unknown => {
                unknown.push(receipt.provider_message_id.as_str());
                "unknown"
            }
        };
        shared.metrics.receipt(provider.as_str(), result);
    }
    if unknown.is_empty() {
        return Ok(Disposition::Ack);
    }

    let age = (Utc::now() - received).to_std().unwrap_or_default();
    let window = shared.config.receipts.unknown_retry;
    if age < window {
        // Retrying the whole body is safe: receipts already applied add nothing the second time.
        let tries = carried.attempts;
        let wait = UNKNOWN_WAITS.nominal(tries + 1);
        debug!(ids = ?unknown, tries, ?wait, "receipt for an unknown message; trying again later");
        let carried = Carried {
            attempts: tries + 1,
            first_seen: Some(received),
            ..Carried::default()
        };
        publisher
            .park(
                &shared.topology,
                RECEIPT_KEY,
                &delivery.data,
                &delivery.properties,
                &carried,
                wait,
            )
            .await?;
        return Ok(Disposition::Ack);
    }
    let message = format!(
        "no sent message with id {} on this channel after {}",
        unknown.join(", "),
        humantime::format_duration(window)
    );
    warn!(ids = ?unknown, "receipt for an unknown message; dead-lettering it");
    dead_letter(
        shared,
        publisher,
        delivery,
        "unknown_message",
        &message,
        Some(channel_name),
    )
    .await
}

/// Apply one receipt under its message's lock: publish what it adds, then move the record on.
async fn apply(
    shared: &Shared,
    publisher: &Publisher,
    channel: &str,
    receipt: &Receipt,
    received: DateTime<Utc>,
) -> Result<Applied, TaskError> {
    let id = receipt.provider_message_id.as_str();
    let tracker = &shared.tracker;
    let owner = super::owner_token();
    let deadline = tokio::time::Instant::now() + LOCK_LEASE + Duration::from_secs(2);
    loop {
        if with_redis(shared, || tracker.lock(channel, id, &owner, LOCK_LEASE)).await? {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            // The holder outlived its lease: something is stuck. Hand the receipt back.
            warn!(
                provider_message_id = id,
                "message lock not released in time; retrying the receipt later"
            );
            return Ok(Applied::Busy);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let result = apply_locked(shared, publisher, channel, receipt, received).await;
    // Best effort: a lock left behind expires with its lease.
    let _ = tracker.unlock(channel, id, &owner).await;
    result
}

async fn apply_locked(
    shared: &Shared,
    publisher: &Publisher,
    channel: &str,
    receipt: &Receipt,
    received: DateTime<Utc>,
) -> Result<Applied, TaskError> {
    let id = receipt.provider_message_id.as_str();
    let tracker = &shared.tracker;
    let Some(tracked) = with_redis(shared, || tracker.get(channel, id)).await? else {
        return Ok(Applied::Unknown);
    };
    if let Some(echoed) = &receipt.job_id
        && *echoed != tracked.job_id
    {
        // Meta echoes our job id; a mismatch means the record is not this message's.
        warn!(
            provider_message_id = id,
            echoed_job_id = %echoed,
            tracked_job_id = %tracked.job_id,
            "receipt names another job than the one recorded for its message id; following the record"
        );
    }
    let steps = tracking::transitions(tracked.status, receipt.status);
    let Some(&(last, _)) = steps.last() else {
        return Ok(Applied::Nothing);
    };
    let class = failed_class(shared, channel, receipt);
    let mut previous = tracked.status;
    for (status, inferred) in steps {
        let event = receipt_outcome(
            channel, class, &tracked, receipt, status, previous, inferred,
        );
        publish_outcome(shared, publisher, &event).await?;
        previous = status;
    }
    with_redis(shared, || tracker.advance(channel, id, last)).await?;
    let lag = (Utc::now() - received).to_std().unwrap_or_default();
    shared.metrics.receipt_lag(&tracked.provider, lag);
    Ok(Applied::Published)
}

/// The class of a `failed` receipt: what the gateway's error table says its code means, as a
/// terminal class (the gateway gave up after accepting the message, so nothing is retried);
/// `rejected` when the gateway gives no code the table knows.
fn failed_class(shared: &Shared, channel: &str, receipt: &Receipt) -> ErrorClass {
    receipt
        .error
        .as_ref()
        .and_then(|e| e.code.as_deref())
        .and_then(|code| shared.channels.get(channel)?.gateway.code_class(code))
        .map_or(ErrorClass::Rejected, ErrorClass::terminal)
}

/// The outcome a receipt publishes for `status`.
fn receipt_outcome(
    channel: &str,
    class: ErrorClass,
    tracked: &Tracked,
    receipt: &Receipt,
    status: Status,
    previous: Status,
    inferred: bool,
) -> Outcome {
    let error = (status == Status::Failed).then(|| {
        let detail = receipt.error.as_ref();
        OutcomeError {
            class,
            code: "delivery_failed".into(),
            message: detail.map_or_else(
                || "the gateway reported the message as failed".to_string(),
                |d| d.message.clone(),
            ),
            provider_code: detail.and_then(|d| d.code.clone()),
            attempts: tracked.attempt,
        }
    });
    Outcome {
        provider: Some(tracked.provider.clone()),
        to: Some(tracked.to.clone()),
        previous_status: Some(previous),
        provider_message_id: Some(receipt.provider_message_id.clone()),
        attempt: tracked.attempt,
        error,
        occurred_at: receipt.occurred_at.unwrap_or_else(Utc::now),
        metadata: tracked.metadata.clone(),
        inferred,
        channels_tried: tracked.channels_tried.clone(),
        ..Outcome::status(channel, &tracked.idempotency_key, &tracked.job_id, status)
    }
}

async fn dead_letter(
    shared: &Shared,
    publisher: &Publisher,
    delivery: &Delivery,
    reason: &str,
    message: &str,
    channel: Option<&str>,
) -> Result<Disposition, TaskError> {
    let letter = DeadLetter {
        reason,
        class: ErrorClass::Invalid,
        attempts: Carried::read(&delivery.properties).attempts,
        message,
        job_id: None,
        channel,
    };
    publish_dead_letter(shared, publisher, delivery, &letter).await?;
    Ok(Disposition::Ack)
}

/// The request headers the listener kept with the body, as the format's parser wants them.
fn kept_headers(delivery: &Delivery, format: &dyn WebhookFormat) -> reqwest::header::HeaderMap {
    use reqwest::header::{HeaderName, HeaderValue};
    let mut headers = reqwest::header::HeaderMap::new();
    for &name in format.kept_headers() {
        // Receipts queued before the upgrade to generic kept headers carry Whaapy's event
        // name under its old header: read it too, so none waiting in the queue loses it.
        let legacy = http::LEGACY_KEPT_HEADERS
            .iter()
            .filter(|(_, kept)| kept.eq_ignore_ascii_case(name))
            .find_map(|(old, _)| header_text(delivery, old));
        let value = header_text(delivery, &http::kept_header(name)).or(legacy);
        if let (Ok(name), Some(Ok(value))) = (
            HeaderName::from_bytes(name.as_bytes()),
            value.map(HeaderValue::try_from),
        ) {
            headers.insert(name, value);
        }
    }
    headers
}

fn header_text(delivery: &Delivery, name: &str) -> Option<String> {
    crate::broker::amqp_text(delivery.properties.headers().as_ref()?.inner().get(name)?)
}
