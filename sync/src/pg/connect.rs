//! Connecting to the primary: `DATABASE_URL` parsing, TLS, and the LISTEN connection.
//!
//! TLS is used when the URL asks for it: `sslmode=require` (encrypted, server certificate
//! checked against the Mozilla roots, or `sslrootcert` when given) and `sslmode=verify-full`
//! / `verify-ca` with `sslrootcert=/path/ca.pem`. Without an `sslmode`, or with `disable` /
//! `prefer`, the connection is plain TCP (local development, private networks such as Fly's
//! 6PN). rustls always verifies the certificate; there is no "encrypt but trust anything".

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::config::SslMode;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::SyncError;

/// The channel the triggers notify after each transaction that changed replicated rows.
pub const CHANGES_CHANNEL: &str = "sync_changes";

/// Why a connection URL cannot be used (each message says which setting is wrong).
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("DATABASE_URL is not valid: {0}")]
    Url(#[source] tokio_postgres::Error),
    #[error("sslrootcert {path}: {source}")]
    RootCertFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sslrootcert {path}: {source}")]
    RootCert {
        path: String,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS set-up: {0}")]
    Tls(#[source] rustls::Error),
}

/// How to reach the primary. Cheap to clone.
#[derive(Clone)]
pub struct PgConnector {
    config: Config,
    tls: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Config's Debug redacts the password; say which host without the URL.
        f.debug_struct("PgConnector")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl PgConnector {
    /// Parses a `postgres://` URL (or key=value string).
    pub fn from_url(url: &str) -> Result<Self, ConnectorError> {
        let (url, root_cert, verify) = split_tls_params(url);
        let mut config = Config::from_str(&url).map_err(ConnectorError::Url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.keepalives_idle(Duration::from_secs(30));
        config.tcp_user_timeout(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("auto-order-edge");
        }
        let wants_tls = verify || config.get_ssl_mode() == SslMode::Require;
        let tls = if wants_tls {
            config.ssl_mode(SslMode::Require);
            Some(rustls_connector(root_cert.as_deref())?)
        } else {
            config.ssl_mode(SslMode::Disable);
            None
        };
        Ok(PgConnector { config, tls })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The rustls connector, when the URL asks for TLS (for callers building their own
    /// pool on the same settings).
    pub fn tls(&self) -> Option<MakeRustlsConnect> {
        self.tls.clone()
    }

    /// Opens a connection. When `notify` is given, the connection LISTENs on
    /// [`CHANGES_CHANNEL`] and every notification wakes it.
    pub async fn connect(&self, notify: Option<Arc<Notify>>) -> Result<Client, SyncError> {
        let listen = notify.is_some();
        let client = self.open(notify).await?;
        if listen {
            client
                .batch_execute(&format!("listen {CHANGES_CHANNEL}"))
                .await?;
        }
        Ok(client)
    }

    /// Connects without `LISTEN` (a hot standby refuses it); `closed` is still notified when
    /// the connection ends.
    pub async fn connect_watching(&self, closed: Arc<Notify>) -> Result<Client, SyncError> {
        self.open(Some(closed)).await
    }

    async fn open(&self, notify: Option<Arc<Notify>>) -> Result<Client, SyncError> {
        Ok(match &self.tls {
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                tokio::spawn(drive(connection, notify));
                client
            }
            None => {
                let (client, connection) = self.config.connect(NoTls).await?;
                tokio::spawn(drive(connection, notify));
                client
            }
        })
    }
}

async fn drive<S, T>(mut connection: tokio_postgres::Connection<S, T>, notify: Option<Arc<Notify>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    while let Some(message) = messages.next().await {
        match message {
            Ok(AsyncMessage::Notification(_)) => {
                if let Some(n) = &notify {
                    n.notify_one();
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "primary connection closed");
                break;
            }
        }
    }
    // A dropped connection must wake the puller so it notices at once.
    if let Some(n) = &notify {
        n.notify_one();
    }
}

/// Removes the libpq TLS parameters tokio-postgres does not know (`sslrootcert`,
/// `sslmode=verify-full|verify-ca`) from a URL, returning them.
fn split_tls_params(url: &str) -> (String, Option<String>, bool) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None, false);
    };
    let mut root_cert = None;
    let mut verify = false;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some(("sslrootcert", path)) => {
                root_cert = Some(path.to_owned());
                false
            }
            Some(("sslmode", "verify-full" | "verify-ca")) => {
                verify = true;
                false
            }
            _ => true,
        })
        .collect();
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, root_cert, verify)
}

fn rustls_connector(root_cert: Option<&str>) -> Result<MakeRustlsConnect, ConnectorError> {
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let file_error = |source| ConnectorError::RootCertFile {
                path: path.to_owned(),
                source,
            };
            let pem = std::fs::read(path).map_err(file_error)?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                roots.add(cert.map_err(file_error)?).map_err(|source| {
                    ConnectorError::RootCert {
                        path: path.to_owned(),
                        source,
                    }
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ConnectorError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_full_and_root_cert_are_taken_out_of_the_url() {
        let (url, cert, verify) = split_tls_params(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
        );
        assert_eq!(url, "postgres://u@h/db?application_name=x");
        assert_eq!(cert.as_deref(), Some("/ca.pem"));
        assert!(verify);
    }

    #[test]
    fn sslmode_require_turns_tls_on_and_plain_urls_stay_plain() {
        assert!(
            PgConnector::from_url("postgres://u@h/db?sslmode=require")
                .unwrap()
                .uses_tls()
        );
        assert!(
            !PgConnector::from_url("postgres://u@h/db")
                .unwrap()
                .uses_tls()
        );
    }

    #[test]
    fn a_bad_url_or_root_certificate_is_a_typed_error_naming_the_setting() {
        let err = PgConnector::from_url("postgres://u@h/db?port=notanumber").unwrap_err();
        assert!(matches!(err, ConnectorError::Url(_)), "{err:?}");
        assert!(err.to_string().starts_with("DATABASE_URL is not valid: "));
        let err =
            PgConnector::from_url("postgres://u@h/db?sslmode=verify-full&sslrootcert=/no/ca.pem")
                .unwrap_err();
        assert!(
            matches!(err, ConnectorError::RootCertFile { .. }),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("sslrootcert /no/ca.pem: "));
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let c = PgConnector::from_url("postgres://u:hunter2@h/db").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
