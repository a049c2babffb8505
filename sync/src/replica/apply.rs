//! Applying pulled changes to the replica.
//!
//! One call is one SQLite transaction holding whole primary transactions and the new
//! watermark, so a reader (or a crash) sees all of a primary transaction or none of it.
//!
//! Changes arrive in txid order, which is not commit order: a transaction with a lower txid
//! can commit after one with a higher txid and touch the same row. Each change therefore
//! carries a version from one global sequence, taken after its row operation (so later writes
//! of a row always have larger versions), and is applied only if it is newer than the
//! change that last wrote the replica's row (`sync_version`); a delete leaves a tombstone
//! with its version so that an older upsert arriving later cannot resurrect the row. A
//! tombstone is dropped once the watermark passes the `xmax` of the snapshot its delete was
//! pulled under: every change older than the delete belongs to a transaction below that
//! point.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use super::history;
use super::state::{ReplicaState, read_state, write_state};
use crate::catalog::{self, Table};
use crate::change::{Op, RawChange, RowImage};
use crate::decode::row_from_json;
use crate::error::SyncError;
use crate::history::{Digest64, Window};

pub use crate::change::{Applied, ApplyBatch};

pub fn apply_batch(conn: &mut Connection, batch: &ApplyBatch) -> Result<Applied, SyncError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(mut state) = read_state(&tx)? else {
        return Err(SyncError::Transient("replica has no sync state".into()));
    };
    if state.watermark != batch.from_watermark || state.snapshot != batch.from_snapshot {
        return Err(SyncError::Transient(format!(
            "replica cursor moved from {} to {} during a pull (a resync ran)",
            batch.from_watermark, state.watermark
        )));
    }

    let (mut applied, mut skipped, mut ignored, mut touched) = (0, 0, 0, BTreeSet::new());
    let mut digest = Digest64::default();
    // Tombstones are rare: when there are none (and this batch has deleted nothing yet),
    // upserts skip the tombstone lookups altogether.
    let mut tombstones_possible: bool = tx
        .prepare_cached("select exists (select 1 from sync_tombstones)")?
        .query_row([], |r| r.get(0))?;
    for change in &batch.changes {
        // Every change counts in the history's digest, ignored ones too: the primary's log
        // holds them.
        digest.add(change.id, change.txid, change.version, change.changed_at_us);
        let Some(table) = catalog::table(&change.table) else {
            ignored += 1;
            continue;
        };
        let owner = match change.op {
            Op::Insert | Op::Update => upsert(&tx, table, change, tombstones_possible)?,
            Op::Delete => {
                tombstones_possible = true;
                delete(&tx, table, change, batch.pulled_xmax)?
            }
        };
        match owner {
            Some(owner) => {
                applied += 1;
                touched.insert((table.name, owner));
            }
            None => skipped += 1,
        }
    }

    let window = Window {
        lo: batch.from_watermark,
        hi: batch.next_watermark,
        snapshot: batch.from_snapshot.clone(),
        visible: false,
        digest,
    };
    history::record(&tx, &window, chrono::Utc::now().timestamp_micros())?;
    advance(&tx, &mut state, batch)?;
    tx.commit()?;
    Ok(Applied {
        applied,
        skipped,
        ignored,
        touched,
        state,
    })
}

/// Decodes the JSON row images of `changes` in place, so that applying them only writes.
///
/// The writer is a catch-up's one sequential part, and decoding was about a tenth of its
/// work: the engine runs this on another thread for the next batch while the writer applies
/// the current one. A change still in JSON is decoded when it is applied.
pub fn decode_images(changes: &mut [RawChange]) -> Result<(), SyncError> {
    for change in changes {
        let Some(table) = catalog::table(&change.table) else {
            continue; // not replicated by this binary: ignored when applied
        };
        if let Some(RowImage::Json(json)) = &change.data {
            let values = row_from_json(table, json)?;
            change.data = Some(RowImage::Decoded(values));
        }
    }
    Ok(())
}

/// Moves the cursor, expires tombstones and the resync snapshot.
fn advance(
    tx: &rusqlite::Transaction<'_>,
    state: &mut ReplicaState,
    batch: &ApplyBatch,
) -> Result<(), SyncError> {
    state.watermark = batch.next_watermark;
    if let Some(newest) = batch.changes.iter().map(|c| c.changed_at_us).max() {
        state.last_change_at_us = Some(state.last_change_at_us.unwrap_or(0).max(newest));
    }
    if state.snapshot_xmax.is_some_and(|x| x <= state.watermark) {
        state.snapshot = None;
        state.snapshot_xmax = None;
    }
    tx.prepare_cached("delete from sync_tombstones where drop_at <= ?1")?
        .execute([state.watermark as i64])?;
    write_state(tx, state)?;
    Ok(())
}

