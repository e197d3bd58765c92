//! The `mock` provider: the simulator ([`super::simulator`]) called in process, no HTTP, no
//! key. It stands for Waspy's API: Waspy's send path is what its script rules match, Waspy's
//! error table classifies its scripted errors and the codes of its receipts, and its receipts
//! are in Waspy's webhook format. Its customers' replies are in a shape of its own
//! (`webhook.rs`), since Waspy documents none that carries what they answer.
//!
//! A channel with `[channels.<name>.mock] gateway_url` sends to a `mensajero mock-gateway`
//! instead (`remote.rs`), through Waspy's API under `/mock` (`simulator.rs`), so several
//! workers share one simulator as they would a real gateway; its webhooks are the mock's all
//! the same. The registry lists no simulator routes for it: the simulator's router adds these.

pub mod remote;
pub mod simulator;
pub mod webhook;

use axum::Router;
use serde_json::Value;

use super::simulator::{Call, Decision, MockCore, ReceiptsFor, injected};
use super::{
    Accepted, Capabilities, ChannelGateway, ChannelSetup, Gateway, HttpGateway, SendContext,
    SendResult, WebhookFormat, waspy,
};
use crate::config::{MockOptions, ProviderKind, Secret};
use crate::job::Job;
use crate::retry::ErrorClass;

/// The in-process simulator as a gateway.
pub struct MockGateway;

impl Gateway for MockGateway {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Mock
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // The simulator answers a repeated key with the original id, as Waspy does.
            idempotency: true,
            needs_sender: false,
            polling: false,
            remote: false,
        }
    }

    fn connect(&self, setup: ChannelSetup<'_>) -> anyhow::Result<ChannelGateway> {
        let config = setup.config;
        if let Some(url) = &config.mock.gateway_url {
            // The simulator only checks that Waspy's sender and key are there.
            let sender = config.sender.clone().unwrap_or_else(|| "mock".into());
            let api_key = setup.api_key.unwrap_or_else(|| Secret::new("mock"));
            let adapter = Box::new(remote::Remote::new(sender, api_key));
            return Ok(ChannelGateway::Http(HttpGateway::new(
                adapter,
                url,
                config.timeout,
            )?));
        }
        Ok(ChannelGateway::InProcess(InProcess::new(
            config.mock.clone(),
            setup.webhook_secret,
        )))
    }

    /// Its receipts are in Waspy's format, its customers' messages in its own.
    fn webhook(&self) -> &'static dyn WebhookFormat {
        &webhook::Format
    }

    fn simulator(&self) -> Option<Router<MockCore>> {
        None
    }
}

/// The `mock` provider: the simulator called directly, no HTTP.
pub struct InProcess {
    core: MockCore,
}

impl InProcess {
    /// An in-process simulator behaving as `options` say; its receipts (Waspy's format) and
    /// replies (the mock's) are signed with `webhook_secret`, the channel's own.
    pub fn new(options: MockOptions, webhook_secret: Option<Secret>) -> Self {
        Self {
            core: MockCore::with_webhook_secret(options, webhook_secret),
        }
    }

    /// The simulator behind this provider.
    pub fn core(&self) -> &MockCore {
        &self.core
    }

    /// The provider this simulator is: `mock`.
    pub fn provider(&self) -> ProviderKind {
        ProviderKind::Mock
    }

    /// The class of an error code in one of its `failed` receipts: its receipts are in
    /// Waspy's format, with Waspy's codes.
    pub fn code_class(&self, code: &str) -> Option<ErrorClass> {
        waspy::send::code_class(code)
    }

    /// Simulate one send. Every canonical type is accepted: the mock stands for a gateway
    /// that can express everything, so the demo shows every type going through.
    pub async fn send(&self, job: &Job, ctx: SendContext<'_>) -> SendResult {
        // The canonical message is Meta's message object, so its buttons are where a reply
        // looks for them.
        let body = serde_json::to_value(&job.message).unwrap_or(Value::Null);
        let receipts = ReceiptsFor::new(ProviderKind::Mock, Some(&job.to), Some(&body));
        let call = Call {
            // It stands for Waspy's API, so Waspy's path is what its script rules match.
            path: waspy::simulator::PATH.to_string(),
            to: Some(job.to.clone()),
            key: Some(ctx.idempotency_key.to_string()),
            body,
            receipts: Some(receipts),
        };
        match self.core.handle(call).await {
            Decision::Sent(id) => Ok(Accepted {
                provider_message_id: id,
                replayed: false,
            }),
            Decision::Replayed(id) => Ok(Accepted {
                provider_message_id: id,
                replayed: true,
            }),
            // A scripted error is classified exactly as the Waspy adapter would classify
            // Waspy's answer, so `SERVICE_WINDOW_EXPIRED` is `window_expired` here too.
            Decision::Error(error) if error.code.is_some() || error.retry_after.is_some() => {
                Err(waspy::simulator::classify(&error))
            }
            Decision::Error(error) => Err(injected(error.status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn job(to: &str) -> Job {
        let body = json!({
            "id": "j-1", "channel": "demo", "to": to,
            "message": {"type": "text", "text": {"body": "Hola"}}
        });
        crate::job::parse(body.to_string().as_bytes()).expect("valid job")
    }

    fn options(script: Value) -> MockOptions {
        MockOptions {
            script: serde_json::from_value(script).expect("rules"),
            ..MockOptions::default()
        }
    }

    async fn send(mock: &InProcess, to: &str, key: &str) -> SendResult {
        let ctx = SendContext {
            idempotency_key: key,
            attempt: 1,
        };
        mock.send(&job(to), ctx).await
    }

    /// The in-process provider's scripted errors mean what Waspy's would: its adapter
    /// classifies them.
    #[tokio::test]
    async fn in_process_scripted_errors_are_classified_as_waspy_would() {
        let mock = InProcess::new(
            options(json!([
            {"to": "+5491100000001", "status": 403, "code": "SERVICE_WINDOW_EXPIRED"},
            {"path": "/api/v2/messages", "status": 503, "times": 1, "retry_after": 4},
            ])),
            None,
        );
        let failure = send(&mock, "+5491100000001", "k-1")
            .await
            .expect_err("scripted");
        assert_eq!(failure.class, ErrorClass::WindowExpired);
        assert_eq!(
            failure.provider_code.as_deref(),
            Some("SERVICE_WINDOW_EXPIRED")
        );
        let failure = send(&mock, "+5491100000002", "k-2")
            .await
            .expect_err("scripted");
        assert_eq!(failure.class, ErrorClass::Transient);
        assert_eq!(failure.retry_after, Some(Duration::from_secs(4)));
        // The 503 rule is used up: the same key now goes through.
        let sent = send(&mock, "+5491100000002", "k-2").await.expect("sent");
        assert!(!sent.replayed);
        let stats = mock.core().stats();
        assert_eq!(
            (stats.requests, stats.errors, stats.scripted, stats.sent),
            (3, 2, 2, 1)
        );
        assert_eq!(stats.errors_by_key.get("k-2"), Some(&1));
        assert_eq!(mock.core().rules().len(), 1, "the rule without times stays");
        assert_eq!(mock.core().clear_rules(), 1);
        assert!(send(&mock, "+5491100000001", "k-1").await.is_ok());
    }
}
