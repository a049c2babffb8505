//! Guarantees 3 and 5 through the API: read-your-writes on the writing edge and, with the
//! sync token, on a lagging edge; reads served and writes refused (503) while the primary
//! is away, and recovery without an operator.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Api, Relay, TestApp, TestDb, count, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_visible_to_the_next_read_on_the_same_edge_even_without_the_token() {
    // Arrange: a generous bound, so a loaded test machine cannot make the write give up
    // waiting for the replica.
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(&db.url, &[("READ_YOUR_WRITES_TIMEOUT_MS", "20000")]).await;
    let alice = Api::new(&app, "alice");
    let tokenless = |path: &str| send(alice.request(Method::GET, path));
    let empty = tokenless("/api/products").await;

    // Act
    let id = alice.product("Butter").await;
    let list = tokenless("/api/products").await;
    let row = tokenless(&format!("/api/products/{id}")).await;

    // Assert
    assert_eq!(empty.body["items"], json!([]));
    assert_eq!(list.body["items"][0]["id"], id.as_str(), "{list:?}");
    assert_eq!(row.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_with_the_token_on_a_lagging_edge_is_answered_from_the_primary() {
    // Arrange: two edges; an open transaction holds the primary's horizon, so neither edge
    // can apply anything committed after it began.
    let db = TestDb::new().await;
    let writer_edge = TestApp::spawn(&db).await;
    let lagging_edge = TestApp::spawn(&db).await;
    let writer = Api::new(&writer_edge, "alice");
    let reader = Api::new(&lagging_edge, "alice");
    let id = writer.product("Cheese").await;
    lagging_edge.catch_up(&db).await;
    let path = format!("/api/products/{id}");
    assert_eq!(reader.get(&path).await.body["name"], "Cheese");
    let mut blocker = db.connect().await;
    let blocking = blocker.transaction().await.unwrap();
    blocking
        .query_one("select pg_current_xact_id()", &[])
        .await
        .unwrap();

    // Act
    let patched = writer.patch(&path, json!({"name": "Brie"})).await;
    let token = patched.header("x-sync-token").expect("a sync token");
    let started = Instant::now();
    let with_token = send(
        reader
            .request(Method::GET, &path)
            .header("x-sync-token", &token),
    )
    .await;
    let took = started.elapsed();
    let list_with_token = send(
        reader
            .request(Method::GET, "/api/products")
            .header("x-sync-token", &token),
    )
    .await;
    let without_token = reader.get(&path).await;
    blocking.rollback().await.unwrap();
    lagging_edge.catch_up(&db).await;

    // Assert
    assert_eq!(patched.status, StatusCode::OK, "{patched:?}");
    assert_eq!(with_token.status, StatusCode::OK, "{with_token:?}");
    assert_eq!(
        with_token.body["name"], "Brie",
        "never older than the token"
    );
    assert_eq!(with_token.body, patched.body, "same shape from the primary");
    assert!(took < Duration::from_secs(3), "bounded wait, took {took:?}");
    assert_eq!(list_with_token.body["items"][0]["name"], "Brie");
    assert_eq!(
        without_token.body["name"], "Cheese",
        "the replica still lags"
    );
    assert_eq!(reader.get(&path).await.body["name"], "Brie", "caught up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_primary_away_reads_are_served_writes_fail_fast_and_it_recovers() {
    // Arrange
    let db = TestDb::new().await;
    let mut relay = Relay::start("127.0.0.1:5432".parse().unwrap()).await;
    let app = TestApp::spawn_with(&relay.url_for(&db.url), &[]).await;
    let alice = Api::new(&app, "alice");
    let id = alice.product("Salt").await;
    let path = format!("/api/products/{id}");
    // The replica has the write, so reads carrying its token need not ask the primary.
    app.catch_up(&db).await;

    // Act
    relay.cut();
    let list = alice.get("/api/products").await;
    let row = alice.get(&path).await;
    let started = Instant::now();
    let create = alice.post("/api/products", json!({"name": "Pepper"})).await;
    let took = started.elapsed();
    let patch = alice.patch(&path, json!({"name": "Sea salt"})).await;
    let rows_while_down = count(&db, "products").await;
    relay.restore().await;
    let mut recovered = alice.post("/api/products", json!({"name": "Pepper"})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while recovered.status != StatusCode::CREATED && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        recovered = alice.post("/api/products", json!({"name": "Pepper"})).await;
    }
    let after = alice.walk("/api/products", 10).await;

    // Assert
    assert_eq!(list.status, StatusCode::OK, "{list:?}");
    assert_eq!(list.body["items"][0]["id"], id.as_str());
    assert_eq!(row.status, StatusCode::OK);
    assert_eq!(create.status, StatusCode::SERVICE_UNAVAILABLE, "{create:?}");
    assert_eq!(create.error().0, "unavailable");
    assert!(create.header("retry-after").is_some());
    assert!(took < Duration::from_secs(8), "fails fast, took {took:?}");
    assert_eq!(patch.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rows_while_down, 1, "nothing half-written");
    assert_eq!(recovered.status, StatusCode::CREATED, "{recovered:?}");
    assert_eq!(after.len(), 2);
    assert_eq!(alice.get(&path).await.body["name"], "Salt");
}
