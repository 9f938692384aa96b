//! Test support (feature `test-util`): real `redis-server` processes for integration tests, the
//! harness redisx's own test suite runs on.
//!
//! [`RedisServer::start`] launches `redis-server` from `PATH` on a free loopback port (no
//! persistence: `--save "" --appendonly no`), waits until it answers `PING`, and stops it when
//! the handle is dropped. A test that needs a fresh, isolated server gets one in a few
//! milliseconds, so there is no shared server to coordinate.
//!
//! ```no_run
//! use redisx_runtime::testing::{RedisServer, runtime, unique_prefix};
//! use redisx_runtime::CacheConfig;
//!
//! # #[allow(dead_code)]
//! # async fn demo() -> redisx_runtime::Result<()> {
//! let server = RedisServer::start();
//! // Every test keeps to a key prefix of its own, so tests can share a server in parallel.
//! let rx = runtime(&server.url(), &unique_prefix("my_test"), CacheConfig::default()).await;
//! rx.cache().set("user:1", &"Ada".to_owned(), None).await?;
//! # Ok(()) }
//! // the server is killed when `server` goes out of scope
//! ```
//!
//! # What is here
//! - [`run`] and [`block_on`] (what `#[redisx::test]` expands to): a fresh runtime per test on
//!   a key prefix of its own, in scope for the body ([`RedisX::scope`]), its keys deleted
//!   afterwards, on the server [`server_url`] names.
//! - [`RedisServer`]: one server; start, stop, kill, restart on the same port; a password and
//!   ACL users through [`RedisServer::builder`].
//! - [`ReplicaSet`]: a primary with replicas ([`RedisServer::with_replicas`]), in sync before it
//!   is handed out; kill and restart of any [`Member`].
//! - [`RedisCluster`]: a Redis Cluster (masters with replicas, slots assigned by `redis-cli
//!   --cluster create`), whole before it is handed out; manual failover, kill and restart of any
//!   node. [`RedisSentinel`]: a master with two replicas and three sentinels watching it; manual
//!   failover and a killed master. (redisx itself does not connect to either yet: they are not in
//!   [`Topology::ALL`].)
//! - [`ChildProcess`]: a named scenario of the same test binary run in a child process, for crash
//!   tests: wait for its readiness line, `SIGKILL` it, restart it.
//! - [`Topology`] and [`Deployment`]: the shape of Redis a test runs against, as a parameter, so
//!   a test written once runs on every topology the harness can start (see "Writing a plugin's
//!   tests" below).
//! - Helpers: [`unique_prefix`], [`eventually`], [`runtime`], [`raw_connection`],
//!   [`process_alive`], [`free_port`].
//!
//! # No orphans
//! Every process the harness starts (servers and child scenarios) is started through a tiny `sh`
//! wrapper that forks a watchdog and then `exec`s the program, so the child process *is* the
//! program. The watchdog blocks reading a pipe whose only write end lives in the test process: it
//! gets end-of-file when the handle is dropped (also while a panicking test unwinds) **and** when
//! the test process dies in any way (even `SIGKILL`, since the kernel closes the pipe), and then
//! `SIGKILL`s the program. No server outlives its test process.
//!
//! The files of a [`RedisCluster`] or [`RedisSentinel`] (node and sentinel configurations) live
//! in a temporary directory of its own, removed after its processes when the handle is dropped,
//! also while a panicking test unwinds. A handle never dropped (the cluster a test binary's
//! [`Deployment`]s share until it exits) or a killed test process leaves nothing either: a
//! watchdog of the same kind removes the directory once the test process is gone.
//!
//! # `REDISX_TEST_URL`
//! When `REDISX_TEST_URL` is set, [`RedisServer::start`] returns a handle that points at that
//! existing server instead of starting one; give every test its own key space with
//! [`unique_prefix`] so tests can share it in parallel. `REDIS_URL` is deliberately ignored: it
//! names an application's server, and a test suite must never run against someone's data by
//! accident. Tests that need to own the process (restart it, kill it, configure passwords or ACL
//! users) use [`RedisServer::start_owned`] or [`RedisServer::builder`], which always start their
//! own server; the process-control methods panic on a `REDISX_TEST_URL` handle with a message
//! that says so.
//!
//! # Missing `redis-server`
//! Starting a server without `redis-server` on `PATH` panics with how to install it
//! ([`NOT_FOUND_MESSAGE`]): a test that needs Redis never passes by skipping.
//!
//! # Writing a plugin's tests
//! - Behaviour: a function that takes a [`Topology`], starts a [`Deployment`] of it and builds
//!   the runtime with the plugin on a [`unique_prefix`]; one `#[tokio::test]` loops over
//!   [`Topology::ALL`]. When cluster and sentinel join [`Topology::ALL`], the test runs on them
//!   unchanged.
//! - Crashes: the work to crash is a scenario run by [`ChildProcess`]; the test kills it with
//!   `SIGKILL` at the point it signalled and checks what the crash left in Redis.
//! - Replication: a [`ReplicaSet`], and `WAIT` on the connection that wrote.
//!
//! ```no_run
//! use redisx_runtime::testing::{Deployment, Topology, unique_prefix};
//! use redisx_runtime::{CacheConfig, RedisX};
//!
//! async fn start_plugin(deployment: &Deployment, test: &str) -> RedisX {
//!     deployment
//!         .redisx_builder()
//!         .key_prefix(unique_prefix(test))
//!         .cache(CacheConfig::default()) // ... and `.plugin(MyPlugin::new(..))`
//!         .build()
//!         .await
//!         .expect("the runtime builds")
//! }
//!
//! // With `#[tokio::test]`.
//! async fn survives_a_restart() {
//!     for &topology in Topology::ALL {
//!         let mut deployment = Deployment::start_owned(topology);
//!         let rx = start_plugin(&deployment, "survives_a_restart").await;
//!         // ... use the plugin, then restart the servers:
//!         if let Some(server) = deployment.standalone_mut() {
//!             server.restart();
//!         }
//!         // ... and check it recovers.
//!         # let _ = rx;
//!     }
//! }
//! # fn main() { drop(survives_a_restart()); }
//! ```
//!
//! # Platform
//! Unix only: the harness runs `sh`, and `redis-server` itself does not run on Windows.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{CacheConfig, ConnectionConfig, RedisX};

