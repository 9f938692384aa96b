//! Fixtures of the connection tests (`tests/tests/connections_*.rs`): the drivers every test
//! runs on, a quick reconnect policy, runtimes built from a URL, and raw reads of what landed
//! where.

use std::time::Duration;

use redisx::{ConnectionConfig, DriverKind, ReconnectPolicy, RedisX};

use redisx::testing::{raw_connection, unique_prefix};

/// The drivers a connection test runs on: the multiplexed connection and a small pool.
pub const DRIVERS: [DriverKind; 2] = [DriverKind::Multiplexed, DriverKind::Pool { max_size: 4 }];

/// How often the connection tests' `eventually` checks.
pub const POLL: Duration = Duration::from_millis(20);

/// A reconnect policy short enough for tests: 50 ms doubling to 200 ms.
pub fn fast_reconnect() -> ReconnectPolicy {
    ReconnectPolicy::default()
        .initial(Duration::from_millis(50))
        .max(Duration::from_millis(200))
}

/// The connection config of `url`.
///
/// # Panics
/// When `url` is not a valid Redis URL.
pub fn config(url: &str) -> ConnectionConfig {
    ConnectionConfig::from_url(url).expect("a valid URL")
}

/// Builds a runtime with one client (`"default"`) from `cfg`, on a key prefix made unique from
/// `test`; the build's error is the test's to check.
pub async fn build(cfg: ConnectionConfig, test: &str) -> redisx::Result<RedisX> {
    RedisX::builder()
        .client("default", cfg)
        .key_prefix(unique_prefix(test))
        .build()
        .await
}

/// The string under `key` on the server (and database) of `url`, read without redisx.
///
/// # Panics
/// When the server does not accept the connection or the `GET` fails.
pub async fn raw_get(url: &str, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut raw_connection(url).await)
        .await
        .expect("raw GET")
}
