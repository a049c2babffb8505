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

    let state = state_after(&meta);
    write_state(&tx, &state)?;
    tx.commit()?;
    Ok(state)
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
