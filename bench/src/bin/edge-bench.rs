//! Edge benchmark: replication lag, write latency, peak memory and cold start of real edges,
//! each beside a Postgres yardstick measured in the same run. Prints one markdown table.
//!
//! ```text
//! cargo build --release --bins && target/release/edge-bench -- [--rates 200,1000] [--seconds 10]
//!     [--inserts 2000] [--writes 1000] [--restarts 5] [--writers 8] [--rows 10000]
//!     [--read-seconds 2] [--probe-every 50]
//! ```
//! (`scripts/bench.sh` builds once and runs every bench program.) Uses `BENCH_DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`) to create and drop a scratch
//! database, and temp dirs for the replicas. Needs the `auto-order` binary next to this one
//! (or `--edge-bin PATH`).
//!
//! Two edges follow the scratch primary, one at a time:
//! - **the child edge**: `auto-order serve`, a separate process with default settings. Its
//!   first start is timed, it serves the writes through the API, its memory is read from
//!   `/proc`, and it is restarted on its replica for the cold-start times. It is stopped
//!   while the lag is measured: in a deployment an edge shares its machine with no other
//!   edge, and here a second one pulling every change on the same two cores as Postgres
//!   would measure their contention.
//! - **the lag edge**: the same `Application` the binary runs, built from the same
//!   configuration defaults, in this process but on its own runtime. The lag of a row is the
//!   time from the writer receiving its commit acknowledgement to the edge publishing a
//!   watermark past the row's transaction, which the engine does right after committing the
//!   SQLite transaction that holds the row (every reader of the replica sees it from then
//!   on). The engine's change events say when that happens, to the microsecond, without
//!   polling and without waking the engine (a `wait_applied` per row would wake it, and that
//!   is not what a plain replica does). As a cross-check, a sample of the rows is also
//!   polled through this edge's API (`GET /api/products/{id}` every millisecond).
//!
//! Writes are open-loop: row `i` is sent at `start + i / rate` whatever happened to the
//! earlier ones, spread over several connections (pipelined), so a slow commit does not lower
//! the rate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use auto_order::config::Config;
use auto_order::server::Application;
use auto_order_sync::pg::migrate::run_migrations;
use auto_order_sync::{PgConnector, SyncHandle};
use serde_json::{Value, json};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

const OWNER: &str = "bench-user";

/// The single-row insert every measure shares (the yardstick and the steady writers).
const INSERT: &str = "insert into products (owner_id, name, unit, price_cents)
                      values ($1, $2, 'kg', $3)
                      returning id::text, pg_current_xact_id()::text::bigint";

struct Args {
    rates: Vec<u32>,
    seconds: u64,
    inserts: usize,
    writes: usize,
    restarts: usize,
    writers: usize,
    rows: i64,
    read_seconds: u64,
    probe_every: usize,
    edge_bin: Option<PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        rates: vec![200, 1000],
        seconds: 10,
        inserts: 2000,
        writes: 1000,
        restarts: 5,
        writers: 8,
        rows: 10_000,
        read_seconds: 2,
        probe_every: 50,
        edge_bin: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rates" => {
                a.rates = value
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .context("--rates: comma-separated writes per second")?
            }
            "--seconds" => a.seconds = value.parse()?,
            "--inserts" => a.inserts = value.parse()?,
            "--writes" => a.writes = value.parse()?,
            "--restarts" => a.restarts = value.parse()?,
            "--writers" => a.writers = value.parse()?,
            "--rows" => a.rows = value.parse()?,
            "--read-seconds" => a.read_seconds = value.parse()?,
            "--probe-every" => a.probe_every = value.parse()?,
            "--edge-bin" => a.edge_bin = Some(value.into()),
            other => bail!("unknown flag {other}"),
        }
    }
    ensure!(
        a.writers > 0 && a.inserts > 0 && a.writes > 0 && a.probe_every > 0,
        "counts must be positive"
    );
    ensure!(a.rates.iter().all(|r| *r > 0), "rates must be positive");
    Ok(a)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let exe = match &args.edge_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("auto-order"),
    };
    ensure!(
        exe.is_file(),
        "no edge binary at {} (build it: `cargo build --release --bins`, or pass --edge-bin)",
        exe.display()
    );
    let server = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("ao_edgebench_{}", std::process::id());
    let admin = connect(&server).await?;
    print_header(&admin, &exe).await?;
    admin
        .batch_execute(&format!("create database {name}"))
        .await?;
    let url = format!(
        "{}/{name}",
        server
            .rsplit_once('/')
            .context("BENCH_DATABASE_URL needs a database path")?
            .0
    );
    let result = run(&url, &exe, &args).await;
    admin
        .batch_execute(&format!("drop database {name} with (force)"))
        .await?;
    result
}

