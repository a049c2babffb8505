//! Tracing set-up: JSON lines on stdout, filtered by `RUST_LOG` or `LOG_LEVEL`.
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
