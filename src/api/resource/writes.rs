//! Writes on the primary, in as few round trips as the work allows, and their end: give the
//! connection back to the pool, wait (bounded) for this edge's replica to apply the write,
//! forget the writer's cached reads, and hand back the `X-Sync-Token` header.
//!
//! # Round trips
//! An edge may be a continent away from its primary, where a round trip is 100–200 ms and
//! the physical floor of a write is one. So:
//! - a **create** (with its `Idempotency-Key` claim) and a **delete** are one statement
//!   each, run in autocommit: one round trip, sync token included ([`create_one`],
//!   [`delete_owned`]);
//! - an **update** needs the current row to validate the patch against: `begin`, the locking
//!   read and the txid go out together, then the `update` and `commit` together: two round
//!   trips ([`lock_for_update`], [`finish_update`]).
//!
//! (tokio-postgres pipelines the requests of futures polled together; statements are
//! prepared once per pooled connection.) The writing edge does not wait for the change
//! stream's announcement: its read-your-writes wait wakes its engine at once.
//!
//! The connection goes back **before** the read-your-writes wait: held through it, a
//! replica that stalls kept each of the pool's 16 connections for the whole bound, and the
//! edge answered 503 past about 16 writes a second. [`settle`] takes the connection by
//! value, so a write cannot wait while holding it.

use axum::http::HeaderValue;
use axum::response::Response;
use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;

use crate::api::AppState;
use crate::consistency::settle_write;
use crate::error::ApiError;
use crate::store::db_error;

/// A committed write whose replica wait is still to come (see [`settle`]).
#[must_use = "a committed write is answered through `settle`"]
pub struct Committed {
    txid: u64,
}

/// What [`create_one`] did.
pub enum Created {
    /// The row was inserted: its image as JSON text, and the header to answer with.
    New {
        row: String,
        token: (&'static str, HeaderValue),
    },
    /// The key was used before by this request: its response again.
    Replay(Response),
}

/// The `Idempotency-Key` of a create and the digest of its request.
pub struct KeyUse<'a> {
    pub key: &'a str,
    pub hash: String,
}

/// How a resource creates its rows (see [`create_one`]).
pub struct Create {
    pub table: &'static str,
    /// `insert … select … where not exists (select 1 from prior) … returning *` over the
    /// parameters `$1` (owner), `$2` (key), `$3` (request hash) and the resource's fields
    /// from `$4` on.
    pub insert: &'static str,
    /// The error when the insert wrote nothing and the key had no prior use: a condition of
    /// the insert's own failed (a product of the caller's, say).
    pub unmet: fn() -> ApiError,
    /// A row image (JSON text) as the response body, for replays.
    pub view: fn(&str) -> Result<serde_json::Value, ApiError>,
}

/// Creates a row for `owner` in one statement and one round trip, claiming the key if there
/// is one; a key used before by the same request replays that response (with its
/// `Location` under `collection`, the path posted to).
#[tracing::instrument(
    level = "debug",
    name = "primary.create",
    skip_all,
    fields(otel.kind = "client", db.system.name = "postgresql")
)]
pub async fn create_one(
    state: &AppState,
    create: &Create,
    owner: &str,
    key: Option<KeyUse<'_>>,
    fields: &[&(dyn ToSql + Sync)],
    collection: &str,
) -> Result<Created, ApiError> {
    let Create {
        table,
        insert,
        unmet,
        view,
    } = *create;
    use crate::api::resource::idempotency;
    use crate::store::idempotency::{
        CLAIM_CTE, PRIOR_COLUMNS, PRIOR_CTE, Prior, fetch_prior, is_concurrent_claim,
    };
    let client = state.store.primary().get().await?;
    // `insert` is one of the API's own statements, never client input.
    let statement = client
        .prepare_cached(&format!(
            "with {PRIOR_CTE}, ins as ({insert}), {CLAIM_CTE}
             select (select to_jsonb(ins.*)::text from ins),
                    pg_current_xact_id()::text::bigint, {PRIOR_COLUMNS}"
        ))
        .await
        .map_err(db_error)?;
    let (key_text, hash) = match &key {
        Some(k) => (Some(k.key), Some(k.hash.as_str())),
        None => (None, None),
    };
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&owner, &key_text, &hash];
    params.extend_from_slice(fields);
    let prior = match client.query_one(&statement, &params).await {
        Ok(row) => match row.get::<_, Option<String>>(0) {
            Some(row_json) => {
                let txid: i64 = row.get(1);
                let token =
                    settle(state, client, Committed { txid: txid as u64 }, table, owner).await;
                return Ok(Created::New {
                    row: row_json,
                    token,
                });
            }
            None => Prior::from_columns(&row, 2),
        },
        Err(e) if is_concurrent_claim(&e) => {
            fetch_prior(&client, owner, key_text.unwrap_or_default()).await?
        }
        Err(e) => return Err(db_error(e)),
    };
    // The replay may wait for the replica: not on a pooled connection.
    drop(client);
    let (Some(prior), Some(key)) = (prior, key) else {
        return Err(unmet());
    };
    let stored = prior.judge(&key.hash)?.map_row_image(view)?;
    Ok(Created::Replay(
        idempotency::replay(state, stored, collection).await,
    ))
}

