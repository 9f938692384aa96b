//! The OTLP exporter's configuration: [`otlp()`], [`OtlpBuilder`] and [`OtlpProtocol`].

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, Key, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

use super::exporter::{self, Settings};
use super::guard::{self, OtlpGuard};
use crate::{Error, ErrorCode, Result};

/// The `tracing` layer [`OtlpBuilder::build`] returns, for a subscriber `S` (inferred where
/// the layer is added: `tracing_subscriber::registry().with(layer)`).
///
/// ```no_run
/// use tracing_subscriber::{Registry, layer::SubscriberExt};
/// use redisx_runtime::telemetry::{OtlpGuard, OtlpLayer};
///
/// # fn main() -> redisx_runtime::Result<()> {
/// let (layer, _guard): (OtlpLayer<Registry>, OtlpGuard) = redisx_runtime::telemetry::otlp().build()?;
/// let _subscriber = tracing_subscriber::registry().with(layer);
/// # Ok(()) }
/// ```
pub type OtlpLayer<S> = OpenTelemetryLayer<S, SdkTracer>;

/// The transport the exporter sends spans with (see the [module docs](super#transports)).
///
/// ```
/// use redisx_runtime::telemetry::{OtlpProtocol, otlp};
///
/// let builder = otlp().protocol(OtlpProtocol::Grpc);
/// assert_eq!(builder.get_protocol(), Some(OtlpProtocol::Grpc));
/// assert_eq!(OtlpProtocol::Grpc.default_port(), 4317);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OtlpProtocol {
    /// Protobuf over HTTP: `POST {endpoint}/v1/traces`, port 4318 by default
    /// (`OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`).
    #[default]
    HttpProtobuf,
    /// gRPC (`TraceService/Export`), port 4317 by default (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`).
    /// Needs the `otlp-grpc` feature: without it [`OtlpBuilder::build`] fails with
    /// [`ErrorCode::ConfigInvalid`].
    Grpc,
}

impl OtlpProtocol {
    /// The collector port the OTLP specification assigns to this transport: 4318 for
    /// HTTP/protobuf, 4317 for gRPC.
    ///
    /// ```
    /// use redisx_runtime::telemetry::OtlpProtocol;
    ///
    /// assert_eq!(OtlpProtocol::HttpProtobuf.default_port(), 4318);
    /// ```
    pub fn default_port(self) -> u16 {
        match self {
            Self::HttpProtobuf => 4318,
            Self::Grpc => 4317,
        }
    }

    /// The name `OTEL_EXPORTER_OTLP_PROTOCOL` gives this transport: `http/protobuf` or `grpc`.
    ///
    /// ```
    /// use redisx_runtime::telemetry::OtlpProtocol;
    ///
    /// assert_eq!(OtlpProtocol::Grpc.as_str(), "grpc");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "http/protobuf",
            Self::Grpc => "grpc",
        }
    }
}

impl std::fmt::Display for OtlpProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Starts an OTLP exporter configuration; see [`OtlpBuilder`] and the [module docs](super).
///
/// ```no_run
/// use tracing_subscriber::layer::SubscriberExt;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (layer, guard) = redisx_runtime::telemetry::otlp().build()?;
/// tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))?;
/// # drop(guard);
/// # Ok(()) }
/// ```
pub fn otlp() -> OtlpBuilder {
    OtlpBuilder::default()
}

/// Configures the OTLP trace exporter: where to ([`endpoint`](Self::endpoint),
/// [`tls_ca_cert`](Self::tls_ca_cert)), how ([`protocol`](Self::protocol)), as whom
/// ([`service_name`](Self::service_name), [`resource_attribute`](Self::resource_attribute)) and
/// how much ([`sampling_ratio`](Self::sampling_ratio)). Made by [`otlp()`].
#[derive(Clone)]
#[must_use]
pub struct OtlpBuilder {
    pub(super) endpoint: Option<String>,
    pub(super) protocol: Option<OtlpProtocol>,
    pub(super) tls_ca_cert: Option<Vec<u8>>,
    service_name: Option<String>,
    sampling_ratio: f64,
    attributes: Vec<KeyValue>,
    pub(super) timeout: Option<Duration>,
}

impl Default for OtlpBuilder {
    fn default() -> Self {
        Self {
            endpoint: None,
            protocol: None,
            tls_ca_cert: None,
            service_name: None,
            sampling_ratio: 1.0,
            attributes: Vec::new(),
            timeout: None,
        }
    }
}

