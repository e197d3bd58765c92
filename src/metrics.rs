//! Prometheus metrics (SPEC §9): the series a worker exports at `GET /metrics`.
//!
//! Label sets are bounded: channel, provider, lane, status, class, code, reason, result, queue
//! — never job ids, keys or phone numbers.

/// Every metric family the worker exports, as it appears in the exposition (counters with
/// their `_total` suffix; histograms by their base name, exported as `_bucket`, `_sum` and
/// `_count`). Dashboards and alert rules in `deploy/` may only use these (a test checks).
pub const NAMES: &[&str] = &[
    // Jobs taken from a work queue, by lane (`send`, `bulk`).
    "mensajero_jobs_consumed_total",
    // Outcome events published, by status and channel.
    "mensajero_outcomes_total",
    // Failed outcomes, by channel, class and code.
    "mensajero_failures_total",
    // Retries scheduled, by channel and delay step (`inline` or a delay tier such as `30s`).
    "mensajero_retries_total",
    // Jobs refused as duplicates, by channel.
    "mensajero_duplicates_total",
    // Cancel messages applied by this worker, by channel and result (`cancelled`,
    // `already_cancelled`, `too_late_sent`, `too_late_failed`, `too_late_in_flight`).
    "mensajero_cancels_total",
    // Gateway request latency, by provider and result (`ok` or the failure class).
    "mensajero_gateway_request_duration_seconds",
    // Gateway calls running now, by lane.
    "mensajero_in_flight",
    // Jobs that had to wait for a rate-limit slot, by channel.
    "mensajero_rate_limit_waits_total",
    // Dead letters published, by reason.
    "mensajero_dead_letters_total",
    // Webhook receipts, by provider and result (`accepted`, `unauthorized`, `too_large`,
    // `applied`, `duplicate`, `unknown`, `invalid`, …).
    "mensajero_receipts_total",
    // Seconds from a receipt's arrival at the listener to its outcome being published.
    "mensajero_receipt_lag_seconds",
    // Inbound message events published, by channel and type (`text`, `reply`, …,
    // `unsupported`).
    "mensajero_inbound_total",
    // Errors gateways reported in webhooks outside any message (Meta's value-level
    // `errors[]`), by provider and code.
    "mensajero_webhook_errors_total",
    // Status words in receipts that mensajero does not track (`deleted`, `played`, …), by
    // provider and status.
    "mensajero_receipt_statuses_ignored_total",
    // Broker sessions re-established after a failure.
    "mensajero_amqp_reconnects_total",
    // Redis operations that failed and were retried (each one waits for the reconnection).
    "mensajero_redis_errors_total",
    // 1 while a channel's gateway accepts our credentials and sender, 0 after an `auth` or
    // `channel` error until the next success.
    "mensajero_channel_healthy",
    // Ready messages in each of mensajero's queues (`send`, `bulk`, `webhooks`, `dead`), as
    // last seen by this worker (sampled every few seconds).
    "mensajero_queue_messages_ready",
    // Consumers attached to each of mensajero's queues, as last seen by this worker.
    "mensajero_queue_consumers",
    // 1 while this worker is connected to RabbitMQ and Redis.
    "mensajero_ready",
    // 1 while the broker blocks this worker's connection from publishing (a RabbitMQ memory
    // or disk alarm: `connection.blocked`), 0 otherwise.
    "mensajero_amqp_blocked",
];

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A label set: a few bounded (name, value) pairs.
type Labels = Vec<(&'static str, String)>;

/// Gateway latency buckets: 5 ms resolves a local gateway, 30 s the longest timeouts.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
];

