//! OTLP/gRPC export (`OtlpProtocol::Grpc`, feature `otlp-grpc`) end to end: a `#[cached]` miss
//! against real Redis, its spans sent to a tonic `TraceService` in this test (plain, then over
//! TLS with a private CA made at test time), and checked as a tree by the helpers of
//! `redisx_tests::otlp`, which `otlp.rs` shares.
//!
//! The exporter brings its own Tokio runtime: one test builds it outside any runtime, the other
//! inside the test's current-thread runtime. The receiver runs on a thread and runtime of its
//! own. `cargo test -p redisx-tests --test otlp_grpc -- --nocapture` prints the span tree.

use std::net::SocketAddr;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use redisx::telemetry::OtlpProtocol;
use redisx_tests::otlp::{Received, cached_miss, expect_cache_get_tree, exporter};
use redisx_tests::tls::{TempDir, make_certificates};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

/// The collector's trace service: keeps every request it is sent.
struct Collector {
    received: Received,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.received.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver on a free loopback port, over TLS when given an identity.
struct Receiver {
    addr: SocketAddr,
    tls: bool,
    received: Received,
}

impl Receiver {
    fn start(identity: Option<Identity>) -> Self {
        let received = Received::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let store = received.clone();
        let tls = identity.is_some();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the receiver's runtime builds");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let mut server = Server::builder();
                if let Some(identity) = identity {
                    server = server
                        .tls_config(ServerTlsConfig::new().identity(identity))
                        .expect("the receiver's TLS config");
                }
                server
                    .serve_with_incoming(
                        TraceServiceServer::new(Collector { received: store }),
                        TcpIncoming::from(listener),
                    )
                    .await
                    .expect("the receiver serves");
            });
        });
        let addr = rx.recv().expect("the receiver reports its address");
        Self {
            addr,
            tls,
            received,
        }
    }

    /// The endpoint to give the exporter.
    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

/// Built on a plain thread, outside any Tokio runtime; the cached call then runs on a
/// current-thread runtime the exporter knows nothing of.
#[test]
fn a_cached_miss_exports_cache_get_over_grpc_built_outside_any_runtime() {
    let receiver = Receiver::start(None);
    let (layer, guard) = exporter(&receiver.url())
        .protocol(OtlpProtocol::Grpc)
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        cached_miss(layer).await;
        expect_cache_get_tree(&receiver.received).await;
    });
    guard.shutdown().unwrap();
}

/// Built inside the test's current-thread runtime, to a collector over TLS whose certificate
/// a private CA signed.
#[tokio::test]
async fn a_grpc_collector_over_tls_signed_by_a_private_ca_receives_the_tree() {
    let dir = TempDir::new("otlp_grpc_tls");
    make_certificates(&dir);
    let identity = Identity::from_pem(dir.read("server.crt"), dir.read("server.key"));
    let receiver = Receiver::start(Some(identity));
    let (layer, guard) = exporter(&receiver.url())
        .protocol(OtlpProtocol::Grpc)
        .tls_ca_cert(dir.read("ca.crt"))
        .build()
        .unwrap();
    cached_miss(layer).await;
    expect_cache_get_tree(&receiver.received).await;
    guard.shutdown().unwrap();
}
