//! Read benchmark: requests/s and p50/p99 latency of `GET /api/products/{id}` and
//! `GET /api/products` with a valid token, (a) served by the edge from its replica, (b) the
//! same request served by the same edge straight from Postgres (the path of a read whose
//! `X-Sync-Token` the replica has not reached: the same middleware, token check and handler,
//! the query on the primary), (b′) the same query run on Postgres by a bare axum handler (no
//! token check, no middleware), (c) a bare axum handler returning a fixed JSON body. One run,
//! one machine, one load generator: `wrk` in its own process (keep-alive connections, a fixed
//! number of concurrent clients). Prints a markdown table.
//!
//! ```text
//! cargo run --release --bin api-bench -- [--seconds 5] [--concurrency 32]
//! ```
//! Uses `BENCH_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) to
//! create and drop a scratch database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use auto_order::config::Config;
use auto_order::server::Application;
use auto_order_sync::PgConnector;
use auto_order_sync::pg::migrate::run_migrations;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

const OWNER: &str = "bench-user";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut seconds = 5u64;
    let mut concurrency = 32usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().context("flag needs a value")?;
        match flag.as_str() {
            "--seconds" => seconds = value.parse()?,
            "--concurrency" => concurrency = value.parse()?,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let server = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("ao_apibench_{}", std::process::id());
    let admin = connect(&server).await?;
    admin
        .batch_execute(&format!("create database {name}"))
        .await?;
    let url = format!(
        "{}/{name}",
        server.rsplit_once('/').context("url needs a database")?.0
    );
    let result = run(&url, Duration::from_secs(seconds), concurrency).await;
    admin
        .batch_execute(&format!("drop database {name} with (force)"))
        .await?;
    result
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    Ok(PgConnector::from_url(url)
        .map_err(anyhow::Error::msg)?
        .connect(None)
        .await?)
}

