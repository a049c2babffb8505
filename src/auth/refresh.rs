//! When the JWKS is fetched: at start-up, in the background (every `refresh_interval`
//! ±10% jitter, sooner after a failure), and when a token names an unknown `kid`
//! (throttled to one fetch per `unknown_kid_refetch_interval`).
//!
//! All fetches pass the [`Jwks`] gate, so at most one is in flight; a caller that waited for
//! the gate first checks whether the fetch it waited on already brought its key.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::jwks::Jwks;

/// Fetches the JWKS now (if remote), installs and persists it. Returns whether it succeeded.
pub(crate) async fn fetch_now(jwks: &Jwks) -> bool {
    let _gate = jwks.gate.lock().await;
    fetch_locked(jwks).await
}

async fn fetch_locked(jwks: &Jwks) -> bool {
    let Some(remote) = &jwks.remote else {
        return false;
    };
    match remote.fetch().await {
        Ok(set) => {
            if let Err(e) = remote.persist(&set).await {
                tracing::warn!(error = %e, "cannot persist the JWKS; keeping it in memory only");
            }
            jwks.replace(set);
            jwks.record_fetch(Ok(()));
            true
        }
        Err(reason) => {
            tracing::warn!(jwks.url = %remote.url, error = %reason, "JWKS fetch failed; keeping the cached keys");
            jwks.record_fetch(Err(reason));
            false
        }
    }
}

/// Called when a token's `kid` is not in the cache. Fetches at most once per
/// `min_interval`; returns whether the key is known afterwards.
pub(crate) async fn refetch_for_unknown_kid(
    jwks: &Jwks,
    kid: &str,
    min_interval: Duration,
) -> bool {
    if jwks.remote.is_none() {
        return false;
    }
    let mut gate = jwks.gate.lock().await;
    if jwks.snapshot().keys.contains_key(kid) {
        return true; // the fetch we waited on brought it
    }
    if gate
        .last_unknown_kid_fetch
        .is_some_and(|at| at.elapsed() < min_interval)
    {
        return false;
    }
    gate.last_unknown_kid_fetch = Some(Instant::now());
    tracing::info!("token signed with an unknown key id; refetching the JWKS");
    fetch_locked(jwks).await && jwks.snapshot().keys.contains_key(kid)
}

/// Spawns the background refresher. It holds only a `Weak`, so it ends when the last
/// [`super::Authenticator`] clone is dropped.
pub(crate) fn spawn_refresher(jwks: &Arc<Jwks>, interval: Duration) {
    if jwks.remote.is_none() {
        return;
    }
    let weak: Weak<Jwks> = Arc::downgrade(jwks);
    tokio::spawn(async move {
        let mut failures: u32 = 0;
        loop {
            let delay = if failures == 0 {
                jittered(interval)
            } else {
                // 2 s, 4 s, … capped at a minute (and at the normal interval).
                let backoff =
                    Duration::from_secs(1u64 << failures.min(5)).min(Duration::from_secs(60));
                jittered(backoff.min(interval))
            };
            tokio::time::sleep(delay).await;
            let Some(jwks) = weak.upgrade() else { return };
            if fetch_now(&jwks).await {
                failures = 0;
            } else {
                failures = failures.saturating_add(1);
            }
        }
    });
}

/// `base` ± 10%, so a fleet of instances does not fetch in lockstep.
fn jittered(base: Duration) -> Duration {
    base.mul_f64(rand::random_range(0.9..=1.1))
}
