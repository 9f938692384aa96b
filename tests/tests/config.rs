//! Configuration against real servers: the one-line constructors, URL forms, Unix sockets,
//! client names, RESP3 and pool timeouts (TLS is in `tls.rs`).

use std::time::Duration;

use redisx::{ConnectionConfig, DriverKind, ErrorCode, RedisX};
use redisx_tests::cache::round_trip;
use redisx_tests::tls::TempDir;
use redisx_tests::{RedisServer, unique_prefix};

/// `RedisX::connect` gives one working client named `default` and the default cache.
#[tokio::test]
async fn connect_builds_a_default_runtime() {
    let server = RedisServer::start();
    let rx = RedisX::connect(&server.url()).await.expect("connects");
    assert_eq!(rx.client().name(), "default");
    assert_eq!(rx.key_prefix(), "");
    assert_eq!(
        rx.plugin_names(),
        ["cache", "locks", "rate_limit", "idempotency", "streams"]
    );
    let key = format!("{}k", unique_prefix("connect"));
    rx.cache().set(&key, &7_u32, None).await.expect("set");
    assert_eq!(rx.cache().get::<u32>(&key).await.expect("get"), Some(7));
    rx.shutdown().await;
}

/// `RedisX::connect` with a URL that does not parse fails with a config error.
#[tokio::test]
async fn connect_rejects_a_bad_url() {
    let err = RedisX::connect("http://127.0.0.1:1").await.unwrap_err();
    assert_eq!(err.code(), redisx::ErrorCode::ConfigInvalid);
}

/// The environment variable of the test process cannot be set here (`set_var` is unsafe and
/// the workspace forbids unsafe code), so the test runs this very binary again with
/// `REDIS_URL` set, selecting [`from_env_child`] alone.
#[test]
fn from_env_reads_redis_url() {
    let server = RedisServer::start();
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "from_env_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("REDIS_URL", format!("{}/5", server.url()))
        .env(CHILD_MARKER, "1")
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("from_env: db 5"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const CHILD_MARKER: &str = "REDISX_CONFIG_TEST_CHILD";

/// The child half of [`from_env_reads_redis_url`]; does nothing unless that test started it.
#[tokio::test]
async fn from_env_child() {
    if std::env::var_os(CHILD_MARKER).is_none() {
        return;
    }
    let rx = RedisX::from_env().await.expect("connects to REDIS_URL");
    let db: i64 = rx
        .client()
        .query(redis::cmd("CLIENT").arg("INFO"))
        .await
        .map(|info: String| {
            info.split_whitespace()
                .find_map(|f| f.strip_prefix("db="))
                .and_then(|d| d.parse().ok())
                .unwrap_or(-1)
        })
        .expect("CLIENT INFO");
    println!("from_env: db {db}");
    rx.shutdown().await;
}

/// The `CLIENT INFO` line of the connection a runtime's default client uses.
async fn client_info(rx: &RedisX) -> String {
    rx.client()
        .query(redis::cmd("CLIENT").arg("INFO"))
        .await
        .expect("CLIENT INFO")
}

/// A `redis+unix://` URL and `ConnectionConfig::unix_socket` both reach a server over its
/// Unix socket (`flags=U` in `CLIENT INFO`), with the database and the cache working.
#[tokio::test]
async fn unix_socket_urls_and_constructor_connect() {
    let dir = TempDir::new("unix");
    let socket = dir.path("redis.sock");
    let server = RedisServer::builder()
        .arg("--unixsocket")
        .arg(&socket)
        .arg("--unixsocketperm")
        .arg("700")
        .start();
    let by_url = RedisX::connect(&format!("redis+unix://{}?db=3", socket.display()))
        .await
        .expect("connects over the socket");
    let by_ctor = RedisX::builder()
        .client("default", ConnectionConfig::unix_socket(&socket).db(3))
        .build()
        .await
        .expect("connects over the socket");
    for rx in [&by_url, &by_ctor] {
        let info = client_info(rx).await;
        let flags = field(&info, "flags");
        assert!(flags.contains('U'), "not a Unix socket connection: {info}");
        assert_eq!(field(&info, "db"), "3", "{info}");
        assert_eq!(rx.client().config().socket_path(), Some(socket.as_path()));
        round_trip(rx, "unix").await;
        rx.shutdown().await;
    }
    drop(server);
}

/// The value of `name=` in a `CLIENT INFO`/`CLIENT LIST` line.
fn field<'a>(info: &'a str, name: &str) -> &'a str {
    info.split_whitespace()
        .find_map(|f| f.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_default()
}

/// `client_name` is set with `CLIENT SETNAME` on every connection, with both drivers: the
/// client's own connections and the pool's show it in `CLIENT LIST`.
#[tokio::test]
async fn client_name_is_visible_in_client_list() {
    let server = RedisServer::start_owned();
    for (driver, name) in [
        (DriverKind::Multiplexed, "redisx-test-multiplexed"),
        (DriverKind::Pool { max_size: 2 }, "redisx-test-pool"),
    ] {
        let rx = RedisX::builder()
            .client(
                "default",
                ConnectionConfig::from_url(&server.url())
                    .unwrap()
                    .client_name(name)
                    .driver(driver),
            )
            .build()
            .await
            .expect("connects");
        assert_eq!(field(&client_info(&rx).await, "name"), name);
        let mut raw = redisx_tests::raw_connection(&server.url()).await;
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(
            list.lines().any(|l| field(l, "name") == name),
            "no connection named {name}: {list}"
        );
        rx.shutdown().await;
    }
}

/// The `CLIENT LIST` lines of `server`, read on a raw connection.
async fn client_list(server: &RedisServer) -> Vec<String> {
    let mut raw = redisx_tests::raw_connection(&server.url()).await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut raw)
        .await
        .unwrap();
    list.lines().map(str::to_owned).collect()
}

