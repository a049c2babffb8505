//! Resync: readers never see an empty or half-loaded replica, the replica never goes back in
//! time, and changes made during and after the resync arrive.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use auto_order_sync::handle::ResyncReason;
use auto_order_sync::{Engine, PgConnector, Replica, rusqlite};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_by_another_process_under_a_running_edge_is_followed() {
    // Arrange: a running edge, caught up. Its engine keeps the replica's cursor in memory
    // between pulls.
    let db = TestDb::new().await;
    seed_with_orders(&db, 500).await;
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start(&db.url, dir.path(), fast_config()).await;
    edge.catch_up(&db).await;
    let batches = edge.handle.status().applied_batches;

    // Act: `auto-order resync` (an engine of its own on the same file) while the edge runs,
    // between writes.
    db.client
        .batch_execute(
            "update products set price_cents = 1
              where id in (select id from products order by id limit 50)",
        )
        .await
        .unwrap();
    let replica = Replica::open(&dir.path().join("replica.db"), 1).unwrap();
    let connector = PgConnector::from_url(&db.url).unwrap();
    let (mut outside, _) = Engine::new(connector, replica, fast_config())
        .await
        .unwrap();
    outside.resync_now().await.unwrap();
    drop(outside);
    db.client
        .batch_execute(
            "update products set price_cents = 2
              where id in (select id from products order by id desc limit 50);
             delete from orders where id in (select id from orders order by id limit 10);",
        )
        .await
        .unwrap();
    edge.catch_up(&db).await;

    // Assert: the edge noticed the moved cursor and went on from it.
    assert!(edge.handle.status().applied_batches > batches);
    assert_same_as_primary(&db, &edge).await;
}

/// Rows for the drift test: `n` products of one owner, one order each.
async fn seed_with_orders(db: &TestDb, n: i64) {
    db.client
        .batch_execute(&format!(
            "insert into products (owner_id, name) select 'drift', 'p' || g from generate_series(1, {n}) g;
             insert into orders (owner_id, product_id, quantity, ordered_at)
             select 'drift', id, 1, now() from products;"
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_resync_repairs_a_replica_that_drifted_from_the_primary() {
    // Arrange: a replica of products and orders (several of the snapshot's 4,096-row chunks
    // each, so that their comparisons run on different workers)...
    let db = TestDb::new().await;
    seed_with_orders(&db, 10_000).await;
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start(&db.url, dir.path(), fast_config()).await;
    edge.catch_up(&db).await;
    // ...that drifted both ways: the primary was edited with its triggers off (no change
    // log, as an operator's repair script might), and the replica file was edited by hand.
    db.client
        .batch_execute(
            "set session_replication_role = replica;
             update products set name = 'renamed behind the log'
              where id = (select id from products order by id limit 1);
             delete from orders where id = (select id from orders order by id desc limit 1);
             insert into products (owner_id, name) values ('drift', 'inserted behind the log');
             reset session_replication_role;",
        )
        .await
        .unwrap();
    {
        let replica = rusqlite::Connection::open(dir.path().join("replica.db")).unwrap();
        replica.busy_timeout(Duration::from_secs(5)).unwrap();
        replica
            .execute_batch(
                "update products set notes = 'edited in the file'
                  where id = (select max(id) from products);
                 delete from orders where id = (select min(id) from orders);
                 insert into products (id, owner_id, name, reorder_quantity, created_at,
                                       updated_at, version)
                 values ('ffffffff-ffff-4fff-8fff-ffffffffffff', 'ghost', 'not on the primary',
                         1, '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', 1);",
            )
            .unwrap();
    }

    // Act: a forced resync, then ordinary changes to rows it kept as they were.
    let resyncs = edge.handle.status().resyncs;
    assert!(edge.handle.request_resync());
    let handle = edge.handle.clone();
    wait_until("resync finished", Duration::from_secs(60), || {
        let h = handle.clone();
        async move { h.status().resyncs > resyncs }
    })
    .await;
    db.client
        .batch_execute(
            "update products set price_cents = 5
              where id in (select id from products order by id limit 10 offset 100);",
        )
        .await
        .unwrap();
    edge.catch_up(&db).await;

    // Assert
    assert_same_as_primary(&db, &edge).await;
    let ghost: i64 = edge
        .reader()
        .query_row(
            "select count(*) from products where owner_id = 'ghost'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ghost, 0);
}

#[tokio::test]
async fn a_replica_of_an_older_layout_is_dropped_and_rebuilt() {
    // Arrange: a replica file whose tables have another layout (as an older binary made).
    let db = TestDb::new().await;
    seed_with_orders(&db, 10).await;
    let dir = tempfile::tempdir().unwrap();
    {
        let old = rusqlite::Connection::open(dir.path().join("replica.db")).unwrap();
        old.execute_batch(
            "create table products (id text not null, name text);
             insert into products values ('x', 'stale');
             create table sync_state (singleton integer primary key, watermark integer);
             insert into sync_state values (1, 5);
             pragma user_version = 1;",
        )
        .unwrap();
    }

    // Act
    let edge = TestEdge::start(&db.url, dir.path(), fast_config()).await;
    edge.catch_up(&db).await;

    // Assert
    let last = edge
        .handle
        .status()
        .last_resync
        .expect("rebuilt by a resync");
    assert_eq!(last.reason, ResyncReason::EmptyReplica);
    assert_same_as_primary(&db, &edge).await;
}
