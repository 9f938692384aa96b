//! Trace context across a stream: the consumer's `stream.process` span continues the trace of
//! the span that published the message (its W3C `traceparent` field, written here by hand as a
//! producer in another language would), as a consumer-kind child of the publishing span; a
//! message without a trace context, or with a malformed one, starts a trace of its own.
//!
//! The spans go through `tracing-opentelemetry` into an OpenTelemetry SDK provider whose span
//! processor records every finished span. Current-thread runtimes, so that the thread's
//! subscriber sees every span the consumer makes. Each test runs on a standalone server and on
//! the 3-master cluster.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redisx::Error;
use redisx::streams::{ConsumerOptions, Message, StreamsConfig};
use redisx::telemetry::opentelemetry::trace::{
    SpanKind, TraceContextExt as _, TraceId, TracerProvider as _,
};
use redisx::telemetry::opentelemetry::{Context, Value};
use redisx::telemetry::opentelemetry_sdk::error::OTelSdkResult;
use redisx::telemetry::opentelemetry_sdk::trace::{
    SdkTracerProvider, Span, SpanData, SpanProcessor,
};
use redisx::telemetry::tracing_opentelemetry::{self, OpenTelemetrySpanExt as _};
use redisx::testing::{Deployment, Topology};
use redisx_tests::streams::{Job, Log, add_fields, create_group, json, keys, stream_runtime};
use redisx_tests::{eventually, unique_prefix};
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;

const STREAM: &str = "traced";
const GROUP: &str = "g";

/// Records every finished span.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<SpanData>>>);

impl SpanProcessor for Recorder {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

impl Recorder {
    fn named(&self, name: &str) -> Vec<SpanData> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }
}

/// Installs, for this thread, a subscriber sending every span to an SDK provider recording
/// them.
fn tracing_to(recorder: &Recorder) -> (tracing::subscriber::DefaultGuard, SdkTracerProvider) {
    let provider = SdkTracerProvider::builder()
        .with_span_processor(recorder.clone())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("stream-trace-test"));
    let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    (guard, provider)
}

/// How the test publishes its one message.
enum Publish<'a> {
    /// Raw `XADD` of `data` and these fields, as a producer in another language would.
    Raw(&'a [(&'a str, &'a [u8])]),
    /// `rx.streams().publish` inside this span.
    Producer(tracing::Span),
}

/// Publishes one message, runs a consumer until it handled it, and returns the entry's id, the
/// trace id the handler ran under (its closure and its future alike), and the recorded
/// `stream.process` span. On a deployment of `topology`.
async fn consume_one(
    topology: Topology,
    test: &str,
    recorder: &Recorder,
    publish: Publish<'_>,
) -> (String, TraceId, SpanData) {
    let deployment = Deployment::start(topology);
    let rx = stream_runtime(
        &deployment.url(),
        &unique_prefix(test),
        StreamsConfig::default(),
    )
    .await;
    let k = keys(&rx, STREAM);
    let mut raw = deployment.raw_connection().await;
    create_group(&mut raw, &k.stream, GROUP, "0").await;
    let id = match publish {
        Publish::Raw(fields) => {
            let data = json(&Job { n: 1 });
            let mut all: Vec<(&str, &[u8])> = vec![("data", &data)];
            all.extend_from_slice(fields);
            add_fields(&mut raw, &k.stream, &all).await
        }
        Publish::Producer(span) => rx
            .streams()
            .publish(STREAM, &Job { n: 1 })
            .instrument(span)
            .await
            .unwrap(),
    };
    let seen: Log<TraceId> = Log::new();
    let handle = {
        let seen = seen.clone();
        let opts = ConsumerOptions::new(GROUP)
            .block(Duration::from_millis(200))
            .start_id("0");
        rx.streams()
            .consumer(STREAM, opts, move |_m: Message<Job>| {
                // The handler's synchronous part, then its future.
                seen.push(current_trace());
                let seen = seen.clone();
                async move {
                    seen.push(current_trace());
                    Ok::<_, Error>(())
                }
            })
            .start()
            .await
            .unwrap()
    };
    assert!(seen.wait_len(2).await, "the message was handled");
    let ended = eventually(Duration::from_secs(5), Duration::from_millis(10), || {
        let r = recorder.clone();
        async move { !r.named("stream.process").is_empty() }
    })
    .await;
    assert!(ended, "the stream.process span ended");
    handle.stop().await;
    rx.shutdown().await;
    let spans = recorder.named("stream.process");
    assert_eq!(spans.len(), 1, "one delivery, one span");
    let seen = seen.items();
    assert_eq!(
        seen[0], seen[1],
        "the handler's closure and future run in one span"
    );
    (id, seen[0], spans[0].clone())
}

