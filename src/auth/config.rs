//! `AuthSettings`: which issuer to trust, where its keys come from, and the knobs of the
//! JWKS cache and verifier. Read once from the environment by [`AuthSettings::from_env`];
//! tests build the struct directly ([`AuthSettings::for_issuer`] plus field updates).
//!
//! # Variables
//! - `AUTH0_DOMAIN`: the Auth0 tenant (`tenant.eu.auth0.com`); the issuer is then
//!   `https://{domain}/` (with the trailing slash Auth0 puts in `iss`).
//! - `AUTH0_ISSUER_BASE_URL`: the issuer URL, taking precedence over the domain (a missing
//!   trailing slash is added).
//! - `AUTH0_AUDIENCE`: the API identifier tokens must carry in `aud`; required with an issuer.
//! - `JWKS_URL`: optional; where to fetch keys instead of `{issuer}.well-known/jwks.json`
//!   (tests, non-Auth0 providers).
//! - `APP_ENV` / `NODE_ENV`: `production` forbids the local dev issuer, and a JWKS URL that
//!   is not `https://` (the keys decide who is authenticated; over plain HTTP anyone on the
//!   path could substitute their own).
//! - `ALLOW_PLAINTEXT_JWKS`: `true` accepts an `http://` JWKS URL in production anyway.
//!
//! With neither `AUTH0_DOMAIN` nor `AUTH0_ISSUER_BASE_URL`, and outside production, the
//! settings select the local dev issuer (see [`super::dev_issuer`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Issuer (`iss`) of tokens minted by the local dev issuer.
pub const DEV_ISSUER: &str = "https://auto-order.local/dev-issuer/";
/// Audience (`aud`) of tokens minted by the local dev issuer.
pub const DEV_AUDIENCE: &str = "https://auto-order.local/api";

/// Where the verifier gets its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Fetch a JWKS over HTTPS (or HTTP for loopback tests) and cache it in memory and on disk.
    Remote { jwks_url: String },
    /// The local dev issuer: an RSA key kept in `data_dir`, seeded directly into the verifier.
    Dev,
}

/// Everything the [`super::Authenticator`] needs. Fields are public so tests can tune them.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Accepted `iss`. Compared exactly, except that a trailing slash is optional.
    pub issuer: String,
    /// Accepted `aud` (the token's `aud` may be a string or an array containing it).
    pub audience: String,
    pub key_source: KeySource,
    /// `$DATA_DIR`: holds `jwks.json` (remote) or the dev issuer's key.
    pub data_dir: PathBuf,
    /// Period of the background JWKS refresh (jittered by ±10%).
    pub refresh_interval: Duration,
    /// At most one refetch per this interval is triggered by tokens with an unknown `kid`,
    /// so a flood of made-up kids cannot hammer the issuer.
    pub unknown_kid_refetch_interval: Duration,
    /// Timeout of one JWKS fetch (connect + body).
    pub fetch_timeout: Duration,
    /// Clock-skew allowance for `exp` and `nbf`.
    pub leeway: Duration,
    /// Capacity of the cache of successful verifications; 0 disables it.
    pub verify_cache_capacity: u64,
}

/// Why the auth configuration is unusable. The message is one line, meant for operators.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "refusing to start: production (APP_ENV/NODE_ENV=production) requires Auth0 settings \
         (AUTH0_DOMAIN or AUTH0_ISSUER_BASE_URL, and AUTH0_AUDIENCE); the local dev issuer is \
         disabled in production"
    )]
    ProductionWithoutAuth0,
    #[error("AUTH0_AUDIENCE must be set when AUTH0_DOMAIN or AUTH0_ISSUER_BASE_URL is set")]
    MissingAudience,
    #[error("JWKS_URL is set but no issuer is: set AUTH0_DOMAIN or AUTH0_ISSUER_BASE_URL too")]
    JwksUrlWithoutIssuer,
    #[error("{name} is not a valid http(s) URL")]
    InvalidUrl { name: &'static str },
    #[error(
        "refusing to start: production requires an https:// JWKS URL (JWKS_URL, or the \
         issuer's); set ALLOW_PLAINTEXT_JWKS=true to accept http://"
    )]
    PlaintextJwks,
    #[error("ALLOW_PLAINTEXT_JWKS must be true or false")]
    InvalidFlag,
}

