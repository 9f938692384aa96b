//! OTLP export (`redisx::telemetry::otlp()`) end to end: a `#[cached]` miss against real Redis,
//! its spans sent over OTLP/HTTP to a receiver in this test, decoded with
//! `opentelemetry-proto`, and checked as a tree.
//!
//! The receiver runs on a thread and Tokio runtime of its own, so it answers whatever the test's
//! runtime is doing (flushing blocks the thread that flushes until the receiver answered).
//! `cargo test -p redisx-tests --test otlp -- --nocapture` prints the span tree it received.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use prost::Message;
use redisx::{CacheConfig, RedisX, cached};
use redisx_tests::{RedisServer, eventually, runtime, unique_prefix};
use tracing_subscriber::layer::SubscriberExt;

/// What the receiver decoded: every export request, in arrival order.
type Received = Arc<Mutex<Vec<ExportTraceServiceRequest>>>;

/// An OTLP/HTTP trace receiver on a free loopback port: accepts `POST /v1/traces` with an
/// `application/x-protobuf` body, answers anything else with 404 / 415.
struct Receiver {
    addr: SocketAddr,
    received: Received,
}

impl Receiver {
    fn start() -> Self {
        let received = Received::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let store = received.clone();
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
                    let store = store.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let store = store.clone();
                            async move { Ok::<_, hyper::Error>(handle(req, &store).await) }
                        });
                        // A connection the exporter drops midway is not the test's concern.
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        let addr = rx.recv().expect("the receiver reports its address");
        Self { addr, received }
    }

    /// The base URL to give the exporter (it appends `/v1/traces`).
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far, with the `service.name` of its resource.
    fn spans(&self) -> Vec<(String, Span)> {
        let received = self.received.lock().unwrap();
        let mut spans = Vec::new();
        for request in received.iter() {
            for rs in &request.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| attr(&r.attributes, "service.name"))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        spans.push((service.clone(), span.clone()));
                    }
                }
            }
        }
        spans
    }

    /// The resource attributes of the first export request.
    fn resource(&self) -> Vec<KeyValue> {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .flat_map(|r| &r.resource_spans)
            .find_map(|rs| rs.resource.as_ref())
            .map(|r| r.attributes.clone())
            .unwrap_or_default()
    }
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

