//! Read-your-writes: the `X-Sync-Token` header.
//!
//! A write answers with the txid of its transaction as `X-Sync-Token`, after waiting (up to
//! `READ_YOUR_WRITES_TIMEOUT_MS`) for this edge's replica to apply it. A read that carries
//! the token, on any edge, waits the same bound for the replica; past it the read is served
//! from the primary, never from older data.

use std::time::Duration;

use auto_order_sync::SyncHandle;
use axum::extract::FromRequestParts;
use axum::http::HeaderValue;
use axum::http::request::Parts;

use crate::error::ApiError;

pub const SYNC_TOKEN_HEADER: &str = "x-sync-token";

/// The `X-Sync-Token` a read carries, if any.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncToken(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for SyncToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get(SYNC_TOKEN_HEADER) {
            None => Ok(SyncToken(None)),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(|t| SyncToken(Some(t)))
                .ok_or_else(|| {
                    ApiError::BadRequest("X-Sync-Token must be a token returned by a write".into())
                }),
        }
    }
}

/// Where a read is answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    Replica,
    /// The replica has not applied the client's token within the bound.
    Primary,
}

/// Decides where a read with `token` is served from, waiting up to `bound` for the replica.
pub async fn read_from(sync: &SyncHandle, token: SyncToken, bound: Duration) -> ReadFrom {
    match token.0 {
        None => ReadFrom::Replica,
        Some(t) if sync.wait_applied(t, bound).await => ReadFrom::Replica,
        Some(_) => ReadFrom::Primary,
    }
}

/// After a committed write: wait (bounded) so the next read on this edge sees it, and
/// return the header to send. Not waiting long enough is fine: the token still protects the
/// client's next read.
pub async fn settle_write(
    sync: &SyncHandle,
    txid: u64,
    bound: Duration,
) -> (&'static str, HeaderValue) {
    if !sync.wait_applied(txid, bound).await {
        tracing::debug!(
            txid,
            "write not yet applied to the replica within the bound"
        );
    }
    (SYNC_TOKEN_HEADER, HeaderValue::from(txid))
}
