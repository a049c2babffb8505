//! Replacing the replica's contents with a snapshot of the primary, in one transaction.
//!
//! Readers in WAL mode keep seeing the previous replica until the commit, so a resync has no
//! downtime and nobody ever sees an empty or half-loaded table. If the stream ends without
//! its `End` item (the primary went away mid-copy), the transaction rolls back and the old
//! replica stays as it was.
//!
//! The snapshot is loaded one of two ways:
//!
//! - **Bulk**, into an empty replica (first start, new volume), or whenever the snapshot is
//!   not in key order: the replicated rows are cleared, the indexes dropped, rows appended,
//!   and the indexes rebuilt by sorting at the end, which is several times faster than a
//!   million random B-tree inserts. The rows come in whatever order the primary reads them:
//!   unsorted keys cost the id index's rebuild about 0.1 s per million rows, where sorting
//!   them cost the primary 0.7 s.
//! - **Merge**, over an existing replica (a forced resync, a pruned cursor, a replaced
//!   primary), from a snapshot in key (`id`) order: each chunk of the snapshot is compared
//!   with the replica's rows of the same key range, and only the differences are written. A replica that was nearly current
//!   costs a read of itself, not a rewrite: the indexes stay, the WAL stays small. The
//!   comparing is most of that cost, so chunks are compared on worker threads with
//!   read-only connections of their own ([`Differ`]) while the writer writes what differs.
//!   They read what the writer's transaction started from: it holds the write lock, so
//!   nothing commits in between, and each chunk's key range is written only after it was
//!   compared.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::{Connection, Transaction, TransactionBehavior, params_from_iter};
use tokio::sync::mpsc;

use super::history;
use super::state::{ReplicaState, read_state, write_state};
use crate::catalog::{TABLES, Table};
use crate::change::{SnapshotItem, SnapshotMeta};
use crate::decode::format_timestamp;
use crate::error::SyncError;
use crate::rows::RowBlock;

/// What a load wrote (logged).
#[derive(Debug, Default, Clone, Copy)]
struct LoadStats {
    inserted: u64,
    updated: u64,
    deleted: u64,
    unchanged: u64,
}

/// Consumes a snapshot stream (on a blocking thread) and commits it; returns the new state.
///
/// `forked`: the replica's rows came from a history the primary no longer has (a failover
/// that lost commits), so the versions they were written with mean nothing to the primary's
/// (lower) ones and start over at 0, as for another primary.
pub fn load_snapshot(
    conn: &mut Connection,
    mut items: mpsc::Receiver<SnapshotItem>,
    forked: bool,
) -> Result<ReplicaState, SyncError> {
    let Some(SnapshotItem::Begin(meta)) = items.blocking_recv() else {
        return Err(SyncError::Transient(
            "snapshot ended before it began".into(),
        ));
    };
    let started = Instant::now();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Only a key-ordered snapshot can be merged; one that is not (asked for because the
    // replica was empty) replaces whatever another process may have loaded since.
    let mut loader = if !meta.key_order || replica_is_empty(&tx)? {
        Loader::bulk(&tx)?
    } else {
        let same_primary = !forked
            && read_state(&tx)?
                .is_some_and(|s| s.same_primary(&meta.view) && !s.history_went_back(&meta.view));
        let path = tx.path().map(PathBuf::from).ok_or_else(|| {
            SyncError::fatal("the replica has no file to open readers on".to_owned())
        })?;
        Loader::merge(&tx, same_primary, &path)?
    };
    tx.execute("delete from sync_tombstones", [])?;

    // Time spent waiting for the primary's rows: which side of the pipe is the slow one.
    let mut waited = std::time::Duration::ZERO;
    loop {
        let asked = Instant::now();
        let item = items.blocking_recv();
        waited += asked.elapsed();
        match item {
            Some(SnapshotItem::Rows(table, rows)) => loader.rows(&tx, table, rows)?,
            Some(SnapshotItem::End) => break,
            Some(SnapshotItem::Begin(_)) | None => {
                // Dropping `tx` rolls back: the old replica stays whole.
                return Err(SyncError::Transient("snapshot stream was cut".into()));
            }
        }
    }
    let rows_loaded = started.elapsed();
    let (mode, stats) = loader.finish(&tx)?;
    let finished = started.elapsed();
    let state = state_after(&meta);
    write_state(&tx, &state)?;
    // The history starts over at the snapshot; columns an upgrade added are filled now.
    history::reset(
        &tx,
        Some(&meta.recent),
        chrono::Utc::now().timestamp_micros(),
    )?;
    tx.execute("delete from sync_backfill", [])?;
    // Without the writer's automatic checkpoint, which would copy the whole load from the
    // WAL into the database file inside this commit: the checkpoint thread does it
    // afterwards (see `super::checkpoint`).
    let usual: i64 = tx.pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))?;
    tx.pragma_update(None, "wal_autocheckpoint", 0)?;
    let committed = tx.commit();
    conn.pragma_update(None, "wal_autocheckpoint", usual)?;
    committed?;
    // Where a resync's time goes, for operators sizing replicas (and for tuning this).
    tracing::info!(
        mode,
        inserted = stats.inserted,
        updated = stats.updated,
        deleted = stats.deleted,
        unchanged = stats.unchanged,
        rows_ms = rows_loaded.as_millis() as u64,
        waited_ms = waited.as_millis() as u64,
        finish_ms = (finished - rows_loaded).as_millis() as u64,
        commit_ms = (started.elapsed() - finished).as_millis() as u64,
        "snapshot loaded"
    );
    Ok(state)
}

