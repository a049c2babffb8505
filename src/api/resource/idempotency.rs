//! `Idempotency-Key` on creates: a retried POST with the same key (same caller) answers the
//! original 201 (same id, same sync token) instead of creating a second row.
//!
//! The key is stored on the primary (`idempotency_keys`, migration V3), inserted in the same
//! transaction as the row, so it holds across edges and never outlives a rolled-back create.
//! A concurrent attempt with the same key waits on the first one's insert of the key (the
//! primary key's uniqueness check) and then replays its committed response. The same key
//! with a different request is refused with 422.
//!
//! A create claims its key in the same single statement that inserts the row (see
//! [`crate::api::resource::writes::create_one`]): the statement reads an earlier use of the key
//! (`PRIOR_CTE`), inserts the row only if there is none, and stores the key with the
//! row's image and txid (`CLAIM_CTE`), so a create with a key is still one round trip. A
//! concurrent first use with the same key inserts its row too, then waits on the first
//! one's key and fails on its uniqueness: that statement rolls back whole, and the request
//! replays the first one's response (`is_concurrent_claim`). Those statements are the data
//! layer's ([`crate::store::idempotency`]); this module is what a prior use means to a
//! client.
//!
//! Keys expire: the primary-region instance deletes keys older than `IDEMPOTENCY_KEY_TTL`
//! (24 h by default) every hour ([`crate::store::idempotency::expire_keys`]). A retry after that is a new create, as
//! with Stripe's keys; without expiry the table would grow with every create forever.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::AppState;
use crate::consistency::settle_write;
use crate::error::ApiError;
use crate::store::idempotency::Prior;

/// The header the key arrives in.
pub const HEADER: &str = "Idempotency-Key";

pub struct StoredResponse {
    status: StatusCode,
    /// The response body; a create of this binary stores the created row's image instead
    /// (see [`StoredResponse::map_row_image`]).
    pub body: serde_json::Value,
    sync_token: Option<u64>,
}

impl StoredResponse {
    /// Turns a stored row image (an object with `owner_id`, as this binary's creates store)
    /// into the response body `view` makes of it; a body stored by an older binary (the
    /// view itself) stays as it is.
    pub fn map_row_image(
        mut self,
        view: impl FnOnce(&str) -> Result<serde_json::Value, ApiError>,
    ) -> Result<StoredResponse, ApiError> {
        if self.body.get("owner_id").is_some() {
            self.body = view(&self.body.to_string())?;
        }
        Ok(self)
    }
}

impl Prior {
    /// What to answer a request with `hash` that found this earlier use: its response, or
    /// 422 (another request) or 409 (still in progress, from an older binary's create).
    pub fn judge(self, hash: &str) -> Result<StoredResponse, ApiError> {
        if self.request_hash != hash {
            return Err(ApiError::invalid(
                HEADER,
                "this key was already used for a different request",
            ));
        }
        let (Some(status), Some(body)) = (self.status, self.response) else {
            return Err(ApiError::Conflict(
                "a request with this Idempotency-Key is in progress".into(),
            ));
        };
        Ok(StoredResponse {
            status: StatusCode::from_u16(status as u16).unwrap_or(StatusCode::CREATED),
            body,
            sync_token: self.sync_token.map(|t| t as u64),
        })
    }
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
