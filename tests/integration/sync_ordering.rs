//! Transactions commit in an order that is not txid order: the replica must still end with
//! the value the primary ends with, and a delete must not be undone by a late update.

use auto_order_sync::rusqlite::OptionalExtension;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::support::edge::{assert_same_as_primary, fast_config};
use crate::support::{TestDb, TestEdge};

/// Arrange a row R; transaction A takes its txid first; B (higher txid) updates R and
/// commits; then A runs `a_does` on R and commits.
async fn a_after_b(a_does: &str) -> (TestDb, TestEdge, Uuid, tempfile::TempDir) {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start(&db.url, dir.path(), fast_config()).await;
    let r = Uuid::new_v4();
    db.client
        .execute(
            "insert into products (id, owner_id, name) values ($1, 'u', 'original')",
            &[&r],
        )
        .await
        .unwrap();
    edge.catch_up(&db).await;

    let mut a = db.connect().await;
    let mut b = db.connect().await;
    let ta = a.transaction().await.unwrap();
    let a_txid: i64 = ta
        .query_one("select pg_current_xact_id()::text::bigint", &[])
        .await
        .unwrap()
        .get(0);
    let tb = b.transaction().await.unwrap();
    tb.execute("update products set name = 'B' where id = $1", &[&r])
        .await
        .unwrap();
    let b_txid: i64 = tb
        .query_one("select pg_current_xact_id()::text::bigint", &[])
        .await
        .unwrap()
        .get(0);
    tb.commit().await.unwrap();
    assert!(a_txid < b_txid, "A took its txid first");
    ta.execute(a_does, &[&r]).await.unwrap();
    ta.commit().await.unwrap();
    (db, edge, r, dir)
}

fn replica_name(edge: &TestEdge, id: Uuid) -> Option<String> {
    edge.reader()
        .query_row(
            "select name from products where id = ?1",
            [id.to_string()],
            |r| r.get(0),
        )
        .optional()
        .unwrap()
}

#[tokio::test]
async fn a_lower_txid_committing_last_wins_over_a_higher_one() {
    let (db, edge, r, _dir) = a_after_b("update products set name = 'A' where id = $1").await;

    edge.catch_up(&db).await;

    assert_eq!(replica_name(&edge, r).as_deref(), Some("A"));
    assert_same_as_primary(&db, &edge).await;
}

#[tokio::test]
async fn deleted_row_is_not_resurrected_by_a_late_update() {
    let (db, edge, r, _dir) = a_after_b("delete from products where id = $1").await;

    edge.catch_up(&db).await;

    assert_eq!(replica_name(&edge, r), None);
    assert_same_as_primary(&db, &edge).await;
}

#[tokio::test]
async fn a_reinserted_row_comes_back_with_its_new_values() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start(&db.url, dir.path(), fast_config()).await;
    let r = Uuid::new_v4();
    for name in ["first", "second"] {
        db.client
            .execute(
                "insert into products (id, owner_id, name) values ($1, 'u', $2)",
                &[&r, &name],
            )
            .await
            .unwrap();
        db.client
            .execute("delete from products where id = $1", &[&r])
            .await
            .unwrap();
    }
    db.client
        .execute(
            "insert into products (id, owner_id, name) values ($1, 'u', 'third')",
            &[&r],
        )
        .await
        .unwrap();

    edge.catch_up(&db).await;

    assert_eq!(replica_name(&edge, r).as_deref(), Some("third"));
    // Tombstones of the earlier deletes expire once the watermark passes the xmax of the
    // pull that brought them; a second fence is allocated after that pull.
    edge.catch_up(&db).await;
    let tombstones: i64 = edge
        .reader()
        .query_row("select count(*) from sync_tombstones", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        tombstones, 0,
        "tombstones are dropped once no older change can arrive"
    );
}

