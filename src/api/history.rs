//! Reads a user's purchase history for predictions, from the replica or (when the client's
//! `X-Sync-Token` is not applied yet) from the primary.
//!
//! Replica reads run on the blocking pool (rusqlite never runs on an async worker), in one
//! read transaction so products and orders come from the same applied state.

use std::collections::HashMap;

use anyhow::Context;
use auto_order_sync::rusqlite::{self, OptionalExtension, params};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::AppState;
use crate::consistency::ReadFrom;
use crate::db::db_error;
use crate::error::ApiError;
use crate::predict::Purchase;

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
    state: &AppState,
    from: ReadFrom,
    owner: &str,
    product_id: Uuid,
) -> Result<Option<ProductHistory>, ApiError> {
    let mut all = match from {
        ReadFrom::Replica => {
            let owner = owner.to_owned();
            replica_read(state, move |conn| {
                replica_histories(conn, &owner, Some(product_id))
            })
            .await?
        }
        ReadFrom::Primary => primary_histories(state, owner, Some(product_id)).await?,
    };
    Ok(all.pop())
}

/// Every product of `owner` with its history.
pub async fn all_histories(
    state: &AppState,
    from: ReadFrom,
    owner: &str,
) -> Result<Vec<ProductHistory>, ApiError> {
    match from {
        ReadFrom::Replica => {
            let owner = owner.to_owned();
            replica_read(state, move |conn| replica_histories(conn, &owner, None)).await
        }
        ReadFrom::Primary => primary_histories(state, owner, None).await,
    }
}

/// Runs `f` on a pooled replica reader on the blocking pool, inside the caller's span.
async fn replica_read<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut rusqlite::Connection) -> anyhow::Result<T> + Send + 'static,
{
    let readers = state.sync.replica().readers().clone();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            let mut conn = readers.get().context("Failed to get a replica reader")?;
            f(&mut conn)
        })
    })
    .await
    .context("replica read task failed")?
    .map_err(ApiError::Internal)
}

/// Products (one, or all) of `owner` and their orders, in one read transaction. Orders are
/// read through the `orders_owner_ordered` index (for one product, `orders_product_ordered`).
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
            "select id, name, reorder_quantity from products where owner_id = ?1 order by id",
        )?;
        for row in stmt.query_map(params![owner], product_row)? {
            products.push(row?);
        }
    }
    let mut histories = Vec::with_capacity(products.len());
    let mut index = HashMap::new();
    for (id, name, reorder_quantity) in products {
        index.insert(id.clone(), histories.len());
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
    let mut push = |product_id: String, quantity: i64, at: String| -> anyhow::Result<()> {
        if let Some(&i) = index.get(&product_id) {
            histories[i].purchases.push(Purchase {
                at: DateTime::parse_from_rfc3339(&at)
                    .with_context(|| format!("bad ordered_at {at:?} in the replica"))?
                    .with_timezone(&Utc),
                quantity: u32::try_from(quantity).unwrap_or(0),
            });
        }
        Ok(())
    };
    let order_row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(String, i64, String)> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    };
    if let Some(id) = only {
        let mut stmt = tx.prepare(
            "select product_id, quantity, ordered_at from orders \
             where product_id = ?1 and owner_id = ?2 order by ordered_at, id",
        )?;
        for row in stmt.query_map(params![id.to_string(), owner], order_row)? {
            let (p, q, at) = row?;
            push(p, q, at)?;
        }
    } else {
        // Walks orders_owner_ordered (owner_id, ordered_at desc, id desc) backwards.
        let mut stmt = tx.prepare(
            "select product_id, quantity, ordered_at from orders indexed by orders_owner_ordered \
             where owner_id = ?1 order by ordered_at, id",
        )?;
        for row in stmt.query_map(params![owner], order_row)? {
            let (p, q, at) = row?;
            push(p, q, at)?;
        }
    }
    tx.finish()?;
    Ok(histories)
}

/// The same read on the primary, in one repeatable-read transaction.
async fn primary_histories(
    state: &AppState,
    owner: &str,
    only: Option<Uuid>,
) -> Result<Vec<ProductHistory>, ApiError> {
    let mut client = state.primary.get().await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db_error)?;
    let products = tx
        .query(
            "select id, name, reorder_quantity from products \
             where owner_id = $1 and ($2::uuid is null or id = $2) order by id",
            &[&owner, &only],
        )
        .await
        .map_err(db_error)?;
    let orders = tx
        .query(
            "select product_id, quantity, ordered_at from orders \
             where owner_id = $1 and ($2::uuid is null or product_id = $2) \
             order by ordered_at, id",
            &[&owner, &only],
        )
        .await
        .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;

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
