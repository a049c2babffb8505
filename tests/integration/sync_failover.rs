//! The primary's lifecycle: asynchronous failovers that lose commits, and a planned
//! switchover, with clusters of the tests' own (a primary, a streaming standby fed through a
//! relay the test can cut, and an edge reaching "the primary" through a relay the test
//! re-points, as behind a leader proxy).

use std::time::Duration;

use auto_order_sync::handle::ResyncReason;
use auto_order_sync::pg::migrate::run_migrations;
use tokio_postgres::Client;

use crate::support::cluster::{Cluster, wait_replayed, wait_writable};
use crate::support::edge::{assert_replica_matches, fast_config};
use crate::support::{Relay, TestEdge, wait_until};

/// A primary with the app's database, a standby streaming from it through `wal`, and an
/// edge pulling from it through `front`.
struct Rig {
    primary: Cluster,
    standby: Cluster,
    /// The standby's replication connection: cut it and the standby stops receiving.
    wal: Relay,
    /// What the edge calls "the primary".
    front: Relay,
    old: Client,
    new: Client,
    edge: TestEdge,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Rig {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt().with_env_filter("info").try_init();
        }
        let primary = Cluster::primary();
        tracing::info!("primary up");
        let admin = primary.connect("postgres").await;
        admin.batch_execute("create database app").await.unwrap();
        let mut old = primary.connect("app").await;
        run_migrations(&mut old).await.expect("migrations");
        let wal = Relay::start(primary.addr()).await;
        let standby = Cluster::standby_of(wal.addr);
        tracing::info!("standby up");
        let new = standby.connect("app").await;
        let front = Relay::start(primary.addr()).await;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("postgres://postgres@{}/app", front.addr);
        let edge = TestEdge::start(&url, dir.path(), fast_config()).await;
        Rig {
            primary,
            standby,
            wal,
            front,
            old,
            new,
            edge,
            _dir: dir,
        }
    }

    /// Waits until the edge has applied everything committed on `client` so far.
    async fn edge_catches_up(&self, client: &Client) {
        let fence = fence(client).await;
        let applied = self
            .edge
            .handle
            .wait_applied(fence, Duration::from_secs(60))
            .await;
        assert!(
            applied,
            "edge did not reach {fence}: {:?}",
            self.edge.handle.status()
        );
    }

    /// Fails over out of the edge's sight: the edge loses its primary, the old one crashes,
    /// the standby is promoted and takes writes until its txids pass the edge's watermark
    /// (`then` writes more meanwhile); only then does the proxy let the edge reach it.
    async fn fail_over_past_the_watermark(&mut self, then: &str) {
        let watermark = self.edge.handle.watermark();
        self.front.cut();
        self.crash_and_promote().await;
        while fence(&self.new).await <= watermark + 5 {
            insert_products(&self.new, "new", 1).await;
        }
        self.new.batch_execute(then).await.unwrap();
        self.front.set_upstream(self.standby.addr());
        self.front.restore().await;
    }

    /// Fails over: the old primary crashes, the standby is promoted.
    async fn crash_and_promote(&mut self) {
        self.primary.stop("immediate");
        self.standby.promote();
        wait_writable(&self.new).await;
    }

    async fn assert_edge_equals_new_primary(&self) {
        let path = self.edge.dir.join("replica.db");
        assert_replica_matches(&self.new, &path, &self.edge.handle.status()).await;
    }
}

async fn fence(client: &Client) -> u64 {
    let row = client
        .query_one("select pg_current_xact_id()::text::bigint", &[])
        .await
        .unwrap();
    row.get::<_, i64>(0) as u64
}

async fn insert_products(client: &Client, owner: &str, n: i64) {
    client
        .execute(
            "insert into products (owner_id, name) select $1, 'p' || g from generate_series(1, $2::bigint) g",
            &[&owner, &n],
        )
        .await
        .unwrap();
}

/// Sixty small transactions: inserts, updates and deletes of `owner`'s rows.
async fn churn(client: &Client, owner: &str) {
    for i in 0..60 {
        let sql = match i % 3 {
            0 => "insert into products (owner_id, name) values ($1, 'churned')",
            1 => "update products set name = name || '+', notes = 'lost?'
                   where id = (select id from products where owner_id = $1 order by id limit 1 offset 2)",
            _ => "delete from products
                   where id = (select id from products where owner_id = $1 order by id desc limit 1)",
        };
        client.execute(sql, &[&owner]).await.unwrap();
    }
}

