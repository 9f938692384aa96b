//! The two-tier cache: L1 in process (`quick_cache`), L2 in Redis.
//!
//! Reads go L1, then L2 (an L2 hit fills L1), then the loader; a loaded value is written to
//! both tiers. An L1 entry never outlives its L2 entry. Cache failures fail open: a read error
//! is a miss, a write error is logged and counted, and the caller only ever sees its own
//! loader's errors. Keys are stored as `{app prefix}{cache prefix}{key}` (`cache:` by default).
//!
//! ```no_run
//! # use std::time::Duration;
//! # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
//! let cache = rx.cache();
//! cache.set("greeting", &"hello".to_owned(), Some(Duration::from_secs(60))).await?;
//! let v: Option<String> = cache.get("greeting").await?;
//! assert_eq!(v.as_deref(), Some("hello"));
//! let n = cache
//!     .get_or_load("answer", None, || async { Ok::<_, std::io::Error>(42u64) })
//!     .await?;
//! assert_eq!(n, 42);
//! # Ok(()) }
//! ```

mod envelope;
pub(crate) mod l1;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::Client;
use crate::codec::CodecKind;
use crate::error::{Error, ErrorCode, Result};
use crate::key::{self, KeyBuilder};
use crate::metrics::CacheMetrics;
use crate::script;
use l1::L1;

/// Which tiers a cache (or one call site) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// L1 in front of L2 (default).
    #[default]
    L1L2,
    /// Only the in-process tier; needs no Redis at all.
    L1Only,
    /// Only Redis.
    L2Only,
}

impl CacheMode {
    const fn uses_l1(self) -> bool {
        matches!(self, Self::L1L2 | Self::L1Only)
    }

    const fn uses_l2(self) -> bool {
        matches!(self, Self::L1L2 | Self::L2Only)
    }
}

/// Configuration of the cache plugin. Defaults follow the original toolkit.
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::{CacheConfig, CacheMode, CodecKind};
/// let cfg = CacheConfig::default()
///     .l1_max_entries(10_000)
///     .l1_ttl(Duration::from_secs(30))
///     .default_ttl(Duration::from_secs(600))
///     .codec(CodecKind::Json);
/// assert_eq!(cfg.mode_value(), CacheMode::L1L2);
/// assert_eq!(cfg.key_prefix_value(), "cache:");
/// ```
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub(crate) mode: CacheMode,
    pub(crate) l1_max_entries: usize,
    pub(crate) l1_ttl: Duration,
    pub(crate) default_ttl: Duration,
    pub(crate) max_ttl: Duration,
    pub(crate) key_prefix: String,
    pub(crate) codec: CodecKind,
    pub(crate) client: Option<String>,
    pub(crate) max_key_len: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            mode: CacheMode::L1L2,
            l1_max_entries: 1000,
            l1_ttl: Duration::from_secs(60),
            default_ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(86_400),
            key_prefix: "cache:".to_owned(),
            codec: CodecKind::Bincode,
            client: None,
            max_key_len: key::MAX_KEY_LEN,
        }
    }
}

impl CacheConfig {
    /// Which tiers to use (default [`CacheMode::L1L2`]).
    #[must_use]
    pub fn mode(mut self, mode: CacheMode) -> Self {
        self.mode = mode;
        self
    }

    /// The largest number of L1 entries (default 1000).
    #[must_use]
    pub fn l1_max_entries(mut self, n: usize) -> Self {
        self.l1_max_entries = n;
        self
    }

    /// The longest time an entry stays in L1 (default 60 s); an entry never outlives its L2
    /// entry either.
    #[must_use]
    pub fn l1_ttl(mut self, ttl: Duration) -> Self {
        self.l1_ttl = ttl;
        self
    }

