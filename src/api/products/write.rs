//! `POST /api/products`, `PATCH` and `DELETE /api/products/{id}`: validated first, then one
//! transaction on the primary; the answer carries `X-Sync-Token`.

use auto_order_sync::catalog::PRODUCTS;
use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{NewProduct, ProductPatch, ProductView, TABLE};
use crate::api::AppState;
use crate::api::extract::{ApiJson, IdempotencyKey, RowId};
use crate::api::idempotency::{self, Claim};
use crate::api::writes;
use crate::auth::AuthUser;
use crate::db::{db_error, sync_token_with};
use crate::error::{ApiError, ErrorBody};
use crate::read::Row;

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
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
        (status = 503, description = "Primary unreachable (Retry-After)", body = ErrorBody),
    ))]
pub async fn create_product(
    State(state): State<AppState>,
    user: AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    OriginalUri(uri): OriginalUri,
    body: ApiJson<NewProduct>,
) -> Result<Response, ApiError> {
    let fields = body.value.validate()?;
    let mut client = state.primary.get().await?;
    let tx = client.transaction().await.map_err(db_error)?;
    if let Some(key) = &key {
        let hash = idempotency::request_hash("POST /products", &body.raw);
        if let Claim::Replay(stored) = idempotency::claim(&tx, &user.sub, key, &hash).await? {
            drop(tx);
            return Ok(idempotency::replay(&state, stored, uri.path()).await);
        }
    }
    let insert = async {
        let insert = tx
            .prepare_cached(
                "insert into products (owner_id, name, unit, reorder_quantity, price_cents, notes)
                 values ($1, $2, $3, $4, $5, $6)
                 returning to_jsonb(products.*)::text",
            )
            .await
            .map_err(db_error)?;
        tx.query_one(
            &insert,
            &[
                &user.sub,
                &fields.name,
                &fields.unit,
                &fields.reorder_quantity,
                &fields.price_cents,
                &fields.notes,
            ],
        )
        .await
        .map_err(db_error)
    };
    let (txid, written) = sync_token_with(&tx, insert).await?;
    let view = ProductView::from_row(&Row::from_json(&PRODUCTS, written.get(0))?);
    if let Some(key) = &key {
        let json = serde_json::to_value(&view).map_err(anyhow::Error::from)?;
        let id = uuid::Uuid::parse_str(&view.id).map_err(anyhow::Error::from)?;
        idempotency::record(&tx, &user.sub, key, &json, id, txid).await?;
    }
    let token = writes::commit(&state, tx, txid, TABLE, &user.sub).await?;
    tracing::info!(user = %user.sub, product.id = %view.id, "product created");
    let location = idempotency::location(uri.path(), &view.id);
    Ok((StatusCode::CREATED, [token, location], Json(view)).into_response())
}

/// Changes some fields of one of the caller's products.
#[utoipa::path(patch, path = "/products/{id}", tag = "products",
    params(("id" = uuid::Uuid, Path, description = "Product id")),
    request_body = ProductPatch,
    responses(
        (status = 200, description = "The product as written", body = ProductView,
            headers(("X-Sync-Token" = String, description = "Send on reads to see this write"))),
        (status = 400, description = "Malformed JSON, wrong content type, bad id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 404, description = "No such product of the caller's", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
        (status = 503, description = "Primary unreachable (Retry-After)", body = ErrorBody),
    ))]
pub async fn update_product(
    State(state): State<AppState>,
    user: AuthUser,
    RowId(id): RowId,
    body: ApiJson<ProductPatch>,
) -> Result<Response, ApiError> {
    let patch = body.value;
    // Checks that need no row (a null name, a zero quantity) fail before the primary.
    patch.clone().apply(&placeholder())?;
    let mut client = state.primary.get().await?;
    let tx = client.transaction().await.map_err(db_error)?;
    let current = writes::lock_owned(&tx, TABLE, &id, &user.sub);
    let (txid, current) = sync_token_with(&tx, current).await?;
    let current = current.ok_or(ApiError::NotFound)?;
    let current = ProductView::from_row(&Row::from_json(&PRODUCTS, &current)?);
    let fields = patch.apply(&current)?;
    let update = tx
        .prepare_cached(
            "update products
                set name = $3, unit = $4, reorder_quantity = $5, price_cents = $6, notes = $7,
                    updated_at = now()
              where id = $1 and owner_id = $2
             returning to_jsonb(products.*)::text",
        )
        .await
        .map_err(db_error)?;
    let written = tx
        .query_one(
            &update,
            &[
                &id,
                &user.sub,
                &fields.name,
                &fields.unit,
                &fields.reorder_quantity,
                &fields.price_cents,
                &fields.notes,
            ],
        )
        .await
        .map_err(db_error)?;
    let view = ProductView::from_row(&Row::from_json(&PRODUCTS, written.get(0))?);
    let token = writes::commit(&state, tx, txid, TABLE, &user.sub).await?;
    Ok(([token], Json(view)).into_response())
}

/// A valid product to check a patch against before the real row is read.
fn placeholder() -> ProductView {
    ProductView {
        id: String::new(),
        name: "x".into(),
        unit: None,
        reorder_quantity: 1,
        price_cents: None,
        notes: None,
        created_at: String::new(),
        updated_at: String::new(),
        version: 0,
    }
}

/// Deletes one of the caller's products, and its orders.
#[utoipa::path(delete, path = "/products/{id}", tag = "products",
    params(("id" = uuid::Uuid, Path, description = "Product id")),
    responses(
        (status = 204, description = "Deleted",
            headers(("X-Sync-Token" = String, description = "Send on reads to see this write"))),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 404, description = "No such product of the caller's", body = ErrorBody),
        (status = 503, description = "Primary unreachable (Retry-After)", body = ErrorBody),
    ))]
pub async fn delete_product(
    State(state): State<AppState>,
    user: AuthUser,
    RowId(id): RowId,
) -> Result<Response, ApiError> {
    let token = writes::delete_owned(&state, TABLE, &id, &user.sub).await?;
    // The product's orders went with it (on delete cascade).
    state.cache.invalidate(crate::api::orders::TABLE, &user.sub);
    Ok((StatusCode::NO_CONTENT, [token]).into_response())
}