enum Loader {
    Bulk {
        /// `create index` statements of the dropped indexes.
        indexes: Vec<String>,
        stats: LoadStats,
    },
    Merge {
        /// Per table, the last key handed to the differ (the snapshot's rows come in key
        /// order).
        done_up_to: HashMap<&'static str, String>,
        differ: Differ,
        stats: LoadStats,
    },
}

impl Loader {
    fn bulk(tx: &Transaction<'_>) -> Result<Loader, SyncError> {
        let indexes = replicated_indexes(tx)?;
        for (name, _) in &indexes {
            tx.execute(&format!("drop index {name}"), [])?;
        }
        let mut stats = LoadStats::default();
        for table in TABLES {
            stats.deleted += tx.execute(&format!("delete from {}", table.name), [])? as u64;
        }
        Ok(Loader::Bulk {
            indexes: indexes.into_iter().map(|(_, sql)| sql).collect(),
            stats,
        })
    }

    /// `same_primary`: the replica's rows came from this primary's history, so the version
    /// of the change that last wrote an unchanged row is still older than any change the
    /// snapshot does not contain (row locks order a row's changes), and can stay. Rows from
    /// another primary start over at 0 like freshly loaded ones.
    fn merge(tx: &Transaction<'_>, same_primary: bool, path: &Path) -> Result<Loader, SyncError> {
        if !same_primary {
            for table in TABLES {
                tx.execute(
                    &format!(
                        "update {} set sync_version = 0 where sync_version <> 0",
                        table.name
                    ),
                    [],
                )?;
            }
        }
        Ok(Loader::Merge {
            done_up_to: HashMap::new(),
            differ: Differ::start(path)?,
            stats: LoadStats::default(),
        })
    }

