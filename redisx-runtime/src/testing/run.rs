//! [`run`]: one test body with a fresh runtime on a key prefix of its own, what
//! `#[redisx::test]` expands to.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;

use futures_util::FutureExt as _;

use super::{RedisServer, unique_prefix};
use crate::cache::glob::glob_escape;
use crate::cache::scan_match;
use crate::{CacheConfig, ConnectionConfig, RedisX, RedisXBuilder};

/// How [`run`] sets a test up; built by `#[redisx::test]` from its arguments.
///
/// ```
/// use redisx_runtime::testing::TestOptions;
/// use redisx_runtime::{CacheConfig, CacheMode, RedisXBuilder};
///
/// fn l2_only(builder: RedisXBuilder) -> RedisXBuilder {
///     builder.cache(CacheConfig::default().mode(CacheMode::L2Only))
/// }
///
/// let options = TestOptions::new("login").config(l2_only).keep_keys(true);
/// assert_eq!(options.name(), "login");
/// assert!(options.keeps_keys());
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct TestOptions {
    name: &'static str,
    config: Option<fn(RedisXBuilder) -> RedisXBuilder>,
    keep_keys: bool,
}

impl TestOptions {
    /// Options for the test `name` (it appears in the key prefix): every default.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            config: None,
            keep_keys: false,
        }
    }

    /// Customises the runtime's builder (its cache, plugins, more clients). The builder comes
    /// with the `"default"` client on the test server and the default cache; the key prefix is
    /// set after `config` ran, so each test keeps a prefix of its own.
    pub fn config(mut self, config: fn(RedisXBuilder) -> RedisXBuilder) -> Self {
        self.config = Some(config);
        self
    }

    /// Leaves the test's keys in Redis when it ends, to look at them (they are deleted by
    /// default). The prefix is printed so they can be found.
    pub fn keep_keys(mut self, keep: bool) -> Self {
        self.keep_keys = keep;
        self
    }

    /// The test's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the keys stay when the test ends.
    pub fn keeps_keys(&self) -> bool {
        self.keep_keys
    }
}

/// The URL of the server [`run`] and `#[redisx::test]` use in this process: the one
/// `REDISX_TEST_URL` names, else one `redis-server` started on first use on a free loopback
/// port (it stops with the process). For a test that looks at the server from outside.
///
/// ```no_run
/// let url = redisx_runtime::testing::server_url(); // "redis://127.0.0.1:PORT"
/// # let _ = url;
/// ```
///
/// # Panics
/// When no server is named and `redis-server` is not installed (the message says how to).
pub fn server_url() -> String {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start).url()
}

/// Runs one test body: a fresh [`RedisX`] on a key prefix of its own (on the test server, see
/// [`TestOptions`]), set as the scope of the body's task ([`RedisX::scope`]), so code under
/// test with `#[cached]` and friends uses it without `runtime = ...`. When the body returns,
/// and also when it panics, the keys under the prefix are deleted (unless
/// [`keep_keys`](TestOptions::keep_keys)) and the runtime is shut down; a panic is then
/// raised again, so the test fails with its own message.
///
/// The server is the one `REDISX_TEST_URL` names, else one `redis-server` per test process
/// started on a free loopback port on first use (see [`RedisServer::start`]).
///
/// ```no_run
/// use redisx_runtime::testing::{self, TestOptions};
///
/// // The body of a `#[tokio::test]`:
/// # #[allow(dead_code)]
/// async fn stores_a_user() {
///     testing::run(TestOptions::new("stores_a_user"), |rx| async move {
///         rx.cache().set("user:1", &"Ada".to_owned(), None).await.unwrap();
///         let name: Option<String> = rx.cache().get("user:1").await.unwrap();
///         assert_eq!(name.as_deref(), Some("Ada"));
///     })
///     .await;
/// }
/// ```
///
/// # Panics
/// When the runtime cannot be built (the message says why), and with the body's own panic.
pub async fn run<F, Fut>(options: TestOptions, body: F) -> Fut::Output
where
    F: FnOnce(RedisX) -> Fut,
    Fut: Future,
{
    run_at(&server_url(), options, body).await
}