async fn run(url: &str, duration: Duration, concurrency: usize) -> anyhow::Result<()> {
    // Data: 1,000 products of one user, plus other users' rows around them.
    let mut client = connect(url).await?;
    run_migrations(&mut client).await?;
    client
        .batch_execute(&format!(
            "insert into products (owner_id, name, unit, price_cents)
             select case when g % 4 = 0 then '{OWNER}' else 'other-' || g % 50 end,
                    'product ' || g, 'kg', g % 900 from generate_series(1, 4000) g;
             analyze products"
        ))
        .await?;
    // (Statistics as autovacuum keeps them on a live primary: the plans are the ones a
    // deployment gets.)
    let id: String = client
        .query_one(
            "select id::text from products where owner_id = $1 limit 1",
            &[&OWNER],
        )
        .await?
        .get(0);

    // (a) the edge.
    let dir = tempfile::tempdir()?;
    let env: HashMap<&str, String> = HashMap::from([
        ("DATABASE_URL", url.to_owned()),
        ("DATA_DIR", dir.path().display().to_string()),
        ("PORT", "0".into()),
        ("RATE_LIMIT_MAX", "1000000000".into()),
        ("LOG_LEVEL", "error".into()),
        // (b): a read whose sync token the replica has not applied goes to the primary at
        // once (no wait for the replica, and the engine is not woken for it).
        ("READ_YOUR_WRITES_TIMEOUT_MS", "0".into()),
        // (b) against (b′): as many primary reads at once as the bare handler gets.
        ("PRIMARY_READ_CONCURRENCY", "15".into()),
    ]);
    let config = Config::from_lookup(|k| env.get(k).cloned())?;
    let app = Application::build(config).await?;
    let edge = format!("http://127.0.0.1:{}", app.port());
    let sync = app.sync();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    while !sync.is_ready() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fence: i64 = client
        .query_one("select pg_current_xact_id()::text::bigint", &[])
        .await?
        .get(0);
    anyhow::ensure!(
        sync.wait_applied(fence as u64, Duration::from_secs(60))
            .await
    );
    let token =
        auto_order::auth::mint_dev_token(dir.path(), OWNER, &[], Duration::from_secs(3600))?;

    // (b′) and (c): plain axum handlers.
    let baseline = spawn_baselines(url).await?;

    // A token no replica has reached, but one the primary could have issued (a bigger one
    // is refused with 400): the edge answers from the primary.
    let ahead = Some(format!(
        "X-Sync-Token: {}",
        sync.watermark() + auto_order::consistency::TOKEN_AHEAD_MARGIN
    ));
    let scenarios = [
        (
            "a",
            "(a) edge, replica",
            format!("{edge}/api/products/{id}"),
            None,
        ),
        (
            "b",
            "(b) edge, from Postgres",
            format!("{edge}/api/products/{id}"),
            ahead.clone(),
        ),
        (
            "b′",
            "(b′) bare handler on Postgres",
            format!("{baseline}/pg/products/{id}"),
            None,
        ),
        ("c", "(c) fixed JSON", format!("{baseline}/fixed"), None),
        (
            "a list",
            "(a) edge, replica — list of 20",
            format!("{edge}/api/products?limit=20"),
            None,
        ),
        (
            "b list",
            "(b) edge, from Postgres — list of 20",
            format!("{edge}/api/products?limit=20"),
            ahead,
        ),
        (
            "b′ list",
            "(b′) bare handler on Postgres — list of 20",
            format!("{baseline}/pg/products"),
            None,
        ),
    ];
    println!("| scenario | requests/s | p50 | p99 | server CPU per request |");
    println!("|---|---|---|---|---|");
    let mut rates = HashMap::new();
    for (key, label, target, header) in scenarios {
        let cpu_before = process_cpu()?;
        let result = load(&target, &token, header.as_deref(), duration, concurrency)?;
        let cpu = process_cpu()? - cpu_before;
        let requests = result.rate * duration.as_secs_f64();
        rates.insert(key, result.rate);
        println!(
            "| {label} | {:.0} | {:.2} ms | {:.2} ms | {:.1} µs |",
            result.rate,
            result.p50_ms,
            result.p99_ms,
            cpu.as_secs_f64() * 1e6 / requests
        );
    }
    println!(
        "\nsingle product: (a)/(c) = {:.0}% (target ≥ 60%), (a)/(b) = {:.1}× (target ≥ 3×), \
         (a)/(b′) = {:.1}×; list of 20: (a)/(b) = {:.1}×, (a)/(b′) = {:.1}×; \
         {concurrency} concurrent clients, {}s each",
        100.0 * rates["a"] / rates["c"],
        rates["a"] / rates["b"],
        rates["a"] / rates["b′"],
        rates["a list"] / rates["b list"],
        rates["a list"] / rates["b′ list"],
        duration.as_secs()
    );
    Ok(())
}

async fn spawn_baselines(url: &str) -> anyhow::Result<String> {
    let connector = PgConnector::from_url(url).map_err(anyhow::Error::msg)?;
    let pool = auto_order::store::Primary::new(&connector, 4)?;
    let router = Router::new()
        .route("/pg/products/{id}", get(pg_product))
        .route("/pg/products", get(pg_products))
        .route("/fixed", get(fixed))
        .with_state(Arc::new(pool));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(format!("http://{addr}"))
}

async fn pg_product(
    State(pool): State<Arc<auto_order::store::Primary>>,
    Path(id): Path<uuid::Uuid>,
) -> Json<Value> {
    let client = pool.get().await.expect("pool");
    let stmt = client
        .prepare_cached(
            "select to_jsonb(p) - 'owner_id' from products p where id = $1 and owner_id = $2",
        )
        .await
        .expect("prepare");
    let row = client.query_one(&stmt, &[&id, &OWNER]).await.expect("row");
    Json(row.get(0))
}

async fn pg_products(State(pool): State<Arc<auto_order::store::Primary>>) -> Json<Value> {
    let client = pool.get().await.expect("pool");
    let stmt = client
        .prepare_cached(
            "select coalesce(jsonb_agg(to_jsonb(p) - 'owner_id'), '[]') from (
                select * from products where owner_id = $1
                 order by created_at desc, id desc limit 20) p",
        )
        .await
        .expect("prepare");
    let row = client.query_one(&stmt, &[&OWNER]).await.expect("rows");
    Json(json!({ "items": row.get::<_, Value>(0), "next_cursor": null }))
}