    fn rows(
        &mut self,
        tx: &Transaction<'_>,
        table: &'static Table,
        rows: RowBlock,
    ) -> Result<(), SyncError> {
        let Some(last) = rows.len().checked_sub(1) else {
            return Ok(());
        };
        match self {
            Loader::Bulk { stats, .. } => {
                let mut insert = tx.prepare_cached(&insert_sql(table))?;
                for row in 0..rows.len() {
                    insert.execute(params_from_iter(rows.params(row)))?;
                }
                stats.inserted += rows.len() as u64;
            }
            Loader::Merge {
                done_up_to,
                differ,
                stats,
            } => {
                let after = done_up_to.get(table.name).cloned().unwrap_or_default();
                check_key_order(table, &after, &rows)?;
                let upto = key(table, &rows, last)?.to_owned();
                done_up_to.insert(table.name, upto.clone());
                differ.send(Chunk {
                    table,
                    rows,
                    after,
                    upto,
                })?;
                // Write what the workers have found, waiting only to bound the chunks in
                // flight.
                while let Some(diff) = differ.next_diff(false)? {
                    write_diff(tx, diff, stats)?;
                }
            }
        }
        Ok(())
    }

    /// Rebuilds the dropped indexes (bulk), or deletes the replica's rows past the
    /// snapshot's last key (merge). Returns the mode's name and what was written.
    fn finish(self, tx: &Transaction<'_>) -> Result<(&'static str, LoadStats), SyncError> {
        match self {
            Loader::Bulk { indexes, stats } => {
                rebuild_indexes(tx, &indexes)?;
                Ok(("bulk", stats))
            }
            Loader::Merge {
                done_up_to,
                mut differ,
                mut stats,
            } => {
                while let Some(diff) = differ.next_diff(true)? {
                    write_diff(tx, diff, &mut stats)?;
                }
                for table in TABLES {
                    let after = done_up_to.get(table.name).map_or("", String::as_str);
                    stats.deleted += tx.execute(
                        &format!("delete from {} where id > ?1", table.name),
                        [after],
                    )? as u64;
                }
                Ok(("merge", stats))
            }
        }
    }
}

/// Page cache of the writer while it rebuilds indexes, in KiB. SQLite's sorter sorts runs of
/// at most this size, each on a helper thread (`pragma threads`), writes them to temporary
/// files, and merges them, also on helper threads. A large cache means one large run sorted
/// on the writer's own thread; the B-tree pages being built need no cache (they are
/// appended in order). A sort held in memory (`temp_store = memory`) neither spills runs nor
/// uses the helper threads. The figures that chose 4 MiB are in `docs/PERF.md`.
const REBUILD_CACHE_KIB: i64 = 4096;

/// Creates the dropped indexes, with the writer's cache made small for the length of it.
fn rebuild_indexes(tx: &Transaction<'_>, indexes: &[String]) -> Result<(), SyncError> {
    let usual: i64 = tx.pragma_query_value(None, "cache_size", |r| r.get(0))?;
    tx.pragma_update(None, "cache_size", -REBUILD_CACHE_KIB)?;
    let built = indexes.iter().try_for_each(|sql| {
        let started = Instant::now();
        tx.execute(sql, [])?;
        tracing::debug!(
            sql,
            ms = started.elapsed().as_millis() as u64,
            "index rebuilt"
        );
        Ok::<_, rusqlite::Error>(())
    });
    // Restored whatever happened: the applier's random inserts want the large cache.
    tx.pragma_update(None, "cache_size", usual)?;
    Ok(built?)
}

/// A key-ordered chunk of the snapshot and the key range it covers: `after < id <= upto`.
struct Chunk {
    table: &'static Table,
    rows: RowBlock,
    after: String,
    upto: String,
}

/// A compared chunk: which of its rows to write, which replica keys to delete.
struct Diff {
    chunk: Chunk,
    writes: Vec<usize>,
    deletes: Vec<String>,
    stats: LoadStats,
}

/// The threads comparing a merge's chunks with the replica, each on a read-only connection
/// of its own. Chunks go to them in turn; their diffs come back in any order (the key ranges
/// are disjoint). Dropping it stops them.
struct Differ {
    jobs: Vec<std_mpsc::Sender<Chunk>>,
    diffs: std_mpsc::Receiver<Result<Diff, SyncError>>,
    workers: Vec<JoinHandle<()>>,
    next_worker: usize,
    in_flight: usize,
}

