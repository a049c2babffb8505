//! The HTTP API: one route table, shared state, and the layers around every request.
//!
//! Routes are served under `/api` and again under `/api/{API_VERSION}`.
//! - [`health`]: `GET /api/health`, `GET /api/health/db`.
//! - [`admin`]: `POST /api/admin/resync`, `GET /api/admin/sync` (permission `admin:sync`).
//! - [`openapi`]: the OpenAPI document and the docs page.
//! - [`products`], [`orders`]: the caller's data, CRUD with keyset pagination; shared
//!   pieces in [`extract`], [`validate`], [`paging`], [`reads`], [`writes`], [`idempotency`].
//!
//! Each resource module exposes `router() -> OpenApiRouter<AppState>` built with
//! `utoipa_axum::routes!` over `#[utoipa::path]`-annotated handlers, so the OpenAPI document
//! is generated from the same code that routes requests.

pub mod admin;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod openapi;
pub mod orders;
pub mod paging;
pub mod products;
pub mod reads;
pub mod validate;
pub mod writes;

use std::sync::Arc;
use std::time::Duration;

use auto_order_sync::SyncHandle;
use axum::Router;
use axum::extract::FromRef;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::Authenticator;
use crate::cache::ReadCache;
use crate::config::Config;
use crate::db::Primary;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub sync: SyncHandle,
    pub auth: Authenticator,
    pub primary: Primary,
    /// Rendered hot reads, invalidated by the sync engine's change events.
    pub cache: Arc<ReadCache>,
}

impl FromRef<AppState> for Authenticator {
    fn from_ref(state: &AppState) -> Authenticator {
        state.auth.clone()
    }
}

/// The routes under `/api` (and `/api/{API_VERSION}`), with their documentation.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(health::router())
        .merge(admin::router())
        .merge(products::router())
        .merge(orders::router())
}

/// The routes and the OpenAPI document describing them.
pub fn routes_and_doc(api_version: &str) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest("/api", api_routes())
        .split_for_parts();
    let (versioned, _) = OpenApiRouter::<AppState>::new()
        .nest(&format!("/api/{api_version}"), api_routes())
        .split_for_parts();
    (api.merge(versioned), doc)
}

/// The whole application router.
pub fn app(state: AppState) -> Router {
    let (routes, doc) = routes_and_doc(&state.config.api_version);
    routes
        .merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", doc))
        .merge(state.auth.dev_routes())
        .layer(TraceLayer::new_for_http())
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(15),
        ))
        .with_state(state)
}
