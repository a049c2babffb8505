//! Copying every replicated table out of one `REPEATABLE READ` snapshot.
//!
//! Rows leave Postgres through binary `COPY … TO STDOUT` (the fast path: no per-row query
//! overhead, no text escaping) and are handed, in chunks, to the replica's loader on its
//! own blocking thread, so decoding on this side and inserting on that side overlap. Each
//! table comes in `id` order (see [`crate::replica::load`]).

use futures_util::{StreamExt, pin_mut};
use rusqlite::types::Value;
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyOutStream;

use super::{PrimaryView, read_view};
use crate::catalog::{TABLES, Table};
use crate::decode::{pg_type, row_from_copy};
use crate::error::SyncError;

/// Rows sent to the loader per message.
const CHUNK_ROWS: usize = 4096;

/// What the snapshot stream carries, in order: one `Begin`, any number of `Rows`, one `End`.
/// A loader that sees the channel close without `End` must roll back.
#[derive(Debug)]
pub enum SnapshotItem {
    Begin(SnapshotMeta),
    Rows(&'static Table, Vec<Vec<Value>>),
    End,
}

#[derive(Debug, Clone)]
pub struct SnapshotMeta {
    pub view: PrimaryView,
    /// `pg_current_snapshot()` as text: changes visible in it are already in the copy.
    pub snapshot: String,
}

/// Streams a consistent copy of every replicated table into `sink`. Returns the number of
/// rows copied.
pub async fn copy_snapshot(
    client: &mut Client,
    sink: mpsc::Sender<SnapshotItem>,
) -> Result<u64, SyncError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    // The connection's pulls turn sorts off (see `PullStatements::prepare`); the key-ordered
    // copy below wants the planner's free choice (a sort beats an index walk of the heap).
    tx.batch_execute("set local enable_sort = on; set local enable_bitmapscan = on")
        .await?;
    let (view, snapshot) = read_view(&tx).await?;
    send(&sink, SnapshotItem::Begin(SnapshotMeta { view, snapshot })).await?;

    let mut total = 0u64;
    for table in TABLES.iter().copied() {
        let columns: Vec<&str> = table.column_names().collect();
        // Key order: a resync over an existing replica compares it range by range (merge),
        // and the id index of an empty one is built from sorted keys (bulk).
        let sql = format!(
            "copy (select {} from {} order by id) to stdout (format binary)",
            columns.join(", "),
            table.name
        );
        let types: Vec<_> = table.columns.iter().map(|c| pg_type(c.kind)).collect();
        let stream = BinaryCopyOutStream::new(tx.copy_out(&sql).await?, &types);
        pin_mut!(stream);
        let mut chunk = Vec::with_capacity(CHUNK_ROWS);
        while let Some(row) = stream.next().await {
            chunk.push(row_from_copy(table, &row?)?);
            if chunk.len() == CHUNK_ROWS {
                total += chunk.len() as u64;
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_ROWS));
                send(&sink, SnapshotItem::Rows(table, full)).await?;
            }
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
