//! Reading the change log below the horizon, whole transactions at a time.
//!
//! A pull runs in one `REPEATABLE READ READ ONLY` transaction: it reads the primary's view
//! (identity, prune point, the snapshot's xmin `h` and xmax) and the changes with
//! `watermark <= txid < h`, in `(txid, id)` order. Every transaction below `h` has finished,
//! so nothing can appear there later. The batch is cut at a transaction boundary; a single
//! transaction larger than the batch is read whole.
//!
//! The changes query takes `h` from the transaction's own snapshot rather than from the
//! view's answer, so `begin`, view, changes and `commit` go out together (tokio-postgres
//! pipelines requests polled together) and a pull costs **one round trip** to the primary
//! instead of four: on an edge a continent away from its primary that is most of the
//! replication lag. The view is checked (identity, prune point) on the answer; changes read
//! alongside a failed check are dropped unread.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use super::{VIEW_SQL, view_from_row};
use crate::change::PrimaryView;
use crate::change::ResyncReason;
pub use crate::change::{Op, PullFrom, PullOutcome, Pulled, RawChange, RowImage};
use crate::error::SyncError;

/// The columns of a change as read. Aliased so that `order by c.txid` below sorts by the
/// indexed `xid8` column, not by this bigint rendering (an unqualified `txid` in ORDER BY
/// would name the output column and force a sort of the whole range).
const CHANGE_COLUMNS: &str = "c.id, c.txid::text::bigint as txid_number, c.table_name, c.row_id,
    c.op, c.version, c.data::text, (extract(epoch from c.changed_at) * 1000000)::bigint";

/// The pull's queries, prepared once per connection (no parse round trips per pull).
pub struct PullStatements {
    view: Statement,
    changes: Statement,
    rest_of_transaction: Statement,
}

impl PullStatements {
    /// Prepares the statements and sets the planner for this connection's pulls.
    ///
    /// `sync.changes` is a queue: after a bulk write its statistics lag far behind, and the
    /// planner then prefers a bitmap scan plus a sort of the whole range over walking the
    /// `(txid, id)` index for `limit` rows. Walking the index is always right here, so sorts
    /// and bitmap scans are off for the session (a snapshot turns them back on for its own
    /// transaction), which costs the pull no extra round trip.
    pub async fn prepare(client: &Client) -> Result<PullStatements, SyncError> {
        client
            .batch_execute("set enable_sort = off; set enable_bitmapscan = off")
            .await?;
        Ok(PullStatements {
            view: client.prepare(VIEW_SQL).await?,
            changes: client
                .prepare(&format!(
                    "select {CHANGE_COLUMNS} from sync.changes c
                      where c.txid >= $1::bigint::text::xid8
                        and c.txid < pg_snapshot_xmin(pg_current_snapshot())
                        and ($2::text is null
                             or not pg_visible_in_snapshot(c.txid, $2::text::pg_snapshot))
                      order by c.txid, c.id
                      limit $3"
                ))
                .await?,
            rest_of_transaction: client
                .prepare(&format!(
                    "select {CHANGE_COLUMNS} from sync.changes c
                      where c.txid = $1::bigint::text::xid8 and c.id > $2 order by c.id"
                ))
                .await?,
        })
    }
}

/// Reads the primary's view and the next changes, in one round trip; through `check` the
/// caller refuses to go on (a changed identity, a pruned cursor), and then nothing read is
/// used.
pub async fn pull(
    client: &mut Client,
    statements: &PullStatements,
    from: PullFrom<'_>,
    check: impl Fn(&PrimaryView) -> Option<ResyncReason>,
) -> Result<PullOutcome, SyncError> {
    let limit = from.max_changes.max(1);
    let pulled_at = chrono::Utc::now();
    // One row past the batch tells "more to read" from "caught up", and lets a batch that
    // ends exactly at a transaction's end keep that transaction.
    let params: [&(dyn ToSql + Sync); 3] = [
        &(from.watermark as i64),
        &from.snapshot,
        &(limit as i64 + 1),
    ];
    // Polled together, the four requests are sent in this order in one write; a failed
    // statement aborts the transaction and the `commit` then rolls it back.
    let (begun, view, rows, committed) = futures_util::join!(
        client.batch_execute("begin isolation level repeatable read read only"),
        client.query_one(&statements.view, &[]),
        client.query(&statements.changes, &params),
        client.batch_execute("commit"),
    );
    begun?;
    let (view, _) = view_from_row(&view?);
    let rows = rows?;
    committed?;
    if let Some(reason) = check(&view) {
        return Ok(PullOutcome::NeedsResync(reason));
    }
    let changes = rows.iter().map(raw_change).collect::<Result<Vec<_>, _>>()?;
    if cut_inside_one_transaction(&changes, limit) {
        // One transaction larger than the batch: it must be read whole in one snapshot, so
        // read it again with the rest in one transaction (rare: a bulk write).
        return pull_in_transaction(client, statements, from, check).await;
    }
    Ok(PullOutcome::Pulled(batch(
        view, pulled_at, changes, &from, limit,
    )))
}

