//! The routes: each module serves some paths (and documents them, `#[utoipa::path]`) and
//! exposes `router() -> OpenApiRouter<AppState>`.
//! - [`health`]: `GET /api/health`, `GET /api/health/db`.
//! - [`admin`]: `POST /api/admin/resync`, `GET /api/admin/sync` (permission `admin:sync`).
//! - [`predictions`]: `GET /api/predictions/{productId}`; [`reorders`]: `GET /api/reorders`
//!   (both read through [`crate::store::history`], computed by [`crate::predict`]).
//! - [`products`], [`orders`]: the caller's data, CRUD with keyset pagination, on the shared
//!   machinery of [`crate::api::resource`].

pub mod admin;
pub mod health;
pub mod orders;
pub mod predictions;
pub mod products;
pub mod reorders;
