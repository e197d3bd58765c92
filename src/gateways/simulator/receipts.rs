//! Status receipts and customer replies the simulator sends back after a send, like a real
//! gateway's webhooks.
//!
//! After a successful (not replayed) send the simulator POSTs `delivered` after
//! `delivered_after` and `read` after `read_after` (each optional) to `receipts_url`, in the
//! webhook format of the API that was called
//! ([`WebhookFormat::render`](crate::gateways::WebhookFormat::render)) and signed with the
//! webhook secret ([`WebhookFormat::sign`](crate::gateways::WebhookFormat::sign), the URL
//! being `receipts_url`). A send chosen for a reply also gets its customer's answer after
//! `reply_after`, the same way ([`WebhookFormat::render_inbound`](
//! crate::gateways::WebhookFormat::render_inbound)). Each send's webhooks run on their own
//! task, so they never hold up the send's answer; a failed POST is retried after
//! [`RETRY_DELAYS`] and then logged. At most [`MAX_PENDING`] sends have webhooks waiting:
//! past that, new ones are dropped with a warning rather than growing memory without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Semaphore;

use super::ReceiptsFor;
use crate::config::{MockOptions, Secret};
use crate::gateways::gateway;
use crate::gateways::webhook::{Inbound, Receipt};
use crate::inbound::{Content, Reply, ReplyKind, Text};
use crate::outcome::Status;

/// Most sends whose receipts may be waiting or in flight at once: a load test of millions of
/// sends with a long `read_after` must not hold millions of timers.
pub const MAX_PENDING: usize = 10_000;

/// Waits before each retry of a failed POST: doubling, like a gateway's webhook retry but on a
/// simulator's time scale — about two minutes in all, so receipts outlast a listener's restart
/// or a broker outage behind it (a real gateway retries for hours).
pub const RETRY_DELAYS: [Duration; 8] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(30),
    Duration::from_secs(60),
];

/// How long one receipt POST may take before it counts as failed.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// One accepted send, as its receipts and reply must name it.
#[derive(Debug, Clone)]
pub struct SentMessage {
    /// The id the send answered with, by which the receiver correlates.
    pub provider_message_id: String,
    /// The webhook format and what the gateway echoes of the request.
    pub receipts: ReceiptsFor,
    /// Whether its customer answers it (one in `reply_every`).
    pub reply: bool,
}

/// Webhook counters, read into [`super::Stats`].
#[derive(Debug, Default)]
pub struct Counters {
    /// Receipts the receiver answered 2xx.
    pub sent: AtomicU64,
    /// Receipts given up on after every retry.
    pub failed: AtomicU64,
    /// Sends whose webhooks were dropped because [`MAX_PENDING`] were waiting.
    pub dropped: AtomicU64,
    /// Replies the receiver answered 2xx.
    pub replies_sent: AtomicU64,
    /// Replies given up on after every retry.
    pub replies_failed: AtomicU64,
    /// Replies the called API's webhook format cannot express.
    pub replies_unrenderable: AtomicU64,
}

/// One webhook of a sent message's story.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// A status receipt.
    Receipt(Status),
    /// The customer's reply, for the messages chosen for one.
    Reply,
}

impl Step {
    fn applies_to(self, message: &SentMessage) -> bool {
        matches!(self, Self::Receipt(_)) || message.reply
    }
}

/// Sends the receipts and replies `MockOptions` ask for.
pub struct ReceiptSender {
    url: String,
    secret: Option<Secret>,
    /// `(webhook, delay after the send)`, earliest first.
    steps: Vec<(Step, Duration)>,
    client: reqwest::Client,
    pending: Arc<Semaphore>,
    counters: Arc<Counters>,
}

impl ReceiptSender {
    /// A sender for `options`, or `None` when they ask for no webhooks (no URL, or no delay).
    pub fn new(
        options: &MockOptions,
        secret: Option<Secret>,
        counters: Arc<Counters>,
    ) -> Option<Self> {
        let url = options.receipts_url.clone()?;
        let mut steps: Vec<(Step, Duration)> = [
            (Step::Receipt(Status::Delivered), options.delivered_after),
            (Step::Receipt(Status::Read), options.read_after),
            (Step::Reply, options.reply_after),
        ]
        .into_iter()
        .filter_map(|(step, after)| Some((step, after?)))
        .collect();
        if steps.is_empty() {
            tracing::warn!(
                "mock gateway: receipts_url is set but none of delivered_after, read_after, reply_after; no webhooks will be sent"
            );
            return None;
        }
        steps.sort_by_key(|(_, after)| *after);
        if secret.is_none() {
            tracing::warn!(
                "mock gateway: no webhook secret; receipts go out unsigned and a mensajero listener will refuse them"
            );
        }
        let client = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            .user_agent(concat!("mensajero-mock/", env!("CARGO_PKG_VERSION")))
            .build()
            .ok()?;
        Some(Self {
            url,
            secret,
            steps,
            client,
            pending: Arc::new(Semaphore::new(MAX_PENDING)),
            counters,
        })
    }