/// Waits until `n` lock requests in this test's database are blocked.
async fn wait_for_blocked_locks(db: &TestDb, n: i64) {
    let client = db.connect().await;
    let client = &client;
    crate::support::wait_until(
        "writers blocked on row locks",
        std::time::Duration::from_secs(30),
        || async move {
            let blocked: i64 = client
                .query_one(
                    "select count(*) from pg_stat_activity
                      where datname = current_database() and wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            blocked >= n
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_that_waited_for_a_delete_of_its_key_survives_it() {
    // Arrange: rows X and Y; T4 holds Y's lock, so T2's `delete X, Y` deletes X and then
    // waits (its AFTER triggers fire only at the end of its statement).
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start(&db.url, dir.path(), fast_config()).await;
    let x = Uuid::from_u128(1);
    let y = Uuid::from_u128(u128::MAX);
    for id in [x, y] {
        db.client
            .execute(
                "insert into products (id, owner_id, name) values ($1, 'u', 'before')",
                &[&id],
            )
            .await
            .unwrap();
    }
    edge.catch_up(&db).await;
    let mut t4 = db.connect().await;
    let holder = t4.transaction().await.unwrap();
    holder
        .execute("update products set name = 'held' where id = $1", &[&y])
        .await
        .unwrap();
    let t2 = db.connect().await;
    let delete = tokio::spawn(async move {
        t2.batch_execute(&format!(
            "begin; delete from products where id in ('{x}', '{y}'); commit;"
        ))
        .await
    });
    wait_for_blocked_locks(&db, 1).await;

    // Act: T3 re-inserts X; its BEFORE trigger runs now, then it waits for T2's delete.
    let t3 = db.connect().await;
    let insert = tokio::spawn(async move {
        t3.execute(
            "insert into products (id, owner_id, name) values ($1, 'u', 'reborn')
             on conflict (id) do nothing",
            &[&x],
        )
        .await
    });
    wait_for_blocked_locks(&db, 2).await;
    holder.commit().await.unwrap();
    delete.await.unwrap().unwrap();
    assert_eq!(
        insert.await.unwrap().unwrap(),
        1,
        "the insert went in after the delete"
    );

    // Assert: X exists on the primary, so it must exist in the replica.
    edge.catch_up(&db).await;
    assert_eq!(replica_name(&edge, x).as_deref(), Some("reborn"));
    assert_same_as_primary(&db, &edge).await;
}

/// A change committed behind an open transaction (it holds the horizon) that then rolls
/// back: a rollback sends no NOTIFY, so the engine must look again by itself, soon, not at
/// the next fallback poll (here 30 s). The same holds for a transaction in another database
/// of the cluster, or one without replicated writes.
#[tokio::test]
async fn a_change_held_back_by_a_rolled_back_transaction_is_applied_without_the_fallback_poll() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = auto_order_sync::EngineConfig {
        poll_interval: Duration::from_secs(30),
        ..fast_config()
    };
    let edge = TestEdge::start(&db.url, dir.path(), config).await;
    edge.catch_up(&db).await;

    let mut a = db.connect().await;
    let ta = a.transaction().await.unwrap();
    ta.query_one("select pg_current_xact_id()", &[])
        .await
        .unwrap();
    let r = Uuid::new_v4();
    db.client
        .execute(
            "insert into products (id, owner_id, name) values ($1, 'u', 'behind A')",
            &[&r],
        )
        .await
        .unwrap();
    // Its NOTIFY wakes the engine, whose pulls stop below A.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(replica_name(&edge, r), None, "A holds the horizon");

    ta.rollback().await.unwrap();
    let started = Instant::now();
    while replica_name(&edge, r).is_none() {
        // Well below the 30 s poll, with room for other tests' transactions: the horizon is
        // cluster-wide, so one of theirs can hold R back for a few seconds more.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the held-back change waited for the fallback poll: {:?}",
            edge.handle.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_same_as_primary(&db, &edge).await;
}
