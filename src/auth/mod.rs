//! Auth0 JWT verification against a cached JWKS, permissions, and the local dev issuer.
//!
//! Requests carry an Auth0 RS256 access token; it is verified offline against the issuer's
//! key set, cached in memory and on disk, so auth keeps working while Auth0 is unreachable
//! (design guarantee 6). See `docs/AUTH.md` for the operator's view.
//!
//! # Layout
//! - [`config`]: [`AuthSettings`], read from the environment.
//! - [`jwks`]: the in-memory key set; [`jwks_fetch`]: fetch over rustls and persistence to
//!   `$DATA_DIR/jwks.json`; [`refresh`]: start-up, background and unknown-`kid` refetches.
//! - [`verify`]: the checks on a token, and the cache of successful verifications.
//! - [`extract`]: the [`AuthUser`] extractor and the permission check; [`error`]: [`AuthError`]
//!   and its RFC 6750 responses.
//! - [`dev_issuer`]: the local issuer used when no Auth0 tenant is configured.
//! - this file: [`Authenticator`], the handle the server keeps in its state.

mod config;
mod dev_issuer;
mod error;
mod extract;
mod jwks;
mod jwks_fetch;
mod key_set;
mod refresh;
mod verify;

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::routing::get;
use serde::Serialize;

pub use config::{AuthConfigError, AuthSettings, DEV_AUDIENCE, DEV_ISSUER, KeySource};
pub use dev_issuer::{DEV_KEY_FILE, DevIssuer, mint_dev_token};
pub use error::AuthError;
pub use extract::{ADMIN_SYNC, AuthUser, bearer_token};
pub use jwks_fetch::JWKS_FILE;
pub use verify::MAX_TOKEN_BYTES;

use jwks::{Jwks, KeySet};
use verify::Verifier;

/// Verifies bearer tokens. Cheap to clone (one `Arc`); keep it in the app state and give
/// it to [`AuthUser`] through `FromRef`.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    jwks: Arc<Jwks>,
    verifier: Verifier,
    /// `Some` in dev mode: serves its JWKS and mints tokens.
    dev: Option<Arc<DevIssuer>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("dev_mode", &self.inner.dev.is_some())
            .field("jwks_url", &self.inner.jwks.remote.as_ref().map(|r| &r.url))
            .finish_non_exhaustive()
    }
}

/// Why the authenticator could not start. Never because the issuer is down.
#[derive(Debug, thiserror::Error)]
pub enum AuthStartError {
    #[error("Failed to set up the local dev issuer: {0:#}")]
    DevIssuer(anyhow::Error),
    #[error("Failed to set up the JWKS client: {0:#}")]
    Client(anyhow::Error),
}

/// JWKS health, for `/api/health` and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct JwksStatus {
    pub dev_mode: bool,
    pub jwks_url: Option<String>,
    pub key_count: usize,
    /// Seconds since the current key set was fetched; `None` if none ever was.
    pub jwks_age_seconds: Option<u64>,
    /// The reason the latest fetch failed; `None` once a fetch succeeds.
    pub last_fetch_error: Option<String>,
    pub fetches: u64,
    pub fetch_failures: u64,
    /// Whether the key set was loaded from `$DATA_DIR/jwks.json` at start-up.
    pub loaded_from_disk: bool,
    pub verify_cache_entries: u64,
}

