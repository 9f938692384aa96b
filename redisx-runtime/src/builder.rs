//! [`RedisXBuilder`]: clients, key prefix, cache, plugins and metrics, checked and connected by
//! [`RedisXBuilder::build`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{Cache, CacheConfig, CacheMode};
use crate::client::{Client, ConnectionConfig};
use crate::error::{Error, ErrorCode, Result};
use crate::idempotency::{Idempotency, IdempotencyConfig};
use crate::life::Life;
use crate::lock::{LockConfig, Locks};
use crate::metrics::{Metrics, SharedRegistry};
use crate::plugin::{self, Plugin, PluginContext};
use crate::rate_limit::{RateLimitConfig, RateLimiter};
use crate::runtime::{Inner, RedisX, Started, stop_all};
use crate::streams::{Streams, StreamsConfig};

/// Builds a [`RedisX`]; see [`RedisX::builder`].
#[derive(Default)]
pub struct RedisXBuilder {
    clients: Vec<(String, ConnectionConfig)>,
    default_client: Option<String>,
    key_prefix: String,
    cache: Option<CacheConfig>,
    locks: Option<LockConfig>,
    rate_limit: Option<RateLimitConfig>,
    idempotency: Option<IdempotencyConfig>,
    streams: Option<StreamsConfig>,
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
            .field("locks", &self.locks)
            .field("rate_limit", &self.rate_limit)
            .field("idempotency", &self.idempotency)
            .field("streams", &self.streams)
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