/// Waits until the edge has converged on `rig.new` after a fork and checks it.
async fn assert_converged_after_fork(rig: &Rig) {
    rig.edge_catches_up(&rig.new).await;
    let handle = rig.edge.handle.clone();
    wait_until("the fork is repaired", Duration::from_secs(60), || {
        let h = handle.clone();
        async move {
            let s = h.status();
            s.last_resync
                .is_some_and(|r| r.reason == ResyncReason::Forked)
        }
    })
    .await;
    rig.edge_catches_up(&rig.new).await;
    rig.assert_edge_equals_new_primary().await;
    let status = rig.edge.handle.status();
    assert!(status.forks >= 1, "{status:?}");
    assert!(status.last_fork.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_that_lost_commits_converges_even_after_new_txids_passed_the_watermark() {
    // Arrange: everything replicated to the standby and the edge...
    let mut rig = Rig::start().await;
    insert_products(&rig.old, "kept", 20).await;
    rig.edge_catches_up(&rig.old).await;
    wait_replayed(&rig.old, &rig.new).await;
    // ...then the standby stops receiving, and the edge applies commits it never gets.
    rig.wal.cut();
    churn(&rig.old, "kept").await;
    rig.edge_catches_up(&rig.old).await;

    // Act: the edge loses its primary; the standby is promoted and takes writes (updates of
    // the rows the lost commits changed or deleted too) until its txids pass the edge's
    // watermark; only then does the edge reach it.
    rig.fail_over_past_the_watermark(
        "update products set name = 'rewritten on the new primary', notes = 'new'
          where owner_id = 'kept'",
    )
    .await;

    // Assert: every column of every row is the new primary's.
    assert_converged_after_fork(&rig).await;
    let status = rig.edge.handle.status();
    assert_eq!(status.problem(Duration::from_secs(30)), None, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_that_lost_commits_converges_when_the_edge_reconnects_at_once() {
    // Arrange
    let mut rig = Rig::start().await;
    insert_products(&rig.old, "kept", 20).await;
    rig.edge_catches_up(&rig.old).await;
    wait_replayed(&rig.old, &rig.new).await;
    rig.wal.cut();
    churn(&rig.old, "kept").await;
    rig.edge_catches_up(&rig.old).await;

    // Act: the leader proxy points at the standby as soon as it is promoted.
    rig.front.set_upstream(rig.standby.addr());
    rig.crash_and_promote().await;
    churn(&rig.new, "kept").await;
    insert_products(&rig.new, "new", 5).await;

    // Assert
    assert_converged_after_fork(&rig).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_transaction_with_a_lower_txid_than_a_received_one_is_found() {
    // Arrange: transaction A takes its txid first, B after it; B commits and reaches the
    // standby; then the standby stops receiving and A commits.
    let mut rig = Rig::start().await;
    insert_products(&rig.old, "kept", 5).await;
    rig.edge_catches_up(&rig.old).await;
    let mut first = rig.primary.connect("app").await;
    let a = first.transaction().await.unwrap();
    a.execute(
        "insert into products (owner_id, name) values ('a', 'lost with a low txid')",
        &[],
    )
    .await
    .unwrap();
    insert_products(&rig.old, "b", 3).await;
    wait_replayed(&rig.old, &rig.new).await;
    rig.wal.cut();
    a.commit().await.unwrap();
    rig.edge_catches_up(&rig.old).await;

    // Act: failover; the new primary's txids pass the watermark before the edge reconnects.
    rig.fail_over_past_the_watermark("").await;

    // Assert: A's row is gone from the edge, as from the new primary.
    assert_converged_after_fork(&rig).await;
    let lost: i64 = rig
        .edge
        .reader()
        .query_row(
            "select count(*) from products where owner_id = 'a'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_switchover_keeps_the_cursor_and_serves_reads_throughout() {
    // Arrange: an edge and a standby that has everything.
    let mut rig = Rig::start().await;
    insert_products(&rig.old, "before", 30).await;
    rig.edge_catches_up(&rig.old).await;
    let resyncs_before = rig.edge.handle.status().resyncs;
    let reader = rig.edge.reader();

    // Act: a clean shutdown of the old primary (the standby receives everything), promote,
    // point the proxy at the new one, write there.
    tracing::info!("stopping");
    rig.primary.stop("fast");
    tracing::info!("stopped");
    let served: i64 = reader
        .query_row("select count(*) from products", [], |r| r.get(0))
        .unwrap();
    assert_eq!(served, 30, "reads go on while there is no primary");
    rig.standby.promote();
    wait_writable(&rig.new).await;
    tracing::info!("promoted");
    rig.front.set_upstream(rig.standby.addr());
    insert_products(&rig.new, "after", 10).await;

    // Assert: caught up with no resync and no fork.
    rig.edge_catches_up(&rig.new).await;
    rig.assert_edge_equals_new_primary().await;
    let status = rig.edge.handle.status();
    assert_eq!(status.resyncs, resyncs_before, "no resync: {status:?}");
    assert_eq!(status.forks, 0, "a switchover is not a fork: {status:?}");
    assert!(status.history_checked_at.is_some());
}
