//! W3C trace context across process boundaries: the caller's `traceparent` becomes the parent
//! of a request's span, and a write this edge hands to the primary region with `fly-replay`
//! carries this edge's span as the `state` Fly passes back in `fly-replay-src`, so the
//! primary-region edge's work joins the same trace.

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACEPARENT: &str = "traceparent";

/// The header Fly's proxy adds to a replayed request: `instance=…;region=…;t=…;state=…`.
pub const FLY_REPLAY_SRC: &str = "fly-replay-src";

/// Makes the trace context `headers` carry the parent of `span`, and returns the trace id the
/// request belongs to (for the logs), if any: the span's own when traces are exported, else
/// the caller's.
pub fn adopt_parent(span: &tracing::Span, headers: &HeaderMap) -> Option<TraceId> {
    let parent = TraceContextPropagator::new().extract(&Carrier(headers));
    let remote = parent.span().span_context().clone();
    if remote.is_valid() {
        // Without an exporter there is no OpenTelemetry layer to take the parent: the
        // caller's trace id still goes into the logs.
        let _ = span.set_parent(parent);
    }
    let own = span.context().span().span_context().trace_id();
    if own != TraceId::INVALID {
        Some(own)
    } else if remote.is_valid() {
        Some(remote.trace_id())
    } else {
        None
    }
}

/// `span` as a `traceparent` value, when traces are exported.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Reads `traceparent`/`tracestate`, or, in a request Fly replayed from another edge, the
/// `traceparent` that edge put in the replay's `state` (it names the replaying edge's span,
/// a closer parent than the client's header, which Fly replays unchanged).
struct Carrier<'a>(&'a HeaderMap);

impl Carrier<'_> {
    fn replay_state(&self) -> Option<&str> {
        let src = self.0.get(FLY_REPLAY_SRC)?.to_str().ok()?;
        src.split(';')
            .find_map(|part| part.trim().strip_prefix("state="))
    }
}

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key == TRACEPARENT
            && let Some(state) = self.replay_state()
        {
            return Some(state);
        }
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const EDGE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    fn span_id_of(headers: &HeaderMap) -> String {
        let cx = TraceContextPropagator::new().extract(&Carrier(headers));
        cx.span().span_context().span_id().to_string()
    }

    #[test]
    fn a_replayed_request_takes_the_replaying_edge_as_parent() {
        let replayed = headers(&[
            (TRACEPARENT, CLIENT),
            (
                FLY_REPLAY_SRC,
                &format!("instance=1;region=lhr;t=1;state={EDGE}"),
            ),
        ]);
        assert_eq!(span_id_of(&replayed), "b7ad6b7169203331");
        assert_eq!(
            span_id_of(&headers(&[(TRACEPARENT, CLIENT)])),
            "00f067aa0ba902b7"
        );
    }

    #[test]
    fn without_an_exporter_the_callers_trace_id_still_reaches_the_logs() {
        let span = tracing::info_span!("request");
        let trace = adopt_parent(&span, &headers(&[(TRACEPARENT, CLIENT)]));
        assert_eq!(
            trace.map(|t| t.to_string()).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            adopt_parent(&span, &headers(&[(TRACEPARENT, "garbage")])),
            None
        );
    }
}
