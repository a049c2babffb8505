//! Orders: the purchases of a product. Owns `/api/orders` and `/api/orders/{id}`.
//!
//! # Layout
//! - this file: the router, request and response types, and their validation.
//! - [`read`]: `list_orders`, `get_order` (replica, cache, `ETag`).
//! - [`write`]: `create_order`, `update_order`, `delete_order` (primary).

mod read;
mod write;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::api::AppState;
use crate::api::request::validate::{self, double_option, not_null};
use crate::api::resource::Resource;
use crate::error::ApiError;
use crate::store::Row;
use auto_order_sync::catalog::{ORDERS, Table};

pub const TABLE: &str = "orders";

/// The most units one order may hold.
pub const MAX_QUANTITY: i64 = 1_000_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(read::list_orders, write::create_order))
        .routes(routes!(
            read::get_order,
            write::update_order,
            write::delete_order
        ))
}

/// An order as clients see it (the owner is implied by the token).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    #[schema(value_type = uuid::Uuid)]
    pub id: String,
    #[schema(value_type = uuid::Uuid)]
    pub product_id: String,
    #[schema(value_type = i32, minimum = 1, maximum = 1_000_000)]
    pub quantity: i64,
    #[schema(value_type = Option<i32>, minimum = 0)]
    pub unit_price_cents: Option<i64>,
    pub currency: Option<String>,
    #[schema(value_type = chrono::DateTime<chrono::Utc>)]
    pub ordered_at: String,
    #[schema(value_type = chrono::DateTime<chrono::Utc>)]
    pub created_at: String,
    #[schema(value_type = chrono::DateTime<chrono::Utc>)]
    pub updated_at: String,
    /// Grows with every change of the row.
    pub version: i64,
}

impl OrderView {
    /// From a row of `orders` (columns by name).
    pub fn from_row(row: &Row) -> OrderView {
        OrderView {
            id: row.text("id"),
            product_id: row.text("product_id"),
            quantity: row.int("quantity"),
            unit_price_cents: row.opt_int("unit_price_cents"),
            currency: row.opt_text("currency"),
            ordered_at: row.text("ordered_at"),
            created_at: row.text("created_at"),
            updated_at: row.text("updated_at"),
            version: row.int("version"),
        }
    }
}

/// The resource: its table, order and view (see [`crate::api::resource`]).
pub struct Orders;

impl Resource for Orders {
    const TABLE: &'static Table = &ORDERS;
    const ORDER_BY: &'static str = "ordered_at";
    type View = OrderView;

    fn view(row: &Row) -> OrderView {
        OrderView::from_row(row)
    }

    fn order_key(view: &OrderView) -> (&str, &str) {
        (view.ordered_at.as_str(), view.id.as_str())
    }
}

/// `POST /api/orders`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// One of the caller's products.
    pub product_id: Uuid,
    /// 1 to 1 000 000.
    #[schema(value_type = i32, minimum = 1, maximum = 1_000_000)]
    pub quantity: i64,
    /// At least 0.
    #[serde(default)]
    #[schema(value_type = Option<i32>, minimum = 0)]
    pub unit_price_cents: Option<i64>,
    /// Three uppercase letters (ISO 4217), e.g. `EUR`.
    #[serde(default)]
    pub currency: Option<String>,
    /// RFC 3339; default now; at most a day in the future.
    #[serde(default)]
    #[schema(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    pub ordered_at: Option<String>,
}

/// `PATCH /api/orders/{id}`: an absent field is unchanged; `null` clears a nullable one.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderPatch {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<uuid::Uuid>)]
    pub product_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i32>, minimum = 1, maximum = 1_000_000)]
    pub quantity: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i32>, minimum = 0)]
    pub unit_price_cents: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub currency: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    pub ordered_at: Option<Option<String>>,
}

