//! The rate-limit layer in front of a real tonic service (feature `tonic`), over a loopback
//! socket with tonic's own client: calls within the limit pass, the next one is refused with
//! `RESOURCE_EXHAUSTED` and the service never sees it, and Redis stopped answers `UNAVAILABLE`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use redisx::RedisX;
use redisx::http::{KeyExtractor, RateLimitLayer};
use redisx::rate_limit::{Limit, RateLimitConfig};
use redisx_tests::rate_limit::rl_runtime;
use redisx_tests::{RedisServer, unique_prefix};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

/// A trace service that counts the requests that reach it.
#[derive(Clone, Default)]
struct Counting {
    calls: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl TraceService for Counting {
    async fn export(
        &self,
        _request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Serves `service` behind `layer` on a free loopback port; returns its URL.
async fn serve(service: Counting, layer: RateLimitLayer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let incoming = TcpIncoming::from(listener);
    tokio::spawn(async move {
        Server::builder()
            .layer(layer)
            .serve_with_incoming(TraceServiceServer::new(service), incoming)
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

/// One export call as `tenant` (the `x-tenant` metadata the layer keys on).
async fn export(url: &str, tenant: &'static str) -> Result<(), tonic::Status> {
    let mut client = TraceServiceClient::connect(url.to_owned()).await.unwrap();
    let mut request = tonic::Request::new(ExportTraceServiceRequest::default());
    request
        .metadata_mut()
        .insert("x-tenant", tenant.parse().unwrap());
    client.export(request).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_grpc_call_is_resource_exhausted_and_never_reaches_the_service() {
    let server = RedisServer::start();
    let rx: RedisX = rl_runtime(
        &server.url(),
        &unique_prefix("grpc_rl"),
        RateLimitConfig::default(),
    )
    .await;
    let service = Counting::default();
    let layer = RateLimitLayer::new(Limit::fixed_window(2, Duration::from_secs(60)))
        .runtime(rx.clone())
        .key(KeyExtractor::header("x-tenant".parse().unwrap()));
    let url = serve(service.clone(), layer).await;
    export(&url, "a").await.unwrap();
    export(&url, "a").await.unwrap();
    let status = export(&url, "a").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().starts_with("Rate limit exceeded."),
        "{status:?}"
    );
    assert_eq!(
        service.calls.load(Ordering::SeqCst),
        2,
        "the refused call never ran"
    );

    // Redis gone, failing closed: UNAVAILABLE for a tenant not denied before (tenant `a` is
    // still denied locally), still without running the service.
    let mut server = server;
    server.kill();
    let status = export(&url, "b").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(service.calls.load(Ordering::SeqCst), 2);
    rx.shutdown().await;
}
