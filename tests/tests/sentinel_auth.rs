//! Sentinel credentials against real password-protected processes: a set whose master and
//! replicas require one password and whose sentinels require another
//! (`RedisSentinel::builder()`). A client with both serves every plugin and follows a failover;
//! a wrong or missing password is an authentication error that says which side refused it.

use std::time::Duration;

use redisx::lock::LockOptions;
use redisx::testing::{RedisSentinel, eventually, unique_prefix};
use redisx::{ErrorCode, RedisX};

const DATA_PASSWORD: &str = "data-s3cret";
const SENTINEL_PASSWORD: &str = "sentinel-s3cret";

fn protected_set() -> RedisSentinel {
    RedisSentinel::builder()
        .password(DATA_PASSWORD)
        .sentinel_password(SENTINEL_PASSWORD)
        .start()
}

/// `redis+sentinel://` to `set` with `data` as the master's password and `sentinel` (when
/// given) as the sentinels'.
fn url(set: &RedisSentinel, data: &str, sentinel: Option<&str>) -> String {
    let sentinels = set
        .sentinels()
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port()))
        .collect::<Vec<_>>()
        .join(",");
    let query = sentinel.map_or(String::new(), |pw| format!("?sentinel_password={pw}"));
    format!(
        "redis+sentinel://:{data}@{sentinels}/{}{query}",
        set.master_name()
    )
}

async fn build(url: &str, test: &str) -> redisx::Result<RedisX> {
    RedisX::builder()
        .client("default", redisx::ConnectionConfig::from_url(url)?)
        .key_prefix(unique_prefix(test))
        .build()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_both_passwords_serves_the_plugins_and_follows_a_failover() {
    let mut set = protected_set();
    let rx = build(
        &url(&set, DATA_PASSWORD, Some(SENTINEL_PASSWORD)),
        "sentinel_auth",
    )
    .await
    .expect("the runtime builds with both passwords");
    rx.cache().set("k", &1u32, None).await.unwrap();
    assert_eq!(rx.cache().get::<u32>("k").await.unwrap(), Some(1));
    let guard = rx
        .locks()
        .acquire("order", &LockOptions::new().retries(0))
        .await
        .unwrap();
    guard.release().await.unwrap();

    let before = set.master_url();
    set.failover();
    assert_ne!(set.master_url(), before);
    // The client re-resolves the master through the protected sentinels.
    let moved = eventually(Duration::from_secs(10), Duration::from_millis(50), || {
        let rx = rx.clone();
        async move { rx.cache().set("k", &2u32, None).await.is_ok() }
    })
    .await;
    assert!(moved, "writes reach the new master");
    assert_eq!(rx.cache().get::<u32>("k").await.unwrap(), Some(2));
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_password_is_an_authentication_error() {
    let set = protected_set();
    for (data, sentinel, refused_by) in [
        (DATA_PASSWORD, Some("wrong"), "sentinel_password"),
        (DATA_PASSWORD, None, "sentinel_password"),
        ("wrong", Some(SENTINEL_PASSWORD), "authentication failed"),
    ] {
        let Err(err) = build(&url(&set, data, sentinel), "sentinel_auth_refused").await else {
            panic!("built with data={data} sentinel={sentinel:?}")
        };
        assert_eq!(
            err.code(),
            ErrorCode::ConnectionAuthFailed,
            "data={data} sentinel={sentinel:?}: {err:#}"
        );
        let text = format!("{err:#}");
        assert!(
            text.contains(refused_by),
            "the error says who refused ({refused_by}): {text}"
        );
        assert!(
            !text.contains(DATA_PASSWORD) && !text.contains(SENTINEL_PASSWORD),
            "no password in the error: {text}"
        );
    }
}
