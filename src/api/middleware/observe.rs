//! One span per request (so every log line of the request carries its id and trace id, and
//! the trace exporter has its root, a child of the caller's `traceparent`) and one JSON log
//! line per response: request id, method, matched route, status, `latency_ms`, region.
//! Method and route are the bounded labels of [`crate::api::metrics`] (`other`,
//! `unmatched`), in the log as in the metrics.
//!
//! Never logged: the `Authorization` header or any token, the query string (it may carry
//! secrets), bodies. The route is the matched template (`/api/predictions/{productId}`),
//! not the raw path.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::response::Response;
use tower::{Layer, Service};
use tracing::Instrument;

use super::BoxedResponse;
use crate::api::metrics::{Metrics, method_label};
use crate::telemetry::propagate;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What the layer needs: the metrics to record into and this instance's region.
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

/// The layer: one span, log line and metrics record per request.
#[derive(Clone)]
pub struct ObserveLayer(pub Arc<Observe>);

impl<S> Layer<S> for ObserveLayer {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed {
            observe: self.0.clone(),
            inner,
        }
    }
}

/// The service beneath, observed.
#[derive(Clone)]
pub struct Observed<S> {
    observe: Arc<Observe>,
    inner: S,
}

/// Generic over the response body: the layer sits above gzip, which changes it.
impl<S, B> Service<Request> for Observed<S>
where
    S: Service<Request, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = BoxedResponse<B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> BoxedResponse<B> {
        let started = Instant::now();
        // The label, not the raw method: a client may send any token as a method.
        let method = method_label(req.method());
        let route = req.extensions().get::<MatchedPath>().cloned();
        let request_id = req.headers().get(REQUEST_ID_HEADER).cloned();
        let route_str = route.as_ref().map_or("unmatched", |m| m.as_str());
        let request_id_str = request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        let span = tracing::info_span!(
            "request",
            request_id = %request_id_str,
            method,
            route = %route_str,
            trace_id = tracing::field::Empty,
            // The span's name and kind for the trace exporter (the HTTP attributes below go
            // to the exporter alone: the log lines already carry method and route).
            otel.name = %format_args!("{method} {route_str}"),
            otel.kind = "server",
        );
        if let Some(trace_id) = propagate::adopt_parent(&span, req.headers()) {
            span.record("trace_id", tracing::field::display(trace_id));
        }
        span.set_attribute("http.request.method", method);
        span.set_attribute("http.route", route_str.to_owned());
        // The inner layers' synchronous work belongs to the request's span as well.
        let response = span
            .in_scope(|| self.inner.call(req))
            .instrument(span.clone());
        let o = self.observe.clone();
        Box::pin(async move {
            let Ok(mut response) = response.await;
            let latency = started.elapsed();
            let status = response.status().as_u16();
            span.set_attribute("http.response.status_code", i64::from(status));
            if status >= 500 {
                span.set_status(opentelemetry::trace::Status::error("5xx"));
            }
            let route = route.as_ref().map_or("unmatched", |m| m.as_str());
            let request_id = request_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            o.metrics.record_request(method, route, status, latency);
            if let Some(region) = &o.region_header {
                response.headers_mut().insert("fly-region", region.clone());
            }
            let latency_ms = latency.as_secs_f64() * 1000.0;
            let region = o.region.as_deref().unwrap_or("");
            // In the request's span: the line carries its trace id.
            let _in_request = span.enter();
            if status >= 500 {
                tracing::error!(target: "http", request_id, method, route, status, latency_ms, region, "request failed");
            } else if is_probe(route) {
                // Health checks and scrapes arrive every few seconds: keep them out of info
                // logs.
                tracing::debug!(target: "http", request_id, method, route, status, latency_ms, region, "request handled");
            } else {
                tracing::info!(target: "http", request_id, method, route, status, latency_ms, region, "request handled");
            }
            Ok(response)
        })
    }
}

/// Health probes and metric scrapes.
fn is_probe(route: &str) -> bool {
    route == "/metrics" || route.contains("/health")
}
