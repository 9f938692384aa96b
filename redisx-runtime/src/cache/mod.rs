//! The two-tier cache: L1 in process (`quick_cache`), L2 in Redis.
//!
//! Reads go L1, then L2 (an L2 hit fills L1), then the loader; a loaded value is written to
//! both tiers. A miss costs two round trips (an atomic read-or-lock, then one write that also
//! indexes tags and wakes waiters); callers of one key share one load in process and across
//! instances. On top: stale-while-revalidate, stale-if-error, tags, and cross-instance L1
//! invalidation over pub/sub. Reads fail open (a Redis error is a miss), writes never fail the
//! caller, corrupt entries are misses and are removed; deletes and invalidations report Redis
//! errors. The README's "Cache" section tells the long story (round trips, tag claims, the
//! invalidation messages).
//!
//! Keys are stored as `{app prefix}{cache prefix}{key}` (`cache:` by default); tag indexes as
//! `{app prefix}{cache prefix}_tag:{tag}`, refresh locks as `..._lock:{key}` (user keys may not
//! start with `_tag:` or `_lock:`).
//!
//! The files read downward, each knowing only those below it: `api`, `get_or_load`, `tags` and
//! `touch` (the public calls) → `swr` → `load` (the miss path) → `stampede` (the regeneration
//! lock) → `l2` (reads, writes, scans) → `invalidation` (the channel) → `local` (L1 fills, the
//! in-process tag index) → `l1`, `envelope`, `glob`, `flight`, `stats`, `config`.
//!
//! ```no_run
//! # use std::time::Duration;
//! use redisx_runtime::cache::EntryOptions;
//! # #[allow(dead_code)]
//! # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
//! let cache = rx.cache();
//! cache.set("greeting", &"hello".to_owned(), Some(Duration::from_secs(60))).await?;
//! let v: Option<String> = cache.get("greeting").await?;
//! assert_eq!(v.as_deref(), Some("hello"));
//!
//! let opts = EntryOptions::new().ttl(Duration::from_secs(300)).tags(["users"]);
//! let n = cache
//!     .get_or_load_with("user:1", &opts, || async { Ok::<_, redisx_runtime::Error>(42u64) })
//!     .await?;
//! assert_eq!(n, 42);
//! cache.invalidate_tags(&["users"]).await?;
//! # Ok(()) }
//! ```

mod api;
pub(crate) mod call_site;
mod config;
mod entry;
pub(crate) mod envelope;
mod flight;
mod get_or_load;
pub(crate) mod glob;
mod invalidation;
pub(crate) mod l1;
mod l2;
#[cfg(all(feature = "test-util", unix))]
pub(crate) use l2::scan_match;
mod load;
mod local;
pub(crate) mod scripts;
mod stampede;
pub(crate) mod stats;
mod swr;
mod tags;
mod touch;

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

pub use config::{CacheConfig, CacheMode, StaleIfErrorPredicate, StampedeConfig, StampedeFallback};
pub use entry::EntryOptions;
pub use flight::ErrorSharing;
pub use get_or_load::WarmupReport;
pub use l1::Erasure;
pub use load::LoadOptions;
pub use stats::CacheStats;

use crate::client::Client;
use crate::error::Result;
use crate::key::KeyBuilder;
use crate::life::Life;
use crate::plugin::{Plugin, PluginContext, PluginFuture};
use config::Resolved;
use flight::Flights;
use invalidation::Waiters;
use l1::L1;
use local::LocalTags;
use stampede::ReadPredictor;
use stats::{CacheMetrics, Counters, Warnings, warnings};

/// What a cached value must be: serializable both ways (it is stored in Redis), `Clone` (each
/// L1 hit hands out a clone) and shareable across threads. Implemented for every such type.
///
/// ```
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct User { id: u64 }
/// fn assert_cacheable<T: redisx_runtime::cache::Cacheable>() {}
/// assert_cacheable::<User>();
/// assert_cacheable::<Vec<String>>();
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached",
    label = "this type is stored in the cache",
    note = "a cached value must be `Serialize + DeserializeOwned + Clone + Send + Sync + 'static`: derive `serde::Serialize`, `serde::Deserialize` and `Clone` for it"
)]
pub trait Cacheable: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

/// Not recommended in errors: a type that misses one of the bounds gets the message above
/// once, instead of one error per missing trait.
#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Cacheable for T {}

/// The cache service of a runtime: `rx.cache()`. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<CacheInner>,
}

pub(crate) struct CacheInner {
    cfg: CacheConfig,
    keys: KeyBuilder,
    l1: Arc<L1>,
    client: Option<Client>,
    metrics: CacheMetrics,
    counters: Counters,
    warnings: Warnings,
    flights: Flights,
    waiters: Waiters,
    reads: ReadPredictor,
    /// The tag index of the entries that live only in L1 (see [`LocalTags`]).
    local_tags: std::sync::Mutex<LocalTags>,
    /// Set once a cache with Redis indexed an L1-only call's tags: from then on its other
    /// fills take `local_tags`' lock to drop the key from it.
    mixed_local_tags: std::sync::atomic::AtomicBool,
    /// Whether spans record the user keys ([`PluginContext::record_keys`]).
    record_keys: bool,
    /// The runtime's state: calls on a gone runtime report it instead of failing open.
    life: Arc<Life>,
    origin: String,
    channel: String,
    stop: Arc<Notify>,
}

