//! The remote `mock` provider's API on the simulator: `POST /mock/api/v2/messages`, Waspy's
//! send under a path of its own, so the simulator knows to answer with the mock's webhooks
//! (Waspy's receipts, the mock's own customer replies: see `webhook.rs`) rather than Waspy's.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::post;

use crate::config::ProviderKind;
use crate::gateways::simulator::MockCore;
use crate::gateways::waspy;

/// The remote mock's send path (what script rules match on the simulator).
pub const PATH: &str = "/mock/api/v2/messages";

/// The remote mock's routes, merged into every simulator's router.
pub fn routes() -> Router<MockCore> {
    Router::new().route(PATH, post(mock_send))
}

async fn mock_send(
    State(core): State<MockCore>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    waspy::simulator::send_as(ProviderKind::Mock, core, uri, headers, body).await
}
