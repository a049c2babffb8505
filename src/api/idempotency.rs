//! `Idempotency-Key` on creates: a retried POST with the same key (same caller) answers the
//! original 201 (same id, same sync token) instead of creating a second row.
//!
//! The key is stored on the primary (`idempotency_keys`, migration V3), inserted in the same
//! transaction as the row, so it holds across edges and never outlives a rolled-back create.
//! A concurrent attempt with the same key waits on the first one's insert of the key (the
//! primary key's uniqueness check) and then replays its committed response. The same key
//! with a different request is refused with 422.
//!
//! Keys expire: the primary-region instance deletes keys older than `IDEMPOTENCY_KEY_TTL`
//! (24 h by default) every hour ([`expire_keys`]). A retry after that is a new create, as
//! with Stripe's keys; without expiry the table would grow with every create forever.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::AppState;
use crate::consistency::settle_write;
use crate::db::db_error;
use crate::error::ApiError;

/// The header the key arrives in.
pub const HEADER: &str = "Idempotency-Key";

/// What a key says about this request.
pub enum Claim {
    /// First use: go on and create, then [`record`] the response.
    New,
    /// Already used for this request: answer with this.
    Replay(StoredResponse),
}

pub struct StoredResponse {
    status: StatusCode,
    body: serde_json::Value,
    sync_token: Option<u64>,
}

/// The `Location` of the row `id` created by a `POST` to `collection` (e.g. `/api/products`
/// or `/api/v1/products`: the path the client used).
pub fn location(collection: &str, id: &str) -> (&'static str, HeaderValue) {
    let url = format!("{}/{id}", collection.trim_end_matches('/'));
    let value = HeaderValue::from_str(&url).unwrap_or_else(|_| HeaderValue::from_static("/api"));
    ("location", value)
}

/// A digest of what was asked: the route and the request body as parsed JSON.
pub fn request_hash(route: &str, body: &serde_json::Value) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{route}\n{body}").as_bytes(),
    );
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Claims `key` for `owner` inside the create's transaction `tx`.
pub async fn claim(
    tx: &Transaction<'_>,
    owner: &str,
    key: &str,
    hash: &str,
) -> Result<Claim, ApiError> {
    let insert = tx
        .prepare_cached(
            "insert into idempotency_keys (owner_id, key, request_hash) values ($1, $2, $3)
             on conflict (owner_id, key) do nothing",
        )
        .await
        .map_err(db_error)?;
    if tx
        .execute(&insert, &[&owner, &key, &hash])
        .await
        .map_err(db_error)?
        == 1
    {
        return Ok(Claim::New);
    }
    let select = tx
        .prepare_cached(
            "select request_hash, status, response, sync_token from idempotency_keys
              where owner_id = $1 and key = $2",
        )
        .await
        .map_err(db_error)?;
    let row = tx
        .query_opt(&select, &[&owner, &key])
        .await
        .map_err(db_error)?
        .ok_or_else(|| {
            ApiError::Conflict("a request with this Idempotency-Key is in progress".into())
        })?;
    if row.get::<_, String>(0) != hash {
        return Err(ApiError::invalid(
            HEADER,
            "this key was already used for a different request",
        ));
    }
    let (Some(status), Some(body)) = (
        row.get::<_, Option<i32>>(1),
        row.get::<_, Option<serde_json::Value>>(2),
    ) else {
        return Err(ApiError::Conflict(
            "a request with this Idempotency-Key is in progress".into(),
        ));
    };
    Ok(Claim::Replay(StoredResponse {
        status: StatusCode::from_u16(status as u16).unwrap_or(StatusCode::CREATED),
        body,
        sync_token: row.get::<_, Option<i64>>(3).map(|t| t as u64),
    }))
}

/// Records the response of the create that claimed `key`, before its commit.
pub async fn record(
    tx: &Transaction<'_>,
    owner: &str,
    key: &str,
    body: &serde_json::Value,
    resource_id: Uuid,
    sync_token: u64,
) -> Result<(), ApiError> {
    let update = tx
        .prepare_cached(
            "update idempotency_keys
                set status = 201, response = $3, resource_id = $4, sync_token = $5
              where owner_id = $1 and key = $2",
        )
        .await
        .map_err(db_error)?;
    tx.execute(
        &update,
        &[&owner, &key, body, &resource_id, &(sync_token as i64)],
    )
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Deletes the keys created more than `older_than` ago; returns how many went. A create
/// still in progress holds its key uncommitted, so it is never touched.
pub async fn expire_keys(
    client: &tokio_postgres::Client,
    older_than: std::time::Duration,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "delete from idempotency_keys where created_at < now() - make_interval(secs => $1)",
            &[&older_than.as_secs_f64()],
        )
        .await
}

/// The original response again, with its sync token (settled like a fresh write) and, for a
/// create, its `Location` under `collection` (the path the create was posted to).
pub async fn replay(state: &AppState, stored: StoredResponse, collection: &str) -> Response {
    let location = (stored.status == StatusCode::CREATED)
        .then(|| {
            stored.body["id"]
                .as_str()
                .map(|id| location(collection, id))
        })
        .flatten();
    let mut response = (stored.status, Json(stored.body)).into_response();
    if let Some((name, value)) = location {
        response.headers_mut().insert(name, value);
    }
    if let Some(token) = stored.sync_token {
        let (name, value) =
            settle_write(&state.sync, token, state.config.read_your_writes_timeout).await;
        response.headers_mut().insert(name, value);
    }
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}