impl Differ {
    fn start(path: &Path) -> Result<Differ, SyncError> {
        // Two cores are what this is measured on; more workers than cores would only contend
        // with the writer and the copy.
        let count = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4));
        let (done, diffs) = std_mpsc::channel();
        let (mut jobs, mut workers) = (Vec::new(), Vec::new());
        for i in 0..count {
            let (job, chunks) = std_mpsc::channel::<Chunk>();
            let (path, done) = (path.to_owned(), done.clone());
            let worker = std::thread::Builder::new()
                .name(format!("resync-diff-{i}"))
                .spawn(move || compare_chunks(&path, chunks, done))
                .map_err(|e| SyncError::fatal(format!("cannot start a resync worker: {e}")))?;
            jobs.push(job);
            workers.push(worker);
        }
        Ok(Differ {
            jobs,
            diffs,
            workers,
            next_worker: 0,
            in_flight: 0,
        })
    }

    fn send(&mut self, chunk: Chunk) -> Result<(), SyncError> {
        let worker = &self.jobs[self.next_worker % self.jobs.len()];
        self.next_worker += 1;
        worker.send(chunk).map_err(|_| worker_stopped())?;
        self.in_flight += 1;
        Ok(())
    }

    /// The next compared chunk: one that is ready; with `all`, every one still in flight
    /// (waiting for it); otherwise waits only while more than two per worker are in flight.
    fn next_diff(&mut self, all: bool) -> Result<Option<Diff>, SyncError> {
        if self.in_flight == 0 {
            return Ok(None);
        }
        let wait = all || self.in_flight > 2 * self.jobs.len();
        let diff = if wait {
            self.diffs.recv().map_err(|_| worker_stopped())?
        } else {
            match self.diffs.try_recv() {
                Ok(diff) => diff,
                Err(std_mpsc::TryRecvError::Empty) => return Ok(None),
                Err(std_mpsc::TryRecvError::Disconnected) => {
                    return Err(worker_stopped());
                }
            }
        };
        self.in_flight -= 1;
        diff.map(Some)
    }
}

