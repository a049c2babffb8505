//! Asking the primary whether its change log holds the history this replica applied (see
//! [`crate::history`]): the digest of each retained window, computed where the rows are.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient};

use super::{PrimaryView, read_view};
use crate::error::SyncError;
use crate::history::{CHANGE_HASH_SQL, Digest64, Window};

pub use crate::change::{ForkEvidence, HistoryCheck};

/// Compares `windows` with the primary's log, in one repeatable-read snapshot. Also returns
/// the primary's view and timeline, read in the same snapshot.
pub async fn check_history(
    client: &mut Client,
    windows: &[Window],
) -> Result<(HistoryCheck, PrimaryView, Option<i32>), SyncError> {
    let tx = super::snapshot_transaction(client).await?;
    let (view, _) = read_view(&tx).await?;
    let timeline = timeline(&tx).await?;
    // Windows partly pruned away cannot be compared (their changes are gone on purpose), nor
    // windows above the horizon (a standby that has not replayed them yet).
    let checkable: Vec<Window> = windows
        .iter()
        .filter(|w| w.lo >= view.pruned_below && w.hi <= view.xmin)
        .cloned()
        .collect();
    let found = window_digests(&tx, &checkable).await?;
    tx.commit().await?;
    for (window, primary) in checkable.iter().zip(found) {
        if primary != window.digest {
            let evidence = ForkEvidence {
                lo: window.lo,
                hi: window.hi,
                replica: window.digest,
                primary,
            };
            return Ok((HistoryCheck::Forked(evidence), view, timeline));
        }
    }
    let checked = checkable.len();
    Ok((HistoryCheck::Same { checked }, view, timeline))
}

/// The digest of each window as the primary's log has it now.
pub async fn window_digests(
    client: &impl GenericClient,
    windows: &[Window],
) -> Result<Vec<Digest64>, SyncError> {
    if windows.is_empty() {
        return Ok(Vec::new());
    }
    let lo: Vec<i64> = windows.iter().map(|w| w.lo as i64).collect();
    let hi: Vec<i64> = windows.iter().map(|w| w.hi as i64).collect();
    let snapshot: Vec<Option<&str>> = windows.iter().map(|w| w.snapshot.as_deref()).collect();
    let visible: Vec<bool> = windows.iter().map(|w| w.visible).collect();
    let params: [&(dyn ToSql + Sync); 4] = [&lo, &hi, &snapshot, &visible];
    let rows = client
        .query(
            &format!(
                "select count(c.h), coalesce(sum(c.h::numeric), 0)::text
                   from unnest($1::int8[], $2::int8[], $3::text[], $4::bool[])
                        with ordinality as w(lo, hi, snap, visible, i)
                   left join lateral (
                        select {CHANGE_HASH_SQL} as h from sync.changes c
                         where c.txid >= w.lo::text::xid8 and c.txid < w.hi::text::xid8
                           and (w.snap is null
                                or pg_visible_in_snapshot(c.txid, w.snap::pg_snapshot)
                                   = w.visible)) c on true
                  group by w.i order by w.i"
            ),
            &params,
        )
        .await?;
    rows.iter()
        .map(|row| {
            let sum: &str = row.get(1);
            let sum: i128 = sum.parse().map_err(|e| {
                SyncError::Transient(format!("history digest {sum:?} is not a number: {e}"))
            })?;
            Ok(Digest64 {
                changes: row.get::<_, i64>(0) as u64,
                // Two's complement: the low 64 bits of the sum are the wrapping sum.
                sum: sum as u64,
            })
        })
        .collect()
}

/// The window a resync's snapshot copied, for its recent part: the changes visible in the
/// snapshot from the oldest one made within `recent_secs` (a failover loses seconds) up to
/// the snapshot's xmax. Read inside the snapshot's own transaction.
pub async fn snapshot_window(
    client: &impl GenericClient,
    view: &PrimaryView,
    snapshot: &str,
    recent_secs: i64,
) -> Result<Window, SyncError> {
    let row = client
        .query_one(
            "select min(txid)::text::bigint from sync.changes
              where changed_at > now() - make_interval(secs => $1)",
            &[&(recent_secs as f64)],
        )
        .await?;
    let lo = row
        .get::<_, Option<i64>>(0)
        .map_or(view.xmax, |t| (t as u64).min(view.xmax));
    let mut window = Window {
        lo,
        hi: view.xmax,
        snapshot: Some(snapshot.to_owned()),
        visible: true,
        digest: Digest64::default(),
    };
    window.digest = window_digests(client, std::slice::from_ref(&window)).await?[0];
    Ok(window)
}

/// The primary's timeline (what a promotion changes), or `None` on a standby.
pub async fn timeline(client: &impl GenericClient) -> Result<Option<i32>, SyncError> {
    let row = client
        .query_one(
            "select case when pg_is_in_recovery() then null
                    else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
                    end",
            &[],
        )
        .await?;
    Ok(row.get(0))
}
