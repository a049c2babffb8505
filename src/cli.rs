//! The `auto-order` command line: one binary, one subcommand per job.
//!
//! Exit codes: 0 success, 1 a runtime failure, 2 bad configuration or usage.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use auto_order_sync::pg::migrate;
use auto_order_sync::{Engine, EngineConfig, PgConnector, Replica};
use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};
use crate::server::{Application, shutdown_signal};
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "auto-order",
    version,
    about = "Auto-Order edge: a regional replica and API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the edge: sync the replica from the primary and serve HTTP on PORT.
    Serve,
    /// Apply the Postgres migrations (safe to run from several instances at once), as the
    /// schema owner: MIGRATION_DATABASE_URL, or DATABASE_URL when unset.
    Migrate,
    /// Grant an existing role what an edge needs (DML on the API tables, the change stream)
    /// and nothing more; run as the schema owner (MIGRATION_DATABASE_URL), after `migrate`.
    Roles {
        /// The role the edges connect as (in their DATABASE_URL).
        #[arg(long)]
        edge: String,
    },
    /// Rebuild the local replica from a snapshot of the primary.
    Resync,
    /// Trim the primary's change log, and expire idempotency keys older than
    /// `IDEMPOTENCY_KEY_TTL`.
    Prune {
        /// Delete changes older than this (e.g. 7d, 12h).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "7d")]
        older_than: Duration,
    },
    /// Local development in one command: create and migrate the database, load demo data,
    /// start the edge with the dev issuer and print a token (refused in production).
    Dev,
    /// Rehearse a multi-region deployment locally: three edges (iad, lhr, syd) on loopback
    /// against DATABASE_URL; writes at one, reads at the others; prints lag and checks
    /// convergence.
    Rehearse {
        /// Products to write.
        #[arg(long, default_value_t = 20)]
        writes: usize,
        /// forward or fly-replay.
        #[arg(long, default_value = "forward")]
        write_mode: String,
        /// The edges listen on this port and the next two (default: free ports).
        #[arg(long)]
        first_port: Option<u16>,
        /// Where the edges keep their data (default: a temporary directory).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Print a token from the local dev issuer (development only).
    Token {
        /// The user (`sub`) the token is for.
        #[arg(long, default_value = "demo-user")]
        sub: String,
        /// Comma-separated permissions, e.g. admin:sync.
        #[arg(long, value_delimiter = ',')]
        permissions: Vec<String>,
        /// Lifetime (e.g. 1h, 30m).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "12h")]
        ttl: Duration,
    },
}

/// Parses the command line, runs the command, maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => return config_failure(&err),
    };
    let telemetry = if matches!(cli.command, Command::Dev) {
        // Only an explicit LOG_LEVEL changes dev's quiet default (the config's default is
        // `info`, which is the server's).
        let explicit = std::env::var("LOG_LEVEL")
            .ok()
            .filter(|v| !v.trim().is_empty());
        telemetry::init_for_humans(explicit.as_deref().unwrap_or(telemetry::DEV_LOG_FILTER))
    } else {
        telemetry::init(&config.log_level)
    };
    let telemetry = match telemetry {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("auto-order: refusing to start: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("auto-order: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli.command, config));
    // The runtime first: its tasks' last spans end as it stops, then they are flushed.
    drop(runtime);
    let code = match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "command failed");
            eprintln!("auto-order: {err:#}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

fn config_failure(err: &ConfigError) -> ExitCode {
    eprintln!("auto-order: {err}");
    ExitCode::from(2)
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let app = Application::build(config).await?;
            app.run_until_stopped(shutdown_signal()).await
        }
        Command::Dev => crate::dev::run(config).await,
        Command::Migrate => {
            let mut client = migration_connector(&config)?.connect(None).await?;
            let applied = migrate::run_migrations(&mut client).await?;
            tracing::info!(applied = ?applied, "migrations up to date");
            println!("migrations up to date ({} applied now)", applied.len());
            Ok(())
        }
        Command::Roles { edge } => {
            let mut client = migration_connector(&config)?.connect(None).await?;
            crate::roles::grant_edge(&mut client, &edge).await?;
            println!("granted the edge privileges to {edge}");
            Ok(())
        }
        Command::Resync => {
            let replica =
                Replica::open(&config.replica_path(), 1).context("Failed to open the replica")?;
            let (mut engine, _) =
                Engine::new(connector(&config)?, replica, EngineConfig::default()).await?;
            let step = engine.resync_now().await?;
            println!("resync finished: {step:?}");
            Ok(())
        }
        Command::Token {
            sub,
            permissions,
            ttl,
        } => {
            anyhow::ensure!(
                config.auth.is_dev(),
                "tokens are minted only by the local dev issuer (no AUTH0_DOMAIN, not production)"
            );
            let token = crate::auth::mint_dev_token(&config.data_dir, &sub, &permissions, ttl)?;
            println!("{token}");
            Ok(())
        }
        Command::Rehearse {
            writes,
            write_mode,
            first_port,
            dir,
        } => {
            let scratch = tempfile::tempdir()?;
            let options = crate::rehearsal::RehearsalOptions {
                database_url: config.database_url().to_owned(),
                base_dir: dir.unwrap_or_else(|| scratch.path().to_owned()),
                first_port,
                write_mode,
                writes,
            };
            crate::rehearsal::rehearse(options).await
        }
        Command::Prune { older_than } => {
            let mut client = connector(&config)?.connect(None).await?;
            let done =
                crate::housekeeping::run(&mut client, older_than, config.idempotency_key_ttl).await;
            if let Ok(report) = &done.pruned {
                println!(
                    "pruned {} changes; the log now starts at txid {}",
                    report.deleted, report.pruned_below
                );
            }
            if let Ok(expired) = &done.expired_keys {
                println!(
                    "expired {expired} idempotency keys older than {}",
                    humantime::format_duration(config.idempotency_key_ttl)
                );
            }
            done.pruned.context("Failed to prune the change log")?;
            done.expired_keys
                .context("Failed to expire idempotency keys")?;
            Ok(())
        }
    }
}

fn connector(config: &Config) -> anyhow::Result<PgConnector> {
    PgConnector::from_url(config.database_url()).map_err(anyhow::Error::msg)
}

/// The schema owner's connection: `MIGRATION_DATABASE_URL`, else `DATABASE_URL`.
fn migration_connector(config: &Config) -> anyhow::Result<PgConnector> {
    PgConnector::from_url(config.migration_database_url()).map_err(anyhow::Error::msg)
}