/// A pull with a transaction larger than the batch: round trip by round trip, so that the
/// rest of that transaction is read in the same snapshot.
async fn pull_in_transaction(
    client: &mut Client,
    statements: &PullStatements,
    from: PullFrom<'_>,
    check: impl Fn(&PrimaryView) -> Option<ResyncReason>,
) -> Result<PullOutcome, SyncError> {
    let pulled_at = chrono::Utc::now();
    let tx = super::snapshot_transaction(client).await?;
    let (view, _) = view_from_row(&tx.query_one(&statements.view, &[]).await?);
    if let Some(reason) = check(&view) {
        return Ok(PullOutcome::NeedsResync(reason));
    }
    let limit = from.max_changes.max(1);
    let rows = tx
        .query(
            &statements.changes,
            &[
                &(from.watermark as i64),
                &from.snapshot,
                &(limit as i64 + 1),
            ],
        )
        .await?;
    let mut changes = rows.iter().map(raw_change).collect::<Result<Vec<_>, _>>()?;
    if cut_inside_one_transaction(&changes, limit) {
        let (txid, last_id): (u64, i64) = (changes[0].txid, rows[rows.len() - 1].get(0));
        let rest = tx
            .query(&statements.rest_of_transaction, &[&(txid as i64), &last_id])
            .await?;
        for row in &rest {
            changes.push(raw_change(row)?);
        }
        tx.commit().await?;
        return Ok(PullOutcome::Pulled(Pulled {
            view,
            pulled_at,
            changes,
            next_watermark: txid + 1,
            caught_up: false,
            held_back: false,
        }));
    }
    tx.commit().await?;
    Ok(PullOutcome::Pulled(batch(
        view, pulled_at, changes, &from, limit,
    )))
}

/// Whether `changes` (read with `limit + 1`) are all of one transaction that goes on past
/// the batch.
fn cut_inside_one_transaction(changes: &[RawChange], limit: usize) -> bool {
    changes.len() > limit && changes.first().map(|c| c.txid) == changes.last().map(|c| c.txid)
}

/// The batch of whole transactions in `changes` (read with `limit + 1`, in `(txid, id)`
/// order, and not all of one transaction).
fn batch(
    view: PrimaryView,
    pulled_at: chrono::DateTime<chrono::Utc>,
    mut changes: Vec<RawChange>,
    from: &PullFrom<'_>,
    limit: usize,
) -> Pulled {
    if changes.len() <= limit {
        // Everything below the horizon. xmin < xmax: a transaction older than the newest
        // one was still open.
        let held_back = view.xmin < view.xmax;
        return Pulled {
            next_watermark: view.xmin.max(from.watermark),
            view,
            pulled_at,
            changes,
            caught_up: true,
            held_back,
        };
    }
    // Several transactions: drop the last one, which the limit may have cut (the batch is
    // then at most `limit` changes).
    let last_txid = changes.last().map_or(from.watermark, |c| c.txid);
    changes.retain(|c| c.txid != last_txid);
    Pulled {
        view,
        pulled_at,
        changes,
        next_watermark: last_txid,
        caught_up: false,
        held_back: false,
    }
}

/// How many changes wait below the horizon, counted up to `cap` (an index-only estimate
/// for the status; not used for correctness).
pub async fn count_backlog(client: &Client, watermark: u64, cap: i64) -> Result<u64, SyncError> {
    let row = client
        .query_one(
            "select count(*) from (select 1 from sync.changes
              where txid >= $1::bigint::text::xid8
                and txid < pg_snapshot_xmin(pg_current_snapshot()) limit $2) s",
            &[&(watermark as i64), &cap],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

fn raw_change(row: &Row) -> Result<RawChange, SyncError> {
    let op = match row.get::<_, &str>(4) {
        "I" => Op::Insert,
        "U" => Op::Update,
        "D" => Op::Delete,
        other => return Err(SyncError::fatal(format!("unknown change op {other:?}"))),
    };
    Ok(RawChange {
        id: row.get(0),
        txid: row.get::<_, i64>(1) as u64,
        table: row.get(2),
        row_id: row.get(3),
        op,
        version: row.get(5),
        data: row.get::<_, Option<String>>(6).map(RowImage::Json),
        changed_at_us: row.get(7),
    })
}
