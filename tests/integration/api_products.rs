//! `/api/products`: CRUD, pagination, validation, ownership, ETags, the cache and the
//! OpenAPI description, against the real app and a fresh database.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Api, TestApp, TestDb, count, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_can_be_created_read_patched_and_deleted_by_its_owner() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let alice = Api::new(&app, "alice");

    // Act
    let created = alice
        .post(
            "/api/products",
            json!({"name": "Oat milk", "unit": "l", "price_cents": 199, "notes": "barista"}),
        )
        .await;
    let path = format!("/api/products/{}", created.id());
    let read = alice.get(&path).await;
    let patched = alice
        .patch(&path, json!({"reorder_quantity": 6, "notes": null}))
        .await;
    let reread = alice.get(&path).await;
    let deleted = alice.delete(&path).await;
    let gone = alice.get(&path).await;

    // Assert
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert!(created.header("x-sync-token").is_some());
    assert_eq!(created.body["reorder_quantity"], 1, "default quantity");
    assert!(
        created.body.get("owner_id").is_none(),
        "owner is not exposed"
    );
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, created.body);
    assert_eq!(patched.status, StatusCode::OK, "{patched:?}");
    assert_eq!(patched.body["reorder_quantity"], 6);
    assert_eq!(
        patched.body["notes"],
        serde_json::Value::Null,
        "null clears"
    );
    assert_eq!(patched.body["unit"], "l", "absent is unchanged");
    assert!(patched.body["version"].as_i64() > created.body["version"].as_i64());
    assert!(patched.body["updated_at"].as_str() > created.body["updated_at"].as_str());
    assert_eq!(reread.body, patched.body);
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.error().0, "not_found");
    assert_eq!(count(&db, "products").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walking_the_product_list_by_cursor_yields_every_product_once_newest_first() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let alice = Api::new(&app, "alice");
    for i in 0..23 {
        alice.product(&format!("Product {i:02}")).await;
    }
    // Rows with the same created_at: the id breaks the tie.
    db.client
        .execute(
            "insert into products (owner_id, name, created_at)
             select 'alice', 'Twin ' || g, '2026-01-01T00:00:00Z' from generate_series(1, 5) g",
            &[],
        )
        .await
        .unwrap();
    app.catch_up(&db).await;

    // Act
    let all = alice.walk("/api/products", 4).await;
    let searched = alice.walk("/api/products?q=TWIN", 2).await;

    // Assert
    let ids: HashSet<&str> = all.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(all.len(), 28);
    assert_eq!(ids.len(), 28, "no duplicates");
    let keys: Vec<(String, String)> = all
        .iter()
        .map(|p| (p["created_at"].to_string(), p["id"].to_string()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(keys, sorted, "newest first, ties by id");
    assert_eq!(searched.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_product_requests_get_a_json_4xx_naming_the_field_and_write_nothing() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let alice = Api::new(&app, "alice");
    let existing = alice.product("Coffee").await;
    let path = format!("/api/products/{existing}");
    let before = alice.get(&path).await.body;
    let bodies = [
        (json!({"name": 42}), "name"),
        (json!({"name": "x", "colour": "red"}), "colour"),
        (json!({"unit": "kg"}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(201)}), "name"),
        (
            json!({"name": "x", "reorder_quantity": 0}),
            "reorder_quantity",
        ),
        (
            json!({"name": "x", "reorder_quantity": -3}),
            "reorder_quantity",
        ),
        (
            json!({"name": "x", "reorder_quantity": 1.5}),
            "reorder_quantity",
        ),
        (json!({"name": "x", "price_cents": -1}), "price_cents"),
        (json!({"name": "x", "unit": "u".repeat(51)}), "unit"),
        (json!({"name": "x", "notes": "n".repeat(2001)}), "notes"),
    ];
    let patches = [
        (json!({"name": null}), "name"),
        (json!({"reorder_quantity": null}), "reorder_quantity"),
        (json!({"reorder_quantity": 0}), "reorder_quantity"),
        (json!({"owner_id": "bob"}), "owner_id"),
        (json!({"price_cents": "12"}), "price_cents"),
    ];

    // Act + Assert
    for (body, field) in bodies {
        let reply = alice.post("/api/products", body.clone()).await;
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
    for (body, field) in patches {
        let reply = alice.patch(&path, body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {reply:?}"
        );
        assert_eq!(reply.error().1.as_deref(), Some(field), "{body}");
    }
    let malformed = send(
        alice
            .request(Method::POST, "/api/products")
            .header("content-type", "application/json")
            .body("{\"name\": \"x\""),
    )
    .await;
    let not_json = send(
        alice
            .request(Method::POST, "/api/products")
            .header("content-type", "text/plain")
            .body("{\"name\": \"x\"}"),
    )
    .await;
    // The server answers 413 without reading the whole body and then closes the
    // connection; `Connection: close` keeps the client from reusing it for the next request.
    let oversized = send(
        alice
            .request(Method::POST, "/api/products")
            .header("connection", "close")
            .json(&json!({"name": "x", "notes": "n".repeat(3 << 20)})),
    )
    .await;
    let bad_uuid = alice.get("/api/products/not-a-uuid").await;
    let bad_limit = alice.get("/api/products?limit=0").await;
    let bad_cursor = alice.get("/api/products?cursor=garbage").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST, "{malformed:?}");
    assert_eq!(malformed.error().0, "bad_request");
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST, "{not_json:?}");
    assert_eq!(
        oversized.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{oversized:?}"
    );
    assert_eq!(oversized.error().0, "payload_too_large");
    assert_eq!(bad_uuid.status, StatusCode::BAD_REQUEST, "{bad_uuid:?}");
    assert_eq!(bad_uuid.error().0, "bad_request");
    assert_eq!(bad_limit.error().1.as_deref(), Some("limit"));
    assert_eq!(bad_cursor.error().1.as_deref(), Some("cursor"));
    assert_eq!(count(&db, "products").await, 1, "nothing was written");
    assert_eq!(
        alice.get(&path).await.body,
        before,
        "the product is unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_product_is_invisible_and_unchangeable() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let (alice, bob) = (Api::new(&app, "alice"), Api::new(&app, "bob"));
    let path = format!("/api/products/{}", alice.product("Alice's tea").await);

    // Act
    let read = bob.get(&path).await;
    let list = bob.get("/api/products").await;
    let patched = bob.patch(&path, json!({"name": "mine now"})).await;
    let deleted = bob.delete(&path).await;

    // Assert
    assert_eq!(read.status, StatusCode::NOT_FOUND);
    assert_eq!(list.body["items"], json!([]));
    assert_eq!(patched.status, StatusCode::NOT_FOUND);
    assert_eq!(deleted.status, StatusCode::NOT_FOUND);
    let row = db
        .client
        .query_one("select owner_id, name from products", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("alice".into(), "Alice's tea".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_with_a_matching_etag_is_not_modified_until_the_product_changes() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let alice = Api::new(&app, "alice");
    let path = format!("/api/products/{}", alice.product("Bread").await);
    let first = alice.get(&path).await;
    let list = alice.get("/api/products").await;
    let etag = first.header("etag").expect("an ETag");
    let list_etag = list.header("etag").expect("a list ETag");
    let conditional = |p: &str, tag: &str, token: Option<&str>| {
        let mut request = alice.request(Method::GET, p).header("if-none-match", tag);
        if let Some(token) = token {
            request = request.header("x-sync-token", token);
        }
        send(request)
    };

    // Act: the reads after the change carry its token, as a client does (without it, a
    // replica slower than the write's bounded wait would rightly still answer 304)
    let unchanged = conditional(&path, &etag, None).await;
    let list_unchanged = conditional("/api/products", &list_etag, None).await;
    let patched = alice.patch(&path, json!({"name": "Rye bread"})).await;
    let token = patched.header("x-sync-token").expect("a sync token");
    let changed = conditional(&path, &etag, Some(&token)).await;
    let list_changed = conditional("/api/products", &list_etag, Some(&token)).await;

    // Assert
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
    assert_eq!(unchanged.header("etag").as_deref(), Some(etag.as_str()));
    assert_eq!(list_unchanged.status, StatusCode::NOT_MODIFIED);
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(changed.body["name"], "Rye bread");
    assert_ne!(changed.header("etag"), Some(etag));
    assert_eq!(list_changed.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_reads_show_a_change_as_soon_as_it_is_written_or_applied() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let alice = Api::new(&app, "alice");
    let id = alice.product("Apples").await;
    let path = format!("/api/products/{id}");
    // On a loaded machine the write may outrun the bound; reads then go to the primary,
    // which is never cached. Wait for the replica so these reads are cacheable.
    app.catch_up(&db).await;
    alice.get(&path).await;
    alice.get("/api/products").await;
    let hits_before = app.cache.hits();
    let cached = alice.get(&path).await;
    let hits_after = app.cache.hits();

    // Act: one change through the API, one made on the primary as if by another edge.
    alice.patch(&path, json!({"name": "Pears"})).await;
    let after_own_write = alice.get(&path).await;
    db.client
        .execute(
            "update products set name = 'Plums' where id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    app.catch_up(&db).await;
    let mut after_applied = alice.get(&path).await;
    // The invalidation task runs just after the watermark moves: allow it a moment.
    for _ in 0..250 {
        if after_applied.body["name"] == "Plums" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        after_applied = alice.get(&path).await;
    }
    let list = alice.get("/api/products").await;

    // Assert
    assert_eq!(cached.body["name"], "Apples");
    assert_eq!(
        hits_after,
        hits_before + 1,
        "a repeated read is served from the cache"
    );
    assert_eq!(after_own_write.body["name"], "Pears");
    assert_eq!(after_applied.body["name"], "Plums", "{after_applied:?}");
    assert_eq!(list.body["items"][0]["name"], "Plums");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_data_route() {
    // Arrange
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;

    // Act
    let doc: serde_json::Value = app
        .http
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Assert
    let paths = &doc["paths"];
    for (path, methods) in [
        ("/api/products", &["get", "post"][..]),
        ("/api/products/{id}", &["get", "patch", "delete"][..]),
        ("/api/orders", &["get", "post"][..]),
        ("/api/orders/{id}", &["get", "patch", "delete"][..]),
    ] {
        for method in methods {
            assert!(
                paths[path][method].is_object(),
                "{method} {path} in {paths}"
            );
        }
    }
    assert_eq!(
        paths["/api/products/{id}"]["get"]["operationId"], "get_product",
        "handlers are named verb_noun"
    );
    assert!(doc["components"]["schemas"]["NewOrder"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_finds_the_same_products_on_the_replica_and_on_the_primary() {
    // Arrange: names with letters outside ASCII, in both cases.
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(&db.url, &[("READ_YOUR_WRITES_TIMEOUT_MS", "0")]).await;
    let alice = Api::new(&app, "alice");
    for name in [
        "Éclair",
        "ÉCLAIR",
        "éclair au café",
        "Crème brûlée",
        "CRÈME",
        "Eclair",
    ] {
        alice.product(name).await;
    }
    app.catch_up(&db).await;
    let ahead = (app.sync.watermark() + 5_000_000).to_string();
    let names = |reply: crate::support::api::Reply| {
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let mut names: Vec<String> = reply.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };

    for q in ["éclair", "ÉCLAIR", "eclair", "crème", "CRÈME", "CAFÉ"] {
        // Act
        let path = format!("/api/products?q={q}");
        let replica = names(send(alice.request(Method::GET, &path)).await);
        let primary = names(
            send(
                alice
                    .request(Method::GET, &path)
                    .header("x-sync-token", &ahead),
            )
            .await,
        );

        // Assert
        assert_eq!(replica, primary, "q={q}");
    }
    let eclair = names(send(alice.request(Method::GET, "/api/products?q=ECLAIR")).await);
    assert_eq!(eclair, ["Eclair"], "ASCII letters fold, É does not");
    app.stop().await;
}
