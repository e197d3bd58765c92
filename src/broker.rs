//! RabbitMQ (SPEC §1, §3, §4): topology, the confirmed publisher, dead letters, the producer.
//!
//! Publishing is always `mandatory` with publisher confirms, and a returned message counts as
//! a failure even though the broker acks it: an outcome that reached no queue is not durable.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};

use crate::config::AmqpConfig;
use crate::inbound::InboundEvent;
use crate::job::{self, Priority};
use crate::outcome::Outcome;
use crate::retry::ErrorClass;

/// AMQP persistent delivery mode.
const PERSISTENT: u8 = 2;

/// Names of every exchange and queue, derived from one prefix so deployments and tests can
/// share a vhost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Direct exchange producers publish jobs to.
    pub jobs_exchange: String,
    /// Quorum queue of transactional jobs (routing key `send`).
    pub send_queue: String,
    /// Quorum queue of bulk jobs (routing key `bulk`).
    pub bulk_queue: String,
    /// Quorum queue of raw webhook receipts (routing key `receipt`), published before the
    /// listener answers 200 so a receipt survives any crash or Redis outage.
    pub webhooks_queue: String,
    /// Topic exchange of outcome events.
    pub outcomes_exchange: String,
    /// Topic exchange of inbound message events (routing key `<type>.<channel>`).
    pub inbound_exchange: String,
    /// Fanout exchange in front of the dead-letter queue; the work queues dead-letter into it.
    pub dead_exchange: String,
    /// Quorum queue of dead letters.
    pub dead_queue: String,
    /// Headers exchange in front of the delay queues (header `mensajero-delay-tier` picks one).
    pub delay_exchange: String,
    /// Delay queues: (TTL, queue name), shortest first.
    pub delay_queues: Vec<(Duration, String)>,
    /// Redeliveries before a poison message is dead-lettered.
    pub delivery_limit: u32,
    /// Replicas of each quorum queue when it is created (`x-quorum-initial-group-size`);
    /// `None`: RabbitMQ's default, every node of the cluster.
    pub quorum_initial_group_size: Option<u32>,
}

/// Routing key of transactional jobs.
pub const SEND_KEY: &str = "send";
/// Routing key of bulk jobs.
pub const BULK_KEY: &str = "bulk";
/// Routing key of webhook receipts (on the jobs exchange, so parked receipts come back
/// through the same delay queues as parked jobs).
pub const RECEIPT_KEY: &str = "receipt";

/// Dead-letter headers (SPEC §4).
pub mod headers {
    /// Why the message was dead-lettered (`invalid`, `unknown_channel`, `retries_exhausted`…).
    pub const REASON: &str = "x-mensajero-reason";
    /// SPEC §7 class of the failure.
    pub const ERROR_CLASS: &str = "x-mensajero-error-class";
    /// Attempts made.
    pub const ATTEMPTS: &str = "x-mensajero-attempts";
    /// When it failed (RFC 3339).
    pub const FAILED_AT: &str = "x-mensajero-failed-at";
    /// Human-readable detail (field path and rule for invalid jobs).
    pub const ERROR: &str = "x-mensajero-error";
    /// The job's id, when it could be read.
    pub const JOB_ID: &str = "x-mensajero-job-id";
    /// The job's channel, when it could be read.
    pub const CHANNEL: &str = "x-mensajero-channel";

