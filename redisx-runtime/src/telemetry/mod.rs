//! OpenTelemetry export of the runtime's spans (features `opentelemetry`, `otlp` and
//! `otlp-grpc`).
//!
//! redisx describes its work with `tracing` spans that already carry the OpenTelemetry names
//! (`otel.name`, `otel.kind`, `db.system.name`, `db.operation.name`, ...). With the `otlp`
//! feature, [`otlp()`] builds what sends them to an OpenTelemetry collector: a `tracing` layer
//! for your subscriber and an [`OtlpGuard`] that flushes on shutdown. Nothing is installed
//! globally: neither a `tracing` subscriber nor an OpenTelemetry tracer provider.
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The endpoint, protocol and service name default to the `OTEL_*` variables below; set
//! // here they win over the environment.
//! let (layer, guard) = redisx_runtime::telemetry::otlp()
//!     .endpoint("https://otel-collector.internal:4318")
//!     .tls_ca_cert(std::fs::read("/etc/otel/ca.crt")?) // a private CA; omit for public ones
//!     .service_name("checkout")
//!     .sampling_ratio(0.25)
//!     .resource_attribute("deployment.environment.name", "production")
//!     .build()?;
//! tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))?;
//!
//! // ... build the `RedisX` runtime and serve; `RedisX::shutdown` flushes the spans ...
//!
//! guard.shutdown()?; // or drop it: sends what is left, then stops the exporter
//! # Ok(()) }
//! ```
//!
//! The span names in the collector are the `otel.name`s: a command span (`redis.command` in
//! `tracing`) is named after its command (`GET`, `EVALSHA`, ...), with `otel.kind = client`; a
//! cache call is `cache.get` with the command spans it sent as children.
//!
//! # Transports
//!
//! | [`OtlpProtocol`] | feature | default endpoint | sent by |
//! | --- | --- | --- | --- |
//! | [`HttpProtobuf`](OtlpProtocol::HttpProtobuf) (default) | `otlp` | `http://localhost:4318` | a blocking HTTP client (reqwest) on the exporter's batch thread |
//! | [`Grpc`](OtlpProtocol::Grpc) | `otlp-grpc` | `http://localhost:4317` | tonic, on a one-thread Tokio runtime the exporter owns |
//!
//! Both work the same whether [`build`](OtlpBuilder::build) is called from a plain `main` or
//! inside a Tokio runtime (current-thread ones included), and neither ever waits on the
//! application's runtime: spans are batched and sent from the exporter's own thread. That is
//! why the HTTP client is a blocking one, and why gRPC, whose client needs a Tokio runtime to
//! keep its connection, brings a runtime of its own (one worker thread, `redisx-otlp-grpc`)
//! rather than borrowing the application's, which may be busy, single-threaded or gone.
//! `otlp-grpc` builds tonic and its dependencies: leave it off unless the collector only
//! speaks gRPC.
//!
//! # TLS
//!
//! An `https://` endpoint is reached over TLS: rustls with the *ring* crypto provider (unless
//! the application installed another process-wide provider), trusting the Mozilla roots of
//! `webpki-roots`, or, for a collector whose certificate a private CA signed, only the CA
//! certificates given with [`tls_ca_cert`](OtlpBuilder::tls_ca_cert) (PEM). `http://`
//! endpoints are plain text, for a collector or agent on the same host or network.
//!
//! # Environment
//!
//! What the builder does not set is read from the standard OpenTelemetry variables, the
//! `TRACES_` one first:
//!
//! | variable | meaning |
//! | --- | --- |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | the full URL (HTTP: with its `/v1/traces` path) |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | the base URL (HTTP: `/v1/traces` is appended) |
//! | `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL` | `http/protobuf` or `grpc` |
//! | `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`, `OTEL_EXPORTER_OTLP_CERTIFICATE` | a PEM file of the CA to trust over `https://` |
//! | `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, `OTEL_EXPORTER_OTLP_TIMEOUT` | the export timeout, in milliseconds |
//! | `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, `OTEL_EXPORTER_OTLP_HEADERS` | `key=value,...` sent with every export |
//! | `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` | the resource |
//!
//! The crates the layer is built from are re-exported, so code that needs their types (a
//! propagator, `OpenTelemetrySpanExt`) uses the same versions redisx does.

pub use opentelemetry;
pub use tracing_opentelemetry;

#[cfg(feature = "otlp")]
mod exporter;
#[cfg(feature = "otlp")]
mod guard;
#[cfg(feature = "otlp")]
mod otlp;
#[cfg(all(test, feature = "otlp"))]
mod tests;

#[cfg(feature = "otlp")]
pub use guard::OtlpGuard;
#[cfg(feature = "otlp")]
pub(crate) use guard::flush_registered;
#[cfg(feature = "otlp")]
pub use otlp::{OtlpBuilder, OtlpLayer, OtlpProtocol, otlp};
#[cfg(feature = "otlp")]
pub use {opentelemetry_otlp, opentelemetry_sdk};
