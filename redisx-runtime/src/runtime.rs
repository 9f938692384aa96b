//! The runtime handle, [`RedisX`], and its builder.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::cache::{Cache, CacheConfig, CacheMode};
use crate::client::{Client, ConnectionConfig};
use crate::error::{Error, ErrorCode, Result};
use crate::metrics::{Metrics, SharedRegistry};
use crate::plugin::{self, Plugin, PluginContext};

static GLOBAL: OnceLock<RedisX> = OnceLock::new();

/// The redisx runtime: named clients, plugins, metrics. Cheap to clone (an `Arc` inside).
///
/// Build it once at startup with [`RedisX::builder`], then [`install`](RedisX::install) it as
/// the process default that the attributes use (or pass it to them with `runtime = expr`).
///
/// ```no_run
/// use redisx_runtime::{CacheConfig, ConnectionConfig, RedisX};
///
/// # #[allow(dead_code)]
/// # async fn start() -> redisx_runtime::Result<()> {
/// let rx = RedisX::builder()
///     .client("default", ConnectionConfig::from_url("redis://127.0.0.1:6379")?)
///     .key_prefix("myapp:")
///     .cache(CacheConfig::default())
///     .build()
///     .await?;
/// rx.install()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisX {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: PluginContext,
    metrics: Arc<Metrics>,
    /// The built-in cache, typed (it is also the first of `plugins`).
    cache: Cache,
    /// Every plugin in start order, with its value for [`RedisX::plugin`].
    plugins: Vec<Started>,
    shutdown_timeout: Duration,
    shut_down: AtomicBool,
}

/// A started plugin: driven through its trait, found by its type.
struct Started {
    plugin: Arc<dyn Plugin>,
    any: Arc<dyn Any + Send + Sync>,
}

impl AsRef<dyn Plugin> for Started {
    fn as_ref(&self) -> &(dyn Plugin + 'static) {
        &*self.plugin
    }
}

impl std::fmt::Debug for RedisX {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisX")
            .field(
                "clients",
                &self.inner.ctx.clients.values().collect::<Vec<_>>(),
            )
            .field("default_client", &self.inner.ctx.default_client)
            .field("key_prefix", &self.inner.ctx.key_prefix)
            .field("plugins", &self.plugin_names())
            .finish_non_exhaustive()
    }
}