async fn print_header(admin: &Client, exe: &Path) -> anyhow::Result<()> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let pg: String = admin.query_one("show server_version", &[]).await?.get(0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "command: `{}`",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    println!("edge binary: {}", exe.display());
    println!(
        "date: {}; machine: {cores} cores ({cpu}), {mem_gib:.0} GiB; PostgreSQL {pg}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    println!();
    Ok(())
}

async fn connect(url: &str) -> anyhow::Result<Client> {
    Ok(PgConnector::from_url(url)
        .map_err(anyhow::Error::msg)?
        .connect(None)
        .await?)
}

/// One line of the result table.
struct Line {
    measure: String,
    value: String,
    note: String,
}

struct Table(Vec<Line>);

impl Table {
    fn add(
        &mut self,
        measure: impl Into<String>,
        value: impl Into<String>,
        note: impl Into<String>,
    ) {
        self.0.push(Line {
            measure: measure.into(),
            value: value.into(),
            note: note.into(),
        });
    }

    fn print(&self) {
        println!("| measure | value | notes |");
        println!("|---|---|---|");
        for l in &self.0 {
            println!("| {} | {} | {} |", l.measure, l.value, l.note);
        }
    }
}

async fn run(url: &str, exe: &Path, args: &Args) -> anyhow::Result<()> {
    let mut admin = connect(url).await?;
    run_migrations(&mut admin).await?;
    admin
        .execute(
            "insert into products (owner_id, name, unit, price_cents)
             select case when g % 4 = 0 then $1 else 'other-' || g % 50 end,
                    'seed ' || g, 'kg', g % 900 from generate_series(1, $2::bigint) g",
            &[&OWNER, &args.rows],
        )
        .await?;
    let mut table = Table(Vec::new());

    // The child edge: the real binary, its own data dir, a dev-issuer key minted up front.
    let child_dir = tempfile::tempdir()?;
    let token =
        auto_order::auth::mint_dev_token(child_dir.path(), OWNER, &[], Duration::from_secs(3600))?;
    eprintln!("starting the child edge…");
    let started = Instant::now();
    let mut child = EdgeProcess::start(exe, url, child_dir.path(), None)?;
    let http = http_client(true)?;
    let first_ready = wait_health(&http, &child.base_url(), started, Duration::from_secs(120))
        .await?
        .ready;
    let idle_rss = proc_status_kib(child.pid(), "VmRSS")?;
    // Stopped while the lag is measured: one edge beside the primary, as in a deployment
    // (a second edge pulling on the same two cores would only measure their contention).
    // It restarts on its replica for the writes below.
    let child_port = child.port;
    child.stop()?;

    // The lag edge: the same application, in process, on its own runtime.
    eprintln!("starting the lag edge…");
    let lag_dir = tempfile::tempdir()?;
    let lag_token =
        auto_order::auth::mint_dev_token(lag_dir.path(), OWNER, &[], Duration::from_secs(3600))?;
    let lag_edge = LagEdge::start(url, lag_dir.path()).await?;
    let fence = fence(&admin).await?;
    ensure!(
        lag_edge
            .sync
            .wait_applied(fence, Duration::from_secs(120))
            .await,
        "the lag edge did not catch up"
    );

    // Writers: `writers` connections with the insert prepared on each.
    let mut writers = Vec::new();
    for _ in 0..args.writers {
        let client = connect(url).await?;
        let insert = client.prepare(INSERT).await?;
        writers.push(Writer {
            client: Arc::new(client),
            insert,
        });
    }

    // 1. The yardstick: sequential single-row inserts, autocommit.
    eprintln!("yardstick: {} single-row inserts…", args.inserts);
    let mut rtt = Vec::with_capacity(args.inserts);
    for i in 0..args.inserts {
        let t = Instant::now();
        writers[0].insert(i as i32).await?;
        rtt.push(t.elapsed());
    }
    let rtt = Stats::of(rtt);
    table.add(
        "Postgres single-row insert round trip (the yardstick)",
        rtt.p50_p99_max(),
        format!(
            "{} sequential autocommit `insert … returning` on one connection, prepared; \
             synchronous commit",
            args.inserts
        ),
    );

    // 2. Replication lag at steady rates.
    let mut target_ratio = None;
    for &rate in &args.rates {
        eprintln!("replication lag at {rate} writes/s for {} s…", args.seconds);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let steady = steady_writes(
            &writers,
            &lag_edge,
            rate,
            Duration::from_secs(args.seconds),
            Probe {
                database_url: url,
                http: &http,
                base_url: lag_edge.base_url(),
                token: &lag_token,
                every: args.probe_every,
            },
        )
        .await?;
        let ratio = steady.lag.p99.as_secs_f64() / rtt.p50.as_secs_f64();
        if rate == 1000 {
            target_ratio = Some((ratio, steady.achieved_rate));
        }
        table.add(
            format!("replication lag, {rate} writes/s offered: commit ack → applied on an edge"),
            steady.lag.p50_p99_max(),
            format!(
                "{} rows in {} s, achieved **{:.0} writes/s** over {} connections \
                 (insert under load: {}); the edge applied them in {} batches \
                 ({:.1} rows each); {} applied before their ack arrived; \
                 **lag p99 = {:.1}× insert RTT p50**; {}",
                steady.lag.n,
                args.seconds,
                steady.achieved_rate,
                args.writers,
                steady.insert.p50_p99(),
                steady.batches,
                steady.lag.n as f64 / steady.batches.max(1) as f64,
                steady.before_ack,
                ratio,
                steady.foreign.note()
            ),
        );
        if let Some(api) = steady.api {
            table.add(
                format!("… the same rows seen through the edge's API ({rate}/s offered)"),
                api.p50_p99_max(),
                format!(
                    "1 row in {}: `GET /api/products/{{id}}` every 1 ms until 200 \
                     (adds up to 1 ms of polling and an HTTP round trip)",
                    args.probe_every
                ),
            );
        }
    }
    lag_edge.stop();

    // 3. Writes through the edge, beside the same transaction sent directly.
    eprintln!("restarting the child edge…");
    let restarted = Instant::now();
    let mut child = EdgeProcess::start(exe, url, child_dir.path(), Some(child_port))?;
    wait_health(
        &http,
        &child.base_url(),
        restarted,
        Duration::from_secs(120),
    )
    .await?;
    eprintln!("{} writes through the edge…", args.writes);
    let edge_writes = edge_writes(&http, &child.base_url(), &token, args.writes).await?;
    let direct_tx = edge_shaped_tx(&writers[0].client, args.writes).await?;
    table.add(
        "write through the edge: `POST /api/products`",
        edge_writes.p50_p99_max(),
        format!(
            "{} sequential requests, one keep-alive connection; includes the edge's \
             read-your-writes wait (answers once its replica has the row)",
            edge_writes.n
        ),
    );
    table.add(
        "… the edge's transaction sent directly to Postgres",
        direct_tx.p50_p99_max(),
        "begin, `pg_current_xact_id()` and insert pipelined, commit: 3 round trips, no HTTP, no wait",
    );
    table.add(
        "… a direct single-row insert",
        rtt.p50_p99_max(),
        "the yardstick above",
    );

    // 4. A burst of concurrent reads, then the child's peak memory.
    if args.read_seconds > 0 {
        eprintln!("{} s of concurrent reads…", args.read_seconds);
        let reads = read_burst(
            &child.base_url(),
            &token,
            Duration::from_secs(args.read_seconds),
            16,
        )
        .await?;
        table.add(
            "reads during the memory measure: `GET /api/products?limit=20`",
            format!("{:.0} requests/s", reads),
            format!("16 clients, {} s", args.read_seconds),
        );
    }
    let hwm = proc_status_kib(child.pid(), "VmHWM")?;
    table.add(
        "edge peak RSS (VmHWM of `auto-order serve`)",
        format!("**{:.1} MiB**", hwm as f64 / 1024.0),
        format!(
            "after everything above (it followed every write); {:.1} MiB when first ready",
            idle_rss as f64 / 1024.0
        ),
    );

    // 5. Cold start on the existing replica.
    let port = child.port;
    child.stop()?;
    let replica_rows: i64 = admin
        .query_one("select count(*) from products", &[])
        .await?
        .get(0);
    let replica_mib = std::fs::metadata(child_dir.path().join("replica.db"))
        .map_or(0.0, |m| m.len() as f64 / 1024.0 / 1024.0);
    let cold = http_client(false)?;
    let (mut to_ready, mut to_ok) = (Vec::new(), Vec::new());
    for i in 0..args.restarts {
        eprintln!("cold start {}/{}…", i + 1, args.restarts);
        let started = Instant::now();
        let mut edge = EdgeProcess::start(exe, url, child_dir.path(), Some(port))?;
        let times = wait_health(&cold, &edge.base_url(), started, Duration::from_secs(60)).await?;
        to_ready.push(times.ready);
        to_ok.push(times.ok);
        edge.stop()?;
    }
    if args.restarts > 0 {
        let (ready, ok) = (Stats::of(to_ready), Stats::of(to_ok));
        table.add(
            "cold start to ready, existing replica: spawn → `GET /api/health` 200",
            format!("median {}, max {}", ms(ready.p50), ms(ready.max)),
            format!(
                "{} restarts of `auto-order serve` on a replica of {replica_rows} rows \
                 ({replica_mib:.1} MiB; page cache warm); health polled every 2 ms; \
                 first start (empty replica, snapshot) took {}",
                ready.n,
                ms(first_ready)
            ),
        );
        table.add(
            "… to caught up: health `status` \"ok\" (first pull from the primary done)",
            format!("median {}, max {}", ms(ok.p50), ms(ok.max)),
            "",
        );
    }

    table.print();
    println!();
    match target_ratio {
        Some((r, achieved)) => println!(
            "Target: lag p99 at 1,000 writes/s within 10× the insert round trip (p50) of the \
             same run: {r:.1}× — {}{}",
            if r <= 10.0 { "met" } else { "**not met**" },
            if achieved < 950.0 {
                format!(
                    " (but only {achieved:.0} writes/s were achieved: the primary did not keep \
                     up with the offered rate)"
                )
            } else {
                String::new()
            }
        ),
        None => println!("(1,000 writes/s not in --rates: the lag target was not measured)"),
    }
    Ok(())
}

async fn fence(client: &Client) -> anyhow::Result<u64> {
    let row = client
        .query_one("select pg_current_xact_id()::text::bigint", &[])
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

struct Writer {
    client: Arc<Client>,
    insert: Statement,
}

impl Writer {
    /// Inserts one row; returns its id and its transaction's txid.
    async fn insert(&self, n: i32) -> anyhow::Result<(String, u64)> {
        let row = self
            .client
            .query_one(&self.insert, &[&OWNER, &format!("bench {n}"), &(n % 900)])
            .await?;
        Ok((row.get(0), row.get::<_, i64>(1) as u64))
    }
}

/// Latency distribution (nearest-rank percentiles).
struct Stats {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    fn of(mut v: Vec<Duration>) -> Stats {
        v.sort();
        let pick = |q: f64| {
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
            v.get(rank - 1).copied().unwrap_or_default()
        };
        Stats {
            n: v.len(),
            p50: pick(0.50),
            p99: pick(0.99),
            max: v.last().copied().unwrap_or_default(),
        }
    }

    fn p50_p99(&self) -> String {
        format!("p50 {}, p99 {}", ms(self.p50), ms(self.p99))
    }

    fn p50_p99_max(&self) -> String {
        format!(
            "p50 {} · **p99 {}** · max {}",
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// The in-process edge whose engine events time the replication lag.
struct LagEdge {
    runtime: Option<tokio::runtime::Runtime>,
    sync: SyncHandle,
    /// `(watermark, when it was published)`, in publication order.
    published: Arc<Mutex<Vec<(u64, Instant)>>>,
    /// Its API's port (the cross-check polls rows through it).
    port: u16,
}

impl LagEdge {
    async fn start(url: &str, dir: &Path) -> anyhow::Result<LagEdge> {
        // Settings as `auto-order serve` reads them, with nothing but what it must have.
        let env: HashMap<&str, String> = HashMap::from([
            ("DATABASE_URL", url.to_owned()),
            ("DATA_DIR", dir.display().to_string()),
            ("PORT", "0".into()),
            ("LOG_LEVEL", "error".into()),
            ("RATE_LIMIT_MAX", "1000000000".into()),
        ]);
        let config = Config::from_lookup(|k| env.get(k).cloned())?;
        // Its own threads, like a separate process: the load generator does not delay it.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("lag-edge")
            .build()?;
        let published = Arc::new(Mutex::new(Vec::new()));
        let log = published.clone();
        let (sync, port) = runtime
            .spawn(async move {
                let app = Application::build(config).await?;
                let (sync, port) = (app.sync(), app.port());
                // Subscribed before the engine starts: no applied batch is missed.
                let mut events = sync.subscribe();
                let watched = sync.clone();
                tokio::spawn(async move {
                    use tokio::sync::broadcast::error::RecvError;
                    let mut last = 0;
                    loop {
                        match events.recv().await {
                            Ok(_) | Err(RecvError::Lagged(_)) => {
                                // The engine publishes the watermark before the event.
                                let (w, at) = (watched.watermark(), Instant::now());
                                if w > last {
                                    last = w;
                                    log.lock().unwrap_or_else(|p| p.into_inner()).push((w, at));
                                }
                            }
                            Err(RecvError::Closed) => return,
                        }
                    }
                });
                tokio::spawn(app.run_until_stopped(std::future::pending()));
                Ok::<_, anyhow::Error>((sync, port))
            })
            .await??;
        Ok(LagEdge {
            runtime: Some(runtime),
            sync,
            published,
            port,
        })
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// When the replica first published a watermark past `txid`, if it has.
    fn applied_at(&self, txid: u64) -> Option<Instant> {
        let published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        let i = published.partition_point(|(w, _)| *w <= txid);
        published.get(i).map(|(_, at)| *at)
    }

    fn stop(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for LagEdge {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Other databases' transactions holding an xid, sampled during a lag run. Txids and the
/// horizon `pg_snapshot_xmin` are cluster-wide: such a transaction (a `CREATE DATABASE` of
/// a test suite, say) holds every edge's horizon, and no NOTIFY of this database says when
/// it ends.
struct Foreign {
    samples: usize,
    held: usize,
    longest: Duration,
}

impl Foreign {
    fn note(&self) -> String {
        if self.held == 0 {
            "no transaction of another database held the horizon".into()
        } else {
            format!(
                "**another database's transaction held the (cluster-wide) horizon in {:.0}% \
                 of {} samples, the longest for {}**",
                100.0 * self.held as f64 / self.samples.max(1) as f64,
                self.samples,
                ms(self.longest)
            )
        }
    }
}

/// Samples other databases' xid holders every 10 ms until `stop` is cancelled.
async fn watch_foreign(client: Client, stop: tokio_util::sync::CancellationToken) -> Foreign {
    let mut f = Foreign {
        samples: 0,
        held: 0,
        longest: Duration::ZERO,
    };
    while !stop.is_cancelled() {
        let row = client
            .query_one(
                "select count(*), coalesce(max(extract(epoch from now() - xact_start)), 0)::float8
                   from pg_stat_activity
                  where backend_xid is not null and datname is distinct from current_database()",
                &[],
            )
            .await;
        if let Ok(row) = row {
            f.samples += 1;
            if row.get::<_, i64>(0) > 0 {
                f.held += 1;
                f.longest = f.longest.max(Duration::from_secs_f64(row.get(1)));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f
}

struct Probe<'a> {
    database_url: &'a str,
    http: &'a reqwest::Client,
    base_url: String,
    token: &'a str,
    every: usize,
}

struct Steady {
    lag: Stats,
    foreign: Foreign,
    /// Batches the lag edge applied for these rows (one pull + one SQLite transaction each).
    batches: u64,
    insert: Stats,
    achieved_rate: f64,
    before_ack: usize,
    api: Option<Stats>,
}

/// Writes `rate` rows a second for `duration`, open loop, and times each row's lag.
async fn steady_writes(
    writers: &[Writer],
    edge: &LagEdge,
    rate: u32,
    duration: Duration,
    probe: Probe<'_>,
) -> anyhow::Result<Steady> {
    let stop_watching = tokio_util::sync::CancellationToken::new();
    let foreign = tokio::spawn(watch_foreign(
        connect(probe.database_url).await?,
        stop_watching.clone(),
    ));
    let batches_before = edge.sync.status().applied_batches;
    let total = (rate as u64 * duration.as_secs()) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now() + Duration::from_millis(10);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let at = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(at.into()).await;
        let writer = &writers[i % writers.len()];
        let (client, insert) = (writer.client.clone(), writer.insert.clone());
        let probe = (i % probe.every == 0).then(|| {
            (
                probe.http.clone(),
                probe.base_url.clone(),
                probe.token.to_owned(),
            )
        });
        tasks.push(tokio::spawn(async move {
            let row = client
                .query_one(
                    &insert,
                    &[&OWNER, &format!("steady {i}"), &(i as i32 % 900)],
                )
                .await?;
            let acked = Instant::now();
            let (id, txid): (String, i64) = (row.get(0), row.get(1));
            let seen = match probe {
                Some((http, base, token)) => Some(poll_visible(&http, &base, &token, &id).await?),
                None => None,
            };
            Ok::<_, anyhow::Error>((txid as u64, at, acked, seen))
        }));
    }
    let mut rows = Vec::with_capacity(total);
    for task in tasks {
        rows.push(task.await??);
    }
    stop_watching.cancel();
    let foreign = foreign.await?;
    let last_ack = rows.iter().map(|r| r.2).max().context("no writes")?;
    let max_txid = rows.iter().map(|r| r.0).max().unwrap_or(0);
    ensure!(
        edge.sync
            .wait_applied(max_txid, Duration::from_secs(60))
            .await,
        "the lag edge did not apply the steady writes"
    );
    let batches = edge.sync.status().applied_batches - batches_before;
    // The watcher records the publication on its own thread, a moment after the watermark.
    let deadline = Instant::now() + Duration::from_secs(5);
    while edge.applied_at(max_txid).is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    let (mut lag, mut insert, mut api, mut before_ack) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for (txid, scheduled, acked, seen) in rows {
        let applied = edge.applied_at(txid).context("no publication past a row")?;
        if applied < acked {
            before_ack += 1;
        }
        lag.push(applied.saturating_duration_since(acked));
        insert.push(acked - scheduled);
        if let Some(seen) = seen {
            api.push(seen.saturating_duration_since(acked));
        }
    }
    Ok(Steady {
        lag: Stats::of(lag),
        foreign,
        batches,
        insert: Stats::of(insert),
        achieved_rate: total as f64 / (last_ack - start).as_secs_f64(),
        before_ack,
        api: (!api.is_empty()).then(|| Stats::of(api)),
    })
}

/// Polls the edge's API every millisecond until the row is there; returns when it was.
async fn poll_visible(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let resp = http
            .get(format!("{base}/api/products/{id}"))
            .bearer_auth(token)
            .send()
            .await?;
        let seen = Instant::now();
        match resp.status().as_u16() {
            200 => return Ok(seen),
            404 => {}
            other => bail!("GET product answered {other}"),
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    bail!("product {id} never appeared at the edge")
}

/// Sequential `POST /api/products`; each must answer 201 with a sync token.
async fn edge_writes(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    n: usize,
) -> anyhow::Result<Stats> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let body =
            json!({ "name": format!("edge write {i}"), "unit": "kg", "price_cents": i % 900 });
        let t = Instant::now();
        let resp = http
            .post(format!("{base}/api/products"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let has_token = resp.headers().contains_key("x-sync-token");
        resp.bytes().await?;
        times.push(t.elapsed());
        ensure!(
            status.as_u16() == 201,
            "POST /api/products answered {status}"
        );
        ensure!(has_token, "a write answered without X-Sync-Token");
    }
    Ok(Stats::of(times))
}

/// The transaction the edge runs for a create, sent straight to Postgres.
async fn edge_shaped_tx(client: &Client, n: usize) -> anyhow::Result<Stats> {
    let begin = client.prepare("begin").await?;
    let txid = client
        .prepare("select pg_current_xact_id()::text::bigint")
        .await?;
    let insert = client
        .prepare(
            "insert into products (owner_id, name, unit, reorder_quantity, price_cents, notes)
             values ($1, $2, 'kg', 1, $3, null) returning to_jsonb(products.*)::text",
        )
        .await?;
    let commit = client.prepare("commit").await?;
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        client.execute(&begin, &[]).await?;
        // Pipelined, as the edge used to send them (token and insert together).
        let (name, price) = (format!("direct tx {i}"), i as i32 % 900);
        let params: [&(dyn ToSql + Sync); 3] = [&OWNER, &name, &price];
        let (token, row) = futures_util::join!(
            client.query_one(&txid, &[]),
            client.query_one(&insert, &params),
        );
        token?;
        row?;
        client.execute(&commit, &[]).await?;
        times.push(t.elapsed());
    }
    Ok(Stats::of(times))
}

/// `clients` keep-alive clients reading a list page back to back; returns requests/s.
async fn read_burst(
    base: &str,
    token: &str,
    duration: Duration,
    clients: usize,
) -> anyhow::Result<f64> {
    let http = http_client(true)?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, token) = (
            http.clone(),
            format!("{base}/api/products?limit=20"),
            token.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while started.elapsed() < duration {
                let resp = http.get(&url).bearer_auth(&token).send().await?;
                ensure!(
                    resp.status().is_success(),
                    "list answered {}",
                    resp.status()
                );
                resp.bytes().await?;
                n += 1;
            }
            Ok::<_, anyhow::Error>(n)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

fn http_client(keep_alive: bool) -> anyhow::Result<reqwest::Client> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut builder = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10));
    builder = if keep_alive {
        builder.pool_max_idle_per_host(1024)
    } else {
        // A health checker's view of a restart: a new connection every time.
        builder.pool_max_idle_per_host(0)
    };
    Ok(builder.build()?)
}

/// `auto-order serve` as a child process, killed if still running when dropped.
struct EdgeProcess {
    child: Child,
    port: u16,
}

impl EdgeProcess {
    /// Starts the edge; with no `port` it binds a free one and says which in its log.
    fn start(exe: &Path, url: &str, dir: &Path, port: Option<u16>) -> anyhow::Result<Self> {
        let mut command = Command::new(exe);
        command
            .arg("serve")
            // Only what the edge must have: defaults for everything else, whatever the
            // caller's environment says.
            .env_clear()
            .env("DATABASE_URL", url)
            .env("DATA_DIR", dir)
            .env("PORT", port.unwrap_or(0).to_string())
            .env("RATE_LIMIT_MAX", "1000000000")
            .stdin(Stdio::null());
        match port {
            None => {
                command
                    .env("LOG_LEVEL", "warn,auto_order::server=info")
                    .stdout(Stdio::piped());
            }
            Some(_) => {
                command.env("LOG_LEVEL", "error").stdout(Stdio::null());
            }
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("Failed to start {}", exe.display()))?;
        let port = match port {
            Some(p) => p,
            None => {
                let stdout = child.stdout.take().context("edge stdout")?;
                auto_order::rehearsal::bound_port(stdout).context("the edge did not start")?
            }
        };
        Ok(EdgeProcess { child, port })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGTERM (a graceful stop, as a deploy does it) and wait for the exit.
    fn stop(&mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
        ensure!(status.success(), "kill -TERM failed");
        let exit = self.child.wait()?;
        ensure!(exit.success(), "the edge exited with {exit}");
        Ok(())
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct HealthTimes {
    /// First 200 (the replica serves reads).
    ready: Duration,
    /// First `status: "ok"` (primary reachable, a fresh pull).
    ok: Duration,
}

/// Polls `GET /api/health` every 2 ms from `started` until it says `ok`.
async fn wait_health(
    http: &reqwest::Client,
    base: &str,
    started: Instant,
    limit: Duration,
) -> anyhow::Result<HealthTimes> {
    let mut ready = None;
    while started.elapsed() < limit {
        if let Ok(resp) = http.get(format!("{base}/api/health")).send().await
            && resp.status().is_success()
        {
            let at = started.elapsed();
            ready.get_or_insert(at);
            let body: Value = resp.json().await.unwrap_or_default();
            if body["status"] == "ok" {
                return Ok(HealthTimes {
                    ready: ready.unwrap_or(at),
                    ok: at,
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!("the edge at {base} did not report ok within {limit:?}")
}

/// A field of `/proc/<pid>/status`, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("malformed status line")?
        .parse()?)
}
