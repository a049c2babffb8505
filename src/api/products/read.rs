//! `GET /api/products` and `GET /api/products/{id}`: from the replica (or the primary for a
//! sync token the replica has not reached), through the read cache, with an `ETag`.

use auto_order_sync::catalog::PRODUCTS;
use axum::extract::State;
use axum::response::Response;

use super::{ListProducts, ProductView, TABLE};
use crate::api::AppState;
use crate::api::extract::{ApiQuery, IfNoneMatch, RowId};
use crate::api::paging::{self, Page};
use crate::api::reads::{ReadRequest, cached_read};
use crate::auth::AuthUser;
use crate::consistency::SyncToken;
use crate::error::{ApiError, ErrorBody};
use crate::store::{Filter, Select};

/// The caller's products, newest first, a page at a time.
#[utoipa::path(get, path = "/products", tag = "products",
    params(
        ListProducts,
        ("X-Sync-Token" = Option<String>, Header, description = "A write's token: read at least that write"),
        ("If-None-Match" = Option<String>, Header, description = "ETag of a previous answer"),
    ),
    responses(
        (status = 200, description = "A page of products", body = Page<ProductView>,
            headers(("ETag" = String, description = "Changes when any listed product changes"))),
        (status = 304, description = "Not modified since the given ETag"),
        (status = 400, description = "Malformed query", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 422, description = "limit or cursor out of range", body = ErrorBody),
        (status = 503, description = "Replica not loaded yet", body = ErrorBody),
    ))]
pub async fn list_products(
    State(state): State<AppState>,
    user: AuthUser,
    token: SyncToken,
    if_none_match: IfNoneMatch,
    ApiQuery(query): ApiQuery<ListProducts>,
) -> Result<Response, ApiError> {
    let limit = paging::limit(query.limit)?;
    let after = paging::decode_cursor(query.cursor.as_deref())?;
    let mut filters = vec![Filter::Eq("owner_id", user.sub.clone())];
    if let Some(q) = query.q.as_deref().filter(|q| !q.is_empty()) {
        crate::api::validate::storable("q", q)?;
        filters.push(Filter::Contains("name", crate::store::fold_case(q)));
    }
    let what = format!("list|{limit}|{:?}|{:?}", after, query.q);
    let select = Select {
        table: &PRODUCTS,
        filters,
        order_by: "created_at",
        after,
        limit: limit + 1,
    };
    let request = ReadRequest {
        owner: &user.sub,
        token,
        if_none_match: &if_none_match,
    };
    let state_ref = &state;
    cached_read(&state, request, TABLE, what, move |from| async move {
        let rows = state_ref.store.fetch(from, select).await?;
        let views = rows.iter().map(ProductView::from_row).collect();
        let page = paging::page(views, limit, |p: &ProductView| {
            (p.created_at.as_str(), p.id.as_str())
        });
        Ok(page)
    })
    .await
}

/// One of the caller's products.
#[utoipa::path(get, path = "/products/{id}", tag = "products",
    params(
        ("id" = uuid::Uuid, Path, description = "Product id"),
        ("X-Sync-Token" = Option<String>, Header, description = "A write's token: read at least that write"),
        ("If-None-Match" = Option<String>, Header, description = "ETag of a previous answer"),
    ),
    responses(
        (status = 200, description = "The product", body = ProductView,
            headers(("ETag" = String, description = "Changes when the product changes"))),
        (status = 304, description = "Not modified since the given ETag"),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 404, description = "No such product of the caller's", body = ErrorBody),
        (status = 503, description = "Replica not loaded yet", body = ErrorBody),
    ))]
pub async fn get_product(
    State(state): State<AppState>,
    user: AuthUser,
    token: SyncToken,
    if_none_match: IfNoneMatch,
    RowId(id): RowId,
) -> Result<Response, ApiError> {
    let select = Select {
        table: &PRODUCTS,
        filters: vec![
            Filter::Eq("id", id.hyphenated().to_string()),
            Filter::Eq("owner_id", user.sub.clone()),
        ],
        order_by: "created_at",
        after: None,
        limit: 1,
    };
    let request = ReadRequest {
        owner: &user.sub,
        token,
        if_none_match: &if_none_match,
    };
    let state_ref = &state;
    cached_read(
        &state,
        request,
        TABLE,
        format!("get|{id}"),
        move |from| async move {
            let rows = state_ref.store.fetch(from, select).await?;
            let row = rows.first().ok_or(ApiError::NotFound)?;
            Ok(ProductView::from_row(row))
        },
    )
    .await
}
