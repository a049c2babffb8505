//! The local SQLite replica: one file, one writer (the engine), a pool of readers.
//!
//! Settings are Litestream-compatible: WAL mode (readers never block the writer and keep
//! their snapshot while a batch or a whole resync is being written), `synchronous=NORMAL`,
//! a busy timeout, and no file swaps or `VACUUM INTO`. Checkpoints run on a thread of
//! their own ([`checkpoint`]).
//!
//! - [`state`]: the persisted cursor and the primary identity it belongs to.
//! - [`apply`]: applying pulled changes (version checks, tombstones, cursor).
//! - [`load`]: replacing the whole replica with a snapshot, in one transaction.
//! - [`history`]: the applied history's windows, checked against the primary for forks.
//! - [`checkpoint`]: copying the WAL back into the database file, off the writer's path.

pub mod apply;
mod checkpoint;
pub mod history;
pub mod load;
pub mod state;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};

use crate::catalog::ColumnKind;
use crate::error::SyncError;

/// The replica schema, applied at every open (idempotent).
const SCHEMA: &str = include_str!("../../../sql/sqlite/replica.sql");

/// The layout version of [`SCHEMA`], kept in `pragma user_version`. A replica of another
/// layout is dropped at open: it is only a copy, and the engine resyncs an empty replica.
const SCHEMA_VERSION: i64 = 2;

/// Every table the schema creates, for dropping a replica of another layout.
const SCHEMA_TABLES: &[&str] = &[
    "products",
    "orders",
    "sync_tombstones",
    "sync_state",
    "sync_history",
    "sync_backfill",
];

/// Prepared statements the writer keeps.
const WRITER_STATEMENTS: usize = 32;

/// The writer's own (automatic) checkpoint threshold, in bytes of WAL (SQLite counts it in
/// pages of the file's size): the checkpoint thread does the copying, and the writer's
/// checkpoint at this size finds it nearly done and lets the WAL start over (see
/// [`checkpoint`]).
const WRITER_CHECKPOINT_BYTES: i64 = 64 << 20;

/// The page size of a new replica file, in bytes (SQLite's default is 4,096). A million-row
/// resync writes and sorts half as many pages with 8 KiB ones, and the catch-up rate does not
/// suffer (`docs/PERF.md`). A file keeps the size it was created with (a WAL database cannot
/// change it without a `VACUUM`), so replicas made before this go on with 4 KiB.
const PAGE_SIZE: u32 = 8192;

/// How long a connection waits on the file lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub type ReaderPool = r2d2::Pool<SqliteConnectionManager>;

/// The replica file. Cheap to clone.
#[derive(Clone)]
pub struct Replica {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    readers: ReaderPool,
    checkpointer: Arc<checkpoint::Checkpointer>,
}

