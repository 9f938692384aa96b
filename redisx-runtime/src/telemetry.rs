//! OpenTelemetry export of the runtime's spans (features `opentelemetry` and `otlp`).
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
//! // The endpoint and service name default to `OTEL_EXPORTER_OTLP_ENDPOINT` and
//! // `OTEL_SERVICE_NAME`; set here they win over the environment.
//! let (layer, guard) = redisx_runtime::telemetry::otlp()
//!     .endpoint("http://otel-collector:4318")
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
//! The crates the layer is built from are re-exported, so code that needs their types (a
//! propagator, `OpenTelemetrySpanExt`) uses the same versions redisx does.

pub use opentelemetry;
pub use tracing_opentelemetry;

#[cfg(feature = "otlp")]
pub(crate) use otlp::flush_registered;
#[cfg(feature = "otlp")]
pub use otlp::{OtlpBuilder, OtlpGuard, OtlpLayer, OtlpProtocol, otlp};
#[cfg(feature = "otlp")]
pub use {opentelemetry_otlp, opentelemetry_sdk};

/// The OTLP exporter: builder, guard and the process-wide list [`RedisX::shutdown`] flushes.
///
/// [`RedisX::shutdown`]: crate::RedisX::shutdown
#[cfg(feature = "otlp")]
mod otlp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, MutexGuard, PoisonError};
    use std::time::Duration;

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry::{InstrumentationScope, Key, KeyValue, Value};
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
    use tracing::Subscriber;
    use tracing_opentelemetry::OpenTelemetryLayer;
    use tracing_subscriber::registry::LookupSpan;

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

    /// The transport the exporter sends spans with.
    ///
    /// ```
    /// use redisx_runtime::telemetry::{OtlpProtocol, otlp};
    ///
    /// let builder = otlp().protocol(OtlpProtocol::HttpProtobuf);
    /// assert_eq!(builder.get_protocol(), OtlpProtocol::HttpProtobuf);
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    #[non_exhaustive]
    pub enum OtlpProtocol {
        /// Protobuf over HTTP: `POST {endpoint}/v1/traces`, port 4318 by default. The only
        /// transport so far; gRPC (port 4317, behind a feature of its own) may follow, hence
        /// `#[non_exhaustive]`.
        #[default]
        HttpProtobuf,
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

    /// Configures the OTLP trace exporter: where to ([`endpoint`](Self::endpoint)), how
    /// ([`protocol`](Self::protocol)), as whom ([`service_name`](Self::service_name),
    /// [`resource_attribute`](Self::resource_attribute)) and how much
    /// ([`sampling_ratio`](Self::sampling_ratio)). Made by [`otlp()`].
    #[derive(Debug, Clone)]
    #[must_use]
    pub struct OtlpBuilder {
        endpoint: Option<String>,
        protocol: OtlpProtocol,
        service_name: Option<String>,
        sampling_ratio: f64,
        attributes: Vec<KeyValue>,
        timeout: Option<Duration>,
    }

    impl Default for OtlpBuilder {
        fn default() -> Self {
            Self {
                endpoint: None,
                protocol: OtlpProtocol::default(),
                service_name: None,
                sampling_ratio: 1.0,
                attributes: Vec::new(),
                timeout: None,
            }
        }
    }

    impl OtlpBuilder {
        /// The collector's base URL, as in `OTEL_EXPORTER_OTLP_ENDPOINT`: over HTTP the spans go to
        /// `{url}/v1/traces`. Unset, the exporter reads `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the
        /// full URL), then `OTEL_EXPORTER_OTLP_ENDPOINT`, and falls back to
        /// `http://localhost:4318`. Plain `http://` only for now: no TLS client is built in,
        /// and [`build`](Self::build) refuses an `https://` endpoint.
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

        /// The transport (default [`OtlpProtocol::HttpProtobuf`]).
        ///
        /// ```
        /// use redisx_runtime::telemetry::{OtlpProtocol, otlp};
        ///
        /// let builder = otlp().protocol(OtlpProtocol::HttpProtobuf);
        /// # let _ = builder;
        /// ```
        pub fn protocol(mut self, protocol: OtlpProtocol) -> Self {
            self.protocol = protocol;
            self
        }

        /// The transport set with [`protocol`](Self::protocol).
        ///
        /// ```
        /// use redisx_runtime::telemetry::{OtlpProtocol, otlp};
        ///
        /// assert_eq!(otlp().get_protocol(), OtlpProtocol::HttpProtobuf);
        /// ```
        pub fn get_protocol(&self) -> OtlpProtocol {
            self.protocol
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

        /// How long one export request may take (default: `OTEL_EXPORTER_OTLP_TIMEOUT`, else 10
        /// seconds).
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
        /// Spans are batched and sent from a thread of the exporter's own, so no Tokio runtime is
        /// needed, and an unreachable collector never slows the traced code down (spans beyond the
        /// batch queue are dropped).
        ///
        /// Fails with [`ErrorCode::ConfigInvalid`] on a sampling ratio outside 0.0..=1.0, an
        /// invalid or `https://` endpoint (set here or in the environment).
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
            self.check_endpoint()?;
            let exporter = self.exporter()?;
            let resource = Resource::builder()
                .with_service_name(self.get_service_name())
                .with_attributes(self.attributes)
                .build();
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                    self.sampling_ratio,
                ))))
                .with_resource(resource)
                .build();
            let scope = InstrumentationScope::builder("redisx")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build();
            // Span durations are what a trace shows; the busy/idle split of `tracing` would
            // only add two attributes to every span.
            let layer = tracing_opentelemetry::layer()
                .with_tracked_inactivity(false)
                .with_tracer(provider.tracer_with_scope(scope));
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            registered().push((id, provider.clone()));
            Ok((
                layer,
                OtlpGuard {
                    provider: Some(provider),
                    id,
                },
            ))
        }

        /// Refuses an `https://` endpoint up front: the HTTP client is built without TLS, and
        /// would otherwise only fail at the first export, on the exporter's thread.
        fn check_endpoint(&self) -> Result<()> {
            let from_env = |var| std::env::var(var).ok().filter(|v: &String| !v.is_empty());
            let endpoint = self.endpoint.clone().or_else(|| {
                from_env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                    .or_else(|| from_env("OTEL_EXPORTER_OTLP_ENDPOINT"))
            });
            match endpoint {
                Some(url) if url.trim_start().to_ascii_lowercase().starts_with("https:") => {
                    Err(Error::new(
                        ErrorCode::ConfigInvalid,
                        format!(
                            "the OTLP endpoint {url} needs TLS, which the exporter is built \
                             without; use an http:// endpoint (a local collector or agent)"
                        ),
                    ))
                }
                _ => Ok(()),
            }
        }

        fn exporter(&self) -> Result<SpanExporter> {
            let invalid = |e: opentelemetry_otlp::ExporterBuildError| {
                Error::new(ErrorCode::ConfigInvalid, "the OTLP exporter did not build")
                    .with_source(e)
            };
            match self.protocol {
                OtlpProtocol::HttpProtobuf => {
                    let mut builder = SpanExporter::builder()
                        .with_http()
                        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
                    if let Some(base) = &self.endpoint {
                        builder = builder
                            .with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
                    }
                    if let Some(timeout) = self.timeout {
                        builder = builder.with_timeout(timeout);
                    }
                    builder.build().map_err(invalid)
                }
            }
        }
    }

    /// Keeps the exporter of an [`OtlpBuilder::build`] running; dropping it (or
    /// [`shutdown`](Self::shutdown)) sends the spans still queued and stops the exporter. Keep it
    /// for the life of the program, e.g. as a local of `main`.
    ///
    /// Flushing and shutting down block the calling thread until the collector answered or the
    /// export timeout passed; from async code, prefer [`RedisX::shutdown`](crate::RedisX::shutdown)
    /// (which flushes off the async threads) and drop the guard last.
    #[must_use = "dropping the guard stops the exporter"]
    #[derive(Debug)]
    pub struct OtlpGuard {
        provider: Option<SdkTracerProvider>,
        id: u64,
    }

    impl OtlpGuard {
        /// Sends the spans queued so far, waiting for the collector's answer.
        ///
        /// ```no_run
        /// # fn main() -> redisx_runtime::Result<()> {
        /// # let (_layer, guard) = redisx_runtime::telemetry::otlp().build::<tracing_subscriber::Registry>()?;
        /// guard.flush()?;
        /// # Ok(()) }
        /// ```
        pub fn flush(&self) -> Result<()> {
            match &self.provider {
                Some(provider) => provider.force_flush().map_err(export_error),
                None => Ok(()),
            }
        }

        /// The tracer provider behind the layer: for other instrumentation of the process to
        /// share (e.g. `opentelemetry::global::set_tracer_provider`, which this crate never
        /// calls).
        ///
        /// ```no_run
        /// # fn main() -> redisx_runtime::Result<()> {
        /// # let (_layer, guard) = redisx_runtime::telemetry::otlp().build::<tracing_subscriber::Registry>()?;
        /// redisx_runtime::telemetry::opentelemetry::global::set_tracer_provider(guard.provider().clone());
        /// # Ok(()) }
        /// ```
        ///
        /// # Panics
        /// Never: the provider is only taken by `shutdown`, which consumes the guard.
        pub fn provider(&self) -> &SdkTracerProvider {
            self.provider
                .as_ref()
                .expect("the provider lives as long as its guard")
        }

        /// Sends what is queued, then stops the exporter; spans ended afterwards are dropped.
        /// Dropping the guard does the same, ignoring errors.
        ///
        /// ```no_run
        /// # fn main() -> redisx_runtime::Result<()> {
        /// # let (_layer, guard) = redisx_runtime::telemetry::otlp().build::<tracing_subscriber::Registry>()?;
        /// guard.shutdown()?;
        /// # Ok(()) }
        /// ```
        pub fn shutdown(mut self) -> Result<()> {
            self.stop()
        }

        fn stop(&mut self) -> Result<()> {
            let Some(provider) = self.provider.take() else {
                return Ok(());
            };
            registered().retain(|(id, _)| *id != self.id);
            provider.shutdown().map_err(export_error)
        }
    }

    impl Drop for OtlpGuard {
        fn drop(&mut self) {
            // The exporter already reported why (through its own `tracing` events).
            let _ = self.stop();
        }
    }

    fn export_error(e: opentelemetry_sdk::error::OTelSdkError) -> Error {
        Error::new(ErrorCode::OperationFailed, "the OTLP exporter failed").with_source(e)
    }

    /// Every provider built by [`OtlpBuilder::build`] whose guard is alive, by guard id: what
    /// [`RedisX::shutdown`](crate::RedisX::shutdown) flushes.
    static REGISTERED: Mutex<Vec<(u64, SdkTracerProvider)>> = Mutex::new(Vec::new());
    static NEXT_ID: AtomicU64 = AtomicU64::new(0);

    fn registered() -> MutexGuard<'static, Vec<(u64, SdkTracerProvider)>> {
        // The list stays consistent whatever panicked while it was held (a push or a retain).
        REGISTERED.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Flushes every registered provider, on a blocking thread (a flush waits for the collector).
    pub(crate) async fn flush_registered() {
        let providers: Vec<SdkTracerProvider> =
            registered().iter().map(|(_, p)| p.clone()).collect();
        if providers.is_empty() {
            return;
        }
        let flushed = tokio::task::spawn_blocking(move || {
            for provider in providers {
                if let Err(e) = provider.force_flush() {
                    tracing::warn!(target: "redisx", error = %format_args!("{e:#}"), "the OTLP exporter did not flush");
                }
            }
        })
        .await;
        if flushed.is_err() {
            tracing::warn!(target: "redisx", "the OTLP flush panicked");
        }
    }
}
