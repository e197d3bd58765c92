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
];
