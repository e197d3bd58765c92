//! Waspy: the send adapter and its error table ([`send`]), the webhook format ([`webhook`])
//! and the simulator's routes (`simulator`); the in-process `mock` provider borrows all but
//! the routes.

pub mod send;
pub(crate) mod simulator;
pub mod webhook;

pub use send::Waspy;

use axum::Router;

use super::simulator::MockCore;
use super::{Capabilities, ChannelGateway, ChannelSetup, Gateway, WebhookFormat};
use crate::config::ProviderKind;

/// Waspy's API.
pub struct WaspyGateway;

impl Gateway for WaspyGateway {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Waspy
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // `Idempotency-Key`, 24 h: a repeat is answered from Waspy's cache.
            idempotency: true,
            // The channel's phoneNumberId.
            needs_sender: true,
            // `GET /api/v2/messages/{id}`.
            polling: true,
            remote: true,
        }
    }

    fn connect(&self, setup: ChannelSetup<'_>) -> anyhow::Result<ChannelGateway> {
        setup.over_http(|sender, key| Box::new(Waspy::new(sender, key)))
    }

    fn webhook(&self) -> &'static dyn WebhookFormat {
        &webhook::Format
    }

    fn simulator(&self) -> Option<Router<MockCore>> {
        Some(simulator::routes())
    }
}
