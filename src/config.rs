//! Configuration, read once from the environment at start-up.
//!
//! Every variable the binary reads is listed here (see also the README):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | `postgres://postgres@127.0.0.1:5432/auto_order` outside production | the primary; `?sslmode=require` for TLS |
//! | `MIGRATION_DATABASE_URL` | `DATABASE_URL` | the schema owner, for `migrate` and `roles` only (the edge's own role may not alter the schema) |
//! | `PORT` | `8080` | HTTP port |
//! | `DATA_DIR` | `./data` | where `replica.db` and the JWKS cache live |
//! | `LOG_LEVEL` | `info` | `error`…`trace`, or a tracing filter (`RUST_LOG` wins if set) |
//! | `APP_ENV` / `NODE_ENV` | `development` | `production` makes `DATABASE_URL` and Auth0 settings mandatory |
//! | `FLY_REGION` / `PRIMARY_REGION` | unset | this instance's region and the primary's; the primary-region instance prunes the change log |
//! | `CHANGE_RETENTION` | `7d` | how long the change log is kept by the automatic prune |
//! | `IDEMPOTENCY_KEY_TTL` | `24h` | how long an `Idempotency-Key` is remembered (expired by the same hourly prune) |
//! | `SYNC_POLL_INTERVAL_MS` | `500` | fallback poll of the change log when no NOTIFY arrives |
//! | `SYNC_DATABASE_URL` | `DATABASE_URL` | where the edge takes its snapshot and pulls changes: typically the Postgres hot standby in its region (writes still go to `DATABASE_URL`, which is the fallback when the standby is down or lags) |
//! | `HEALTH_MAX_LAG_MS` | `30000` | `/api/health` answers 503 (out of rotation) when the replica is further behind than this by its own fault while the primary answers (see `docs/DEPLOY.md`) |
//! | `API_VERSION` | `v1` | routes are served under `/api` and `/api/{API_VERSION}` |
//! | `CORS_ORIGIN` | unset (no cross-origin access) | comma-separated allowed origins, or `*` |
//! | `RATE_LIMIT_MAX` / `RATE_LIMIT_WINDOW_MS` | `100` / `60000` | requests per window, per client IP and per user |
//! | `READ_YOUR_WRITES_TIMEOUT_MS` | `1000` | how long a write (or a read with `X-Sync-Token`) waits for the replica |
//! | `WRITE_MODE` | `forward` | `forward`: every edge writes to the primary; `fly-replay`: edges outside `PRIMARY_REGION` answer writes with `fly-replay: region=<primary>` |
//! | `OTEL_EXPORTER_OTLP_*`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` | traces off | read by [`crate::telemetry::otlp`], not here |
//! | `AUTH0_DOMAIN`, `AUTH0_AUDIENCE`, `AUTH0_ISSUER_BASE_URL`, `JWKS_URL` | dev issuer | see `docs/AUTH.md` |
//! | `METRICS_PORT` | unset (`/metrics` on `PORT`) | serve `/metrics` only on this port (Fly's `[metrics]` scrapes it over the private network) |
//! | `HTTP_HEADER_TIMEOUT_MS` | `10000` | a connection must send a complete request head within this; also how long an idle keep-alive connection is kept |
//! | `HTTP_MAX_CONNECTIONS` | `1024` | connections open at once; more wait in the accept backlog |
//! | `SHUTDOWN_TIMEOUT_MS` | `20000` | drain deadline after SIGTERM (below fly.toml's `kill_timeout` of 30 s) |
//! | `PRIMARY_READ_CONCURRENCY` | `4` | reads answered from the primary at once (a token the replica has not reached); more wait, then 503 |
//! | `RESYNC_COOLDOWN` | `5m` | least time between two forced resyncs of this edge |
//! | `TRUST_FLY_CLIENT_IP` | `false` | key the per-IP rate limit on `Fly-Client-IP` (only behind Fly's proxy) |
//! | `ALLOW_PLAINTEXT_DATABASE` | `false` | production only: accept a `DATABASE_URL` without `sslmode=require`/`verify-*` |
//! | `ALLOW_PLAINTEXT_JWKS` | `false` | production only: accept an `http://` JWKS URL (read by [`crate::auth::AuthSettings`]) |
//! | `DEMO_PAGE` | `false` (`auto-order dev` turns it on) | `true` serves the demo web page at `/` (and, with the dev issuer, its sign-in; see `src/demo/mod.rs`) |

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::auth::AuthSettings;
use crate::http_server::ConnectionLimits;
use crate::write_mode::WriteMode;

