//! Guarantee 2: a reader never sees part of a primary transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::support::edge::{assert_same_as_primary, fast_config};
use crate::support::{TestDb, TestEdge};

const TOTAL: i64 = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_never_sees_a_transfer_half_applied() {
    // Arrange: two rows whose quantities always sum to TOTAL on the primary. Batches of
    // three changes force cuts between and inside transactions.
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_config();
    config.batch_size = 3;
    let edge = TestEdge::start(&db.url, dir.path(), config).await;
    let (p1, p2) = (Uuid::new_v4(), Uuid::new_v4());
    db.client
        .execute(
            "insert into products (id, owner_id, name, reorder_quantity)
             values ($1, 'u', 'left', $3), ($2, 'u', 'right', $3)",
            &[&p1, &p2, &(TOTAL as i32 / 2)],
        )
        .await
        .unwrap();
    edge.catch_up(&db).await;

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, reads, conn) = (stop.clone(), reads.clone(), edge.reader());
        std::thread::spawn(move || {
            let mut broken = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sum: i64 = conn
                    .query_row("select sum(reorder_quantity) from products", [], |r| {
                        r.get(0)
                    })
                    .unwrap();
                if sum != TOTAL {
                    broken.push(sum);
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
            broken
        })
    };

    // Act: 300 transfers, each one transaction updating both rows.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..300 {
        let amount = rng.random_range(-20..=20i32);
        db.client
            .execute(
                "update products set reorder_quantity = reorder_quantity
                   + case when id = $1 then $3::int else -$3::int end
                 where id in ($1, $2) and (select min(reorder_quantity) from products) > 25",
                &[&p1, &p2, &amount],
            )
            .await
            .unwrap();
    }
    edge.catch_up(&db).await;
    stop.store(true, Ordering::Relaxed);
    let broken = reader.join().unwrap();

    // Assert
    assert!(
        reads.load(Ordering::Relaxed) > 100,
        "the reader was actually reading"
    );
    assert!(broken.is_empty(), "reader saw broken sums: {broken:?}");
    assert_same_as_primary(&db, &edge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_larger_than_the_batch_is_applied_whole() {
    // Arrange: batches of three changes, then one transaction of 25 rows.
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_config();
    config.batch_size = 3;
    let edge = TestEdge::start(&db.url, dir.path(), config).await;
    edge.catch_up(&db).await;
    let conn = edge.reader();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                let n: i64 = conn
                    .query_row("select count(*) from products", [], |r| r.get(0))
                    .unwrap();
                seen.insert(n);
            }
            seen
        })
    };

    // Act
    db.client
        .execute(
            "insert into products (owner_id, name) select 'u', 'p' || g from generate_series(1, 25) g",
            &[],
        )
        .await
        .unwrap();
    edge.catch_up(&db).await;
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().unwrap();

    // Assert
    assert!(
        seen.iter().all(|n| *n == 0 || *n == 25),
        "counts seen by a reader: {seen:?}"
    );
    assert_same_as_primary(&db, &edge).await;
}