mod child;
mod cluster;
mod process;
mod replicas;
mod run;
mod scratch;
mod sentinel;
mod server;
mod topology;

pub use child::{
    ChildBuilder, ChildError, ChildProcess, READY_LINE, READY_TIMEOUT, SCENARIO_ENV, in_scenario,
    signal_ready,
};
pub use cluster::RedisCluster;
pub use process::process_alive;
pub use replicas::{Member, ReplicaSet, SYNC_CHANNEL};
pub use run::{TestOptions, block_on, run, run_on, server_url};
pub use sentinel::{RedisSentinel, SentinelBuilder};
pub use server::{RedisServer, ServerBuilder};
pub use topology::{Deployment, RawConnection, Topology};

/// How long a starting server may take to answer `PING` before the harness gives up.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The message of the panic when `redis-server` cannot be found.
pub const NOT_FOUND_MESSAGE: &str = "redis-server not found on PATH; install it with \
     `apt-get install redis-server` (Debian/Ubuntu) or `brew install redis`";

/// The environment variable that points the tests at an existing server. Only this one:
/// `REDIS_URL`, which applications read, is ignored, so that it can never point a test suite at
/// their data.
pub const TEST_URL_ENV: &str = "REDISX_TEST_URL";

/// A key prefix of its own for one test, so that tests can share one server (for example the one
/// `REDISX_TEST_URL` points at) in parallel without seeing each other's keys.
///
/// The prefix ends with `:` and is unique per call: it holds the test name, the process id, a
/// per-process counter and the start time of the process.
///
/// ```
/// use redisx_runtime::testing::unique_prefix;
///
/// let a = unique_prefix("login");
/// assert!(a.starts_with("redisx-test:login:") && a.ends_with(':'));
/// assert_ne!(a, unique_prefix("login"));
/// ```
pub fn unique_prefix(test_name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static EPOCH: OnceLock<u128> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "redisx-test:{test_name}:{}-{epoch:x}-{n}:",
        std::process::id()
    )
}