impl Drop for Differ {
    fn drop(&mut self) {
        self.jobs.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn worker_stopped() -> SyncError {
    SyncError::Transient("a resync worker stopped".into())
}

/// A diff worker: compares each chunk it is sent with the replica's rows of its range.
fn compare_chunks(
    path: &Path,
    chunks: std_mpsc::Receiver<Chunk>,
    diffs: std_mpsc::Sender<Result<Diff, SyncError>>,
) {
    let conn = match super::open_reader(path) {
        Ok(conn) => conn,
        Err(e) => {
            let _ = diffs.send(Err(e.into()));
            return;
        }
    };
    for chunk in chunks {
        let diff = diff_chunk(&conn, chunk);
        if diffs.send(diff).is_err() {
            return;
        }
    }
}

/// Writes what a compared chunk found different.
fn write_diff(tx: &Transaction<'_>, diff: Diff, stats: &mut LoadStats) -> Result<(), SyncError> {
    let table = diff.chunk.table;
    let mut write = tx.prepare_cached(&write_sql(table))?;
    for &row in &diff.writes {
        write.execute(params_from_iter(diff.chunk.rows.params(row)))?;
    }
    let mut delete = tx.prepare_cached(&format!("delete from {} where id = ?1", table.name))?;
    for id in &diff.deletes {
        delete.execute([id])?;
    }
    stats.inserted += diff.stats.inserted;
    stats.updated += diff.stats.updated;
    stats.deleted += diff.stats.deleted;
    stats.unchanged += diff.stats.unchanged;
    Ok(())
}

/// Walks the chunk and the replica's rows of its key range side by side (both in key order)
/// and finds the snapshot rows to write and the replica keys to delete. Replica values are
/// compared where SQLite holds them, so an unchanged row (the common case) costs no copy.
fn diff_chunk(conn: &Connection, chunk: Chunk) -> Result<Diff, SyncError> {
    let table = chunk.table;
    let names: Vec<&str> = table.column_names().collect();
    let mut stmt = conn.prepare_cached(&format!(
        "select {} from {} where id > ?1 and id <= ?2 order by id",
        names.join(", "),
        table.name
    ))?;
    let mut existing = stmt.query([&chunk.after, &chunk.upto])?;
    let (mut writes, mut deletes, mut stats) = (Vec::new(), Vec::new(), LoadStats::default());
    let new = &chunk.rows;
    let mut pending = (0..new.len()).peekable();
    while let Some(old) = existing.next()? {
        let old_id: &str = old.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
        // Snapshot rows before this replica row are new.
        while let Some(i) =
            pending.next_if(|&i| matches!(key(table, new, i), Ok(id) if id < old_id))
        {
            writes.push(i);
            stats.inserted += 1;
        }
        match pending.next_if(|&i| matches!(key(table, new, i), Ok(id) if id == old_id)) {
            Some(i) if same_row(new, i, old)? => stats.unchanged += 1,
            Some(i) => {
                writes.push(i);
                stats.updated += 1;
            }
            None => {
                deletes.push(old_id.to_owned());
                stats.deleted += 1;
            }
        }
    }
    for i in pending {
        writes.push(i);
        stats.inserted += 1;
    }
    Ok(Diff {
        chunk,
        writes,
        deletes,
        stats,
    })
}

/// Whether the replica's row holds exactly the snapshot's values (`sync_version` aside).
/// The snapshot holds only null, integer and text values, which compare exactly.
fn same_row(new: &RowBlock, row: usize, old: &rusqlite::Row<'_>) -> rusqlite::Result<bool> {
    for (i, value) in new.row(row).enumerate() {
        if value != old.get_ref(i)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `insert … values (…, 0)`: a snapshot row into an empty table.
fn insert_sql(table: &Table) -> String {
    let names: Vec<&str> = table.column_names().collect();
    let marks = vec!["?"; names.len()].join(", ");
    format!(
        "insert into {} ({}, sync_version) values ({marks}, 0)",
        table.name,
        names.join(", ")
    )
}

/// A snapshot row as it is, with `sync_version` 0 (any change the snapshot does not contain
/// is newer), over whatever the replica held.
fn write_sql(table: &Table) -> String {
    super::upsert_sql(table, "0", "")
}

fn key<'r>(table: &Table, rows: &'r RowBlock, row: usize) -> Result<&'r str, SyncError> {
    rows.text(row, 0)
        .ok_or_else(|| SyncError::fatal(format!("{} snapshot row without a text id", table.name)))
}

/// The merge relies on Postgres's `uuid` order and SQLite's text order agreeing (they do
/// for lowercase hyphenated uuids); if they ever did not, rows would be deleted wrongly, so
/// this is checked rather than assumed.
fn check_key_order(table: &Table, after: &str, rows: &RowBlock) -> Result<(), SyncError> {
    let mut previous = after;
    for row in 0..rows.len() {
        let id = key(table, rows, row)?;
        if id <= previous {
            return Err(SyncError::fatal(format!(
                "{} snapshot is not in key order ({id} after {previous})",
                table.name
            )));
        }
        previous = id;
    }
    Ok(())
}

fn replica_is_empty(tx: &Transaction<'_>) -> rusqlite::Result<bool> {
    for table in TABLES {
        let any: bool = tx.query_row(
            &format!("select exists (select 1 from {})", table.name),
            [],
            |r| r.get(0),
        )?;
        if any {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `(name, create statement)` of every index on the replicated tables.
fn replicated_indexes(tx: &Transaction<'_>) -> rusqlite::Result<Vec<(String, String)>> {
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

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::catalog::{ColumnKind, PRODUCTS};
    use crate::change::PrimaryView;
    use crate::replica::Replica;

    /// `PRODUCTS` rows with the given ids (uuid text) and `name`.
    fn products(ids: &[&str], name: &str) -> RowBlock {
        let mut rows = RowBlock::new(PRODUCTS.columns.len(), ids.len());
        for id in ids {
            for column in PRODUCTS.columns {
                match (column.name, column.kind) {
                    ("id", _) => rows.push_text(id),
                    ("name", _) => rows.push_text(name),
                    (_, ColumnKind::Int4 | ColumnKind::Int8) => rows.push_integer(1),
                    (_, ColumnKind::Timestamptz) => rows.push_text("2026-11-25T00:00:00.000000Z"),
                    _ => rows.push_text("x"),
                }
            }
        }
        rows
    }

    fn id(n: u8) -> String {
        format!("00000000-0000-0000-0000-0000000000{n:02x}")
    }

    /// Loads a snapshot of `rows` (one chunk) through the replica's writer.
    async fn load(replica: &Replica, rows: RowBlock, key_order: bool) -> ReplicaState {
        let (sink, items) = mpsc::channel(4);
        let meta = SnapshotMeta {
            view: PrimaryView {
                system_id: Some(1),
                epoch: "epoch".into(),
                pruned_below: 0,
                xmin: 10,
                xmax: 12,
            },
            snapshot: "10:12:11".into(),
            key_order,
            recent: crate::history::Window {
                lo: 10,
                hi: 12,
                snapshot: Some("10:12:11".into()),
                visible: true,
                digest: Default::default(),
            },
        };
        for item in [
            SnapshotItem::Begin(meta),
            SnapshotItem::Rows(&PRODUCTS, rows),
            SnapshotItem::End,
        ] {
            sink.send(item).await.unwrap();
        }
        drop(sink);
        replica
            .with_writer(move |conn| load_snapshot(conn, items, false))
            .await
            .unwrap()
    }

    /// `(id, name)` of every product, and the number of indexes on the replicated tables.
    async fn contents(replica: &Replica) -> (Vec<(String, String)>, usize, i64) {
        replica
            .with_writer(|conn| {
                let rows = conn
                    .prepare("select id, name from products order by id")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                let tx = conn.transaction()?;
                let indexes = replicated_indexes(&tx)?.len();
                let cache: i64 = tx.pragma_query_value(None, "cache_size", |r| r.get(0))?;
                Ok((rows, indexes, cache))
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn snapshots_in_any_order_replace_the_replica_and_leave_its_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(&dir.path().join("replica.db"), 1).unwrap();
        let (_, indexes, cache) = contents(&replica).await;

        // Empty replica, rows as stored on the primary (not in key order): bulk.
        let state = load(&replica, products(&[&id(3), &id(1), &id(2)], "a"), false).await;
        assert_eq!(state.watermark, 10);
        let (rows, after, cache_after) = contents(&replica).await;
        let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, [id(1), id(2), id(3)]);
        assert_eq!(
            (after, cache_after),
            (indexes, cache),
            "indexes rebuilt, cache restored"
        );

        // Over it, in key order: merged (row 1 gone, 2 changed, 4 new).
        load(&replica, products(&[&id(2), &id(4)], "b"), true).await;
        let (rows, ..) = contents(&replica).await;
        assert_eq!(rows, [(id(2), "b".into()), (id(4), "b".into())]);

        // Over it, not in key order (an empty replica's copy, filled meanwhile by another
        // process): replaced whole, not merged, so no key-order error either.
        load(&replica, products(&[&id(9), &id(2)], "c"), false).await;
        let (rows, after, cache_after) = contents(&replica).await;
        assert_eq!(rows, [(id(2), "c".into()), (id(9), "c".into())]);
        assert_eq!((after, cache_after), (indexes, cache));
    }
}