impl RedisX {
    /// A builder for a runtime: several clients, a key prefix, the cache's settings, plugins.
    /// For one server with every default, [`RedisX::connect`] is shorter.
    ///
    /// ```no_run
    /// use redisx_runtime::{ConnectionConfig, RedisX};
    ///
    /// # #[allow(dead_code)]
    /// # async fn start() -> redisx_runtime::Result<()> {
    /// let rx = RedisX::builder()
    ///     .client("default", ConnectionConfig::from_url("redis://127.0.0.1:6379")?)
    ///     .key_prefix("myapp:")
    ///     .build()
    ///     .await?;
    /// # let _ = rx;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> RedisXBuilder {
        RedisXBuilder::default()
    }

    /// A runtime with one client, `"default"`, on the server `url` names (see
    /// [`ConnectionConfig::from_url`] for the forms), no key prefix and the default cache.
    ///
    /// The same as `RedisX::builder().client("default", url.parse()?).build()`; use the
    /// [builder](RedisX::builder) for anything more.
    ///
    /// ```no_run
    /// use redisx_runtime::RedisX;
    ///
    /// # #[allow(dead_code)]
    /// # async fn start() -> redisx_runtime::Result<()> {
    /// let rx = RedisX::connect("redis://127.0.0.1:6379").await?;
    /// rx.install()?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<RedisX> {
        Self::builder()
            .client("default", ConnectionConfig::from_url(url)?)
            .build()
            .await
    }

    /// [`RedisX::connect`] to the server the environment variable `REDIS_URL` names, or to
    /// [`DEFAULT_URL`](Self::DEFAULT_URL) (`redis://127.0.0.1:6379`) when it is unset or
    /// empty. A value that is not valid Unicode is an [`ErrorCode::ConfigInvalid`] error.
    ///
    /// ```no_run
    /// use redisx_runtime::RedisX;
    ///
    /// # #[allow(dead_code)]
    /// # async fn start() -> redisx_runtime::Result<()> {
    /// // REDIS_URL=rediss://app:secret@cache.internal:6380/2 ./my-service
    /// let rx = RedisX::from_env().await?;
    /// # let _ = rx;
    /// # Ok(()) }
    /// ```
    pub async fn from_env() -> Result<RedisX> {
        let url = url_from_env(std::env::var_os(Self::URL_ENV))?;
        Self::connect(&url).await
    }

    /// The environment variable [`RedisX::from_env`] reads: `REDIS_URL`.
    pub const URL_ENV: &'static str = "REDIS_URL";

    /// The server [`RedisX::from_env`] connects to when `REDIS_URL` is unset.
    pub const DEFAULT_URL: &'static str = "redis://127.0.0.1:6379";

    /// Makes this runtime the process-wide default that the attributes use.
    ///
    /// A second `install` is an error ([`ErrorCode::ConfigAlreadyInstalled`]), never a silent
    /// replace; use `runtime = expr` on an attribute to use another runtime.
    ///
    /// ```no_run
    /// use redisx_runtime::{ErrorCode, RedisX};
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo() -> redisx_runtime::Result<()> {
    /// let rx = RedisX::connect("redis://127.0.0.1:6379").await?;
    /// rx.install()?; // `#[cached]` functions now use `rx`
    /// let again = rx.install().unwrap_err();
    /// assert_eq!(again.code(), ErrorCode::ConfigAlreadyInstalled);
    /// # Ok(()) }
    /// ```
    pub fn install(&self) -> Result<()> {
        GLOBAL.set(self.clone()).map_err(|_| {
            Error::new(
                ErrorCode::ConfigAlreadyInstalled,
                "a redisx runtime is already installed; it cannot be replaced (pass `runtime = ...` to an attribute to use another one)",
            )
        })
    }

    /// The installed runtime, if any.
    ///
    /// ```
    /// use redisx_runtime::RedisX;
    ///
    /// // `GET /metrics`, far from `main`: empty until a runtime is installed.
    /// fn metrics_handler() -> String {
    ///     RedisX::global().map(|rx| rx.metrics_text()).unwrap_or_default()
    /// }
    /// # let _ = metrics_handler();
    /// ```
    pub fn global() -> Option<RedisX> {
        GLOBAL.get().cloned()
    }

    /// The installed runtime, by reference (no `Arc` clone): the hot path of the attributes.
    pub(crate) fn global_ref() -> Option<&'static RedisX> {
        GLOBAL.get()
    }

    /// The default client.
    ///
    /// # Panics
    /// If the runtime was built without any client (an L1-only cache); use
    /// [`RedisX::try_client`] there.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use redisx_runtime::redis;
    ///
    /// let visits: i64 = rx.client().query(redis::cmd("INCR").arg("visits:home")).await?;
    /// # let _ = visits;
    /// # Ok(()) }
    /// ```
    pub fn client(&self) -> Client {
        self.try_client()
            .expect("this redisx runtime has no Redis client (it was built without `.client(..)`)")
    }

    /// The default client, or an error when the runtime has none.
    ///
    /// ```
    /// use redisx_runtime::{CacheConfig, CacheMode, ErrorCode, RedisX};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> redisx_runtime::Result<()> {
    /// // An L1-only cache needs no Redis, and has no client.
    /// let rx = RedisX::builder()
    ///     .cache(CacheConfig::default().mode(CacheMode::L1Only))
    ///     .build()
    ///     .await?;
    /// assert_eq!(rx.try_client().unwrap_err().code(), ErrorCode::ConfigUnknownClient);
    /// # Ok(()) }
    /// ```
    pub fn try_client(&self) -> Result<Client> {
        self.inner.ctx.client()
    }

    /// A client by name.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use redisx_runtime::{redis, ErrorCode};
    ///
    /// // Built with `.client("sessions", ...)` beside the default client.
    /// let sessions = rx.named_client("sessions")?;
    /// sessions.query::<()>(redis::cmd("DEL").arg("session:8f3a")).await?;
    /// assert_eq!(rx.named_client("sesions").unwrap_err().code(), ErrorCode::ConfigUnknownClient);
    /// # Ok(()) }
    /// ```
    pub fn named_client(&self, name: &str) -> Result<Client> {
        self.inner.ctx.named_client(name)
    }

    /// The cache service.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use std::time::Duration;
    ///
    /// let cache = rx.cache();
    /// cache.set("flags:dark-mode", &true, Some(Duration::from_secs(60))).await?;
    /// assert_eq!(cache.get::<bool>("flags:dark-mode").await?, Some(true));
    /// # Ok(()) }
    /// ```
    pub fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    /// A plugin added with [`RedisXBuilder::plugin`], by its type.
    ///
    /// ```no_run
    /// # use redisx_runtime::plugin::{Plugin, PluginContext, PluginFuture};
    /// # use redisx_runtime::Result;
    /// # struct AuditLog;
    /// # impl Plugin for AuditLog {
    /// #     fn name(&self) -> &'static str { "audit-log" }
    /// #     fn start<'a>(&'a self, _: &'a PluginContext) -> PluginFuture<'a, Result<()>> {
    /// #         Box::pin(async { Ok(()) })
    /// #     }
    /// #     fn stop(&self, _: tokio::time::Instant) -> PluginFuture<'_, ()> { Box::pin(async {}) }
    /// # }
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// // Built with `.plugin(AuditLog)`.
    /// let audit: std::sync::Arc<AuditLog> = rx.plugin::<AuditLog>().expect("added at startup");
    /// # let _ = audit;
    /// # Ok(()) }
    /// ```
    pub fn plugin<P: Plugin>(&self) -> Option<Arc<P>> {
        self.inner
            .plugins
            .iter()
            .find_map(|p| p.any.clone().downcast::<P>().ok())
    }

    /// The names of the plugins, in the order they started (`"cache"` first).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// // Built with `.plugin(AuditLog)`, which depends on the cache.
    /// assert_eq!(rx.plugin_names(), ["cache", "audit-log"]);
    /// # Ok(()) }
    /// ```
    pub fn plugin_names(&self) -> Vec<&'static str> {
        self.inner.plugins.iter().map(|p| p.plugin.name()).collect()
    }

    /// The app key prefix (`""` when none was set).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use redisx_runtime::redis;
    ///
    /// // A raw command names the full key: `myapp:session:8f3a` with `.key_prefix("myapp:")`.
    /// let key = format!("{}session:8f3a", rx.key_prefix());
    /// let ttl: i64 = rx.client().query(redis::cmd("TTL").arg(&key)).await?;
    /// # let _ = ttl;
    /// # Ok(()) }
    /// ```
    pub fn key_prefix(&self) -> &str {
        &self.inner.ctx.key_prefix
    }

    /// The metrics registry rendered in the Prometheus text format.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// // The body of `GET /metrics`.
    /// let body = rx.metrics_text();
    /// assert!(body.contains("redisx_command_duration_seconds"));
    /// # Ok(()) }
    /// ```
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render()
    }

    /// The registry the metrics live in (the one passed to the builder, or the runtime's own).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use redisx_runtime::prometheus_client::metrics::counter::Counter;
    ///
    /// // An application metric beside redisx's, rendered by `metrics_text()` with them.
    /// let orders: Counter = Counter::default();
    /// rx.registry()
    ///     .lock()
    ///     .unwrap()
    ///     .register("orders_placed", "Orders placed", orders.clone());
    /// orders.inc();
    /// # Ok(()) }
    /// ```
    pub fn registry(&self) -> SharedRegistry {
        self.inner.metrics.registry.clone()
    }

    /// Whether [`shutdown`](RedisX::shutdown) was called.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// assert!(!rx.is_shut_down());
    /// rx.shutdown().await;
    /// assert!(rx.is_shut_down());
    /// # Ok(()) }
    /// ```
    pub fn is_shut_down(&self) -> bool {
        self.inner.shut_down.load(Ordering::SeqCst)
    }

    /// Stops every plugin, in reverse start order and within the shutdown timeout
    /// ([`RedisXBuilder::shutdown_timeout`]; a plugin still stopping then is left behind,
    /// logged), then closes every connection. Afterwards Redis calls fail with
    /// [`ErrorCode::ConnectionClosed`], L1 is emptied and cached functions run uncached.
    /// With the `otlp` feature, it then flushes every OTLP exporter built by
    /// `telemetry::otlp()` whose guard is alive (the exporters keep running). Idempotent.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use redisx_runtime::{redis, ErrorCode};
    ///
    /// // On SIGTERM, before the process exits:
    /// rx.shutdown().await;
    /// let err = rx.client().query::<()>(&redis::cmd("PING")).await.unwrap_err();
    /// assert_eq!(err.code(), ErrorCode::ConnectionClosed);
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self) {
        if self.inner.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let deadline = tokio::time::Instant::now() + self.inner.shutdown_timeout;
        stop_all(&self.inner.plugins, deadline).await;
        for client in self.inner.ctx.clients.values() {
            client.shutdown();
        }
        // Spans of the last calls: sent now, while the process is still there to send them.
        #[cfg(feature = "otlp")]
        crate::telemetry::flush_registered().await;
        tokio::task::yield_now().await;
    }
}