/// Finds an executable named `name` in the directories of `PATH`.
///
/// ```
/// use redisx_runtime::testing::find_on_path;
///
/// assert!(find_on_path("sh").is_some());
/// ```
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The path of `redis-server`, or a panic saying how to install it.
///
/// ```no_run
/// let path = redisx_runtime::testing::redis_server_path();
/// # let _ = path;
/// ```
///
/// # Panics
/// When `redis-server` is not on `PATH` (the message is [`NOT_FOUND_MESSAGE`]).
pub fn redis_server_path() -> PathBuf {
    find_on_path("redis-server").unwrap_or_else(|| panic!("{NOT_FOUND_MESSAGE}"))
}

/// A free loopback port, found by binding port 0 and releasing it again: for a test that needs
/// an address where nothing listens, or a port for a server of its own.
///
/// Another process may take it before it is used; the harness retries with a fresh port then.
///
/// ```
/// let port = redisx_runtime::testing::free_port();
/// assert_ne!(port, 0);
/// ```
///
/// # Panics
/// When no loopback socket can be bound at all.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("cannot bind a loopback socket to find a free port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read the address of a bound socket: {e}"))
        .port()
}

/// A redisx runtime with one client (`"default"`) on `url`, the key prefix `prefix` (share it
/// between runtimes that stand for instances of one service) and `cache`.
///
/// ```no_run
/// use redisx_runtime::CacheConfig;
/// use redisx_runtime::testing::{RedisServer, runtime, unique_prefix};
///
/// # #[allow(dead_code)]
/// # async fn demo() {
/// let server = RedisServer::start();
/// let rx = runtime(&server.url(), &unique_prefix("demo"), CacheConfig::default()).await;
/// # let _ = rx;
/// # }
/// ```
///
/// # Panics
/// When `url` is not a Redis URL or the runtime does not build.
pub async fn runtime(url: &str, prefix: &str, cache: CacheConfig) -> RedisX {
    let config = ConnectionConfig::from_url(url)
        .unwrap_or_else(|e| panic!("testing::runtime: `{url}` is not a Redis URL: {e}"));
    RedisX::builder()
        .client("default", config)
        .key_prefix(prefix)
        .cache(cache)
        .build()
        .await
        .unwrap_or_else(|e| panic!("testing::runtime: the runtime on {url} does not build: {e}"))
}

/// A raw redis-rs connection to `url`, with no redisx in between: for tests that check what
/// landed where.
///
/// ```no_run
/// use redisx_runtime::redis;
/// use redisx_runtime::testing::{RedisServer, raw_connection};
///
/// # #[allow(dead_code)]
/// # async fn demo() {
/// let server = RedisServer::start();
/// let mut conn = raw_connection(&server.url()).await;
/// let keys: Vec<String> = redis::cmd("KEYS").arg("myapp:*").query_async(&mut conn).await.unwrap();
/// # let _ = keys;
/// # }
/// ```
///
/// # Panics
/// When `url` is not a Redis URL or the server does not accept the connection.
pub async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap_or_else(|e| panic!("raw_connection: `{url}` is not a Redis URL: {e}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("raw_connection: {url} does not accept a connection: {e}"))
}

/// Runs `check` every `every` until it returns true or `within` has passed; returns whether it
/// became true. For what another process or task does in its own time (a pub/sub message
/// arriving, a reconnect), never for timing assertions.
///
/// ```no_run
/// use std::time::Duration;
/// use redisx_runtime::testing::eventually;
///
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) {
/// let cache = rx.cache().clone();
/// let seen = eventually(Duration::from_secs(2), Duration::from_millis(10), || {
///     let cache = cache.clone();
///     // A stale-while-revalidate refresh runs in the background.
///     async move { cache.stats().refreshes > 0 }
/// })
/// .await;
/// assert!(seen, "the refresh never ran");
/// # }
/// ```
pub async fn eventually<F, Fut>(within: Duration, every: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}
