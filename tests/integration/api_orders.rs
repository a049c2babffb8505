//! `/api/orders`: CRUD, filters and pagination, validation, ownership of orders and of the
//! product an order is for.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Api, TestApp, TestDb, count};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_can_be_created_read_patched_and_deleted_by_its_owner() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let alice = Api::new(&app, "alice");
    let milk = alice.product("Milk").await;
    let eggs = alice.product("Eggs").await;

    // Act
    let created = alice
        .post(
            "/api/orders",
            json!({"product_id": milk, "quantity": 2, "unit_price_cents": 99,
                   "currency": "EUR", "ordered_at": "2026-03-01T10:00:00+02:00"}),
        )
        .await;
    let path = format!("/api/orders/{}", created.id());
    let read = alice.get(&path).await;
    let patched = alice
        .patch(
            &path,
            json!({"product_id": eggs, "currency": null, "quantity": 12}),
        )
        .await;
    let defaulted = alice
        .post("/api/v1/orders", json!({"product_id": milk, "quantity": 1}))
        .await;
    let deleted = alice.delete(&path).await;
    let gone = alice.get(&path).await;

    // Assert
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(created.body["ordered_at"], "2026-03-01T08:00:00.000000Z");
    assert_eq!(created.body["currency"], "EUR");
    assert_eq!(read.body, created.body);
    assert_eq!(patched.status, StatusCode::OK, "{patched:?}");
    assert_eq!(patched.body["product_id"], eggs.as_str());
    assert_eq!(patched.body["currency"], serde_json::Value::Null);
    assert_eq!(patched.body["unit_price_cents"], 99, "absent is unchanged");
    assert_eq!(patched.body["quantity"], 12);
    assert_eq!(defaulted.status, StatusCode::CREATED, "{defaulted:?}");
    assert_eq!(created.header("location"), Some(path.clone()));
    assert_eq!(
        defaulted.header("location"),
        Some(format!("/api/v1/orders/{}", defaulted.id())),
        "the path the create was posted to"
    );
    assert!(defaulted.body["ordered_at"].as_str().unwrap() > "2026-03-02");
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(count(&db, "orders").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_listed_by_purchase_time_filtered_and_paged_without_gaps() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let alice = Api::new(&app, "alice");
    let (coffee, tea) = (alice.product("Coffee").await, alice.product("Tea").await);
    for day in 1..=14 {
        let product = if day % 2 == 0 { &coffee } else { &tea };
        let reply = alice
            .post(
                "/api/orders",
                json!({"product_id": product, "quantity": day,
                       "ordered_at": format!("2026-02-{day:02}T12:00:00Z")}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    }

    // Act
    let all = alice.walk("/api/orders", 3).await;
    let coffee_only = alice
        .walk(&format!("/api/orders?product_id={coffee}"), 2)
        .await;
    let window = alice
        .walk(
            "/api/orders?from=2026-02-05T00:00:00Z&to=2026-02-10T12:00:00Z",
            100,
        )
        .await;
    let bad_from = alice.get("/api/orders?from=yesterday").await;

    // Assert
    let quantities: Vec<i64> = all
        .iter()
        .map(|o| o["quantity"].as_i64().unwrap())
        .collect();
    assert_eq!(
        quantities,
        (1..=14).rev().collect::<Vec<_>>(),
        "newest first, no gaps"
    );
    let ids: HashSet<&str> = all.iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 14, "no duplicates");
    assert_eq!(coffee_only.len(), 7);
    assert!(
        coffee_only
            .iter()
            .all(|o| o["product_id"] == coffee.as_str())
    );
    let window: Vec<i64> = window
        .iter()
        .map(|o| o["quantity"].as_i64().unwrap())
        .collect();
    assert_eq!(window, vec![9, 8, 7, 6, 5], "from inclusive, to exclusive");
    assert_eq!(bad_from.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_from.error().1.as_deref(), Some("from"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_orders_get_a_json_4xx_naming_the_field_and_write_nothing() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let alice = Api::new(&app, "alice");
    let p = alice.product("Flour").await;
    let far_future = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let bodies = [
        (json!({"product_id": p, "quantity": 0}), "quantity"),
        (json!({"product_id": p, "quantity": -1}), "quantity"),
        (json!({"product_id": p, "quantity": 1_000_001}), "quantity"),
        (json!({"product_id": p, "quantity": "2"}), "quantity"),
        (json!({"product_id": p}), "quantity"),
        (json!({"quantity": 1}), "product_id"),
        (json!({"product_id": "nope", "quantity": 1}), "product_id"),
        (
            json!({"product_id": p, "quantity": 1, "currency": "eur"}),
            "currency",
        ),
        (
            json!({"product_id": p, "quantity": 1, "currency": "EURO"}),
            "currency",
        ),
        (
            json!({"product_id": p, "quantity": 1, "unit_price_cents": -5}),
            "unit_price_cents",
        ),
        (
            json!({"product_id": p, "quantity": 1, "ordered_at": "last tuesday"}),
            "ordered_at",
        ),
        (
            json!({"product_id": p, "quantity": 1, "ordered_at": far_future}),
            "ordered_at",
        ),
        (
            json!({"product_id": p, "quantity": 1, "owner_id": "bob"}),
            "owner_id",
        ),
        (
            json!({"product_id": uuid::Uuid::new_v4(), "quantity": 1}),
            "product_id",
        ),
    ];

    // Act + Assert
    for (body, field) in bodies {
        let reply = alice.post("/api/orders", body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {reply:?}"
        );
        assert_eq!(
            reply.error(),
            ("invalid_field".into(), Some(field.into())),
            "{body}"
        );
    }
    let order = alice
        .post("/api/orders", json!({"product_id": p, "quantity": 3}))
        .await;
    let path = format!("/api/orders/{}", order.id());
    for (body, field) in [
        (json!({"quantity": null}), "quantity"),
        (json!({"product_id": null}), "product_id"),
        (json!({"ordered_at": null}), "ordered_at"),
        (json!({"quantity": 0}), "quantity"),
    ] {
        let reply = alice.patch(&path, body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {reply:?}"
        );
        assert_eq!(reply.error().1.as_deref(), Some(field), "{body}");
    }
    assert_eq!(count(&db, "orders").await, 1, "only the valid order");
    assert_eq!(alice.get(&path).await.body, order.body, "unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_for_another_users_product_is_refused_and_others_orders_are_invisible() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let (alice, bob) = (Api::new(&app, "alice"), Api::new(&app, "bob"));
    let alices = alice.product("Alice's jam").await;
    let bobs = bob.product("Bob's jam").await;
    let order = alice
        .post("/api/orders", json!({"product_id": alices, "quantity": 1}))
        .await;
    let path = format!("/api/orders/{}", order.id());

    // Act
    let bob_orders_alices = bob
        .post("/api/orders", json!({"product_id": alices, "quantity": 1}))
        .await;
    let alice_moves_to_bobs = alice.patch(&path, json!({"product_id": bobs})).await;
    let bob_reads = bob.get(&path).await;
    let bob_lists = bob.get("/api/orders").await;
    let bob_patches = bob.patch(&path, json!({"quantity": 99})).await;
    let bob_deletes = bob.delete(&path).await;

    // Assert
    assert_eq!(bob_orders_alices.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bob_orders_alices.error().1.as_deref(), Some("product_id"));
    assert_eq!(alice_moves_to_bobs.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bob_reads.status, StatusCode::NOT_FOUND);
    assert_eq!(bob_lists.body["items"], json!([]));
    assert_eq!(bob_patches.status, StatusCode::NOT_FOUND);
    assert_eq!(bob_deletes.status, StatusCode::NOT_FOUND);
    let row = db
        .client
        .query_one(
            "select owner_id, quantity, product_id::text from orders",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "alice");
    assert_eq!(row.get::<_, i32>(1), 1);
    assert_eq!(row.get::<_, String>(2), alices);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_product_removes_its_orders_from_the_list() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let alice = Api::new(&app, "alice");
    let p = alice.product("Soap").await;
    alice
        .post("/api/orders", json!({"product_id": p, "quantity": 1}))
        .await;
    assert_eq!(alice.walk("/api/orders", 10).await.len(), 1);

    // Act
    alice.delete(&format!("/api/products/{p}")).await;
    let orders = alice.get("/api/orders").await;

    // Assert
    assert_eq!(orders.body["items"], json!([]));
}
