//! The application: opens the replica, starts the sync engine (and, in the primary region,
//! the change-log pruner), serves HTTP, and stops all of it cleanly.
//!
//! Shutdown order on SIGTERM: stop accepting connections and drain in-flight requests (for
//! at most `SHUTDOWN_TIMEOUT_MS`, see [`crate::http_server`]), then stop the engine between
//! two steps, so no SQLite transaction is cut and the cursor on disk matches what was
//! applied.
//!
//! With `METRICS_PORT` set, `/metrics` has a listener of its own (same limits), and the
//! public port does not serve it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use auto_order_sync::{Engine, EngineConfig, PgConnector, Replica, StandbySettings, SyncHandle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, Services};
use crate::auth::Authenticator;
use crate::cache::{ReadCache, run_invalidation};
use crate::config::Config;
use crate::store::{Primary, Store};

/// Pooled read-only SQLite connections for the HTTP handlers.
const REPLICA_READERS: u32 = 8;

pub struct Application {
    listener: TcpListener,
    /// `/metrics` alone (`METRICS_PORT`).
    metrics_listener: Option<TcpListener>,
    state: AppState,
    engine: Engine,
    connector: PgConnector,
}

impl Application {
    /// Opens the replica, prepares the engine and binds the port (0 picks a free one).
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let connector = PgConnector::from_url(config.database_url()).map_err(anyhow::Error::msg)?;
        let replica = Replica::open(&config.replica_path(), REPLICA_READERS)
            .with_context(|| format!("Failed to open the replica {:?}", config.replica_path()))?;
        let engine_config = EngineConfig {
            poll_interval: config.poll_interval,
            ..EngineConfig::default()
        };
        // Pulls come from the standby in this region when one is configured.
        let upstream = match config.sync_database_url() {
            Some(url) => {
                PgConnector::from_url(url).map_err(|e| anyhow::anyhow!("SYNC_DATABASE_URL: {e}"))?
            }
            None => connector.clone(),
        };
        let (engine, sync) = Engine::new(upstream, replica, engine_config)
            .await
            .context("Failed to read the replica's sync state")?;
        let engine = match config.sync_database_url() {
            Some(_) => engine.pull_from_standby(connector.clone(), StandbySettings::default()),
            None => engine,
        };
        let address = SocketAddr::from((config.listen_ip, config.port));
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("Failed to bind {address}"))?;
        let metrics_listener = match config.metrics_port {
            Some(port) => {
                let address = SocketAddr::from(([0, 0, 0, 0], port));
                Some(
                    TcpListener::bind(address)
                        .await
                        .with_context(|| format!("Failed to bind the metrics port {address}"))?,
                )
            }
            None => None,
        };
        let auth = Authenticator::start(config.auth.clone())
            .await
            .context("Failed to start the token verifier")?;
        let primary = Primary::new(&connector, config.primary_read_concurrency)
            .context("Failed to set up the primary pool")?;
        let store = Store::new(sync.replica().readers().clone(), primary);
        let state = AppState::new(Services {
            config: Arc::new(config),
            sync,
            auth,
            store,
            cache: Arc::new(ReadCache::new()),
            resync_gate: Default::default(),
        });
        Ok(Application {
            listener,
            metrics_listener,
            state,
            engine,
            connector,
        })
    }

    pub fn port(&self) -> u16 {
        crate::http_server::port(&self.listener)
    }

    /// The port of `/metrics` when it has its own (`METRICS_PORT`).
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_listener.as_ref().map(crate::http_server::port)
    }

    pub fn sync(&self) -> SyncHandle {
        self.state.sync.clone()
    }

    /// The read cache (its hit and miss counters are exported as metrics).
    pub fn cache(&self) -> Arc<ReadCache> {
        self.state.cache.clone()
    }

    /// Serves until `shutdown` completes, then drains and stops the background tasks.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let port = self.port();
        let metrics_port = self.metrics_port();
        let stop = CancellationToken::new();
        // Subscribed before the engine starts, so no change event is missed.
        let invalidation = tokio::spawn(run_invalidation(
            self.state.cache.clone(),
            self.state.sync.subscribe(),
            stop.clone(),
        ));
        // Also subscribed before the engine starts: its first resync's duration counts.
        let timings = self.state.sync.timings();
        let engine = tokio::spawn(self.engine.run(stop.clone().cancelled_owned()));
        // Wakes every edge when the change log grows (one edge is elected to do it).
        let announcer = tokio::spawn(auto_order_sync::pg::announce::run(
            self.connector.clone(),
            self.state.config.is_primary_region(),
            stop.clone().cancelled_owned(),
        ));
        let pruner = self.state.config.is_primary_region().then(|| {
            spawn_pruner(
                self.connector.clone(),
                self.state.config.clone(),
                stop.clone(),
            )
        });

        tracing::info!(port, metrics_port, region = ?self.state.config.region, "serving");
        let limits = self.state.config.connection_limits;
        let (app, metrics) = api::app_and_metrics(self.state.clone());
        let sync_timings = tokio::spawn(api::metrics::run_sync_timings(
            metrics.clone(),
            timings,
            stop.clone(),
        ));
        // Both listeners stop together: the first shutdown signal stops the public one, and
        // it stops the metrics one.
        let stop_metrics = CancellationToken::new();
        let metrics_server = self.metrics_listener.map(|listener| {
            let app = api::metrics_app(self.state.clone(), metrics);
            tokio::spawn(crate::http_server::serve(
                listener,
                app,
                limits,
                stop_metrics.clone().cancelled_owned(),
            ))
        });
        crate::http_server::serve(self.listener, app, limits, shutdown).await;
        stop_metrics.cancel();
        if let Some(server) = metrics_server {
            let _ = server.await;
        }

        stop.cancel();
        let _ = engine.await;
        let _ = announcer.await;
        let _ = invalidation.await;
        let _ = sync_timings.await;
        if let Some(pruner) = pruner {
            let _ = pruner.await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Every hour (only in the primary region): prunes the change log and expires old
/// idempotency keys.
fn spawn_pruner(
    connector: PgConnector,
    config: Arc<Config>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let mut client = match connector.connect(None).await {
                Ok(client) => client,
                Err(e) => {
                    tracing::warn!(error = %e, "prune: primary unreachable; will retry in an hour");
                    continue;
                }
            };
            let done = crate::housekeeping::run(
                &mut client,
                config.change_retention,
                config.idempotency_key_ttl,
            )
            .await;
            match done.pruned {
                Ok(report) => tracing::info!(
                    deleted = report.deleted,
                    pruned_below = report.pruned_below,
                    "change log pruned"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "change log prune failed; will retry in an hour")
                }
            }
            match done.expired_keys {
                Ok(deleted) => tracing::info!(deleted, "idempotency keys expired"),
                Err(e) => {
                    tracing::warn!(error = %e, "idempotency key expiry failed; will retry in an hour")
                }
            }
        }
    })
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}
