//! CORS from `CORS_ORIGIN`: a comma-separated list of origins, or `*`; unset allows no
//! cross-origin access (no CORS layer at all: browsers refuse cross-origin calls).
//!
//! Tokens travel in the `Authorization` header, never in cookies, so credentials mode is not
//! enabled (and `*` stays legal).

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight answer.
const MAX_AGE: Duration = Duration::from_secs(600);

/// The CORS layer, or `None` when no origin is configured: then there is nothing to allow,
/// and every request is spared the layer (it is cloned per request and showed in read
/// profiles). Preflights are then refused like any other unknown `OPTIONS` route.
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| match HeaderValue::from_str(o) {
                Ok(v) => Some(v),
                Err(_) => {
                    tracing::warn!(origin = %o, "CORS_ORIGIN entry is not a valid origin; ignored");
                    None
                }
            })
            .collect();
        AllowOrigin::list(list)
    };
    let layer = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-sync-token"),
            header::IF_NONE_MATCH,
        ])
        .expose_headers([
            HeaderName::from_static("x-sync-token"),
            header::ETAG,
            header::RETRY_AFTER,
            header::LOCATION,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("fly-region"),
        ])
        .max_age(MAX_AGE);
    Some(layer)
}