    // What travels with a job between attempts (a parked job comes back with these), so no
    // worker's memory holds a job's progress.
    /// Attempts already made.
    pub const ATTEMPT: &str = "x-mensajero-attempt";
    /// When a worker first took the job (ms since the epoch): `max_age` counts from here.
    pub const FIRST_SEEN: &str = "x-mensajero-first-seen";
    /// Not to be processed before this instant (ms since the epoch).
    pub const NOT_BEFORE: &str = "x-mensajero-not-before";
    /// The channel the job is being sent through after a failover.
    pub const VIA: &str = "x-mensajero-via";
    /// Channels already tried and given up on (comma-separated).
    pub const TRIED: &str = "x-mensajero-tried";
    /// Set by `mensajero dlq replay`: a fresh start for a job that had failed.
    pub const REPLAY: &str = "x-mensajero-replay";
    /// Some attempt on the current channel may have reached the gateway.
    pub const MAYBE_SENT: &str = "x-mensajero-maybe-sent";
    /// The job's `queued` outcome is out: a job parked for a rate-limit slot does not
    /// announce itself again each time it comes back.
    pub const QUEUED: &str = "x-mensajero-queued";
    /// The job switched to its `fallback` template (the customer's window is closed).
    pub const FALLBACK: &str = "x-mensajero-fallback";
    /// Which delay queue a parked job goes to. Not `x-` prefixed: headers exchanges ignore
    /// such headers when matching bindings.
    pub const TIER: &str = "mensajero-delay-tier";
    /// Redeliveries so far, set by quorum queues.
    pub const DELIVERY_COUNT: &str = "x-delivery-count";
}

impl Topology {
    /// Names under `prefix` (`mensajero` gives `mensajero.jobs`, `mensajero.send`, …) with the
    /// default delay tiers.
    pub fn new(prefix: &str, delivery_limit: u32) -> Self {
        let tiers = [1, 5, 30, 120, 600, 1800, 3600, 14400].map(Duration::from_secs);
        Self::with_tiers(prefix, delivery_limit, &tiers)
    }

    /// Names under `prefix` with the given delay tiers.
    pub fn with_tiers(prefix: &str, delivery_limit: u32, tiers: &[Duration]) -> Self {
        let mut tiers = tiers.to_vec();
        tiers.sort();
        tiers.dedup();
        Self {
            delay_exchange: format!("{prefix}.delay"),
            delay_queues: tiers
                .into_iter()
                .map(|t| (t, format!("{prefix}.delay.{}", tier_name(t))))
                .collect(),
            jobs_exchange: format!("{prefix}.jobs"),
            send_queue: format!("{prefix}.send"),
            bulk_queue: format!("{prefix}.send.bulk"),
            webhooks_queue: format!("{prefix}.webhooks"),
            outcomes_exchange: format!("{prefix}.outcomes"),
            inbound_exchange: format!("{prefix}.inbound"),
            dead_exchange: format!("{prefix}.dead"),
            dead_queue: format!("{prefix}.dead"),
            delivery_limit,
            quorum_initial_group_size: None,
        }
    }

    /// From the `[amqp]` section.
    pub fn from_config(amqp: &AmqpConfig) -> Self {
        Self {
            quorum_initial_group_size: amqp.quorum_initial_group_size,
            ..Self::with_tiers(&amqp.prefix, amqp.delivery_limit, &amqp.delay_tiers)
        }
    }

    /// The delay queue for a wait: the longest tier that fits, else the shortest (a wait
    /// is then re-checked when the job comes back).
    pub fn tier_for(&self, wait: Duration) -> Duration {
        self.delay_queues
            .iter()
            .rev()
            .map(|(t, _)| *t)
            .find(|t| *t <= wait)
            .or_else(|| self.delay_queues.first().map(|(t, _)| *t))
            .unwrap_or(wait)
    }

