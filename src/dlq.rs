//! Operator tools over the dead-letter queue (SPEC §4): list, replay, purge.
//!
//! Every tool walks the queue once, bounded by the message count seen at the start, holding
//! what it reads unacknowledged: what it keeps goes back to the queue when its channel
//! closes, what it replays is acknowledged only after the broker confirmed the new copy. An
//! interruption at any point loses nothing; at worst a replayed job also stays in the queue.

use chrono::{DateTime, Utc};
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection};
use serde::Serialize;

use crate::broker::{self, PublishError, Publisher, Topology, headers};

/// Which dead letters a tool acts on.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this reason (`x-mensajero-reason`, or RabbitMQ's `x-first-death-reason`).
    pub reason: Option<String>,
    /// Only this job id.
    pub job_id: Option<String>,
}

impl Filter {
    fn matches(&self, view: &DeadLetterView) -> bool {
        self.reason.as_ref().is_none_or(|r| *r == view.reason)
            && self
                .job_id
                .as_ref()
                .is_none_or(|id| Some(id) == view.job_id.as_ref())
    }
}

/// What one dead letter says about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterView {
    /// The job's id, from the headers or, failing that, the body.
    pub job_id: Option<String>,
    /// The job's channel, when known.
    pub channel: Option<String>,
    /// Why it is here (`delivery_limit` for poison messages the broker stopped).
    pub reason: String,
    /// SPEC §7 class, when mensajero dead-lettered it.
    pub class: Option<String>,
    /// Attempts made.
    pub attempts: Option<u64>,
    /// When it failed.
    pub failed_at: Option<DateTime<Utc>>,
    /// Human-readable detail.
    pub error: Option<String>,
    /// Size of the original body.
    pub bytes: usize,
}

impl DeadLetterView {
    /// Read a dead letter's headers (and body, for the job id of a poison message).
    pub fn read(properties: &BasicProperties, body: &[u8]) -> Self {
        let empty = FieldTable::default();
        let table = properties.headers().as_ref().unwrap_or(&empty);
        let text = |name: &str| table.inner().get(name).and_then(text);
        let broker_death = table.inner().get("x-death").and_then(first_death);
        let job_id = text(headers::JOB_ID).or_else(|| {
            serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_owned))
        });
        Self {
            job_id,
            channel: text(headers::CHANNEL),
            reason: text(headers::REASON)
                .or_else(|| text("x-first-death-reason"))
                .unwrap_or_else(|| "unknown".into()),
            class: text(headers::ERROR_CLASS),
            attempts: table.inner().get(headers::ATTEMPTS).and_then(number),
            failed_at: text(headers::FAILED_AT)
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc))
                .or(broker_death),
            error: text(headers::ERROR),
            bytes: body.len(),
        }
    }
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn number(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some((*n).into()),
        _ => None,
    }
}

/// The time of the first entry of RabbitMQ's `x-death` array.
fn first_death(value: &AMQPValue) -> Option<DateTime<Utc>> {
    let AMQPValue::FieldArray(entries) = value else {
        return None;
    };
    let AMQPValue::FieldTable(entry) = entries.as_slice().first()? else {
        return None;
    };
    match entry.inner().get("time")? {
        AMQPValue::Timestamp(t) => DateTime::from_timestamp(i64::try_from(*t).ok()?, 0),
        _ => None,
    }
}

/// What to do with one dead letter while walking the queue.
enum Action {
    Keep,
    Remove,
    Replay,
}

