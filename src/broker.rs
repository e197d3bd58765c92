//! RabbitMQ (SPEC §1, §3, §4): topology, the confirmed publisher, dead letters, the producer.
//!
//! Publishing is always `mandatory` with publisher confirms, and a returned message counts as
//! a failure even though the broker acks it: an outcome that reached no queue is not durable.

use chrono::Utc;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};

use crate::config::AmqpConfig;
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
    /// Topic exchange of outcome events.
    pub outcomes_exchange: String,
    /// Fanout exchange in front of the dead-letter queue; the work queues dead-letter into it.
    pub dead_exchange: String,
    /// Quorum queue of dead letters.
    pub dead_queue: String,
    /// Redeliveries before a poison message is dead-lettered.
    pub delivery_limit: u32,
}

/// Routing key of transactional jobs.
pub const SEND_KEY: &str = "send";
/// Routing key of bulk jobs.
pub const BULK_KEY: &str = "bulk";

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
}

impl Topology {
    /// Names under `prefix` (`mensajero` gives `mensajero.jobs`, `mensajero.send`, …).
    pub fn new(prefix: &str, delivery_limit: u32) -> Self {
        Self {
            jobs_exchange: format!("{prefix}.jobs"),
            send_queue: format!("{prefix}.send"),
            bulk_queue: format!("{prefix}.send.bulk"),
            outcomes_exchange: format!("{prefix}.outcomes"),
            dead_exchange: format!("{prefix}.dead"),
            dead_queue: format!("{prefix}.dead"),
            delivery_limit,
        }
    }

    /// From the `[amqp]` section.
    pub fn from_config(amqp: &AmqpConfig) -> Self {
        Self::new(&amqp.prefix, amqp.delivery_limit)
    }

    /// The work queues, transactional first.
    pub fn work_queues(&self) -> [&str; 2] {
        [&self.send_queue, &self.bulk_queue]
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
        channel
            .exchange_declare(
                self.outcomes_exchange.as_str().into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await?;
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
        let mut dead_args = FieldTable::default();
        dead_args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
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

        for (name, key) in [(&self.send_queue, SEND_KEY), (&self.bulk_queue, BULK_KEY)] {
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
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(self.delivery_limit.into()),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.dead_exchange.as_str().into()),
        );
        args.insert(
            "x-dead-letter-strategy".into(),
            AMQPValue::LongString("at-least-once".into()),
        );
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        args
    }

    /// Delete everything this topology declared (tests and `topology --delete`).
    pub async fn delete(&self, channel: &Channel) -> lapin::Result<()> {
        for queue in [&self.send_queue, &self.bulk_queue, &self.dead_queue] {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        for exchange in [
            &self.jobs_exchange,
            &self.outcomes_exchange,
            &self.dead_exchange,
        ] {
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
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

    /// Publish persistently and wait until the broker has it (or says why not).
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        let confirm = self
            .channel
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

    /// Publish bytes as they are, unvalidated (replaying, testing bad input).
    pub async fn publish_raw(&self, body: &[u8], priority: Priority) -> Result<(), PublishError> {
        let key = match priority {
            Priority::Transactional => SEND_KEY,
            Priority::Bulk => BULK_KEY,
        };
        let properties = BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_timestamp(Utc::now().timestamp().max(0) as u64);
        self.publisher
            .publish(&self.topology.jobs_exchange, key, body, properties)
            .await
    }
}