    /// Declare everything, idempotently (same arguments every time).
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                self.jobs_exchange.as_str().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        for topic in [&self.outcomes_exchange, &self.inbound_exchange] {
            channel
                .exchange_declare(
                    topic.as_str().into(),
                    ExchangeKind::Topic,
                    durable,
                    FieldTable::default(),
                )
                .await?;
        }
        channel
            .exchange_declare(
                self.dead_exchange.as_str().into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await?;

        let queue = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let dead_args = self.quorum_args();
        channel
            .queue_declare(self.dead_queue.as_str().into(), queue, dead_args)
            .await?;
        channel
            .queue_bind(
                self.dead_queue.as_str().into(),
                self.dead_exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        channel
            .exchange_declare(
                self.delay_exchange.as_str().into(),
                ExchangeKind::Headers,
                durable,
                FieldTable::default(),
            )
            .await?;
        for (ttl, name) in &self.delay_queues {
            let mut args = self.dead_lettering_args(&self.jobs_exchange);
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(ttl.as_millis() as i64),
            );
            channel
                .queue_declare(name.as_str().into(), queue, args)
                .await?;
            let mut binding = FieldTable::default();
            binding.insert("x-match".into(), AMQPValue::LongString("all".into()));
            binding.insert(
                headers::TIER.into(),
                AMQPValue::LongString(tier_name(*ttl).into()),
            );
            channel
                .queue_bind(
                    name.as_str().into(),
                    self.delay_exchange.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    binding,
                )
                .await?;
        }

        for (name, key) in [
            (&self.send_queue, SEND_KEY),
            (&self.bulk_queue, BULK_KEY),
            (&self.webhooks_queue, RECEIPT_KEY),
            // Cancels share the transactional lane: they are few, must not wait behind a bulk
            // campaign they may be stopping, and a worker that takes jobs takes cancels too.
            (&self.send_queue, crate::cancel::CANCEL_KEY),
        ] {
            channel
                .queue_declare(name.as_str().into(), queue, self.work_queue_args())
                .await?;
            channel
                .queue_bind(
                    name.as_str().into(),
                    self.jobs_exchange.as_str().into(),
                    key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// Quorum work queue arguments: poison messages stop at the delivery limit and are
    /// dead-lettered at-least-once (which needs `reject-publish` overflow; with the default
    /// `drop-head` RabbitMQ silently falls back to at-most-once).
    fn work_queue_args(&self) -> FieldTable {
        let mut args = self.dead_lettering_args(&self.dead_exchange);
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(self.delivery_limit.into()),
        );
        args
    }

    /// A quorum queue that dead-letters into `exchange`, at least once (which needs
    /// `reject-publish`; with the default `drop-head` RabbitMQ silently falls back to
    /// at-most-once). The routing key is kept, so a delay queue hands a job back to the lane
    /// (`send`/`bulk`) it came from.
    fn dead_lettering_args(&self, exchange: &str) -> FieldTable {
        let mut args = self.quorum_args();
        let text = |s: &str| AMQPValue::LongString(s.into());
        args.insert("x-dead-letter-exchange".into(), text(exchange));
        args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        args.insert("x-overflow".into(), text("reject-publish"));
        args
    }

    /// A quorum queue's arguments, replicated over the cluster as configured.
    fn quorum_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        if let Some(size) = self.quorum_initial_group_size {
            args.insert(
                "x-quorum-initial-group-size".into(),
                AMQPValue::LongLongInt(size.into()),
            );
        }
        args
    }

    /// Delete everything this topology declared (tests and `topology --delete`). Goes on past
    /// a failure so one stuck object does not leave the rest behind; returns the first error.
    pub async fn delete(&self, channel: &Channel) -> lapin::Result<()> {
        let mut first_error = None;
        let queues = [
            &self.send_queue,
            &self.bulk_queue,
            &self.webhooks_queue,
            &self.dead_queue,
        ]
        .into_iter()
        .chain(self.delay_queues.iter().map(|(_, q)| q));
        for queue in queues {
            if let Err(e) = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
            {
                first_error.get_or_insert(e);
            }
        }
        for exchange in [
            &self.jobs_exchange,
            &self.outcomes_exchange,
            &self.inbound_exchange,
            &self.dead_exchange,
            &self.delay_exchange,
        ] {
            if let Err(e) = channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await
            {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Why a publish did not become durable.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The channel or connection failed.
    #[error("amqp: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker refused to take responsibility for the message.
    #[error("the broker nacked the publish to {0}")]
    Nacked(String),
    /// No queue was bound for the routing key (returned as unroutable).
    #[error("unroutable: no queue bound to {exchange} for {routing_key}")]
    Unroutable {
        /// Target exchange.
        exchange: String,
        /// Routing key used.
        routing_key: String,
    },
}

/// A channel in confirm mode whose every publish is mandatory and awaited.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    /// Put `channel` in confirm mode.
    pub async fn new(channel: Channel) -> lapin::Result<Self> {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self { channel })
    }

    /// The underlying channel.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Whether the channel can still publish (a soft error closes it for good).
    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }

    /// Publish persistently and wait until the broker has it (or says why not).
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        // Boxed: lapin's publish-and-confirm future is ~1.4 KiB, and without the box every
        // job task would be that much larger for its whole life, including the long wait on
        // the gateway (bench/RESULTS.md, "Where the memory of an in-flight job goes").
        let confirm = Box::pin(async {
            self.channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    body,
                    properties.with_delivery_mode(PERSISTENT),
                )
                .await?
                .await
        })
        .await?;
        let unroutable = || PublishError::Unroutable {
            exchange: exchange.to_string(),
            routing_key: routing_key.to_string(),
        };
        match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_)) => Err(unroutable()),
            Confirmation::Nack(_) => Err(PublishError::Nacked(exchange.to_string())),
        }
    }

    /// Publish an outcome event to the outcomes exchange.
    pub async fn outcome(
        &self,
        topology: &Topology,
        outcome: &Outcome,
    ) -> Result<(), PublishError> {
        let body = serde_json::to_vec(outcome).expect("outcomes always serialize");
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_message_id(outcome.event_id.as_str().into())
            .with_type(outcome.status.as_str().into())
            .with_timestamp(outcome.occurred_at.timestamp().max(0) as u64);
        self.publish(
            &topology.outcomes_exchange,
            &outcome.routing_key(),
            &body,
            properties,
        )
        .await
    }

    /// Publish an inbound message event (persistent, confirmed) on the inbound exchange.
    pub async fn inbound(
        &self,
        topology: &Topology,
        event: &InboundEvent,
    ) -> Result<(), PublishError> {
        let body = serde_json::to_vec(event).expect("inbound events always serialize");
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_message_id(event.event_id.as_str().into())
            .with_type(event.kind.as_str().into())
            .with_timestamp(Utc::now().timestamp().max(0) as u64);
        self.publish(
            &topology.inbound_exchange,
            &event.routing_key(),
            &body,
            properties,
        )
        .await
    }

    /// Publish a dead letter: the original body untouched, the reason in headers.
    pub async fn dead_letter(
        &self,
        topology: &Topology,
        original: &[u8],
        original_properties: &BasicProperties,
        letter: &DeadLetter<'_>,
    ) -> Result<(), PublishError> {
        let mut table = original_properties.headers().clone().unwrap_or_default();
        let text = |s: &str| AMQPValue::LongString(LongString::from(s));
        table.insert(headers::REASON.into(), text(letter.reason));
        table.insert(headers::ERROR_CLASS.into(), text(letter.class.as_str()));
        table.insert(
            headers::ATTEMPTS.into(),
            AMQPValue::LongLongInt(letter.attempts.into()),
        );
        table.insert(
            headers::FAILED_AT.into(),
            text(&crate::outcome::timestamp(Utc::now())),
        );
        table.insert(headers::ERROR.into(), text(letter.message));
        if let Some(id) = letter.job_id {
            table.insert(headers::JOB_ID.into(), text(id));
        }
        if let Some(channel) = letter.channel {
            table.insert(headers::CHANNEL.into(), text(channel));
        }
        let mut properties = BasicProperties::default().with_headers(table);
        if let Some(content_type) = original_properties.content_type() {
            properties = properties.with_content_type(content_type.clone());
        }
        if let Some(id) = original_properties.message_id() {
            properties = properties.with_message_id(id.clone());
        }
        self.publish(&topology.dead_exchange, letter.reason, original, properties)
            .await
    }
}

