//! Tracing set-up: JSON lines on stdout, filtered by `RUST_LOG` or `LOG_LEVEL`; for
//! `auto-order dev`, readable lines on stderr ([`init_for_humans`]); and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the same spans exported as traces ([`otlp`]).
//!
//! Logging rules: a readable message plus fields with units in their names
//! (`duration_ms`); a failure is logged once, where it is handled; tokens, request bodies
//! and connection strings are never logged.
//!
//! Span levels: the request's span is `info` (every log line of a request carries it and its
//! `trace_id`); the spans inside a request and the sync engine's (auth, read, primary
//! statements, read-your-writes waits, pulls, applies, resyncs) are `debug`. The exporter
//! takes `debug` spans whatever the log level, so traces are detailed while the logs stay at
//! `info`, and without an exporter those spans are never even built.

pub mod otlp;
pub mod propagate;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, FilterFn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

pub use otlp::OtlpError;

/// How long the last spans may take to leave at exit: the HTTP drain's deadline (20 s) plus
/// this stays inside Fly's `kill_timeout` (30 s), whatever state the collector is in.
pub const FLUSH_AT_EXIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The installed pipeline; [`Telemetry::shutdown`] flushes the spans still queued.
#[must_use = "keep it until exit and call shutdown, or queued spans are lost"]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exports_traces(&self) -> bool {
        self.traces.is_some()
    }

    /// Exports what is queued and stops the exporter, within [`FLUSH_AT_EXIT`].
    pub fn shutdown(self) {
        if let Some(provider) = self.traces
            && let Err(err) = provider.shutdown_with_timeout(FLUSH_AT_EXIT)
        {
            eprintln!("auto-order: flushing traces at exit: {err}");
        }
    }
}

/// Installs the global subscriber: JSON logs, plus traces when configured. Installing twice
/// keeps the first (tests start several apps in one process).
pub fn init(log_level: &str) -> Result<Telemetry, OtlpError> {
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_writer(std::io::stdout)
        .with_filter(log_filter(log_level, "info"));
    install(logs)
}

/// The filter of `auto-order dev` when neither `RUST_LOG` nor `LOG_LEVEL` is set: a quiet
/// start (warnings only, so the banner is the first thing a newcomer reads), then one line per
/// request.
pub const DEV_LOG_FILTER: &str = "warn,http=info";

/// Installs a readable (not JSON) subscriber on stderr, for `auto-order dev`: stdout keeps
/// the banner. `log_level` as in [`init`].
pub fn init_for_humans(log_level: &str) -> Result<Telemetry, OtlpError> {
    let logs = tracing_subscriber::fmt::layer()
        .compact()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_filter(log_filter(log_level, DEV_LOG_FILTER));
    install(logs)
}

fn log_filter(log_level: &str, fallback: &str) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(log_level))
        .unwrap_or_else(|_| EnvFilter::new(fallback))
}

fn install(logs: impl Layer<Registry> + Send + Sync) -> Result<Telemetry, OtlpError> {
    let traces = otlp::provider_from_env()?;
    let exporter = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("auto-order"))
            // Attributes an APM has no use for, measured or collected on every span.
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(trace_filter())
    });
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(exporter)
        .try_init();
    Ok(Telemetry { traces })
}

/// What becomes part of a trace: this workspace's spans down to `debug`, and its events of
/// `info` and above as span events (a debug event per statement would drown the spans).
/// Other crates' spans stay out: a trace shows this service's work.
fn trace_filter() -> FilterFn {
    FilterFn::new(|meta| {
        let ours = meta.target().starts_with("auto_order") || meta.target() == "http";
        let level = if meta.is_span() {
            Level::DEBUG
        } else {
            Level::INFO
        };
        ours && *meta.level() <= level
    })
}
