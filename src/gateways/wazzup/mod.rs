//! Wazzup24: the send adapter and its error table ([`send`]), the webhook format
//! ([`webhook`]) and the simulator's routes (`simulator`).

pub mod send;
mod simulator;
pub mod webhook;

pub use send::Wazzup;

use axum::Router;

use super::simulator::MockCore;
use super::{Capabilities, ChannelGateway, ChannelSetup, Gateway, WebhookFormat};
use crate::config::ProviderKind;

/// Wazzup24's API.
pub struct WazzupGateway;

impl Gateway for WazzupGateway {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Wazzup
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // `crmMessageId` derived from our key: Wazzup refuses a repeat and names the
            // original (see `send::crm_message_id`).
            idempotency: true,
            // The channelId.
            needs_sender: true,
            polling: false,
            remote: true,
        }
    }

    fn connect(&self, setup: ChannelSetup<'_>) -> anyhow::Result<ChannelGateway> {
        let channel = setup.config;
        setup.over_http(|sender, key| Box::new(Wazzup::new(sender, key, channel)))
    }

    fn webhook(&self) -> &'static dyn WebhookFormat {
        &webhook::Format
    }

    fn simulator(&self) -> Option<Router<MockCore>> {
        Some(simulator::routes())
    }
}