    /// The ttl of entries whose call site gives none (default 1 h).
    #[must_use]
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The largest ttl accepted (default 24 h); a larger one is an error, not a silent clamp.
    #[must_use]
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }

    /// The prefix of cache keys after the app prefix (default `cache:`).
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The codec of stored values (default [`CodecKind::Bincode`]).
    #[must_use]
    pub fn codec(mut self, codec: CodecKind) -> Self {
        self.codec = codec;
        self
    }

    /// Use the named client instead of the default one.
    #[must_use]
    pub fn client(mut self, name: impl Into<String>) -> Self {
        self.client = Some(name.into());
        self
    }

    /// The longest user key in bytes (default 1024).
    #[must_use]
    pub fn max_key_len(mut self, n: usize) -> Self {
        self.max_key_len = n;
        self
    }

    /// The configured mode.
    pub fn mode_value(&self) -> CacheMode {
        self.mode
    }

    /// The configured key prefix.
    pub fn key_prefix_value(&self) -> &str {
        &self.key_prefix
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::new(ErrorCode::ConfigInvalid, msg));
        if self.default_ttl.is_zero() {
            return bad("cache `default_ttl` must be greater than zero".into());
        }
        if self.default_ttl > self.max_ttl {
            return bad(format!(
                "cache `default_ttl` ({:?}) exceeds `max_ttl` ({:?})",
                self.default_ttl, self.max_ttl
            ));
        }
        if self.mode.uses_l1() && self.l1_max_entries == 0 {
            return bad("cache `l1_max_entries` must be at least 1 when L1 is used".into());
        }
        Ok(())
    }
}

/// Per-call options of a cache operation (what `#[cached]` passes from its arguments).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CallOptions {
    pub(crate) ttl: Option<Duration>,
    pub(crate) l1_ttl: Option<Duration>,
    pub(crate) mode: Option<CacheMode>,
    pub(crate) codec: Option<CodecKind>,
}

/// Counters of one cache, as returned by [`Cache::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads answered by L1.
    pub l1_hits: u64,
    /// Reads L1 could not answer.
    pub l1_misses: u64,
    /// Reads answered by L2.
    pub l2_hits: u64,
    /// Reads L2 could not answer.
    pub l2_misses: u64,
    /// Loader runs.
    pub loads: u64,
    /// Loader runs that failed.
    pub load_errors: u64,
    /// Entries that failed to decode and were removed.
    pub corrupt_entries: u64,
    /// Cache operations that failed (Redis errors) and were failed open.
    pub errors: u64,
    /// Entries currently in L1.
    pub l1_entries: u64,
}

#[derive(Default)]
struct Counters {
    l1_hits: AtomicU64,
    l1_misses: AtomicU64,
    l2_hits: AtomicU64,
    l2_misses: AtomicU64,
    loads: AtomicU64,
    load_errors: AtomicU64,
    corrupt: AtomicU64,
    errors: AtomicU64,
}

/// The cache service of a runtime: `rx.cache()`. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<CacheInner>,
}

struct CacheInner {
    cfg: CacheConfig,
    keys: KeyBuilder,
    l1: L1,
    client: Option<Client>,
    metrics: CacheMetrics,
    counters: Counters,
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

impl Cache {
    pub(crate) fn new(
        cfg: CacheConfig,
        app_prefix: &str,
        client: Option<Client>,
        metrics: CacheMetrics,
    ) -> Self {
        let keys = KeyBuilder::new(app_prefix, &cfg.key_prefix);
        let l1 = L1::new(cfg.l1_max_entries);
        Self {
            inner: Arc::new(CacheInner {
                cfg,
                keys,
                l1,
                client,
                metrics,
                counters: Counters::default(),
            }),
        }
    }

    /// The configuration this cache runs with.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.cfg
    }

    /// The full Redis key of a user key (`{app prefix}{cache prefix}{key}`).
    pub fn full_key(&self, key: &str) -> String {
        self.inner.keys.full(key)
    }

