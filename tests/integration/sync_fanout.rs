//! Fan-out without the primary paying per edge: edges pulling from a hot standby in their
//! region (falling back to the primary), and edges woken by one announcer instead of a
//! NOTIFY in every writing transaction.

use std::time::Duration;

use auto_order_sync::StandbySettings;
use auto_order_sync::pg::migrate::run_migrations;
use auto_order_sync::source::Upstream;
use tokio_postgres::Client;

use crate::support::cluster::{Cluster, wait_replayed};
use crate::support::edge::{assert_replica_matches, fast_config};
use crate::support::{Relay, TestDb, TestEdge, wait_until};

async fn fence(client: &Client) -> u64 {
    let row = client
        .query_one("select pg_current_xact_id()::text::bigint", &[])
        .await
        .unwrap();
    row.get::<_, i64>(0) as u64
}

/// A primary with the app's database and a standby of it, reached through `relay`.
async fn primary_and_standby() -> (Cluster, Cluster, Relay, Client) {
    let primary = Cluster::primary();
    let admin = primary.connect("postgres").await;
    admin.batch_execute("create database app").await.unwrap();
    let mut client = primary.connect("app").await;
    run_migrations(&mut client).await.expect("migrations");
    let standby = Cluster::standby_of(primary.addr());
    let relay = Relay::start(standby.addr()).await;
    (primary, standby, relay, client)
}

fn standby_settings() -> StandbySettings {
    StandbySettings {
        poll_interval: Duration::from_millis(20),
        lag_check: Duration::from_millis(500),
        max_lag: Duration::from_secs(5),
    }
}

/// An edge pulling from the standby behind `relay`, falling back to `primary`.
async fn edge_on_standby(primary: &Cluster, relay: &Relay, dir: &std::path::Path) -> TestEdge {
    TestEdge::start_on_standby(
        &format!("postgres://postgres@{}/app", relay.addr),
        &primary.url("app"),
        dir,
        fast_config(),
        standby_settings(),
    )
    .await
}

/// Asserts the edge applies what the primary (`client`) has committed so far (a token the
/// primary issued is honoured) and then equals it, row for row.
async fn catches_up_to_and_equals(edge: &TestEdge, client: &Client) {
    let token = fence(client).await;
    assert!(
        edge.handle
            .wait_applied(token, Duration::from_secs(60))
            .await,
        "{:?}",
        edge.handle.status()
    );
    let replica = edge.dir.join("replica.db");
    assert_replica_matches(client, &replica, &edge.handle.status()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_on_a_standby_converges_under_concurrent_writers_and_honours_tokens() {
    // Arrange: an edge pulling from the standby.
    let (primary, _standby, relay, client) = primary_and_standby().await;
    let dir = tempfile::tempdir().unwrap();
    let edge = edge_on_standby(&primary, &relay, dir.path()).await;

    // Act: four writers on the primary, inserting, updating and deleting.
    let mut writers = Vec::new();
    for w in 0..4 {
        let client = primary.connect("app").await;
        writers.push(tokio::spawn(async move {
            let owner = format!("w{w}");
            for i in 0..40 {
                let sql = match i % 4 {
                    0 | 1 => "insert into products (owner_id, name) values ($1, 'x')",
                    2 => "update products set name = name || '+' where id = (select id from products where owner_id = $1 order by id limit 1)",
                    _ => "delete from products where id = (select id from products where owner_id = $1 order by id desc limit 1)",
                };
                client.execute(sql, &[&owner]).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }

    // Assert: a token (txid) the primary issued is honoured: once the edge says it applied
    // it, the replica holds everything committed before it; and it came from the standby.
    catches_up_to_and_equals(&edge, &client).await;
    let status = edge.handle.status();
    assert_eq!(status.upstream, Upstream::Standby, "{status:?}");
    assert_eq!(status.forks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_falls_back_to_the_primary_when_its_standby_stops_and_says_so() {
    // Arrange: an edge on the standby, caught up.
    let (primary, standby, mut relay, client) = primary_and_standby().await;
    client
        .batch_execute("insert into products (owner_id, name) values ('u', 'before')")
        .await
        .unwrap();
    wait_replayed(&client, &standby.connect("app").await).await;
    let dir = tempfile::tempdir().unwrap();
    let edge = edge_on_standby(&primary, &relay, dir.path()).await;
    let token = fence(&client).await;
    assert!(
        edge.handle
            .wait_applied(token, Duration::from_secs(60))
            .await
    );

    // Act: the standby goes away; the primary takes writes.
    relay.cut();
    client
        .batch_execute("insert into products (owner_id, name) values ('u', 'after')")
        .await
        .unwrap();

    // Assert: the edge catches up from the primary, and its status says why.
    catches_up_to_and_equals(&edge, &client).await;
    let status = edge.handle.status();
    assert_eq!(status.upstream, Upstream::Primary, "{status:?}");
    let note = status.upstream_note.unwrap_or_default();
    assert!(note.contains("standby unreachable"), "{note}");
    drop(standby);
}

#[tokio::test]
async fn the_announcer_wakes_an_edge_long_before_its_poll_would() {
    // Arrange: an edge whose fallback poll is a minute.
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = auto_order_sync::EngineConfig {
        poll_interval: Duration::from_secs(60),
        ..fast_config()
    };
    let edge = TestEdge::start(&db.url, dir.path(), config).await;
    let handle = edge.handle.clone();
    wait_until("the first snapshot", Duration::from_secs(30), || {
        let h = handle.clone();
        async move { h.is_ready() }
    })
    .await;

    // A listener of the test's own: the write's transaction no longer notifies (V4), so a
    // notification after it can only come from the announcer. (The edge alone could also
    // pick the change up by its quick looks while another test's transaction holds the
    // cluster-wide horizon.)
    let heard = std::sync::Arc::new(tokio::sync::Notify::new());
    let _listener = auto_order_sync::PgConnector::from_url(&db.url)
        .unwrap()
        .connect(Some(heard.clone()))
        .await
        .unwrap();

    // Act: a write by someone else (not this edge's own write path, which wakes it itself).
    db.client
        .batch_execute("insert into products (owner_id, name) values ('u', 'announced')")
        .await
        .unwrap();

    // Assert: the announcer says so, and the change arrives without the edge being asked
    // (no wait_applied, which wakes the engine), well within the poll.
    tokio::time::timeout(Duration::from_secs(20), heard.notified())
        .await
        .expect("the announcer notifies sync_changes");
    let reader = edge.reader();
    wait_until(
        "the change is announced and pulled",
        Duration::from_secs(20),
        || {
            let n: i64 = reader
                .query_row("select count(*) from products", [], |r| r.get(0))
                .unwrap();
            async move { n == 1 }
        },
    )
    .await;
}
