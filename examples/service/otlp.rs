//! Trace export over OTLP (redisx's `otlp` feature): the exporter, whose `tracing` layer sends
//! redisx's spans (cache, locks, idempotency, rate limits, streams, every command), and an
//! HTTP server span around each request, so that a request's Redis work, its publish and the
//! consumer's processing of the order are one trace.
//!
//! The server span is made with the OpenTelemetry API that redisx re-exports
//! (`redisx::telemetry::opentelemetry`) on the exporter's own tracer provider, and set as the
//! current OpenTelemetry context while the request runs: redisx's spans started inside take it
//! as their parent.

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use redisx::telemetry::opentelemetry::context::FutureExt as _;
use redisx::telemetry::opentelemetry::trace::{
    SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use redisx::telemetry::opentelemetry::{Context, KeyValue};
use redisx::telemetry::opentelemetry_sdk::trace::SdkTracer;
use redisx::telemetry::{OtlpGuard, OtlpLayer};
use tracing_subscriber::Registry;

/// The `service.name` of the traces, unless `OTEL_SERVICE_NAME` says otherwise.
pub const SERVICE_NAME: &str = "redisx-service-example";

/// The running exporter: keep it for the life of the program.
pub struct Telemetry {
    guard: OtlpGuard,
    tracer: SdkTracer,
}

impl Telemetry {
    /// Builds the exporter to `endpoint` (a collector's base URL, `http://host:4318`), or to
    /// the collector of the `OTEL_EXPORTER_OTLP_*` variables when `None`; returns the layer
    /// to add to a `tracing_subscriber::registry()` and the running exporter.
    pub fn build(endpoint: Option<&str>) -> redisx::Result<(OtlpLayer<Registry>, Self)> {
        let mut builder = redisx::telemetry::otlp();
        if let Some(url) = endpoint {
            builder = builder.endpoint(url);
        }
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            builder = builder.service_name(SERVICE_NAME);
        }
        let (layer, guard) = builder.build()?;
        let tracer = guard.provider().tracer(SERVICE_NAME);
        Ok((layer, Self { guard, tracer }))
    }

    /// `router` with a server span around every request.
    pub fn traced(&self, router: Router) -> Router {
        router.layer(axum::middleware::from_fn_with_state(
            self.tracer.clone(),
            server_span,
        ))
    }

    /// Sends the spans still queued and stops the exporter (after `rx.shutdown()`, which
    /// already sent those of the last calls).
    pub fn shutdown(self) -> redisx::Result<()> {
        self.guard.shutdown()
    }
}

/// Runs the request inside a server span named after its route (`GET /api/products/{id}`),
/// with the OpenTelemetry HTTP attributes; a 5xx marks it failed. The span is the current
/// OpenTelemetry context while the request runs, so redisx's spans inside are its children.
async fn server_span(State(tracer): State<SdkTracer>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let mut attributes = vec![
        KeyValue::new("http.request.method", method.clone()),
        KeyValue::new("url.path", path.clone()),
    ];
    // Named `{method} {route}`, or `{method}` alone for a path no route serves (the
    // OpenTelemetry HTTP conventions: a span name must not carry ids).
    let name = match crate::app::route_of(&path) {
        Some(route) => {
            attributes.push(KeyValue::new("http.route", route));
            format!("{method} {route}")
        }
        None => method,
    };
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Server)
        .with_attributes(attributes)
        .start(&tracer);
    let cx = Context::current_with_span(span);
    let response = next.run(req).with_context(cx.clone()).await;
    let span = cx.span();
    let status = response.status();
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status.as_u16()),
    ));
    if status.is_server_error() {
        span.set_status(Status::error(status.to_string()));
    }
    span.end();
    response
}
