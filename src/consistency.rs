//! Read-your-writes: the `X-Sync-Token` header.
//!
//! A write answers with the txid of its transaction as `X-Sync-Token`, after waiting (up to
//! `READ_YOUR_WRITES_TIMEOUT_MS`) for this edge's replica to apply it. A read that carries
//! the token, on any edge, waits the same bound for the replica; past it the read is served
//! from the primary, never from older data.
//!
//! # Tokens a client made up
//! A token is a txid, and any u64 parses. One far in the future used to make every read
//! wait the whole bound and then go to the primary, on the write pool: a few clients could
//! pin it. Now a token past what the primary could have issued (the last horizon this
//! edge saw, plus [`TOKEN_AHEAD_MARGIN`]) is refused with 400 before any waiting, and the
//! reads that do fall back to the primary take a permit of their own
//! ([`crate::store::Primary::get_for_read`]), so they never hold more than
//! `PRIMARY_READ_CONCURRENCY` of its connections.

use std::time::Duration;
use tracing::Instrument;

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

/// How far past the last primary horizon this edge saw a token may be. A genuine token
/// from another edge is at most the transactions the primary started since this edge's
/// last pull ahead; ten million is almost three hours of a stalled edge at 1,000
/// transactions a second, and still refuses the made-up values a client can send.
pub const TOKEN_AHEAD_MARGIN: u64 = 10_000_000;

/// The largest token this edge accepts now (see [`TOKEN_AHEAD_MARGIN`]).
pub fn token_ceiling(status: &auto_order_sync::SyncStatus) -> u64 {
    status
        .primary_horizon
        .unwrap_or(0)
        .max(status.watermark)
        .saturating_add(TOKEN_AHEAD_MARGIN)
}

/// Where a read is answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    Replica,
    /// The replica has not applied the client's token within the bound.
    Primary,
}

/// Decides where a read with `token` is served from, waiting up to `bound` for the replica.
/// A token no write could have returned yet is a 400, at once.
pub async fn read_from(
    sync: &SyncHandle,
    token: SyncToken,
    bound: Duration,
) -> Result<ReadFrom, ApiError> {
    let Some(t) = token.0 else {
        return Ok(ReadFrom::Replica);
    };
    if t < sync.watermark() {
        return Ok(ReadFrom::Replica);
    }
    if t > token_ceiling(&sync.status()) {
        return Err(ApiError::BadRequest(
            "X-Sync-Token is not a token a write returned (it is ahead of the primary)".into(),
        ));
    }
    let waited = sync
        .wait_applied(t, bound)
        .instrument(tracing::debug_span!("sync.wait_token", token = t))
        .await;
    Ok(if waited {
        ReadFrom::Replica
    } else {
        ReadFrom::Primary
    })
}

/// After a committed write: wait (bounded) so the next read on this edge sees it, and
/// return the header to send. Not waiting long enough is fine: the token still protects the
/// client's next read.
pub async fn settle_write(
    sync: &SyncHandle,
    txid: u64,
    bound: Duration,
) -> (&'static str, HeaderValue) {
    let applied = sync
        .wait_applied(txid, bound)
        .instrument(tracing::debug_span!("sync.wait_write", txid))
        .await;
    if !applied {
        tracing::debug!(
            txid,
            "write not yet applied to the replica within the bound"
        );
    }
    (SYNC_TOKEN_HEADER, HeaderValue::from(txid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_ceiling_is_the_margin_past_the_newest_horizon_seen() {
        let mut status = auto_order_sync::SyncStatus {
            watermark: 500,
            ..Default::default()
        };
        assert_eq!(token_ceiling(&status), 500 + TOKEN_AHEAD_MARGIN);

        status.primary_horizon = Some(800);
        assert_eq!(token_ceiling(&status), 800 + TOKEN_AHEAD_MARGIN);

        status.watermark = u64::MAX;
        assert_eq!(token_ceiling(&status), u64::MAX, "no overflow");
    }
}
