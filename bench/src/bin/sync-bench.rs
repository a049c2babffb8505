//! Sync benchmark: catch-up apply rate and resync rate, beside a bare `COPY` of the same
//! tables measured in the same run. Prints a markdown table.
//!
//! ```text
//! cargo run --release --bin sync-bench -- [--changes 1000000] [--rows 1000000] [--repeat 3]
//! ```
//! The bare `COPY` and both resyncs are run `--repeat` times, interleaved (so that a slower
//! minute of the machine touches all three alike), and their medians are compared.
//! Uses `BENCH_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) to create
//! and drop a scratch database, and a temp dir for the replica.

use std::time::{Duration, Instant};

use anyhow::Context;
use auto_order_sync::pg::migrate::run_migrations;
use auto_order_sync::{Engine, EngineConfig, PgConnector, Replica, SyncHandle};
use futures_util::StreamExt;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

// Linked for its global allocator only: the engine is measured with the allocator the
// `auto-order` binary runs it with (see `src/lib.rs`).
use auto_order as _;

struct Args {
    changes: i64,
    rows: i64,
    repeat: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        changes: 1_000_000,
        rows: 1_000_000,
        repeat: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: i64 = it
            .next()
            .with_context(|| format!("{flag} needs a value"))?
            .parse()?;
        match flag.as_str() {
            "--changes" => args.changes = value,
            "--rows" => args.rows = value,
            "--repeat" => args.repeat = usize::try_from(value)?.max(1),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    // The engine's own log lines (resync phases, errors) on stderr; the table on stdout.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "auto_order_sync=info".into()),
        )
        .init();
    let server = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("ao_bench_{}", std::process::id());
    let admin = connect(&server).await?;
    admin
        .batch_execute(&format!("create database {name}"))
        .await?;
    let url = match server.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => anyhow::bail!("BENCH_DATABASE_URL needs a database path"),
    };
    let result = run(&url, &args).await;
    admin
        .batch_execute(&format!("drop database {name} with (force)"))
        .await?;
    result
}

async fn run(url: &str, args: &Args) -> anyhow::Result<()> {
    let mut client = connect(url).await?;
    run_migrations(&mut client).await?;
    let dir = tempfile::tempdir()?;

    // A replica of the empty database, then stopped while the backlog is written.
    let (handle, stop, task) = start_edge(url, dir.path()).await?;
    catch_up(&client, &handle).await?;
    stop.cancel();
    task.await?;
    eprintln!("writing a backlog of {} changes…", args.changes);
    write_backlog(&client, args.changes).await?;

    // Catch-up: apply the whole backlog from the log.
    let (handle, stop, task) = start_edge(url, dir.path()).await?;
    let heap = HeapWatch::start();
    let started = Instant::now();
    catch_up(&client, &handle).await?;
    let catch_up_time = started.elapsed();
    let catch_up_heap = heap.peak_mib().await;
    let applied = handle.status().applied_changes;

    // Resync: top the tables up to `rows`, then a forced snapshot + load.
    let present: i64 = client
        .query_one(
            "select (select count(*) from products) + (select count(*) from orders)",
            &[],
        )
        .await?
        .get(0);
    if present < args.rows {
        client
            .execute(
                // Rows like the backlog's (1,000 owners): with one owner the index
                // rebuild of a first load sorts nearly nothing, and short runs would flatter it.
                "insert into products (owner_id, name, unit, price_cents)
                 select 'user-' || (g % 1000), 'product r' || g, 'kg', g % 5000
                   from generate_series(1, $1::bigint) g",
                &[&(args.rows - present)],
            )
            .await?;
        catch_up(&client, &handle).await?;
    }
    let rows: i64 = client
        .query_one(
            "select (select count(*) from products) + (select count(*) from orders)",
            &[],
        )
        .await?
        .get(0);
    // A quiet primary for the copy and the resyncs: after a million changes autovacuum
    // would otherwise be working through the tables (and the log) during them.
    client
        .batch_execute("vacuum analyze products, orders, sync.changes")
        .await?;
    stop.cancel();
    task.await?;

    let (mut copies, mut warms, mut colds) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=args.repeat {
        eprintln!("resync round {round} of {}…", args.repeat);
        settle().await;
        copies.push(bare_copy(&client).await?);
        settle().await;
        warms.push(warm_resync(url, dir.path(), &client).await?);
        settle().await;
        colds.push(cold_resync(url).await?);
    }
    let copy_time = median(&mut copies);
    let warm_time = median(&mut warms);
    let cold_time = median(&mut colds);

    let per_s = |t: Duration| rows as f64 / t.as_secs_f64();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| catch-up: {applied} changes applied from the log | {:.2} s, **{:.0} changes/s** |",
        catch_up_time.as_secs_f64(),
        applied as f64 / catch_up_time.as_secs_f64()
    );
    println!("| peak process heap (`RssAnon`) during the catch-up | {catch_up_heap:.0} MiB |");
    let spread = |runs: &[Duration]| match (runs.first(), runs.last()) {
        (Some(low), Some(high)) if runs.len() > 1 => format!(
            " (median of {}: {:.2}–{:.2} s)",
            runs.len(),
            low.as_secs_f64(),
            high.as_secs_f64()
        ),
        _ => String::new(),
    };
    println!(
        "| bare `COPY` of the same tables to nowhere ({rows} rows){} | {:.2} s ({:.0} rows/s) |",
        spread(&copies),
        copy_time.as_secs_f64(),
        per_s(copy_time)
    );
    for (label, time, runs) in [
        (
            "resync over an up-to-date replica (forced)",
            warm_time,
            &warms,
        ),
        (
            "resync into an empty replica (first start)",
            cold_time,
            &colds,
        ),
    ] {
        println!(
            "| {label}: {rows} rows{} | {:.2} s, **{:.0} rows/s**, **{:.2}× the bare COPY** |",
            spread(runs),
            time.as_secs_f64(),
            per_s(time),
            time.as_secs_f64() / copy_time.as_secs_f64()
        );
    }
    Ok(())
}

