//! `auto-order dev`: one command from a fresh checkout to a running edge with data.
//!
//! 1. Creates the database of `DATABASE_URL` (default
//!    `postgres://postgres@127.0.0.1:5432/auto_order`) if it is missing, through the
//!    server's `postgres` maintenance database.
//! 2. Runs the migrations.
//! 3. Loads demo data for `demo-user`: a few products and months of purchases, so
//!    predictions and re-orders show something. Fixed ids and `on conflict do nothing`
//!    make a rerun add nothing.
//! 4. Starts the edge on loopback with the local dev issuer and the demo page
//!    ([`crate::demo`]) at `/`, waits for the first sync, and prints the URL, a ready token
//!    and example `curl` lines.
//!
//! Refused in production and when Auth0 is configured (the dev issuer would not be used).
//! The rate limit is raised to [`DEV_RATE_LIMIT_MAX`] unless `RATE_LIMIT_MAX` is set.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use auto_order_sync::PgConnector;
use auto_order_sync::pg::migrate;
use chrono::{Duration as ChronoDuration, Utc};
use uuid::Uuid;

use crate::config::Config;
use crate::server::{Application, shutdown_signal};

pub const DEMO_USER: &str = "demo-user";

/// Requests per window per IP and per user under `dev`, unless `RATE_LIMIT_MAX` is set.
const DEV_RATE_LIMIT_MAX: u32 = 10_000;

/// How long the printed token is valid.
const TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// A demo product: name, unit, reorder quantity, and purchases as (days ago, quantity).
struct DemoProduct {
    name: &'static str,
    unit: &'static str,
    reorder_quantity: i32,
    purchases: &'static [(i64, i32)],
}

const DEMO_PRODUCTS: &[DemoProduct] = &[
    DemoProduct {
        name: "Coffee beans",
        unit: "1 kg bag",
        reorder_quantity: 1,
        purchases: &[
            (96, 1),
            (82, 1),
            (67, 1),
            (54, 1),
            (40, 1),
            (26, 1),
            (12, 1),
        ],
    },
    DemoProduct {
        name: "Dish soap",
        unit: "bottle",
        reorder_quantity: 2,
        purchases: &[(160, 2), (100, 2), (40, 2)],
    },
    DemoProduct {
        name: "Cat food",
        unit: "12-can pack",
        reorder_quantity: 3,
        purchases: &[(110, 3), (88, 3), (70, 2), (56, 3), (30, 3), (5, 3)],
    },
    DemoProduct {
        name: "Toothpaste",
        unit: "tube",
        reorder_quantity: 2,
        purchases: &[(150, 1), (105, 2), (20, 1)],
    },
    DemoProduct {
        name: "Olive oil",
        unit: "750 ml",
        reorder_quantity: 1,
        purchases: &[(14, 1)],
    },
];

pub async fn run(mut config: Config) -> anyhow::Result<()> {
    ensure!(
        !config.production,
        "`auto-order dev` is for local development; refusing to run with APP_ENV/NODE_ENV=production"
    );
    ensure!(
        config.auth.is_dev(),
        "`auto-order dev` uses the local dev issuer; unset AUTH0_DOMAIN / AUTH0_ISSUER_BASE_URL"
    );
    config.demo_page = true;
    // A local edge for one developer: not reachable from the network (its demo page mints
    // tokens for anyone who asks).
    config.listen_ip = std::net::Ipv4Addr::LOCALHOST.into();
    // One local user: the production default (100 requests a minute per IP and per user)
    // would throttle the demo page, which asks one prediction per product on every render.
    // An explicit RATE_LIMIT_MAX still wins.
    if std::env::var_os("RATE_LIMIT_MAX").is_none() {
        config.rate_limit_max = DEV_RATE_LIMIT_MAX;
    }
    let url = config.database_url().to_owned();
    ensure_database(&url).await?;
    let connector = PgConnector::from_url(&url).map_err(anyhow::Error::msg)?;
    let mut client = connector
        .connect(None)
        .await
        .context("Failed to connect to the database")?;
    migrate::run_migrations(&mut client)
        .await
        .context("Failed to run the migrations")?;
    let added = seed_demo_data(&client).await?;
    drop(client);

    let data_dir = config.data_dir.clone();
    let app = Application::build(config).await?;
    let port = app.port();
    let sync = app.sync();
    let server = tokio::spawn(app.run_until_stopped(shutdown_signal()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !sync.is_ready() {
        if server.is_finished() || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !sync.is_ready() && server.is_finished() {
        return server.await.context("server task")?;
    }
    let token = crate::auth::mint_dev_token(&data_dir, DEMO_USER, &[], TOKEN_TTL)?;
    print_banner(port, &token, added);
    server.await.context("server task")?
}

/// Creates the database named in `url` if the server does not have it yet (also used by
/// `rehearse`).
pub(crate) async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let connector = PgConnector::from_url(url).map_err(anyhow::Error::msg)?;
    let name = connector
        .config()
        .get_dbname()
        .or(connector.config().get_user())
        .context("DATABASE_URL names no database")?
        .to_owned();
    let maintenance = maintenance_url(url)?;
    let admin = PgConnector::from_url(&maintenance)
        .map_err(anyhow::Error::msg)?
        .connect(None)
        .await
        .context("Failed to connect to the Postgres server (is it running?)")?;
    let exists = admin
        .query_opt("select 1 from pg_database where datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match admin
            .batch_execute(&format!("create database {quoted}"))
            .await
        {
            Ok(()) => println!("created database {name}"),
            // Another process created it between the check and here.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(e).context("Failed to create the database"),
        }
    }
    Ok(())
}

/// `url` with its database replaced by the server's `postgres` maintenance database.
fn maintenance_url(url: &str) -> anyhow::Result<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("DATABASE_URL must be a postgres:// URL for `auto-order dev`");
    };
    let (authority, query) = match rest.split_once('/') {
        Some((authority, path)) => (authority, path.split_once('?').map(|(_, q)| q)),
        None => match rest.split_once('?') {
            Some((authority, q)) => (authority, Some(q)),
            None => (rest, None),
        },
    };
    Ok(match query {
        Some(q) => format!("{scheme}://{authority}/postgres?{q}"),
        None => format!("{scheme}://{authority}/postgres"),
    })
}