/// The default local database, for development only.
pub const DEV_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/auto_order";

#[derive(Debug, Clone)]
pub struct Config {
    /// The primary's URL; holds a password, so never printed.
    pub database_url: SecretString,
    /// Where the sync engine pulls from, when not the primary: a hot standby in this region.
    pub sync_database_url: Option<SecretString>,
    /// The schema owner's URL (`migrate`, `roles`), when it is not `database_url`.
    pub migration_database_url: Option<SecretString>,
    pub port: u16,
    pub data_dir: PathBuf,
    pub log_level: String,
    pub production: bool,
    pub region: Option<String>,
    pub primary_region: Option<String>,
    pub change_retention: Duration,
    pub idempotency_key_ttl: Duration,
    pub poll_interval: Duration,
    /// Staleness beyond which health takes the edge out of rotation (if the primary answers).
    pub health_max_lag: Duration,
    pub api_version: String,
    /// Allowed CORS origins; empty means no cross-origin access, `["*"]` any origin.
    pub cors_origins: Vec<String>,
    pub rate_limit_max: u32,
    pub rate_limit_window: Duration,
    pub read_your_writes_timeout: Duration,
    pub write_mode: WriteMode,
    pub auth: AuthSettings,
    /// `/metrics` on this port only, instead of the public one.
    pub metrics_port: Option<u16>,
    pub connection_limits: ConnectionLimits,
    /// Primary-fallback reads at once: they share the primary's pool with writes, and a
    /// few clients sending tokens the replica has not reached must not take all of it.
    pub primary_read_concurrency: usize,
    pub resync_cooldown: Duration,
    /// Trust `Fly-Client-IP` for the per-IP limit: only true behind Fly's proxy, which
    /// sets it; anywhere else a client could pick its own key.
    pub trust_fly_client_ip: bool,
    /// Serve the demo page at `/` ([`crate::demo`]); off unless configured.
    pub demo_page: bool,
    /// The address the HTTP server binds: every interface (`0.0.0.0`, as Fly needs);
    /// `auto-order dev` sets loopback.
    pub listen_ip: std::net::IpAddr,
}

