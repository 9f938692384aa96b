//! Connections end to end against real `redis-server` processes: the command metrics (in the
//! runtime's registry or the user's), and the `redis.command` tracing spans.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use redisx::{Error, ErrorCode, RedisX};
use redisx_tests::connections::{POLL, build, config, fast_reconnect};
use redisx_tests::spans::{Capture, Seen};
use redisx_tests::{RedisServer, eventually, unique_prefix};
use tracing_subscriber::layer::SubscriberExt as _;

/// The value of the sample line `name` (metric name with labels, exactly as rendered).
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
}

#[tokio::test]
async fn commands_durations_and_errors_are_counted() {
    let server = RedisServer::start();
    let rx = build(config(&server.url()), "metrics").await.unwrap();
    let key = format!("{}k", unique_prefix("metrics_key"));
    let () = rx
        .client()
        .query(redis::cmd("SET").arg(&key).arg("text"))
        .await
        .unwrap();
    for _ in 0..3 {
        let _: Option<String> = rx
            .client()
            .query(redis::cmd("GET").arg(&key))
            .await
            .unwrap();
    }
    let text = rx.metrics_text();
    assert_eq!(
        sample(
            &text,
            r#"redisx_commands_total{command="GET",client="default",status="ok"}"#
        ),
        Some(3.0),
        "{text}"
    );
    let buckets: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("redisx_command_duration_seconds_bucket{")
                && l.contains(r#"command="GET""#)
                && l.contains(r#"client="default""#)
        })
        .collect();
    assert!(buckets.len() > 10, "duration buckets of GET: {buckets:?}");
    assert!(
        buckets
            .iter()
            .any(|l| l.contains(r#"le="+Inf""#) && l.ends_with(" 3")),
        "the +Inf bucket counts every GET: {buckets:?}"
    );
    assert!(
        !text.contains("redisx_errors_total{"),
        "no error yet:\n{text}"
    );

    // A failing command: INCR on a string.
    let err = rx
        .client()
        .query::<i64>(redis::cmd("INCR").arg(&key))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::OperationFailed, "{err}");
    assert_eq!(err.context_value("client"), Some("default"));
    assert_eq!(err.context_value("command"), Some("INCR"));
    let text = rx.metrics_text();
    assert_eq!(
        sample(
            &text,
            r#"redisx_commands_total{command="INCR",client="default",status="error"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"redisx_errors_total{client="default",error_type="OP_FAILED"}"#
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_user_registry_receives_the_metrics() {
    let server = RedisServer::start();
    let registry = Arc::new(Mutex::new(Registry::default()));
    let app_requests = Counter::<u64>::default();
    registry
        .lock()
        .unwrap()
        .register("app_requests", "Requests served", app_requests.clone());
    app_requests.inc();
    let rx = RedisX::builder()
        .client("default", config(&server.url()))
        .key_prefix(unique_prefix("user_registry"))
        .registry(registry.clone())
        .build()
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&rx.registry(), &registry));
    let _: Option<String> = rx
        .client()
        .query(redis::cmd("GET").arg("nothing"))
        .await
        .unwrap();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(
        &mut text,
        &registry.lock().unwrap_or_else(PoisonError::into_inner),
    )
    .unwrap();
    assert_eq!(sample(&text, "app_requests_total"), Some(1.0), "{text}");
    assert_eq!(
        sample(
            &text,
            r#"redisx_commands_total{command="GET",client="default",status="ok"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.contains("redisx_command_duration_seconds_bucket{"),
        "{text}"
    );
    // metrics_text renders that same registry.
    let rendered = rx.metrics_text();
    assert!(rendered.contains("app_requests_total 1"), "{rendered}");
}

// ---------------------------------------------------------------------------------- spans

/// The OpenTelemetry conventions of the spans: a failed command's status and its database as
/// a string; no key on a cache span unless `record_keys(true)`.
fn assert_conventions(failed_command: &Seen, seen: &[Seen]) {
    let incr = failed_command;
    assert_eq!(
        incr.fields.get("otel.status_code").map(String::as_str),
        Some("ERROR"),
        "a failed command's span says so to OpenTelemetry: {incr:?}"
    );
    assert_eq!(
        incr.fields.get("db.namespace").map(String::as_str),
        Some("0"),
        "the database is recorded as a string: {incr:?}"
    );
    let gets: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.is_span && s.name == "cache.get")
        .collect();
    assert!(!gets.is_empty(), "no cache.get span");
    assert!(
        gets.iter().all(|s| !s.fields.contains_key("cache.key")),
        "keys are not recorded unless record_keys(true): {gets:?}"
    );
}

// Current-thread runtime: the subscriber is the thread's default, and every task (the
// reconnect loop too) runs on this thread.
#[tokio::test(flavor = "current_thread")]
async fn command_spans_carry_otel_attributes_and_never_the_password() {
    let password = "span-Secret-pw-4711";
    let wrong = "span-Wrong-pw-0815";
    let mut server = RedisServer::builder()
        .acl_user("spanuser", password, ["~*", "&*", "+@all"])
        .start();
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));

    let err = build(
        config(&server.url_with_auth("spanuser", wrong)),
        "spans_wrong",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConnectionAuthFailed, "{err}");

    let rx = build(
        config(&server.url_with_auth("spanuser", password))
            .reconnect(fast_reconnect())
            .command_timeout(Duration::from_millis(500)),
        "spans",
    )
    .await
    .unwrap();
    let () = rx
        .client()
        .query(redis::cmd("SET").arg("s").arg("v"))
        .await
        .unwrap();
    let _: Option<String> = rx.client().query(redis::cmd("GET").arg("s")).await.unwrap();
    let _ = rx.client().query::<i64>(redis::cmd("INCR").arg("s")).await;
    let _ = rx
        .cache()
        .get_or_load("c", None, || async { Ok::<_, Error>(1u8) })
        .await;
    // Connection loss and reconnect log too: none of it may show the password.
    server.restart();
    let back = eventually(Duration::from_secs(10), POLL, || async {
        rx.client().ping().await.is_ok()
    })
    .await;
    assert!(back, "no reconnect after the restart");
    let _: Option<String> = rx.client().query(redis::cmd("GET").arg("s")).await.unwrap();

    let seen = capture.seen();
    let commands: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.is_span && s.name == "redis.command")
        .collect();
    let ops: Vec<&str> = commands
        .iter()
        .filter_map(|s| s.fields.get("db.operation.name").map(String::as_str))
        .collect();
    for op in ["SET", "GET", "INCR", "PING"] {
        assert!(ops.contains(&op), "no redis.command span for {op}: {ops:?}");
    }
    for span in &commands {
        assert_eq!(
            span.fields.get("db.system.name").map(String::as_str),
            Some("redis"),
            "{span:?}"
        );
        assert_eq!(
            span.fields.get("server.address").map(String::as_str),
            Some("127.0.0.1"),
            "{span:?}"
        );
        assert!(span.fields.contains_key("db.operation.name"), "{span:?}");
    }
    let incr = commands
        .iter()
        .find(|s| s.fields.get("db.operation.name").map(String::as_str) == Some("INCR"))
        .unwrap();
    assert_eq!(
        incr.fields.get("error.type").map(String::as_str),
        Some("OP_FAILED"),
        "a failed command records its error type: {incr:?}"
    );
    assert_conventions(incr, &seen);
    assert!(
        seen.iter().any(|s| !s.is_span),
        "the connection loss should have logged events"
    );
    for s in &seen {
        for (name, value) in &s.fields {
            assert!(
                !value.contains(password) && !value.contains(wrong),
                "the password shows in field `{name}` of `{}`: {value}",
                s.name
            );
        }
    }
}