impl Replica {
    /// Opens (creating if needed) the replica at `path` with `readers` pooled read-only
    /// connections.
    pub fn open(path: &Path, readers: u32) -> Result<Replica, SyncError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SyncError::ReplicaDir {
                dir: dir.to_owned(),
                source,
            })?;
        }
        let mut writer = Connection::open(path)?;
        // `temp_store = file`: the sorter behind an index rebuild (a resync into an empty
        // replica) spills sorted runs to temporary files (under `SQLITE_TMPDIR`, else
        // /var/tmp or /tmp; unlinked at once) and sorts them on `threads` helper threads. In
        // memory it would hold the whole sort in RAM and use no helper (see
        // `load::REBUILD_CACHE_KIB`).
        writer.busy_timeout(BUSY_TIMEOUT)?;
        // The page size first: it only takes effect before the file's first write.
        writer.pragma_update(None, "page_size", PAGE_SIZE)?;
        writer.execute_batch(
            "pragma journal_mode = wal;
             pragma synchronous = normal;
             pragma foreign_keys = off;
             pragma temp_store = file;
             pragma cache_size = -65536;
             pragma mmap_size = 268435456;
             pragma threads = 2;
             pragma journal_size_limit = 67108864;",
        )?;
        let page_size: i64 = writer.pragma_query_value(None, "page_size", |r| r.get(0))?;
        writer.pragma_update(
            None,
            "wal_autocheckpoint",
            WRITER_CHECKPOINT_BYTES / page_size,
        )?;
        // Room for every statement the applier and the loader keep (about twenty), so the
        // applier's are never parsed again after a resync used the writer.
        writer.set_prepared_statement_cache_capacity(WRITER_STATEMENTS);
        let layout: i64 = writer.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if layout != SCHEMA_VERSION {
            if layout != 0 || table_exists(&writer, "sync_state")? {
                tracing::warn!(
                    found = layout,
                    expected = SCHEMA_VERSION,
                    "replica has another layout; dropping it (a resync rebuilds it)"
                );
            }
            let tx = writer.transaction()?;
            for table in SCHEMA_TABLES {
                tx.execute(&format!("drop table if exists {table}"), [])?;
            }
            tx.execute_batch(SCHEMA)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tx.commit()?;
        }
        writer.execute_batch(SCHEMA)?;
        add_missing_columns(&mut writer)?;
        let checkpointer = Arc::new(checkpoint::Checkpointer::start(path)?);

        let manager = SqliteConnectionManager::file(path)
            .with_flags(READER_FLAGS)
            .with_init(reader_settings);
        let readers = r2d2::Pool::builder()
            .max_size(readers.max(1))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(5))
            .build(manager)?;
        Ok(Replica {
            path: path.to_owned(),
            writer: Arc::new(Mutex::new(writer)),
            readers,
            checkpointer,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pool of read-only connections (blocking: use from `spawn_blocking`).
    pub fn readers(&self) -> &ReaderPool {
        &self.readers
    }

    /// Runs `f` with the single writer connection on a blocking thread, in the caller's
    /// span.
    pub async fn with_writer<T, F>(&self, f: F) -> Result<T, SyncError>
    where
        F: FnOnce(&mut Connection) -> Result<T, SyncError> + Send + 'static,
        T: Send + 'static,
    {
        let writer = self.writer.clone();
        let checkpointer = self.checkpointer.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            // A panic while holding the lock poisons it; the connection itself is still
            // consistent (SQLite rolled the open transaction back), so keep using it.
            let mut conn = writer.lock().unwrap_or_else(|p| p.into_inner());
            let result = f(&mut conn);
            drop(conn);
            // The checkpoint thread keeps the WAL copied (see `checkpoint`).
            checkpointer.nudge();
            result
        })
        .await
        .map_err(|e| SyncError::Transient(format!("replica writer task failed: {e}")))?
    }

    /// Columns added to this replica that a resync has not filled yet (`table.column`).
    pub async fn pending_backfill(&self) -> Result<Vec<String>, SyncError> {
        self.with_writer(|conn| {
            let mut stmt = conn.prepare_cached(
                "select table_name || '.' || column_name from sync_backfill order by 1",
            )?;
            let names = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(names)
        })
        .await
    }

    /// The applied history's windows opened at or after `since_us` (all with `None`).
    pub async fn history(
        &self,
        since_us: Option<i64>,
    ) -> Result<Vec<crate::history::Window>, SyncError> {
        self.with_writer(move |conn| Ok(history::windows(conn, since_us)?))
            .await
    }

    /// The persisted sync state, `None` before the first snapshot.
    pub async fn state(&self) -> Result<Option<state::ReplicaState>, SyncError> {
        self.with_writer(|conn| Ok(state::read_state(conn)?)).await
    }
}

const READER_FLAGS: OpenFlags =
    OpenFlags::SQLITE_OPEN_READ_ONLY.union(OpenFlags::SQLITE_OPEN_NO_MUTEX);