/// Stops `plugins` in reverse order, each bounded by `deadline`.
async fn stop_all(plugins: &[Started], deadline: tokio::time::Instant) {
    for p in plugins.iter().rev() {
        let plugin = &p.plugin;
        if tokio::time::timeout_at(deadline, plugin.stop(deadline))
            .await
            .is_err()
        {
            tracing::warn!(
                plugin = plugin.name(),
                "a plugin did not stop before the shutdown deadline; going on without it"
            );
        }
    }
}

/// Builds a [`RedisX`]; see [`RedisX::builder`].
#[derive(Default)]
pub struct RedisXBuilder {
    clients: Vec<(String, ConnectionConfig)>,
    default_client: Option<String>,
    key_prefix: String,
    cache: Option<CacheConfig>,
    registry: Option<SharedRegistry>,
    plugins: Vec<Started>,
    shutdown_timeout: Option<Duration>,
    record_keys: bool,
}

impl std::fmt::Debug for RedisXBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisXBuilder")
            .field("clients", &self.clients)
            .field("default_client", &self.default_client)
            .field("key_prefix", &self.key_prefix)
            .field("cache", &self.cache)
            .field(
                "plugins",
                &self
                    .plugins
                    .iter()
                    .map(|p| p.plugin.name())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl RedisXBuilder {
    /// Adds a named client. The first one added is the default unless
    /// [`default_client`](Self::default_client) says otherwise.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo() -> redisx_runtime::Result<()> {
    /// use redisx_runtime::{ConnectionConfig, RedisX};
    ///
    /// let rx = RedisX::builder()
    ///     .client("default", ConnectionConfig::from_url("redis://cache.internal:6379")?)
    ///     .client("sessions", ConnectionConfig::from_url("redis://sessions.internal:6379/1")?)
    ///     .build()
    ///     .await?;
    /// let sessions = rx.named_client("sessions")?;
    /// # let _ = sessions;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn client(mut self, name: impl Into<String>, config: ConnectionConfig) -> Self {
        self.clients.push((name.into(), config));
        self
    }

    /// Chooses the default client by name.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo() -> redisx_runtime::Result<()> {
    /// use redisx_runtime::{ConnectionConfig, RedisX};
    ///
    /// let rx = RedisX::builder()
    ///     .client("jobs", ConnectionConfig::from_url("redis://jobs.internal:6379")?)
    ///     .client("cache", ConnectionConfig::from_url("redis://cache.internal:6379")?)
    ///     .default_client("cache") // `rx.client()` and the cache use it
    ///     .build()
    ///     .await?;
    /// # let _ = rx;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn default_client(mut self, name: impl Into<String>) -> Self {
        self.default_client = Some(name.into());
        self
    }

    /// The app prefix of every key (e.g. `myapp:`); empty by default.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo() -> redisx_runtime::Result<()> {
    /// use redisx_runtime::{ConnectionConfig, RedisX};
    ///
    /// let rx = RedisX::builder()
    ///     .client("default", ConnectionConfig::from_url("redis://127.0.0.1:6379")?)
    ///     .key_prefix("billing:") // services sharing a server keep apart
    ///     .build()
    ///     .await?;
    /// assert_eq!(rx.key_prefix(), "billing:");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Configures the cache plugin (default: [`CacheConfig::default`]).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo() -> redisx_runtime::Result<()> {
    /// use std::time::Duration;
    /// use redisx_runtime::{CacheConfig, ConnectionConfig, RedisX};
    ///
    /// let rx = RedisX::builder()
    ///     .client("default", ConnectionConfig::from_url("redis://127.0.0.1:6379")?)
    ///     .cache(
    ///         CacheConfig::default()
    ///             .default_ttl(Duration::from_secs(300))
    ///             .l1_max_entries(50_000),
    ///     )
    ///     .build()
    ///     .await?;
    /// # let _ = rx;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn cache(mut self, config: CacheConfig) -> Self {
        self.cache = Some(config);
        self
    }

    /// Adds a plugin: started by `build()` after the plugins it depends on, stopped by
    /// [`RedisX::shutdown`] before them; found again with [`RedisX::plugin`].
    ///
    /// ```no_run
    /// use redisx_runtime::{ConnectionConfig, RedisX};
    /// # use redisx_runtime::plugin::{Plugin, PluginContext, PluginFuture};
    /// # use redisx_runtime::Result;
    /// # struct AuditLog;
    /// # impl Plugin for AuditLog {
    /// #     fn name(&self) -> &'static str { "audit-log" }
    /// #     fn start<'a>(&'a self, _: &'a PluginContext) -> PluginFuture<'a, Result<()>> {
    /// #         Box::pin(async { Ok(()) })
    /// #     }
    /// #     fn stop(&self, _: tokio::time::Instant) -> PluginFuture<'_, ()> { Box::pin(async {}) }
    /// # }
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo() -> redisx_runtime::Result<()> {
    /// let rx = RedisX::builder()
    ///     .client("default", ConnectionConfig::from_url("redis://127.0.0.1:6379")?)
    ///     .plugin(AuditLog) // a unit struct that implements `Plugin`
    ///     .build()
    ///     .await?;
    /// assert_eq!(rx.plugin_names(), ["cache", "audit-log"]);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn plugin<P: Plugin>(mut self, plugin: P) -> Self {
        let plugin = Arc::new(plugin);
        self.plugins.push(Started {
            plugin: plugin.clone(),
            any: plugin,
        });
        self
    }

    /// How long [`RedisX::shutdown`] waits for the plugins to stop, all together (default
    /// 10 s).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo() -> redisx_runtime::Result<()> {
    /// use std::time::Duration;
    /// use redisx_runtime::{ConnectionConfig, RedisX};
    ///
    /// let rx = RedisX::builder()
    ///     .client("default", ConnectionConfig::from_url("redis://127.0.0.1:6379")?)
    ///     .shutdown_timeout(Duration::from_secs(3)) // well inside the pod's grace period
    ///     .build()
    ///     .await?;
    /// # let _ = rx;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = Some(timeout);
        self
    }

    /// Lets spans record the keys they work on (`cache.key`); off by default, because keys can
    /// carry personal data (`user:{email}`). Command spans never carry arguments.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo() -> redisx_runtime::Result<()> {
    /// use redisx_runtime::{ConnectionConfig, RedisX};
    /// let rx = RedisX::builder()
    ///     .client("default", ConnectionConfig::from_url("redis://127.0.0.1:6379")?)
    ///     .record_keys(true)
    ///     .build()
    ///     .await?;
    /// # let _ = rx;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn record_keys(mut self, on: bool) -> Self {
        self.record_keys = on;
        self
    }

    /// Registers the redisx metrics in this registry instead of a private one.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo() -> redisx_runtime::Result<()> {
    /// use std::sync::{Arc, Mutex};
    /// use redisx_runtime::prometheus_client::registry::Registry;
    /// use redisx_runtime::{ConnectionConfig, RedisX};
    ///
    /// // The application's registry, served at `/metrics` with its own metrics.
    /// let registry = Arc::new(Mutex::new(Registry::default()));
    /// let rx = RedisX::builder()
    ///     .client("default", ConnectionConfig::from_url("redis://127.0.0.1:6379")?)
    ///     .registry(registry.clone())
    ///     .build()
    ///     .await?;
    /// assert!(Arc::ptr_eq(&rx.registry(), &registry));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn registry(mut self, registry: SharedRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Connects every client (unless configured `lazy`), checks that its server is Redis 7.0
    /// or newer ([`ErrorCode::ConnectionUnsupportedServer`] otherwise), preloads the Lua
    /// scripts and starts the plugins in dependency order (the cache first). A plugin that
    /// fails to start fails the build, after the ones already started are stopped.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo() -> redisx_runtime::Result<()> {
    /// use redisx_runtime::{ConnectionConfig, ErrorCode, RedisX};
    ///
    /// let built = RedisX::builder()
    ///     .client("default", ConnectionConfig::from_url("redis://127.0.0.1:6379")?)
    ///     .build()
    ///     .await;
    /// let rx = match built {
    ///     Ok(rx) => rx,
    ///     Err(e) if e.code() == ErrorCode::ConnectionUnsupportedServer => {
    ///         panic!("redisx needs Redis 7.0 or newer: {e}")
    ///     }
    ///     Err(e) => return Err(e),
    /// };
    /// # let _ = rx;
    /// # Ok(()) }
    /// ```
    pub async fn build(self) -> Result<RedisX> {
        let cache_cfg = self.cache.unwrap_or_default();
        cache_cfg.validate()?;
        let mut seen = std::collections::HashSet::new();
        for (name, cfg) in &self.clients {
            cfg.validate()
                .map_err(|e| e.with_context("client", name.clone()))?;
            if !seen.insert(name.as_str()) {
                return Err(Error::new(
                    ErrorCode::ConfigInvalid,
                    format!("the client name `{name}` is used twice"),
                ));
            }
        }
        let default_client = match self.default_client {
            Some(name) if seen.contains(name.as_str()) => Some(name),
            Some(name) => {
                return Err(Error::new(
                    ErrorCode::ConfigUnknownClient,
                    format!("the default client `{name}` is not among the configured clients"),
                ));
            }
            None => self.clients.first().map(|(n, _)| n.clone()),
        };
        crate::key::validate_prefix(&self.key_prefix)?;
        let metrics = Arc::new(Metrics::new(self.registry));
        let mut clients = HashMap::new();
        for (name, cfg) in self.clients {
            let lazy = cfg.lazy;
            let client = Client::connect(&name, cfg, metrics.clone()).await?;
            if !lazy {
                client.check_server_version().await?;
                for s in crate::script::builtin() {
                    client
                        .load_script(&s.script)
                        .await
                        .map_err(|e| e.with_context("script", s.name))?;
                }
            }
            clients.insert(name, client);
        }
        let ctx = PluginContext {
            clients,
            default_client,
            key_prefix: self.key_prefix,
            registry: metrics.registry.clone(),
            record_keys: self.record_keys,
        };
        let cache_client = if cache_cfg.mode_value() == CacheMode::L1Only {
            None
        } else {
            let name = cache_cfg.client.clone().or_else(|| ctx.default_client.clone()).ok_or_else(|| {
                Error::new(
                    ErrorCode::ConfigInvalid,
                    "the cache needs a Redis client: add one with `.client(name, config)`, or use `CacheMode::L1Only`",
                )
            })?;
            Some(ctx.clients.get(&name).cloned().ok_or_else(|| {
                Error::new(
                    ErrorCode::ConfigUnknownClient,
                    format!("the cache's client `{name}` is not among the configured clients"),
                )
            })?)
        };
        let cache = Cache::new(cache_cfg, &ctx, cache_client);
        let builtin = Arc::new(cache.clone());
        let mut plugins = vec![Started {
            plugin: builtin.clone(),
            any: builtin,
        }];
        plugins.extend(self.plugins);
        let plugins = plugin::start_order(plugins)?;
        for (i, p) in plugins.iter().enumerate() {
            if let Err(e) = p.plugin.start(&ctx).await {
                let deadline = tokio::time::Instant::now() + DEFAULT_SHUTDOWN_TIMEOUT;
                stop_all(&plugins[..i], deadline).await;
                return Err(e.with_context("plugin", p.plugin.name()));
            }
        }
        Ok(RedisX {
            inner: Arc::new(Inner {
                ctx,
                metrics,
                cache,
                plugins,
                shutdown_timeout: self.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
                shut_down: AtomicBool::new(false),
            }),
        })
    }
}

