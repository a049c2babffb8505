//! The distance bench (opt-in, prints figures; not part of the test run): an edge far from
//! its primary, behind a relay that delays every byte (`DISTANCE_ONE_WAY_MS`, default 50:
//! a round trip of 100 ms), pulling from the primary through that relay, or from a standby
//! in its own region whose WAL stream crosses the same distance. Figures in round trips
//! beside the physical floor (a write needs one, a change needs half of one to travel).
//!
//! ```text
//! cargo nextest run -E 'test(distance_bench)' --run-ignored only --no-capture
//! ```

use std::time::{Duration, Instant};

use auto_order_sync::pg::migrate::run_migrations;
use serde_json::json;
use tokio_postgres::Client;

use crate::support::cluster::{Cluster, wait_replayed};
use crate::support::{Relay, TestApp};

fn one_way() -> Duration {
    let ms = std::env::var("DISTANCE_ONE_WAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    Duration::from_millis(ms)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn rtts(d: Duration, rtt: Duration) -> String {
    format!(
        "{:.2} RTT ({} ms)",
        d.as_secs_f64() / rtt.as_secs_f64(),
        d.as_millis()
    )
}

/// Median time of a `POST /api/products` (with an `Idempotency-Key`), read-your-writes
/// included, after one warm-up.
async fn post_latency(app: &TestApp, samples: usize) -> Duration {
    let token = app.token("far", &[]);
    let mut times = Vec::new();
    for i in 0..=samples {
        let started = Instant::now();
        let resp = app
            .http
            .post(app.url("/api/products"))
            .bearer_auth(&token)
            .header("idempotency-key", format!("k{i}"))
            .json(&json!({"name": format!("p{i}"), "reorder_quantity": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        if i > 0 {
            times.push(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    median(times)
}

/// Median time from a commit at the primary (acknowledged to a writer next to it) to the
/// far edge's replica holding it, seen through the engine's change events (no polling, no
/// wake-up of the engine).
async fn lag(app: &TestApp, local_primary: &Client, samples: usize) -> Duration {
    let mut times = Vec::new();
    for i in 0..=samples {
        let mut events = app.sync.subscribe();
        let row = local_primary
            .query_one(
                "insert into products (owner_id, name) values ('near', $1)
                 returning pg_current_xact_id()::text::bigint",
                &[&format!("n{i}")],
            )
            .await
            .unwrap();
        let committed = Instant::now();
        let txid = row.get::<_, i64>(0) as u64;
        while app.sync.watermark() <= txid {
            tokio::time::timeout(Duration::from_secs(30), events.recv())
                .await
                .expect("the change arrives")
                .ok();
        }
        if i > 0 {
            times.push(committed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    median(times)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --run-ignored only"]
async fn distance_bench() {
    let delay = one_way();
    let rtt = delay * 2;
    let samples = 9;

    // A primary, a standby of it, and the distance between them and the far edge.
    let primary = Cluster::primary();
    let admin = primary.connect("postgres").await;
    admin.batch_execute("create database app").await.unwrap();
    let mut local = primary.connect("app").await;
    run_migrations(&mut local).await.unwrap();
    let wal = Relay::start(primary.addr()).await;
    let standby = Cluster::standby_of(wal.addr);
    wait_replayed(&local, &standby.connect("app").await).await;
    let far = Relay::start(primary.addr()).await;
    far.set_latency(delay);
    wal.set_latency(delay);
    let primary_url = format!("postgres://postgres@{}/app", far.addr);

    // (1) The far edge pulls from the primary, across the distance.
    let app = TestApp::spawn_with(&primary_url, &[]).await;
    app.catch_up_url(&primary.url("app")).await;
    let post_primary = post_latency(&app, samples).await;
    let lag_primary = lag(&app, &local, samples).await;
    app.stop().await;

    // (2) The far edge pulls from the standby in its own region.
    let app =
        TestApp::spawn_with(&primary_url, &[("SYNC_DATABASE_URL", &standby.url("app"))]).await;
    app.catch_up_url(&primary.url("app")).await;
    let post_standby = post_latency(&app, samples).await;
    let lag_standby = lag(&app, &local, samples).await;
    app.stop().await;

    println!(
        "\n**Distance** (one-way delay {} ms, RTT {} ms; medians of {samples}):\n",
        delay.as_millis(),
        rtt.as_millis()
    );
    println!(
        "| measure | edge pulling from the primary | edge pulling from a standby in its region | floor |"
    );
    println!("|---|---|---|---|");
    println!(
        "| `POST /api/products` with its key, read-your-writes included | {} | {} | 1 RTT |",
        rtts(post_primary, rtt),
        rtts(post_standby, rtt)
    );
    println!(
        "| lag: commit at the primary → the far edge's replica | {} | {} | 0.5 RTT |",
        rtts(lag_primary, rtt),
        rtts(lag_standby, rtt)
    );
}
