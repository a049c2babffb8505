//! Requests that may use the primary: writes, and reads carrying `X-Sync-Token` (answered
//! from the primary when the replica lags). In `fly-replay` mode a write outside the primary
//! region is first handed to the primary region ([`crate::write_mode`]); what stays here is
//! bounded in time.
//!
//! A primary that stops answering without refusing (a network partition drops packets, a
//! stuck host) would otherwise hold the client for the whole 15 s request timeout. Past [`PRIMARY_TIMEOUT`] plus the read-your-writes wait, such a
//! request answers the JSON 503 `unavailable` with `Retry-After`, like a refused connection.
//!
//! Giving up drops the handler: the driver rolls an open transaction back, and a commit
//! already sent applies whole or not at all. Either way the client sees 503 and may retry
//! (with its `Idempotency-Key`, a create is never applied twice).

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use tower::{Layer, Service};

use super::{BoxedResponse, answered};
use crate::api::AppState;
use crate::consistency::SYNC_TOKEN_HEADER;
use crate::error::ApiError;

/// The primary's share of a request's time: the connection pool's own limits (2 s waiting
/// for a connection, 3 s creating one) fit in it, a single-row transaction takes
/// milliseconds.
pub const PRIMARY_TIMEOUT: Duration = Duration::from_secs(5);

/// Replays writes to the primary region (`fly-replay` mode), and answers 503 when a request
/// that may use the primary takes longer than [`PRIMARY_TIMEOUT`] plus
/// `READ_YOUR_WRITES_TIMEOUT_MS`.
#[derive(Clone)]
pub struct PrimaryBoundLayer {
    state: AppState,
}

impl PrimaryBoundLayer {
    pub fn new(state: AppState) -> PrimaryBoundLayer {
        PrimaryBoundLayer { state }
    }
}

impl<S> Layer<S> for PrimaryBoundLayer {
    type Service = PrimaryBound<S>;

    fn layer(&self, inner: S) -> PrimaryBound<S> {
        PrimaryBound {
            state: self.state.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct PrimaryBound<S> {
    state: AppState,
    inner: S,
}

impl<S> Service<Request> for PrimaryBound<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxedResponse>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let config = &self.state.config;
        let replay = crate::write_mode::replay_to_primary(
            config.write_mode,
            config.primary_region.as_deref(),
            config.is_primary_region(),
            &request,
        );
        if let Some(replay) = replay {
            return Either::Right(answered(replay));
        }
        let is_write = crate::write_mode::is_write(request.method());
        if !is_write && !request.headers().contains_key(SYNC_TOKEN_HEADER) {
            // A plain read never waits on the primary: nothing to bound.
            return Either::Left(self.inner.call(request));
        }
        let bound = PRIMARY_TIMEOUT + self.state.config.read_your_writes_timeout;
        let response = self.inner.call(request);
        Either::Right(Box::pin(async move {
            match tokio::time::timeout(bound, response).await {
                Ok(response) => response,
                Err(_) => {
                    tracing::warn!(
                        bound_ms = bound.as_millis() as u64,
                        "the primary did not answer in time"
                    );
                    Ok(ApiError::primary_unavailable().into_response())
                }
            }
        }))
    }
}
