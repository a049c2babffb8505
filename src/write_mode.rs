//! Where writes are executed: `WRITE_MODE=forward` (default: every edge writes to the
//! primary over its own connection pool) or `fly-replay` (an edge outside `PRIMARY_REGION`
//! answers a write with `fly-replay: region=<primary>`, and Fly's proxy replays the request
//! in the primary region).
//!
//! A request that Fly has already replayed carries `fly-replay-src`: it is always executed
//! where it lands, so a misconfigured region can never make requests bounce forever.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;

use crate::telemetry::propagate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Forward,
    FlyReplay,
}

impl std::str::FromStr for WriteMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "forward" => Ok(WriteMode::Forward),
            "fly-replay" => Ok(WriteMode::FlyReplay),
            other => Err(format!("expected forward or fly-replay, got {other:?}")),
        }
    }
}

/// Whether a request with `method` may write (anything but a read or a preflight).
pub fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// In `fly-replay` mode, the answer that sends a write reaching a non-primary region to the
/// primary region; `None` when the request is to be executed here. Called by
/// [`crate::api::middleware::primary_bound`], the one middleware for requests that may
/// use the primary.
pub fn replay_to_primary(
    mode: WriteMode,
    primary_region: Option<&str>,
    in_primary_region: bool,
    request: &Request,
) -> Option<Response> {
    let is_write = is_write(request.method());
    let replayed = request.headers().contains_key(propagate::FLY_REPLAY_SRC);
    match (primary_region, mode) {
        (Some(primary), WriteMode::FlyReplay) if is_write && !replayed && !in_primary_region => {
            tracing::debug!(primary_region = %primary, "write replayed to the primary region");
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::CONFLICT;
            // The `state` comes back in the replay's `fly-replay-src`: the primary-region
            // edge's span becomes a child of this one (see `crate::telemetry::propagate`).
            let replay = match propagate::traceparent(&tracing::Span::current()) {
                Some(parent) => format!("region={primary};state={parent}"),
                None => format!("region={primary}"),
            };
            if let Ok(value) = HeaderValue::from_str(&replay) {
                response.headers_mut().insert("fly-replay", value);
            }
            Some(response)
        }
        _ => None,
    }
}
