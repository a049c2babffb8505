//! `GET /api/products` and `GET /api/products/{id}`: from the replica (or the primary for a
//! sync token the replica has not reached), through the read cache, with an `ETag`.

use axum::extract::State;
use axum::response::Response;

use super::{ListProducts, ProductView, Products};
use crate::api::AppState;
use crate::api::request::extract::{ApiQuery, RowId};
use crate::api::request::paging::Page;
use crate::api::resource::{self, Asked};
use crate::error::{ApiError, ErrorBody};
use crate::store::Filter;

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
        crate::error::responses::Unauthorized,
        (status = 422, description = "limit or cursor out of range", body = ErrorBody),
        crate::error::responses::ReplicaNotReady,
    ))]
pub async fn list_products(
    State(state): State<AppState>,
    asked: Asked,
    ApiQuery(query): ApiQuery<ListProducts>,
) -> Result<Response, ApiError> {
    let mut filters = Vec::new();
    if let Some(q) = query.q.as_deref().filter(|q| !q.is_empty()) {
        crate::api::request::validate::storable("q", q)?;
        filters.push(Filter::Contains("name", crate::store::fold_case(q)));
    }
    resource::list::<Products>(&state, asked, query.limit, query.cursor.as_deref(), filters).await
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
        crate::error::responses::BadId,
        crate::error::responses::Unauthorized,
        (status = 404, description = "No such product of the caller's", body = ErrorBody),
        crate::error::responses::ReplicaNotReady,
    ))]
pub async fn get_product(
    State(state): State<AppState>,
    asked: Asked,
    RowId(id): RowId,
) -> Result<Response, ApiError> {
    resource::get_one::<Products>(&state, asked, id).await
}
