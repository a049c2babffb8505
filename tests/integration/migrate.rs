//! `migrate`: idempotent, safe to run concurrently, and refuses edited migrations.

use auto_order_sync::pg::migrate::run_migrations;

use crate::support::TestDb;

#[tokio::test]
async fn migrations_apply_once_and_a_second_run_does_nothing() {
    let db = TestDb::empty().await;
    let mut client = db.connect().await;

    let first = run_migrations(&mut client).await.unwrap();
    let second = run_migrations(&mut client).await.unwrap();

    assert!(first.len() >= 2, "{first:?}");
    assert!(second.is_empty(), "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_instances_migrating_at_once_all_succeed() {
    let db = TestDb::empty().await;
    let mut runs = Vec::new();
    for _ in 0..4 {
        let mut client = db.connect().await;
        runs.push(tokio::spawn(
            async move { run_migrations(&mut client).await },
        ));
    }

    let mut applied = 0;
    for run in runs {
        applied += run
            .await
            .unwrap()
            .expect("every concurrent run succeeds")
            .len();
    }

    let total: i64 = db
        .client
        .query_one("select count(*) from refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(applied as i64, total, "each migration applied exactly once");
}

#[tokio::test]
async fn an_applied_migration_whose_text_changed_is_refused() {
    let db = TestDb::new().await;
    // Simulate an edited migration file: the recorded checksum no longer matches.
    db.client
        .execute(
            "update refinery_schema_history set checksum = '1' where version = 1",
            &[],
        )
        .await
        .unwrap();
    let mut client = db.connect().await;

    let err = run_migrations(&mut client).await.unwrap_err();

    assert!(err.to_string().contains("migration"), "{err}");
}
