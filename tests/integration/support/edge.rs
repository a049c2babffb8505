//! An edge's sync engine running in-process on a temp dir, and replica/primary comparison.

use std::path::{Path, PathBuf};
use std::time::Duration;

use auto_order_sync::catalog::{ColumnKind, TABLES};
use auto_order_sync::rusqlite::{self, Connection, OpenFlags};
use auto_order_sync::{Engine, EngineConfig, PgConnector, Replica, SyncHandle};
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::TestDb;

pub struct TestEdge {
    pub dir: PathBuf,
    pub handle: SyncHandle,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

pub fn fast_config() -> EngineConfig {
    EngineConfig {
        poll_interval: Duration::from_millis(50),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(300),
        fatal_retry: Duration::from_millis(300),
        ..EngineConfig::default()
    }
}

impl TestEdge {
    /// Starts an engine against `url` with its replica in `dir`.
    pub async fn start(url: &str, dir: &Path, config: EngineConfig) -> TestEdge {
        let connector = PgConnector::from_url(url).expect("url");
        let replica = Replica::open(&dir.join("replica.db"), 4).expect("open replica");
        let (engine, handle) = Engine::new(connector.clone(), replica, config)
            .await
            .expect("engine");
        Self::run(engine, handle, connector, dir)
    }

    /// Runs `engine` and, as `serve` does, an announcer on `primary` (the edges of one
    /// database elect one among them).
    fn run(engine: Engine, handle: SyncHandle, primary: PgConnector, dir: &Path) -> TestEdge {
        let stop = CancellationToken::new();
        tokio::spawn(auto_order_sync::pg::announce::run(
            primary,
            true,
            stop.clone().cancelled_owned(),
        ));
        let task = tokio::spawn(engine.run(stop.clone().cancelled_owned()));
        TestEdge {
            dir: dir.to_owned(),
            handle,
            stop,
            task: Some(task),
        }
    }

    /// Starts an engine that pulls from the standby at `standby_url` and falls back to the
    /// primary at `primary_url` (as `SYNC_DATABASE_URL` does).
    pub async fn start_on_standby(
        standby_url: &str,
        primary_url: &str,
        dir: &Path,
        config: EngineConfig,
        settings: auto_order_sync::StandbySettings,
    ) -> TestEdge {
        let standby = PgConnector::from_url(standby_url).expect("url");
        let primary = PgConnector::from_url(primary_url).expect("url");
        let replica = Replica::open(&dir.join("replica.db"), 4).expect("open replica");
        let (engine, handle) = Engine::new(standby, replica, config).await.expect("engine");
        let engine = engine.pull_from_standby(primary.clone(), settings);
        Self::run(engine, handle, primary, dir)
    }

    /// Stops the engine cleanly, between steps.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("engine task");
        }
    }

    /// Kills the engine task wherever it is (a crash, as far as one process can tell).
    pub async fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Waits until everything committed on `db` before this call is applied.
    pub async fn catch_up(&self, db: &TestDb) {
        let fence = db.fence().await;
        assert!(
            self.handle
                .wait_applied(fence, Duration::from_secs(120))
                .await,
            "replica did not reach txid {fence}: {:?}",
            self.handle.status()
        );
    }

    pub fn reader(&self) -> Connection {
        open_reader(&self.dir.join("replica.db"))
    }
}

impl Drop for TestEdge {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub fn open_reader(path: &Path) -> Connection {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("reader");
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

pub type Rows = Vec<Vec<Option<String>>>;

/// Every row of `table` on the primary, each column as canonical text, ordered by id.
pub async fn primary_rows(client: &Client, table: &str) -> Rows {
    let t = auto_order_sync::catalog::table(table).expect("catalog table");
    let columns: Vec<String> = t
        .columns
        .iter()
        .map(|c| match c.kind {
            ColumnKind::Timestamptz => format!(
                "to_char({} at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
                c.name
            ),
            _ => format!("{}::text", c.name),
        })
        .collect();
    let sql = format!(
        "select {} from {table} order by id::text",
        columns.join(", ")
    );
    client
        .query(&sql, &[])
        .await
        .expect("primary rows")
        .iter()
        .map(|r| (0..columns.len()).map(|i| r.get(i)).collect())
        .collect()
}

/// Every row of `table` in the replica, each column as text, ordered by id.
pub fn replica_rows(conn: &Connection, table: &str) -> Rows {
    let t = auto_order_sync::catalog::table(table).expect("catalog table");
    let columns: Vec<String> = t
        .column_names()
        .map(|c| format!("cast({c} as text)"))
        .collect();
    let sql = format!("select {} from {table} order by id", columns.join(", "));
    let mut stmt = conn.prepare(&sql).expect("replica query");
    stmt.query_map([], |r| {
        (0..columns.len())
            .map(|i| r.get::<_, Option<String>>(i))
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .expect("replica rows")
    .collect::<rusqlite::Result<Rows>>()
    .expect("replica rows")
}

/// Asserts the replica equals the primary, row for row and column for column.
pub async fn assert_same_as_primary(db: &TestDb, edge: &TestEdge) {
    assert_replica_file_same_as_primary(db, &edge.dir.join("replica.db"), &edge.handle.status())
        .await;
}

/// Asserts the replica file at `path` equals the primary, row for row and column for
/// column; `context` (the engine's status, say) goes into the failure message.
pub async fn assert_replica_file_same_as_primary(
    db: &TestDb,
    path: &Path,
    context: &dyn std::fmt::Debug,
) {
    assert_replica_matches(&db.client, path, context).await;
}

/// Asserts the replica file at `path` equals the database behind `primary`, row for row and
/// column for column.
pub async fn assert_replica_matches(primary: &Client, path: &Path, context: &dyn std::fmt::Debug) {
    let reader = open_reader(path);
    for table in TABLES {
        let primary = primary_rows(primary, table.name).await;
        let replica = replica_rows(&reader, table.name);
        if primary.len() != replica.len() {
            let ids = |rows: &Rows| -> std::collections::BTreeSet<Option<String>> {
                rows.iter().map(|r| r[0].clone()).collect()
            };
            let (p, r) = (ids(&primary), ids(&replica));
            panic!(
                "{}: primary has {} rows, replica {}; only on the primary: {:?}; only in the \
                 replica: {:?}; replica state: {:?}",
                table.name,
                primary.len(),
                replica.len(),
                p.difference(&r).take(5).collect::<Vec<_>>(),
                r.difference(&p).take(5).collect::<Vec<_>>(),
                context,
            );
        }
        for (p, r) in primary.iter().zip(&replica) {
            assert_eq!(p, r, "{}: row differs", table.name);
        }
    }
}
