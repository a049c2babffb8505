//! Guarantee 1: when writers stop, the replica equals the primary row for row, whatever the
//! interleaving of concurrent transactions, rollbacks, savepoints, deletes and re-inserts.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::support::edge::{assert_same_as_primary, fast_config};
use crate::support::{TestDb, TestEdge};

const WRITERS: usize = 4;
const TRANSACTIONS_PER_WRITER: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_converges_under_concurrent_random_writes_seed_1() {
    converges_under_random_writes(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_converges_under_concurrent_random_writes_seed_2() {
    converges_under_random_writes(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_converges_under_concurrent_random_writes_seed_3() {
    converges_under_random_writes(3).await;
}

async fn converges_under_random_writes(seed: u64) {
    // Arrange: a small shared id space so writers collide on the same rows.
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_config();
    config.batch_size = 500; // small batches: cut points fall inside the stream
    let edge = TestEdge::start(&db.url, dir.path(), config).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let ids = Ids {
        products: (0..30).map(|_| uuid(&mut rng)).collect(),
        orders: (0..60).map(|_| uuid(&mut rng)).collect(),
    };

    // Act: concurrent writers, one of which also commits a 10k-row transaction.
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = db.connect().await;
        let ids = ids.clone();
        writers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed * 1000 + w as u64);
            write_randomly(client, &ids, &mut rng, w == 0).await;
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }

    // Assert
    edge.catch_up(&db).await;
    assert_same_as_primary(&db, &edge).await;
    let products: i64 = db
        .client
        .query_one("select count(*) from products", &[])
        .await
        .unwrap()
        .get(0);
    assert!(products > 0, "the workload left some rows to compare");
}

#[derive(Clone)]
struct Ids {
    products: Vec<Uuid>,
    orders: Vec<Uuid>,
}

fn uuid(rng: &mut StdRng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

async fn write_randomly(mut client: Client, ids: &Ids, rng: &mut StdRng, with_large: bool) {
    for n in 0..TRANSACTIONS_PER_WRITER {
        if with_large && n == TRANSACTIONS_PER_WRITER / 2 {
            large_transaction(&mut client).await;
        }
        let mut tx = client.transaction().await.unwrap();
        let ops = rng.random_range(1..6);
        let mut failed = false;
        for _ in 0..ops {
            // Each op in a savepoint: a failing op (foreign key, deadlock) or a random
            // rollback-to-savepoint undoes only that op.
            let sp = tx.savepoint("op").await;
            let Ok(sp) = sp else {
                failed = true;
                break;
            };
            let outcome = random_op(&sp, ids, rng).await;
            let keep = outcome.is_ok() && rng.random_bool(0.85);
            let done = if keep {
                sp.commit().await
            } else {
                sp.rollback().await
            };
            if done.is_err() {
                failed = true;
                break;
            }
        }
        // Some transactions roll back whole.
        if failed || rng.random_bool(0.15) {
            let _ = tx.rollback().await;
        } else {
            let _ = tx.commit().await;
        }
    }
}

async fn random_op(
    tx: &tokio_postgres::Transaction<'_>,
    ids: &Ids,
    rng: &mut StdRng,
) -> Result<u64, tokio_postgres::Error> {
    let product = ids.products[rng.random_range(0..ids.products.len())];
    let order = ids.orders[rng.random_range(0..ids.orders.len())];
    let owner = format!("user-{}", rng.random_range(0..3));
    match rng.random_range(0..8) {
        0 | 1 => {
            tx.execute(
                "insert into products (id, owner_id, name, price_cents) values ($1, $2, $3, $4)
                 on conflict (id) do nothing",
                &[
                    &product,
                    &owner,
                    &format!("p{}", rng.random::<u16>()),
                    &rng.random_range(0..5000i32),
                ],
            )
            .await
        }
        2 | 3 => {
            tx.execute(
                "update products set name = $2, reorder_quantity = $3, notes = $4,
                        updated_at = now() where id = $1",
                &[
                    &product,
                    &format!("n{}", rng.random::<u16>()),
                    &rng.random_range(1..10i32),
                    &Some("note \"quoted\" \\ ünï"),
                ],
            )
            .await
        }
        4 => {
            tx.execute("delete from products where id = $1", &[&product])
                .await
        }
        5 => {
            tx.execute(
                "insert into orders (id, owner_id, product_id, quantity, currency, ordered_at)
                 select $1, owner_id, id, $3, 'EUR', now() - make_interval(days => $4)
                   from products where id = $2
                 on conflict (id) do update set quantity = excluded.quantity",
                &[
                    &order,
                    &product,
                    &rng.random_range(1..9i32),
                    &rng.random_range(0..90i32),
                ],
            )
            .await
        }
        6 => {
            tx.execute(
                "update orders set quantity = quantity + 1, unit_price_cents = $2 where id = $1",
                &[&order, &Some(rng.random_range(0..999i32))],
            )
            .await
        }
        _ => {
            tx.execute("delete from orders where id = $1", &[&order])
                .await
        }
    }
}

/// One committed transaction of 10,000 rows, larger than the engine's batch.
async fn large_transaction(client: &mut Client) {
    let tx = client.transaction().await.unwrap();
    tx.execute(
        "insert into products (owner_id, name, unit)
         select 'bulk', 'bulk ' || g, 'kg' from generate_series(1, 10000) g",
        &[],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}
