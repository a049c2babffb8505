//! The edge-cost bench (opt-in, prints figures; not part of the test run): the primary's
//! CPU time while 1, 4 and 8 edges (engines in this process, default settings) follow it at
//! a steady 300 inserts/s, pulling from the primary or from a standby of it, beside the same
//! writes with no edge. The primary's CPU is its postmaster's and backends' from `/proc`.
//!
//! ```text
//! cargo nextest run -E 'test(edge_cost_bench)' --run-ignored only --no-capture
//! ```

use std::time::Duration;

use auto_order_sync::pg::migrate::run_migrations;
use auto_order_sync::{EngineConfig, StandbySettings};

use crate::support::TestEdge;
use crate::support::cluster::{Cluster, wait_replayed};

const RATE: u64 = 300;
const SECONDS: u64 = 10;

/// Inserts at `RATE` per second for `SECONDS` on `url`.
async fn steady_writes(url: &str) {
    let client = crate::support::db::connect(url).await;
    let insert = client
        .prepare("insert into products (owner_id, name) values ('w', 'x')")
        .await
        .unwrap();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    for _ in 0..RATE * SECONDS {
        tick.tick().await;
        client.execute(&insert, &[]).await.unwrap();
    }
}

/// The primary's CPU during the steady writes, with `edges` edges following it (from the
/// standby when `standby` is given).
async fn primary_cpu(primary: &Cluster, standby: Option<&Cluster>, edges: usize) -> Duration {
    let dirs: Vec<tempfile::TempDir> = (0..edges).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut running = Vec::new();
    for dir in &dirs {
        let edge = match standby {
            None => TestEdge::start(&primary.url("app"), dir.path(), EngineConfig::default()).await,
            Some(standby) => {
                TestEdge::start_on_standby(
                    &standby.url("app"),
                    &primary.url("app"),
                    dir.path(),
                    EngineConfig::default(),
                    StandbySettings::default(),
                )
                .await
            }
        };
        running.push(edge);
    }
    for edge in &running {
        let handle = edge.handle.clone();
        crate::support::wait_until("the edge's first sync", Duration::from_secs(60), || {
            let h = handle.clone();
            async move { h.is_ready() }
        })
        .await;
    }
    let before = primary.cpu_time();
    steady_writes(&primary.url("app")).await;
    let used = primary.cpu_time() - before;
    for edge in running {
        edge.stop().await;
    }
    used
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --run-ignored only"]
async fn edge_cost_bench() {
    let primary = Cluster::primary();
    let admin = primary.connect("postgres").await;
    admin.batch_execute("create database app").await.unwrap();
    let mut local = primary.connect("app").await;
    run_migrations(&mut local).await.unwrap();
    let standby = Cluster::standby_of(primary.addr());
    wait_replayed(&local, &standby.connect("app").await).await;

    let alone = primary_cpu(&primary, None, 0).await;
    println!(
        "\n**Cost of an edge to the primary** ({RATE} inserts/s for {SECONDS} s; primary CPU \
         seconds, writes alone: {:.2} s):\n",
        alone.as_secs_f64()
    );
    println!(
        "| edges | pulling from the primary | per added edge | pulling from a standby | per added edge |"
    );
    println!("|---|---|---|---|---|");
    // The first edge also brings the announcer (one per primary, whatever the edges): the
    // first row is above the writes alone, the others are the slope from one edge.
    let share = |used: Duration, base: Duration, added: usize| {
        // CPU-seconds per second of the run, per added edge: the share of a core.
        let above = used.as_secs_f64() - base.as_secs_f64();
        format!(
            "{:.1}% of a core",
            100.0 * above / SECONDS as f64 / added as f64
        )
    };
    let mut one_edge: Option<(Duration, Duration)> = None;
    for edges in [1, 4, 8] {
        let from_primary = primary_cpu(&primary, None, edges).await;
        let from_standby = primary_cpu(&primary, Some(&standby), edges).await;
        let ((primary_base, standby_base), added) = match one_edge {
            None => ((alone, alone), 1),
            Some(bases) => (bases, edges - 1),
        };
        println!(
            "| {edges} | {:.2} s | {} | {:.2} s | {} |",
            from_primary.as_secs_f64(),
            share(from_primary, primary_base, added),
            from_standby.as_secs_f64(),
            share(from_standby, standby_base, added),
        );
        one_edge.get_or_insert((from_primary, from_standby));
    }
}
