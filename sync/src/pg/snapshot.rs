//! Copying every replicated table out of one `REPEATABLE READ` snapshot.
//!
//! Rows leave Postgres through binary `COPY … TO STDOUT` (the fast path: no per-row query
//! overhead, no text escaping) and are handed, in chunks, to the replica's loader on its
//! own blocking thread, so decoding on this side and inserting on that side overlap. Each
//! table comes in `id` order when the replica will be merged with it, and in whatever order
//! Postgres reads it when the replica is empty (see [`crate::replica::load`]).

use futures_util::{StreamExt, pin_mut};
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::read_view;
use super::verify::snapshot_window;
use crate::catalog::TABLES;
pub use crate::change::{SnapshotItem, SnapshotMeta};
use crate::decode::CopyRows;
use crate::error::SyncError;
use crate::rows::RowBlock;

/// Rows sent to the loader per message, at most.
const CHUNK_ROWS: usize = 4096;

/// Text per message, at most (about): with the channel's eight messages, this bounds the
/// memory a resync holds when rows carry long notes.
const CHUNK_TEXT_BYTES: usize = 4 << 20;

/// Streams a consistent copy of every replicated table into `sink`, in `id` order if
/// `key_order`. Returns the number of rows copied.
///
/// Ask for key order unless the replica is empty: sorting is most of what the copy costs
/// the primary (about twice the time of a copy as stored: `docs/PERF.md`), and on a small
/// machine that CPU is shared with the load.
pub async fn copy_snapshot(
    client: &mut Client,
    sink: mpsc::Sender<SnapshotItem>,
    key_order: bool,
) -> Result<u64, SyncError> {
    let tx = super::snapshot_transaction(client).await?;
    // The connection's pulls turn sorts off (see `PullStatements::prepare`); the key-ordered
    // copy below wants the planner's free choice (a sort beats an index walk of the heap).
    tx.batch_execute("set local enable_sort = on; set local enable_bitmapscan = on")
        .await?;
    let (view, snapshot) = read_view(&tx).await?;
    let recent_secs = crate::replica::history::RETENTION_US / 1_000_000;
    let recent = snapshot_window(&tx, &view, &snapshot, recent_secs).await?;
    let meta = SnapshotMeta {
        view,
        snapshot,
        key_order,
        recent,
    };
    send(&sink, SnapshotItem::Begin(meta)).await?;

    let mut total = 0u64;
    for table in TABLES.iter().copied() {
        let columns: Vec<&str> = table.column_names().collect();
        // Key order: a resync over an existing replica compares it range by range (merge).
        let sql = format!(
            "copy (select {} from {}{}) to stdout (format binary)",
            columns.join(", "),
            table.name,
            if key_order { " order by id" } else { "" }
        );
        let stream = tx.copy_out(&sql).await?;
        pin_mut!(stream);
        let mut decoder = CopyRows::new(table);
        let new_chunk = || RowBlock::new(table.columns.len(), CHUNK_ROWS);
        let mut chunk = new_chunk();
        while let Some(message) = stream.next().await {
            if !decoder.decode(&message?, &mut chunk)? {
                continue;
            }
            if chunk.len() == CHUNK_ROWS || chunk.text_len() >= CHUNK_TEXT_BYTES {
                total += chunk.len() as u64;
                let full = std::mem::replace(&mut chunk, new_chunk());
                send(&sink, SnapshotItem::Rows(table, full)).await?;
            }
        }
        if !decoder.ended() {
            return Err(SyncError::Transient(format!(
                "the copy of {} ended without its trailer",
                table.name
            )));
        }
        total += chunk.len() as u64;
        if !chunk.is_empty() {
            send(&sink, SnapshotItem::Rows(table, chunk)).await?;
        }
    }
    tx.commit().await?;
    send(&sink, SnapshotItem::End).await?;
    Ok(total)
}

async fn send(sink: &mpsc::Sender<SnapshotItem>, item: SnapshotItem) -> Result<(), SyncError> {
    sink.send(item)
        .await
        .map_err(|_| SyncError::Transient("replica loader stopped".into()))
}
