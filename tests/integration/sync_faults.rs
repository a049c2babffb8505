//! Connection cuts in the middle of a pull and of a resync: nothing partial is ever visible,
//! and the replica converges once the primary is back, by itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use auto_order_sync::handle::{Phase, ResyncReason};

use crate::support::edge::{assert_same_as_primary, fast_config};
use crate::support::{Relay, TestDb, TestEdge, wait_until};

const ROWS: i64 = 50_000;

async fn seed(db: &TestDb, owner: &str, rows: i64) {
    db.client
        .execute(
            "insert into products (owner_id, name) select $1, 'p' || g
               from generate_series(1, $2::bigint) g",
            &[&owner, &rows],
        )
        .await
        .unwrap();
}

async fn wait_for_phase(edge: &TestEdge, phase: Phase) {
    let handle = edge.handle.clone();
    wait_until(&format!("phase {phase:?}"), Duration::from_secs(60), || {
        let h = handle.clone();
        async move { h.status().phase == phase }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_resync_leaves_the_old_replica_whole_and_the_resync_completes() {
    // Arrange: a replica of ROWS products through a relay, and a reader counting them.
    let db = TestDb::new().await;
    seed(&db, "seed", ROWS).await;
    let mut relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], 5432))).await;
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start(&relay.url_for(&db.url), dir.path(), fast_config()).await;
    edge.catch_up(&db).await;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, conn) = (stop.clone(), edge.reader());
        std::thread::spawn(move || {
            let mut smallest = i64::MAX;
            while !stop.load(Ordering::Relaxed) {
                let n: i64 = conn
                    .query_row("select count(*) from products", [], |r| r.get(0))
                    .unwrap();
                smallest = smallest.min(n);
            }
            smallest
        })
    };

    // Act: start a resync and cut the primary off while it copies.
    let resyncs = edge.handle.status().resyncs;
    edge.handle.request_resync();
    wait_for_phase(&edge, Phase::Resyncing).await;
    relay.cut();
    let handle = edge.handle.clone();
    wait_until("the cut is noticed", Duration::from_secs(30), || {
        let h = handle.clone();
        async move { h.status().last_error.is_some() }
    })
    .await;
    seed(&db, "during", 10).await;
    relay.restore().await;

    // Assert: the requested resync still happens, and nothing partial was ever seen.
    wait_until(
        "the resync completes after the cut",
        Duration::from_secs(60),
        || {
            let h = handle.clone();
            async move { h.status().resyncs > resyncs }
        },
    )
    .await;
    edge.catch_up(&db).await;
    stop.store(true, Ordering::Relaxed);
    let smallest = reader.join().unwrap();
    assert_eq!(
        smallest, ROWS,
        "readers only ever saw the whole old or new replica"
    );
    let last = edge.handle.status().last_resync.unwrap();
    assert_eq!(last.reason, ResyncReason::Requested);
    assert_same_as_primary(&db, &edge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_catch_up_resumes_from_the_cursor_without_a_resync() {
    // Arrange: a synced edge, stopped while a backlog accumulates.
    let db = TestDb::new().await;
    let mut relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], 5432))).await;
    let dir = tempfile::tempdir().unwrap();
    let url = relay.url_for(&db.url);
    let mut config = fast_config();
    config.batch_size = 500;
    let edge = TestEdge::start(&url, dir.path(), config.clone()).await;
    edge.catch_up(&db).await;
    edge.stop().await;
    for i in 0..50 {
        seed(&db, &format!("batch-{i}"), 1000).await;
    }

    // Act: restart, and cut the connection while it is catching up.
    let edge = TestEdge::start(&url, dir.path(), config).await;
    wait_for_phase(&edge, Phase::CatchingUp).await;
    relay.cut();
    let handle = edge.handle.clone();
    wait_until("the cut is noticed", Duration::from_secs(30), || {
        let h = handle.clone();
        async move { h.status().last_error.is_some() }
    })
    .await;
    relay.restore().await;

    // Assert
    edge.catch_up(&db).await;
    assert_same_as_primary(&db, &edge).await;
    assert_eq!(edge.handle.status().resyncs, 0, "resumed from its cursor");
}
