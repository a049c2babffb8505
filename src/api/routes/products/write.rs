//! `POST /api/products`, `PATCH` and `DELETE /api/products/{id}`: validated first, then one
//! transaction on the primary; the answer carries `X-Sync-Token`.

use auto_order_sync::catalog::PRODUCTS;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{NewProduct, ProductFields, ProductPatch, ProductView, Products, TABLE};
use crate::api::AppState;
use crate::api::request::extract::{ApiJson, IdempotencyKey, RowId};
use crate::api::resource::writes;
use crate::api::resource::{self, Posted, Update};
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::store::Row;

/// Creates a product for the caller.
#[utoipa::path(post, path = "/products", tag = "products",
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Retrying with the same key returns the original response")),
    request_body = NewProduct,
    responses(
        (status = 201, description = "Created", body = ProductView,
            headers(("X-Sync-Token" = String, description = "Send on reads to see this write"),
                ("Location" = String, description = "The new product's path: the path posted to, then its id"))),
        (status = 400, description = "Malformed JSON, wrong content type, bad key", body = ErrorBody),
        crate::error::responses::Unauthorized,
        crate::error::responses::TooLarge,
        (status = 422, description = "A field is invalid", body = ErrorBody),
        crate::error::responses::PrimaryUnavailable,
    ))]
pub async fn create_product(
    State(state): State<AppState>,
    user: AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    OriginalUri(uri): OriginalUri,
    body: ApiJson<NewProduct>,
) -> Result<Response, ApiError> {
    let fields = body.value.validate()?;
    let posted = Posted {
        route: "POST /products",
        path: uri.path(),
        body: &body.raw,
        key: key.as_deref(),
    };
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
        &fields.name,
        &fields.unit,
        &fields.reorder_quantity,
        &fields.price_cents,
        &fields.notes,
    ];
    resource::create::<Products>(&state, &user, posted, &CREATE, &params).await
}

/// How products are created: one statement with the key's claim (see
/// [`writes::create_one`]).
const CREATE: writes::Create = writes::Create {
    table: TABLE,
    insert: "insert into products (owner_id, name, unit, reorder_quantity, price_cents, notes)
         select $1, $4, $5, $6, $7, $8 where not exists (select 1 from prior)
         returning *",
    unmet: nothing_inserted,
    view: view_json,
};

fn nothing_inserted() -> ApiError {
    ApiError::Internal(anyhow::anyhow!(
        "a product insert without a prior use of its key wrote nothing"
    ))
}

/// A product's response body from its row image (replays of creates).
fn view_json(row: &str) -> Result<serde_json::Value, ApiError> {
    let view = ProductView::from_row(&Row::from_json(&PRODUCTS, row)?);
    Ok(serde_json::to_value(view).map_err(anyhow::Error::from)?)
}

/// Changes some fields of one of the caller's products.
#[utoipa::path(patch, path = "/products/{id}", tag = "products",
    params(("id" = uuid::Uuid, Path, description = "Product id")),
    request_body = ProductPatch,
    responses(
        (status = 200, description = "The product as written", body = ProductView,
            headers(("X-Sync-Token" = String, description = "Send on reads to see this write"))),
        (status = 400, description = "Malformed JSON, wrong content type, bad id", body = ErrorBody),
        crate::error::responses::Unauthorized,
        (status = 404, description = "No such product of the caller's", body = ErrorBody),
        crate::error::responses::TooLarge,
        (status = 422, description = "A field is invalid", body = ErrorBody),
        crate::error::responses::PrimaryUnavailable,
    ))]
pub async fn update_product(
    State(state): State<AppState>,
    user: AuthUser,
    RowId(id): RowId,
    body: ApiJson<ProductPatch>,
) -> Result<Response, ApiError> {
    let patch = body.value;
    patch.check()?;
    let how = Update {
        sql: "update products
                 set name = $3, unit = $4, reorder_quantity = $5, price_cents = $6, notes = $7,
                     updated_at = now()
               where id = $1 and owner_id = $2
              returning to_jsonb(products.*)::text",
        params: |f: &ProductFields| {
            vec![
                &f.name,
                &f.unit,
                &f.reorder_quantity,
                &f.price_cents,
                &f.notes,
            ]
        },
        nothing_written: || ApiError::NotFound,
    };
    resource::update::<Products, _>(&state, &user, id, |current| patch.apply(current), how).await
}

/// Deletes one of the caller's products, and its orders.
#[utoipa::path(delete, path = "/products/{id}", tag = "products",
    params(("id" = uuid::Uuid, Path, description = "Product id")),
    responses(
        (status = 204, description = "Deleted",
            headers(("X-Sync-Token" = String, description = "Send on reads to see this write"))),
        crate::error::responses::BadId,
        crate::error::responses::Unauthorized,
        (status = 404, description = "No such product of the caller's", body = ErrorBody),
        crate::error::responses::PrimaryUnavailable,
    ))]
pub async fn delete_product(
    State(state): State<AppState>,
    user: AuthUser,
    RowId(id): RowId,
) -> Result<Response, ApiError> {
    let token = writes::delete_owned(&state, TABLE, &id, &user.sub).await?;
    // The product's orders went with it (on delete cascade).
    state
        .cache
        .invalidate(auto_order_sync::catalog::ORDERS.name, &user.sub);
    Ok((StatusCode::NO_CONTENT, [token]).into_response())
}