impl Drop for CacheInner {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("mode", &self.inner.cfg.mode)
            .field("prefix", &self.inner.keys.prefix())
            .field("l1_entries", &self.inner.l1.len())
            .finish_non_exhaustive()
    }
}

/// One call's key and settings, checked and resolved once: what travels together through
/// the read, load and write paths.
pub(crate) struct Call<'a> {
    key: &'a str,
    /// The entry's full Redis key, built once when the call uses Redis.
    full: Option<String>,
    r: Resolved,
    tags: &'a [String],
}

impl Call<'_> {
    /// The full key, when the call uses Redis.
    fn full(&self) -> Option<&str> {
        self.full.as_deref()
    }
}

impl Cache {
    /// A cache with `cfg` under the app prefix, registering its metrics in `registry`.
    pub(crate) fn new(cfg: CacheConfig, ctx: &PluginContext, client: Option<Client>) -> Self {
        let keys = ctx.keys(&cfg.key_prefix);
        let l1 = Arc::new(L1::new(cfg.l1_max_entries, cfg.l1_max_bytes));
        let metrics = CacheMetrics::register(ctx.registry(), Arc::downgrade(&l1));
        let channel = format!("{}__events", keys.prefix());
        Self {
            inner: Arc::new(CacheInner {
                cfg,
                keys,
                l1,
                client,
                metrics,
                counters: Counters::default(),
                warnings: warnings(),
                flights: Flights::default(),
                waiters: Waiters::default(),
                reads: ReadPredictor::default(),
                local_tags: std::sync::Mutex::default(),
                mixed_local_tags: std::sync::atomic::AtomicBool::new(false),
                record_keys: ctx.record_keys(),
                life: ctx.life.clone(),
                origin: format!("{:016x}", rand::random::<u64>()),
                channel,
                stop: Arc::new(Notify::new()),
            }),
        }
    }

    /// The configuration this cache runs with.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let config = rx.cache().config();
    /// println!("mode {:?}, keys under {}", config.mode_value(), config.key_prefix_value());
    /// # Ok(()) }
    /// ```
    pub fn config(&self) -> &CacheConfig {
        &self.inner.cfg
    }

    /// The full Redis key of a user key (`{app prefix}{cache prefix}{key}`).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// // With `.key_prefix("myapp:")` on the builder and the default cache prefix:
    /// assert_eq!(rx.cache().full_key("user:1"), "myapp:cache:user:1");
    /// # Ok(()) }
    /// ```
    pub fn full_key(&self, key: &str) -> String {
        self.inner.keys.full(key)
    }

    /// The pub/sub channel this cache publishes its changes on.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// // With `.key_prefix("myapp:")` on the builder and the default cache prefix:
    /// assert_eq!(rx.cache().invalidation_channel(), "myapp:cache:__events");
    /// # Ok(()) }
    /// ```
    pub fn invalidation_channel(&self) -> &str {
        &self.inner.channel
    }

    /// Checks `key` and `opts` and resolves them into one call's context.
    fn call<'a>(&self, key: &'a str, opts: &'a EntryOptions) -> Result<Call<'a>> {
        let cfg = &self.inner.cfg;
        cfg.check_key(key)?;
        cfg.check_tags(&opts.tags)?;
        let r = cfg.resolve(opts)?;
        Ok(Call {
            key,
            full: self.l2_client(r.mode).map(|_| self.full_key(key)),
            r,
            tags: &opts.tags,
        })
    }

    /// `key` for a span's `cache.key`: only when keys may be recorded.
    #[inline]
    fn span_key<'k>(&self, key: &'k str) -> Option<&'k str> {
        self.inner.record_keys.then_some(key)
    }

    fn l2_client(&self, mode: CacheMode) -> Option<&Client> {
        if mode.uses_l2() {
            self.inner.client.as_ref()
        } else {
            None
        }
    }
}

/// The cache is the runtime's first plugin: its start subscribes the invalidation listener
/// (so a runtime returned by `build()` never misses a message); its stop ends the listener
/// and empties L1.
impl Plugin for Cache {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn start<'a>(&'a self, ctx: &'a PluginContext) -> PluginFuture<'a, Result<()>> {
        Box::pin(async move {
            let Some(client) = &self.inner.client else {
                return Ok(());
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            invalidation::spawn(
                ctx.life.guard("the cache's invalidation listener"),
                Arc::downgrade(&self.inner),
                client.clone(),
                self.inner.channel.clone(),
                self.inner.stop.clone(),
                tx,
            );
            rx.await.unwrap_or(Ok(()))
        })
    }

    fn stop(&self, _deadline: tokio::time::Instant) -> PluginFuture<'_, ()> {
        Box::pin(async move {
            self.inner.stop.notify_one();
            self.inner.l1.clear();
        })
    }
}
