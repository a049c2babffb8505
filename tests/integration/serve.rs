//! `auto-order serve` as a process: it syncs, answers `/api/health`, and stops cleanly on
//! SIGTERM; in production it refuses plaintext connections to Postgres and the JWKS.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{ChildGuard, TestDb};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn serve_reports_replica_health_and_stops_cleanly_on_sigterm() {
    // Arrange
    let db = TestDb::new().await;
    db.client
        .execute(
            "insert into products (owner_id, name) values ('u', 'milk')",
            &[],
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_auto-order"))
            .arg("serve")
            .env("DATABASE_URL", &db.url)
            .env("DATA_DIR", dir.path())
            .env("PORT", port.to_string())
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}/api/health");
    let http = crate::support::http_client();

    // Act
    let health = wait_for_health(&http, &url, "ok").await;
    let pid = child.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let exit = child.0.wait().unwrap();

    // Assert
    assert_eq!(health["replica"]["ready"], true, "{health}");
    assert_eq!(health["replica"]["primary_reachable"], true, "{health}");
    assert!(
        health["replica"]["watermark"].as_u64().unwrap() > 0,
        "{health}"
    );
    assert!(killed.success());
    assert!(
        exit.success(),
        "SIGTERM leads to a clean exit, got {exit:?}"
    );
}

/// Polls the health endpoint until its `status` is `want`; returns that document.
async fn wait_for_health(http: &reqwest::Client, url: &str, want: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = http.get(url).send().await {
            let health: serde_json::Value = resp.json().await.unwrap_or_default();
            if health["status"] == want {
                return health;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn production_refuses_to_start_on_plaintext_postgres_or_jwks_with_one_line() {
    let run = |database_url: &str, jwks_url: &str| {
        Command::new(env!("CARGO_BIN_EXE_auto-order"))
            .arg("serve")
            .env("APP_ENV", "production")
            .env("DATABASE_URL", database_url)
            .env("AUTH0_DOMAIN", "tenant.example.com")
            .env("AUTH0_AUDIENCE", "https://api.example.com")
            .env("JWKS_URL", jwks_url)
            .env("DATA_DIR", std::env::temp_dir())
            .output()
            .unwrap()
    };

    let plain_postgres = run(
        "postgres://edge@db.internal/app",
        "https://tenant.example.com/.well-known/jwks.json",
    );
    let plain_jwks = run(
        "postgres://edge@db.internal/app?sslmode=require",
        "http://tenant.example.com/.well-known/jwks.json",
    );

    for (output, names) in [
        (plain_postgres, "ALLOW_PLAINTEXT_DATABASE"),
        (plain_jwks, "ALLOW_PLAINTEXT_JWKS"),
    ] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("refusing to start") && stderr.contains(names),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn prune_deletes_old_changes_and_expires_old_keys_and_says_so() {
    // Arrange: changes in the log, one key past the TTL and one within it
    let db = TestDb::new().await;
    db.client
        .batch_execute(
            "insert into products (owner_id, name) values ('u', 'milk'), ('u', 'tea');
             insert into idempotency_keys (owner_id, key, request_hash, created_at)
             values ('u', 'old', 'h', now() - interval '2 days'), ('u', 'fresh', 'h', now());",
        )
        .await
        .unwrap();
    let count = |sql: &'static str| {
        let client = &db.client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    let changes_before = count("select count(*) from sync.changes").await;

    // Act
    let out = Command::new(env!("CARGO_BIN_EXE_auto-order"))
        .args(["prune", "--older-than", "0s"])
        .env("DATABASE_URL", &db.url)
        .env("DATA_DIR", std::env::temp_dir())
        .env("IDEMPOTENCY_KEY_TTL", "1d")
        .env("LOG_LEVEL", "warn")
        .output()
        .unwrap();

    // Assert: what it says it pruned is what went (the horizon is cluster-wide: another
    // test's open transaction may keep some changes, never the count from being true)
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let pruned = changes_before - count("select count(*) from sync.changes").await;
    assert!(
        stdout.contains(&format!("pruned {pruned} changes")),
        "{stdout}"
    );
    assert!(stdout.contains("expired 1 idempotency keys"), "{stdout}");
    let keys: Vec<String> = db
        .client
        .query("select key from idempotency_keys", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys, ["fresh"]);
}
