//! Whaapy: the send adapter and its error table ([`send`]), the webhook format ([`webhook`])
//! and the simulator's routes (`simulator`).

pub mod send;
mod simulator;
pub mod webhook;

pub use send::Whaapy;

use axum::Router;

use super::simulator::MockCore;
use super::{Capabilities, ChannelGateway, ChannelSetup, Gateway, WebhookFormat};
use crate::config::ProviderKind;

/// Whaapy's API.
pub struct WhaapyGateway;

impl Gateway for WhaapyGateway {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Whaapy
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            idempotency: false,
            // The API key selects the account and its number.
            needs_sender: false,
            polling: false,
            remote: true,
        }
    }

    fn connect(&self, setup: ChannelSetup<'_>) -> anyhow::Result<ChannelGateway> {
        setup.over_http(|_sender, key| Box::new(Whaapy::new(key)))
    }

    fn webhook(&self) -> &'static dyn WebhookFormat {
        &webhook::Format
    }

    fn simulator(&self) -> Option<Router<MockCore>> {
        Some(simulator::routes())
    }
}
