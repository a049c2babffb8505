//! Resync: readers never see an empty or half-loaded replica, the replica never goes back in
//! time, and changes made during and after the resync arrive.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use auto_order_sync::handle::ResyncReason;

use crate::support::edge::{assert_same_as_primary, fast_config};
use crate::support::{TestDb, TestEdge, wait_until};

const SEEDED: i64 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_whole_data_throughout_forced_resyncs() {
    // Arrange: a replica of SEEDED products, and readers watching it.
    let db = TestDb::new().await;
    db.client
        .execute(
            "insert into products (owner_id, name) select 'seed', 'p' || g from generate_series(1, $1::bigint) g",
            &[&SEEDED],
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start(&db.url, dir.path(), fast_config()).await;
    edge.catch_up(&db).await;

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, conn) = (stop.clone(), edge.reader());
        std::thread::spawn(move || {
            let (mut last_count, mut last_watermark, mut reads) = (0i64, 0i64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                // One read transaction: count and cursor from the same snapshot.
                let tx = conn.unchecked_transaction().unwrap();
                let count: i64 = tx
                    .query_row("select count(*) from products", [], |r| r.get(0))
                    .unwrap();
                let watermark: i64 = tx
                    .query_row("select watermark from sync_state", [], |r| r.get(0))
                    .unwrap();
                drop(tx);
                assert!(
                    count >= SEEDED,
                    "reader saw {count} rows: empty or half loaded"
                );
                assert!(
                    count >= last_count,
                    "rows went back in time: {last_count} -> {count}"
                );
                assert!(watermark >= last_watermark, "cursor went back in time");
                (last_count, last_watermark) = (count, watermark);
                reads += 1;
            }
            reads
        })
    };

    // Act: resync three times while a writer keeps inserting, then write some more.
    let writer = {
        let client = db.connect().await;
        tokio::spawn(async move {
            for i in 0..150 {
                client
                    .execute(
                        "insert into products (owner_id, name) values ('during', $1)",
                        &[&format!("d{i}")],
                    )
                    .await
                    .unwrap();
            }
        })
    };
    for round in 1..=3u64 {
        assert!(edge.handle.request_resync());
        let handle = edge.handle.clone();
        wait_until("resync finished", Duration::from_secs(60), || {
            let h = handle.clone();
            async move { h.status().resyncs > round }
        })
        .await;
    }
    writer.await.unwrap();
    db.client
        .execute(
            "insert into products (owner_id, name) values ('after', 'a')",
            &[],
        )
        .await
        .unwrap();
    edge.catch_up(&db).await;
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("reader assertions held");

    // Assert
    assert!(reads > 10, "the reader was actually reading ({reads})");
    let last = edge.handle.status().last_resync.expect("resynced");
    assert_eq!(last.reason, ResyncReason::Requested);
    assert_same_as_primary(&db, &edge).await;
}