/// [`run`] on `deployment` instead of the test server: a test body written once for every
/// [`Topology`](super::Topology). The keys under the prefix are deleted on every master.
///
/// ```no_run
/// use redisx_runtime::testing::{self, Deployment, TestOptions, Topology};
///
/// # #[allow(dead_code)]
/// async fn stores_a_user(topology: Topology) {
///     let deployment = Deployment::start(topology);
///     testing::run_on(&deployment, TestOptions::new("stores_a_user"), |rx| async move {
///         rx.cache().set("user:1", &"Ada".to_owned(), None).await.unwrap();
///     })
///     .await;
/// }
/// ```
///
/// # Panics
/// As [`run`].
pub async fn run_on<F, Fut>(
    deployment: &super::Deployment,
    options: TestOptions,
    body: F,
) -> Fut::Output
where
    F: FnOnce(RedisX) -> Fut,
    Fut: Future,
{
    run_at(&deployment.url(), options, body).await
}

async fn run_at<F, Fut>(url: &str, options: TestOptions, body: F) -> Fut::Output
where
    F: FnOnce(RedisX) -> Fut,
    Fut: Future,
{
    let config = ConnectionConfig::from_url(url)
        .unwrap_or_else(|e| panic!("redisx::testing: `{url}` is not a Redis URL: {e:#}"));
    let mut builder = RedisX::builder()
        .client("default", config)
        .cache(CacheConfig::default());
    if let Some(customise) = options.config {
        builder = customise(builder);
    }
    let prefix = unique_prefix(options.name);
    let rx = builder
        .key_prefix(prefix.clone())
        .build()
        .await
        .unwrap_or_else(|e| {
            panic!("redisx::testing: the test runtime on {url} does not build: {e:#}")
        });
    let outcome = rx
        .scope(AssertUnwindSafe(body(rx.clone())).catch_unwind())
        .await;
    if options.keep_keys {
        eprintln!(
            "redisx::testing: the keys of `{}` are kept under `{prefix}` on {url}",
            options.name
        );
    } else if let Err(e) = delete_prefixed(&rx, &prefix).await {
        eprintln!("redisx::testing: could not delete the keys under `{prefix}`: {e:#}");
    }
    rx.shutdown().await;
    outcome.unwrap_or_else(|panic: Box<dyn Any + Send>| std::panic::resume_unwind(panic))
}

/// [`run`] on a new current-thread tokio runtime (time and I/O enabled), for a plain `#[test]`
/// function: what `#[redisx::test]` expands to.
///
/// ```no_run
/// use redisx_runtime::testing::{self, TestOptions};
///
/// // The body of a `#[test]`:
/// # #[allow(dead_code)]
/// fn counts_visits() {
///     testing::block_on(TestOptions::new("counts_visits"), |rx| async move {
///         let n: i64 = rx.client().query(redisx_runtime::redis::cmd("INCR").arg(rx.cache().full_key("visits"))).await.unwrap();
///         assert_eq!(n, 1);
///     });
/// }
/// ```
///
/// # Panics
/// As [`run`], and when the tokio runtime cannot be built.
pub fn block_on<F, Fut>(options: TestOptions, body: F) -> Fut::Output
where
    F: FnOnce(RedisX) -> Fut,
    Fut: Future,
{
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("redisx::testing: cannot build a tokio runtime: {e}"))
        .block_on(run(options, body))
}

/// Deletes every key whose name starts with `prefix`: the cache's `SCAN MATCH` (the prefix
/// escaped) and its `UNLINK` per cluster slot and chunk.
async fn delete_prefixed(rx: &RedisX, prefix: &str) -> crate::Result<()> {
    let client = rx.client();
    let keys = scan_match(&client, &format!("{}*", glob_escape(prefix))).await?;
    rx.cache().unlink(&client, &keys).await.map(drop)
}
