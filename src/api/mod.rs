//! The HTTP API: one route table, shared state, and the layers around every request.
//!
//! Routes are served under `/api` and again under `/api/{API_VERSION}`.
//! - [`routes`]: the handlers, a module per group of paths (health, admin, predictions,
//!   reorders, products, orders).
//! - [`resource`]: what the resources share: get, list, create, update
//!   ([`resource::Resource`]), the read path through the cache ([`resource::reads`]), the
//!   write round trips ([`resource::writes`]) and idempotency keys
//!   ([`resource::idempotency`]).
//! - [`request`]: what a handler takes from a request and checks first: extractors,
//!   validation, paging, and [`require_ready`] / [`ReplicaReady`] (the 503 of data routes
//!   before the first sync).
//! - [`middleware`]: the request layers (see [`app`] for their order).
//! - [`openapi`]: the OpenAPI document and the docs page.
//! - [`metrics`]: `GET /metrics` (outside `/api`, no auth).
//!
//! Each resource module exposes `router() -> OpenApiRouter<AppState>` built with
//! `utoipa_axum::routes!` over `#[utoipa::path]`-annotated handlers, so the OpenAPI document
//! is generated from the same code that routes requests.

mod metric_descriptions;
pub mod metrics;
pub mod middleware;
pub mod openapi;
#[cfg(test)]
mod proptests;
pub mod request;
pub mod resource;
pub mod routes;

pub use request::ready::{ReplicaReady, require_ready};

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower::ServiceBuilder;
use tower::util::option_layer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

pub use crate::state::{AppState, Services};

/// The routes under `/api` (and `/api/{API_VERSION}`), with their documentation.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(routes::health::router())
        .merge(routes::admin::router())
        .merge(routes::predictions::router())
        .merge(routes::reorders::router())
        .merge(routes::products::router())
        .merge(routes::orders::router())
}

/// The routes and the OpenAPI document describing them.
pub fn routes_and_doc(api_version: &str) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, mut doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest("/api", api_routes())
        .split_for_parts();
    openapi::finish(&mut doc);
    let (versioned, _) = OpenApiRouter::<AppState>::new()
        .nest(&format!("/api/{api_version}"), api_routes())
        .split_for_parts();
    (api.merge(versioned), doc)
}

/// Largest request body accepted (the JSON extractor rejects bigger ones).
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// Responses smaller than this are sent as they are: gzip saves a few hundred bytes of a
/// single row at a CPU cost larger than the rest of serving it from the cache.
pub const COMPRESS_ABOVE_BYTES: u16 = 1024;

/// Requests running longer than this are answered 503 ([`middleware::timeout`]).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The whole application router, with its layers. Outermost first:
///
/// 1. CORS, only when `CORS_ORIGIN` is set (preflights are answered here, before anything
///    else; they are not logged);
/// 2. request id: `x-request-id` kept from the client or generated (uuid), echoed back;
/// 3. [`middleware::observe`]: span, JSON access log, request metrics, `fly-region`;
/// 4. gzip of responses over 1 KiB when the client accepts it;
/// 5. [`middleware::rate_limit`]: per IP and per verified user (429);
/// 6. [`middleware::timeout`]: the 15 s deadline (a JSON 503 with `Retry-After`);
/// 7. the 64 KiB body limit;
/// 8. [`middleware::primary_bound`]: writes replayed to the primary region (`fly-replay`
///    mode); requests that may wait on the primary give up sooner (a JSON 503 with
///    `Retry-After`).
///
/// `Router::layer` wraps each route, so the matched route template is known to all of them.
/// Every request clones its route's whole stack: the layers go in as one `ServiceBuilder`
/// (one box per route rather than one per layer), and ours are plain tower layers, not
/// `from_fn` (see [`middleware`]).
/// Each call builds its own metrics recorder and limiter state (tests run several apps).
///
/// `/metrics` is one of the routes unless `METRICS_PORT` is set: then it is left out here
/// and served by [`metrics_app`] on that port only.
pub fn app(state: AppState) -> Router {
    app_and_metrics(state).0
}

/// `/metrics` alone, for its own listener (`METRICS_PORT`): not reachable from the public
/// port, no layers (the scraper is the platform's).
pub fn metrics_app(state: AppState, metrics: metrics::Metrics) -> Router {
    metrics::router(state, metrics)
}

/// [`app`], and the metrics it records into (for [`metrics_app`]).
pub fn app_and_metrics(state: AppState) -> (Router, metrics::Metrics) {
    let config = state.config.clone();
    let metrics = metrics::Metrics::new();
    let observe = middleware::observe::Observe::new(metrics.clone(), config.region.clone());
    let limits = middleware::rate_limit::RateLimit::new(
        config.rate_limit_max,
        config.rate_limit_window,
        config.trust_fly_client_ip,
        &config.api_version,
        state.auth.clone(),
        metrics.clone(),
    );
    let (routes, doc) = routes_and_doc(&config.api_version);
    let primary_bound = middleware::primary_bound::PrimaryBoundLayer::new(state.clone());
    let scrape = match config.metrics_port {
        Some(_) => Router::new(),
        None => metrics::router(state.clone(), metrics.clone()),
    };
    let app = routes
        .merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", doc))
        .merge(state.auth.dev_routes())
        .merge(crate::demo::router(&state))
        .with_state(state)
        .merge(scrape)
        // An unknown path (e.g. an empty id: `/api/orders/`) or method gets the JSON error
        // body too.
        .method_not_allowed_fallback(|| async { crate::error::ApiError::MethodNotAllowed })
        .fallback(|| async { crate::error::ApiError::NotFound })
        // One layer of all of them: `Router::layer` boxes each layer it is given around
        // every route, and a request then clones (allocates) every box.
        .layer(
            ServiceBuilder::new()
                .layer(option_layer(middleware::cors::layer(&config.cors_origins)))
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(middleware::observe::ObserveLayer(observe))
                .layer(CompressionLayer::new().compress_when(
                    DefaultPredicate::new().and(SizeAbove::new(COMPRESS_ABOVE_BYTES)),
                ))
                .layer(middleware::rate_limit::RateLimitLayer(limits))
                .layer(middleware::timeout::TimeoutLayer::new(REQUEST_TIMEOUT))
                .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
                .layer(primary_bound),
        );
    (app, metrics)
}
