//! Crash safety: an edge stopped between batches, or killed (SIGKILL) in the middle of
//! applying one, resumes from its cursor: no duplicates, no gaps, no full resync.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::edge::{assert_same_as_primary, fast_config};
use crate::support::{ChildGuard, TestDb, TestEdge, wait_until};

/// Commits `transactions` transactions of `rows` inserts plus as many updates each.
async fn write_backlog(db: &TestDb, transactions: usize, rows: usize) {
    for _ in 0..transactions {
        db.client
            .batch_execute(&format!(
                "begin;
                 insert into products (owner_id, name) select 'crash', 'p' || g
                   from generate_series(1, {rows}) g;
                 update products set reorder_quantity = reorder_quantity + 1
                  where owner_id = 'crash' and reorder_quantity < 3;
                 commit;"
            ))
            .await
            .unwrap();
    }
}

fn resynced_at(edge: &TestEdge) -> String {
    edge.reader()
        .query_row("select resynced_at from sync_state", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_aborted_between_batches_resumes_from_its_cursor() {
    // Arrange: a synced edge, then a backlog of many small batches.
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_config();
    config.batch_size = 50;
    let edge = TestEdge::start(&db.url, dir.path(), config.clone()).await;
    edge.catch_up(&db).await;
    let first_resync = resynced_at(&edge);
    let start = edge.handle.watermark();
    write_backlog(&db, 200, 20).await;

    // Act: abort the engine once it is part-way through the backlog, then restart it.
    let handle = edge.handle.clone();
    wait_until("some batches applied", Duration::from_secs(60), || {
        let h = handle.clone();
        async move { h.watermark() > start }
    })
    .await;
    edge.abort().await;
    let edge = TestEdge::start(&db.url, dir.path(), config).await;
    edge.catch_up(&db).await;

    // Assert
    assert_same_as_primary(&db, &edge).await;
    assert_eq!(
        resynced_at(&edge),
        first_resync,
        "no full resync was needed"
    );
    assert_eq!(edge.handle.status().resyncs, 0);
}

fn spawn_edge_process(db: &TestDb, dir: &std::path::Path) -> ChildGuard {
    ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_auto-order"))
            .arg("serve")
            .env("DATABASE_URL", &db.url)
            .env("DATA_DIR", dir)
            .env("PORT", "0")
            .env("LOG_LEVEL", "warn")
            .env("SYNC_POLL_INTERVAL_MS", "50")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the edge process"),
    )
}

fn replica_watermark(dir: &std::path::Path) -> Option<i64> {
    let path = dir.join("replica.db");
    if !path.exists() {
        return None;
    }
    let conn = crate::support::edge::open_reader(&path);
    conn.query_row("select watermark from sync_state", [], |r| r.get(0))
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_killed_mid_apply_converges_after_restart_without_a_resync() {
    // Arrange: an edge process that has done its first sync, stopped; then a backlog.
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_edge_process(&db, dir.path());
    wait_until("first sync", Duration::from_secs(60), || async {
        replica_watermark(dir.path()).is_some()
    })
    .await;
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let before = replica_watermark(dir.path()).unwrap();
    write_backlog(&db, 30, 1000).await;

    // Act: restart and SIGKILL it while it works through the backlog (twice).
    let mut killed_mid_stream = 0;
    for _ in 0..2 {
        let at_start = replica_watermark(dir.path()).unwrap();
        let mut child = spawn_edge_process(&db, dir.path());
        wait_until(
            "the edge applies something",
            Duration::from_secs(60),
            || async { replica_watermark(dir.path()).unwrap() > at_start },
        )
        .await;
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        let fence = db.fence().await as i64;
        if replica_watermark(dir.path()).unwrap() <= fence {
            killed_mid_stream += 1;
        }
    }

    // Assert: a fresh engine on the same file converges from the cursor.
    let edge = TestEdge::start(&db.url, dir.path(), fast_config()).await;
    edge.catch_up(&db).await;
    assert!(
        killed_mid_stream > 0,
        "the kills landed before the backlog was done"
    );
    assert!(replica_watermark(dir.path()).unwrap() > before);
    assert_same_as_primary(&db, &edge).await;
    assert_eq!(edge.handle.status().resyncs, 0, "no full resync was needed");
}
