//! The HTTP API: one route table, shared state, and the layers around every request.
//!
//! Routes are served under `/api` and again under `/api/{API_VERSION}`.
//! - [`health`]: `GET /api/health`, `GET /api/health/db`.
//! - [`admin`]: `POST /api/admin/resync`, `GET /api/admin/sync` (permission `admin:sync`).

pub mod admin;
pub mod health;

use std::sync::Arc;
use std::time::Duration;

use auto_order_sync::SyncHandle;
use axum::Router;
use axum::extract::FromRef;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::db::Primary;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub sync: SyncHandle,
    pub auth: Authenticator,
    pub primary: Primary,
}

impl FromRef<AppState> for Authenticator {
    fn from_ref(state: &AppState) -> Authenticator {
        state.auth.clone()
    }
}

/// The routes under `/api`.
fn api_routes() -> Router<AppState> {
    Router::new().merge(health::router()).merge(admin::router())
}

/// The whole application router.
pub fn app(state: AppState) -> Router {
    let version = format!("/api/{}", state.config.api_version);
    Router::new()
        .nest("/api", api_routes())
        .nest(&version, api_routes())
        .merge(state.auth.dev_routes())
        .layer(TraceLayer::new_for_http())
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(15),
        ))
        .with_state(state)
}
