//! The receipt lane: raw webhook bodies from the webhooks queue become `delivered`, `read`
//! and `failed` outcomes (SPEC §3, §6), and the customers' messages in them inbound events
//! (SPEC §10).
//!
//! Each receipt is matched to its job through the tracking record written when `sent` was
//! confirmed. A receipt for an id with no record yet may have overtaken that write, so its
//! message is parked in the delay queues and tried again until `receipts.unknown_retry` has
//! passed since the listener took it; then it is dead-lettered as `unknown_message`, never
//! dropped (or, under `receipts.unknown = "count"`, counted and dropped). A body that cannot be
//! read is dead-lettered as `invalid_receipt`; one whose items cannot all be read has the
//! readable ones applied and is dead-lettered with the others named.
//!
//! Each item goes to the channel whose sender it names, where the gateway names one (Meta
//! posts several numbers' webhooks to one app URL); the channel whose URL was called has
//! already authenticated the request. An inbound message is published once (a mark in Redis
//! after its confirmed publish), with the job it answers looked up in the tracking record of
//! the message it quotes or reacts to, and then opens the customer's 24-hour window.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::message::Delivery;
use tracing::{Instrument, debug, info_span, warn};

use super::Shared;
use super::settle::{
    Disposition, TaskError, publish_dead_letter, publish_outcome, settle, with_redis,
};
use crate::broker::{Carried, DeadLetter, PublishError, Publisher, RECEIPT_KEY};
use crate::config::UnknownReceipts;
use crate::gateways::WebhookFormat;
use crate::gateways::webhook::{Inbound, Parsed, Receipt};
use crate::http::{self, CHANNEL_HEADER};
use crate::inbound::{self, InboundEvent, InboundType};
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

/// How many times a reply quoting a message with no correlation record is tried again
/// ([`EARLY_REPLY_WAIT`] apart, so ≈ 10 s) before it goes out without a job — the quoted
/// message was not ours. The customer may answer before the send that reached them is
/// recorded (a gateway that delivered after the worker's timeout). Counted in tries that
/// Redis answered, not in time: while Redis is unreachable the record cannot be written
/// either, and the reply must not run out of patience meanwhile.
const EARLY_REPLY_TRIES: u32 = 10;

