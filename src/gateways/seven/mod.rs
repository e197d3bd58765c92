//! seven.io: the send adapter and its error table ([`send`]), the webhook format ([`webhook`])
//! and the simulator's routes (`simulator`).

pub mod send;
mod simulator;
pub mod webhook;

pub use send::Seven;

use axum::Router;

use super::simulator::MockCore;
use super::{Capabilities, ChannelGateway, ChannelSetup, Gateway, WebhookFormat};
use crate::config::ProviderKind;

/// seven.io's WhatsApp API.
pub struct SevenGateway;

impl Gateway for SevenGateway {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Seven
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // SPEC §4 counts its `foreign_id` as idempotency, but its document only says the
            // id is echoed in status callbacks, never that a repeat is refused, so its
            // channels follow `on_ambiguous`.
            idempotency: false,
            // The `from` number.
            needs_sender: true,
            polling: false,
            remote: true,
        }
    }

    fn connect(&self, setup: ChannelSetup<'_>) -> anyhow::Result<ChannelGateway> {
        setup.over_http(|sender, key| Box::new(Seven::new(sender, key)))
    }

    fn webhook(&self) -> &'static dyn WebhookFormat {
        &webhook::Format
    }

    fn simulator(&self) -> Option<Router<MockCore>> {
        Some(simulator::routes())
    }
}