/// An update's transaction, open on its pooled connection with the row locked (see
/// [`lock_for_update`]), until [`finish_update`] or [`abort`] consumes it.
///
/// Dropped before that (the request cancelled by its client, or by the request timeout,
/// mid-update), it takes its connection out of the pool: closing the connection is what
/// rolls the transaction back, where a pooled one would carry it, and its row lock, into
/// the next request.
pub struct Locked {
    /// `Some` until this value is consumed.
    client: Option<Object>,
    txid: u64,
    /// The caller's row as JSON text.
    pub current: String,
}

impl Locked {
    /// The connection the transaction is open on (to prepare the update).
    pub fn client(&self) -> &Object {
        match &self.client {
            Some(client) => client,
            None => unreachable!("a Locked holds its connection until consumed"),
        }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Out of the pool, then closed: Postgres rolls the transaction back.
            drop(Object::take(client));
        }
    }
}

/// Begins an update of the caller's row `id` of `table` on `client`: `begin`, the locking
/// read and the txid in one round trip. 404 (rolled back) when the caller has no such row.
#[tracing::instrument(
    level = "debug",
    name = "primary.lock_for_update",
    skip_all,
    fields(otel.kind = "client", db.system.name = "postgresql")
)]
pub async fn lock_for_update(
    client: Object,
    table: &'static str,
    id: &uuid::Uuid,
    owner: &str,
) -> Result<Locked, ApiError> {
    // `table` is one of the API's own table names, never client input.
    let select = client
        .prepare_cached(&format!(
            "select to_jsonb({table}.*)::text, pg_current_xact_id()::text::bigint
               from {table} where id = $1 and owner_id = $2 for update"
        ))
        .await
        .map_err(db_error)?;
    // Held from before `begin` is sent, so a cancelled request cannot pool an open one.
    let mut locked = Locked {
        client: Some(client),
        txid: 0,
        current: String::new(),
    };
    let params: [&(dyn ToSql + Sync); 2] = [id, &owner];
    let (begun, row) = futures_util::join!(
        locked.client().batch_execute("begin"),
        locked.client().query_opt(&select, &params),
    );
    match begun.and(row).map_err(db_error) {
        Ok(Some(row)) => {
            locked.current = row.get(0);
            locked.txid = row.get::<_, i64>(1) as u64;
            Ok(locked)
        }
        Ok(None) => Err(abort(locked, ApiError::NotFound).await),
        Err(e) => Err(abort(locked, e).await),
    }
}

/// Ends an update: the `update` statement and `commit` in one round trip. Returns the row
/// written (the statement's `returning`; `None` when a condition of the statement's own
/// left nothing to update, and then nothing was), the committed write and the connection
/// (for [`settle`]).
#[tracing::instrument(
    level = "debug",
    name = "primary.finish_update",
    skip_all,
    fields(otel.kind = "client", db.system.name = "postgresql")
)]
pub async fn finish_update(
    mut locked: Locked,
    update: &tokio_postgres::Statement,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<(tokio_postgres::Row, Committed, Object)>, ApiError> {
    // A failed update aborts the transaction, and the `commit` then rolls it back.
    let (written, committed) = futures_util::join!(
        locked.client().query_opt(update, params),
        locked.client().batch_execute("commit"),
    );
    // Committed or rolled back: the connection may go back to the pool.
    let client = locked.client.take();
    let written = written.map_err(db_error)?;
    committed.map_err(db_error)?;
    let committed = Committed { txid: locked.txid };
    Ok(written
        .zip(client)
        .map(|(row, client)| (row, committed, client)))
}

/// Rolls back an update begun by [`lock_for_update`] that will not be finished, and returns
/// `err`. A connection that cannot even roll back leaves the pool.
pub async fn abort(mut locked: Locked, err: ApiError) -> ApiError {
    if locked.client().batch_execute("rollback").await.is_ok() {
        // Rolled back: the connection may go back to the pool.
        drop(locked.client.take());
    }
    err
}

/// After a commit: returns `client` to the pool, waits (bounded) for the replica, forgets
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

/// Deletes the caller's row `id` of `table` in one statement and one round trip, and
/// answers like any write; 404 when the caller has no such row. Returns the `X-Sync-Token`
/// header.
#[tracing::instrument(
    level = "debug",
    name = "primary.delete",
    skip_all,
    fields(otel.kind = "client", db.system.name = "postgresql")
)]
pub async fn delete_owned(
    state: &AppState,
    table: &'static str,
    id: &uuid::Uuid,
    owner: &str,
) -> Result<(&'static str, HeaderValue), ApiError> {
    let client = state.store.primary().get().await?;
    // `table` is one of the API's own table names, never client input.
    let delete = client
        .prepare_cached(&format!(
            "with gone as (delete from {table} where id = $1 and owner_id = $2 returning 1)
             select (select count(*) from gone), pg_current_xact_id()::text::bigint"
        ))
        .await
        .map_err(db_error)?;
    let row = client
        .query_one(&delete, &[id, &owner])
        .await
        .map_err(db_error)?;
    if row.get::<_, i64>(0) == 0 {
        return Err(ApiError::NotFound);
    }
    let committed = Committed {
        txid: row.get::<_, i64>(1) as u64,
    };
    Ok(settle(state, client, committed, table, owner).await)
}
