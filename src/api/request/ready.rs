//! Data routes answer only once this edge's replica holds a complete snapshot.
//!
//! Before the first sync completes (`SyncStatus::ready == false`) a data route answers
//! 503 with `Retry-After` ([`ApiError::replica_not_ready`]). Two ways to use it:
//! - call [`require_ready`]`(&state)?` at the top of a handler, or
//! - take a [`ReplicaReady`] extractor argument (put it before `AuthUser` so the 503 comes
//!   first).

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;

use crate::api::AppState;
use crate::error::ApiError;

/// `Ok` once the replica serves reads, else the 503 `unavailable` error with `Retry-After`.
pub fn require_ready(state: &AppState) -> Result<(), ApiError> {
    if state.sync.is_ready() {
        Ok(())
    } else {
        Err(ApiError::replica_not_ready())
    }
}

/// Extractor form of [`require_ready`]: a handler taking it runs only on a ready replica.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaReady;

impl<S> FromRequestParts<S> for ReplicaReady
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        require_ready(&AppState::from_ref(state)).map(|()| ReplicaReady)
    }
}
