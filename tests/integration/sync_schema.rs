//! Schema changes while edges run: an additive migration on the primary never stops an
//! edge of an older binary, and a newer binary fills the columns it adds to an older
//! replica file with reads up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use auto_order_sync::handle::ResyncReason;
use auto_order_sync::rusqlite::Connection;

use crate::support::edge::{assert_same_as_primary, fast_config, open_reader};
use crate::support::{TestDb, TestEdge};

async fn insert_products(db: &TestDb, owner: &str, n: i64) {
    db.client
        .execute(
            "insert into products (owner_id, name, notes) select $1, 'p' || g, 'note ' || g
               from generate_series(1, $2::bigint) g",
            &[&owner, &n],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn an_additive_migration_on_the_primary_does_not_stop_a_running_edge() {
    // Arrange: a synced edge of this binary.
    let db = TestDb::new().await;
    insert_products(&db, "u", 3).await;
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start(&db.url, dir.path(), fast_config()).await;
    edge.catch_up(&db).await;

    // Act: the primary gains a column and a replicated table this binary does not know,
    // and takes writes that use both.
    db.client
        .batch_execute(
            "alter table products add column colour text default 'red';
             create table invoices (id uuid primary key default gen_random_uuid(),
                                    owner_id text not null, version bigint not null default 0);
             select sync.replicate('invoices');
             insert into invoices (owner_id) values ('u');
             update products set colour = 'blue', name = name || '!';",
        )
        .await
        .unwrap();
    insert_products(&db, "u", 2).await;
    // A reconnect runs the schema check again (as after a restart of the edge's connection).
    edge.catch_up(&db).await;

    // Assert: the edge applied everything it knows, and says the primary is newer.
    assert_same_as_primary(&db, &edge).await;
    let status = edge.handle.status();
    assert_eq!(status.last_error, None, "{status:?}");
    assert!(
        status.ignored_changes >= 1,
        "the invoice was ignored: {status:?}"
    );
    edge.stop().await;
    let edge = TestEdge::start(&db.url, dir.path(), fast_config()).await;
    edge.catch_up(&db).await;
    // The replica was already caught up: wait for the connect (and its schema check) itself.
    let handle = edge.handle.clone();
    crate::support::wait_until(
        "the restarted edge streams",
        Duration::from_secs(30),
        || {
            let phase = handle.status().phase;
            async move { phase == auto_order_sync::handle::Phase::Streaming }
        },
    )
    .await;
    let status = edge.handle.status();
    assert_eq!(
        status.primary_schema_newer,
        vec!["invoices".to_owned(), "products.colour".to_owned()]
    );
    assert_eq!(status.problem(Duration::from_secs(30)), None, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_binary_fills_the_columns_it_adds_to_an_older_replica_with_reads_up() {
    // Arrange: a replica file of an "older binary" (one without `products.notes`).
    let db = TestDb::new().await;
    insert_products(&db, "u", 500).await;
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start(&db.url, dir.path(), fast_config()).await;
    edge.catch_up(&db).await;
    edge.stop().await;
    let path = dir.path().join("replica.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("alter table products drop column notes")
        .unwrap();

    // Act: this binary opens it while a reader keeps counting the rows.
    let stop = Arc::new(AtomicBool::new(false));
    let fewest = Arc::new(AtomicI64::new(i64::MAX));
    let reader = {
        let (stop, fewest, path) = (stop.clone(), fewest.clone(), path.clone());
        std::thread::spawn(move || {
            let conn = open_reader(&path);
            while !stop.load(Ordering::Relaxed) {
                let n: i64 = conn
                    .query_row("select count(*) from products", [], |r| r.get(0))
                    .unwrap();
                fewest.fetch_min(n, Ordering::Relaxed);
            }
        })
    };
    let edge = TestEdge::start(&db.url, dir.path(), fast_config()).await;
    edge.catch_up(&db).await;
    let handle = edge.handle.clone();
    crate::support::wait_until("the backfill resync", Duration::from_secs(30), || {
        let h = handle.clone();
        async move {
            h.status()
                .last_resync
                .is_some_and(|r| r.reason == ResyncReason::SchemaUpgrade)
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();

    // Assert: the column is filled, and readers never saw fewer rows.
    assert_same_as_primary(&db, &edge).await;
    assert_eq!(fewest.load(Ordering::Relaxed), 500, "no read downtime");
    assert!(
        edge.handle
            .replica()
            .pending_backfill()
            .await
            .unwrap()
            .is_empty(),
        "nothing left to fill"
    );
}
