//! `Idempotency-Key` on creates: a retry (or a concurrent duplicate) gets the original
//! answer and creates nothing more.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Api, TestApp, TestDb, count, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_retried_with_the_same_idempotency_key_creates_one_product() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let alice = Api::new(&app, "alice");
    let bob = Api::new(&app, "bob");
    let create = |api: &Api<'_>, key: &str, name: &str| {
        send(
            api.request(Method::POST, "/api/products")
                .header("idempotency-key", key)
                .json(&json!({"name": name})),
        )
    };

    // Act
    let first = create(&alice, "k-1", "Rice").await;
    let retry = create(&alice, "k-1", "Rice").await;
    let other_body = create(&alice, "k-1", "Pasta").await;
    let other_user = create(&bob, "k-1", "Rice").await;
    let too_long = create(&alice, &"k".repeat(256), "Rice").await;
    let (racer_a, racer_b) = tokio::join!(
        create(&alice, "k-2", "Beans"),
        create(&alice, "k-2", "Beans")
    );

    // Assert
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.id(), first.id());
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.header("x-sync-token"), first.header("x-sync-token"));
    assert_eq!(
        first.header("location"),
        Some(format!("/api/products/{}", first.id())),
        "a create says where the new row is"
    );
    assert_eq!(retry.header("location"), first.header("location"));
    assert_eq!(
        other_body.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{other_body:?}"
    );
    assert_eq!(other_user.status, StatusCode::CREATED);
    assert_ne!(other_user.id(), first.id());
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
    assert_eq!(racer_a.status, StatusCode::CREATED, "{racer_a:?}");
    assert_eq!(racer_b.status, StatusCode::CREATED, "{racer_b:?}");
    assert_eq!(
        racer_a.id(),
        racer_b.id(),
        "concurrent attempts share one row"
    );
    assert_eq!(
        count(&db, "products").await,
        3,
        "Rice twice (alice, bob), Beans once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_idempotency_key_is_forgotten_and_a_fresh_one_still_replays() {
    // Arrange: two keys, one of them from two days ago.
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let alice = Api::new(&app, "alice");
    let create = |key: &str| {
        send(
            alice
                .request(Method::POST, "/api/products")
                .header("idempotency-key", key)
                .json(&json!({"name": "Rice"})),
        )
    };
    let old = create("old").await;
    let fresh = create("fresh").await;
    let client = db.connect().await;
    client
        .execute(
            "update idempotency_keys set created_at = now() - interval '2 days' where key = 'old'",
            &[],
        )
        .await
        .unwrap();

    // Act
    let expired = auto_order::store::idempotency::expire_keys(
        &client,
        std::time::Duration::from_secs(24 * 3600),
    )
    .await
    .unwrap();
    let old_again = create("old").await;
    let fresh_again = create("fresh").await;

    // Assert
    assert_eq!(expired, 1, "only the two-day-old key");
    assert_eq!(old_again.status, StatusCode::CREATED);
    assert_ne!(
        old_again.id(),
        old.id(),
        "past its TTL a key is a new create"
    );
    assert_eq!(old_again.header("idempotent-replayed"), None);
    assert_eq!(
        fresh_again.id(),
        fresh.id(),
        "a key within its TTL still replays"
    );
    assert_eq!(
        fresh_again.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(count(&db, "products").await, 3);
}
