//! From an [`OtlpBuilder`] and the environment to a running span exporter: the settings both
//! transports share ([`Settings`]), the HTTP/protobuf exporter and, with `otlp-grpc`, the gRPC
//! one on a Tokio runtime of its own.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::TracerProviderBuilder;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::otlp::{OtlpBuilder, OtlpProtocol};
use crate::{Error, ErrorCode, Result};

const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
const TRACES_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE";
const CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
const TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
const TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// The export timeout the OTLP specification gives when none is configured.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the exporter is built from: the builder's settings, else the environment's, else the
/// specification's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Settings {
    pub(super) protocol: OtlpProtocol,
    /// Where the spans go: over HTTP the full URL (with `/v1/traces`), over gRPC the URL.
    pub(super) endpoint: String,
    pub(super) tls: Tls,
    pub(super) timeout: Duration,
}

/// Whether, and trusting what, the exporter connects over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tls {
    /// An `http://` endpoint: plain text.
    Off,
    /// An `https://` endpoint, trusting the webpki roots.
    BuiltInRoots,
    /// An `https://` endpoint, trusting only these CA certificates (PEM).
    Ca(Vec<u8>),
}

impl Settings {
    /// Merges `builder` with the variables `env` reads (`std::env::var` outside tests).
    pub(super) fn resolve(
        builder: &OtlpBuilder,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let env = |var: &str| env(var).filter(|value| !value.trim().is_empty());
        let first = |vars: [&'static str; 2]| {
            vars.into_iter()
                .find_map(|var| env(var).map(|value| (var, value)))
        };

        let protocol = match (builder.protocol, first([TRACES_PROTOCOL, PROTOCOL])) {
            (Some(protocol), _) => protocol,
            (None, Some((var, value))) => parse_protocol(var, &value)?,
            (None, None) => OtlpProtocol::default(),
        };

        // A base URL gets the path of the transport; the traces variable is the full URL.
        let (url, source, is_base) = match (&builder.endpoint, env(TRACES_ENDPOINT)) {
            (Some(base), _) => (base.trim().to_owned(), "the endpoint", true),
            (None, Some(url)) => (url.trim().to_owned(), TRACES_ENDPOINT, false),
            (None, None) => match env(ENDPOINT) {
                Some(base) => (base.trim().to_owned(), ENDPOINT, true),
                None => (
                    format!("http://localhost:{}", protocol.default_port()),
                    "the default endpoint",
                    true,
                ),
            },
        };
        let https = match url::Url::parse(&url) {
            Ok(parsed) if parsed.scheme() == "https" && parsed.has_host() => true,
            Ok(parsed) if parsed.scheme() == "http" && parsed.has_host() => false,
            _ => {
                return Err(invalid(format!(
                    "the OTLP endpoint {url:?} (from {source}) is not an http:// or https:// URL"
                )));
            }
        };
        let endpoint = if is_base {
            with_path(protocol, &url)
        } else {
            url
        };

        let tls = match (&builder.tls_ca_cert, https) {
            (Some(_), false) => {
                return Err(invalid(format!(
                    "`tls_ca_cert` needs an https:// OTLP endpoint, got {endpoint}"
                )));
            }
            (Some(pem), true) => Tls::Ca(check_pem(pem, "`tls_ca_cert`")?),
            // The certificate variables only apply to secure connections (OTLP specification).
            (None, false) => Tls::Off,
            (None, true) => match first([TRACES_CERTIFICATE, CERTIFICATE]) {
                Some((var, path)) => {
                    let pem = std::fs::read(&path).map_err(|e| {
                        invalid(format!(
                            "the CA certificate file {path:?} ({var}) cannot be read"
                        ))
                        .with_source(e)
                    })?;
                    Tls::Ca(check_pem(&pem, var)?)
                }
                None => Tls::BuiltInRoots,
            },
        };

        let timeout = builder.timeout.unwrap_or_else(|| {
            [TRACES_TIMEOUT, TIMEOUT]
                .into_iter()
                .find_map(|var| env(var)?.trim().parse().ok())
                .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
        });

        Ok(Self {
            protocol,
            endpoint,
            tls,
            timeout,
        })
    }
}