    /// Configures the lock plugin, `rx.locks()` (default: [`LockConfig::default`]; the
    /// plugin is always there, and costs nothing until a lock is taken).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo() -> redisx_runtime::Result<()> {
    /// use std::time::Duration;
    /// use redisx_runtime::lock::{LockConfig, RetryStrategy};
    /// use redisx_runtime::{ConnectionConfig, RedisX};
    ///
    /// let rx = RedisX::builder()
    ///     .client("default", ConnectionConfig::from_url("redis://127.0.0.1:6379")?)
    ///     .locks(
    ///         LockConfig::default()
    ///             .default_ttl(Duration::from_secs(10))
    ///             .retry(RetryStrategy::Fixed(Duration::from_millis(50)))
    ///             .wait(Duration::from_secs(2)),
    ///     )
    ///     .build()
    ///     .await?;
    /// # let _ = rx;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn locks(mut self, config: LockConfig) -> Self {
        self.locks = Some(config);
        self
    }

    /// Configures the rate limiter, `rx.rate_limiter()` (default:
    /// [`RateLimitConfig::default`]).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::{ConnectionConfig, RedisX};
    /// use redisx_runtime::rate_limit::{Limit, RateLimitConfig};
    ///
    /// # #[allow(dead_code)]
    /// # async fn start() -> redisx_runtime::Result<()> {
    /// let rx = RedisX::builder()
    ///     .client("default", ConnectionConfig::from_url("redis://127.0.0.1:6379")?)
    ///     .rate_limit(
    ///         RateLimitConfig::default()
    ///             .policy("login", [Limit::sliding_window(5, Duration::from_secs(60))]),
    ///     )
    ///     .build()
    ///     .await?;
    /// # let _ = rx;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn rate_limit(mut self, config: RateLimitConfig) -> Self {
        self.rate_limit = Some(config);
        self
    }

    /// Configures the idempotency plugin, `rx.idempotency()` (default:
    /// [`IdempotencyConfig::default`]).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::{ConnectionConfig, RedisX};
    /// use redisx_runtime::idempotency::IdempotencyConfig;
    ///
    /// # #[allow(dead_code)]
    /// # async fn start() -> redisx_runtime::Result<()> {
    /// let rx = RedisX::builder()
    ///     .client("default", ConnectionConfig::from_url("redis://127.0.0.1:6379")?)
    ///     .idempotency(IdempotencyConfig::default().lock_ttl(Duration::from_secs(10)))
    ///     .build()
    ///     .await?;
    /// # let _ = rx;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn idempotency(mut self, config: IdempotencyConfig) -> Self {
        self.idempotency = Some(config);
        self
    }

    /// Configures the streams plugin, `rx.streams()` (default: [`StreamsConfig::default`]).
    ///
    /// ```no_run
    /// use redisx_runtime::{ConnectionConfig, RedisX};
    /// use redisx_runtime::streams::StreamsConfig;
    ///
    /// # #[allow(dead_code)]
    /// # async fn start() -> redisx_runtime::Result<()> {
    /// let rx = RedisX::builder()
    ///     .client("default", ConnectionConfig::from_url("redis://127.0.0.1:6379")?)
    ///     .streams(StreamsConfig::default().max_len(1_000_000))
    ///     .build()
    ///     .await?;
    /// # let _ = rx;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn streams(mut self, config: StreamsConfig) -> Self {
        self.streams = Some(config);
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
    /// assert_eq!(rx.plugin_names(), ["cache", "locks", "rate_limit", "idempotency", "streams", "audit-log"]);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn plugin<P: Plugin>(mut self, plugin: P) -> Self {
        self.plugins.push(Started::of(plugin));
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
        let lock_cfg = self.locks.unwrap_or_default();
        lock_cfg.validate()?;
        let rate_limit_cfg = self.rate_limit.unwrap_or_default();
        rate_limit_cfg.validate()?;
        let idempotency_cfg = self.idempotency.unwrap_or_default();
        idempotency_cfg.validate()?;
        let streams_cfg = self.streams.unwrap_or_default();
        streams_cfg.validate()?;
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
        let life = Life::new();
        let mut clients = HashMap::new();
        for (name, cfg) in self.clients {
            let lazy = cfg.lazy;
            let client = Client::connect(&name, cfg, metrics.clone(), life.clone()).await?;
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
            life: life.clone(),
        };
        let cache_client = cache_client(&cache_cfg, &ctx)?;
        let cache = Cache::new(cache_cfg, &ctx, cache_client);
        let locks = Locks::new(lock_cfg, &ctx)?;
        let rate_limiter = RateLimiter::new(rate_limit_cfg, &ctx)?;
        let idempotency = Idempotency::new(idempotency_cfg, &ctx)?;
        let streams = Streams::new(streams_cfg, &ctx)?;
        let mut plugins = vec![
            Started::of(cache.clone()),
            Started::of(locks.clone()),
            Started::of(rate_limiter.clone()),
            Started::of(idempotency.clone()),
            Started::of(streams.clone()),
        ];
        plugins.extend(self.plugins);
        let plugins = plugin::start_order(plugins)?;
        for (i, p) in plugins.iter().enumerate() {
            if let Err(e) = p.plugin.start(&ctx).await {
                let deadline = tokio::time::Instant::now() + DEFAULT_SHUTDOWN_TIMEOUT;
                stop_all(&plugins[..i], deadline).await;
                return Err(e.with_context("plugin", p.plugin.name()));
            }
        }
        let rx = RedisX {
            inner: Arc::new(Inner {
                ctx,
                metrics,
                cache,
                locks,
                rate_limiter,
                idempotency,
                streams,
                plugins,
                shutdown_timeout: self.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
                life,
            }),
        };
        rx.inner.streams.bind(&rx.inner);
        Ok(rx)
    }
}

/// The client of the cache: `None` for an L1-only cache, else the configured or default one.
fn cache_client(cfg: &CacheConfig, ctx: &PluginContext) -> Result<Option<Client>> {
    if cfg.mode_value() == CacheMode::L1Only {
        return Ok(None);
    }
    let name = cfg.client.clone().or_else(|| ctx.default_client.clone()).ok_or_else(|| {
        Error::new(
            ErrorCode::ConfigInvalid,
            "the cache needs a Redis client: add one with `.client(name, config)`, or use `CacheMode::L1Only`",
        )
    })?;
    let client = ctx.clients.get(&name).cloned().ok_or_else(|| {
        Error::new(
            ErrorCode::ConfigUnknownClient,
            format!("the cache's client `{name}` is not among the configured clients"),
        )
    })?;
    Ok(Some(client))
}

/// How long a shutdown waits for the plugins to stop, unless configured.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