/// Inserts or updates the row if the change is newer than the row and any tombstone.
/// Returns the row's owner when it changed something.
fn upsert(
    tx: &rusqlite::Transaction<'_>,
    table: &'static Table,
    change: &RawChange,
    tombstones_possible: bool,
) -> Result<Option<String>, SyncError> {
    let decoded;
    let values: &[Value] = match &change.data {
        Some(RowImage::Decoded(values)) => values,
        Some(RowImage::Json(json)) => {
            decoded = row_from_json(table, json)?;
            &decoded
        }
        None => {
            return Err(SyncError::fatal(format!(
                "{} change without a row image",
                table.name
            )));
        }
    };
    if values.first() != Some(&Value::Text(change.row_id.clone())) {
        return Err(SyncError::fatal(format!(
            "{} change for row {} carries another id",
            table.name, change.row_id
        )));
    }
    if tombstones_possible {
        let tombstone: Option<i64> = tx
            .prepare_cached(
                "select version from sync_tombstones where table_name = ?1 and row_id = ?2",
            )?
            .query_row(params![table.name, change.row_id], |r| r.get(0))
            .optional()?;
        if tombstone.is_some_and(|deleted_at| deleted_at >= change.version) {
            return Ok(None);
        }
    }
    // A single-row `insert … values` (not `insert … select`) needs no statement journal.
    let sync_version = Value::Integer(change.version);
    let changed = tx
        .prepare_cached(&statements(table).upsert)?
        .execute(params_from_iter(values.iter().chain([&sync_version])))?;
    if changed == 0 {
        return Ok(None);
    }
    if tombstones_possible {
        tx.prepare_cached("delete from sync_tombstones where table_name = ?1 and row_id = ?2")?
            .execute(params![table.name, change.row_id])?;
    }
    Ok(Some(owner_of(table, values)))
}

/// Deletes the row if the delete is newer, and records the tombstone.
fn delete(
    tx: &rusqlite::Transaction<'_>,
    table: &'static Table,
    change: &RawChange,
    pulled_xmax: u64,
) -> Result<Option<String>, SyncError> {
    let owner: Option<String> = tx
        .prepare_cached(&statements(table).delete)?
        .query_row(params![change.row_id, change.version], |r| r.get(0))
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    tx.prepare_cached(
        "insert into sync_tombstones (table_name, row_id, version, drop_at)
         values (?1, ?2, ?3, ?4)
         on conflict (table_name, row_id) do update set
             version = max(version, excluded.version), drop_at = max(drop_at, excluded.drop_at)",
    )?
    .execute(params![
        table.name,
        change.row_id,
        change.version,
        pulled_xmax as i64
    ])?;
    Ok(owner)
}

fn owner_of(table: &Table, values: &[Value]) -> String {
    let index = table.columns.iter().position(|c| c.name == "owner_id");
    match index.and_then(|i| values.get(i)) {
        Some(Value::Text(owner)) => owner.clone(),
        _ => String::new(),
    }
}

/// The per-table SQL, built once per process (formatting it per change showed in profiles).
struct Statements {
    upsert: String,
    delete: String,
}

fn statements(table: &'static Table) -> &'static Statements {
    static CACHE: OnceLock<Vec<(&'static str, Statements)>> = OnceLock::new();
    let all = CACHE.get_or_init(|| {
        catalog::TABLES
            .iter()
            .map(|t| {
                let delete = format!(
                    "delete from {} where id = ?1 and sync_version < ?2 returning owner_id",
                    t.name
                );
                (
                    t.name,
                    Statements {
                        upsert: upsert_sql(t),
                        delete,
                    },
                )
            })
            .collect()
    });
    &all.iter()
        .find(|(name, _)| *name == table.name)
        .expect("catalog tables have statements")
        .1
}

/// `insert … values … on conflict (id) do update … where the change is newer`.
fn upsert_sql(table: &Table) -> String {
    let version = format!("?{}", table.columns.len() + 1);
    let newer = format!("where excluded.sync_version > {}.sync_version", table.name);
    super::upsert_sql(table, &version, &newer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::PRODUCTS;

    const PRODUCT: &str = r#"{"id": "00000000-0000-0000-0000-000000000001", "owner_id": "alice",
        "name": "tea", "unit": null, "reorder_quantity": 2, "price_cents": 350, "notes": null,
        "created_at": "2026-12-01T10:00:00+00:00", "updated_at": "2026-12-01T10:00:00.5+00:00",
        "version": 7}"#;

    fn change(table: &str, op: Op, data: Option<&str>) -> RawChange {
        RawChange {
            id: 1,
            txid: 1,
            table: table.into(),
            row_id: "00000000-0000-0000-0000-000000000001".into(),
            op,
            version: 7,
            data: data.map(|json| RowImage::Json(json.into())),
            changed_at_us: 0,
        }
    }

    #[test]
    fn images_decoded_ahead_hold_what_the_apply_would_have_decoded() {
        let mut changes = vec![
            change("products", Op::Insert, Some(PRODUCT)),
            change("products", Op::Delete, None),
        ];
        decode_images(&mut changes).unwrap();
        match &changes[0].data {
            Some(RowImage::Decoded(values)) => {
                assert_eq!(values, &row_from_json(&PRODUCTS, PRODUCT).unwrap());
            }
            other => panic!("expected a decoded image, got {other:?}"),
        }
        assert!(changes[1].data.is_none(), "a delete has no image");
    }

    #[test]
    fn an_image_that_cannot_be_decoded_ahead_is_a_fatal_error_and_unknown_tables_wait() {
        let mut broken = vec![change("products", Op::Update, Some(r#"{"id": "x"}"#))];
        assert!(decode_images(&mut broken).unwrap_err().is_fatal());
        // A table this binary does not replicate (a newer primary) is left for the apply
        // to ignore.
        let mut unknown = vec![change("invoices", Op::Insert, Some(PRODUCT))];
        decode_images(&mut unknown).unwrap();
        assert!(matches!(unknown[0].data, Some(RowImage::Json(_))));
    }
}
