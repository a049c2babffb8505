//! Predictions and re-orders over a real edge: history seeded on the primary, read from the
//! replica (or the primary with an unapplied `X-Sync-Token`).

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::support::{TestApp, TestDb};

/// Inserts a product of `owner` and its purchases, given as (days ago, quantity).
async fn product_with_history(db: &TestDb, owner: &str, name: &str, buys: &[(i64, i32)]) -> Uuid {
    let row = db
        .client
        .query_one(
            "insert into products (owner_id, name, reorder_quantity) values ($1, $2, 3) returning id",
            &[&owner, &name],
        )
        .await
        .unwrap();
    let id: Uuid = row.get(0);
    for (days_ago, quantity) in buys {
        let at = Utc::now() - Duration::days(*days_ago);
        db.client
            .execute(
                "insert into orders (owner_id, product_id, quantity, ordered_at) values ($1, $2, $3, $4)",
                &[&owner, &id, quantity, &at],
            )
            .await
            .unwrap();
    }
    id
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> (StatusCode, Value) {
    let resp = app
        .http
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prediction_follows_the_quantity_weighted_interval() {
    // Arrange: one unit every 10 days, then two units 5 days ago: they last 20 days.
    let db = TestDb::new().await;
    let id = product_with_history(&db, "alice", "coffee", &[(25, 1), (15, 1), (5, 2)]).await;
    let app = TestApp::spawn(&db).await;
    app.catch_up(&db).await;

    // Act
    let (status, body) = get_json(
        &app,
        &format!("/api/predictions/{id}"),
        &app.token("alice", &[]),
    )
    .await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["purchases_used"], 3, "{body}");
    assert!(
        (body["daily_rate"].as_f64().unwrap() - 0.1).abs() < 1e-6,
        "{body}"
    );
    let last = time(&body["last_purchase_at"]);
    let next = time(&body["prediction"]["next_purchase_at"]);
    assert_eq!((next - last).num_days(), 20, "{body}");
    let (earliest, latest) = (
        time(&body["prediction"]["earliest_at"]),
        time(&body["prediction"]["latest_at"]),
    );
    assert!(
        last <= earliest && earliest <= next && next <= latest,
        "{body}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_purchase_gives_a_null_prediction_with_a_reason() {
    let db = TestDb::new().await;
    let id = product_with_history(&db, "alice", "salt", &[(3, 1)]).await;
    let app = TestApp::spawn(&db).await;
    app.catch_up(&db).await;

    let (status, body) = get_json(
        &app,
        &format!("/api/predictions/{id}"),
        &app.token("alice", &[]),
    )
    .await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["prediction"], Value::Null, "{body}");
    assert_eq!(body["reason"], "not_enough_purchases", "{body}");
    assert_eq!(body["purchases_used"], 1, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_or_an_unknown_product_is_not_found_and_a_malformed_id_is_a_bad_request() {
    let db = TestDb::new().await;
    let bobs = product_with_history(&db, "bob", "tea", &[(20, 1), (10, 1)]).await;
    let app = TestApp::spawn(&db).await;
    app.catch_up(&db).await;
    let alice = app.token("alice", &[]);

    let (other, body) = get_json(&app, &format!("/api/predictions/{bobs}"), &alice).await;
    let (unknown, _) = get_json(
        &app,
        &format!("/api/predictions/{}", Uuid::new_v4()),
        &alice,
    )
    .await;
    let (malformed, _) = get_json(&app, "/api/predictions/not-a-uuid", &alice).await;
    let anonymous = app
        .http
        .get(app.url(&format!("/api/predictions/{bobs}")))
        .send()
        .await
        .unwrap();

    assert_eq!(other, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    assert_eq!(unknown, StatusCode::NOT_FOUND);
    assert_eq!(
        malformed,
        StatusCode::BAD_REQUEST,
        "as on every route with an id"
    );
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unapplied_sync_token_reads_the_history_from_the_primary() {
    // Arrange: the edge is up; then a purchase is made and its token is far ahead of the
    // replica (a token no replica has applied yet forces the primary path).
    let db = TestDb::new().await;
    let app = TestApp::spawn_with(&db.url, &[("READ_YOUR_WRITES_TIMEOUT_MS", "50")]).await;
    let id = product_with_history(&db, "alice", "milk", &[(4, 1), (2, 1)]).await;
    let far_future_token = db.fence().await + 1_000_000;

    // Act
    let resp = app
        .http
        .get(app.url(&format!("/api/predictions/{id}")))
        .bearer_auth(app.token("alice", &[]))
        .header("x-sync-token", far_future_token.to_string())
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["purchases_used"], 2, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorders_lists_what_is_due_soonest_first() {
    // Arrange
    let db = TestDb::new().await;
    // Every 10 days, last 8 days ago: due in ~2 days.
    let soon = product_with_history(&db, "alice", "coffee", &[(28, 1), (18, 1), (8, 1)]).await;
    // Every 10 days, last 15 days ago: overdue by ~5 days.
    let overdue = product_with_history(&db, "alice", "soap", &[(35, 1), (25, 1), (15, 1)]).await;
    // Every 30 days, last 1 day ago: due in ~29 days.
    let later = product_with_history(&db, "alice", "rice", &[(61, 1), (31, 1), (1, 1)]).await;
    // One purchase: no prediction, never listed. Bob's product: not Alice's.
    product_with_history(&db, "alice", "salt", &[(1, 1)]).await;
    product_with_history(&db, "bob", "tea", &[(20, 1), (10, 1)]).await;
    let app = TestApp::spawn(&db).await;
    app.catch_up(&db).await;
    let alice = app.token("alice", &[]);

    // Act
    let (week_status, week) = get_json(&app, "/api/reorders", &alice).await;
    let (month_status, month) = get_json(&app, "/api/v1/reorders?within_days=30", &alice).await;

    // Assert
    assert_eq!(week_status, StatusCode::OK, "{week}");
    assert_eq!(month_status, StatusCode::OK, "{month}");
    let ids = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["product_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(week["within_days"], 7);
    assert_eq!(
        ids(&week),
        [overdue.to_string(), soon.to_string()],
        "{week}"
    );
    assert_eq!(
        ids(&month),
        [overdue.to_string(), soon.to_string(), later.to_string()],
        "{month}"
    );
    assert_eq!(week["items"][0]["overdue"], true, "{week}");
    assert_eq!(week["items"][1]["overdue"], false, "{week}");
    assert_eq!(week["items"][0]["reorder_quantity"], 3, "{week}");
    assert_eq!(week["items"][0]["name"], "soap", "{week}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_days_out_of_range_is_unprocessable() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let alice = app.token("alice", &[]);

    for bad in ["366", "-1", "soon", ""] {
        let (status, body) =
            get_json(&app, &format!("/api/reorders?within_days={bad}"), &alice).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["error"]["field"], "within_days", "{body}");
    }
    let (zero, body) = get_json(&app, "/api/reorders?within_days=0", &alice).await;
    assert_eq!(zero, StatusCode::OK, "{body}");
    assert_eq!(body["items"], serde_json::json!([]));
    app.stop().await;
}
