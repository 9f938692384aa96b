//! OTLP/HTTP export (`redisx::telemetry::otlp()`) end to end: a `#[cached]` miss against real
//! Redis, its spans sent to a receiver in this test (plain `http://`, then `https://` with a
//! private CA made at test time), decoded with `opentelemetry-proto` and checked as a tree by
//! the helpers of `redisx_tests::otlp`, which `otlp_grpc.rs` shares.
//!
//! The receiver runs on a thread and Tokio runtime of its own, so it answers whatever the test's
//! runtime is doing (flushing blocks the thread that flushes until the receiver answered).
//! `cargo test -p redisx-tests --test otlp -- --nocapture` prints the span tree it received.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use redisx::ErrorCode;
use redisx_tests::eventually;
use redisx_tests::otlp::{Received, cached_miss, expect_cache_get_tree, exporter};
use redisx_tests::tls::{TempDir, make_certificates};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types::pem::PemObject};
use tracing_subscriber::layer::SubscriberExt;

/// An OTLP/HTTP trace receiver on a free loopback port, over TLS when given an acceptor:
/// accepts `POST /v1/traces` with an `application/x-protobuf` body, answers anything else with
/// 404 / 415.
struct Receiver {
    addr: SocketAddr,
    tls: bool,
    received: Received,
    /// TLS handshakes that failed (the client refused the certificate, or spoke plain text).
    handshake_failures: Arc<AtomicUsize>,
}

impl Receiver {
    fn start(tls: Option<TlsAcceptor>) -> Self {
        let received = Received::default();
        let handshake_failures = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let (store, failures) = (received.clone(), handshake_failures.clone());
        let secure = tls.is_some();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the receiver's runtime builds");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let (store, failures, tls) = (store.clone(), failures.clone(), tls.clone());
                    tokio::spawn(async move {
                        match tls {
                            None => serve(stream, store).await,
                            Some(acceptor) => match acceptor.accept(stream).await {
                                Ok(stream) => serve(stream, store).await,
                                Err(_) => {
                                    failures.fetch_add(1, Ordering::SeqCst);
                                }
                            },
                        }
                    });
                }
            });
        });
        let addr = rx.recv().expect("the receiver reports its address");
        Self {
            addr,
            tls: secure,
            received,
            handshake_failures,
        }
    }

    /// The base URL to give the exporter (it appends `/v1/traces`).
    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

/// Serves HTTP/1.1 on `io` until the exporter closes it.
async fn serve<IO>(io: IO, store: Received)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let store = store.clone();
        async move { Ok::<_, hyper::Error>(handle(req, &store).await) }
    });
    // A connection the exporter drops midway is not the test's concern.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await;
}

async fn handle(req: Request<Incoming>, store: &Received) -> Response<Full<Bytes>> {
    let status = |code| {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = code;
        response
    };
    if req.method() != hyper::Method::POST || req.uri().path() != "/v1/traces" {
        return status(StatusCode::NOT_FOUND);
    }
    let protobuf = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/x-protobuf");
    if !protobuf {
        return status(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let Ok(body) = req.into_body().collect().await else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Ok(request) = ExportTraceServiceRequest::decode(body.to_bytes()) else {
        return status(StatusCode::BAD_REQUEST);
    };
    store.lock().unwrap().push(request);
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    Response::builder()
        .header(hyper::header::CONTENT_TYPE, "application/x-protobuf")
        .body(Full::new(Bytes::from(answer)))
        .unwrap()
}

/// A TLS acceptor serving `server.crt` (signed by the private CA in `dir`), on ring.
fn acceptor(dir: &TempDir) -> TlsAcceptor {
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(dir.path("server.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.path("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

#[tokio::test]
async fn a_cached_miss_exports_cache_get_with_the_command_spans_as_children() {
    let receiver = Receiver::start(None);
    let (layer, guard) = exporter(&receiver.url()).build().unwrap();
    cached_miss(layer).await;
    expect_cache_get_tree(&receiver.received).await;
    guard.shutdown().unwrap();
}

/// Over `https://`, trusting the private CA that signed the receiver's certificate.
#[tokio::test]
async fn an_https_collector_signed_by_a_private_ca_receives_the_tree() {
    let dir = TempDir::new("otlp_https");
    make_certificates(&dir);
    let receiver = Receiver::start(Some(acceptor(&dir)));
    let (layer, guard) = exporter(&receiver.url())
        .tls_ca_cert(dir.read("ca.crt"))
        .build()
        .unwrap();
    cached_miss(layer).await;
    expect_cache_get_tree(&receiver.received).await;
    guard.shutdown().unwrap();
    assert_eq!(receiver.handshake_failures.load(Ordering::SeqCst), 0);
}

/// Without the private CA, the built-in roots do not trust the receiver: the handshake fails
/// and nothing is delivered.
#[tokio::test]
async fn an_https_collector_is_refused_when_its_ca_is_not_trusted() {
    let dir = TempDir::new("otlp_untrusted");
    make_certificates(&dir);
    let receiver = Receiver::start(Some(acceptor(&dir)));
    let (layer, guard) = exporter(&receiver.url())
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info_span!("probe").in_scope(|| {});
    });
    let flushed = guard.flush();
    assert!(flushed.is_err(), "the export succeeded: {flushed:?}");
    assert!(receiver.received.lock().unwrap().is_empty());
    // The exporter did reach the receiver, and gave up in the handshake.
    let refused = eventually(Duration::from_secs(2), Duration::from_millis(20), || {
        std::future::ready(receiver.handshake_failures.load(Ordering::SeqCst) > 0)
    })
    .await;
    assert!(refused, "no handshake failed at the receiver");
}

#[test]
fn build_refuses_a_non_http_endpoint_and_a_sampling_ratio_out_of_range() {
    let refused = |builder: redisx::telemetry::OtlpBuilder| match builder
        .build::<tracing_subscriber::Registry>(
    ) {
        Ok(_) => panic!("built"),
        Err(e) => e,
    };
    let e = refused(redisx::telemetry::otlp().endpoint("ftp://collector:4318"));
    assert_eq!(e.code(), ErrorCode::ConfigInvalid);
    assert!(e.to_string().contains("https://"), "{e}");
    let e = refused(
        redisx::telemetry::otlp()
            .endpoint("http://127.0.0.1:4318")
            .sampling_ratio(1.5),
    );
    assert_eq!(e.code(), ErrorCode::ConfigInvalid);
}