impl Publisher {
    /// Queue a raw receipt body for the receipt lane: the channel it came in on and the time
    /// it arrived (its age bounds the unknown-id retries) travel in headers, with `extra`.
    pub async fn receipt(
        &self,
        topology: &Topology,
        channel: &str,
        body: &[u8],
        mut extra: FieldTable,
    ) -> Result<(), PublishError> {
        extra.insert(
            headers::CHANNEL.into(),
            AMQPValue::LongString(channel.into()),
        );
        extra.insert(
            headers::FIRST_SEEN.into(),
            AMQPValue::LongLongInt(Utc::now().timestamp_millis()),
        );
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_headers(extra);
        self.publish(&topology.jobs_exchange, RECEIPT_KEY, body, properties)
            .await
    }

    /// Park a job in the delay queue for `wait` (see [`Topology::tier_for`]): the original
    /// body and properties, `carried` in the headers, routed back to `lane` when its TTL ends.
    pub async fn park(
        &self,
        topology: &Topology,
        lane: &str,
        body: &[u8],
        original_properties: &BasicProperties,
        carried: &Carried,
        wait: Duration,
    ) -> Result<Duration, PublishError> {
        let tier = topology.tier_for(wait);
        let mut table = carried.write(original_properties.headers().clone().unwrap_or_default());
        table.insert(
            headers::TIER.into(),
            AMQPValue::LongString(tier_name(tier).into()),
        );
        // A fresh set of properties: a producer's per-message `expiration` would race the
        // queue's TTL (and drop the job), so it is the one property not carried over.
        let mut properties = BasicProperties::default().with_headers(table);
        if let Some(v) = original_properties.content_type() {
            properties = properties.with_content_type(v.clone());
        }
        if let Some(v) = original_properties.message_id() {
            properties = properties.with_message_id(v.clone());
        }
        if let Some(v) = original_properties.correlation_id() {
            properties = properties.with_correlation_id(v.clone());
        }
        if let Some(v) = original_properties.app_id() {
            properties = properties.with_app_id(v.clone());
        }
        if let Some(v) = original_properties.timestamp() {
            // `ttl_seconds` counts from the producer's timestamp.
            properties = properties.with_timestamp(*v);
        }
        self.publish(&topology.delay_exchange, lane, body, properties)
            .await?;
        Ok(tier)
    }
}

