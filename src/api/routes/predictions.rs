//! `GET /api/predictions/{productId}`: when the caller will need a product again, from its
//! purchase history (method: [`crate::predict`], `docs/PREDICTIONS.md`).
//!
//! With fewer than two purchases (or none measurable in time) the answer is still 200, with
//! `"prediction": null` and a `reason`: "not enough history" is a normal state of a product,
//! not an error of the request.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::api::AppState;
use crate::api::request::extract::RowId;
use crate::api::request::ready::ReplicaReady;
use crate::auth::AuthUser;
use crate::consistency::{SyncToken, read_from};
use crate::error::ApiError;
use crate::predict::{NoPrediction, Prediction, predict};
use crate::store::history::product_history;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_prediction))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PredictionView {
    pub product_id: Uuid,
    pub name: String,
    /// How many purchases the prediction is based on.
    pub purchases_used: usize,
    /// Units consumed per day; null without a prediction.
    pub daily_rate: Option<f64>,
    pub last_purchase_at: Option<DateTime<Utc>>,
    /// Null when there is not enough history; `reason` says why.
    pub prediction: Option<PredictedDates>,
    /// `not_enough_purchases` or `no_time_between_purchases` when `prediction` is null.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<NoPrediction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'static str>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PredictedDates {
    pub next_purchase_at: DateTime<Utc>,
    /// From the fastest observed interval between purchases.
    pub earliest_at: DateTime<Utc>,
    /// From the slowest observed interval between purchases.
    pub latest_at: DateTime<Utc>,
}

impl From<&Prediction> for PredictedDates {
    fn from(p: &Prediction) -> Self {
        PredictedDates {
            next_purchase_at: p.next_purchase_at,
            earliest_at: p.earliest_at,
            latest_at: p.latest_at,
        }
    }
}

/// Predict the next purchase of one of the caller's products.
#[utoipa::path(get, path = "/predictions/{productId}", tag = "predictions",
    params(
        ("productId" = Uuid, Path, description = "The product's id"),
        ("X-Sync-Token" = Option<u64>, Header, description = "Token of an earlier write: the answer includes it"),
    ),
    responses(
        (status = 200, description = "The prediction, or `prediction: null` with a `reason`", body = PredictionView),
        crate::error::responses::BadId,
        crate::error::responses::Unauthorized,
        (status = 404, description = "No such product of the caller", body = crate::error::ErrorBody),
        crate::error::responses::ReplicaNotReady,
    ))]
async fn get_prediction(
    State(state): State<AppState>,
    _ready: ReplicaReady,
    user: AuthUser,
    token: SyncToken,
    RowId(product_id): RowId,
) -> Result<Json<PredictionView>, ApiError> {
    let from = read_from(&state.sync, token, state.config.read_your_writes_timeout).await?;
    let history = product_history(&state.store, from, &user.sub, product_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let last_purchase_at = history.purchases.last().map(|p| p.at);
    let view = match predict(&history.purchases) {
        Ok(p) => PredictionView {
            product_id: history.id,
            name: history.name,
            purchases_used: p.purchases_used,
            daily_rate: Some(p.daily_rate),
            last_purchase_at,
            prediction: Some((&p).into()),
            reason: None,
            message: None,
        },
        Err(why) => PredictionView {
            product_id: history.id,
            name: history.name,
            purchases_used: history.purchases.len(),
            daily_rate: None,
            last_purchase_at,
            prediction: None,
            reason: Some(why),
            message: Some(why.message()),
        },
    };
    Ok(Json(view))
}