    /// Reads a value: L1, then L2 (an L2 hit fills L1). A corrupt entry is removed and reported
    /// as `None`.
    pub async fn get<T>(&self, key: &str) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        self.validate_key(key)?;
        let opts = CallOptions::default();
        if let Some(v) = self.l1_get::<T>(key, opts.mode) {
            return Ok(Some(v));
        }
        self.l2_get::<T>(key, opts).await
    }

    /// Writes a value to L2 and L1 with `ttl` (or the default ttl).
    pub async fn set<T>(&self, key: &str, value: &T, ttl: Option<Duration>) -> Result<()>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        self.validate_key(key)?;
        let opts = CallOptions {
            ttl,
            ..CallOptions::default()
        };
        self.write(key, value, opts).await
    }

    /// Deletes a value from both tiers; `true` if L2 held it (or, in L1-only mode, L1 did).
    pub async fn delete(&self, key: &str) -> Result<bool> {
        self.validate_key(key)?;
        let in_l1 = self.inner.l1.remove(key);
        self.update_l1_gauge();
        match self.l2_client(None) {
            Some(client) => {
                let n: u64 = client
                    .query_named("DEL", redis::cmd("DEL").arg(self.full_key(key)))
                    .await
                    .map_err(|e| with_code(e, ErrorCode::CacheDeleteFailed, key))?;
                Ok(n > 0)
            }
            None => Ok(in_l1),
        }
    }

    /// Returns the cached value or runs `loader`, caching its `Ok` value with `ttl` (or the
    /// default ttl). Loader errors pass through untouched (and are not cached); cache errors
    /// fail open (the loader runs and the caller never sees them).
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let opts = CallOptions {
            ttl,
            ..CallOptions::default()
        };
        if let Some(v) = self.l1_get::<T>(key, opts.mode) {
            return Ok(v);
        }
        self.load_through(key, opts, loader(), |_| false).await
    }

    /// Counters of this cache since the runtime started.
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        CacheStats {
            l1_hits: c.l1_hits.load(Ordering::Relaxed),
            l1_misses: c.l1_misses.load(Ordering::Relaxed),
            l2_hits: c.l2_hits.load(Ordering::Relaxed),
            l2_misses: c.l2_misses.load(Ordering::Relaxed),
            loads: c.loads.load(Ordering::Relaxed),
            load_errors: c.load_errors.load(Ordering::Relaxed),
            corrupt_entries: c.corrupt.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            l1_entries: self.inner.l1.len() as u64,
        }
    }

    /// The number of entries in L1.
    pub fn l1_len(&self) -> usize {
        self.inner.l1.len()
    }

    /// Empties L1 of this instance (L2 is untouched).
    pub fn clear_l1(&self) {
        self.inner.l1.clear();
        self.update_l1_gauge();
    }

    // ----- internals shared with `__private` -----

    fn validate_key(&self, key: &str) -> Result<()> {
        key::validate(key, self.inner.cfg.max_key_len)
    }

    fn mode(&self, call: Option<CacheMode>) -> CacheMode {
        match (self.inner.cfg.mode, call) {
            // A cache configured without Redis can never use L2.
            (CacheMode::L1Only, _) => CacheMode::L1Only,
            (_, Some(m)) => m,
            (m, None) => m,
        }
    }

    fn l2_client(&self, call: Option<CacheMode>) -> Option<&Client> {
        if self.mode(call).uses_l2() {
            self.inner.client.as_ref()
        } else {
            None
        }
    }

    /// The L1 probe of the hit path: no allocation, no await.
    #[inline]
    pub(crate) fn l1_get<T: Clone + 'static>(&self, key: &str, mode: Option<CacheMode>) -> Option<T> {
        if !self.mode(mode).uses_l1() {
            return None;
        }
        let c = &self.inner.counters;
        if let Some(v) = self.inner.l1.get::<T>(key, Instant::now()) {
            c.l1_hits.fetch_add(1, Ordering::Relaxed);
            self.inner.metrics.l1_hits.inc();
            Some(v)
        } else {
            c.l1_misses.fetch_add(1, Ordering::Relaxed);
            self.inner.metrics.l1_misses.inc();
            None
        }
    }

    async fn l2_get<T>(&self, key: &str, opts: CallOptions) -> Result<Option<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let Some(client) = self.l2_client(opts.mode) else {
            return Ok(None);
        };
        let full = self.full_key(key);
        let bytes: Option<Vec<u8>> = client.query_named("GET", redis::cmd("GET").arg(&full)).await?;
        let c = &self.inner.counters;
        let Some(bytes) = bytes else {
            c.l2_misses.fetch_add(1, Ordering::Relaxed);
            self.inner.metrics.l2_misses.inc();
            return Ok(None);
        };
        match envelope::decode::<T>(&bytes) {
            Ok(env) => {
                c.l2_hits.fetch_add(1, Ordering::Relaxed);
                self.inner.metrics.l2_hits.inc();
                let now = envelope::now_ms();
                if self.mode(opts.mode).uses_l1() {
                    let ttl = self.l1_ttl(opts).min(env.fresh_for(now));
                    self.inner.l1.insert(key, env.value.clone(), ttl);
                    self.update_l1_gauge();
                }
                Ok(Some(env.value))
            }
            Err(e) => {
                c.corrupt.fetch_add(1, Ordering::Relaxed);
                c.l2_misses.fetch_add(1, Ordering::Relaxed);
                self.inner.metrics.l2_misses.inc();
                tracing::warn!(key = %full, error = %e, "corrupt cache entry; treating it as a miss and removing it");
                // Best effort, and only while it still holds the bytes we read: a writer that
                // replaced it meanwhile must not lose its value.
                let removed = client
                    .eval::<u64, _, _>(&script::CACHE_DEL_IF_EQ.script, &[&full], &[&bytes])
                    .await;
                if let Err(del) = removed {
                    tracing::debug!(key = %full, error = %del, "could not remove the corrupt entry");
                }
                Ok(None)
            }
        }
    }

    fn ttl(&self, opts: CallOptions) -> Result<Duration> {
        let ttl = opts.ttl.unwrap_or(self.inner.cfg.default_ttl);
        if ttl > self.inner.cfg.max_ttl {
            return Err(Error::new(
                ErrorCode::ConfigInvalid,
                format!(
                    "ttl {ttl:?} exceeds the cache's max_ttl of {:?}",
                    self.inner.cfg.max_ttl
                ),
            ));
        }
        if ttl.is_zero() {
            return Err(Error::new(ErrorCode::ConfigInvalid, "ttl must be greater than zero"));
        }
        Ok(ttl)
    }

    fn l1_ttl(&self, opts: CallOptions) -> Duration {
        let ttl = opts.ttl.unwrap_or(self.inner.cfg.default_ttl);
        opts.l1_ttl.unwrap_or(self.inner.cfg.l1_ttl).min(ttl)
    }

    async fn write<T>(&self, key: &str, value: &T, opts: CallOptions) -> Result<()>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let ttl = self.ttl(opts)?;
        if let Some(client) = self.l2_client(opts.mode) {
            let now = envelope::now_ms();
            let expires_at = now + u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            let codec = opts.codec.unwrap_or(self.inner.cfg.codec);
            let bytes = envelope::encode(codec, value, expires_at, expires_at)?;
            let px = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            client
                .query_named::<()>(
                    "SET",
                    redis::cmd("SET").arg(self.full_key(key)).arg(bytes).arg("PX").arg(px),
                )
                .await
                .map_err(|e| with_code(e, ErrorCode::CacheSetFailed, key))?;
        }
        if self.mode(opts.mode).uses_l1() {
            self.inner.l1.insert(key, value.clone(), self.l1_ttl(opts));
            self.update_l1_gauge();
        }
        Ok(())
    }

    /// The miss path: L2, then the loader, then write-back. Cache errors fail open.
    pub(crate) async fn load_through<T, E, Fut>(
        &self,
        key: &str,
        opts: CallOptions,
        loader: Fut,
        unless: impl FnOnce(&T) -> bool,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Err(e) = self.validate_key(key) {
            self.fail_open("read", key, &e);
            return loader.await;
        }
        match self.l2_get::<T>(key, opts).await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => self.fail_open("read", key, &e),
        }
        let c = &self.inner.counters;
        c.loads.fetch_add(1, Ordering::Relaxed);
        let value = match loader.await {
            Ok(v) => {
                self.inner.metrics.loads_ok.inc();
                v
            }
            Err(e) => {
                c.load_errors.fetch_add(1, Ordering::Relaxed);
                self.inner.metrics.loads_error.inc();
                return Err(e);
            }
        };
        if !unless(&value) {
            if let Err(e) = self.write(key, &value, opts).await {
                self.inner.metrics.write_errors.inc();
                self.fail_open("write", key, &e);
            }
        }
        Ok(value)
    }

    fn fail_open(&self, op: &'static str, key: &str, err: &Error) {
        self.inner.counters.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(op, key, error = %err, "cache operation failed; continuing without the cache");
    }

    fn update_l1_gauge(&self) {
        self.inner
            .metrics
            .l1_entries
            .set(i64::try_from(self.inner.l1.len()).unwrap_or(i64::MAX));
    }
}

fn with_code(err: Error, code: ErrorCode, key: &str) -> Error {
    let kept = err.code();
    let code = if kept.family() == "connection" || kept == ErrorCode::OperationTimeout {
        kept
    } else {
        code
    };
    let msg = err.message().to_owned();
    Error::new(code, msg).with_context("key", key).with_source(err)
}
