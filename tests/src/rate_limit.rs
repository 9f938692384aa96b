//! Fixtures of the rate-limit tests (`tests/tests/rate_limit_*.rs`): runtimes with a rate-limit
//! config, raw reads of what the limiter wrote (keys, the servers' script calls), the
//! limiter's request counters, and epoch-aligned window arithmetic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionLike;
use redisx::rate_limit::{Algorithm, RateLimitConfig};
use redisx::testing::{Deployment, unique_prefix};
use redisx::{RedisX, RedisXBuilder};

/// A runtime on `url` with the key prefix `prefix` and `limits`, a short command timeout and a
/// quick reconnect (for the tests that stop or restart the server).
///
/// # Panics
/// When the runtime does not build.
pub async fn rl_runtime(url: &str, prefix: &str, limits: RateLimitConfig) -> RedisX {
    let config = crate::quick_connection(url);
    RedisX::builder()
        .client("default", config)
        .key_prefix(prefix)
        .rate_limit(limits)
        .build()
        .await
        .expect("the runtime builds")
}

/// A runtime on `deployment`: the `"default"` client with its default settings, customised by
/// `config` (plugins, policies), on the key prefix `unique_prefix(test)`. Unlike
/// `#[redisx::test]`, it is not set as the scope (a body that calls `#[rate_limit]` functions
/// enters [`scope`](RedisX::scope) itself, or hands the runtime to a layer) and its keys stay
/// (they expire within their windows).
///
/// # Panics
/// When the runtime does not build.
pub async fn test_runtime(
    deployment: &Deployment,
    test: &str,
    config: impl FnOnce(RedisXBuilder) -> RedisXBuilder,
) -> RedisX {
    config(deployment.redisx_builder())
        .key_prefix(unique_prefix(test))
        .build()
        .await
        .expect("the runtime builds")
}

/// Every key under `prefix` (which holds no glob characters), read without redisx.
///
/// # Panics
/// When the read fails.
pub async fn keys_under(conn: &mut impl ConnectionLike, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(conn)
        .await
        .expect("KEYS");
    keys.sort();
    keys
}

/// How many times the server ran `cmd` (lowercase, e.g. `"evalsha"`), from
/// `INFO commandstats`: the server's own count, whoever sent them.
///
/// # Panics
/// When the read fails.
pub async fn server_calls(conn: &mut impl ConnectionLike, cmd: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO commandstats");
    let needle = format!("cmdstat_{cmd}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// Every script call the server ran (`EVALSHA`, `EVAL` and `FCALL`): the round trips a check
/// makes, whichever way it runs its script.
///
/// # Panics
/// When the read fails.
pub async fn script_calls(conn: &mut impl ConnectionLike) -> u64 {
    let mut n = 0;
    for cmd in ["evalsha", "eval", "fcall"] {
        n += server_calls(conn, cmd).await;
    }
    n
}

/// The value of `redisx_ratelimit_requests_total` in `rx`'s metrics for `algorithm` and `status`
/// (`allowed`, `denied`, `local_deny`, `error`), summed over any other labels.
pub fn requests(rx: &RedisX, algorithm: Algorithm, status: &str) -> u64 {
    let alg = format!("algorithm=\"{}\"", algorithm.as_str());
    let status = format!("status=\"{status}\"");
    crate::metric_sum(rx, "redisx_ratelimit_requests_total", &[&alg, &status])
}

/// `t` in milliseconds since the Unix epoch.
///
/// # Panics
/// When `t` is before the epoch.
pub fn epoch_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis()
}

/// How long the epoch-aligned window of length `period` that holds now has left.
///
/// # Panics
/// When `period` is zero or longer than `u64::MAX` milliseconds.
pub fn window_left(period: Duration) -> Duration {
    let period_ms = period.as_millis();
    let into = epoch_ms(SystemTime::now()) % period_ms;
    Duration::from_millis(u64::try_from(period_ms - into).expect("a short period"))
}

/// Sleeps until just after the start of the next epoch-aligned window of length `period`, so
/// that a test has (nearly) a whole fixed window to itself.
pub async fn fresh_window(period: Duration) {
    tokio::time::sleep(window_left(period) + Duration::from_millis(20)).await;
}
