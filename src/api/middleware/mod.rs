//! The layers around every request (assembled in [`super::app`]).
//!
//! # Layout
//! - [`observe`]: a span per request, one JSON log line per response, request metrics, the
//!   `fly-region` header.
//! - [`rate_limit`]: per-IP and per-user limits (429 with `Retry-After`).
//! - [`cors`]: the CORS policy from `CORS_ORIGIN`.
//! - [`primary_bound`]: writes (and reads with `X-Sync-Token`) give up on a primary that does
//!   not answer (JSON 503 with `Retry-After`).
//!
//! Request ids (`x-request-id`, generated when absent and echoed back), gzip, the body
//! limit and the timeout are tower-http / axum layers used as they are.

pub mod cors;
pub mod observe;
pub mod primary_bound;
pub mod rate_limit;
