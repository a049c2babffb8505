//! Recovery without an operator: pruned history and a replaced primary lead to a resync by
//! themselves; an unreachable primary is retried until it returns (guarantee 5); a schema
//! mismatch is reported as fatal while reads go on.

use std::net::SocketAddr;
use std::time::Duration;

use auto_order_sync::handle::ResyncReason;
use auto_order_sync::pg::prune::prune_changes;

use crate::support::edge::{assert_same_as_primary, fast_config};
use crate::support::{Relay, TestDb, TestEdge, wait_until};

async fn insert_products(db: &TestDb, owner: &str, n: i64) {
    db.client
        .execute(
            "insert into products (owner_id, name) select $1, 'p' || g from generate_series(1, $2::bigint) g",
            &[&owner, &n],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_cursor_behind_the_prune_point_resyncs_by_itself() {
    // Arrange: a synced edge, stopped; changes it has not seen are then pruned.
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start(&db.url, dir.path(), fast_config()).await;
    insert_products(&db, "before", 10).await;
    edge.catch_up(&db).await;
    let watermark = edge.handle.watermark();
    edge.stop().await;
    insert_products(&db, "missed", 10).await;
    db.client
        .execute("delete from products where owner_id = 'before'", &[])
        .await
        .unwrap();
    // Prune until the prune point passes the stopped edge's cursor (the horizon is
    // cluster-wide: other tests' open transactions can hold it back for a moment).
    let client = std::sync::Arc::new(tokio::sync::Mutex::new(db.connect().await));
    wait_until(
        "the prune point passes the edge's cursor",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            async move {
                let mut client = client.lock().await;
                let report = prune_changes(&mut client, Duration::ZERO).await.unwrap();
                report.pruned_below > watermark
            }
        },
    )
    .await;

    // Act
    let edge = TestEdge::start(&db.url, dir.path(), fast_config()).await;
    edge.catch_up(&db).await;

    // Assert
    let last = edge.handle.status().last_resync.expect("a resync ran");
    assert_eq!(last.reason, ResyncReason::Pruned);
    assert_same_as_primary(&db, &edge).await;
}

#[tokio::test]
async fn a_replaced_primary_is_detected_and_the_replica_rebuilt() {
    // Arrange: a replica of one primary...
    let old = TestDb::new().await;
    insert_products(&old, "old", 5).await;
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start(&old.url, dir.path(), fast_config()).await;
    edge.catch_up(&old).await;
    edge.stop().await;

    // Act: ...pointed at another one (a new sync epoch, as after a restore elsewhere).
    let new = TestDb::new().await;
    insert_products(&new, "new", 7).await;
    let edge = TestEdge::start(&new.url, dir.path(), fast_config()).await;
    edge.catch_up(&new).await;

    // Assert
    let last = edge.handle.status().last_resync.expect("a resync ran");
    assert_eq!(last.reason, ResyncReason::PrimaryChanged);
    assert_same_as_primary(&new, &edge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_primary_is_retried_and_the_edge_catches_up_when_it_returns() {
    // Arrange: an edge reaching Postgres through a relay.
    let db = TestDb::new().await;
    let mut relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], 5432))).await;
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start(&relay.url_for(&db.url), dir.path(), fast_config()).await;
    insert_products(&db, "before", 3).await;
    edge.catch_up(&db).await;

    // Act: cut the primary off (connection refused), write meanwhile, then restore.
    relay.cut();
    let handle = edge.handle.clone();
    wait_until("the edge notices", Duration::from_secs(30), || {
        let h = handle.clone();
        async move { !h.status().primary_reachable && h.status().last_error.is_some() }
    })
    .await;
    insert_products(&db, "during", 4).await;
    let reader = edge.reader();
    let served: i64 = reader
        .query_row("select count(*) from products", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        served, 3,
        "reads go on from the replica while the primary is away"
    );
    relay.restore().await;

    // Assert
    edge.catch_up(&db).await;
    assert!(edge.handle.status().primary_reachable);
    assert_same_as_primary(&db, &edge).await;
}

#[tokio::test]
async fn a_column_dropped_from_what_the_binary_reads_is_a_fatal_error_in_the_status() {
    // Arrange: a synced edge.
    let db = TestDb::new().await;
    insert_products(&db, "u", 2).await;
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start(&db.url, dir.path(), fast_config()).await;
    edge.catch_up(&db).await;

    // Act: a destructive migration (contract before the binary stopped reading the column).
    db.client
        .batch_execute("alter table products drop column notes")
        .await
        .unwrap();
    insert_products(&db, "u", 1).await;

    // Assert: a fatal, precise error; the replica keeps its data.
    let handle = edge.handle.clone();
    wait_until("fatal error reported", Duration::from_secs(30), || {
        let h = handle.clone();
        async move { h.status().last_error_fatal }
    })
    .await;
    let status = edge.handle.status();
    let error = status.last_error.clone().unwrap();
    assert!(error.contains("products.notes"), "{error}");
    assert!(
        status.problem(Duration::from_secs(60)).is_some(),
        "never ok while failing"
    );
    let rows: i64 = edge
        .reader()
        .query_row("select count(*) from products", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_horizon_is_reported_with_the_session_that_holds_it() {
    // Arrange: a synced edge that looks up the holder quickly.
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = auto_order_sync::EngineConfig {
        holder_lookup_after: Duration::from_millis(300),
        ..fast_config()
    };
    let edge = TestEdge::start(&db.url, dir.path(), config).await;
    edge.catch_up(&db).await;

    // Act: a session opens a transaction with a txid and keeps it open; another commits.
    let holder = db.connect().await;
    holder
        .batch_execute(
            "set application_name = 'nightly-report'; begin; select pg_current_xact_id();",
        )
        .await
        .unwrap();
    insert_products(&db, "waiting", 1).await;

    // Assert: the status says the horizon is held, by whom, and the replica is stale.
    let handle = edge.handle.clone();
    wait_until("the holder is named", Duration::from_secs(30), || {
        let h = handle.clone();
        async move {
            h.status()
                .horizon_holder
                .is_some_and(|x| x.application_name.as_deref() == Some("nightly-report"))
        }
    })
    .await;
    let status = edge.handle.status();
    assert!(status.horizon_held, "{status:?}");
    assert!(status.staleness().unwrap() >= Duration::from_millis(300));
    holder.batch_execute("rollback").await.unwrap();
    edge.catch_up(&db).await;
    let handle = edge.handle.clone();
    wait_until("the horizon is free", Duration::from_secs(30), || {
        let h = handle.clone();
        async move { !h.status().horizon_held && h.status().horizon_holder.is_none() }
    })
    .await;
}
