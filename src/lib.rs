//! mensajero: a durable outbound WhatsApp message queue worker.
//!
//! Upstream systems publish send jobs to RabbitMQ; workers validate and deduplicate them,
//! send them through the gateway their channel names, and publish every status transition
//! to an outcomes exchange. `../shared/SPEC.md` (in the repository: README.md) is the contract.
//!
//! # Layout
//!
//! Data flows one way: broker → job → dedupe → ratelimit → gateway → outcome → broker. No module
//! reaches back up.
//!
//! - [`config`] owns configuration: built-in defaults, file and environment overlays, every
//!   problem reported at once, secrets only by environment reference.
//! - [`job`] owns the input contract: the job envelope and the canonical message (Meta's
//!   message object), validation with field paths, E.164 normalisation, the JSON Schema.
//! - [`outcome`] owns the output contract: outcome events, the status order, stable event ids.
//! - [`retry`] owns failure classification (SPEC §7) and retry schedules.
//! - [`broker`] owns RabbitMQ: topology, the confirmed + mandatory publisher, dead letters,
//!   and the [`broker::Producer`] that upstream Rust code uses to enqueue jobs.
//! - [`cancel`] owns cancelling a job before it is sent: the cancel message producers publish
//!   (routing key `cancel`), and the [`cancel::Canceller`] the CLI and Rust callers use, which
//!   applies the dedupe `CANCEL` transition and answers what it found.
//! - [`dlq`] owns the operator tools over the dead-letter queue: list, replay, purge.
//! - [`http`] owns the listener: `/healthz`, `/readyz`, `/metrics`, and `/webhooks/{channel}`,
//!   which authenticates a receipt and makes it durable in the webhooks queue before answering.
//! - [`store`] owns what the Redis-backed stores share: their error, the clock their scripts
//!   read, argument conversions. The three stores below depend on it, never on each other (the
//!   dedupe claim borrows the rate limiter's booking, to admit a job in one round trip).
//! - [`dedupe`] owns the Redis state machine per (channel, idempotency key): `in_flight` with a
//!   lease, then `sent` / `failed` for the channel's window, or `cancelled` by an operator.
//! - [`ratelimit`] owns the per-channel GCRA and per-recipient spacing shared by all replicas
//!   through Redis: one script, one round trip per job, a booked send time rather than a yes/no.
//! - [`gateways`] owns the gateways, one folder each (`gateways/<name>/`): the send adapter
//!   and its error table behind the [`gateways::Adapter`] seam (canonical job → HTTP request,
//!   HTTP response → classified result), the webhook format of its status receipts behind
//!   [`gateways::WebhookFormat`] (signature check, parser, and the renderer the mock uses),
//!   and the mock gateway's routes for its API, tied together by its [`gateways::Gateway`],
//!   which says what it can do. A registry maps the provider name to it; shared code asks a
//!   gateway's capabilities and never names one. `gateways/simulator/` is the mock gateway's
//!   shared core. Adding a sixth gateway is one folder plus one registry line (and its name
//!   in [`config::ProviderKind`]).
//! - [`tracking`] owns what happens after `sent`: the Redis record that maps a provider message
//!   id to its job, and the status order receipts are applied in.
//! - [`metrics`] owns the Prometheus series served at `GET /metrics`.
//! - [`worker`] owns the pipeline that ties them together: consuming, bounded concurrency,
//!   the per-job state machine, acking only after outcomes are confirmed, graceful shutdown.
//!   It decides, then does: `worker/policy.rs` holds every rule of what happens to a job
//!   (start, admit, retry, fail over, give up, expire) as pure functions; `worker/job.rs`
//!   carries the decisions out against RabbitMQ, Redis and the gateway.

pub mod broker;
pub mod cancel;
pub mod config;
pub mod conversation;
pub mod dedupe;
pub mod dlq;
pub mod gateways;
pub mod http;
pub mod inbound;
pub mod job;
pub mod metrics;
pub mod outcome;
pub mod ratelimit;
pub mod retry;
pub mod store;
pub mod tracking;
pub mod worker;