impl Authenticator {
    /// Loads the persisted JWKS, fetches a fresh one (in the background if keys were loaded
    /// from disk, else inline, bounded by `fetch_timeout`) and spawns the background refresher; in dev mode, loads or creates the dev issuer's key instead.
    /// Succeeds with the issuer down: tokens are then answered 503 until keys arrive.
    /// Must run inside a tokio runtime.
    pub async fn start(settings: AuthSettings) -> Result<Self, AuthStartError> {
        let verifier = Verifier::new(&settings);
        let (jwks, dev) = match &settings.key_source {
            KeySource::Dev => {
                let dir = settings.data_dir.clone();
                let issuer = tokio::task::spawn_blocking(move || DevIssuer::load_or_create(&dir))
                    .await
                    .map_err(|e| AuthStartError::DevIssuer(e.into()))?
                    .map_err(AuthStartError::DevIssuer)?;
                let keys = KeySet::from_jwks(&issuer.jwks(), Some(SystemTime::now()));
                tracing::info!(kid = issuer.kid(), "auth: using the local dev issuer");
                (Arc::new(Jwks::new(keys, None)), Some(Arc::new(issuer)))
            }
            KeySource::Remote { jwks_url } => {
                let remote = jwks_fetch::Remote::new(
                    jwks_url.clone(),
                    &settings.data_dir,
                    settings.fetch_timeout,
                )
                .map_err(AuthStartError::Client)?;
                let persisted = remote.load();
                let loaded = persisted.is_some();
                let jwks = Arc::new(Jwks::new(
                    persisted.unwrap_or_else(KeySet::empty),
                    Some(remote),
                ));
                jwks.stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .loaded_from_disk = loaded;
                if loaded {
                    // Verify from the persisted keys at once; refresh them in the background.
                    let jwks = Arc::clone(&jwks);
                    tokio::spawn(async move { refresh::fetch_now(&jwks).await });
                } else {
                    refresh::fetch_now(&jwks).await;
                }
                refresh::spawn_refresher(&jwks, settings.refresh_interval);
                let keys = jwks.snapshot().keys.len();
                if keys == 0 {
                    tracing::error!(jwks.url = %jwks_url, "auth: no JWKS available yet; answering 503 until the issuer is reachable");
                } else {
                    tracing::info!(jwks.url = %jwks_url, keys.count = keys, loaded_from_disk = loaded, "auth: JWKS ready");
                }
                (jwks, None)
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                jwks,
                verifier,
                dev,
            }),
        })
    }

    /// Verifies a bearer token (without the `Bearer ` prefix).
    #[tracing::instrument(
        level = "debug",
        name = "auth.verify",
        skip_all,
        fields(cached = false)
    )]
    pub async fn verify(&self, token: &str) -> Result<AuthUser, AuthError> {
        self.inner.verifier.verify(&self.inner.jwks, token).await
    }

    /// The user of a bearer token verified earlier and still cached, without waiting:
    /// `None` is a cache miss (call [`Self::verify`]), not a rejection.
    pub fn verify_cached(&self, token: &str) -> Option<AuthUser> {
        let user = self.inner.verifier.verify_cached(&self.inner.jwks, token);
        if user.is_some() {
            // A hit is a span too, so that a trace shows where the request was authenticated.
            let _hit = tracing::debug_span!("auth.verify", cached = true).entered();
        }
        user
    }

    /// Fetches the JWKS now (no-op in dev mode); returns whether it succeeded.
    pub async fn refresh_now(&self) -> bool {
        refresh::fetch_now(&self.inner.jwks).await
    }

    pub fn status(&self) -> JwksStatus {
        let keys = self.inner.jwks.snapshot();
        let stats = self
            .inner
            .jwks
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        JwksStatus {
            dev_mode: self.inner.dev.is_some(),
            jwks_url: self.inner.jwks.remote.as_ref().map(|r| r.url.clone()),
            key_count: keys.keys.len(),
            jwks_age_seconds: keys
                .fetched_at
                .map(|t| t.elapsed().map_or(0, |d| d.as_secs())),
            last_fetch_error: stats.last_error.clone(),
            fetches: stats.fetches,
            fetch_failures: stats.failures,
            loaded_from_disk: stats.loaded_from_disk,
            verify_cache_entries: self.inner.verifier.cached_entries(),
        }
    }

    /// The dev issuer, in dev mode.
    pub fn dev_issuer(&self) -> Option<&DevIssuer> {
        self.inner.dev.as_deref()
    }

    /// `GET /.well-known/jwks.json` serving the dev issuer's public key set; an empty router
    /// outside dev mode. Merge it into the app's router.
    pub fn dev_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let Some(dev) = &self.inner.dev else {
            return Router::new();
        };
        let jwks = axum::Json(dev.jwks());
        Router::new().route(
            "/.well-known/jwks.json",
            get(move || async move {
                (
                    [(axum::http::header::CACHE_CONTROL, "public, max-age=300")],
                    jwks,
                )
            }),
        )
    }
}