/// Every column a write sets, checked. `ordered_at: None` means now.
#[derive(Debug, Clone)]
pub struct OrderFields {
    pub product_id: Uuid,
    pub quantity: i32,
    pub unit_price_cents: Option<i32>,
    pub currency: Option<String>,
    pub ordered_at: Option<DateTime<Utc>>,
}

impl NewOrder {
    pub fn validate(self) -> Result<OrderFields, ApiError> {
        Ok(OrderFields {
            product_id: self.product_id,
            quantity: quantity(self.quantity)?,
            unit_price_cents: self.unit_price_cents.map(price).transpose()?,
            currency: self.currency.map(currency).transpose()?,
            ordered_at: self.ordered_at.as_deref().map(ordered_at).transpose()?,
        })
    }
}

impl OrderPatch {
    /// The patch's own values, checked (before any row is read).
    pub fn check(&self) -> Result<(), ApiError> {
        not_null("product_id", self.product_id)?;
        if let Some(q) = not_null("quantity", self.quantity)? {
            quantity(q)?;
        }
        if let Some(Some(p)) = self.unit_price_cents {
            price(p)?;
        }
        if let Some(Some(c)) = &self.currency {
            validate::currency("currency", c)?;
        }
        if let Some(t) = not_null("ordered_at", self.ordered_at.clone())? {
            ordered_at(&t)?;
        }
        Ok(())
    }

    /// The row's current fields with this patch applied, checked.
    pub fn apply(self, current: &OrderView) -> Result<OrderFields, ApiError> {
        self.check()?;
        let stored = |what: &str, e: String| anyhow::anyhow!("stored order {what}: {e}");
        let product_id = match self.product_id.flatten() {
            Some(p) => p,
            None => Uuid::parse_str(&current.product_id)
                .map_err(|e| stored("product_id", e.to_string()))?,
        };
        let when = match self.ordered_at.flatten() {
            Some(t) => ordered_at(&t)?,
            None => DateTime::parse_from_rfc3339(&current.ordered_at)
                .map_err(|e| stored("ordered_at", e.to_string()))?
                .with_timezone(&Utc),
        };
        Ok(OrderFields {
            product_id,
            quantity: match self.quantity.flatten() {
                Some(q) => quantity(q)?,
                None => current.quantity as i32,
            },
            unit_price_cents: match self.unit_price_cents {
                Some(p) => p.map(price).transpose()?,
                None => current.unit_price_cents.map(|p| p as i32),
            },
            currency: match self.currency {
                Some(c) => c.map(currency).transpose()?,
                None => current.currency.clone(),
            },
            ordered_at: Some(when),
        })
    }
}

fn quantity(q: i64) -> Result<i32, ApiError> {
    validate::int("quantity", q, 1, MAX_QUANTITY)
}

fn price(p: i64) -> Result<i32, ApiError> {
    validate::int("unit_price_cents", p, 0, i32::MAX.into())
}

fn currency(c: String) -> Result<String, ApiError> {
    validate::currency("currency", &c).map(|()| c)
}

/// An RFC 3339 time no more than a day ahead.
fn ordered_at(raw: &str) -> Result<DateTime<Utc>, ApiError> {
    let t = validate::timestamp("ordered_at", raw)?;
    if t > Utc::now() + chrono::Duration::days(1) {
        return Err(ApiError::invalid(
            "ordered_at",
            "must not be more than a day in the future",
        ));
    }
    Ok(t)
}

/// `GET /api/orders` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListOrders {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only orders of this product.
    #[param(value_type = Option<uuid::Uuid>)]
    pub product_id: Option<String>,
    /// Only orders placed at or after this RFC 3339 time.
    #[param(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    pub from: Option<String>,
    /// Only orders placed before this RFC 3339 time.
    #[param(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    pub to: Option<String>,
}

/// A query time in the replica's canonical form, or 422 on `field`.
pub fn query_time(field: &str, raw: &str) -> Result<String, ApiError> {
    validate::timestamp(field, raw).map(auto_order_sync::decode::format_timestamp)
}
