//! Connections end to end against real `redis-server` processes: URL parsing (`/db`, `?db=`,
//! `user:password@` with an ACL user), authentication and connect failures with clear errors
//! that never repeat the password, `lazy` clients, the command timeout, reconnecting after a
//! restart, named clients, the command metrics (in the runtime's registry or the user's), and
//! the `redis.command` tracing spans.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use redisx::{
    CacheConfig, ConnectionConfig, DriverKind, Error, ErrorCode, ReconnectPolicy, RedisX,
};
use redisx_tests::spans::{Capture, Seen};
use redisx_tests::{RedisServer, eventually, free_port, raw_connection, unique_prefix};
use tracing_subscriber::layer::SubscriberExt as _;

const DRIVERS: [DriverKind; 2] = [DriverKind::Multiplexed, DriverKind::Pool { max_size: 4 }];

/// A reconnect policy short enough for tests: 50 ms doubling to 200 ms.
fn fast_reconnect() -> ReconnectPolicy {
    ReconnectPolicy::default()
        .initial(Duration::from_millis(50))
        .max(Duration::from_millis(200))
}

fn config(url: &str) -> ConnectionConfig {
    ConnectionConfig::from_url(url).expect("a valid URL")
}

async fn build(cfg: ConnectionConfig, test: &str) -> redisx::Result<RedisX> {
    RedisX::builder()
        .client("default", cfg)
        .key_prefix(unique_prefix(test))
        .build()
        .await
}

async fn raw_get(url: &str, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut raw_connection(url).await)
        .await
        .expect("raw GET")
}

/// How often `eventually` checks here.
const POLL: Duration = Duration::from_millis(20);