/// With `record_keys(true)`, the cache's spans carry the key they work on.
#[tokio::test(flavor = "current_thread")]
async fn record_keys_puts_the_key_on_cache_spans() {
    let server = RedisServer::start();
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let rx = RedisX::builder()
        .client("default", config(&server.url()))
        .key_prefix(unique_prefix("record_keys"))
        .record_keys(true)
        .build()
        .await
        .unwrap();
    let v = rx
        .cache()
        .get_or_load("user:7", None, || async { Ok::<_, Error>(7u8) })
        .await
        .unwrap();
    assert_eq!(v, 7);
    let seen = capture.seen();
    let get = seen
        .iter()
        .find(|s| s.is_span && s.name == "cache.get")
        .expect("a cache.get span");
    assert_eq!(
        get.fields.get("cache.key").map(String::as_str),
        Some("user:7"),
        "{get:?}"
    );
}

/// A delete or an invalidation that Redis fails marks its `cache.invalidate` span failed, as
/// a failed command's span is.
#[tokio::test(flavor = "current_thread")]
async fn a_failed_invalidation_marks_its_span() {
    let mut server = RedisServer::start();
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let rx = build(
        config(&server.url()).command_timeout(Duration::from_millis(500)),
        "invalidate_span",
    )
    .await
    .unwrap();
    rx.cache().set("k", &1u8, None).await.unwrap();
    server.kill();
    let err = rx.cache().delete("k").await.unwrap_err();
    let seen = capture.seen();
    let span = seen
        .iter()
        .find(|s| s.is_span && s.name == "cache.invalidate")
        .expect("a cache.invalidate span");
    assert_eq!(
        span.fields.get("otel.status_code").map(String::as_str),
        Some("ERROR"),
        "{span:?}"
    );
    assert_eq!(
        span.fields.get("error.type").map(String::as_str),
        Some(err.code().as_str()),
        "{span:?}"
    );
}
