//! The demo web page: a small app that signs in with the dev issuer, lists and adds products,
//! records purchases, and shows each product's predicted next purchase and the re-order list,
//! all through the TypeScript client (`clients/typescript/`).
//!
//! Off unless `DEMO_PAGE=true` (`auto-order dev` turns it on). Its files are embedded in the
//! binary (`include_str!`: no build step and no files to deploy); the client is the bundle
//! `clients/typescript/scripts/bundle.mjs` writes to `assets/auto-order-client.js`, checked
//! against a fresh build in CI.
//!
//! # Layout
//!
//! - `GET /`: `assets/index.html`; `GET /demo/{app.js, style.css, auto-order-client.js}`.
//! - `POST /demo/sign-in` `{"user": "..."}`: a one-hour token from the local dev issuer for
//!   that user, only when the dev issuer is in use (never in production: the binary refuses
//!   production without Auth0). With Auth0 configured the route does not exist and the page
//!   asks for a pasted access token instead.
//!
//! The page can be served from another origin too (the browser test does): its `?edges=`
//! parameter lists the edges it talks to, which then need `CORS_ORIGIN` to allow it.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::api::request::extract::ApiJson;
use crate::error::ApiError;
use crate::state::AppState;

/// How long a sign-in token is valid.
const SIGN_IN_TTL: Duration = Duration::from_secs(3600);

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");
const CLIENT_JS: &str = include_str!("assets/auto-order-client.js");

/// The page may call any edge it is pointed at (`?edges=`), nothing else loads from afar.
const CSP: &str = "default-src 'self'; connect-src 'self' http: https:; img-src 'self' data:; \
                   frame-ancestors 'none'";

/// The demo's routes, or none when `DEMO_PAGE` is off.
pub fn router(state: &AppState) -> Router<AppState> {
    if !state.config.demo_page {
        return Router::new();
    }
    let page = Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/demo/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/demo/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE_CSS)),
        )
        .route(
            "/demo/auto-order-client.js",
            get(|| asset("text/javascript; charset=utf-8", CLIENT_JS)),
        );
    if state.config.auth.is_dev() {
        page.route("/demo/sign-in", post(sign_in))
    } else {
        page
    }
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Small, and a new binary may change them: always revalidate.
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    user: String,
}

#[derive(Serialize)]
struct SignedIn {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

/// Mints a dev-issuer token for the named user (the demo's "sign in").
async fn sign_in(
    State(state): State<AppState>,
    body: ApiJson<SignIn>,
) -> Result<Json<SignedIn>, ApiError> {
    let user = body.value.user.trim().to_owned();
    let valid = (1..=64).contains(&user.len())
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if !valid {
        return Err(ApiError::invalid(
            "user",
            "1 to 64 characters: letters, digits, '-', '_', '.', '@'",
        ));
    }
    let data_dir = state.config.data_dir.clone();
    let token = tokio::task::spawn_blocking(move || {
        crate::auth::mint_dev_token(&data_dir, &user, &[], SIGN_IN_TTL)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))??;
    Ok(Json(SignedIn {
        access_token: token,
        token_type: "Bearer",
        expires_in: SIGN_IN_TTL.as_secs(),
    }))
}