/// The trace id of the current span.
fn current_trace() -> TraceId {
    tracing::Span::current()
        .context()
        .span()
        .span_context()
        .trace_id()
}

fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

async fn the_process_span_continues_the_publishing_trace(topology: Topology) {
    let recorder = Recorder::default();
    let (_guard, _provider) = tracing_to(&recorder);
    let publish = tracing::info_span!("publish_order");
    let parent = publish.context().span().span_context().clone();
    assert!(parent.is_valid(), "the publishing span has a trace context");
    let traceparent = format!("00-{}-{}-01", parent.trace_id(), parent.span_id());
    let (id, in_handler, process) = consume_one(
        topology,
        "stream_trace",
        &recorder,
        Publish::Raw(&[
            ("traceparent", traceparent.as_bytes()),
            ("tracestate", b"vendor=abc"),
        ]),
    )
    .await;
    drop(publish);

    assert_eq!(
        process.span_context.trace_id(),
        parent.trace_id(),
        "the publisher's trace"
    );
    assert_eq!(in_handler, parent.trace_id(), "the handler runs inside it");
    assert_eq!(
        process.parent_span_id,
        parent.span_id(),
        "a child of the publishing span"
    );
    assert!(process.parent_span_is_remote);
    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert_eq!(process.span_context.trace_state().header(), "vendor=abc");
    assert_eq!(
        attribute(&process, "messaging.message.id"),
        Some(Value::from(id))
    );
    assert_eq!(
        attribute(&process, "messaging.destination.name"),
        Some(Value::from(STREAM))
    );
    let published = recorder.named("publish_order");
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].span_context.trace_id(), parent.trace_id());
}

redisx_tests::on_topologies!(the_process_span_continues_the_publishing_trace);

async fn without_a_valid_trace_context_the_process_span_starts_a_trace(topology: Topology) {
    for (test, fields) in [
        ("stream_trace_none", Vec::new()),
        (
            "stream_trace_bad",
            vec![("traceparent", &b"00-not-a-trace-01"[..])],
        ),
        (
            "stream_trace_zero",
            vec![(
                "traceparent",
                &b"00-00000000000000000000000000000000-0000000000000000-01"[..],
            )],
        ),
    ] {
        let recorder = Recorder::default();
        let (_guard, _provider) = tracing_to(&recorder);
        let (_, in_handler, process) =
            consume_one(topology, test, &recorder, Publish::Raw(&fields)).await;
        assert!(process.span_context.is_valid(), "{test}");
        assert_eq!(in_handler, process.span_context.trace_id(), "{test}");
        assert_eq!(
            process.parent_span_id,
            redisx::telemetry::opentelemetry::trace::SpanId::INVALID,
            "{test}: a root span"
        );
    }
}

redisx_tests::on_topologies!(without_a_valid_trace_context_the_process_span_starts_a_trace);

async fn publishing_inside_a_span_carries_its_trace_to_the_consumer(topology: Topology) {
    let recorder = Recorder::default();
    let (_guard, _provider) = tracing_to(&recorder);
    let request = tracing::info_span!("handle_request");
    let trace = request.context().span().span_context().trace_id();
    let (_, in_handler, process) = consume_one(
        topology,
        "stream_trace_producer",
        &recorder,
        Publish::Producer(request),
    )
    .await;
    assert_eq!(
        process.span_context.trace_id(),
        trace,
        "the request's trace"
    );
    assert_eq!(in_handler, trace);
    let publish = recorder.named("stream.publish");
    assert_eq!(publish.len(), 1, "the producer's span");
    assert_eq!(publish[0].span_context.trace_id(), trace);
    assert_eq!(
        process.parent_span_id,
        publish[0].span_context.span_id(),
        "a child of the publish span"
    );
    assert_eq!(process.span_kind, SpanKind::Consumer);
}

redisx_tests::on_topologies!(publishing_inside_a_span_carries_its_trace_to_the_consumer);
