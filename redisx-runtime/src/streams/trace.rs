//! W3C trace context in stream entries (feature `opentelemetry`): the publisher writes the
//! `traceparent` and `tracestate` of its current span; the consumer's `stream.process` span
//! continues that trace as a child of the publishing span, so one trace shows a request, its
//! publish and its processing in another service. Without the feature both are no-ops.

use super::fields::Fields;

/// Adds the current span's trace context to `fields` (when it has one).
#[cfg(feature = "opentelemetry")]
pub(crate) fn inject(fields: &mut Fields) {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return;
    }
    let parent = format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    );
    fields.push((super::fields::TRACEPARENT.to_owned(), parent.into_bytes()));
    let state = sc.trace_state().header();
    if !state.is_empty() {
        fields.push((super::fields::TRACESTATE.to_owned(), state.into_bytes()));
    }
}

/// Without the `opentelemetry` feature: nothing to inject.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn inject(_fields: &mut Fields) {}

/// Makes `span` a child of the publishing span named by the entry's `traceparent` (a malformed
/// one is ignored).
#[cfg(feature = "opentelemetry")]
pub(crate) fn set_parent(span: &tracing::Span, entry: &[(String, Vec<u8>)]) {
    use std::str::FromStr as _;

    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    let Some(parent) = super::fields::get(entry, super::fields::TRACEPARENT)
        .and_then(|v| std::str::from_utf8(v).ok())
    else {
        return;
    };
    let parts: Vec<&str> = parent.trim().split('-').collect();
    let [version, trace, span_id, flags] = parts.as_slice() else {
        return;
    };
    if *version != "00" {
        return;
    }
    let (Ok(trace), Ok(span_id), Ok(flags)) = (
        TraceId::from_hex(trace),
        SpanId::from_hex(span_id),
        u8::from_str_radix(flags, 16),
    ) else {
        return;
    };
    let state = super::fields::get(entry, super::fields::TRACESTATE)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| TraceState::from_str(s).ok())
        .unwrap_or_default();
    let sc = SpanContext::new(trace, span_id, TraceFlags::new(flags), true, state);
    if sc.is_valid() {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
    }
}

/// Without the `opentelemetry` feature: nothing to continue.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn set_parent(_span: &tracing::Span, _entry: &[(String, Vec<u8>)]) {}
