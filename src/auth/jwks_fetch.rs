//! Fetching a remote JWKS over rustls and persisting it to `$DATA_DIR/jwks.json`.
//!
//! The file is written atomically (temporary file, fsync, rename, fsync of the directory)
//! and records the URL it came from: a file fetched from another issuer is ignored, so a
//! changed `JWKS_URL` never trusts the previous issuer's keys.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::key_set::KeySet;

/// Name of the persisted key set inside `$DATA_DIR`.
pub const JWKS_FILE: &str = "jwks.json";
/// A JWKS is a few KiB; anything past this is refused.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Where and how a remote JWKS is fetched and persisted.
pub(crate) struct Remote {
    pub(crate) url: String,
    client: reqwest::Client,
    path: PathBuf,
}

impl Remote {
    pub(crate) fn new(url: String, data_dir: &Path, timeout: Duration) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let tls =
            crate::tls::client_config().context("Failed to configure TLS for the JWKS client")?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(same_origin_redirects(&url))
            .user_agent(concat!("auto-order-edge/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("Failed to build the JWKS HTTP client")?;
        Ok(Self {
            url,
            client,
            path: data_dir.join(JWKS_FILE),
        })
    }

    /// One GET of the JWKS. The error is a short, loggable reason (no key material).
    pub(crate) async fn fetch(&self) -> Result<KeySet, String> {
        let mut response = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("request failed: {}", e.without_url()))?;
        if !response.status().is_success() {
            return Err(format!(
                "issuer answered HTTP {}",
                response.status().as_u16()
            ));
        }
        if response
            .content_length()
            .is_some_and(|n| n as usize > MAX_JWKS_BYTES)
        {
            return Err("JWKS too large".to_owned());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading body failed: {}", e.without_url()))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err("JWKS too large".to_owned());
            }
        }
        let doc: Value =
            serde_json::from_slice(&body).map_err(|_| "JWKS is not JSON".to_owned())?;
        let set = KeySet::from_jwks(&doc, Some(SystemTime::now()));
        if set.keys.is_empty() {
            return Err("JWKS has no usable RS256 keys".to_owned());
        }
        Ok(set)
    }

    /// Loads the persisted set if it exists and came from this URL.
    pub(crate) fn load(&self) -> Option<KeySet> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read persisted JWKS");
                return None;
            }
        };
        let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
            tracing::warn!(path = %self.path.display(), "persisted JWKS is corrupt; ignoring it");
            return None;
        };
        if doc.get("jwks_url").and_then(Value::as_str) != Some(self.url.as_str()) {
            tracing::info!(path = %self.path.display(), "persisted JWKS is from another issuer; ignoring it");
            return None;
        }
        let fetched_at = doc
            .get("fetched_at")
            .and_then(Value::as_u64)
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
        let set = KeySet::from_jwks(&doc, fetched_at);
        (!set.keys.is_empty()).then_some(set)
    }

    /// Persists `set` atomically. Blocking file I/O runs off the async workers.
    pub(crate) async fn persist(&self, set: &KeySet) -> std::io::Result<()> {
        let fetched_at = set
            .fetched_at
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let doc = json!({ "jwks_url": self.url, "fetched_at": fetched_at, "keys": set.raw });
        let bytes = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(std::io::Error::other)?
    }
}

/// Follows at most 3 redirects, and only to the same scheme, host and port as `url`: a
/// redirect elsewhere (or from https down to http) would let whoever controls that place
/// hand out the keys that authenticate every user.
fn same_origin_redirects(url: &str) -> reqwest::redirect::Policy {
    let origin = reqwest::Url::parse(url).ok().map(|u| {
        (
            u.scheme().to_owned(),
            u.host_str().map(str::to_owned),
            u.port_or_known_default(),
        )
    });
    reqwest::redirect::Policy::custom(move |attempt| {
        let next = attempt.url();
        let same = origin.as_ref().is_some_and(|(scheme, host, port)| {
            next.scheme() == scheme
                && next.host_str().map(str::to_owned) == *host
                && next.port_or_known_default() == *port
        });
        if attempt.previous().len() >= 3 {
            attempt.error("too many redirects")
        } else if same {
            attempt.follow()
        } else {
            attempt.error("redirect to another origin refused")
        }
    })
}

/// Writes `bytes` to `path` so that readers see either the old or the new file, whole.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::response::Redirect;
    use axum::routing::get;

    use super::*;

    /// Serves `router` on a loopback port; returns its base URL.
    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{address}")
    }

    #[tokio::test]
    async fn redirects_are_followed_on_the_same_origin_only() {
        // Arrange: a key set at `/jwks`; one server redirects within itself, another to
        // the first server (a different origin: another port).
        let dir = tempfile::tempdir().unwrap();
        let jwks = super::super::DevIssuer::load_or_create(dir.path())
            .unwrap()
            .jwks();
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        let keys = serve(Router::new().route(
            "/jwks",
            get(move || {
                count.fetch_add(1, Ordering::SeqCst);
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        ))
        .await;
        let elsewhere = format!("{keys}/jwks");
        let redirecting = serve(
            Router::new()
                .route("/moved", get(|| async { Redirect::temporary("/jwks") }))
                .route(
                    "/elsewhere",
                    get(move || async move { Redirect::temporary(&elsewhere) }),
                ),
        )
        .await;
        let fetch = |url: String| {
            let remote = Remote::new(url, dir.path(), Duration::from_secs(5)).unwrap();
            async move { remote.fetch().await }
        };

        // Act
        let same_origin = fetch(format!("{keys}/jwks")).await;
        let moved = fetch(format!("{redirecting}/moved")).await;
        let other_origin = fetch(format!("{redirecting}/elsewhere")).await;

        // Assert
        assert!(same_origin.is_ok(), "{:?}", same_origin.err());
        assert_eq!(
            moved.err().as_deref(),
            Some("issuer answered HTTP 404"),
            "a same-origin redirect is followed (to a path that server lacks)"
        );
        let refused = other_origin.err().expect("not followed to another origin");
        assert!(refused.starts_with("request failed"), "{refused}");
        assert_eq!(served.load(Ordering::SeqCst), 1, "only the direct fetch");
    }
}