/// A job's progress, carried in AMQP headers between attempts so that no worker's memory
/// holds it: a parked job comes back from its delay queue with these.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Carried {
    /// Attempts already made on the current channel.
    pub attempts: u32,
    /// When a worker first took the job.
    pub first_seen: Option<DateTime<Utc>>,
    /// Not to be processed before.
    pub not_before: Option<DateTime<Utc>>,
    /// The channel after a failover.
    pub via: Option<String>,
    /// Channels already given up on.
    pub tried: Vec<String>,
    /// A replay from the dead-letter queue.
    pub replay: bool,
    /// Some attempt on the current channel may have reached its gateway (no failover then).
    pub maybe_sent: bool,
    /// Its `queued` outcome was published.
    pub queued: bool,
    /// It switched to its `fallback` template; retries send that, not the message.
    pub fallback: bool,
    /// Redeliveries by the broker (quorum queues' `x-delivery-count`).
    pub delivery_count: u32,
    /// The message carries mensajero's progress headers: a copy mensajero made (parked, failed
    /// over), however little progress they record (a job parked for a rate-limit slot has no
    /// attempt yet).
    pub internal: bool,
}

impl Carried {
    /// Read from a delivery's headers (absent headers mean a fresh job).
    pub fn read(properties: &BasicProperties) -> Self {
        let Some(table) = properties.headers() else {
            return Self::default();
        };
        let get = |name: &str| table.inner().get(name);
        let number = |name: &str| get(name).and_then(amqp_number);
        let text = |name: &str| get(name).and_then(amqp_text);
        let time = |name: &str| {
            number(name)
                .and_then(|ms| i64::try_from(ms).ok())
                .and_then(DateTime::<Utc>::from_timestamp_millis)
        };
        Self {
            attempts: number(headers::ATTEMPT).unwrap_or(0).min(u32::MAX as u64) as u32,
            first_seen: time(headers::FIRST_SEEN),
            not_before: time(headers::NOT_BEFORE),
            via: text(headers::VIA).filter(|v| !v.is_empty()),
            tried: text(headers::TRIED)
                .map(|t| {
                    t.split(',')
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            replay: get(headers::REPLAY).is_some_and(truthy),
            maybe_sent: get(headers::MAYBE_SENT).is_some_and(truthy),
            queued: get(headers::QUEUED).is_some_and(truthy),
            fallback: get(headers::FALLBACK).is_some_and(truthy),
            delivery_count: number(headers::DELIVERY_COUNT)
                .unwrap_or(0)
                .min(u32::MAX as u64) as u32,
            // `write` always sets the attempt header; producers and `dlq replay` never do.
            internal: get(headers::ATTEMPT).is_some(),
        }
    }

    /// Whether this delivery is a copy mensajero itself made (parked or failed over), as
    /// opposed to a producer's publish.
    pub fn is_internal(&self) -> bool {
        self.internal || self.attempts > 0 || self.not_before.is_some() || self.via.is_some()
    }

    /// Write into `table`, replacing earlier values.
    pub fn write(&self, mut table: FieldTable) -> FieldTable {
        let ms = |t: DateTime<Utc>| AMQPValue::LongLongInt(t.timestamp_millis());
        table.insert(
            headers::ATTEMPT.into(),
            AMQPValue::LongLongInt(self.attempts.into()),
        );
        if let Some(t) = self.first_seen {
            table.insert(headers::FIRST_SEEN.into(), ms(t));
        }
        match self.not_before {
            Some(t) => table.insert(headers::NOT_BEFORE.into(), ms(t)),
            None => table.insert(headers::NOT_BEFORE.into(), AMQPValue::Void),
        };
        if let Some(via) = &self.via {
            table.insert(
                headers::VIA.into(),
                AMQPValue::LongString(via.as_str().into()),
            );
        }
        table.insert(
            headers::TRIED.into(),
            AMQPValue::LongString(self.tried.join(",").into()),
        );
        // A replay is a one-time fresh start; copies made afterwards are ordinary retries.
        table.insert(headers::REPLAY.into(), AMQPValue::Boolean(false));
        table.insert(
            headers::MAYBE_SENT.into(),
            AMQPValue::Boolean(self.maybe_sent),
        );
        table.insert(headers::QUEUED.into(), AMQPValue::Boolean(self.queued));
        table.insert(headers::FALLBACK.into(), AMQPValue::Boolean(self.fallback));
        table
    }
}

fn truthy(value: &AMQPValue) -> bool {
    matches!(value, AMQPValue::Boolean(true)) || amqp_text(value).as_deref() == Some("true")
}

fn amqp_number(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some((*n).into()),
        AMQPValue::ShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortUInt(n) => Some((*n).into()),
        AMQPValue::ShortShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortShortUInt(n) => Some((*n).into()),
        AMQPValue::Timestamp(n) => Some(*n),
        other => amqp_text(other).and_then(|t| t.parse().ok()),
    }
}

/// A header value as text, when it is a string.
pub(crate) fn amqp_text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// A tier's name in queue names and binding headers (`5s`, `2m`, `1h`).
pub fn tier_name(tier: Duration) -> String {
    humantime::format_duration(tier)
        .to_string()
        .replace(' ', "")
}

/// What a dead letter says about itself.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    /// Stable reason code.
    pub reason: &'a str,
    /// SPEC §7 class.
    pub class: ErrorClass,
    /// Attempts made.
    pub attempts: u32,
    /// Human-readable detail.
    pub message: &'a str,
    /// The job's id, when readable.
    pub job_id: Option<&'a str>,
    /// The job's channel, when readable.
    pub channel: Option<&'a str>,
}

