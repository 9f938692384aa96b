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

/// Runs `cmd` on `deployment` with redis-rs alone, outside redisx, on a fresh
/// [`Deployment::raw_connection`](redisx::testing::Deployment::raw_connection).
///
/// # Panics
/// When the deployment cannot be reached or the command fails.
pub async fn raw_query<T: redis::FromRedisValue>(
    deployment: &redisx::testing::Deployment,
    cmd: &redis::Cmd,
) -> T {
    let mut conn = deployment.raw_connection().await;
    cmd.query_async(&mut conn).await.expect("the raw command")
}

/// Declares the tests of a plugin's suite: for each `body`, an `async fn(Topology)` written
/// once, a module of the same name with one `#[tokio::test]` per topology the suites run on, a
/// standalone server and the shared 3-master cluster (`body::standalone`, `body::cluster`).
/// Sentinel runs the smoke suites (`topology_*`), which loop over every topology.
///
/// Attributes for `#[tokio::test]` go first, in brackets:
///
/// ```ignore
/// async fn round_trip(topology: Topology) { /* Deployment::start(topology) .. */ }
/// async fn races(topology: Topology) { /* .. */ }
///
/// redisx_tests::on_topologies!(round_trip);
/// redisx_tests::on_topologies!([flavor = "multi_thread", worker_threads = 2] races);
/// ```
#[macro_export]
macro_rules! on_topologies {
    (@one [$($test:tt)*] $body:ident) => {
        mod $body {
            #[tokio::test($($test)*)]
            async fn standalone() {
                super::$body($crate::Topology::Standalone).await
            }

            #[tokio::test($($test)*)]
            async fn cluster() {
                super::$body($crate::Topology::Cluster).await
            }
        }
    };
    // The attributes stay one token tree, so that they repeat with each body.
    (@all $test:tt $($body:ident),+) => {
        $( $crate::on_topologies!(@one $test $body); )+
    };
    ([$($test:tt)*] $($body:ident),+ $(,)?) => {
        $crate::on_topologies!(@all [$($test)*] $($body),+);
    };
    ($($body:ident),+ $(,)?) => {
        $crate::on_topologies!(@all [] $($body),+);
    };
}

/// Runs `body` as `#[redisx::test]` does, on a deployment of `topology`
/// ([`run_on`](redisx::testing::run_on)): a runtime of default settings on a key prefix of its
/// own (from `test`), set as the scope of the body's task, so the attributes inside use it
/// without `runtime = ...`; the keys under the prefix are deleted afterwards, also after a
/// panic.
///
/// # Panics
/// When the deployment does not start or the runtime does not build, and with the body's own
/// panic.
pub async fn scoped<F, Fut>(topology: Topology, test: &'static str, body: F) -> Fut::Output
where
    F: FnOnce(redisx::RedisX) -> Fut,
    Fut: std::future::Future,
{
    let deployment = Deployment::start(topology);
    redisx::testing::run_on(&deployment, TestOptions::new(test), body).await
}

/// Turns for the `standalone` and `cluster` tests of one body (from [`on_topologies!`]) that
/// share statics, e.g. the load counters of `#[cached]` functions: each waits for its turn and
/// starts from counters at 0.
///
/// ```ignore
/// static LOADS: AtomicUsize = AtomicUsize::new(0);
/// static TURN: Turn = Turn::new();
///
/// async fn counts_loads(topology: Topology) {
///     let _turn = TURN.take(&[&LOADS]).await;
///     // ...
/// }
/// ```
#[derive(Debug)]
pub struct Turn(tokio::sync::Mutex<()>);

impl Turn {
    /// A turn nobody holds.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self(tokio::sync::Mutex::const_new(()))
    }

    /// Waits for the turn, then sets `counters` to 0; the turn ends when the guard is dropped.
    pub async fn take(
        &'static self,
        counters: &[&std::sync::atomic::AtomicUsize],
    ) -> tokio::sync::MutexGuard<'static, ()> {
        let turn = self.0.lock().await;
        for counter in counters {
            counter.store(0, std::sync::atomic::Ordering::SeqCst);
        }
        turn
    }
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