/// The URL spans are sent to for a base URL: `{base}/v1/traces` over HTTP, the base over gRPC
/// (whose path is the service's).
fn with_path(protocol: OtlpProtocol, base: &str) -> String {
    match protocol {
        OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
        OtlpProtocol::Grpc => base.to_owned(),
    }
}

fn parse_protocol(var: &str, value: &str) -> Result<OtlpProtocol> {
    match value.trim() {
        "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
        "grpc" => Ok(OtlpProtocol::Grpc),
        "http/json" => Err(invalid(format!(
            "{var}=http/json is not supported by redisx's OTLP exporter: use http/protobuf or grpc"
        ))),
        other => Err(invalid(format!(
            "{var}={other:?} is not an OTLP protocol: use http/protobuf or grpc"
        ))),
    }
}

/// Checks that `pem` holds at least one certificate and nothing unreadable, and returns it.
fn check_pem(pem: &[u8], what: &str) -> Result<Vec<u8>> {
    let certs = ca_certificates(pem).map_err(|e| {
        invalid(format!(
            "the CA certificates of {what} do not parse as PEM: {e}"
        ))
    })?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "the CA certificates of {what} hold no PEM certificate"
        )));
    }
    Ok(pem.to_vec())
}

fn ca_certificates(
    pem: &[u8],
) -> std::result::Result<Vec<CertificateDer<'static>>, rustls::pki_types::pem::Error> {
    CertificateDer::pem_slice_iter(pem).collect()
}

fn invalid(message: String) -> Error {
    Error::new(ErrorCode::ConfigInvalid, message)
}

fn build_error(e: opentelemetry_otlp::ExporterBuildError) -> Error {
    invalid("the OTLP exporter did not build".to_owned()).with_source(e)
}

/// Builds the exporter `settings` describe and adds it to `provider` behind a batch processor
/// (its own thread, which calls the exporter).
pub(super) fn install(
    provider: TracerProviderBuilder,
    settings: Settings,
) -> Result<TracerProviderBuilder> {
    match settings.protocol {
        OtlpProtocol::HttpProtobuf => Ok(provider.with_batch_exporter(http_exporter(settings)?)),
        OtlpProtocol::Grpc => grpc::install(provider, settings),
    }
}

/// The HTTP/protobuf exporter, with a blocking client: the batch processor's thread calls it
/// outside any Tokio runtime.
fn http_exporter(settings: Settings) -> Result<opentelemetry_otlp::SpanExporter> {
    let tls = client_tls(match &settings.tls {
        Tls::Ca(pem) => Some(pem),
        Tls::Off | Tls::BuiltInRoots => None,
    })?;
    // reqwest's blocking client runs a Tokio runtime on a thread of its own, which must not be
    // made (nor dropped, should the exporter fail to build) inside the caller's runtime: both
    // happen on a short-lived thread, so `build` works from async code too.
    std::thread::Builder::new()
        .name("redisx-otlp-build".into())
        .spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(settings.timeout)
                .tls_backend_preconfigured(tls)
                .build()
                .map_err(|e| {
                    Error::new(
                        ErrorCode::ConfigInvalid,
                        "the OTLP HTTP client did not build",
                    )
                    .with_source(e)
                })?;
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(settings.endpoint)
                .with_timeout(settings.timeout)
                .build()
                .map_err(build_error)
        })
        .map_err(|e| {
            Error::new(
                ErrorCode::OperationFailed,
                "no thread to build the OTLP exporter",
            )
            .with_source(e)
        })?
        .join()
        .map_err(|_| {
            Error::new(
                ErrorCode::OperationFailed,
                "the OTLP exporter panicked while building",
            )
        })?
}

