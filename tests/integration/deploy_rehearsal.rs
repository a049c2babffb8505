//! Multi-region behaviour: `fly-replay` write mode, and the three-edge local rehearsal.

use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{TestApp, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_fly_replay_mode_a_write_outside_the_primary_region_is_replayed_there() {
    // Arrange: an edge in lhr, primary region iad.
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(
        &db.url,
        &[
            ("WRITE_MODE", "fly-replay"),
            ("FLY_REGION", "lhr"),
            ("PRIMARY_REGION", "iad"),
        ],
    )
    .await;
    let token = app.token("alice", &[]);
    let create = |replayed: bool| {
        let mut request = app
            .http
            .post(app.url("/api/products"))
            .bearer_auth(&token)
            .json(&json!({ "name": "tea" }));
        if replayed {
            request = request.header("fly-replay-src", "region=lhr;instance=x");
        }
        request.send()
    };

    // Act
    let first = create(false).await.unwrap();
    let rows_after_first: i64 = db
        .client
        .query_one("select count(*) from products", &[])
        .await
        .unwrap()
        .get(0);
    let replayed = create(true).await.unwrap();
    let read = app
        .http
        .get(app.url("/api/products"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(first.headers()["fly-replay"], "region=iad");
    assert_eq!(rows_after_first, 0, "the edge itself wrote nothing");
    assert_eq!(
        replayed.status(),
        StatusCode::CREATED,
        "a replayed request is executed"
    );
    assert_eq!(read.status(), StatusCode::OK, "reads are served locally");
}

fn rehearse(db: &TestDb, mode: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    rehearse_at(&db.url, dir.path(), mode)
}

fn rehearse_at(url: &str, dir: &std::path::Path, mode: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_auto-order"))
        .args(["rehearse", "--writes", "5", "--write-mode", mode])
        .arg("--dir")
        .arg(dir)
        .env("DATABASE_URL", url)
        .env("LOG_LEVEL", "warn")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "rehearsal failed:\n{stdout}");
    stdout
}

#[tokio::test]
async fn the_three_region_rehearsal_converges_with_read_your_writes() {
    let db = TestDb::new().await;

    let report = rehearse(&db, "forward");

    for region in ["iad", "lhr", "syd"] {
        assert!(
            report.contains(&format!("{region}: converged (5 products)")),
            "{report}"
        );
    }
    assert!(
        report.contains("lhr: write at iad visible after p50"),
        "{report}"
    );
}

#[tokio::test]
async fn the_rehearsal_in_fly_replay_mode_replays_writes_to_the_primary_region() {
    let db = TestDb::new().await;

    let report = rehearse(&db, "fly-replay");

    assert!(report.contains("rehearsal passed"), "{report}");
}

#[tokio::test]
async fn the_rehearsal_creates_its_database_and_passes_again_on_a_second_run() {
    // Arrange: a server without the rehearsal's database.
    let server = TestDb::empty().await;
    let name = format!("{}_rehearse", server.name);
    let url = crate::support::db::url_for(&name);
    let dir = tempfile::tempdir().unwrap();

    // Act: twice, on the same database and directory.
    let first = rehearse_at(&url, dir.path(), "forward");
    let second = rehearse_at(&url, dir.path(), "forward");

    // Assert
    assert!(first.contains("syd: converged (5 products)"), "{first}");
    assert!(second.contains("syd: converged (10 products)"), "{second}");
    assert!(second.contains("rehearsal passed"), "{second}");
    let admin = crate::support::db::connect(&crate::support::db::server_url()).await;
    let _ = admin
        .batch_execute(&format!("drop database if exists {name} with (force)"))
        .await;
}
