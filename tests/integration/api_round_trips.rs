//! Writes cost the fewest round trips to the primary the work allows: a far edge pays each
//! one in full (100–200 ms). Counted by the relay between the edge and Postgres, on the
//! pooled write connection, once its statements are prepared.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Relay, TestApp, TestDb};

/// Round trips the pool's connections waited for during `f`: the relay's connections opened
/// after the first `skip` (the engine's and the announcer's, opened at start).
async fn round_trips<F, Fut, T>(relay: &Relay, skip: usize, f: F) -> (u64, T)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let before: u64 = relay.round_trips().iter().skip(skip).sum();
    let out = f().await;
    let after: u64 = relay.round_trips().iter().skip(skip).sum();
    (after - before, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_and_deletes_take_one_round_trip_and_updates_two() {
    // Arrange: an edge whose every Postgres connection goes through the counting relay.
    let db = TestDb::new().await;
    let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], 5432))).await;
    let app = TestApp::spawn_with(&relay.url_for(&db.url), &[]).await;
    app.catch_up(&db).await;
    let skip = relay.round_trips().len();
    let token = app.token("u", &[]);
    let create = |key: &str, name: &str| {
        app.http
            .post(app.url("/api/products"))
            .bearer_auth(&token)
            .header("idempotency-key", key)
            .json(&json!({"name": name, "reorder_quantity": 2}))
            .send()
    };
    // Warm-up: the pool connects and prepares each statement once.
    let warm: serde_json::Value = create("warm", "warm").await.unwrap().json().await.unwrap();
    let warm_id = warm["id"].as_str().unwrap().to_owned();
    let patch = |id: String, name: &'static str| {
        app.http
            .patch(app.url(&format!("/api/products/{id}")))
            .bearer_auth(&token)
            .json(&json!({"name": name}))
            .send()
    };
    assert_eq!(
        patch(warm_id.clone(), "w2").await.unwrap().status(),
        StatusCode::OK
    );
    let delete = |id: String| {
        app.http
            .delete(app.url(&format!("/api/products/{id}")))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(
        delete(warm_id).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );

    // Act + Assert
    let (trips, created) = round_trips(&relay, skip, || create("k1", "tea")).await;
    let created = created.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert!(created.headers().contains_key("x-sync-token"));
    assert_eq!(trips, 1, "a create with its key's claim and its sync token");
    let id = created.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (trips, replayed) = round_trips(&relay, skip, || create("k1", "tea")).await;
    let replayed = replayed.unwrap();
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    let replayed: serde_json::Value = replayed.json().await.unwrap();
    assert_eq!(replayed["id"], id.as_str(), "the same product again");
    assert_eq!(trips, 1, "a replay");

    let (trips, updated) = round_trips(&relay, skip, || patch(id.clone(), "green tea")).await;
    assert_eq!(updated.unwrap().status(), StatusCode::OK);
    assert_eq!(trips, 2, "an update: lock and read, then write and commit");

    let (trips, deleted) = round_trips(&relay, skip, || delete(id.clone())).await;
    assert_eq!(deleted.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(trips, 1, "a delete with its sync token");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_dropped_midway_leaves_no_open_transaction_on_a_pooled_connection() {
    // Arrange: a product, and the edge's own write pool.
    let db = TestDb::new().await;
    let id: uuid::Uuid = db
        .client
        .query_one(
            "insert into products (owner_id, name) values ('u', 'tea') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let connector = auto_order_sync::PgConnector::from_url(&db.url).unwrap();
    let primary = auto_order::store::Primary::new(&connector, 1).unwrap();

    // Act: an update locks the row, then its request is cancelled (the value dropped, as
    // a dropped handler future drops it) before it finishes.
    let client = primary.get().await.unwrap();
    let locked = auto_order::api::resource::writes::lock_for_update(client, "products", &id, "u")
        .await
        .unwrap();
    drop(locked);

    // Assert: the row is not left locked by a transaction parked in the pool, and the next
    // write from the pool commits on its own.
    crate::support::wait_until("the row lock is released", Duration::from_secs(10), || {
        let client = &db.client;
        async move {
            client
                .query_opt(
                    "select 1 from products where id = $1 for update nowait",
                    &[&id],
                )
                .await
                .is_ok()
        }
    })
    .await;
    let next = primary.get().await.unwrap();
    next.execute(
        "update products set name = 'green tea' where id = $1",
        &[&id],
    )
    .await
    .unwrap();
    drop(next);
    let name: String = db
        .client
        .query_one("select name from products where id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "green tea", "the next write committed");
}