/// Receipt lag buckets: from a few milliseconds (the normal case) to the unknown-id retry
/// window (a receipt that overtook its send).
const LAG_BUCKETS: [f64; 12] = [
    0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn lag_histogram() -> Histogram {
    Histogram::new(LAG_BUCKETS)
}

/// One worker's metrics. Cheap to clone (every family is shared behind an `Arc`).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    jobs_consumed: Family<Labels, Counter>,
    outcomes: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    duplicates: Family<Labels, Counter>,
    cancels: Family<Labels, Counter>,
    gateway_latency: Family<Labels, Histogram, fn() -> Histogram>,
    in_flight: Family<Labels, Gauge>,
    rate_limit_waits: Family<Labels, Counter>,
    dead_letters: Family<Labels, Counter>,
    receipts: Family<Labels, Counter>,
    receipt_lag: Family<Labels, Histogram, fn() -> Histogram>,
    inbound: Family<Labels, Counter>,
    webhook_errors: Family<Labels, Counter>,
    statuses_ignored: Family<Labels, Counter>,
    amqp_reconnects: Counter,
    redis_errors: Counter,
    channel_healthy: Family<Labels, Gauge>,
    queue_ready: Family<Labels, Gauge>,
    queue_consumers: Family<Labels, Gauge>,
    ready: Gauge,
    amqp_blocked: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of series, registered under the names in [`NAMES`].
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let metrics = Self {
            registry: Arc::default(),
            jobs_consumed: Family::default(),
            outcomes: Family::default(),
            failures: Family::default(),
            retries: Family::default(),
            duplicates: Family::default(),
            cancels: Family::default(),
            gateway_latency: Family::new_with_constructor(latency_histogram),
            in_flight: Family::default(),
            rate_limit_waits: Family::default(),
            dead_letters: Family::default(),
            receipts: Family::default(),
            receipt_lag: Family::new_with_constructor(lag_histogram),
            inbound: Family::default(),
            webhook_errors: Family::default(),
            statuses_ignored: Family::default(),
            amqp_reconnects: Counter::default(),
            redis_errors: Counter::default(),
            channel_healthy: Family::default(),
            queue_ready: Family::default(),
            queue_consumers: Family::default(),
            ready: Gauge::default(),
            amqp_blocked: Gauge::default(),
        };
        // Counters are registered without `_total`: the encoder appends it.
        let r = &mut registry;
        r.register(
            "mensajero_jobs_consumed",
            "Jobs taken from a work queue, by lane",
            metrics.jobs_consumed.clone(),
        );
        r.register(
            "mensajero_outcomes",
            "Outcome events published, by status and channel",
            metrics.outcomes.clone(),
        );
        r.register(
            "mensajero_failures",
            "Failed outcomes, by channel, class and code",
            metrics.failures.clone(),
        );
        r.register(
            "mensajero_retries",
            "Retries scheduled, by channel and delay step",
            metrics.retries.clone(),
        );
        r.register(
            "mensajero_duplicates",
            "Jobs refused as duplicates, by channel",
            metrics.duplicates.clone(),
        );
        r.register(
            "mensajero_cancels",
            "Cancel messages applied, by channel and result",
            metrics.cancels.clone(),
        );
        r.register(
            "mensajero_gateway_request_duration_seconds",
            "Gateway request latency, by provider and result",
            metrics.gateway_latency.clone(),
        );
        r.register(
            "mensajero_in_flight",
            "Gateway calls running now, by lane",
            metrics.in_flight.clone(),
        );
        r.register(
            "mensajero_rate_limit_waits",
            "Jobs that waited for a rate-limit slot, by channel",
            metrics.rate_limit_waits.clone(),
        );
        r.register(
            "mensajero_dead_letters",
            "Dead letters published, by reason",
            metrics.dead_letters.clone(),
        );
        r.register(
            "mensajero_receipts",
            "Webhook receipts, by provider and result",
            metrics.receipts.clone(),
        );
        r.register(
            "mensajero_inbound",
            "Inbound message events published, by channel and type",
            metrics.inbound.clone(),
        );
        r.register(
            "mensajero_webhook_errors",
            "Errors gateways reported in webhooks outside any message, by provider and code",
            metrics.webhook_errors.clone(),
        );
        r.register(
            "mensajero_receipt_statuses_ignored",
            "Receipt status words mensajero does not track, by provider and status",
            metrics.statuses_ignored.clone(),
        );
        r.register(
            "mensajero_receipt_lag_seconds",
            "Seconds from a receipt's arrival to its outcome being published",
            metrics.receipt_lag.clone(),
        );
        r.register(
            "mensajero_amqp_reconnects",
            "Broker sessions re-established after a failure",
            metrics.amqp_reconnects.clone(),
        );
        r.register(
            "mensajero_redis_errors",
            "Redis operations that failed and were retried",
            metrics.redis_errors.clone(),
        );
        r.register(
            "mensajero_channel_healthy",
            "1 while a channel's gateway accepts our credentials and sender",
            metrics.channel_healthy.clone(),
        );
        r.register(
            "mensajero_queue_messages_ready",
            "Ready messages in mensajero's queues, as last sampled by this worker",
            metrics.queue_ready.clone(),
        );
        r.register(
            "mensajero_queue_consumers",
            "Consumers on mensajero's queues, as last sampled by this worker",
            metrics.queue_consumers.clone(),
        );
        r.register(
            "mensajero_ready",
            "1 while this worker is connected to RabbitMQ and Redis",
            metrics.ready.clone(),
        );
        r.register(
            "mensajero_amqp_blocked",
            "1 while the broker blocks this worker's connection from publishing (resource alarm)",
            metrics.amqp_blocked.clone(),
        );
        Self {
            registry: Arc::new(registry),
            ..metrics
        }
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    /// A job was taken from `lane`'s queue.
    pub fn job_consumed(&self, lane: &str) {
        self.jobs_consumed
            .get_or_create(&vec![("lane", lane.to_string())])
            .inc();
    }

    /// An outcome was published.
    pub fn outcome(&self, status: &str, channel: &str) {
        self.outcomes
            .get_or_create(&vec![
                ("status", status.to_string()),
                ("channel", channel.to_string()),
            ])
            .inc();
    }

    /// A `failed` outcome was published.
    pub fn failure(&self, channel: &str, class: &str, code: &str) {
        self.failures
            .get_or_create(&vec![
                ("channel", channel.to_string()),
                ("class", class.to_string()),
                ("code", code.to_string()),
            ])
            .inc();
    }

    /// A retry was scheduled after `step` (`inline` or a delay tier name).
    pub fn retry(&self, channel: &str, step: &str) {
        self.retries
            .get_or_create(&vec![
                ("channel", channel.to_string()),
                ("step", step.to_string()),
            ])
            .inc();
    }

    /// A job was refused as a duplicate.
    pub fn duplicate(&self, channel: &str) {
        self.duplicates
            .get_or_create(&vec![("channel", channel.to_string())])
            .inc();
    }

    /// A cancel message was applied and found `result`.
    pub fn cancel(&self, channel: &str, result: &str) {
        self.cancels
            .get_or_create(&vec![
                ("channel", channel.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
    }

    /// A gateway request took `elapsed` and ended as `result` (`ok` or a failure class).
    pub fn gateway_request(&self, provider: &str, result: &str, elapsed: Duration) {
        self.gateway_latency
            .get_or_create(&vec![
                ("provider", provider.to_string()),
                ("result", result.to_string()),
            ])
            .observe(elapsed.as_secs_f64());
    }

    /// The in-flight gauge of `lane`.
    pub fn in_flight(&self, lane: &str) -> Gauge {
        self.in_flight
            .get_or_create(&vec![("lane", lane.to_string())])
            .clone()
    }

    /// A job waited for a rate-limit slot.
    pub fn rate_limit_wait(&self, channel: &str) {
        self.rate_limit_waits
            .get_or_create(&vec![("channel", channel.to_string())])
            .inc();
    }

    /// A dead letter was published.
    pub fn dead_letter(&self, reason: &str) {
        self.dead_letters
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    /// A receipt was seen by the listener or the consumer, ending as `result`.
    pub fn receipt(&self, provider: &str, result: &str) {
        self.receipts
            .get_or_create(&vec![
                ("provider", provider.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
    }

    /// An inbound message event of `kind` was published for `channel`.
    pub fn inbound(&self, channel: &str, kind: &str) {
        self.inbound
            .get_or_create(&vec![
                ("channel", channel.to_string()),
                ("type", kind.to_string()),
            ])
            .inc();
    }

    /// A gateway reported an error outside any message.
    pub fn webhook_error(&self, provider: &str, code: &str) {
        self.webhook_errors
            .get_or_create(&vec![
                ("provider", provider.to_string()),
                ("code", code.to_string()),
            ])
            .inc();
    }

    /// A receipt carried a status word mensajero does not track.
    pub fn status_ignored(&self, provider: &str, status: &str) {
        self.statuses_ignored
            .get_or_create(&vec![
                ("provider", provider.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    /// A receipt's outcome was published `lag` after the listener took it.
    pub fn receipt_lag(&self, provider: &str, lag: Duration) {
        self.receipt_lag
            .get_or_create(&vec![("provider", provider.to_string())])
            .observe(lag.as_secs_f64());
    }

    /// A broker session was re-established.
    pub fn amqp_reconnect(&self) {
        self.amqp_reconnects.inc();
    }

    /// A Redis operation failed (and will be retried).
    pub fn redis_error(&self) {
        self.redis_errors.inc();
    }

    /// Set a channel's health: false after `auth`/`channel` errors, true after a success.
    pub fn channel_health(&self, channel: &str, healthy: bool) {
        self.channel_healthy
            .get_or_create(&vec![("channel", channel.to_string())])
            .set(i64::from(healthy));
    }

    /// Record a queue's sampled depth and consumer count.
    pub fn queue_sample(&self, queue: &str, ready: u32, consumers: u32) {
        let labels = vec![("queue", queue.to_string())];
        self.queue_ready
            .get_or_create(&labels)
            .set(i64::from(ready));
        self.queue_consumers
            .get_or_create(&labels)
            .set(i64::from(consumers));
    }

    /// Set whether this worker is connected to both RabbitMQ and Redis.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Create, at 0, every series whose labels are known at start-up, so a fresh worker's
    /// dashboards show 0 instead of "no data" and alert expressions find their series.
    /// Labels that only events can tell (a gateway's error code) start at the empty value.
    pub fn prime(&self, known: &Known<'_>) {
        let label = |name: &'static str, value: &str| (name, value.to_string());
        for lane in LANES {
            let _ = self.jobs_consumed.get_or_create(&vec![label("lane", lane)]);
            let _ = self.in_flight.get_or_create(&vec![label("lane", lane)]);
        }
        for reason in DEAD_LETTER_REASONS {
            let _ = self
                .dead_letters
                .get_or_create(&vec![label("reason", reason)]);
        }
        for &(channel, _) in known.channels {
            for status in STATUSES {
                let _ = self
                    .outcomes
                    .get_or_create(&vec![label("status", status), label("channel", channel)]);
            }
            for class in known.classes {
                let _ = self.failures.get_or_create(&vec![
                    label("channel", channel),
                    label("class", class),
                    label("code", ""),
                ]);
            }
            for step in std::iter::once("inline").chain(known.tiers.iter().map(String::as_str)) {
                let _ = self
                    .retries
                    .get_or_create(&vec![label("channel", channel), label("step", step)]);
            }
            let _ = self
                .duplicates
                .get_or_create(&vec![label("channel", channel)]);
            let _ = self
                .rate_limit_waits
                .get_or_create(&vec![label("channel", channel)]);
            for kind in crate::inbound::InboundType::ALL {
                let _ = self.inbound.get_or_create(&vec![
                    label("channel", channel),
                    label("type", kind.as_str()),
                ]);
            }
            for result in CANCEL_RESULTS {
                let _ = self
                    .cancels
                    .get_or_create(&vec![label("channel", channel), label("result", result)]);
            }
            // No failure seen yet: healthy until the gateway says otherwise.
            self.channel_health(channel, true);
        }
        let mut providers: Vec<&str> = known.channels.iter().map(|&(_, p)| p).collect();
        providers.sort_unstable();
        providers.dedup();
        for provider in providers {
            let _ = self
                .gateway_latency
                .get_or_create(&vec![label("provider", provider), label("result", "ok")]);
            let _ = self
                .receipt_lag
                .get_or_create(&vec![label("provider", provider)]);
            let _ = self
                .webhook_errors
                .get_or_create(&vec![label("provider", provider), label("code", "")]);
            let _ = self
                .statuses_ignored
                .get_or_create(&vec![label("provider", provider), label("status", "")]);
            for result in RECEIPT_RESULTS {
                let _ = self
                    .receipts
                    .get_or_create(&vec![label("provider", provider), label("result", result)]);
            }
        }
    }

    /// Set whether the broker blocks this worker's connection (`connection.blocked`).
    pub fn set_amqp_blocked(&self, blocked: bool) {
        self.amqp_blocked.set(i64::from(blocked));
    }
}

/// The label values a worker knows at start-up (see [`Metrics::prime`]).
pub struct Known<'a> {
    /// Configured channels and the provider behind each.
    pub channels: &'a [(&'a str, &'a str)],
    /// Failure classes an outcome can carry.
    pub classes: &'a [&'a str],
    /// Delay tiers a retry can be parked in, by name (`30s`, `5m`, …).
    pub tiers: &'a [String],
}

/// The lanes jobs are consumed in.
const LANES: [&str; 2] = ["send", "bulk"];

/// Outcome statuses (SPEC §3).
const STATUSES: [&str; 5] = ["queued", "sent", "delivered", "read", "failed"];

/// Dead-letter reasons mensajero itself assigns (a gateway's own codes come on top).
const DEAD_LETTER_REASONS: [&str; 14] = [
    "oversize",
    "malformed",
    "unknown_field",
    "missing_field",
    "invalid_field",
    "invalid_phone",
    "unknown_channel",
    "unsupported_message_type",
    "expired",
    "ambiguous_send",
    "invalid_receipt",
    "unknown_message",
    "invalid_cancel",
    "inbound_unroutable",
];

/// What a cancel message can find (`dedupe::CancelAnswer::as_str`).
const CANCEL_RESULTS: [&str; 5] = [
    "cancelled",
    "already_cancelled",
    "too_late_sent",
    "too_late_failed",
    "too_late_in_flight",
];

/// What becomes of a webhook receipt: at the listener, then at the receipt consumer.
const RECEIPT_RESULTS: [&str; 14] = [
    "accepted",
    "probe",
    "unauthorized",
    "too_large",
    "timeout",
    "bad_request",
    "unavailable",
    "applied",
    "duplicate",
    "unknown",
    "unknown_dropped",
    "invalid",
    "polled",
    "poll_failed",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exported_family_is_named_in_names_and_back() {
        let metrics = Metrics::new();
        // Touch every family so each appears in the exposition.
        metrics.job_consumed("send");
        metrics.outcome("sent", "c");
        metrics.failure("c", "invalid", "x");
        metrics.retry("c", "5s");
        metrics.duplicate("c");
        metrics.gateway_request("waspy", "ok", Duration::from_millis(7));
        metrics.in_flight("send").inc();
        metrics.rate_limit_wait("c");
        metrics.dead_letter("invalid");
        metrics.receipt("meta", "applied");
        metrics.receipt_lag("meta", Duration::from_millis(3));
        metrics.cancel("c", "cancelled");
        metrics.inbound("c", "reply");
        metrics.webhook_error("meta", "0");
        metrics.status_ignored("meta", "deleted");
        metrics.amqp_reconnect();
        metrics.redis_error();
        metrics.channel_health("c", true);
        metrics.queue_sample("send", 3, 1);
        metrics.set_ready(true);
        metrics.set_amqp_blocked(true);
        let text = metrics.render();
        let mut exported: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let name = l.split(['{', ' ']).next().unwrap_or_default();
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|_| name.contains("_seconds"))
                    .unwrap_or(name)
                    .to_string()
            })
            .collect();
        exported.sort();
        exported.dedup();
        let mut names: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
        names.sort();
        assert_eq!(exported, names, "exposition:\n{text}");
        assert!(text.contains("mensajero_outcomes_total{status=\"sent\",channel=\"c\"} 1"));
        assert!(text.contains("le=\"0.005\""));
        assert!(text.contains("le=\"30.0\""));
    }
}