impl std::fmt::Debug for OtlpBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpBuilder")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field(
                "tls_ca_cert",
                &self
                    .tls_ca_cert
                    .as_ref()
                    .map(|pem| format!("{} bytes", pem.len())),
            )
            .field("service_name", &self.service_name)
            .field("sampling_ratio", &self.sampling_ratio)
            .field("attributes", &self.attributes)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl OtlpBuilder {
    /// The collector's base URL, as in `OTEL_EXPORTER_OTLP_ENDPOINT`: over HTTP the spans go to
    /// `{url}/v1/traces`, over gRPC to the URL itself. Unset, the exporter reads
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL), then `OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// and falls back to `http://localhost:4318` (HTTP) or `http://localhost:4317` (gRPC).
    /// `https://` connects over TLS (see [`tls_ca_cert`](Self::tls_ca_cert)).
    ///
    /// ```
    /// let builder = redisx_runtime::telemetry::otlp().endpoint("http://otel-collector:4318");
    /// assert_eq!(builder.get_endpoint(), Some("http://otel-collector:4318"));
    /// ```
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The endpoint set with [`endpoint`](Self::endpoint), if any.
    ///
    /// ```
    /// assert_eq!(redisx_runtime::telemetry::otlp().get_endpoint(), None);
    /// ```
    pub fn get_endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The transport. Unset, it is `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf` or `grpc`), else
    /// [`OtlpProtocol::HttpProtobuf`]. [`OtlpProtocol::Grpc`] needs the `otlp-grpc` feature.
    ///
    /// ```
    /// use redisx_runtime::telemetry::{OtlpProtocol, otlp};
    ///
    /// let builder = otlp()
    ///     .protocol(OtlpProtocol::Grpc)
    ///     .endpoint("http://otel-collector:4317");
    /// # let _ = builder;
    /// ```
    pub fn protocol(mut self, protocol: OtlpProtocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// The transport set with [`protocol`](Self::protocol), if any.
    ///
    /// ```
    /// use redisx_runtime::telemetry::{OtlpProtocol, otlp};
    ///
    /// assert_eq!(otlp().get_protocol(), None);
    /// assert_eq!(otlp().protocol(OtlpProtocol::HttpProtobuf).get_protocol(), Some(OtlpProtocol::HttpProtobuf));
    /// ```
    pub fn get_protocol(&self) -> Option<OtlpProtocol> {
        self.protocol
    }

    /// Over `https://`, trust the CA certificates in `pem` (PEM text, one or more certificates)
    /// instead of the built-in roots: for a collector whose certificate a private CA signed.
    /// Unset, the file named by `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` or
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE` is read, if any. [`build`](Self::build) fails when the
    /// PEM holds no certificate, or when the endpoint is not `https://`.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let builder = redisx_runtime::telemetry::otlp()
    ///     .endpoint("https://otel-collector.internal:4318")
    ///     .tls_ca_cert(std::fs::read("/etc/otel/ca.crt")?);
    /// # let _ = builder; Ok(()) }
    /// ```
    pub fn tls_ca_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca_cert = Some(pem.into());
        self
    }

    /// The CA certificates set with [`tls_ca_cert`](Self::tls_ca_cert), if any.
    ///
    /// ```
    /// let pem = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n";
    /// let builder = redisx_runtime::telemetry::otlp().tls_ca_cert(pem);
    /// assert_eq!(builder.get_tls_ca_cert(), Some(pem.as_bytes()));
    /// ```
    pub fn get_tls_ca_cert(&self) -> Option<&[u8]> {
        self.tls_ca_cert.as_deref()
    }

    /// The `service.name` resource attribute. Unset, it is `OTEL_SERVICE_NAME`, else
    /// `"redisx"`.
    ///
    /// ```
    /// let builder = redisx_runtime::telemetry::otlp().service_name("checkout");
    /// assert_eq!(builder.get_service_name(), "checkout");
    /// ```
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// The service name the spans will carry (the configured one, else `OTEL_SERVICE_NAME`,
    /// else `"redisx"`).
    ///
    /// ```
    /// let name = redisx_runtime::telemetry::otlp().get_service_name();
    /// assert!(!name.is_empty());
    /// ```
    pub fn get_service_name(&self) -> String {
        self.service_name.clone().unwrap_or_else(|| {
            std::env::var("OTEL_SERVICE_NAME")
                .ok()
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "redisx".to_owned())
        })
    }

    /// The share of new traces recorded, from 0.0 to 1.0 (default 1.0: every trace). The
    /// sampler is parent-based: a span whose parent came with a sampling decision (an
    /// incoming `traceparent`) follows it; only root spans are drawn by this ratio, by trace
    /// id, so every service of a trace decides alike.
    ///
    /// ```
    /// let builder = redisx_runtime::telemetry::otlp().sampling_ratio(0.1);
    /// assert!((builder.get_sampling_ratio() - 0.1).abs() < f64::EPSILON);
    /// ```
    pub fn sampling_ratio(mut self, ratio: f64) -> Self {
        self.sampling_ratio = ratio;
        self
    }

    /// The ratio set with [`sampling_ratio`](Self::sampling_ratio).
    ///
    /// ```
    /// assert!((redisx_runtime::telemetry::otlp().get_sampling_ratio() - 1.0).abs() < f64::EPSILON);
    /// ```
    pub fn get_sampling_ratio(&self) -> f64 {
        self.sampling_ratio
    }

    /// Adds a resource attribute (`deployment.environment.name`, `service.version`, ...):
    /// it describes the process and comes with every exported span. Attributes from
    /// `OTEL_RESOURCE_ATTRIBUTES` are added too; the ones set here win.
    ///
    /// ```
    /// let builder = redisx_runtime::telemetry::otlp()
    ///     .resource_attribute("deployment.environment.name", "staging")
    ///     .resource_attribute("service.instance.id", 7_i64);
    /// assert_eq!(builder.get_resource_attributes().len(), 2);
    /// ```
    pub fn resource_attribute(mut self, key: impl Into<Key>, value: impl Into<Value>) -> Self {
        self.attributes.push(KeyValue::new(key, value));
        self
    }

    /// The attributes added with [`resource_attribute`](Self::resource_attribute).
    ///
    /// ```
    /// assert!(redisx_runtime::telemetry::otlp().get_resource_attributes().is_empty());
    /// ```
    pub fn get_resource_attributes(&self) -> &[KeyValue] {
        &self.attributes
    }

    /// How long one export request may take (default: `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`,
    /// else `OTEL_EXPORTER_OTLP_TIMEOUT`, in milliseconds, else 10 seconds).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let builder = redisx_runtime::telemetry::otlp().timeout(Duration::from_secs(3));
    /// assert_eq!(builder.get_timeout(), Some(Duration::from_secs(3)));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The timeout set with [`timeout`](Self::timeout), if any.
    ///
    /// ```
    /// assert_eq!(redisx_runtime::telemetry::otlp().get_timeout(), None);
    /// ```
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Builds the exporter and its tracer provider, and returns the layer to add to your
    /// subscriber and the guard that flushes and stops the exporter when dropped. Installs
    /// nothing globally; the provider is only registered with redisx, so that
    /// [`RedisX::shutdown`](crate::RedisX::shutdown) flushes it (every provider built here and
    /// not yet shut down, whichever runtime shuts down).
    ///
    /// Spans are batched and sent from a thread of the exporter's own, so an unreachable
    /// collector never slows the traced code down (spans beyond the batch queue are dropped).
    /// Call it from a plain `main` or from async code alike (see the
    /// [module docs](super#transports)).
    ///
    /// Fails with [`ErrorCode::ConfigInvalid`] on a sampling ratio outside 0.0..=1.0, an
    /// endpoint that is not an `http://` or `https://` URL, an unknown protocol in the
    /// environment, [`OtlpProtocol::Grpc`] without the `otlp-grpc` feature, or CA certificates
    /// that do not parse or come with a plain `http://` endpoint.
    ///
    /// ```no_run
    /// use tracing_subscriber::layer::SubscriberExt;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (layer, guard) = redisx_runtime::telemetry::otlp().service_name("checkout").build()?;
    /// let subscriber = tracing_subscriber::registry()
    ///     .with(tracing_subscriber::fmt::layer())
    ///     .with(layer);
    /// tracing::subscriber::set_global_default(subscriber)?;
    /// # drop(guard);
    /// # Ok(()) }
    /// ```
    pub fn build<S>(self) -> Result<(OtlpLayer<S>, OtlpGuard)>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(Error::new(
                ErrorCode::ConfigInvalid,
                format!(
                    "the OTLP sampling ratio must be between 0.0 and 1.0, got {}",
                    self.sampling_ratio
                ),
            ));
        }
        let settings = Settings::resolve(&self, &|var| std::env::var(var).ok())?;
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                self.sampling_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(self.get_service_name())
                    .with_attributes(self.attributes)
                    .build(),
            );
        let provider = exporter::install(provider, settings)?.build();
        let scope = InstrumentationScope::builder("redisx")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        // Span durations are what a trace shows; the busy/idle split of `tracing` would
        // only add two attributes to every span.
        let layer = tracing_opentelemetry::layer()
            .with_tracked_inactivity(false)
            .with_tracer(provider.tracer_with_scope(scope));
        Ok((layer, guard::register(provider)))
    }
}