async fn fixed() -> Json<Value> {
    Json(json!({
        "id": "2d4d1b2e-5a4f-4b84-9b8e-6f1a1d2c3b4a", "name": "product 1", "unit": "kg",
        "reorder_quantity": 1, "price_cents": 100, "notes": null,
        "created_at": "2026-11-24T19:50:46.123456Z", "updated_at": "2026-11-24T19:50:46.123456Z",
        "version": 1
    }))
}

/// CPU time (user + system) this process has used: the servers' cost, apart from wrk's and
/// Postgres's (for (b), Postgres's own work is not in it). Steadier than requests/s on a
/// busy machine.
fn process_cpu() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the `(comm)`; utime and stime are the 14th and 15th of the whole line.
    let rest = stat.rsplit_once(')').context("/proc/self/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // Linux reports these in USER_HZ, which is 100 on every architecture it runs on.
    Ok(Duration::from_millis(ticks * 10))
}

struct LoadResult {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Runs `wrk` (one thread, `concurrency` keep-alive connections) against `target` with the
/// token, and reads its summary. A separate, lean process: an in-process generator would
/// take a larger share of the two cores than the cheapest server it measures.
fn load(
    target: &str,
    token: &str,
    header: Option<&str>,
    duration: Duration,
    concurrency: usize,
) -> anyhow::Result<LoadResult> {
    let mut wrk = std::process::Command::new("wrk");
    wrk.args(["-t1", "--latency"])
        .arg(format!("-c{concurrency}"))
        .arg(format!("-d{}s", duration.as_secs()))
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"));
    if let Some(header) = header {
        wrk.arg("-H").arg(header);
    }
    let output = wrk
        .arg(target)
        .output()
        .context("running wrk (install it: `apt-get install wrk`)")?;
    let report = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "wrk failed: {report}");
    parse_wrk(&report).with_context(|| format!("unexpected wrk output:\n{report}"))
}

/// Requests/s and the 50th and 99th percentile from `wrk --latency` output; any non-2xx
/// answer or socket error fails the run (a benchmark of errors measures nothing).
fn parse_wrk(report: &str) -> anyhow::Result<LoadResult> {
    let field = |prefix: &str| {
        report
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    anyhow::ensure!(
        field("Non-2xx or 3xx responses:").is_none(),
        "error responses"
    );
    anyhow::ensure!(field("Socket errors:").is_none(), "socket errors");
    let rate: f64 = field("Requests/sec:").context("no Requests/sec")?.parse()?;
    let p50_ms = wrk_duration_ms(field("50%").context("no p50")?)?;
    let p99_ms = wrk_duration_ms(field("99%").context("no p99")?)?;
    Ok(LoadResult {
        rate,
        p50_ms,
        p99_ms,
    })
}

/// `812.00us`, `1.25ms`, `2.01s` → milliseconds.
fn wrk_duration_ms(text: &str) -> anyhow::Result<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        anyhow::bail!("no unit in {text:?}")
    };
    Ok(number.parse::<f64>()? * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 5s test @ http://127.0.0.1:1/fixed
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   412.50us  101.20us   3.10ms   90.00%
    Req/Sec    77.10k     2.01k   80.00k    70.00%
  Latency Distribution
     50%  398.00us
     75%  450.00us
     90%  520.00us
     99%    1.02ms
  383712 requests in 5.00s, 120.00MB read
Requests/sec:  76742.40
Transfer/sec:     24.00MB
";

    #[test]
    fn reads_rate_and_percentiles_from_a_wrk_report() {
        let result = parse_wrk(REPORT).unwrap();
        assert_eq!(result.rate, 76742.40);
        assert!((result.p50_ms - 0.398).abs() < 1e-9);
        assert!((result.p99_ms - 1.02).abs() < 1e-9);
    }

    #[test]
    fn a_report_with_error_responses_is_refused() {
        let with_errors = REPORT.replace(
            "Requests/sec:",
            "  Non-2xx or 3xx responses: 12\nRequests/sec:",
        );
        assert!(parse_wrk(&with_errors).is_err());
    }
}
