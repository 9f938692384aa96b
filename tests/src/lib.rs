//! The redisx integration test suite: its own fixtures ([`cache`], [`idempotency`], [`lock`]) on
//! top of the public harness, [`redisx::testing`].
//!
//! The harness is re-exported here, so `use redisx_tests::RedisServer` and the like keep working;
//! new tests import from `redisx::testing`, as a user's tests do.
//!
//! ```no_run
//! use redisx::testing::{RedisServer, unique_prefix};
//!
//! let server = RedisServer::start();
//! let prefix = unique_prefix("my_test"); // "redisx-test:my_test:...:"
//! # let _ = (server.url(), prefix);
//! ```

pub mod cache;
pub mod connections;
pub mod http;
pub mod idempotency;
pub mod lock;
pub mod otlp;
pub mod rate_limit;
pub mod spans;
pub mod streams;
pub mod tls;

pub use redisx::testing::*;

/// A connection to `url` for the tests that stop, pause or restart their server: a short
/// command timeout (500 ms) and a quick reconnect (20 ms doubling to 100 ms).
///
/// # Panics
/// When `url` is not a Redis URL.
pub fn quick_connection(url: &str) -> redisx::ConnectionConfig {
    redisx::ConnectionConfig::from_url(url)
        .expect("a Redis URL")
        .command_timeout(std::time::Duration::from_millis(500))
        .reconnect(
            redisx::ReconnectPolicy::default()
                .initial(std::time::Duration::from_millis(20))
                .max(std::time::Duration::from_millis(100)),
        )
}

/// The sum of the samples of the counter `name` (e.g. `redisx_commands_total`) in `rx`'s
/// metrics whose labels include every one of `labels` (each as written, `command="EVALSHA"`).
pub fn metric_sum(rx: &redisx::RedisX, name: &str, labels: &[&str]) -> u64 {
    let head = format!("{name}{{");
    rx.metrics_text()
        .lines()
        .filter(|l| l.starts_with(&head) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Runs `cmd` on `deployment` with redis-rs alone, outside redisx: on the server, through a
/// cluster client on a cluster, on the master the sentinels name on a sentinel set.
///
/// # Panics
/// When the deployment cannot be reached or the command fails.
pub async fn raw_query<T: redis::FromRedisValue>(
    deployment: &redisx::testing::Deployment,
    cmd: &redis::Cmd,
) -> T {
    if let Some(cluster) = deployment.cluster() {
        let client = redis::cluster::ClusterClient::new(cluster.seed_urls()).expect("seed URLs");
        let mut conn = client
            .get_async_connection()
            .await
            .expect("a cluster connection");
        return cmd.query_async(&mut conn).await.expect("the raw command");
    }
    let url = match deployment.sentinel() {
        Some(set) => set.master_url(),
        None => deployment.url(),
    };
    let mut conn = raw_connection(&url).await;
    cmd.query_async(&mut conn).await.expect("the raw command")
}

/// The tokio runtime a child process's scenario runs on: multi-thread with two workers, as the
/// tests' own (`#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`).
///
/// # Panics
/// When the runtime cannot be built.
pub fn scenario_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
