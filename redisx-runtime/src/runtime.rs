//! The runtime handle, [`RedisX`], and its builder.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::cache::{Cache, CacheConfig, CacheMode};
use crate::client::{Client, ConnectionConfig};
use crate::error::{Error, ErrorCode, Result};
use crate::metrics::{Metrics, SharedRegistry};

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
    clients: HashMap<String, Client>,
    default_client: Option<String>,
    key_prefix: String,
    metrics: Arc<Metrics>,
    cache: Cache,
    shut_down: AtomicBool,
}

impl std::fmt::Debug for RedisX {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisX")
            .field("clients", &self.inner.clients.values().collect::<Vec<_>>())
            .field("default_client", &self.inner.default_client)
            .field("key_prefix", &self.inner.key_prefix)
            .field("cache", &self.inner.cache)
            .finish_non_exhaustive()
    }
}

impl RedisX {
    /// A builder for a runtime.
    pub fn builder() -> RedisXBuilder {
        RedisXBuilder::default()
    }

    /// Makes this runtime the process-wide default that the attributes use.
    ///
    /// A second `install` is an error ([`ErrorCode::ConfigAlreadyInstalled`]), never a silent
    /// replace; use `runtime = expr` on an attribute to use another runtime.
    pub fn install(&self) -> Result<()> {
        GLOBAL.set(self.clone()).map_err(|_| {
            Error::new(
                ErrorCode::ConfigAlreadyInstalled,
                "a redisx runtime is already installed; it cannot be replaced (pass `runtime = ...` to an attribute to use another one)",
            )
        })
    }

    /// The installed runtime, if any.
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
    pub fn client(&self) -> Client {
        self.try_client()
            .expect("this redisx runtime has no Redis client (it was built without `.client(..)`)")
    }

    /// The default client, or an error when the runtime has none.
    pub fn try_client(&self) -> Result<Client> {
        let name = self.inner.default_client.as_deref().ok_or_else(|| {
            Error::new(
                ErrorCode::ConfigUnknownClient,
                "this runtime has no Redis client; add one with `.client(name, config)`",
            )
        })?;
        self.named_client(name)
    }

    /// A client by name.
    pub fn named_client(&self, name: &str) -> Result<Client> {
        self.inner.clients.get(name).cloned().ok_or_else(|| {
            let mut names: Vec<_> = self.inner.clients.keys().map(String::as_str).collect();
            names.sort_unstable();
            Error::new(
                ErrorCode::ConfigUnknownClient,
                format!(
                    "no client named `{name}`; the clients are: {}",
                    names.join(", ")
                ),
            )
        })
    }

    /// The cache service.
    pub fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    /// The app key prefix (`""` when none was set).
    pub fn key_prefix(&self) -> &str {
        &self.inner.key_prefix
    }

    /// The metrics registry rendered in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render()
    }

    /// The registry the metrics live in (the one passed to the builder, or the runtime's own).
    pub fn registry(&self) -> SharedRegistry {
        self.inner.metrics.registry.clone()
    }

    /// Whether [`shutdown`](RedisX::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shut_down.load(Ordering::SeqCst)
    }

    /// Closes every connection and stops background tasks. Afterwards Redis calls fail with
    /// [`ErrorCode::ConnectionClosed`], L1 is emptied and cached functions run uncached.
    /// Idempotent.
    pub async fn shutdown(&self) {
        if self.inner.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner.cache.stop();
        self.inner.cache.clear_l1();
        for client in self.inner.clients.values() {
            client.shutdown();
        }
        tokio::task::yield_now().await;
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
}

impl std::fmt::Debug for RedisXBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisXBuilder")
            .field("clients", &self.clients)
            .field("default_client", &self.default_client)
            .field("key_prefix", &self.key_prefix)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl RedisXBuilder {
    /// Adds a named client. The first one added is the default unless
    /// [`default_client`](Self::default_client) says otherwise.
    #[must_use]
    pub fn client(mut self, name: impl Into<String>, config: ConnectionConfig) -> Self {
        self.clients.push((name.into(), config));
        self
    }

    /// Chooses the default client by name.
    #[must_use]
    pub fn default_client(mut self, name: impl Into<String>) -> Self {
        self.default_client = Some(name.into());
        self
    }

    /// The app prefix of every key (e.g. `myapp:`); empty by default.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Configures the cache plugin (default: [`CacheConfig::default`]).
    #[must_use]
    pub fn cache(mut self, config: CacheConfig) -> Self {
        self.cache = Some(config);
        self
    }

    /// Registers the redisx metrics in this registry instead of a private one.
    #[must_use]
    pub fn registry(mut self, registry: SharedRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Connects every client (unless configured `lazy`), checks that its server is Redis 7.0
    /// or newer ([`ErrorCode::ConnectionUnsupportedServer`] otherwise), preloads the Lua
    /// scripts and starts the plugins.
    pub async fn build(self) -> Result<RedisX> {
        let cache_cfg = self.cache.unwrap_or_default();
        cache_cfg.validate()?;
        let mut seen = std::collections::HashSet::new();
        for (name, _) in &self.clients {
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
                for s in crate::script::ALL {
                    client
                        .load_script(&s.script)
                        .await
                        .map_err(|e| e.with_context("script", s.name))?;
                }
            }
            clients.insert(name, client);
        }
        let cache_client = if cache_cfg.mode_value() == CacheMode::L1Only {
            None
        } else {
            let name = cache_cfg.client.clone().or_else(|| default_client.clone()).ok_or_else(|| {
                Error::new(
                    ErrorCode::ConfigInvalid,
                    "the cache needs a Redis client: add one with `.client(name, config)`, or use `CacheMode::L1Only`",
                )
            })?;
            Some(clients.get(&name).cloned().ok_or_else(|| {
                Error::new(
                    ErrorCode::ConfigUnknownClient,
                    format!("the cache's client `{name}` is not among the configured clients"),
                )
            })?)
        };
        let cache = Cache::new(
            cache_cfg,
            &self.key_prefix,
            cache_client,
            metrics.cache.clone(),
            &metrics.registry,
        );
        cache.start().await?;
        Ok(RedisX {
            inner: Arc::new(Inner {
                clients,
                default_client,
                key_prefix: self.key_prefix,
                metrics,
                cache,
                shut_down: AtomicBool::new(false),
            }),
        })
    }
}
