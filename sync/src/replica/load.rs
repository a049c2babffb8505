//! Replacing the replica's contents with a snapshot of the primary, in one transaction.
//!
//! Readers in WAL mode keep seeing the previous replica until the commit, so a resync has no
//! downtime and nobody ever sees an empty or half-loaded table. If the stream ends without
//! its `End` item (the primary went away mid-copy), the transaction rolls back and the old
//! replica stays as it was.

use std::collections::HashMap;

use rusqlite::{Connection, TransactionBehavior, params_from_iter};
use tokio::sync::mpsc;

use super::state::{ReplicaState, write_state};
use crate::catalog::TABLES;
use crate::decode::format_timestamp;
use crate::error::SyncError;
use crate::pg::snapshot::{SnapshotItem, SnapshotMeta};

/// Consumes a snapshot stream (on a blocking thread) and commits it; returns the new state.
pub fn load_snapshot(
    conn: &mut Connection,
    mut items: mpsc::Receiver<SnapshotItem>,
) -> Result<ReplicaState, SyncError> {
    let Some(SnapshotItem::Begin(meta)) = items.blocking_recv() else {
        return Err(SyncError::Transient(
            "snapshot ended before it began".into(),
        ));
    };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Bulk-load without indexes and rebuild them at the end: building an index by sorting
    // is several times faster than a million random B-tree inserts. All of it is inside the
    // transaction, so readers keep the old tables and indexes until the commit.
    let indexes = replicated_indexes(&tx)?;
    for (name, _) in &indexes {
        tx.execute(&format!("drop index {name}"), [])?;
    }
    for table in TABLES {
        tx.execute(&format!("delete from {}", table.name), [])?;
    }
    tx.execute("delete from sync_tombstones", [])?;

    let mut inserts: HashMap<&str, String> = HashMap::new();
    loop {
        match items.blocking_recv() {
            Some(SnapshotItem::Rows(table, rows)) => {
                let sql = inserts.entry(table.name).or_insert_with(|| {
                    let names: Vec<&str> = table.column_names().collect();
                    let marks = vec!["?"; names.len()].join(", ");
                    format!(
                        "insert into {} ({}) values ({marks})",
                        table.name,
                        names.join(", ")
                    )
                });
                let mut insert = tx.prepare_cached(sql)?;
                for row in &rows {
                    insert.execute(params_from_iter(row.iter()))?;
                }
            }
            Some(SnapshotItem::End) => break,
            Some(SnapshotItem::Begin(_)) | None => {
                // Dropping `tx` rolls back: the old replica stays whole.
                return Err(SyncError::Transient("snapshot stream was cut".into()));
            }
        }
    }

    for (_, sql) in &indexes {
        tx.execute(sql, [])?;
    }
    let state = state_after(&meta);
    write_state(&tx, &state)?;
    tx.commit()?;
    Ok(state)
}

/// `(name, create statement)` of every index on the replicated tables.
fn replicated_indexes(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<Vec<(String, String)>> {
    let names: Vec<String> = TABLES.iter().map(|t| format!("'{}'", t.name)).collect();
    let mut stmt = tx.prepare(&format!(
        "select name, sql from sqlite_master
          where type = 'index' and sql is not null and tbl_name in ({})",
        names.join(", ")
    ))?;
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

fn state_after(meta: &SnapshotMeta) -> ReplicaState {
    ReplicaState {
        watermark: meta.view.xmin,
        snapshot: Some(meta.snapshot.clone()),
        snapshot_xmax: Some(meta.view.xmax),
        primary_system_id: meta.view.system_id,
        primary_epoch: meta.view.epoch.clone(),
        last_change_at_us: None,
        resynced_at: format_timestamp(chrono::Utc::now()),
    }
}
