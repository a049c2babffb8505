//! The end of every write: commit on the primary, give the connection back to the pool,
//! wait (bounded) for this edge's replica to apply it, forget the writer's cached reads,
//! and hand back the `X-Sync-Token` header.
//!
//! The connection goes back **before** the read-your-writes wait: held through it, a
//! replica that stalls kept each of the pool's 16 connections for the whole bound, and the
//! edge answered 503 past about 16 writes a second. [`settle`] takes the connection by
//! value, so a write cannot wait while holding it.

use axum::http::HeaderValue;
use deadpool_postgres::{Object, Transaction};

use super::AppState;
use crate::consistency::settle_write;
use crate::db::db_error;
use crate::error::ApiError;

/// A committed write whose replica wait is still to come (see [`settle`]).
#[must_use = "a committed write is answered through `settle`"]
pub struct Committed {
    txid: u64,
}

/// Commits `tx`, whose txid is `txid`.
pub async fn commit(tx: Transaction<'_>, txid: u64) -> Result<Committed, ApiError> {
    tx.commit().await.map_err(db_error)?;
    Ok(Committed { txid })
}

/// After [`commit`]: returns `client` to the pool, waits (bounded) for the replica, forgets
/// `owner`'s cached reads of `table`, and returns the `X-Sync-Token` header.
pub async fn settle(
    state: &AppState,
    client: Object,
    committed: Committed,
    table: &'static str,
    owner: &str,
) -> (&'static str, HeaderValue) {
    drop(client);
    let txid = committed.txid;
    let header = settle_write(&state.sync, txid, state.config.read_your_writes_timeout).await;
    // After the replica applied the write (or the bound passed): a read that starts now
    // gets a new generation and so a fresh replica read. See `crate::cache`.
    state.cache.invalidate(table, owner);
    header
}

/// The caller's row `id` of `table` as JSON text, locked `for update` until the commit;
/// `None` when the caller has no such row. The start of an update.
pub async fn lock_owned(
    tx: &Transaction<'_>,
    table: &'static str,
    id: &uuid::Uuid,
    owner: &str,
) -> Result<Option<String>, ApiError> {
    // `table` is one of the API's own table names, never client input.
    let select = tx
        .prepare_cached(&format!(
            "select to_jsonb({table}.*)::text from {table}
              where id = $1 and owner_id = $2 for update"
        ))
        .await
        .map_err(db_error)?;
    let row = tx
        .query_opt(&select, &[id, &owner])
        .await
        .map_err(db_error)?;
    Ok(row.map(|r| r.get(0)))
}

/// Deletes the caller's row `id` of `table` in one transaction and commits it like any write;
/// 404 when the caller has no such row. Returns the `X-Sync-Token` header.
pub async fn delete_owned(
    state: &AppState,
    table: &'static str,
    id: &uuid::Uuid,
    owner: &str,
) -> Result<(&'static str, HeaderValue), ApiError> {
    let mut client = state.primary.get().await?;
    let tx = client.transaction().await.map_err(db_error)?;
    // `table` is one of the API's own table names, never client input.
    let delete = async {
        let delete = tx
            .prepare_cached(&format!(
                "delete from {table} where id = $1 and owner_id = $2"
            ))
            .await
            .map_err(db_error)?;
        tx.execute(&delete, &[id, &owner]).await.map_err(db_error)
    };
    let (txid, deleted) = crate::db::sync_token_with(&tx, delete).await?;
    if deleted == 0 {
        return Err(ApiError::NotFound);
    }
    let committed = commit(tx, txid).await?;
    Ok(settle(state, client, committed, table, owner).await)
}
