//! `RedisX::install`: the process-wide default runtime that the attributes use.
//!
//! `install` is process-global, so this file is its own test binary with one test: no other
//! test can install a runtime first or observe this one.

use std::sync::atomic::{AtomicUsize, Ordering};

use redisx::{ConnectionConfig, ErrorCode, RedisX, cached};
use redisx_tests::{RedisServer, raw_connection, unique_prefix};

static LOADS: AtomicUsize = AtomicUsize::new(0);

/// No `runtime = ...`: uses the installed runtime.
#[cached(key = "installed:{id}", ttl = "1m")]
async fn installed(id: u64) -> u64 {
    LOADS.fetch_add(1, Ordering::SeqCst);
    id * 10
}

async fn runtime(url: &str, prefix: &str) -> RedisX {
    RedisX::builder()
        .client("default", ConnectionConfig::from_url(url).unwrap())
        .key_prefix(prefix)
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn install_once_then_refuse_to_replace() {
    let server = RedisServer::start();
    let first_prefix = unique_prefix("install_first");
    let first = runtime(&server.url(), &first_prefix).await;
    let second = runtime(&server.url(), &unique_prefix("install_second")).await;

    assert!(RedisX::global().is_none(), "nothing is installed yet");
    // Before install, a cached function runs uncached.
    assert_eq!(installed(1).await, 10);
    assert_eq!(installed(1).await, 10);
    assert_eq!(LOADS.load(Ordering::SeqCst), 2);

    first.install().expect("the first install succeeds");
    assert_eq!(
        RedisX::global().map(|rx| rx.key_prefix().to_owned()),
        Some(first_prefix.clone())
    );

    let err = second.install().expect_err("a second install is an error");
    assert_eq!(err.code(), ErrorCode::ConfigAlreadyInstalled, "{err}");
    assert!(err.to_string().contains("already installed"), "{err}");
    let err = first
        .install()
        .expect_err("installing the same runtime again too");
    assert_eq!(err.code(), ErrorCode::ConfigAlreadyInstalled, "{err}");
    assert_eq!(
        RedisX::global().map(|rx| rx.key_prefix().to_owned()),
        Some(first_prefix),
        "the installed runtime was replaced"
    );

    // The attribute now caches through the installed runtime.
    assert_eq!(installed(2).await, 20);
    assert_eq!(installed(2).await, 20);
    assert_eq!(LOADS.load(Ordering::SeqCst), 3, "the second call is a hit");
    let mut conn = raw_connection(&server.url()).await;
    let in_first: bool = redis::cmd("EXISTS")
        .arg(first.cache().full_key("installed:2"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let in_second: bool = redis::cmd("EXISTS")
        .arg(second.cache().full_key("installed:2"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        in_first && !in_second,
        "stored under the installed runtime's prefix: {in_first}, under the other's: {in_second}"
    );
}