impl AuthSettings {
    /// Settings trusting `issuer`/`audience` with keys from `jwks_url`, default tuning.
    pub fn for_issuer(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        jwks_url: impl Into<String>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            key_source: KeySource::Remote {
                jwks_url: jwks_url.into(),
            },
            data_dir: data_dir.into(),
            refresh_interval: Duration::from_secs(600),
            unknown_kid_refetch_interval: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
            leeway: Duration::from_secs(30),
            verify_cache_capacity: 10_000,
        }
    }

    /// Settings for the local dev issuer keeping its key in `data_dir`.
    pub fn dev(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            key_source: KeySource::Dev,
            ..Self::for_issuer(DEV_ISSUER, DEV_AUDIENCE, "", data_dir)
        }
    }

    /// Whether these settings select the local dev issuer.
    pub fn is_dev(&self) -> bool {
        self.key_source == KeySource::Dev
    }

    /// Reads the variables listed in the module docs from the process environment.
    pub fn from_env(data_dir: &Path) -> Result<Self, AuthConfigError> {
        Self::from_lookup(data_dir, |name| std::env::var(name).ok())
    }

    /// Same as [`Self::from_env`] with an explicit variable lookup (for tests).
    pub fn from_lookup(
        data_dir: &Path,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, AuthConfigError> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let production = ["APP_ENV", "NODE_ENV"]
            .iter()
            .any(|name| get(name).is_some_and(|v| v.eq_ignore_ascii_case("production")));

        let issuer = match (get("AUTH0_ISSUER_BASE_URL"), get("AUTH0_DOMAIN")) {
            (Some(url), _) => Some(normalize_issuer(&url, "AUTH0_ISSUER_BASE_URL")?),
            (None, Some(domain)) => {
                let host = domain.trim_start_matches("https://").trim_end_matches('/');
                Some(normalize_issuer(
                    &format!("https://{host}/"),
                    "AUTH0_DOMAIN",
                )?)
            }
            (None, None) => None,
        };
        let audience = get("AUTH0_AUDIENCE");
        let jwks_url = get("JWKS_URL");

        let Some(issuer) = issuer else {
            if production {
                return Err(AuthConfigError::ProductionWithoutAuth0);
            }
            if jwks_url.is_some() {
                return Err(AuthConfigError::JwksUrlWithoutIssuer);
            }
            return Ok(Self::dev(data_dir));
        };
        let audience = audience.ok_or(if production {
            AuthConfigError::ProductionWithoutAuth0
        } else {
            AuthConfigError::MissingAudience
        })?;
        let jwks_url = match jwks_url {
            Some(url) if is_http_url(&url) => url,
            Some(_) => return Err(AuthConfigError::InvalidUrl { name: "JWKS_URL" }),
            None => format!("{issuer}.well-known/jwks.json"),
        };
        let allow_plaintext = match get("ALLOW_PLAINTEXT_JWKS").map(|v| v.to_ascii_lowercase()) {
            None => false,
            Some(v) if ["true", "1", "yes"].contains(&v.as_str()) => true,
            Some(v) if ["false", "0", "no"].contains(&v.as_str()) => false,
            Some(_) => return Err(AuthConfigError::InvalidFlag),
        };
        if production && !allow_plaintext && !jwks_url.starts_with("https://") {
            return Err(AuthConfigError::PlaintextJwks);
        }
        Ok(Self::for_issuer(issuer, audience, jwks_url, data_dir))
    }
}

fn normalize_issuer(url: &str, name: &'static str) -> Result<String, AuthConfigError> {
    if !is_http_url(url) {
        return Err(AuthConfigError::InvalidUrl { name });
    }
    Ok(format!("{}/", url.trim_end_matches('/')))
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<AuthSettings, AuthConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AuthSettings::from_lookup(Path::new("/tmp"), |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    const PRODUCTION: [(&str, &str); 3] = [
        ("NODE_ENV", "production"),
        ("AUTH0_DOMAIN", "tenant.example.com"),
        ("AUTH0_AUDIENCE", "https://api.example.com"),
    ];

    #[test]
    fn production_refuses_a_plain_http_jwks_unless_told_to_accept_it() {
        let plain = [
            &PRODUCTION[..],
            &[("JWKS_URL", "http://keys.example.com/jwks")],
        ]
        .concat();
        let allowed = [&plain[..], &[("ALLOW_PLAINTEXT_JWKS", "true")]].concat();

        assert!(matches!(
            settings(&plain),
            Err(AuthConfigError::PlaintextJwks)
        ));
        assert!(settings(&allowed).is_ok());
        assert!(settings(&PRODUCTION).is_ok(), "the issuer's https JWKS");
        assert!(
            settings(&[
                ("AUTH0_ISSUER_BASE_URL", "http://127.0.0.1:9/"),
                ("AUTH0_AUDIENCE", "a"),
            ])
            .is_ok(),
            "outside production a loopback http issuer is fine"
        );
    }
}