/// The value of attribute `key`, as text.
fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    let kv = attributes.iter().find(|kv| kv.key == key)?;
    Some(match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

fn show_attrs(attributes: &[KeyValue]) -> String {
    attributes
        .iter()
        .map(|kv| {
            format!(
                "{}={}",
                kv.key,
                attr(attributes, &kv.key).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn kind(span: &Span) -> &'static str {
    SpanKind::try_from(span.kind).map_or("?", |k| match k {
        SpanKind::Client => "client",
        SpanKind::Server => "server",
        SpanKind::Internal => "internal",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Unspecified => "unspecified",
    })
}

/// Prints `spans` as trees: roots first (in start order), each child indented under its parent.
fn print_tree(spans: &[(String, Span)]) {
    let mut children: HashMap<&[u8], Vec<&Span>> = HashMap::new();
    let ids: Vec<&[u8]> = spans.iter().map(|(_, s)| s.span_id.as_slice()).collect();
    let mut roots = Vec::new();
    for (_, span) in spans {
        if span.parent_span_id.is_empty() || !ids.contains(&span.parent_span_id.as_slice()) {
            roots.push(span);
        } else {
            children
                .entry(span.parent_span_id.as_slice())
                .or_default()
                .push(span);
        }
    }
    roots.sort_by_key(|s| s.start_time_unix_nano);
    for root in roots {
        walk(root, 0, &children);
    }
}

/// Prints `span` at `depth`, then its children (in start order) one level deeper.
fn walk(span: &Span, depth: usize, children: &HashMap<&[u8], Vec<&Span>>) {
    println!(
        "{}{} [{}] {}",
        "  ".repeat(depth),
        span.name,
        kind(span),
        show_attrs(&span.attributes)
    );
    let mut kids = children
        .get(span.span_id.as_slice())
        .cloned()
        .unwrap_or_default();
    kids.sort_by_key(|s| s.start_time_unix_nano);
    for kid in kids {
        walk(kid, depth + 1, children);
    }
}

static RT: OnceLock<RedisX> = OnceLock::new();

#[cached(key = "user:{id}", ttl = "1m", runtime = RT.get().expect("set by the test"))]
async fn user(id: u64) -> Result<String, String> {
    Ok(format!("user-{id}"))
}

#[tokio::test]
async fn a_cached_miss_exports_cache_get_with_the_command_spans_as_children() {
    let receiver = Receiver::start();
    let (layer, guard) = redisx::telemetry::otlp()
        .endpoint(receiver.url())
        .service_name("redisx-otlp-test")
        .resource_attribute("deployment.environment.name", "test")
        .build()
        .unwrap();
    // Scoped to this test's thread (a current-thread runtime): nothing global is installed.
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));

    let server = RedisServer::start();
    let rx = runtime(
        &server.url(),
        &unique_prefix("otlp"),
        CacheConfig::default(),
    )
    .await;
    assert!(RT.set(rx).is_ok());
    let rx = RT.get().unwrap();
    assert_eq!(user(7).await.unwrap(), "user-7");
    // Flushes the exporter (the spans are otherwise sent every few seconds, in batches).
    rx.shutdown().await;

    // A cache.get span with a command span under it, once the receiver has them.
    let has_tree = || {
        let spans = receiver.spans();
        spans.iter().any(|(_, parent)| {
            parent.name == "cache.get"
                && spans
                    .iter()
                    .any(|(_, child)| child.parent_span_id == parent.span_id)
        })
    };
    let arrived = eventually(Duration::from_secs(10), Duration::from_millis(50), || {
        std::future::ready(has_tree())
    })
    .await;
    let spans = receiver.spans();
    println!("resource: {}", show_attrs(&receiver.resource()));
    print_tree(&spans);
    assert!(arrived, "no cache.get span with children arrived");

    let resource = receiver.resource();
    assert_eq!(
        attr(&resource, "service.name").as_deref(),
        Some("redisx-otlp-test")
    );
    assert_eq!(
        attr(&resource, "deployment.environment.name").as_deref(),
        Some("test")
    );
    assert!(
        spans
            .iter()
            .all(|(service, _)| service == "redisx-otlp-test")
    );

    let (_, get) = spans
        .iter()
        .find(|(_, s)| {
            s.name == "cache.get" && spans.iter().any(|(_, c)| c.parent_span_id == s.span_id)
        })
        .unwrap();
    let commands: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.parent_span_id == get.span_id)
        .collect();
    assert!(!commands.is_empty());
    for command in &commands {
        assert_eq!(command.trace_id, get.trace_id, "one trace");
        assert_eq!(
            attr(&command.attributes, "db.system.name").as_deref(),
            Some("redis"),
            "{}",
            command.name
        );
        let operation = attr(&command.attributes, "db.operation.name")
            .unwrap_or_else(|| panic!("{} has no db.operation.name", command.name));
        // `otel.name` names the span after its command.
        assert_eq!(command.name, operation);
        assert_eq!(kind(command), "client", "{}", command.name);
    }
    guard.shutdown().unwrap();
}

#[test]
fn build_refuses_an_https_endpoint_and_a_sampling_ratio_out_of_range() {
    let refused = |builder: redisx::telemetry::OtlpBuilder| match builder
        .build::<tracing_subscriber::Registry>(
    ) {
        Ok(_) => panic!("built"),
        Err(e) => e,
    };
    let e = refused(redisx::telemetry::otlp().endpoint("https://collector:4318"));
    assert_eq!(e.code(), redisx::ErrorCode::ConfigInvalid);
    assert!(e.to_string().contains("TLS"), "{e}");
    let e = refused(
        redisx::telemetry::otlp()
            .endpoint("http://127.0.0.1:4318")
            .sampling_ratio(1.5),
    );
    assert_eq!(e.code(), redisx::ErrorCode::ConfigInvalid);
}