/// A configuration problem, stated in one line for the operator.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Reads the configuration through `get` (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = get("APP_ENV").or_else(|| get("NODE_ENV"));
        let production = env
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case("production"));
        let database_url = match get("DATABASE_URL") {
            Some(url) => url,
            None if production => {
                return Err(ConfigError("DATABASE_URL is required in production".into()));
            }
            None => DEV_DATABASE_URL.to_owned(),
        };
        let migration_database_url = get("MIGRATION_DATABASE_URL");
        let sync_database_url = get("SYNC_DATABASE_URL").filter(|url| !url.trim().is_empty());
        if production && !flag(&get, "ALLOW_PLAINTEXT_DATABASE")? {
            let uses_tls = |url: &str| {
                auto_order_sync::PgConnector::from_url(url)
                    .map(|c| c.uses_tls())
                    .map_err(|e| ConfigError(e.to_string()))
            };
            let tls = uses_tls(&database_url)?
                && migration_database_url
                    .as_deref()
                    .map_or(Ok(true), uses_tls)?
                && sync_database_url.as_deref().map_or(Ok(true), uses_tls)?;
            if !tls {
                return Err(ConfigError(
                    "refusing to start: production requires TLS to Postgres (sslmode=require, \
                     verify-ca or verify-full in DATABASE_URL, MIGRATION_DATABASE_URL and \
                     SYNC_DATABASE_URL); set \
                     ALLOW_PLAINTEXT_DATABASE=true to accept plain TCP (e.g. a private network)"
                        .into(),
                ));
            }
        }
        let data_dir = get("DATA_DIR").map_or_else(|| PathBuf::from("data"), PathBuf::from);
        let auth =
            AuthSettings::from_lookup(&data_dir, &get).map_err(|e| ConfigError(e.to_string()))?;
        Ok(Config {
            database_url: SecretString::from(database_url),
            sync_database_url: sync_database_url.map(SecretString::from),
            migration_database_url: migration_database_url.map(SecretString::from),
            port: parse(&get, "PORT", 8080)?,
            data_dir,
            log_level: get("LOG_LEVEL").unwrap_or_else(|| "info".into()),
            production,
            region: get("FLY_REGION"),
            primary_region: get("PRIMARY_REGION"),
            change_retention: duration(&get, "CHANGE_RETENTION", "7d")?,
            idempotency_key_ttl: duration(&get, "IDEMPOTENCY_KEY_TTL", "24h")?,
            poll_interval: Duration::from_millis(parse(&get, "SYNC_POLL_INTERVAL_MS", 500)?),
            health_max_lag: Duration::from_millis(parse(&get, "HEALTH_MAX_LAG_MS", 30_000)?),
            api_version: get("API_VERSION").unwrap_or_else(|| "v1".into()),
            cors_origins: get("CORS_ORIGIN")
                .map(|v| {
                    v.split(',')
                        .map(|o| o.trim().trim_end_matches('/').to_owned())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            rate_limit_max: positive(&get, "RATE_LIMIT_MAX", 100)?,
            rate_limit_window: Duration::from_millis(positive(
                &get,
                "RATE_LIMIT_WINDOW_MS",
                60_000,
            )?),
            read_your_writes_timeout: Duration::from_millis(parse(
                &get,
                "READ_YOUR_WRITES_TIMEOUT_MS",
                1000,
            )?),
            write_mode: parse(&get, "WRITE_MODE", WriteMode::Forward)?,
            auth,
            metrics_port: get("METRICS_PORT")
                .map(|_| parse(&get, "METRICS_PORT", 0))
                .transpose()?,
            connection_limits: ConnectionLimits {
                header_read_timeout: Duration::from_millis(positive(
                    &get,
                    "HTTP_HEADER_TIMEOUT_MS",
                    10_000,
                )?),
                max_connections: positive(&get, "HTTP_MAX_CONNECTIONS", 1024)?,
                drain_timeout: Duration::from_millis(parse(&get, "SHUTDOWN_TIMEOUT_MS", 20_000)?),
            },
            primary_read_concurrency: positive(&get, "PRIMARY_READ_CONCURRENCY", 4)?,
            resync_cooldown: duration(&get, "RESYNC_COOLDOWN", "5m")?,
            trust_fly_client_ip: flag(&get, "TRUST_FLY_CLIENT_IP")?,
            demo_page: parse(&get, "DEMO_PAGE", false)?,
            listen_ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
        })
    }

    pub fn database_url(&self) -> &str {
        self.database_url.expose_secret()
    }

    /// The standby to pull from, if one is configured (and is not the primary itself).
    pub fn sync_database_url(&self) -> Option<&str> {
        self.sync_database_url
            .as_ref()
            .map(|url| url.expose_secret())
            .filter(|url| *url != self.database_url())
    }

    /// The schema owner's URL: `MIGRATION_DATABASE_URL`, else `DATABASE_URL`.
    pub fn migration_database_url(&self) -> &str {
        self.migration_database_url
            .as_ref()
            .map_or_else(|| self.database_url(), |u| u.expose_secret())
    }

    pub fn replica_path(&self) -> PathBuf {
        self.data_dir.join("replica.db")
    }

    /// The instance in the primary's region (or a single-region deployment) prunes the log.
    pub fn is_primary_region(&self) -> bool {
        match (&self.region, &self.primary_region) {
            (Some(here), Some(primary)) => here == primary,
            _ => true,
        }
    }
}

fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match get(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| ConfigError(format!("{name}={raw:?} is not valid: {e}"))),
    }
}

