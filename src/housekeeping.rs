//! The primary's housekeeping, done hourly by the primary-region edge and on demand by
//! `auto-order prune`: prune the change log past its retention, and expire old
//! idempotency keys. One does not wait on the other: each reports its own outcome.

use std::time::Duration;

use auto_order_sync::SyncError;
use auto_order_sync::pg::prune::{PruneReport, prune_changes};

/// What one round did.
pub struct Housekeeping {
    pub pruned: Result<PruneReport, SyncError>,
    pub expired_keys: Result<u64, tokio_postgres::Error>,
}

/// Prunes changes older than `retention` and expires keys older than `key_ttl`.
pub async fn run(
    client: &mut tokio_postgres::Client,
    retention: Duration,
    key_ttl: Duration,
) -> Housekeeping {
    let pruned = prune_changes(client, retention).await;
    let expired_keys = crate::store::idempotency::expire_keys(client, key_ttl).await;
    Housekeeping {
        pruned,
        expired_keys,
    }
}
