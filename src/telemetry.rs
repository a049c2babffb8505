//! Tracing set-up: JSON lines on stdout, filtered by `RUST_LOG` or `LOG_LEVEL`; for
//! `auto-order dev`, readable lines on stderr ([`init_for_humans`]).
//!
//! Logging rules: a readable message plus fields with units in their names
//! (`duration_ms`); a failure is logged once, where it is handled; tokens, request bodies
//! and connection strings are never logged.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(log_level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}

/// The filter of `auto-order dev` when neither `RUST_LOG` nor `LOG_LEVEL` is set: a quiet
/// start (warnings only, so the banner is the first thing a newcomer reads), then one line per
/// request.
pub const DEV_LOG_FILTER: &str = "warn,http=info";

/// Installs a readable (not JSON) subscriber on stderr, for `auto-order dev`: stdout keeps
/// the banner. `log_level` as in [`init`].
pub fn init_for_humans(log_level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(log_level))
        .unwrap_or_else(|_| EnvFilter::new(DEV_LOG_FILTER));
    let _ = tracing_subscriber::fmt()
        .compact()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