/// Like [`parse`], and 0 is refused: these values divide a budget or bound a wait, and 0
/// would silently turn the limit off (or make the service refuse everything).
fn positive<T: std::str::FromStr + PartialEq + From<u8>>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    let value = parse(get, name, default)?;
    if value == T::from(0) {
        return Err(ConfigError(format!(
            "{name}=0 is not valid: it must be at least 1"
        )));
    }
    Ok(value)
}

/// A boolean switch: `true`/`1`/`yes` or `false`/`0`/`no`; unset is false.
pub(crate) fn flag(get: &impl Fn(&str) -> Option<String>, name: &str) -> Result<bool, ConfigError> {
    match get(name).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(other) => Err(ConfigError(format!(
            "{name}={other:?} is not valid: use true or false"
        ))),
    }
}

fn duration(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: &str,
) -> Result<Duration, ConfigError> {
    let raw = get(name).unwrap_or_else(|| default.to_owned());
    humantime::parse_duration(&raw).map_err(|e| {
        ConfigError(format!(
            "{name}={raw:?} is not a duration like 7d or 12h: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn production_without_a_database_url_is_refused() {
        let err = config(&[("NODE_ENV", "production")]).unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn a_bad_port_names_the_variable() {
        let err = config(&[("PORT", "eighty")]).unwrap_err();
        assert!(err.to_string().contains("PORT=\"eighty\""), "{err}");
    }

    #[test]
    fn the_url_is_not_in_the_debug_output() {
        let c = config(&[("DATABASE_URL", "postgres://u:hunter2@h/db")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn a_zero_rate_limit_window_is_a_configuration_error() {
        let err = config(&[("RATE_LIMIT_WINDOW_MS", "0")]).unwrap_err();
        assert!(err.to_string().contains("RATE_LIMIT_WINDOW_MS=0"), "{err}");
        assert!(config(&[("RATE_LIMIT_MAX", "0")]).is_err());
    }

    const AUTH0: [(&str, &str); 3] = [
        ("NODE_ENV", "production"),
        ("AUTH0_DOMAIN", "tenant.example.com"),
        ("AUTH0_AUDIENCE", "https://api.example.com"),
    ];

    fn production(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        config(&[&AUTH0[..], vars].concat())
    }

    #[test]
    fn production_refuses_postgres_without_tls_unless_told_to_accept_it() {
        for url in [
            "postgres://u@db.internal/app",
            "postgres://u@db.internal/app?sslmode=prefer",
            "postgres://u@db.internal/app?sslmode=disable",
        ] {
            let err = production(&[("DATABASE_URL", url)]).unwrap_err();
            assert!(
                err.to_string().contains("ALLOW_PLAINTEXT_DATABASE"),
                "{url}: {err}"
            );
        }
        assert!(production(&[("DATABASE_URL", "postgres://u@db/app?sslmode=require")]).is_ok());
        assert!(
            production(&[
                ("DATABASE_URL", "postgres://u@db.internal/app"),
                ("ALLOW_PLAINTEXT_DATABASE", "true"),
            ])
            .is_ok()
        );
        assert!(
            config(&[("DATABASE_URL", "postgres://u@localhost/app")]).is_ok(),
            "development accepts plain TCP"
        );
    }

    #[test]
    fn fly_client_ip_is_trusted_only_when_configured() {
        let on_fly = config(&[("FLY_REGION", "lhr")]).unwrap();
        let told = config(&[("TRUST_FLY_CLIENT_IP", "true")]).unwrap();
        assert!(!on_fly.trust_fly_client_ip);
        assert!(told.trust_fly_client_ip);
        assert!(config(&[("TRUST_FLY_CLIENT_IP", "maybe")]).is_err());
    }

    #[test]
    fn only_the_primary_region_prunes() {
        let edge = config(&[("FLY_REGION", "lhr"), ("PRIMARY_REGION", "iad")]).unwrap();
        let primary = config(&[("FLY_REGION", "iad"), ("PRIMARY_REGION", "iad")]).unwrap();
        assert!(!edge.is_primary_region());
        assert!(primary.is_primary_region());
    }
}