/// The URL [`RedisX::from_env`] uses, given the value of `REDIS_URL`.
fn url_from_env(value: Option<std::ffi::OsString>) -> Result<String> {
    match value {
        None => Ok(RedisX::DEFAULT_URL.to_owned()),
        Some(v) => match v.into_string() {
            Ok(s) if s.trim().is_empty() => Ok(RedisX::DEFAULT_URL.to_owned()),
            Ok(s) => Ok(s.trim().to_owned()),
            Err(_) => Err(Error::new(
                ErrorCode::ConfigInvalid,
                format!(
                    "the environment variable `{}` is not valid Unicode",
                    RedisX::URL_ENV
                ),
            )),
        },
    }
}

/// How long a shutdown waits for the plugins to stop, unless configured.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_url_defaults_when_unset_or_empty() {
        assert_eq!(url_from_env(None).unwrap(), "redis://127.0.0.1:6379");
        assert_eq!(url_from_env(Some(" ".into())).unwrap(), RedisX::DEFAULT_URL);
        assert_eq!(
            url_from_env(Some(" redis://h:1/2\n".into())).unwrap(),
            "redis://h:1/2"
        );
    }

    #[cfg(unix)]
    #[test]
    fn env_url_must_be_unicode() {
        use std::os::unix::ffi::OsStringExt as _;
        let bad = std::ffi::OsString::from_vec(vec![0xff, 0xfe]);
        let err = url_from_env(Some(bad)).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConfigInvalid);
        assert!(err.to_string().contains("REDIS_URL"), "{err}");
    }
}
