//! Least privilege on the primary: `auto-order roles` grants an edge role what serving
//! needs, an edge runs as that role, and the role cannot change the schema.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio_postgres::error::SqlState;

use crate::support::{Api, TestApp, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_serves_as_the_restricted_role_and_that_role_cannot_alter_the_schema() {
    // Arrange: a login role of this test (roles are cluster-wide), granted by the command
    // run as the schema owner.
    let db = TestDb::new().await;
    let role = format!("ao_edge_{}", &db.name["ao_test_".len()..][..12]);
    db.client
        .batch_execute(&format!("create role {role} login"))
        .await
        .unwrap();
    let granted = Command::new(env!("CARGO_BIN_EXE_auto-order"))
        .args(["roles", "--edge", &role])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/unused")
        .env("MIGRATION_DATABASE_URL", &db.url)
        .env("LOG_LEVEL", "warn")
        .output()
        .unwrap();
    assert!(granted.status.success(), "{granted:?}");
    let edge_url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(edge_url, db.url);

    // Act: an edge on the restricted role syncs, writes, reads, deletes and prunes.
    let app = TestApp::spawn_with(&edge_url, &[]).await;
    let alice = Api::new(&app, "alice");
    let product = alice.product("Milk").await;
    let order = alice
        .post(
            "/api/orders",
            json!({ "product_id": product, "quantity": 2 }),
        )
        .await;
    let read = alice.get(&format!("/api/products/{product}")).await;
    let deleted = alice.delete(&format!("/api/orders/{}", order.id())).await;
    let mut edge = crate::support::db::connect(&edge_url).await;
    let pruned = auto_order_sync::pg::prune::prune_changes(&mut edge, Duration::ZERO).await;
    let attempts = [
        "alter table products add column evil text",
        "drop trigger sync_record_change on products",
        "create table public.evil (id int)",
        "create table sync.evil (id int)",
        "truncate sync.changes",
        "create or replace function sync.record_change() returns trigger \
         language plpgsql as $$ begin return null; end $$",
    ];
    let mut refusals = Vec::new();
    for sql in attempts {
        refusals.push((sql, edge.batch_execute(sql).await));
    }

    // Assert
    assert_eq!(order.status, StatusCode::CREATED, "{order:?}");
    assert_eq!(read.status, StatusCode::OK, "{read:?}");
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{deleted:?}");
    assert!(pruned.is_ok(), "{pruned:?}");
    for (sql, result) in refusals {
        let err = result.expect_err(sql);
        let code = err.code().expect("a server error");
        assert!(
            *code == SqlState::INSUFFICIENT_PRIVILEGE,
            "{sql}: {code:?} {err}"
        );
    }
    app.stop().await;
    drop(edge);
    db.client
        .batch_execute(&format!("drop owned by {role}; drop role {role}"))
        .await
        .unwrap();
}