/// Connect to the broker, naming the connection after this process for the management UI.
pub async fn connect(url: &str, name: &str) -> lapin::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url, properties).await
}

/// Connect to the first reachable of a cluster's `nodes`, trying them in order from `start`
/// (wrapping around); answers the connection and the index of the node that took it. The
/// error is the last node's.
pub async fn connect_any(
    nodes: &[&str],
    start: usize,
    name: &str,
) -> anyhow::Result<(Connection, usize)> {
    let mut last = None;
    for offset in 0..nodes.len().max(1) {
        let index = (start + offset) % nodes.len().max(1);
        let Some(url) = nodes.get(index) else { break };
        match connect(url, name).await {
            Ok(connection) => return Ok((connection, index)),
            Err(e) => {
                // The node's position only: its URL holds credentials.
                tracing::warn!(node = index, error = %e, "broker node unreachable; trying the next");
                last = Some(e);
            }
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("no broker node configured"), Into::into))
}

/// Why a job was not published by the [`Producer`].
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The job failed validation; it was not published.
    #[error("invalid job: {0}")]
    Invalid(#[from] job::Rejection),
    /// The broker did not take it.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Publishes jobs with confirms: the library's way in for Rust callers (`mensajero enqueue`
/// uses it too).
#[derive(Clone)]
pub struct Producer {
    publisher: Publisher,
    topology: Topology,
}

impl Producer {
    /// A producer on `connection` (declares the topology so the first publish is routable).
    pub async fn new(connection: &Connection, topology: Topology) -> lapin::Result<Self> {
        let channel = connection.create_channel().await?;
        topology.declare(&channel).await?;
        Ok(Self {
            publisher: Publisher::new(channel).await?,
            topology,
        })
    }

    /// Validate and publish one job body; returns the parsed job.
    pub async fn enqueue(&self, body: &[u8]) -> Result<job::Job, ProduceError> {
        let job = job::parse(body)?;
        self.publish_raw(body, job.priority).await?;
        Ok(job)
    }

    /// Publish a cancel message (routing key `cancel`) for a worker to apply. It answers
    /// nothing: [`crate::cancel::Canceller`] applies a cancel at once and says what it found.
    pub async fn cancel(&self, request: &crate::cancel::CancelRequest) -> Result<(), PublishError> {
        self.publish_keyed(&request.to_json(), crate::cancel::CANCEL_KEY)
            .await
    }

    /// Publish bytes as they are, unvalidated (replaying, testing bad input).
    pub async fn publish_raw(&self, body: &[u8], priority: Priority) -> Result<(), PublishError> {
        let key = match priority {
            Priority::Transactional => SEND_KEY,
            Priority::Bulk => BULK_KEY,
        };
        self.publish_keyed(body, key).await
    }

    /// Publish bytes on the jobs exchange under `key`, with confirms.
    pub async fn publish_keyed(&self, body: &[u8], key: &str) -> Result<(), PublishError> {
        let properties = BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_timestamp(Utc::now().timestamp().max(0) as u64);
        self.publisher
            .publish(&self.topology.jobs_exchange, key, body, properties)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_mensajero_made_is_recognised_however_little_progress_it_carries() {
        // A job parked for a rate-limit slot: no attempt yet, and its wait is over when it
        // is claimed again — only the headers say it is mensajero's own copy.
        let parked = Carried {
            first_seen: Some(Utc::now()),
            ..Carried::default()
        };
        let properties =
            BasicProperties::default().with_headers(parked.write(FieldTable::default()));
        let mut back = Carried::read(&properties);
        back.not_before = None;
        assert!(back.is_internal());
        assert!(!back.queued);
        let announced = Carried {
            queued: true,
            ..parked
        };
        let properties =
            BasicProperties::default().with_headers(announced.write(FieldTable::default()));
        assert!(Carried::read(&properties).queued);
        // A producer's publish (and a `dlq replay`, which strips these headers) is not.
        assert!(!Carried::read(&BasicProperties::default()).is_internal());
    }
}
