//! What the OTLP tests (`tests/tests/otlp.rs` over HTTP, `tests/tests/otlp_grpc.rs` over gRPC)
//! share: the exporter settings they start from, the `#[cached]` miss they trace, the export
//! requests their receivers decoded, and the checks of the span tree those requests carry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use redisx::telemetry::OtlpBuilder;
use redisx::{CacheConfig, RedisX, cached};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::Registry;

use crate::{RedisServer, eventually, runtime, unique_prefix};

/// The `service.name` of every test exporter.
pub const SERVICE: &str = "redisx-otlp-test";

/// Every export request a receiver decoded, in arrival order.
pub type Received = Arc<Mutex<Vec<ExportTraceServiceRequest>>>;

/// An exporter to `endpoint`, with the service name and the resource attribute
/// [`expect_cache_get_tree`] looks for.
pub fn exporter(endpoint: &str) -> OtlpBuilder {
    redisx::telemetry::otlp()
        .endpoint(endpoint)
        .service_name(SERVICE)
        .resource_attribute("deployment.environment.name", "test")
}

/// A service whose cached method runs on the runtime it holds.
struct Users {
    rx: RedisX,
}

impl Users {
    #[cached(key = "user:{id}", ttl = "1m", runtime = &self.rx)]
    async fn user(&self, id: u64) -> Result<String, String> {
        Ok(format!("user-{id}"))
    }
}

/// Runs one `#[cached]` miss against a fresh Redis with `layer` in this thread's subscriber
/// (nothing global is installed), then shuts the runtime down, which flushes the exporter.
/// Call it from a current-thread runtime, so that every span is made on this thread.
///
/// # Panics
/// When the runtime does not build or the cached call fails.
pub async fn cached_miss<L>(layer: L)
where
    L: Layer<Registry> + Send + Sync + 'static,
{
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let server = RedisServer::start();
    let rx = runtime(
        &server.url(),
        &unique_prefix("otlp"),
        CacheConfig::default(),
    )
    .await;
    let users = Users { rx };
    assert_eq!(users.user(7).await.unwrap(), "user-7");
    // Flushes the exporter (the spans are otherwise sent every few seconds, in batches).
    users.rx.shutdown().await;
}

/// Waits until `received` holds a `cache.get` span with children, prints the resource and the
/// span tree (seen with `--nocapture`), then checks the resource and that the children are the
/// command spans of the same trace, named after their command, with the database attributes.
///
/// # Panics
/// When no such tree arrives within 10 seconds, or a check fails.
pub async fn expect_cache_get_tree(received: &Received) {
    let has_tree = || {
        let spans = spans(received);
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
    let spans = spans(received);
    let resource = resource(received);
    println!("resource: {}", show_attrs(&resource));
    print_tree(&spans);
    assert!(arrived, "no cache.get span with children arrived");

    assert_eq!(attr(&resource, "service.name").as_deref(), Some(SERVICE));
    assert_eq!(
        attr(&resource, "deployment.environment.name").as_deref(),
        Some("test")
    );
    assert!(spans.iter().all(|(service, _)| service == SERVICE));

    let (_, get) = spans
        .iter()
        .find(|(_, s)| {
            s.name == "cache.get" && spans.iter().any(|(_, c)| c.parent_span_id == s.span_id)
        })
        .expect("checked above");
    let commands: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.parent_span_id == get.span_id)
        .collect();
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
}

fn lock(received: &Received) -> std::sync::MutexGuard<'_, Vec<ExportTraceServiceRequest>> {
    received.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every span received so far, with the `service.name` of its resource.
pub fn spans(received: &Received) -> Vec<(String, Span)> {
    let mut spans = Vec::new();
    for request in lock(received).iter() {
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
pub fn resource(received: &Received) -> Vec<KeyValue> {
    lock(received)
        .iter()
        .flat_map(|r| &r.resource_spans)
        .find_map(|rs| rs.resource.as_ref())
        .map(|r| r.attributes.clone())
        .unwrap_or_default()
}

/// The value of attribute `key`, as text.
pub fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    let kv = attributes.iter().find(|kv| kv.key == key)?;
    Some(match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

/// `key=value` for every attribute, space-separated.
pub fn show_attrs(attributes: &[KeyValue]) -> String {
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

/// The span's kind, as `otel.kind` names it.
pub fn kind(span: &Span) -> &'static str {
    SpanKind::try_from(span.kind).map_or("?", |k| match k {
        SpanKind::Client => "client",
        SpanKind::Server => "server",
        SpanKind::Internal => "internal",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Unspecified => "unspecified",
    })
}

/// Prints `spans` as trees: roots first (in start order), each child indented under its parent,
/// with their attributes but for the source locations and threads `tracing` adds to every span
/// (`code.*`, `thread.*`).
pub fn print_tree(spans: &[(String, Span)]) {
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

fn without_location(attributes: &[KeyValue]) -> Vec<KeyValue> {
    attributes
        .iter()
        .filter(|kv| !kv.key.starts_with("code.") && !kv.key.starts_with("thread."))
        .cloned()
        .collect()
}

/// Prints `span` at `depth`, then its children (in start order) one level deeper.
fn walk(span: &Span, depth: usize, children: &HashMap<&[u8], Vec<&Span>>) {
    println!(
        "{}{} [{}] {}",
        "  ".repeat(depth),
        span.name,
        kind(span),
        show_attrs(&without_location(&span.attributes))
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
