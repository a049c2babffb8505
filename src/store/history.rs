//! Reads a user's purchase history for predictions, from the replica or (when the client's
//! `X-Sync-Token` is not applied yet) from the primary.
//!
//! Replica reads run on the blocking pool (rusqlite never runs on an async worker), in one
//! read transaction so products and orders come from the same applied state.
//!
//! # Bounded
//! A history is the newest [`MAX_PURCHASES_PER_PRODUCT`] purchases of a product, and
//! reorders look at most [`MAX_PRODUCTS`] products (by id): one request's memory and time
//! do not grow with an account's age, on the replica or (through the primary read budget)
//! on the primary. Both paths read the same rows, through `orders_product_ordered`.

use std::collections::HashMap;

use anyhow::Context;
use auto_order_sync::rusqlite::{self, OptionalExtension, params};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError};
use crate::consistency::ReadFrom;
use crate::predict::Purchase;

/// Purchases per product a prediction reads: the newest ones (the rate is then the recent
/// one, which is also the one worth predicting from).
pub const MAX_PURCHASES_PER_PRODUCT: i64 = 100;

/// Products per owner that reorders considers.
pub const MAX_PRODUCTS: i64 = 1000;

/// A product of the caller, with its purchases oldest first.
#[derive(Debug, Clone)]
pub struct ProductHistory {
    pub id: Uuid,
    pub name: String,
    pub reorder_quantity: u32,
    pub purchases: Vec<Purchase>,
}

/// One product of `owner` with its history; `None` if it does not exist or is not theirs.
pub async fn product_history(
    store: &Store,
    from: ReadFrom,
    owner: &str,
    product_id: Uuid,
) -> Result<Option<ProductHistory>, StoreError> {
    let mut all = match from {
        ReadFrom::Replica => {
            let owner = owner.to_owned();
            store
                .replica_read(span(), move |conn| {
                    replica_histories(conn, &owner, Some(product_id))
                })
                .await?
        }
        ReadFrom::Primary => primary_histories(store, owner, Some(product_id)).await?,
    };
    Ok(all.pop())
}

/// Every product of `owner` with its history.
pub async fn all_histories(
    store: &Store,
    from: ReadFrom,
    owner: &str,
) -> Result<Vec<ProductHistory>, StoreError> {
    match from {
        ReadFrom::Replica => {
            let owner = owner.to_owned();
            store
                .replica_read(span(), move |conn| replica_histories(conn, &owner, None))
                .await
        }
        ReadFrom::Primary => primary_histories(store, owner, None).await,
    }
}

/// The span of a replica read of histories, beneath the caller's.
fn span() -> tracing::Span {
    tracing::debug_span!("replica.query", table = "history")
}

/// Products (one, or all up to [`MAX_PRODUCTS`]) of `owner` and their newest orders, in
/// one read transaction. Orders are read per product through `orders_product_ordered`.
fn replica_histories(
    conn: &mut rusqlite::Connection,
    owner: &str,
    only: Option<Uuid>,
) -> anyhow::Result<Vec<ProductHistory>> {
    let tx = conn.transaction()?;
    let mut products = Vec::new();
    let product_row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(String, String, i64)> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    };
    if let Some(id) = only {
        let row = tx
            .query_row(
                "select id, name, reorder_quantity from products where id = ?1 and owner_id = ?2",
                params![id.to_string(), owner],
                product_row,
            )
            .optional()?;
        products.extend(row);
    } else {
        let mut stmt = tx.prepare(
            "select id, name, reorder_quantity from products where owner_id = ?1 \
             order by id limit ?2",
        )?;
        for row in stmt.query_map(params![owner, MAX_PRODUCTS], product_row)? {
            products.push(row?);
        }
    }
    let mut histories = Vec::with_capacity(products.len());
    for (id, name, reorder_quantity) in products {
        histories.push(ProductHistory {
            id: id.parse().context("replica product id is not a uuid")?,
            name,
            reorder_quantity: u32::try_from(reorder_quantity).unwrap_or(1),
            purchases: Vec::new(),
        });
    }
    if histories.is_empty() {
        return Ok(histories);
    }
    // Newest first through orders_product_ordered, then reversed: oldest first.
    let mut stmt = tx.prepare(
        "select quantity, ordered_at from orders where product_id = ?1 and owner_id = ?2 \
         order by ordered_at desc, id desc limit ?3",
    )?;
    for history in &mut histories {
        let rows = stmt.query_map(
            params![history.id.to_string(), owner, MAX_PURCHASES_PER_PRODUCT],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )?;
        for row in rows {
            let (quantity, at) = row?;
            history.purchases.push(Purchase {
                at: DateTime::parse_from_rfc3339(&at)
                    .with_context(|| format!("bad ordered_at {at:?} in the replica"))?
                    .with_timezone(&Utc),
                quantity: u32::try_from(quantity).unwrap_or(0),
            });
        }
        history.purchases.reverse();
    }
    drop(stmt);
    tx.finish()?;
    Ok(histories)
}

/// The same read on the primary, in one repeatable-read transaction.
#[tracing::instrument(
    level = "debug",
    name = "primary.query",
    skip_all,
    fields(table = "history", otel.kind = "client", db.system.name = "postgresql")
)]
async fn primary_histories(
    store: &Store,
    owner: &str,
    only: Option<Uuid>,
) -> Result<Vec<ProductHistory>, StoreError> {
    let mut client = store.primary().get_for_read().await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let products = tx
        .query(
            "select id, name, reorder_quantity from products \
             where owner_id = $1 and ($2::uuid is null or id = $2) order by id limit $3",
            &[&owner, &only, &MAX_PRODUCTS],
        )
        .await?;
    // The same rows as the replica reads: each product's newest purchases.
    let orders = tx
        .query(
            "select o.product_id, o.quantity, o.ordered_at \
               from (select id from products \
                      where owner_id = $1 and ($2::uuid is null or id = $2) \
                      order by id limit $3) p \
               cross join lateral ( \
                 select product_id, quantity, ordered_at, id from orders \
                  where product_id = p.id and owner_id = $1 \
                  order by ordered_at desc, id desc limit $4) o \
              order by o.ordered_at, o.id",
            &[&owner, &only, &MAX_PRODUCTS, &MAX_PURCHASES_PER_PRODUCT],
        )
        .await?;
    tx.commit().await?;

    let mut histories: Vec<ProductHistory> = products
        .iter()
        .map(|r| ProductHistory {
            id: r.get(0),
            name: r.get(1),
            reorder_quantity: u32::try_from(r.get::<_, i32>(2)).unwrap_or(1),
            purchases: Vec::new(),
        })
        .collect();
    let index: HashMap<Uuid, usize> = histories
        .iter()
        .enumerate()
        .map(|(i, h)| (h.id, i))
        .collect();
    for r in &orders {
        if let Some(&i) = index.get(&r.get::<_, Uuid>(0)) {
            histories[i].purchases.push(Purchase {
                at: r.get(2),
                quantity: u32::try_from(r.get::<_, i32>(1)).unwrap_or(0),
            });
        }
    }
    Ok(histories)
}
