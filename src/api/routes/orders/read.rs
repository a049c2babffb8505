//! `GET /api/orders` and `GET /api/orders/{id}`: from the replica (or the primary for a sync
//! token the replica has not reached), through the read cache, with an `ETag`.

use axum::extract::State;
use axum::response::Response;
use uuid::Uuid;

use super::{ListOrders, OrderView, Orders, query_time};
use crate::api::AppState;
use crate::api::request::extract::{ApiQuery, RowId};
use crate::api::request::paging::Page;
use crate::api::resource::{self, Asked};
use crate::error::{ApiError, ErrorBody};
use crate::store::Filter;

/// The caller's orders, most recently placed first, a page at a time.
#[utoipa::path(get, path = "/orders", tag = "orders",
    params(
        ListOrders,
        ("X-Sync-Token" = Option<String>, Header, description = "A write's token: read at least that write"),
        ("If-None-Match" = Option<String>, Header, description = "ETag of a previous answer"),
    ),
    responses(
        (status = 200, description = "A page of orders", body = Page<OrderView>,
            headers(("ETag" = String, description = "Changes when any listed order changes"))),
        (status = 304, description = "Not modified since the given ETag"),
        (status = 400, description = "Malformed query", body = ErrorBody),
        crate::error::responses::Unauthorized,
        (status = 422, description = "A filter, limit or cursor is invalid", body = ErrorBody),
        crate::error::responses::ReplicaNotReady,
    ))]
pub async fn list_orders(
    State(state): State<AppState>,
    asked: Asked,
    ApiQuery(query): ApiQuery<ListOrders>,
) -> Result<Response, ApiError> {
    let mut filters = Vec::new();
    if let Some(p) = &query.product_id {
        let p = Uuid::parse_str(p).map_err(|_| ApiError::invalid("product_id", "not a UUID"))?;
        filters.push(Filter::Eq("product_id", p.hyphenated().to_string()));
    }
    if let Some(from) = &query.from {
        filters.push(Filter::AtLeast("ordered_at", query_time("from", from)?));
    }
    if let Some(to) = &query.to {
        filters.push(Filter::Before("ordered_at", query_time("to", to)?));
    }
    resource::list::<Orders>(&state, asked, query.limit, query.cursor.as_deref(), filters).await
}

/// One of the caller's orders.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders",
    params(
        ("id" = uuid::Uuid, Path, description = "Order id"),
        ("X-Sync-Token" = Option<String>, Header, description = "A write's token: read at least that write"),
        ("If-None-Match" = Option<String>, Header, description = "ETag of a previous answer"),
    ),
    responses(
        (status = 200, description = "The order", body = OrderView,
            headers(("ETag" = String, description = "Changes when the order changes"))),
        (status = 304, description = "Not modified since the given ETag"),
        crate::error::responses::BadId,
        crate::error::responses::Unauthorized,
        (status = 404, description = "No such order of the caller's", body = ErrorBody),
        crate::error::responses::ReplicaNotReady,
    ))]
pub async fn get_order(
    State(state): State<AppState>,
    asked: Asked,
    RowId(id): RowId,
) -> Result<Response, ApiError> {
    resource::get_one::<Orders>(&state, asked, id).await
}
