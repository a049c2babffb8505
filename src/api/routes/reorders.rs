//! `GET /api/reorders?within_days=N`: the caller's products predicted to be needed within
//! `N` days from now (default 7, at most 365), soonest first. Overdue ones (predicted in
//! the past) come first and say so.

use axum::Json;
use axum::extract::{RawQuery, State};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::api::AppState;
use crate::api::request::ready::ReplicaReady;
use crate::auth::AuthUser;
use crate::consistency::{SyncToken, read_from};
use crate::error::ApiError;
use crate::predict::predict;
use crate::store::history::all_histories;

pub const DEFAULT_WITHIN_DAYS: u32 = 7;
pub const MAX_WITHIN_DAYS: u32 = 365;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_reorders))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReordersView {
    pub within_days: u32,
    pub items: Vec<ReorderView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReorderView {
    pub product_id: Uuid,
    pub name: String,
    pub next_purchase_at: DateTime<Utc>,
    pub earliest_at: DateTime<Utc>,
    pub latest_at: DateTime<Utc>,
    pub daily_rate: f64,
    pub purchases_used: usize,
    /// How many units to buy (the product's `reorder_quantity`).
    pub reorder_quantity: u32,
    /// The predicted date is already past.
    pub overdue: bool,
}

/// The caller's products due for re-ordering within `within_days` days.
#[utoipa::path(get, path = "/reorders", tag = "predictions",
    params(
        ("within_days" = Option<u32>, Query, description = "Horizon in days, 0..=365 (default 7)"),
        ("X-Sync-Token" = Option<u64>, Header, description = "Token of an earlier write: the answer includes it"),
    ),
    responses(
        (status = 200, description = "Products due, soonest first", body = ReordersView),
        crate::error::responses::Unauthorized,
        (status = 422, description = "within_days out of range", body = crate::error::ErrorBody),
        crate::error::responses::ReplicaNotReady,
    ))]
async fn list_reorders(
    State(state): State<AppState>,
    _ready: ReplicaReady,
    user: AuthUser,
    token: SyncToken,
    RawQuery(query): RawQuery,
) -> Result<Json<ReordersView>, ApiError> {
    let within_days = within_days(query.as_deref())?;
    let from = read_from(&state.sync, token, state.config.read_your_writes_timeout).await?;
    let histories = all_histories(&state.store, from, &user.sub).await?;
    let now = Utc::now();
    let horizon = now + ChronoDuration::days(i64::from(within_days));
    let mut items: Vec<ReorderView> = histories
        .into_iter()
        .filter_map(|h| {
            let p = predict(&h.purchases).ok()?;
            (p.next_purchase_at <= horizon).then(|| ReorderView {
                product_id: h.id,
                name: h.name,
                next_purchase_at: p.next_purchase_at,
                earliest_at: p.earliest_at,
                latest_at: p.latest_at,
                daily_rate: p.daily_rate,
                purchases_used: p.purchases_used,
                reorder_quantity: h.reorder_quantity,
                overdue: p.next_purchase_at < now,
            })
        })
        .collect();
    items.sort_by(|a, b| {
        a.next_purchase_at
            .cmp(&b.next_purchase_at)
            .then(a.product_id.cmp(&b.product_id))
    });
    Ok(Json(ReordersView { within_days, items }))
}

/// `within_days` from the query string: absent means the default; otherwise an integer in
/// 0..=365, else 422 naming the field.
pub(crate) fn within_days(query: Option<&str>) -> Result<u32, ApiError> {
    let raw = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == "within_days")
        .map(|(_, v)| v);
    let Some(raw) = raw else {
        return Ok(DEFAULT_WITHIN_DAYS);
    };
    match raw.parse::<u32>() {
        Ok(n) if n <= MAX_WITHIN_DAYS => Ok(n),
        _ => Err(ApiError::invalid(
            "within_days",
            format!("must be an integer from 0 to {MAX_WITHIN_DAYS}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_days_defaults_and_bounds() {
        assert_eq!(within_days(None).unwrap(), 7);
        assert_eq!(within_days(Some("other=1")).unwrap(), 7);
        assert_eq!(within_days(Some("within_days=0")).unwrap(), 0);
        assert_eq!(within_days(Some("a=b&within_days=365")).unwrap(), 365);
        for bad in [
            "within_days=366",
            "within_days=-1",
            "within_days=x",
            "within_days",
        ] {
            assert!(within_days(Some(bad)).is_err(), "{bad}");
        }
    }
}