    /// Schedule `message`'s receipts and reply on their own task; never waits.
    pub fn schedule(self: &Arc<Self>, message: SentMessage) {
        if !self.steps.iter().any(|(step, _)| step.applies_to(&message)) {
            return;
        }
        // Acquired before spawning, so the bound holds exactly.
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                provider_message_id = %message.provider_message_id,
                limit = MAX_PENDING,
                "mock gateway: too many receipts pending; dropping this message's receipts"
            );
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            for (step, after) in &this.steps {
                if step.applies_to(&message) {
                    tokio::time::sleep_until(start + *after).await;
                    this.deliver(&message, *step).await;
                }
            }
            drop(permit);
        });
    }

    /// POST one webhook, retrying after each of [`RETRY_DELAYS`].
    async fn deliver(&self, message: &SentMessage, step: Step) {
        let format = gateway(message.receipts.provider).webhook();
        let counters = &self.counters;
        let (body, sent, failed) = match step {
            Step::Receipt(status) => (
                format.render(&receipt(message, status)),
                &counters.sent,
                &counters.failed,
            ),
            Step::Reply => match format.render_inbound(&reply(message)) {
                Some(body) => (body, &counters.replies_sent, &counters.replies_failed),
                None => {
                    counters
                        .replies_unrenderable
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        provider = message.receipts.provider.as_str(),
                        "mock gateway: this API documents no inbound format; no reply sent"
                    );
                    return;
                }
            },
        };
        let mut last_error = String::new();
        for attempt in 0..=RETRY_DELAYS.len() {
            if attempt > 0 {
                tokio::time::sleep(RETRY_DELAYS[attempt - 1]).await;
            }
            // Signed per attempt: seven.io's signature carries a fresh timestamp and nonce.
            let mut request = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(secret) = &self.secret {
                let headers = format.sign(secret, "POST", &self.url, &body, Utc::now());
                for (name, value) in headers {
                    request = request.header(name, value);
                }
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    sent.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(response) => last_error = format!("HTTP {}", response.status().as_u16()),
                // Without the URL: it may carry a secret in its query (Waspy's `?secret=`).
                Err(e) => last_error = e.without_url().to_string(),
            }
        }
        failed.fetch_add(1, Ordering::Relaxed);
        let what = match step {
            Step::Receipt(status) => status.as_str(),
            Step::Reply => "reply",
        };
        tracing::warn!(
            provider_message_id = %message.provider_message_id,
            webhook = what,
            attempts = RETRY_DELAYS.len() + 1,
            error = %last_error,
            "mock gateway: webhook not accepted by the receiver; giving up"
        );
    }
}

/// `message`'s `status` receipt, as of now.
fn receipt(message: &SentMessage, status: Status) -> Receipt {
    Receipt {
        provider_message_id: message.provider_message_id.clone(),
        status,
        job_id: message.receipts.job_id.clone(),
        error: None,
        occurred_at: Some(Utc::now()),
        sender: None,
    }
}

/// The customer's answer to `message`, written now: the first reply button pressed when it
/// offered some, else a thank-you. Its id derives from the sent one, so every retry of the
/// POST is the same message to the receiver.
fn reply(message: &SentMessage) -> Inbound {
    let content = match &message.receipts.button {
        Some(button) => Content::Reply(Reply {
            kind: ReplyKind::Button,
            id: Some(button.id.clone()),
            title: Some(button.title.clone()),
            description: None,
            payload: None,
        }),
        None => Content::Text(Text {
            body: "Gracias".into(),
        }),
    };
    Inbound {
        provider_message_id: format!("reply-{}", message.provider_message_id),
        from: message.receipts.recipient.clone(),
        user_id: None,
        profile_name: None,
        timestamp: Some(Utc::now()),
        content,
        context_id: Some(message.provider_message_id.clone()),
        sender: None,
        raw: serde_json::Value::Null,
    }
}