/// Everything an error shows: `Display`, `Debug` and the `Display` of every cause.
fn everything_shown(err: &Error) -> String {
    let mut out = format!("{err}\n{err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        out.push('\n');
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[tokio::test]
async fn db_in_the_url_selects_the_database() {
    let server = RedisServer::start_owned();
    for driver in DRIVERS {
        let key = format!("{}k", unique_prefix("db_path"));
        let rx = build(config(&format!("{}/3", server.url())).driver(driver), "db").await;
        let rx = rx.expect("builds");
        assert_eq!(rx.client().config().db_value(), 3);
        let () = rx
            .client()
            .query(redis::cmd("SET").arg(&key).arg("in-db-3"))
            .await
            .unwrap();
        assert_eq!(
            raw_get(&format!("{}/3", server.url()), &key)
                .await
                .as_deref(),
            Some("in-db-3"),
            "{driver:?}: the key is not in db 3"
        );
        assert_eq!(
            raw_get(&format!("{}/0", server.url()), &key).await,
            None,
            "{driver:?}: the key landed in db 0"
        );

        // `?db=` works too, and the cache writes into that database.
        let rx = build(
            config(&format!("{}?db=5", server.url())).driver(driver),
            "db",
        )
        .await
        .expect("builds");
        rx.cache().set("c", &"v".to_owned(), None).await.unwrap();
        let full = rx.cache().full_key("c");
        let in_5: bool = redis::cmd("EXISTS")
            .arg(&full)
            .query_async(&mut raw_connection(&format!("{}/5", server.url())).await)
            .await
            .unwrap();
        let in_0: bool = redis::cmd("EXISTS")
            .arg(&full)
            .query_async(&mut raw_connection(&server.url()).await)
            .await
            .unwrap();
        assert!(
            in_5 && !in_0,
            "{driver:?}: cache entry in db 5: {in_5}, in db 0: {in_0}"
        );
    }
}

#[tokio::test]
async fn an_acl_user_from_the_url_is_the_connection_user() {
    // A password with characters that must be percent-encoded in a URL.
    let password = "p@ss:w/rd 100%";
    let server = RedisServer::builder()
        .password("admin-only")
        .acl_user("app", password, ["~*", "&*", "+@all"])
        .start();
    for driver in DRIVERS {
        let cfg = config(&server.url_with_auth("app", password)).driver(driver);
        assert_eq!(cfg.username_value(), Some("app"));
        let rx = build(cfg, "acl").await.expect("the ACL user authenticates");
        let whoami: String = rx
            .client()
            .query(redis::cmd("ACL").arg("WHOAMI"))
            .await
            .unwrap();
        assert_eq!(whoami, "app", "{driver:?}");
        let v = rx
            .cache()
            .get_or_load("k", None, || async { Ok::<_, Error>(7u32) })
            .await
            .unwrap();
        assert_eq!(v, 7);
        rx.cache().clear_l1();
        assert_eq!(rx.cache().get::<u32>("k").await.unwrap(), Some(7));
        for shown in [
            format!("{rx:?}"),
            format!("{:?}", rx.client()),
            format!("{:?}", rx.client().config()),
            rx.client().config().to_string(),
        ] {
            assert!(!shown.contains(password), "the password is shown: {shown}");
            assert!(
                !shown.contains("p%40ss"),
                "the encoded password is shown: {shown}"
            );
        }
    }
}

#[tokio::test]
async fn a_wrong_password_fails_build_with_auth_failed_and_hides_the_password() {
    let server = RedisServer::builder()
        .password("right-default-pw")
        .acl_user("app", "right-app-pw", ["~*", "&*", "+@all"])
        .start();
    let wrong = "wr0ng-Pa55word";
    for driver in DRIVERS {
        for user in ["app", ""] {
            let url = server.url_with_auth(user, wrong);
            let err = build(config(&url).driver(driver), "wrong_pw")
                .await
                .expect_err("a wrong password must fail build()");
            assert_eq!(
                err.code(),
                ErrorCode::ConnectionAuthFailed,
                "{driver:?}, user `{user}`: {err}"
            );
            assert!(!err.is_retryable(), "an auth failure is not retryable");
            let shown = everything_shown(&err);
            assert!(
                !shown.contains(wrong),
                "{driver:?}: the password leaks: {shown}"
            );
            assert!(
                err.to_string().contains(&server.port().to_string()),
                "the error should name the server: {err}"
            );
        }
    }
}

#[tokio::test]
async fn an_unreachable_port_fails_fast_with_a_clear_message() {
    let port = free_port(); // nothing listens there
    for driver in DRIVERS {
        let cfg = config(&format!("redis://app:unreachable-pw@127.0.0.1:{port}"))
            .connect_timeout(Duration::from_secs(1))
            .driver(driver);
        let started = Instant::now();
        let err = build(cfg, "unreachable")
            .await
            .expect_err("nothing listens on the port");
        let took = started.elapsed();
        assert!(
            matches!(
                err.code(),
                ErrorCode::ConnectionFailed | ErrorCode::ConnectionTimeout
            ),
            "{driver:?}: {err}"
        );
        assert!(err.is_retryable());
        assert!(took < Duration::from_secs(3), "{driver:?}: took {took:?}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("127.0.0.1:{port}")),
            "{driver:?}: the message does not name the server: {text}"
        );
        let shown = everything_shown(&err);
        assert!(
            !shown.contains("unreachable-pw"),
            "{driver:?}: the password leaks: {shown}"
        );
    }
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_at_connect() {
    // The kernel accepts the TCP connection (backlog), but nobody ever answers.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = silent.local_addr().unwrap().port();
    for driver in DRIVERS {
        let cfg = ConnectionConfig::new("127.0.0.1", port)
            .connect_timeout(Duration::from_millis(300))
            .command_timeout(Duration::from_millis(300))
            .driver(driver);
        let started = Instant::now();
        let err = build(cfg, "silent")
            .await
            .expect_err("a server that never answers");
        let took = started.elapsed();
        assert_eq!(
            err.code(),
            ErrorCode::ConnectionTimeout,
            "{driver:?}: {err}"
        );
        assert!(took < Duration::from_secs(3), "{driver:?}: took {took:?}");
    }
    drop(silent);
}

#[tokio::test]
async fn lazy_builds_while_the_server_is_down_and_works_once_it_is_up() {
    for driver in DRIVERS {
        let mut server = RedisServer::start_owned();
        server.kill();
        let cfg = config(&server.url())
            .lazy(true)
            .connect_timeout(Duration::from_millis(500))
            .command_timeout(Duration::from_millis(500))
            .reconnect(fast_reconnect())
            .driver(driver);
        let started = Instant::now();
        let rx = build(cfg, "lazy").await.unwrap_or_else(|e| {
            panic!("{driver:?}: a lazy client builds while Redis is down: {e}")
        });
        assert!(started.elapsed() < Duration::from_secs(2));
        let err = rx
            .client()
            .query::<String>(&redis::cmd("PING"))
            .await
            .expect_err("the server is down");
        assert!(
            matches!(
                err.code(),
                ErrorCode::ConnectionClosed
                    | ErrorCode::ConnectionFailed
                    | ErrorCode::ConnectionTimeout
            ),
            "{driver:?}: {err}"
        );

        server.start_again();
        let up = eventually(Duration::from_secs(10), POLL, || async {
            rx.client().ping().await.is_ok()
        })
        .await;
        assert!(up, "{driver:?}: the lazy client never connected");
        let () = rx
            .client()
            .query(redis::cmd("SET").arg("lazy").arg("1"))
            .await
            .unwrap();
        assert_eq!(raw_get(&server.url(), "lazy").await.as_deref(), Some("1"));
        // The cache works too (scripts are loaded on demand, NOSCRIPT -> load and retry).
        let v = rx
            .cache()
            .get_or_load("k", None, || async { Ok::<_, Error>(3u8) })
            .await
            .unwrap();
        assert_eq!(v, 3);
        rx.cache().clear_l1();
        assert_eq!(
            rx.cache().get::<u8>("k").await.unwrap(),
            Some(3),
            "{driver:?}: the loaded value was not written to Redis"
        );
    }
}

#[tokio::test]
async fn the_command_timeout_cuts_off_a_slow_command() {
    let server = RedisServer::builder()
        .arg("--enable-debug-command")
        .arg("yes")
        .start();
    let rx = build(
        config(&server.url()).command_timeout(Duration::from_millis(200)),
        "cmd_timeout",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let err = rx
        .client()
        .query::<()>(redis::cmd("DEBUG").arg("SLEEP").arg("1"))
        .await
        .expect_err("DEBUG SLEEP 1 outlives a 200 ms command timeout");
    let took = started.elapsed();
    assert_eq!(err.code(), ErrorCode::OperationTimeout, "{err}");
    assert!(err.is_retryable());
    assert!(
        took < Duration::from_millis(900),
        "the caller waited for the reply ({took:?})"
    );
    // The client recovers once the server is responsive again.
    let back = eventually(Duration::from_secs(5), POLL, || async {
        rx.client().ping().await.is_ok()
    })
    .await;
    assert!(back, "the client did not recover after a timeout");
    let () = rx
        .client()
        .query(redis::cmd("SET").arg("after").arg("ok"))
        .await
        .unwrap();
    let v: Option<String> = rx
        .client()
        .query(redis::cmd("GET").arg("after"))
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reconnects_after_the_server_restarts() {
    let mut server = RedisServer::start_owned();
    let rx = build(
        config(&server.url())
            .command_timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_millis(500))
            .reconnect(fast_reconnect()),
        "reconnect",
    )
    .await
    .unwrap();
    let () = rx
        .client()
        .query(redis::cmd("SET").arg("before").arg("1"))
        .await
        .unwrap();

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut failures = Vec::new();
    loop {
        let started = Instant::now();
        let r: redisx::Result<Option<String>> =
            rx.client().query(redis::cmd("GET").arg("before")).await;
        let took = started.elapsed();
        match r {
            Ok(v) => {
                assert_eq!(
                    v, None,
                    "a restarted server is empty: this is an old connection"
                );
                break;
            }
            Err(e) => {
                assert!(
                    matches!(
                        e.code(),
                        ErrorCode::ConnectionClosed | ErrorCode::ConnectionFailed
                    ),
                    "a call while reconnecting failed with {e}"
                );
                assert!(e.is_retryable(), "{e}");
                assert!(
                    took < Duration::from_secs(1),
                    "a failing call took {took:?}"
                );
                failures.push(e.code());
            }
        }
        assert!(
            Instant::now() < deadline,
            "no successful call within 10 s of the restart; failures: {failures:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rx.client().is_connected());
    let () = rx
        .client()
        .query(redis::cmd("SET").arg("after").arg("2"))
        .await
        .unwrap();
    assert_eq!(raw_get(&server.url(), "after").await.as_deref(), Some("2"));
}

#[tokio::test]
async fn named_clients_reach_their_own_server() {
    let main = RedisServer::start_owned();
    let sessions = RedisServer::start_owned();
    let rx = RedisX::builder()
        .client("main", config(&main.url()))
        .client("sessions", config(&sessions.url()))
        .key_prefix(unique_prefix("named"))
        .cache(CacheConfig::default().client("sessions"))
        .build()
        .await
        .unwrap();
    assert_eq!(
        rx.client().name(),
        "main",
        "the first client is the default"
    );
    let () = rx
        .named_client("sessions")
        .unwrap()
        .query(redis::cmd("SET").arg("s").arg("on-sessions"))
        .await
        .unwrap();
    let () = rx
        .client()
        .query(redis::cmd("SET").arg("m").arg("on-main"))
        .await
        .unwrap();
    assert_eq!(
        raw_get(&sessions.url(), "s").await.as_deref(),
        Some("on-sessions")
    );
    assert_eq!(raw_get(&main.url(), "s").await, None);
    assert_eq!(raw_get(&main.url(), "m").await.as_deref(), Some("on-main"));
    assert_eq!(raw_get(&sessions.url(), "m").await, None);

    // The cache was pointed at `sessions`.
    rx.cache().set("c", &1u8, None).await.unwrap();
    let full = rx.cache().full_key("c");
    let mut on = Vec::new();
    for server in [&main, &sessions] {
        let exists: bool = redis::cmd("EXISTS")
            .arg(&full)
            .query_async(&mut raw_connection(&server.url()).await)
            .await
            .unwrap();
        on.push(exists);
    }
    assert_eq!(
        on,
        [false, true],
        "the cache entry must be on `sessions` only"
    );

    let err = rx.named_client("nope").unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigUnknownClient);
    let msg = err.to_string();
    assert!(
        msg.contains("nope") && msg.contains("main") && msg.contains("sessions"),
        "the error should name the unknown client and list the known ones: {msg}"
    );

    // `default_client` picks another default; unknown or duplicate names are config errors.
    let rx = RedisX::builder()
        .client("main", config(&main.url()))
        .client("sessions", config(&sessions.url()))
        .default_client("sessions")
        .key_prefix(unique_prefix("named_default"))
        .build()
        .await
        .unwrap();
    assert_eq!(rx.client().name(), "sessions");
    let err = RedisX::builder()
        .client("main", config(&main.url()))
        .default_client("ghost")
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigUnknownClient, "{err}");
    let err = RedisX::builder()
        .client("main", config(&main.url()))
        .client("main", config(&sessions.url()))
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigInvalid, "{err}");
    let err = RedisX::builder()
        .client("main", config(&main.url()))
        .cache(CacheConfig::default().client("ghost"))
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigUnknownClient, "{err}");
}

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
