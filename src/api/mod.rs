//! The HTTP API: one route table, shared state, and the layers around every request.
//!
//! - [`health`]: `GET /api/health`, liveness and replica status.

pub mod health;

use std::sync::Arc;
use std::time::Duration;

use auto_order_sync::SyncHandle;
use axum::Router;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::Config;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub sync: SyncHandle,
}

/// The whole application router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .nest("/api", health::router())
        .layer(TraceLayer::new_for_http())
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(15),
        ))
        .with_state(state)
}
