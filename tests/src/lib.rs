//! The redisx integration test suite: fixtures per plugin ([`cache`], [`lock`], [`rate_limit`],
//! [`idempotency`], [`streams`], ...) on top of the public harness, [`redisx::testing`], which
//! is re-exported here. A suite's bodies take a [`Topology`] and [`on_topologies!`] declares
//! their standalone and cluster tests; [`scoped`] gives a body what `#[redisx::test]` gives,
//! on either; [`Nodes`] reads what the servers count, summed over a cluster's nodes; [`Turn`]
//! lets a body's two tests take turns with shared statics.
//!
//! ```no_run
//! use redisx::testing::{RedisServer, unique_prefix};
//!
//! let server = RedisServer::start();
//! let prefix = unique_prefix("my_test"); // "redisx-test:my_test:...:"
//! # let _ = (server.url(), prefix);
//! ```

pub mod acl;
pub mod cache;
pub mod connections;
pub mod http;
pub mod idempotency;
pub mod idempotency_http;
pub mod lock;
pub mod otlp;
pub mod rate_limit;
pub mod soak;
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

/// A connection to each data node of a deployment (the one server of a standalone one), for
/// what a server counts for itself and a cluster per node: each reading is the sum over the
/// nodes. Open it before the reading that starts a count: connecting runs commands too.
#[derive(Clone, Debug)]
pub struct Nodes(Vec<redis::aio::MultiplexedConnection>);

impl Nodes {
    /// Connects to every data node (`deployment.server_urls()`: masters and replicas).
    ///
    /// # Panics
    /// When a node does not accept a connection.
    pub async fn of(deployment: &Deployment) -> Self {
        Self::connect(deployment.server_urls()).await
    }

    /// Connects to the masters (`deployment.master_urls()`): for counts a replica would
    /// repeat, such as the writes it copies.
    ///
    /// # Panics
    /// When a node does not accept a connection.
    pub async fn masters(deployment: &Deployment) -> Self {
        Self::connect(deployment.master_urls()).await
    }

    async fn connect(urls: Vec<String>) -> Self {
        let mut conns = Vec::new();
        for url in urls {
            conns.push(raw_connection(&url).await);
        }
        Self(conns)
    }

    /// How many connections are subscribed to `channel` (`PUBSUB NUMSUB`), over the nodes.
    ///
    /// # Panics
    /// When a read fails.
    pub async fn subscribers(&mut self, channel: &str) -> u64 {
        let mut n = 0;
        for conn in &mut self.0 {
            n += idempotency::subscribers(conn, channel).await;
        }
        n
    }

    /// Publishes `payload` on `channel` on every node; returns the receivers summed. A node
    /// counts only its own subscribers (a cluster forwards the message to the others), so the
    /// sum is every subscription (plain or pattern) that receives on `channel`.
    ///
    /// # Panics
    /// When a `PUBLISH` fails.
    pub async fn publish(&mut self, channel: &str, payload: &str) -> u64 {
        let mut n = 0;
        for conn in &mut self.0 {
            let got: u64 = redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query_async(conn)
                .await
                .expect("PUBLISH");
            n += got;
        }
        n
    }

    /// How many times the nodes ran `cmd` (lowercase, e.g. `"publish"`; `INFO commandstats`).
    ///
    /// # Panics
    /// When a read fails.
    pub async fn calls(&mut self, cmd: &str) -> u64 {
        self.command_calls().await.get(cmd).copied().unwrap_or(0)
    }

    /// Every script call the nodes ran (`EVALSHA`, `EVAL` and `FCALL`).
    ///
    /// # Panics
    /// When a read fails.
    pub async fn script_calls(&mut self) -> u64 {
        let calls = self.command_calls().await;
        ["evalsha", "eval", "fcall"]
            .iter()
            .filter_map(|c| calls.get(*c))
            .sum()
    }

    /// The calls of every command the nodes ran so far, by lowercase name (`xadd`,
    /// `client|setname`), from their `INFO commandstats`.
    ///
    /// # Panics
    /// When a read fails.
    pub async fn command_calls(&mut self) -> std::collections::HashMap<String, u64> {
        let mut calls = std::collections::HashMap::new();
        for conn in &mut self.0 {
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(conn)
                .await
                .expect("INFO commandstats");
            for (name, n) in info.lines().filter_map(command_stat) {
                *calls.entry(name.to_owned()).or_default() += n;
            }
        }
        calls
    }
}

/// `("xadd", 100)` from the `INFO commandstats` line `cmdstat_xadd:calls=100,usec=..`.
fn command_stat(line: &str) -> Option<(&str, u64)> {
    let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
    let calls = stats
        .strip_prefix("calls=")?
        .split(',')
        .next()?
        .parse()
        .ok()?;
    Some((name, calls))
}

/// Runs `body` as `#[redisx::test]` does, on a deployment of `topology`
/// ([`run_on`]): a runtime of default settings on a key prefix of its
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
