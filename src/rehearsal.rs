//! `auto-order rehearse`: a local rehearsal of a multi-region deployment.
//!
//! One Postgres, three edges on loopback (regions `iad` (primary), `lhr`, `syd`), each its own
//! process with its own `DATA_DIR` and port, sharing one dev-issuer key so a token works at
//! every edge (as an Auth0 token would). It writes at the primary-region edge, reads at the
//! others with and without the write's `X-Sync-Token`, prints the replication lag it sees, and
//! checks that every replica converges to the primary. Exit status 0 means every check held.
//!
//! Repeatable: it creates the database of `DATABASE_URL` if missing (as `dev` does) and
//! checks what this run added, so a second run on the same database passes too.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::auth::{DEV_KEY_FILE, mint_dev_token};

/// The regions of the rehearsal; the first is the primary region.
pub const REGIONS: [&str; 3] = ["iad", "lhr", "syd"];

pub struct RehearsalOptions {
    pub database_url: String,
    pub base_dir: PathBuf,
    /// The edges listen on this port and the next two; `None` lets each pick a free port
    /// (read back from its start-up log line).
    pub first_port: Option<u16>,
    /// `forward` or `fly-replay`.
    pub write_mode: String,
    pub writes: usize,
}

struct Edge {
    region: &'static str,
    url: String,
    child: Child,
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the rehearsal, printing a report; an error means a check failed.
pub async fn rehearse(options: RehearsalOptions) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("Failed to find the auto-order binary")?;
    crate::dev::ensure_database(&options.database_url).await?;
    let status = Command::new(&exe)
        .arg("migrate")
        .env("DATABASE_URL", &options.database_url)
        .stdout(Stdio::null())
        .status()?;
    ensure!(status.success(), "migrate failed");

