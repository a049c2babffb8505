//! Products: the things a user buys. Owns `/api/products` and `/api/products/{id}`.
//!
//! # Layout
//! - this file: the router, request and response types, and their validation.
//! - [`read`]: `list_products`, `get_product` (replica, cache, `ETag`).
//! - [`write`]: `create_product`, `update_product`, `delete_product` (primary).

mod read;
mod write;

use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::AppState;
use crate::api::request::validate::{self, double_option, not_null};
use crate::api::resource::Resource;
use crate::error::ApiError;
use crate::store::Row;
use auto_order_sync::catalog::{PRODUCTS, Table};

pub const TABLE: &str = "products";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(read::list_products, write::create_product))
        .routes(routes!(
            read::get_product,
            write::update_product,
            write::delete_product
        ))
}

/// A product as clients see it (the owner is implied by the token).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProductView {
    #[schema(value_type = uuid::Uuid)]
    pub id: String,
    pub name: String,
    pub unit: Option<String>,
    #[schema(value_type = i32, minimum = 1)]
    pub reorder_quantity: i64,
    #[schema(value_type = Option<i32>, minimum = 0)]
    pub price_cents: Option<i64>,
    pub notes: Option<String>,
    #[schema(value_type = chrono::DateTime<chrono::Utc>)]
    pub created_at: String,
    #[schema(value_type = chrono::DateTime<chrono::Utc>)]
    pub updated_at: String,
    /// Grows with every change of the row.
    pub version: i64,
}

impl ProductView {
    /// From a row of `products` (columns by name).
    pub fn from_row(row: &Row) -> ProductView {
        ProductView {
            id: row.text("id"),
            name: row.text("name"),
            unit: row.opt_text("unit"),
            reorder_quantity: row.int("reorder_quantity"),
            price_cents: row.opt_int("price_cents"),
            notes: row.opt_text("notes"),
            created_at: row.text("created_at"),
            updated_at: row.text("updated_at"),
            version: row.int("version"),
        }
    }
}

/// The resource: its table, order and view (see [`crate::api::resource`]).
pub struct Products;

impl Resource for Products {
    const TABLE: &'static Table = &PRODUCTS;
    const ORDER_BY: &'static str = "created_at";
    type View = ProductView;

    fn view(row: &Row) -> ProductView {
        ProductView::from_row(row)
    }

    fn order_key(view: &ProductView) -> (&str, &str) {
        (view.created_at.as_str(), view.id.as_str())
    }
}

/// `POST /api/products`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// 1 to 200 characters.
    pub name: String,
    /// At most 50 characters.
    #[serde(default)]
    pub unit: Option<String>,
    /// Greater than 0; default 1.
    #[serde(default)]
    #[schema(value_type = Option<i32>, minimum = 1)]
    pub reorder_quantity: Option<i64>,
    /// At least 0.
    #[serde(default)]
    #[schema(value_type = Option<i32>, minimum = 0)]
    pub price_cents: Option<i64>,
    /// At most 2000 characters.
    #[serde(default)]
    pub notes: Option<String>,
}

/// `PATCH /api/products/{id}`: an absent field is unchanged; `null` clears a nullable one.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub unit: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i32>, minimum = 1)]
    pub reorder_quantity: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i32>, minimum = 0)]
    pub price_cents: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub notes: Option<Option<String>>,
}

/// Every column a write sets, checked.
#[derive(Debug, Clone)]
pub struct ProductFields {
    pub name: String,
    pub unit: Option<String>,
    pub reorder_quantity: i32,
    pub price_cents: Option<i32>,
    pub notes: Option<String>,
}

impl ProductFields {
    fn check(self) -> Result<ProductFields, ApiError> {
        name(&self.name)?;
        if let Some(u) = &self.unit {
            unit(u)?;
        }
        if let Some(n) = &self.notes {
            notes(n)?;
        }
        Ok(self)
    }
}

// One rule per field, for whole rows and patches alike.
fn name(value: &str) -> Result<(), ApiError> {
    validate::name("name", value, 200)
}

fn unit(value: &str) -> Result<(), ApiError> {
    validate::text("unit", value, 0, 50)
}

fn notes(value: &str) -> Result<(), ApiError> {
    validate::text("notes", value, 0, 2000)
}

impl NewProduct {
    pub fn validate(self) -> Result<ProductFields, ApiError> {
        ProductFields {
            reorder_quantity: int_field("reorder_quantity", self.reorder_quantity.unwrap_or(1), 1)?,
            price_cents: self
                .price_cents
                .map(|p| int_field("price_cents", p, 0))
                .transpose()?,
            name: self.name,
            unit: self.unit,
            notes: self.notes,
        }
        .check()
    }
}

impl ProductPatch {
    /// The patch's own values, checked (before any row is read).
    pub fn check(&self) -> Result<(), ApiError> {
        if let Some(n) = not_null("name", self.name.as_ref().map(Option::as_ref))? {
            name(n)?;
        }
        if let Some(Some(u)) = &self.unit {
            unit(u)?;
        }
        if let Some(q) = not_null("reorder_quantity", self.reorder_quantity)? {
            int_field("reorder_quantity", q, 1)?;
        }
        if let Some(Some(p)) = self.price_cents {
            int_field("price_cents", p, 0)?;
        }
        if let Some(Some(n)) = &self.notes {
            notes(n)?;
        }
        Ok(())
    }

    /// The row's current fields with this patch applied, checked.
    pub fn apply(self, current: &ProductView) -> Result<ProductFields, ApiError> {
        let reorder_quantity = match not_null("reorder_quantity", self.reorder_quantity)? {
            Some(q) => int_field("reorder_quantity", q, 1)?,
            None => current.reorder_quantity as i32,
        };
        let price_cents = match self.price_cents {
            Some(Some(p)) => Some(int_field("price_cents", p, 0)?),
            Some(None) => None,
            None => current.price_cents.map(|p| p as i32),
        };
        ProductFields {
            name: not_null("name", self.name)?.unwrap_or_else(|| current.name.clone()),
            unit: self.unit.unwrap_or_else(|| current.unit.clone()),
            reorder_quantity,
            price_cents,
            notes: self.notes.unwrap_or_else(|| current.notes.clone()),
        }
        .check()
    }
}

fn int_field(field: &str, value: i64, min: i64) -> Result<i32, ApiError> {
    validate::int(field, value, min, i32::MAX.into())
}

/// `GET /api/products` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListProducts {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Case-insensitive substring of the name.
    pub q: Option<String>,
}
