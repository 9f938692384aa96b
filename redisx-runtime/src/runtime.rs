//! The runtime handle, [`RedisX`] (built by [`RedisXBuilder`](crate::RedisXBuilder)).

use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::builder::RedisXBuilder;
use crate::cache::Cache;
use crate::client::{Client, ConnectionConfig};
use crate::error::{Error, ErrorCode, Result};
use crate::idempotency::Idempotency;
use crate::life::Life;
use crate::lock::Locks;
use crate::metrics::{Metrics, SharedRegistry};
use crate::plugin::{Plugin, PluginContext};
use crate::rate_limit::RateLimiter;
use crate::streams::Streams;

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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) ctx: PluginContext,
    pub(crate) metrics: Arc<Metrics>,
    /// The built-in cache, typed (it is also the first of `plugins`).
    pub(crate) cache: Cache,
    /// The built-in lock service, typed (it is also one of `plugins`).
    pub(crate) locks: Locks,
    pub(crate) rate_limiter: RateLimiter,
    pub(crate) idempotency: Idempotency,
    pub(crate) streams: Streams,
    /// Every plugin in start order, with its value for [`RedisX::plugin`].
    pub(crate) plugins: Vec<Started>,
    pub(crate) shutdown_timeout: Duration,
    /// Running, shut down, or gone with its tokio runtime.
    pub(crate) life: Arc<Life>,
}

/// A started plugin: driven through its trait, found by its type.
pub(crate) struct Started {
    pub(crate) plugin: Arc<dyn Plugin>,
    pub(crate) any: Arc<dyn Any + Send + Sync>,
}

impl Started {
    /// A plugin, reachable both as a plugin and by its type.
    pub(crate) fn of<P: Plugin>(plugin: P) -> Self {
        let plugin = Arc::new(plugin);
        Self {
            plugin: plugin.clone(),
            any: plugin,
        }
    }
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

    /// The lock service (configured with [`RedisXBuilder::locks`], else the defaults).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use redisx_runtime::lock::LockOptions;
    ///
    /// let guard = rx.locks().acquire("order:7", &LockOptions::new()).await?;
    /// // ... one instance at a time ...
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn locks(&self) -> &Locks {
        &self.inner.locks
    }

    /// The rate limiter (configured with [`RedisXBuilder::rate_limit`], else the defaults).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::rate_limit::Limit;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let d = rx
    ///     .rate_limiter()
    ///     .check("ip:10.0.0.1", &Limit::fixed_window(100, Duration::from_secs(60)))
    ///     .await?;
    /// # let _ = d;
    /// # Ok(()) }
    /// ```
    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.inner.rate_limiter
    }

    /// The idempotency service (configured with [`RedisXBuilder::idempotency`], else the
    /// defaults).
    ///
    /// ```no_run
    /// use redisx_runtime::idempotency::IdempotencyOptions;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let n: u64 = rx
    ///     .idempotency()
    ///     .run("import:2026-12-07", "", &IdempotencyOptions::new(), async {
    ///         Ok::<_, redisx_runtime::Error>(42) // runs once per key
    ///     })
    ///     .await?;
    /// # let _ = n;
    /// # Ok(()) }
    /// ```
    pub fn idempotency(&self) -> &Idempotency {
        &self.inner.idempotency
    }

    /// The streams service (configured with [`RedisXBuilder::streams`], else the defaults).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let keys = rx.streams().keys("orders", false)?;
    /// # let _ = keys;
    /// # Ok(()) }
    /// ```
    pub fn streams(&self) -> &Streams {
        &self.inner.streams
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

    /// The names of the plugins, in the order they started (`"cache"` and `"locks"` first).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// // Built with `.plugin(AuditLog)`, which depends on the cache.
    /// assert_eq!(rx.plugin_names(), ["cache", "locks", "rate_limit", "idempotency", "streams", "audit-log"]);
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
        self.inner.life.is_shut_down()
    }

    /// Neither shut down nor gone with its tokio runtime (the hot path's check).
    #[inline]
    pub(crate) fn is_running(&self) -> bool {
        self.inner.life.is_running()
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
        if !self.inner.life.shut_down() {
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
pub(crate) async fn stop_all(plugins: &[Started], deadline: tokio::time::Instant) {
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
