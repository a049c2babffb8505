//! `auto-order dev` as a newcomer runs it: creates the database, migrates, loads demo data,
//! starts, prints a URL and a token that work. A rerun does not duplicate the demo data.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{ChildGuard, TestDb};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `auto-order dev` (default logging) and reads its stdout until the URL and token
/// lines appear; also returns the lines printed before the banner.
fn start_dev(
    database_url: &str,
    data_dir: &std::path::Path,
) -> (ChildGuard, String, String, Vec<String>) {
    let mut child = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_auto-order"))
            .arg("dev")
            .env("DATABASE_URL", database_url)
            .env("DATA_DIR", data_dir)
            .env("PORT", free_port().to_string())
            .env_remove("LOG_LEVEL")
            .env_remove("RUST_LOG")
            .env_remove("AUTH0_DOMAIN")
            .env_remove("AUTH0_ISSUER_BASE_URL")
            .env_remove("APP_ENV")
            .env_remove("NODE_ENV")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut url, mut token) = (None, None);
        let mut before_banner = Vec::new();
        let mut banner = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            banner |= line.starts_with("Auto-Order dev edge is running");
            if !banner {
                before_banner.push(line.clone());
            }
            if let Some(v) = line.trim().strip_prefix("URL:") {
                url = Some(v.trim().to_owned());
            }
            if let Some(v) = line.trim().strip_prefix("Token:") {
                token = Some(v.trim().to_owned());
            }
            if let (Some(u), Some(t)) = (&url, &token) {
                let _ = tx.send((u.clone(), t.clone(), std::mem::take(&mut before_banner)));
                url = None;
            }
        }
    });
    let (url, token, before_banner) = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("auto-order dev printed its URL and token");
    (child, url, token, before_banner)
}

/// The local addresses (hex, as in `/proc/net/tcp`) of sockets listening on `port`.
fn listen_addresses(port: u16) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap()
        + &std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (address, local_port) = fields.get(1)?.split_once(':')?;
            // State 0A is LISTEN.
            (fields.get(3) == Some(&"0A") && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| address.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_creates_the_database_loads_demo_data_and_prints_a_working_token() {
    // Arrange: a server with no database of that name yet.
    let server = TestDb::empty().await;
    let name = format!("{}_dev", server.name);
    let url = crate::support::db::url_for(&name);
    let dir = tempfile::tempdir().unwrap();
    let http = crate::support::http_client();

    // Act
    let (child, base, token, before_banner) = start_dev(&url, dir.path());
    let health = http.get(format!("{base}/api/health")).send().await.unwrap();
    let demo_page = http.get(format!("{base}/")).send().await.unwrap();
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    let listening_on = listen_addresses(port);
    let reorders: Value = http
        .get(format!("{base}/api/reorders?within_days=30"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    drop(child);
    let (child, _, _, _) = start_dev(&url, dir.path());
    drop(child);

    // Assert
    let noise: Vec<&String> = before_banner
        .iter()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("created database "))
        .collect();
    assert!(noise.is_empty(), "a quiet start: {noise:?}");
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(
        demo_page.status(),
        StatusCode::OK,
        "dev serves the demo page"
    );
    assert_eq!(
        listening_on,
        vec!["0100007F".to_owned()],
        "dev listens on 127.0.0.1 only"
    );
    let items = reorders["items"].as_array().expect("items");
    assert!(
        !items.is_empty(),
        "demo data makes something due: {reorders}"
    );
    let dev_db = crate::support::db::connect(&url).await;
    let products: i64 = dev_db
        .query_one(
            "select count(*) from products where owner_id = 'demo-user'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let orders: i64 = dev_db
        .query_one(
            "select count(*) from orders where owner_id = 'demo-user'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(products, 5, "a rerun adds no products");
    assert_eq!(orders, 20, "a rerun adds no purchases");
    drop(dev_db);
    let admin = crate::support::db::connect(&crate::support::db::server_url()).await;
    let _ = admin
        .batch_execute(&format!("drop database if exists {name} with (force)"))
        .await;
}

#[test]
fn dev_refuses_to_run_in_production() {
    let out = Command::new(env!("CARGO_BIN_EXE_auto-order"))
        .arg("dev")
        .env("APP_ENV", "production")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("AUTH0_DOMAIN", "example.auth0.com")
        .env("AUTH0_AUDIENCE", "https://auto-order-api")
        .env("DATA_DIR", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();

    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("production"), "{stderr}");
}