/// The TLS client config of the HTTP exporter: rustls on the process's default crypto
/// provider, else ring, trusting `ca` (PEM) or else the webpki roots. Only used for
/// `https://` endpoints.
fn client_tls(ca: Option<&[u8]>) -> Result<rustls::ClientConfig> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(pem) => {
            let certs = ca_certificates(pem).map_err(|e| {
                invalid(format!("the OTLP CA certificates do not parse as PEM: {e}"))
            })?;
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    invalid("an OTLP CA certificate cannot be used".to_owned()).with_source(e)
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("no TLS version for the OTLP client".to_owned()).with_source(e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // The blocking client speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(not(feature = "otlp-grpc"))]
mod grpc {
    use super::{OtlpProtocol, Result, Settings, TracerProviderBuilder, invalid};

    pub(super) fn install(
        _provider: TracerProviderBuilder,
        settings: Settings,
    ) -> Result<TracerProviderBuilder> {
        Err(invalid(format!(
            "the OTLP protocol {} needs the `otlp-grpc` feature of redisx; enable it, or use {}",
            OtlpProtocol::Grpc,
            OtlpProtocol::HttpProtobuf,
        ))
        .with_context("endpoint", settings.endpoint))
    }
}

#[cfg(feature = "otlp-grpc")]
mod grpc {
    use std::time::Duration;

    use opentelemetry_otlp::WithTonicConfig;
    use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
    use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
    use opentelemetry_sdk::trace::{SpanData, SpanExporter};

    use super::{
        Error, ErrorCode, Result, Settings, Tls, TracerProviderBuilder, WithExportConfig,
        build_error,
    };

    pub(super) fn install(
        provider: TracerProviderBuilder,
        settings: Settings,
    ) -> Result<TracerProviderBuilder> {
        Ok(provider.with_batch_exporter(GrpcExporter::build(settings)?))
    }

    /// The tonic exporter with the Tokio runtime it runs on. tonic needs a runtime for its
    /// connection (a task of its own) and timers, and the batch processor calls the exporter
    /// from a plain thread: every export is run on this runtime, whose one worker keeps the
    /// connection going between exports. The application's runtime is never used, so it may
    /// be single-threaded, blocked or gone, or absent altogether.
    #[derive(Debug)]
    struct GrpcExporter {
        inner: opentelemetry_otlp::SpanExporter,
        runtime: Option<tokio::runtime::Runtime>,
    }

    impl GrpcExporter {
        fn build(settings: Settings) -> Result<Self> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("redisx-otlp-grpc")
                .enable_all()
                .build()
                .map_err(|e| {
                    Error::new(
                        ErrorCode::OperationFailed,
                        "no runtime for the OTLP exporter",
                    )
                    .with_source(e)
                })?;
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(settings.endpoint)
                .with_timeout(settings.timeout);
            match settings.tls {
                Tls::Off => {}
                Tls::BuiltInRoots => {
                    builder = builder.with_tls_config(ClientTlsConfig::new().with_webpki_roots());
                }
                Tls::Ca(pem) => {
                    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
                    builder = builder.with_tls_config(tls);
                }
            }
            // The channel starts its tasks on the runtime entered here.
            let built = {
                let _entered = runtime.enter();
                builder.build()
            };
            match built {
                Ok(inner) => Ok(Self {
                    inner,
                    runtime: Some(runtime),
                }),
                Err(e) => {
                    // Dropping a runtime blocks, which panics inside the caller's runtime.
                    runtime.shutdown_background();
                    Err(build_error(e))
                }
            }
        }
    }

    impl SpanExporter for GrpcExporter {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            // Called from the batch processor's thread, which is no runtime's: it may block.
            match &self.runtime {
                Some(runtime) => runtime.handle().block_on(self.inner.export(batch)),
                None => Err(OTelSdkError::AlreadyShutdown),
            }
        }

        fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
            self.inner.shutdown_with_timeout(timeout)
        }

        fn force_flush(&self) -> OTelSdkResult {
            self.inner.force_flush()
        }

        fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
            self.inner.set_resource(resource);
        }
    }

    impl Drop for GrpcExporter {
        fn drop(&mut self) {
            // Without waiting: the exporter may be dropped where blocking is not allowed.
            if let Some(runtime) = self.runtime.take() {
                runtime.shutdown_background();
            }
        }
    }
}
