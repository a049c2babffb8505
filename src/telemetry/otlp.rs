//! The OTLP trace exporter, configured by the standard OpenTelemetry variables and off unless
//! an endpoint is set:
//!
//! | variable | meaning |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) | the collector or APM intake (`/v1/traces` is appended to the first) |
//! | `OTEL_EXPORTER_OTLP_HEADERS` | `key=value,…`: the APM's API key (never logged) |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` | only `http/protobuf` (the default) |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT` | per export, milliseconds (default 10000) |
//! | `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` | the resource (default name `auto-order-edge`) |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | e.g. `parentbased_traceidratio` and `0.1` |
//! | `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` | the batching |
//! | `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` | off, whatever else is set |
//!
//! Spans are batched on the SDK's own thread through a bounded queue: a request only pushes
//! its finished spans onto it, and when the collector is slow or gone the queue fills and
//! further spans are dropped. Nothing in the request path waits on the collector.
//!
//! Only OTLP over HTTP with protobuf: every APM's intake and every collector accept it, and it
//! reuses the reqwest client and rustls configuration the JWKS fetch already has (gRPC would
//! add tonic and a second HTTP stack).

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::{
    EnvResourceDetector, ResourceDetector, TelemetryResourceDetector,
};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};

/// `service.name` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names another.
pub const DEFAULT_SERVICE_NAME: &str = "auto-order-edge";

/// Why tracing could not be set up as configured: the process refuses to start (a trace
/// pipeline silently off is found out only when it is needed).
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error(
        "OTEL_EXPORTER_OTLP_PROTOCOL={0:?} is not supported: only http/protobuf (the collector's port 4318)"
    )]
    Protocol(String),
    #[error("OTLP exporter: {0}")]
    Tls(#[from] rustls::Error),
    #[error("OTLP exporter: cannot build its HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The tracer provider the environment asks for, `None` when tracing is off. Call it before
/// the async runtime starts (the blocking HTTP client must not be built on a runtime thread).
pub fn provider_from_env() -> Result<Option<SdkTracerProvider>, OtlpError> {
    provider_from(&|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
}

fn provider_from(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<SdkTracerProvider>, OtlpError> {
    if !enabled(get) {
        return Ok(None);
    }
    if let Some(protocol) = get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .filter(|p| p != "http/protobuf")
    {
        return Err(OtlpError::Protocol(protocol));
    }
    let timeout = get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
        .or_else(|| get("OTEL_EXPORTER_OTLP_TIMEOUT"))
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis);
    let tls = crate::tls::client_config()?;
    let client = reqwest::blocking::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("auto-order-edge/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(OtlpError::Client)?;
    // Endpoint and headers come from the variables, read by the exporter itself.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_timeout(timeout)
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_resource(resource(get))
        .build();
    Ok(Some(provider))
}

fn enabled(get: &dyn Fn(&str) -> Option<String>) -> bool {
    let endpoint = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .is_some();
    let disabled = get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || get("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    endpoint && !disabled
}

/// This instance, as the APM shows it: the service, its version, the Fly region and machine.
/// The standard variables win over these defaults.
fn resource(get: &dyn Fn(&str) -> Option<String>) -> Resource {
    let mut ours = vec![
        KeyValue::new("service.name", DEFAULT_SERVICE_NAME),
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
    ];
    if let Some(region) = get("FLY_REGION") {
        ours.push(KeyValue::new("cloud.provider", "fly_io"));
        ours.push(KeyValue::new("cloud.region", region));
    }
    if let Some(machine) = get("FLY_MACHINE_ID").or_else(|| get("HOSTNAME")) {
        ours.push(KeyValue::new("service.instance.id", machine));
    }
    if let Some(app) = get("FLY_APP_NAME") {
        ours.push(KeyValue::new("service.namespace", app));
    }
    let detectors: [Box<dyn ResourceDetector>; 2] = [
        Box::new(TelemetryResourceDetector),
        Box::new(EnvResourceDetector::new()),
    ];
    let builder = Resource::builder_empty()
        .with_attributes(ours)
        .with_detectors(&detectors);
    match get("OTEL_SERVICE_NAME") {
        Some(name) => builder.with_service_name(name),
        None => builder,
    }
    .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn tracing_is_off_without_an_endpoint_or_when_disabled() {
        assert!(!enabled(&vars(&[])));
        assert!(enabled(&vars(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://c:4318"
        )])));
        assert!(enabled(&vars(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces"
        )])));
        assert!(!enabled(&vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ])));
        assert!(!enabled(&vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ])));
    }

    #[test]
    fn grpc_is_refused_with_a_message_naming_the_supported_protocol() {
        let err = provider_from(&vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("http/protobuf"), "{err}");
    }

    #[test]
    fn the_resource_names_region_and_machine_and_the_standard_name_wins() {
        let get = |key: &str| {
            resource(&vars(&[
                ("FLY_REGION", "syd"),
                ("FLY_MACHINE_ID", "e784079b"),
                ("OTEL_SERVICE_NAME", "edge-prod"),
            ]))
            .get(&opentelemetry::Key::from_static_str(match key {
                "region" => "cloud.region",
                "machine" => "service.instance.id",
                _ => "service.name",
            }))
            .map(|v| v.to_string())
        };
        assert_eq!(get("region").as_deref(), Some("syd"));
        assert_eq!(get("machine").as_deref(), Some("e784079b"));
        assert_eq!(get("name").as_deref(), Some("edge-prod"));
        let default_name = resource(&vars(&[]))
            .get(&opentelemetry::Key::from_static_str("service.name"))
            .map(|v| v.to_string());
        assert_eq!(default_name.as_deref(), Some(DEFAULT_SERVICE_NAME));
    }
}
