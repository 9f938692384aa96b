//! Configuration against real servers: the one-line constructors, URL forms, Unix sockets,
//! client names, RESP3, pool timeouts and TLS with a custom CA and client certificates.

use redisx::RedisX;
use redisx_tests::{RedisServer, unique_prefix};

/// `RedisX::connect` gives one working client named `default` and the default cache.
#[tokio::test]
async fn connect_builds_a_default_runtime() {
    let server = RedisServer::start();
    let rx = RedisX::connect(&server.url()).await.expect("connects");
    assert_eq!(rx.client().name(), "default");
    assert_eq!(rx.key_prefix(), "");
    assert_eq!(rx.plugin_names(), ["cache"]);
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
