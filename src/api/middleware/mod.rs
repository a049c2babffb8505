//! The layers around every request (assembled in [`super::app`]).
//!
//! # Layout
//! - [`observe`]: a span per request, one JSON log line per response, request metrics, the
//!   `fly-region` header.
//! - [`rate_limit`]: per-IP and per-user limits (429 with `Retry-After`).
//! - [`cors`]: the CORS policy from `CORS_ORIGIN`.
//! - [`primary_bound`]: writes (and reads with `X-Sync-Token`) give up on a primary that does
//!   not answer (JSON 503 with `Retry-After`).
//! - [`timeout`]: the 15 s deadline of every request (JSON 503 with `Retry-After`).
//!
//! Request ids (`x-request-id`, generated when absent and echoed back), gzip and the body
//! limit are tower-http / axum layers used as they are.
//!
//! Ours are plain tower [`Layer`](tower::Layer)s rather than `axum::middleware::from_fn`:
//! axum clones a route's layer stack for every request, and a `from_fn` layer also clones
//! and boxes everything beneath it and boxes its own future; with three of them that was a
//! quarter of the server's CPU per cached read. Here a layer calls the service beneath it
//! directly, and one that has nothing to do for a request (a read without `X-Sync-Token`,
//! an exempt path) returns that service's own future without boxing anything.

pub mod cors;
pub mod observe;
pub mod primary_bound;
pub mod rate_limit;
pub mod timeout;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use axum::body::Body;
use axum::response::Response;

/// The future of a layer that has work to do around the inner service.
type BoxedResponse<B = Body> =
    Pin<Box<dyn Future<Output = Result<Response<B>, Infallible>> + Send>>;

/// An answer given by the layer itself, without calling the inner service.
fn answered(response: Response) -> BoxedResponse {
    Box::pin(std::future::ready(Ok(response)))
}