/// The largest `RssAnon` (heap, not the replica's mapped pages) the process reaches while
/// it runs, sampled every 10 ms.
struct HeapWatch {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<u64>,
}

impl HeapWatch {
    fn start() -> HeapWatch {
        let stop = CancellationToken::new();
        let done = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak_kib = 0;
            while !done.is_cancelled() {
                peak_kib = peak_kib.max(rss_anon_kib().unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            peak_kib
        });
        HeapWatch { stop, task }
    }

    async fn peak_mib(self) -> f64 {
        self.stop.cancel();
        self.task.await.unwrap_or(0) as f64 / 1024.0
    }
}

fn rss_anon_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Lets the previous measure's background work finish before the next one is timed: the
/// replica's checkpoint thread copying a resync's WAL, and the kernel writing back its
/// pages. Without it, a round's bare `COPY` ran beside the last round's write-back and came
/// out slower, flattering the ratios.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
    // `sync` flushes every file system's dirty pages; a failure only makes the figures noisier.
    let _ = tokio::process::Command::new("sync").status().await;
}

/// Sorts `runs` and returns the middle one.
fn median(runs: &mut [Duration]) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// A forced resync over the caught-up replica in `dir` (an operator's resync, a pruned
/// cursor): merges, writing only what differs.
async fn warm_resync(
    url: &str,
    dir: &std::path::Path,
    client: &Client,
) -> anyhow::Result<Duration> {
    let (handle, stop, task) = start_edge(url, dir).await?;
    catch_up(client, &handle).await?;
    let resyncs = handle.status().resyncs;
    let started = Instant::now();
    handle.request_resync();
    while handle.status().resyncs == resyncs {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let time = started.elapsed();
    stop.cancel();
    task.await?;
    Ok(time)
}

/// A new edge with an empty replica (first start, new volume): a bulk load.
async fn cold_resync(url: &str) -> anyhow::Result<Duration> {
    let empty = tempfile::tempdir()?;
    let started = Instant::now();
    let (handle, stop, task) = start_edge(url, empty.path()).await?;
    while handle.status().resyncs == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let time = started.elapsed();
    stop.cancel();
    task.await?;
    Ok(time)
}

async fn connect(url: &str) -> anyhow::Result<Client> {
    let connector = PgConnector::from_url(url).map_err(anyhow::Error::msg)?;
    Ok(connector.connect(None).await?)
}

async fn start_edge(
    url: &str,
    dir: &std::path::Path,
) -> anyhow::Result<(SyncHandle, CancellationToken, tokio::task::JoinHandle<()>)> {
    let connector = PgConnector::from_url(url).map_err(anyhow::Error::msg)?;
    let replica = Replica::open(&dir.join("replica.db"), 2)?;
    let (engine, handle) = Engine::new(connector, replica, EngineConfig::default()).await?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(engine.run(stop.clone().cancelled_owned()));
    Ok((handle, stop, task))
}

/// Waits until everything committed so far is applied.
async fn catch_up(client: &Client, handle: &SyncHandle) -> anyhow::Result<()> {
    let fence: i64 = client
        .query_one("select pg_current_xact_id()::text::bigint", &[])
        .await?
        .get(0);
    anyhow::ensure!(
        handle
            .wait_applied(fence as u64, Duration::from_secs(3600))
            .await,
        "the replica did not catch up: {:?}",
        handle.status()
    );
    Ok(())
}

/// 80% inserts in 10k-row transactions, 20% updates of those rows.
async fn write_backlog(client: &Client, changes: i64) -> anyhow::Result<()> {
    let inserts = changes * 8 / 10;
    let mut done = 0;
    while done < inserts {
        let n = (inserts - done).min(10_000);
        client
            .execute(
                "insert into products (owner_id, name, unit, price_cents)
                 select 'user-' || (g % 1000), 'product ' || g, 'kg', g % 5000
                   from generate_series(1, $1::bigint) g",
                &[&n],
            )
            .await?;
        done += n;
    }
    let updates = changes - inserts;
    let mut done = 0;
    while done < updates {
        let n = (updates - done).min(10_000);
        client
            .execute(
                "update products set reorder_quantity = reorder_quantity + 1, updated_at = now()
                  where id in (select id from products order by version limit $1)",
                &[&n],
            )
            .await?;
        done += n;
    }
    Ok(())
}

/// Time to stream both replicated tables out with `COPY … TO STDOUT`, discarding the bytes.
async fn bare_copy(client: &Client) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for table in ["products", "orders"] {
        let stream = client.copy_out(&format!("copy {table} to stdout")).await?;
        futures_util::pin_mut!(stream);
        while let Some(chunk) = stream.next().await {
            std::hint::black_box(chunk?);
        }
    }
    Ok(started.elapsed())
}
