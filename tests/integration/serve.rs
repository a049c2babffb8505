//! `auto-order serve` as a process: it syncs, answers `/api/health`, and stops cleanly on
//! SIGTERM.

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
