//! Meta's WhatsApp Cloud API: the send adapter and its error table ([`send`]), the webhook
//! format ([`webhook`]) and the simulator's Graph API routes (`simulator`).

pub mod send;
mod simulator;
pub mod webhook;

pub use send::Meta;

use axum::Router;

use super::simulator::MockCore;
use super::{Capabilities, ChannelGateway, ChannelSetup, Gateway, WebhookFormat};
use crate::config::ProviderKind;

/// Meta's Cloud API.
pub struct MetaGateway;

impl Gateway for MetaGateway {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Meta
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Meta sends every request it accepts: a resend may duplicate.
            idempotency: false,
            // The `phone_number_id`, a path segment of every send.
            needs_sender: true,
            polling: false,
            remote: true,
        }
    }

    fn connect(&self, setup: ChannelSetup<'_>) -> anyhow::Result<ChannelGateway> {
        let channel = setup.config;
        setup.over_http(|sender, key| Box::new(Meta::new(sender, key, channel)))
    }

    fn webhook(&self) -> &'static dyn WebhookFormat {
        &webhook::Format
    }

    fn simulator(&self) -> Option<Router<MockCore>> {
        Some(simulator::routes())
    }

    fn wire_id(&self, id: &str) -> String {
        simulator::wire_id(id)
    }
}