/// Connections of their own carry the client name with their role appended: the cache's
/// invalidation listener and `rx.pubsub()` `NAME:pubsub` (subscribed: `sub=1`), a dedicated
/// connection `NAME:dedicated`. Without a client name, none is set.
#[tokio::test]
async fn pubsub_and_dedicated_connections_carry_the_client_name() {
    let server = RedisServer::start_owned();
    let cfg = ConnectionConfig::from_url(&server.url())
        .unwrap()
        .client_name("billing");
    let rx = RedisX::builder()
        .client("default", cfg)
        .build()
        .await
        .expect("connects");
    let listener = client_list(&server).await;
    assert!(
        listener
            .iter()
            .any(|l| field(l, "name") == "billing:pubsub" && field(l, "sub") == "1"),
        "no subscribed connection named billing:pubsub (the cache's listener): {listener:#?}"
    );
    let mut pubsub = rx.pubsub().await.expect("a pubsub connection");
    pubsub.psubscribe("events:*").await.expect("PSUBSCRIBE");
    let mut dedicated = rx.dedicated_connection().await.expect("a dedicated one");
    let _: String = dedicated.query(&redis::cmd("PING")).await.unwrap();
    let list = client_list(&server).await;
    let named = |name: &str| list.iter().filter(|l| field(l, "name") == name).count();
    assert_eq!(named("billing:pubsub"), 2, "{list:#?}");
    assert!(
        list.iter()
            .any(|l| field(l, "name") == "billing:pubsub" && field(l, "psub") == "1"),
        "{list:#?}"
    );
    assert_eq!(named("billing:dedicated"), 1, "{list:#?}");
    assert_eq!(named("billing"), 1, "the shared connection: {list:#?}");
    drop((pubsub, dedicated));
    rx.shutdown().await;

    let rx = RedisX::connect(&server.url()).await.expect("connects");
    let _pubsub = rx.pubsub().await.expect("a pubsub connection");
    let _dedicated = rx.dedicated_connection().await.expect("a dedicated one");
    let list = client_list(&server).await;
    assert!(
        list.iter().all(|l| field(l, "name").is_empty()),
        "a connection got a name none was set for: {list:#?}"
    );
    rx.shutdown().await;
}

/// A client name with a space is refused when the runtime is built, before connecting.
#[tokio::test]
async fn an_invalid_client_name_fails_the_build() {
    let err = RedisX::builder()
        .client(
            "default",
            ConnectionConfig::new("127.0.0.1", 1).client_name("two words"),
        )
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigInvalid);
}

/// `resp3(true)` (or `?protocol=resp3`) speaks RESP3 (`resp=3` in `CLIENT INFO`), and the
/// cache, scripts and the invalidation listener work over it; the default stays RESP2.
#[tokio::test]
async fn resp3_is_opt_in() {
    let server = RedisServer::start();
    let resp2 = RedisX::connect(&server.url()).await.unwrap();
    assert_eq!(field(&client_info(&resp2).await, "resp"), "2");
    resp2.shutdown().await;
    let by_url = RedisX::connect(&format!("{}?protocol=resp3", server.url()))
        .await
        .unwrap();
    let by_setter = RedisX::builder()
        .client(
            "default",
            ConnectionConfig::from_url(&server.url())
                .unwrap()
                .resp3(true),
        )
        .build()
        .await
        .unwrap();
    for rx in [&by_url, &by_setter] {
        assert!(rx.client().config().resp3_value());
        assert_eq!(field(&client_info(rx).await, "resp"), "3");
        round_trip(rx, "resp3").await;
        rx.shutdown().await;
    }
}