/// The settings of every read-only connection: the pool's, and a merge's diff workers'.
fn reader_settings(c: &mut Connection) -> rusqlite::Result<()> {
    c.busy_timeout(BUSY_TIMEOUT)?;
    c.execute_batch(
        "pragma query_only = on;
         pragma cache_size = -16384;
         pragma mmap_size = 268435456;
         pragma threads = 2;",
    )
}

/// A read-only connection to the replica at `path`, set up as the pool's are.
pub(crate) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open_with_flags(path, READER_FLAGS)?;
    reader_settings(&mut conn)?;
    Ok(conn)
}

/// Brings an older replica file's tables up to this binary's catalog: each column it lacks
/// is added (null for now) and listed in `sync_backfill`, in one transaction, and the engine
/// fills the columns with a merge resync while reads go on. (A replica of another layout
/// altogether is dropped instead: see [`SCHEMA_VERSION`].)
fn add_missing_columns(conn: &mut Connection) -> Result<(), SyncError> {
    let tx = conn.transaction()?;
    for table in crate::catalog::TABLES {
        let present: Vec<String> = tx
            .prepare(&format!(
                "select name from pragma_table_info('{}')",
                table.name
            ))?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for column in table.columns {
            if present.iter().any(|p| p == column.name) {
                continue;
            }
            let affinity = match column.kind {
                ColumnKind::Int4 | ColumnKind::Int8 => "integer",
                ColumnKind::Uuid | ColumnKind::Text | ColumnKind::Timestamptz => "text",
            };
            tx.execute(
                &format!(
                    "alter table {} add column {} {affinity}",
                    table.name, column.name
                ),
                [],
            )?;
            tx.execute(
                "insert or ignore into sync_backfill (table_name, column_name) values (?1, ?2)",
                [table.name, column.name],
            )?;
            tracing::info!(
                table = table.name,
                column = column.name,
                "replica column added; a resync fills it"
            );
        }
    }
    tx.commit()?;
    Ok(())
}

fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "select exists (select 1 from sqlite_master where type = 'table' and name = ?1)",
        [name],
        |r| r.get(0),
    )
}

/// `insert into <table> (<columns>, sync_version) values (?1…?n, <version>) on conflict (id)
/// do update set <every column but id> <condition>`: how a row image is written over the
/// replica's row, by the applier (only if newer) and by a resync (unconditionally).
pub(crate) fn upsert_sql(table: &crate::catalog::Table, version: &str, condition: &str) -> String {
    let names: Vec<&str> = table.column_names().collect();
    let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
    let updates: Vec<String> = names
        .iter()
        .skip(1)
        .chain(&["sync_version"])
        .map(|n| format!("{n} = excluded.{n}"))
        .collect();
    format!(
        "insert into {t} ({cols}, sync_version) values ({vals}, {version})
         on conflict (id) do update set {updates} {condition}",
        t = table.name,
        cols = names.join(", "),
        vals = placeholders.join(", "),
        updates = updates.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(page_size, wal_autocheckpoint)` of the replica's writer.
    async fn page_settings(replica: &Replica) -> (i64, i64) {
        replica
            .with_writer(|conn| {
                let size = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
                let pages = conn.pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))?;
                Ok((size, pages))
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_new_replica_gets_large_pages_and_an_old_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let new = Replica::open(&dir.path().join("new.db"), 1).unwrap();
        assert_eq!(page_settings(&new).await, (8192, 8192));

        // A replica file from before: 4 KiB pages, already in WAL mode.
        let old_path = dir.path().join("old.db");
        let old = Connection::open(&old_path).unwrap();
        old.execute_batch(
            "pragma page_size = 4096; pragma journal_mode = wal; create table t (x);",
        )
        .unwrap();
        drop(old);
        let old = Replica::open(&old_path, 1).unwrap();
        // Its writer checkpoints at the same 64 MiB of WAL, counted in its own pages.
        assert_eq!(page_settings(&old).await, (4096, 16384));
    }
}