/// The wait between two tries of such a reply.
const EARLY_REPLY_WAIT: Duration = Duration::from_secs(1);

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
    let batch = match format.parse(&delivery.data, &headers) {
        Ok(Parsed::Batch(batch)) => batch,
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
    // A body comes back after a wait only for its unknown receipts: what it said about the
    // account, and what could not be read, was reported on its first try.
    let first_try = carried.attempts == 0;
    if first_try {
        for notice in &batch.notices {
            let code = notice.code.as_deref().unwrap_or("");
            warn!(provider = provider.as_str(), code, error = %notice.message, "the gateway reported an error in a webhook");
            shared.metrics.webhook_error(provider.as_str(), code);
        }
        for word in &batch.ignored_statuses {
            debug!(status = %word, "receipt status not tracked; counted");
            shared.metrics.status_ignored(provider.as_str(), word);
        }
    }

    let mut unroutable = Vec::new();
    let mut early = Vec::new();
    for item in &batch.inbound {
        let target = route(shared, channel_name, item.sender.as_deref());
        match inbound(shared, publisher, target, item, received, carried.attempts).await? {
            Delivered::Published(kind) => shared.metrics.inbound(target, kind.as_str()),
            Delivered::Repeat => {}
            Delivered::Busy => return Ok(Disposition::Requeue),
            Delivered::Unroutable => unroutable.push(item.provider_message_id.as_str()),
            Delivered::Early => early.push(item.provider_message_id.as_str()),
        }
    }

    let mut unknown = Vec::new();
    for receipt in &batch.receipts {
        let target = route(shared, channel_name, receipt.sender.as_deref());
        let applied = apply(shared, publisher, target, receipt, received).await?;
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

    // The body is the durable copy of what could not be taken: dead-letter it with the
    // reason, its readable neighbours already applied (they add nothing if it is replayed).
    if first_try && !batch.unreadable.is_empty() {
        let problems: Vec<String> = batch.unreadable.iter().map(|e| e.0.clone()).collect();
        warn!(
            items = problems.len(),
            "unreadable items in a webhook; dead-lettering the body, applying the rest"
        );
        shared.metrics.receipt(provider.as_str(), "invalid");
        let message = format!("unreadable receipt items: {}", problems.join("; "));
        dead_letter(
            shared,
            publisher,
            delivery,
            "invalid_receipt",
            &message,
            Some(channel_name),
        )
        .await?;
    }
    if !unroutable.is_empty() {
        let message = format!(
            "no queue is bound to {} for inbound message {}; bind one, then replay this",
            shared.topology.inbound_exchange,
            unroutable.join(", ")
        );
        warn!(ids = ?unroutable, "inbound message unroutable; dead-lettering the body");
        dead_letter(
            shared,
            publisher,
            delivery,
            "inbound_unroutable",
            &message,
            Some(channel_name),
        )
        .await?;
    }
    if unknown.is_empty() && early.is_empty() {
        return Ok(Disposition::Ack);
    }

    let age = (Utc::now() - received).to_std().unwrap_or_default();
    let window = shared.config.receipts.unknown_retry;
    if !early.is_empty() || age < window {
        // Retrying the whole body is safe: receipts already applied add nothing the second
        // time, and inbound messages already published are not published again.
        let tries = carried.attempts;
        let wait = if unknown.is_empty() {
            EARLY_REPLY_WAIT
        } else {
            UNKNOWN_WAITS.nominal(tries + 1)
        };
        debug!(ids = ?unknown, early = ?early, tries, ?wait, "receipt or reply for a message not recorded yet; trying again later");
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
    if shared.config.receipts.unknown == UnknownReceipts::Count {
        debug!(ids = ?unknown, "receipt for a message that is not ours; counted and dropped (receipts.unknown = count)");
        for _ in &unknown {
            shared.metrics.receipt(provider.as_str(), "unknown_dropped");
        }
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

/// The channel a webhook item belongs to: the one whose sender it names (several channels
/// may share one callback URL), else the one whose URL was called.
fn route<'s>(shared: &'s Shared, called: &'s str, sender: Option<&str>) -> &'s str {
    let Some(sender) = sender else { return called };
    let Some(channel) = shared.channels.get(called) else {
        return called;
    };
    if channel.config.sender.as_deref() == Some(sender) {
        return called;
    }
    shared
        .senders
        .get(&(channel.gateway.provider(), sender.to_owned()))
        .map_or(called, String::as_str)
}

/// What delivering one inbound message did.
enum Delivered {
    /// Published, as this type.
    Published(InboundType),
    /// Published before (the gateway retried the webhook).
    Repeat,
    /// Another replica is publishing the same message right now: try the body again later.
    Busy,
    /// No queue is bound to the inbound exchange for it.
    Unroutable,
    /// It quotes a message not recorded yet: try again shortly (see [`EARLY_REPLY_TRIES`]).
    Early,
}

/// Publish one inbound message unless it has been already, with the job it answers, then
/// record the customer's window. Under the message's lock, like receipts, so two replicas
/// given the same retried webhook publish it once.
async fn inbound(
    shared: &Shared,
    publisher: &Publisher,
    channel: &str,
    item: &Inbound,
    received: DateTime<Utc>,
    tries: u32,
) -> Result<Delivered, TaskError> {
    let lock_id = format!("in:{}", item.provider_message_id);
    let Some(owner) = lock(shared, channel, &lock_id).await? else {
        return Ok(Delivered::Busy);
    };
    let result = inbound_locked(shared, publisher, channel, item, received, tries).await;
    let _ = shared.tracker.unlock(channel, &lock_id, &owner).await;
    result
}

async fn inbound_locked(
    shared: &Shared,
    publisher: &Publisher,
    channel_name: &str,
    item: &Inbound,
    received: DateTime<Utc>,
    tries: u32,
) -> Result<Delivered, TaskError> {
    let id = item.provider_message_id.as_str();
    let conversations = &shared.conversations;
    if with_redis(shared, || conversations.published(channel_name, id)).await? {
        return Ok(Delivered::Repeat);
    }
    let context = match &item.context_id {
        Some(context_id) => {
            let tracker = &shared.tracker;
            let tracked = with_redis(shared, || tracker.get(channel_name, context_id)).await?;
            if tracked.is_none() && tries < EARLY_REPLY_TRIES {
                return Ok(Delivered::Early);
            }
            Some(inbound::Context {
                message_id: context_id.clone(),
                job_id: tracked.as_ref().map(|t| t.job_id.clone()),
                idempotency_key: tracked.as_ref().map(|t| t.idempotency_key.clone()),
                metadata: tracked.and_then(|t| t.metadata),
            })
        }
        None => None,
    };
    let Some(channel) = shared.channels.get(channel_name) else {
        return Ok(Delivered::Repeat);
    };
    let provider = channel.gateway.provider().as_str();
    let event = InboundEvent {
        event_id: inbound::event_id(provider, id),
        channel: channel_name.to_owned(),
        provider: provider.to_owned(),
        from: item.from.clone(),
        user_id: item.user_id.clone(),
        profile_name: item.profile_name.clone(),
        provider_message_id: id.to_owned(),
        timestamp: item.timestamp.map(inbound::timestamp),
        received_at: inbound::timestamp(received),
        kind: item.content.kind(),
        content: item.content.clone(),
        context,
        raw: item.raw.clone(),
    };
    match publisher.inbound(&shared.topology, &event).await {
        Ok(()) => {}
        Err(PublishError::Unroutable { .. }) => return Ok(Delivered::Unroutable),
        Err(e) => return Err(e.into()),
    }
    debug!(
        kind = event.kind.as_str(),
        provider_message_id = id,
        "inbound message published"
    );
    with_redis(shared, || conversations.mark_published(channel_name, id)).await?;
    if channel.config.window.records()
        && let Some(from) = &item.from
    {
        let at = item.timestamp.unwrap_or(received);
        with_redis(shared, || {
            conversations.record_inbound(channel_name, from, at)
        })
        .await?;
    }
    Ok(Delivered::Published(event.kind))
}

/// Take a message's lock, waiting a little for another holder; `None` when it is held past its
/// lease (something is stuck: the caller hands the body back for later).
async fn lock(shared: &Shared, channel: &str, id: &str) -> Result<Option<String>, TaskError> {
    let tracker = &shared.tracker;
    let owner = super::owner_token();
    let deadline = tokio::time::Instant::now() + LOCK_LEASE + Duration::from_secs(2);
    loop {
        if with_redis(shared, || tracker.lock(channel, id, &owner, LOCK_LEASE)).await? {
            return Ok(Some(owner));
        }
        if tokio::time::Instant::now() >= deadline {
            warn!(
                provider_message_id = id,
                "message lock not released in time; retrying the webhook later"
            );
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
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
    let Some(owner) = lock(shared, channel, id).await? else {
        return Ok(Applied::Busy);
    };
    let result = apply_locked(shared, publisher, channel, receipt, received).await;
    // Best effort: a lock left behind expires with its lease.
    let _ = shared.tracker.unlock(channel, id, &owner).await;
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
