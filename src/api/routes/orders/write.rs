//! `POST /api/orders`, `PATCH` and `DELETE /api/orders/{id}`: validated first, then one
//! transaction on the primary that also checks the product is the caller's; the answer
//! carries `X-Sync-Token`.

use auto_order_sync::catalog::ORDERS;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{NewOrder, OrderFields, OrderPatch, OrderView, Orders, TABLE};
use crate::api::AppState;
use crate::api::request::extract::{ApiJson, IdempotencyKey, RowId};
use crate::api::resource::writes;
use crate::api::resource::{self, Posted, Update};
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::store::Row;

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
        crate::error::responses::Unauthorized,
        crate::error::responses::TooLarge,
        (status = 422, description = "A field is invalid, or the product is not the caller's", body = ErrorBody),
        crate::error::responses::PrimaryUnavailable,
    ))]
pub async fn create_order(
    State(state): State<AppState>,
    user: AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    OriginalUri(uri): OriginalUri,
    body: ApiJson<NewOrder>,
) -> Result<Response, ApiError> {
    let fields = body.value.validate()?;
    let posted = Posted {
        route: "POST /orders",
        path: uri.path(),
        body: &body.raw,
        key: key.as_deref(),
    };
    // The product must be the caller's, and is held (`for share`) until the statement
    // commits, so a concurrent delete cannot orphan the order.
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
        &fields.product_id,
        &fields.quantity,
        &fields.unit_price_cents,
        &fields.currency,
        &fields.ordered_at,
    ];
    resource::create::<Orders>(&state, &user, posted, &CREATE, &params).await
}

/// How orders are created: one statement with the key's claim (see
/// [`writes::create_one`]).
const CREATE: writes::Create = writes::Create {
    table: TABLE,
    insert: "insert into orders (owner_id, product_id, quantity, unit_price_cents, currency,
                             ordered_at)
         select $1, $4, $5, $6, $7, coalesce($8, now())
          where not exists (select 1 from prior)
            and exists (select 1 from products where id = $4 and owner_id = $1 for share)
         returning *",
    unmet: no_such_product,
    view: view_json,
};

/// An order's response body from its row image (replays of creates).
fn view_json(row: &str) -> Result<serde_json::Value, ApiError> {
    let view = OrderView::from_row(&Row::from_json(&ORDERS, row)?);
    Ok(serde_json::to_value(view).map_err(anyhow::Error::from)?)
}

fn no_such_product() -> ApiError {
    ApiError::invalid("product_id", "no such product")
}

/// Changes some fields of one of the caller's orders.
#[utoipa::path(patch, path = "/orders/{id}", tag = "orders",
    params(("id" = uuid::Uuid, Path, description = "Order id")),
    request_body = OrderPatch,
    responses(
        (status = 200, description = "The order as written", body = OrderView,
            headers(("X-Sync-Token" = String, description = "Send on reads to see this write"))),
        (status = 400, description = "Malformed JSON, wrong content type, bad id", body = ErrorBody),
        crate::error::responses::Unauthorized,
        (status = 404, description = "No such order of the caller's", body = ErrorBody),
        crate::error::responses::TooLarge,
        (status = 422, description = "A field is invalid, or the product is not the caller's", body = ErrorBody),
        crate::error::responses::PrimaryUnavailable,
    ))]
pub async fn update_order(
    State(state): State<AppState>,
    user: AuthUser,
    RowId(id): RowId,
    body: ApiJson<OrderPatch>,
) -> Result<Response, ApiError> {
    let patch = body.value;
    patch.check()?;
    let how = Update {
        // The product must be the caller's (checked even when unchanged: the same index
        // lookup), and is held until the commit.
        sql: "update orders
                 set product_id = $3, quantity = $4, unit_price_cents = $5, currency = $6,
                     ordered_at = $7, updated_at = now()
               where id = $1 and owner_id = $2
                 and exists (select 1 from products where id = $3 and owner_id = $2 for share)
              returning to_jsonb(orders.*)::text",
        params: |f: &OrderFields| {
            vec![
                &f.product_id,
                &f.quantity,
                &f.unit_price_cents,
                &f.currency,
                &f.ordered_at,
            ]
        },
        // The order is locked, so nothing written means the product check failed.
        nothing_written: no_such_product,
    };
    resource::update::<Orders, _>(&state, &user, id, |current| patch.apply(current), how).await
}

/// Deletes one of the caller's orders.
#[utoipa::path(delete, path = "/orders/{id}", tag = "orders",
    params(("id" = uuid::Uuid, Path, description = "Order id")),
    responses(
        (status = 204, description = "Deleted",
            headers(("X-Sync-Token" = String, description = "Send on reads to see this write"))),
        crate::error::responses::BadId,
        crate::error::responses::Unauthorized,
        (status = 404, description = "No such order of the caller's", body = ErrorBody),
        crate::error::responses::PrimaryUnavailable,
    ))]
pub async fn delete_order(
    State(state): State<AppState>,
    user: AuthUser,
    RowId(id): RowId,
) -> Result<Response, ApiError> {
    let token = writes::delete_owned(&state, TABLE, &id, &user.sub).await?;
    Ok((StatusCode::NO_CONTENT, [token]).into_response())
}