/// A pool client whose own connect and command timeouts are far longer than the pool
/// timeouts under test, so that only those can end a checkout.
fn slow_pool(server: &RedisServer) -> ConnectionConfig {
    ConnectionConfig::from_url(&server.url())
        .unwrap()
        .driver(DriverKind::Pool { max_size: 1 })
        .connect_timeout(Duration::from_secs(60))
        .command_timeout(Duration::from_secs(60))
        .pool_wait_timeout(Duration::from_secs(60))
        .pool_recycle_timeout(Duration::from_secs(60))
        .pool_create_timeout(Duration::from_secs(60))
}

/// The guard against a hang: every timeout not under test is 60 s.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// On a hung server, the recycle timeout drops the idle pooled connection (its health check
/// never answers) and the create timeout ends the attempt to open another one.
#[tokio::test]
async fn pool_recycle_and_create_timeouts_end_a_checkout_on_a_hung_server() {
    let server = RedisServer::start_owned();
    let cfg = slow_pool(&server)
        .pool_recycle_timeout(Duration::from_millis(100))
        .pool_create_timeout(Duration::from_millis(100));
    assert_eq!(cfg.pool_create_timeout_value(), Duration::from_millis(100));
    let rx = RedisX::builder()
        .client("default", cfg)
        .build()
        .await
        .unwrap();
    rx.client().ping().await.expect("the pool works");
    server.pause();
    let result = tokio::time::timeout(HANG_GUARD, rx.client().ping()).await;
    server.resume();
    let err = result
        .expect("the pool timeouts end the checkout")
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConnectionTimeout, "{err}");
    assert!(err.to_string().contains("Create"), "{err}");
    rx.client().ping().await.expect("the pool recovers");
    rx.shutdown().await;
}

/// While the one pooled connection is busy (its command hangs), another command waits for it
/// no longer than the wait timeout.
#[tokio::test(flavor = "current_thread")]
async fn pool_wait_timeout_ends_the_wait_for_a_busy_pool() {
    let server = RedisServer::start_owned();
    let cfg = slow_pool(&server).pool_wait_timeout(Duration::from_millis(100));
    let rx = RedisX::builder()
        .client("default", cfg)
        .build()
        .await
        .unwrap();
    rx.client().ping().await.expect("the pool works");
    server.pause();
    let busy = tokio::spawn({
        let client = rx.client();
        async move { client.ping().await }
    });
    // On this single-threaded runtime the spawned task runs, and takes the pool's only
    // connection, before this one resumes.
    tokio::task::yield_now().await;
    let result = tokio::time::timeout(HANG_GUARD, rx.client().ping()).await;
    server.resume();
    let err = result.expect("the wait timeout ends the wait").unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConnectionTimeout, "{err}");
    assert!(err.to_string().contains("Wait"), "{err}");
    busy.await
        .unwrap()
        .expect("the busy command completes once the server resumes");
    rx.shutdown().await;
}

/// With the `serde` feature, a client and the cache load from a config file's table (JSON
/// here) and work against a real server.
#[tokio::test]
async fn configs_load_with_serde_and_connect() {
    #[derive(serde::Deserialize)]
    struct AppConfig {
        redis: ConnectionConfig,
        cache: redisx::CacheConfig,
    }
    let server = RedisServer::start_owned();
    let json = format!(
        r#"{{
            "redis": {{ "url": "{}", "db": 4, "client_name": "from-file", "resp3": true,
                        "command_timeout": "2s", "reconnect": {{ "initial": "50ms" }} }},
            "cache": {{ "default_ttl": "10m", "codec": "json", "stampede": {{ "wait_timeout": "1s" }} }}
        }}"#,
        server.url()
    );
    let app: AppConfig = serde_json::from_str(&json).expect("the config loads");
    assert_eq!(app.redis.command_timeout_value(), Duration::from_secs(2));
    let rx = RedisX::builder()
        .client("default", app.redis)
        .cache(app.cache)
        .build()
        .await
        .expect("connects");
    let info = client_info(&rx).await;
    assert_eq!(
        (
            field(&info, "db"),
            field(&info, "name"),
            field(&info, "resp")
        ),
        ("4", "from-file", "3"),
        "{info}"
    );
    round_trip(&rx, "serde").await;
    rx.shutdown().await;
}
