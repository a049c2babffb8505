//! Transactions commit in an order that is not txid order: the replica must still end with
//! the value the primary ends with, and a delete must not be undone by a late update.

use auto_order_sync::rusqlite::OptionalExtension;
use uuid::Uuid;

use crate::support::edge::{assert_same_as_primary, fast_config};
use crate::support::{TestDb, TestEdge};

/// Arrange a row R; transaction A takes its txid first; B (higher txid) updates R and
/// commits; then A runs `a_does` on R and commits.
async fn a_after_b(a_does: &str) -> (TestDb, TestEdge, Uuid, tempfile::TempDir) {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start(&db.url, dir.path(), fast_config()).await;
    let r = Uuid::new_v4();
    db.client
        .execute(
            "insert into products (id, owner_id, name) values ($1, 'u', 'original')",
            &[&r],
        )
        .await
        .unwrap();
    edge.catch_up(&db).await;

    let mut a = db.connect().await;
    let mut b = db.connect().await;
    let ta = a.transaction().await.unwrap();
    let a_txid: i64 = ta
        .query_one("select pg_current_xact_id()::text::bigint", &[])
        .await
        .unwrap()
        .get(0);
    let tb = b.transaction().await.unwrap();
    tb.execute("update products set name = 'B' where id = $1", &[&r])
        .await
        .unwrap();
    let b_txid: i64 = tb
        .query_one("select pg_current_xact_id()::text::bigint", &[])
        .await
        .unwrap()
        .get(0);
    tb.commit().await.unwrap();
    assert!(a_txid < b_txid, "A took its txid first");
    ta.execute(a_does, &[&r]).await.unwrap();
    ta.commit().await.unwrap();
    (db, edge, r, dir)
}

fn replica_name(edge: &TestEdge, id: Uuid) -> Option<String> {
    edge.reader()
        .query_row(
            "select name from products where id = ?1",
            [id.to_string()],
            |r| r.get(0),
        )
        .optional()
        .unwrap()
}

#[tokio::test]
async fn a_lower_txid_committing_last_wins_over_a_higher_one() {
    let (db, edge, r, _dir) = a_after_b("update products set name = 'A' where id = $1").await;

    edge.catch_up(&db).await;

    assert_eq!(replica_name(&edge, r).as_deref(), Some("A"));
    assert_same_as_primary(&db, &edge).await;
}

#[tokio::test]
async fn deleted_row_is_not_resurrected_by_a_late_update() {
    let (db, edge, r, _dir) = a_after_b("delete from products where id = $1").await;

    edge.catch_up(&db).await;

    assert_eq!(replica_name(&edge, r), None);
    assert_same_as_primary(&db, &edge).await;
}

#[tokio::test]
async fn a_reinserted_row_comes_back_with_its_new_values() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let edge = TestEdge::start(&db.url, dir.path(), fast_config()).await;
    let r = Uuid::new_v4();
    for name in ["first", "second"] {
        db.client
            .execute(
                "insert into products (id, owner_id, name) values ($1, 'u', $2)",
                &[&r, &name],
            )
            .await
            .unwrap();
        db.client
            .execute("delete from products where id = $1", &[&r])
            .await
            .unwrap();
    }
    db.client
        .execute(
            "insert into products (id, owner_id, name) values ($1, 'u', 'third')",
            &[&r],
        )
        .await
        .unwrap();

    edge.catch_up(&db).await;

    assert_eq!(replica_name(&edge, r).as_deref(), Some("third"));
    // Tombstones of the earlier deletes expire once the watermark passes the xmax of the
    // pull that brought them; a second fence is allocated after that pull.
    edge.catch_up(&db).await;
    let tombstones: i64 = edge
        .reader()
        .query_row("select count(*) from sync_tombstones", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        tombstones, 0,
        "tombstones are dropped once no older change can arrive"
    );
}
