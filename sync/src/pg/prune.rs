//! Trimming the change log.
//!
//! Pruning removes whole transactions, oldest txid first: every change of a transaction
//! with `txid < P` goes, where `P` is one past the newest transaction that finished before
//! the cut-off, and never past the horizon (a running transaction is never touched). `P` is
//! then recorded as the prune point in the same transaction; an edge whose watermark is
//! below it cannot catch up from the log and resyncs by itself.

use std::time::Duration;

use tokio_postgres::Client;

use crate::error::SyncError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub deleted: u64,
    pub pruned_below: u64,
}

/// Deletes the changes older than `older_than` and moves the prune point.
pub async fn prune_changes(
    client: &mut Client,
    older_than: Duration,
) -> Result<PruneReport, SyncError> {
    let seconds = older_than.as_secs_f64();
    let tx = client.transaction().await?;
    // Serialise concurrent prunes (several primary-region instances).
    tx.execute("lock table sync.prune_point in exclusive mode", &[])
        .await?;
    let cut: Option<i64> = tx
        .query_opt(
            "select least(newest + 1, pg_snapshot_xmin(pg_current_snapshot())::text::bigint)
               from (select max(txid)::text::bigint as newest from sync.changes
                      where changed_at < now() - make_interval(secs => $1)) old
              where newest is not null",
            &[&seconds],
        )
        .await?
        .map(|row| row.get(0));
    let Some(cut) = cut else {
        let current: i64 = tx
            .query_one(
                "select pruned_below::text::bigint from sync.prune_point",
                &[],
            )
            .await?
            .get(0);
        tx.commit().await?;
        return Ok(PruneReport {
            deleted: 0,
            pruned_below: current as u64,
        });
    };
    let deleted = tx
        .execute(
            "delete from sync.changes where txid < $1::bigint::text::xid8",
            &[&cut],
        )
        .await?;
    let pruned_below: i64 = tx
        .query_one(
            "update sync.prune_point
                set pruned_below = greatest(pruned_below, $1::bigint::text::xid8), pruned_at = now()
             returning pruned_below::text::bigint",
            &[&cut],
        )
        .await?
        .get(0);
    tx.commit().await?;
    Ok(PruneReport {
        deleted,
        pruned_below: pruned_below as u64,
    })
}
