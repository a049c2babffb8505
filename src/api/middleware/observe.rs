//! One span per request (so every log line of the request carries its id) and one JSON log
//! line per response: request id, method, matched route, status, `latency_ms`, region.
//!
//! Never logged: the `Authorization` header or any token, the query string (it may carry
//! secrets), bodies. The route is the matched template (`/api/predictions/{productId}`),
//! not the raw path.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::api::metrics::Metrics;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What the middleware needs: the metrics to record into and this instance's region.
pub struct Observe {
    pub metrics: Metrics,
    /// `FLY_REGION`, sent back as `fly-region` and logged.
    pub region: Option<String>,
    region_header: Option<HeaderValue>,
}

impl Observe {
    pub fn new(metrics: Metrics, region: Option<String>) -> Arc<Observe> {
        let region_header = region
            .as_deref()
            .and_then(|r| HeaderValue::from_str(r).ok());
        Arc::new(Observe {
            metrics,
            region,
            region_header,
        })
    }
}

pub async fn observe(State(o): State<Arc<Observe>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        route = %route,
    );

    let mut response = next.run(req).instrument(span).await;

    let latency = started.elapsed();
    let status = response.status().as_u16();
    o.metrics
        .record_request(method.as_str(), &route, status, latency);
    if let Some(region) = &o.region_header {
        response.headers_mut().insert("fly-region", region.clone());
    }
    let latency_ms = latency.as_secs_f64() * 1000.0;
    let region = o.region.as_deref().unwrap_or("");
    if status >= 500 {
        tracing::error!(target: "http", request_id, method = %method, route, status, latency_ms, region, "request failed");
    } else if is_probe(&route) {
        // Health checks and scrapes arrive every few seconds: keep them out of info logs.
        tracing::debug!(target: "http", request_id, method = %method, route, status, latency_ms, region, "request handled");
    } else {
        tracing::info!(target: "http", request_id, method = %method, route, status, latency_ms, region, "request handled");
    }
    response
}

/// Health probes and metric scrapes.
fn is_probe(route: &str) -> bool {
    route == "/metrics" || route.contains("/health")
}