    // One signing key for every edge, as one Auth0 tenant would be.
    let key_dir = options.base_dir.join(REGIONS[0]);
    std::fs::create_dir_all(&key_dir)?;
    let token = mint_dev_token(&key_dir, "rehearsal-user", &[], Duration::from_secs(3600))?;
    let mut edges = Vec::new();
    for (i, region) in REGIONS.iter().enumerate() {
        let dir = options.base_dir.join(region);
        std::fs::create_dir_all(&dir)?;
        if i > 0 {
            std::fs::copy(key_dir.join(DEV_KEY_FILE), dir.join(DEV_KEY_FILE))?;
        }
        edges.push(start_edge(
            &exe,
            &options,
            region,
            &dir,
            options.first_port.map_or(0, |p| p + i as u16),
        )?);
    }
    let http = reqwest_client()?;
    for edge in &edges {
        wait_healthy(&http, edge).await?;
    }
    println!(
        "three edges up: {}",
        edges
            .iter()
            .map(|e| format!("{} {}", e.region, e.url))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Earlier runs' products stay; this run checks what it adds.
    let before = primary_count(&options.database_url).await?;
    let others = &edges[1..];
    let mut lags = Vec::new();
    for n in 0..options.writes {
        let created = write_product(&http, &edges, &token, n, &options.write_mode).await?;
        let id = created.id.clone();
        // Read-your-writes through the token, at every other edge.
        for edge in others {
            let started = Instant::now();
            let row = get_product(&http, edge, &token, &id, Some(&created.sync_token)).await?;
            ensure!(
                row.is_some(),
                "{}: read with the sync token did not see product {id}",
                edge.region
            );
            let visible = wait_visible(&http, edge, &token, &id).await?;
            lags.push((edge.region, visible.max(started.elapsed())));
        }
    }
    for region in &REGIONS[1..] {
        let mut region_lags: Vec<Duration> = lags
            .iter()
            .filter(|(r, _)| r == region)
            .map(|(_, d)| *d)
            .collect();
        region_lags.sort();
        if let (Some(p50), Some(max)) = (region_lags.get(region_lags.len() / 2), region_lags.last())
        {
            println!(
                "{region}: write at iad visible after p50 {:.1} ms, max {:.1} ms",
                ms(*p50),
                ms(*max)
            );
        }
    }

    // Convergence: every edge lists exactly what the primary holds.
    let expected = primary_count(&options.database_url).await?;
    ensure!(
        expected == before + options.writes,
        "the primary holds {expected} products, expected {before} + {}",
        options.writes
    );
    for edge in &edges {
        // Eventual: an edge that has not been woken by a token read may still be waiting
        // for its next poll, or for a horizon another transaction holds back.
        let started = Instant::now();
        let listed = loop {
            let listed = list_all(&http, edge, &token).await?;
            if listed == expected || started.elapsed() > Duration::from_secs(30) {
                break listed;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        ensure!(
            listed == expected,
            "{}: lists {listed} products, the primary has {expected}",
            edge.region
        );
        println!("{}: converged ({listed} products)", edge.region);
    }
    println!("rehearsal passed: convergence and read-your-writes held at every edge");
    Ok(())
}

async fn primary_count(database_url: &str) -> anyhow::Result<usize> {
    let connector =
        auto_order_sync::PgConnector::from_url(database_url).map_err(anyhow::Error::msg)?;
    let client = connector.connect(None).await?;
    let row = client
        .query_one(
            "select count(*) from products where owner_id = 'rehearsal-user'",
            &[],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as usize)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn start_edge(
    exe: &Path,
    o: &RehearsalOptions,
    region: &'static str,
    dir: &Path,
    port: u16,
) -> anyhow::Result<Edge> {
    let mut child = Command::new(exe)
        .arg("serve")
        .env("DATABASE_URL", &o.database_url)
        .env("DATA_DIR", dir)
        .env("PORT", port.to_string())
        .env("FLY_REGION", region)
        .env("PRIMARY_REGION", REGIONS[0])
        .env("WRITE_MODE", &o.write_mode)
        // The server's own start-up line says which port it bound.
        .env("LOG_LEVEL", "warn,auto_order::server=info")
        .env("RATE_LIMIT_MAX", "100000")
        .env_remove("AUTH0_DOMAIN")
        .env_remove("AUTH0_ISSUER_BASE_URL")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("Failed to start the {region} edge"))?;
    let stdout = child.stdout.take().context("edge stdout")?;
    let port = bound_port(stdout).with_context(|| format!("the {region} edge did not start"))?;
    Ok(Edge {
        region,
        url: format!("http://127.0.0.1:{port}"),
        child,
    })
}

/// Reads an edge's log until its `serving` line and returns the port in it; the rest of the
/// log is drained in the background so the edge never blocks on a full pipe. The edge must
/// log `auto_order::server` at `info` (also used by `edge-bench`).
pub fn bound_port(stdout: std::process::ChildStdout) -> anyhow::Result<u16> {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line: Value = serde_json::from_str(&line?).unwrap_or_default();
        if line["fields"]["message"] == "serving" {
            let port = line["fields"]["port"]
                .as_u64()
                .context("serving line without a port")?;
            std::thread::spawn(move || lines.for_each(drop));
            return Ok(u16::try_from(port)?);
        }
    }
    bail!("the edge exited before serving")
}

fn reqwest_client() -> anyhow::Result<reqwest::Client> {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .build()?)
}

async fn wait_healthy(http: &reqwest::Client, edge: &Edge) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let health = http.get(format!("{}/api/health", edge.url)).send().await;
        if health.is_ok_and(|resp| resp.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{} never became healthy", edge.region)
}

struct Created {
    id: String,
    sync_token: String,
}

/// Creates a product at the primary-region edge (in `fly-replay` mode: sends it to a
/// non-primary edge first, follows its `fly-replay` answer like Fly's proxy would).
async fn write_product(
    http: &reqwest::Client,
    edges: &[Edge],
    token: &str,
    n: usize,
    mode: &str,
) -> anyhow::Result<Created> {
    let body = json!({ "name": format!("rehearsal product {n}"), "reorder_quantity": 1 + (n % 3) });
    let mut target = &edges[0];
    let mut replayed_from = None;
    if mode == "fly-replay" {
        let edge = &edges[1 + n % (edges.len() - 1)];
        let resp = http
            .post(format!("{}/api/products", edge.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        let replay = resp
            .headers()
            .get("fly-replay")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let replay = replay.with_context(|| {
            format!(
                "{}: a write in fly-replay mode was not replayed ({})",
                edge.region,
                resp.status()
            )
        })?;
        let region = replay.strip_prefix("region=").unwrap_or(&replay);
        target = edges
            .iter()
            .find(|e| e.region == region)
            .with_context(|| format!("replay to unknown region {region}"))?;
        replayed_from = Some(edge.region);
    }
    let mut request = http
        .post(format!("{}/api/products", target.url))
        .bearer_auth(token)
        .json(&body);
    if let Some(src) = replayed_from {
        request = request.header("fly-replay-src", format!("region={src}"));
    }
    let resp = request.send().await?;
    ensure!(
        resp.status().as_u16() == 201,
        "create at {} answered {}",
        target.region,
        resp.status()
    );
    let sync_token = resp
        .headers()
        .get("x-sync-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .context("no X-Sync-Token on a write")?;
    let row: Value = resp.json().await?;
    let id = row["id"]
        .as_str()
        .context("created product has no id")?
        .to_owned();
    Ok(Created { id, sync_token })
}

async fn get_product(
    http: &reqwest::Client,
    edge: &Edge,
    token: &str,
    id: &str,
    sync_token: Option<&str>,
) -> anyhow::Result<Option<Value>> {
    let mut request = http
        .get(format!("{}/api/products/{id}", edge.url))
        .bearer_auth(token);
    if let Some(t) = sync_token {
        request = request.header("x-sync-token", t);
    }
    let resp = request.send().await?;
    match resp.status().as_u16() {
        200 => Ok(Some(resp.json().await?)),
        404 => Ok(None),
        other => bail!("{}: GET product answered {other}", edge.region),
    }
}

/// Time until the product is visible at `edge` without a token (replication lag as seen by
/// a reader).
async fn wait_visible(
    http: &reqwest::Client,
    edge: &Edge,
    token: &str,
    id: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if get_product(http, edge, token, id, None).await?.is_some() {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!("{}: product {id} never replicated", edge.region)
}

async fn list_all(http: &reqwest::Client, edge: &Edge, token: &str) -> anyhow::Result<usize> {
    let (mut count, mut cursor): (usize, Option<String>) = (0, None);
    loop {
        let mut url = format!("{}/api/products?limit=100", edge.url);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = http
            .get(url)
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        count += page["items"].as_array().map_or(0, Vec::len);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(count),
        }
    }
}
