//! `POST /api/orders`, `PATCH` and `DELETE /api/orders/{id}`: validated first, then one
//! transaction on the primary that also checks the product is the caller's; the answer
//! carries `X-Sync-Token`.

use auto_order_sync::catalog::ORDERS;
use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::{NewOrder, OrderPatch, OrderView, TABLE};
use crate::api::AppState;
use crate::api::extract::{ApiJson, IdempotencyKey, RowId};
use crate::api::idempotency::{self, Claim};
use crate::api::writes;
use crate::auth::AuthUser;
use crate::db::{db_error, sync_token_with};
use crate::error::{ApiError, ErrorBody};
use crate::read::Row;

/// Records a purchase of one of the caller's products.
#[utoipa::path(post, path = "/orders", tag = "orders",
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Retrying with the same key returns the original response")),
    request_body = NewOrder,
    responses(
        (status = 201, description = "Created", body = OrderView,
            headers(("X-Sync-Token" = String, description = "Send on reads to see this write"),
                ("Location" = String, description = "The new order's path: the path posted to, then its id"))),
        (status = 400, description = "Malformed JSON, wrong content type, bad key", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "A field is invalid, or the product is not the caller's", body = ErrorBody),
        (status = 503, description = "Primary unreachable (Retry-After)", body = ErrorBody),
    ))]
pub async fn create_order(
    State(state): State<AppState>,
    user: AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    OriginalUri(uri): OriginalUri,
    body: ApiJson<NewOrder>,
) -> Result<Response, ApiError> {
    let fields = body.value.validate()?;
    let mut client = state.primary.get().await?;
    let tx = client.transaction().await.map_err(db_error)?;
    if let Some(key) = &key {
        let hash = idempotency::request_hash("POST /orders", &body.raw);
        if let Claim::Replay(stored) = idempotency::claim(&tx, &user.sub, key, &hash).await? {
            drop(tx);
            return Ok(idempotency::replay(&state, stored, uri.path()).await);
        }
    }
    require_product(&tx, fields.product_id, &user.sub).await?;
    let insert = async {
        let insert = tx
            .prepare_cached(
                "insert into orders (owner_id, product_id, quantity, unit_price_cents, currency,
                                     ordered_at)
                 values ($1, $2, $3, $4, $5, coalesce($6, now()))
                 returning to_jsonb(orders.*)::text",
            )
            .await
            .map_err(db_error)?;
        tx.query_one(
            &insert,
            &[
                &user.sub,
                &fields.product_id,
                &fields.quantity,
                &fields.unit_price_cents,
                &fields.currency,
                &fields.ordered_at,
            ],
        )
        .await
        .map_err(db_error)
    };
    let (txid, written) = sync_token_with(&tx, insert).await?;
    let view = OrderView::from_row(&Row::from_json(&ORDERS, written.get(0))?);
    if let Some(key) = &key {
        let json = serde_json::to_value(&view).map_err(anyhow::Error::from)?;
        let id = Uuid::parse_str(&view.id).map_err(anyhow::Error::from)?;
        idempotency::record(&tx, &user.sub, key, &json, id, txid).await?;
    }
    let token = writes::commit(&state, tx, txid, TABLE, &user.sub).await?;
    tracing::info!(user = %user.sub, order.id = %view.id, "order created");
    let location = idempotency::location(uri.path(), &view.id);
    Ok((StatusCode::CREATED, [token, location], Json(view)).into_response())
}

/// 422 on `product_id` unless it is one of `owner`'s products; holds it until commit so a
/// concurrent delete cannot orphan the order.
async fn require_product(
    tx: &Transaction<'_>,
    product_id: Uuid,
    owner: &str,
) -> Result<(), ApiError> {
    let check = tx
        .prepare_cached("select 1 from products where id = $1 and owner_id = $2 for share")
        .await
        .map_err(db_error)?;
    match tx
        .query_opt(&check, &[&product_id, &owner])
        .await
        .map_err(db_error)?
    {
        Some(_) => Ok(()),
        None => Err(ApiError::invalid("product_id", "no such product")),
    }
}

/// Changes some fields of one of the caller's orders.
#[utoipa::path(patch, path = "/orders/{id}", tag = "orders",
    params(("id" = uuid::Uuid, Path, description = "Order id")),
    request_body = OrderPatch,
    responses(
        (status = 200, description = "The order as written", body = OrderView,
            headers(("X-Sync-Token" = String, description = "Send on reads to see this write"))),
        (status = 400, description = "Malformed JSON, wrong content type, bad id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 404, description = "No such order of the caller's", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "A field is invalid, or the product is not the caller's", body = ErrorBody),
        (status = 503, description = "Primary unreachable (Retry-After)", body = ErrorBody),
    ))]
pub async fn update_order(
    State(state): State<AppState>,
    user: AuthUser,
    RowId(id): RowId,
    body: ApiJson<OrderPatch>,
) -> Result<Response, ApiError> {
    let patch = body.value;
    patch.check()?;
    let mut client = state.primary.get().await?;
    let tx = client.transaction().await.map_err(db_error)?;
    let current = writes::lock_owned(&tx, TABLE, &id, &user.sub);
    let (txid, current) = sync_token_with(&tx, current).await?;
    let current = current.ok_or(ApiError::NotFound)?;
    let current = OrderView::from_row(&Row::from_json(&ORDERS, &current)?);
    let product_changed = patch.product_id.is_some();
    let fields = patch.apply(&current)?;
    if product_changed {
        require_product(&tx, fields.product_id, &user.sub).await?;
    }
    let update = tx
        .prepare_cached(
            "update orders
                set product_id = $3, quantity = $4, unit_price_cents = $5, currency = $6,
                    ordered_at = $7, updated_at = now()
              where id = $1 and owner_id = $2
             returning to_jsonb(orders.*)::text",
        )
        .await
        .map_err(db_error)?;
    let written = tx
        .query_one(
            &update,
            &[
                &id,
                &user.sub,
                &fields.product_id,
                &fields.quantity,
                &fields.unit_price_cents,
                &fields.currency,
                &fields.ordered_at,
            ],
        )
        .await
        .map_err(db_error)?;
    let view = OrderView::from_row(&Row::from_json(&ORDERS, written.get(0))?);
    let token = writes::commit(&state, tx, txid, TABLE, &user.sub).await?;
    Ok(([token], Json(view)).into_response())
}

/// Deletes one of the caller's orders.
#[utoipa::path(delete, path = "/orders/{id}", tag = "orders",
    params(("id" = uuid::Uuid, Path, description = "Order id")),
    responses(
        (status = 204, description = "Deleted",
            headers(("X-Sync-Token" = String, description = "Send on reads to see this write"))),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 404, description = "No such order of the caller's", body = ErrorBody),
        (status = 503, description = "Primary unreachable (Retry-After)", body = ErrorBody),
    ))]
pub async fn delete_order(
    State(state): State<AppState>,
    user: AuthUser,
    RowId(id): RowId,
) -> Result<Response, ApiError> {
    let token = writes::delete_owned(&state, TABLE, &id, &user.sub).await?;
    Ok((StatusCode::NO_CONTENT, [token]).into_response())
}
