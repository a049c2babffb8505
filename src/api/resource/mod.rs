//! What the resources share: a resource states its table, its keyset order and its view
//! ([`Resource`]); reading one by id and reading a page (through the read cache, from the
//! replica or the primary), creating one (with its idempotency key) and updating one (lock,
//! validate the patch against the current row, write, settle) are written once here, on
//! [`crate::api::resource::writes`]' round trips.

pub mod idempotency;
pub mod reads;
pub mod writes;

use auto_order_sync::catalog::Table;
use axum::Json;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::api::AppState;
use crate::api::request::extract::IfNoneMatch;
use crate::api::request::paging;
use crate::api::resource::reads::{ReadRequest, cached_read};
use crate::auth::{AuthUser, Authenticator};
use crate::consistency::SyncToken;
use crate::error::ApiError;
use crate::store::{Filter, Row, Select, db_error};

/// A replicated table served as a resource of its owner's.
pub trait Resource {
    const TABLE: &'static Table;
    /// The timestamp column of the keyset order (newest first, then by id).
    const ORDER_BY: &'static str;
    type View: Serialize + Send;

    fn view(row: &Row) -> Self::View;
    /// The view's `(ORDER_BY, id)`, for the next page's cursor.
    fn order_key(view: &Self::View) -> (&str, &str);
}

/// How a read was asked for: by whom (401 first), with which token and entity tag. One
/// extractor for the three every read of a resource takes.
pub struct Asked {
    pub user: AuthUser,
    pub token: SyncToken,
    pub if_none_match: IfNoneMatch,
}

impl Asked {
    fn request(&self) -> ReadRequest<'_> {
        ReadRequest {
            owner: &self.user.sub,
            token: self.token,
            if_none_match: &self.if_none_match,
        }
    }
}

impl<S> FromRequestParts<S> for Asked
where
    Authenticator: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let user = AuthUser::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let token = SyncToken::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Ok(if_none_match) = IfNoneMatch::from_request_parts(parts, state).await;
        Ok(Asked {
            user,
            token,
            if_none_match,
        })
    }
}

/// The caller's row `id`, or 404.
pub async fn get_one<R: Resource>(
    state: &AppState,
    asked: Asked,
    id: Uuid,
) -> Result<Response, ApiError> {
    let select = Select {
        table: R::TABLE,
        filters: vec![
            Filter::Eq("id", id.hyphenated().to_string()),
            Filter::Eq("owner_id", asked.user.sub.clone()),
        ],
        order_by: R::ORDER_BY,
        after: None,
        limit: 1,
    };
    let store = &state.store;
    let what = format!("get|{id}");
    cached_read(
        state,
        asked.request(),
        R::TABLE.name,
        what,
        move |from| async move {
            let rows = store.fetch(from, select).await?;
            let row = rows.first().ok_or(ApiError::NotFound)?;
            Ok(R::view(row))
        },
    )
    .await
}

/// A page of the caller's rows matching `filters` (the owner's is added here), newest
/// first; `limit` and `cursor` as the query gave them.
pub async fn list<R: Resource>(
    state: &AppState,
    asked: Asked,
    limit: Option<i64>,
    cursor: Option<&str>,
    filters: Vec<Filter>,
) -> Result<Response, ApiError> {
    let limit = paging::limit(limit)?;
    let after = paging::decode_cursor(cursor)?;
    let mut all = vec![Filter::Eq("owner_id", asked.user.sub.clone())];
    all.extend(filters);
    let what = format!("list|{limit}|{after:?}|{all:?}");
    let select = Select {
        table: R::TABLE,
        filters: all,
        order_by: R::ORDER_BY,
        after,
        limit: limit + 1,
    };
    let store = &state.store;
    cached_read(
        state,
        asked.request(),
        R::TABLE.name,
        what,
        move |from| async move {
            let rows = store.fetch(from, select).await?;
            let views = rows.iter().map(R::view).collect();
            Ok(paging::page(views, limit, R::order_key))
        },
    )
    .await
}

/// A create as the client sent it: the route (`POST /products`, part of the key's request
/// hash), the path posted to (the `Location` is under it), its body and `Idempotency-Key`.
pub struct Posted<'a> {
    pub route: &'static str,
    pub path: &'a str,
    pub body: &'a serde_json::Value,
    pub key: Option<&'a str>,
}

/// Creates a row for the caller in one round trip (see [`writes::create_one`]) and answers
/// 201 with the row, its `Location` and `X-Sync-Token`; a retry with the same key replays
/// the first answer.
pub async fn create<R: Resource>(
    state: &AppState,
    user: &AuthUser,
    posted: Posted<'_>,
    how: &writes::Create,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Response, ApiError> {
    let key = posted.key.map(|key| writes::KeyUse {
        key,
        hash: crate::api::resource::idempotency::request_hash(posted.route, posted.body),
    });
    let created = writes::create_one(state, how, &user.sub, key, params, posted.path).await?;
    let (row, token) = match created {
        writes::Created::New { row, token } => (row, token),
        writes::Created::Replay(response) => return Ok(response),
    };
    let view = R::view(&Row::from_json(R::TABLE, &row)?);
    let id = R::order_key(&view).1;
    tracing::info!(user = %user.sub, table = R::TABLE.name, id, "row created");
    let location = crate::api::resource::idempotency::location(posted.path, id);
    Ok((StatusCode::CREATED, [token, location], Json(view)).into_response())
}

/// A write's parameters: borrowed from the fields it writes.
pub type Params<'a> = Vec<&'a (dyn ToSql + Sync)>;

/// How an update of one resource is done: its statement and what it answers when the
/// statement writes nothing.
pub struct Update<F> {
    /// `update … where id = $1 and owner_id = $2 [and …] returning to_jsonb(<table>.*)::text`;
    /// the fields' parameters are `$3` on.
    pub sql: &'static str,
    pub params: for<'a> fn(&'a F) -> Params<'a>,
    /// The answer when the row, locked and the caller's, was still not written: a condition
    /// of the statement's own failed.
    pub nothing_written: fn() -> ApiError,
}

/// Updates the caller's row `id`: locks it, turns it into the fields to write with `apply`
/// (the patch validated against the current row), writes them and answers the row as
/// written, with its `X-Sync-Token`. Two round trips to the primary.
pub async fn update<R: Resource, F>(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
    apply: impl FnOnce(&R::View) -> Result<F, ApiError>,
    how: Update<F>,
) -> Result<Response, ApiError> {
    let client = state.store.primary().get().await?;
    let locked = writes::lock_for_update(client, R::TABLE.name, &id, &user.sub).await?;
    let fields = match Row::from_json(R::TABLE, &locked.current)
        .map_err(ApiError::from)
        .and_then(|current| apply(&R::view(&current)))
    {
        Ok(fields) => fields,
        Err(e) => return Err(writes::abort(locked, e).await),
    };
    let statement = match locked.client().prepare_cached(how.sql).await {
        Ok(statement) => statement,
        Err(e) => return Err(writes::abort(locked, db_error(e)).await),
    };
    let mut params: Params<'_> = vec![&id, &user.sub];
    params.extend((how.params)(&fields));
    let (written, committed, client) = writes::finish_update(locked, &statement, &params)
        .await?
        .ok_or_else(how.nothing_written)?;
    let view = R::view(&Row::from_json(R::TABLE, written.get(0))?);
    let token = writes::settle(state, client, committed, R::TABLE.name, &user.sub).await;
    Ok(([token], Json(view)).into_response())
}