/// Errors of the dead-letter tools.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The broker failed.
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    /// A replayed copy was not confirmed; the dead letter stays.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Walk the dead-letter queue once, deciding for each message.
async fn walk(
    connection: &Connection,
    topology: &Topology,
    mut decide: impl FnMut(&DeadLetterView) -> Action,
) -> Result<Vec<(DeadLetterView, bool)>, DlqError> {
    let channel = connection.create_channel().await?;
    let queue = channel
        .queue_declare(
            topology.dead_queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let publisher = Publisher::new(connection.create_channel().await?).await?;
    let mut seen = Vec::new();
    // Messages kept are held unacknowledged, so each is read once: the walk ends at the
    // count seen at the start or when the queue has nothing more to give.
    for _ in 0..queue.message_count() {
        let Some(message) = channel
            .basic_get(
                topology.dead_queue.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        let view = DeadLetterView::read(&delivery.properties, &delivery.data);
        let acted = match decide(&view) {
            Action::Keep => false,
            Action::Remove => {
                delivery.acker.ack(BasicAckOptions::default()).await?;
                true
            }
            Action::Replay => {
                replay_one(&publisher, topology, &delivery.properties, &delivery.data).await?;
                delivery.acker.ack(BasicAckOptions::default()).await?;
                true
            }
        };
        seen.push((view, acted));
    }
    // Closing hands every kept message back to the queue.
    let _ = channel.close(200, "done".into()).await;
    let _ = publisher.channel().close(200, "done".into()).await;
    Ok(seen)
}

/// Re-publish a dead letter as a fresh job: body untouched, mensajero's and RabbitMQ's
/// dead-letter headers removed (a fresh attempt count), `x-mensajero-replay` set so the job
/// may start over from its own `failed` dedupe record.
async fn replay_one(
    publisher: &Publisher,
    topology: &Topology,
    properties: &BasicProperties,
    body: &[u8],
) -> Result<(), PublishError> {
    let mut table = FieldTable::default();
    if let Some(original) = properties.headers() {
        for (key, value) in original.inner() {
            let k = key.as_str();
            let dead_letter_header = k.starts_with("x-mensajero-")
                || k.starts_with("x-death")
                || k.starts_with("x-first-death")
                || k.starts_with("x-last-death")
                || k == "x-delivery-count";
            if !dead_letter_header {
                table.insert(key.clone(), value.clone());
            }
        }
    }
    table.insert(headers::REPLAY.into(), AMQPValue::Boolean(true));
    let mut replayed = BasicProperties::default()
        .with_headers(table)
        .with_content_type("application/json".into())
        // A replay is a new publish: `ttl_seconds` counts from now.
        .with_timestamp(Utc::now().timestamp().max(0) as u64);
    if let Some(id) = properties.message_id() {
        replayed = replayed.with_message_id(id.clone());
    }
    let bulk = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .is_some_and(|v| v.get("priority").and_then(|p| p.as_str()) == Some("bulk"));
    let key = if bulk {
        broker::BULK_KEY
    } else {
        broker::SEND_KEY
    };
    publisher
        .publish(&topology.jobs_exchange, key, body, replayed)
        .await
}

/// Up to `limit` dead letters matching `filter`, leaving the queue as it was.
pub async fn list(
    connection: &Connection,
    topology: &Topology,
    filter: &Filter,
    limit: usize,
) -> Result<Vec<DeadLetterView>, DlqError> {
    let seen = walk(connection, topology, |_| Action::Keep).await?;
    Ok(seen
        .into_iter()
        .map(|(view, _)| view)
        .filter(|view| filter.matches(view))
        .take(limit)
        .collect())
}

/// Replay the dead letters matching `filter` to the jobs exchange (or, with `dry_run`, only
/// say which would be). Returns the views of the replayed ones.
pub async fn replay(
    connection: &Connection,
    topology: &Topology,
    filter: &Filter,
    dry_run: bool,
) -> Result<Vec<DeadLetterView>, DlqError> {
    let seen = walk(connection, topology, |view| {
        match (filter.matches(view), dry_run) {
            (true, false) => Action::Replay,
            _ => Action::Keep,
        }
    })
    .await?;
    Ok(seen
        .into_iter()
        .filter(|(view, acted)| *acted || (dry_run && filter.matches(view)))
        .map(|(view, _)| view)
        .collect())
}

/// Delete dead letters that failed before `cutoff` (those with no known time are kept).
pub async fn purge(
    connection: &Connection,
    topology: &Topology,
    cutoff: DateTime<Utc>,
) -> Result<Vec<DeadLetterView>, DlqError> {
    let seen = walk(connection, topology, |view| match view.failed_at {
        Some(t) if t < cutoff => Action::Remove,
        _ => Action::Keep,
    })
    .await?;
    Ok(seen
        .into_iter()
        .filter(|(_, acted)| *acted)
        .map(|(view, _)| view)
        .collect())
}

/// A readable table of dead letters.
pub fn table(views: &[DeadLetterView]) -> String {
    let mut out = format!(
        "{:<28} {:<16} {:<26} {:<18} {:>8}  {:<24} {}\n",
        "JOB ID", "CHANNEL", "REASON", "CLASS", "ATTEMPTS", "FAILED AT", "ERROR"
    );
    for v in views {
        let mut error = v.error.clone().unwrap_or_default();
        if error.chars().count() > 60 {
            error = error.chars().take(59).collect::<String>() + "…";
        }
        out.push_str(&format!(
            "{:<28} {:<16} {:<26} {:<18} {:>8}  {:<24} {}\n",
            v.job_id.as_deref().unwrap_or("-"),
            v.channel.as_deref().unwrap_or("-"),
            v.reason,
            v.class.as_deref().unwrap_or("-"),
            v.attempts.map_or("-".into(), |a| a.to_string()),
            v.failed_at.map_or("-".into(), crate::outcome::timestamp),
            error,
        ));
    }
    out
}