/// A fixed id for demo row `n` of `kind` (1 = product, 2 = order).
fn demo_id(kind: u64, n: u64) -> Uuid {
    Uuid::from_u128(
        0xd3e0_0000_0000_4000_8000_0000_0000_0000 | (u128::from(kind) << 32) | u128::from(n),
    )
}

/// Inserts the demo products and purchases that are missing; returns how many rows it added.
async fn seed_demo_data(client: &tokio_postgres::Client) -> anyhow::Result<u64> {
    let now = Utc::now();
    let mut added = 0;
    for (p, product) in (0u64..).zip(DEMO_PRODUCTS) {
        let product_id = demo_id(1, p);
        added += client
            .execute(
                "insert into products (id, owner_id, name, unit, reorder_quantity) \
                 values ($1, $2, $3, $4, $5) on conflict (id) do nothing",
                &[
                    &product_id,
                    &DEMO_USER,
                    &product.name,
                    &product.unit,
                    &product.reorder_quantity,
                ],
            )
            .await
            .context("Failed to insert a demo product")?;
        for (o, &(days_ago, quantity)) in (0u64..).zip(product.purchases) {
            let ordered_at = now - ChronoDuration::days(days_ago);
            added += client
                .execute(
                    "insert into orders (id, owner_id, product_id, quantity, ordered_at) \
                     values ($1, $2, $3, $4, $5) on conflict (id) do nothing",
                    &[
                        &demo_id(2, p * 1000 + o),
                        &DEMO_USER,
                        &product_id,
                        &quantity,
                        &ordered_at,
                    ],
                )
                .await
                .context("Failed to insert a demo purchase")?;
        }
    }
    Ok(added)
}

fn print_banner(port: u16, token: &str, added: u64) {
    let url = format!("http://127.0.0.1:{port}");
    let coffee = demo_id(1, 0);
    let seeded = if added > 0 {
        format!("loaded {added} demo rows")
    } else {
        "demo data already present".to_owned()
    };
    println!(
        r#"
Auto-Order dev edge is running ({seeded} for {DEMO_USER}).
  URL:   {url}
  Demo:  {url}/  (web page: sign in as {DEMO_USER})
  User:  {DEMO_USER}
  Token: {token}
  Docs:  {url}/api/docs/

Try (-w '\n' ends each answer with a newline):
  export TOKEN='{token}'
  curl -s -w '\n' {url}/api/health
  curl -s -w '\n' -H "Authorization: Bearer $TOKEN" {url}/api/products
  curl -s -w '\n' -X POST -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
       -d '{{"name":"Oat milk","reorder_quantity":2}}' {url}/api/products
  curl -s -w '\n' -H "Authorization: Bearer $TOKEN" {url}/api/predictions/{coffee}
  curl -s -w '\n' -H "Authorization: Bearer $TOKEN" '{url}/api/reorders?within_days=14'
  curl -s {url}/metrics

Ctrl-C stops it; `auto-order dev` again resumes with the same data.
"#
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maintenance_url_keeps_server_and_options() {
        assert_eq!(
            maintenance_url("postgres://u:p@h:5432/auto_order?sslmode=require").unwrap(),
            "postgres://u:p@h:5432/postgres?sslmode=require"
        );
        assert_eq!(
            maintenance_url("postgres://postgres@127.0.0.1:5432/auto_order").unwrap(),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
        assert_eq!(
            maintenance_url("postgresql://h").unwrap(),
            "postgresql://h/postgres"
        );
    }

    #[test]
    fn demo_ids_are_distinct_and_stable() {
        assert_ne!(demo_id(1, 0), demo_id(2, 0));
        assert_eq!(demo_id(1, 3), demo_id(1, 3));
    }
}
