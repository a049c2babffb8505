//! What the resources share on the read side: a resource states its table, its keyset
//! order and its view ([`Resource`]); reading one by id and reading a page, through the
//! read cache, from the replica or the primary, is written once here. The write side shares
//! [`super::writes`].

use auto_order_sync::catalog::Table;
use axum::response::Response;
use serde::Serialize;
use uuid::Uuid;

use super::AppState;
use super::extract::IfNoneMatch;
use super::paging;
use super::reads::{ReadRequest, cached_read};
use crate::auth::AuthUser;
use crate::consistency::SyncToken;
use crate::error::ApiError;
use crate::store::{Filter, Row, Select};

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

/// How a read was asked for: by whom, with which token and entity tag.
pub struct Asked<'a> {
    pub user: &'a AuthUser,
    pub token: SyncToken,
    pub if_none_match: &'a IfNoneMatch,
}

impl<'a> Asked<'a> {
    fn request(&self) -> ReadRequest<'a> {
        ReadRequest {
            owner: &self.user.sub,
            token: self.token,
            if_none_match: self.if_none_match,
        }
    }
}

/// The caller's row `id`, or 404.
pub async fn get_one<R: Resource>(
    state: &AppState,
    asked: Asked<'_>,
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
    asked: Asked<'_>,
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
