//! Configuration of the cache plugin and per-entry options.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::CodecKind;
use crate::error::{Error, ErrorCode, Result};
use crate::key;

mod getters;

/// Which tiers a cache (or one call site) uses.
///
/// The three ways to combine two tiers; deliberately exhaustive, so a `match` on it needs no
/// wildcard arm.
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
    pub(crate) const fn uses_l1(self) -> bool {
        matches!(self, Self::L1L2 | Self::L1Only)
    }

    pub(crate) const fn uses_l2(self) -> bool {
        matches!(self, Self::L1L2 | Self::L2Only)
    }
}

/// What a caller does when another instance holds the regeneration lock for longer than
/// [`StampedeConfig::wait_timeout`](StampedeConfig::wait_timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StampedeFallback {
    /// Run the loader anyway (default).
    #[default]
    Load,
    /// Fail with [`ErrorCode::CacheStampedeTimeout`] (for `get_or_load`; an attribute on a
    /// function whose error type cannot hold a redisx error loads instead).
    Error,
}

/// Distributed stampede protection: one caller across all instances loads a missing key; the
/// others wait for its write (woken by pub/sub) and read it.
///
/// Each option is set by a method of its name and read back with `_value`.
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::cache::{StampedeConfig, StampedeFallback};
/// let s = StampedeConfig::default();
/// assert!(s.enabled_value());
/// assert_eq!(s.lock_ttl_value(), Duration::from_secs(5));
/// assert_eq!(s.wait_timeout_value(), Duration::from_secs(10));
/// assert_eq!(s.fallback_value(), StampedeFallback::Load);
///
/// let s = StampedeConfig::default()
///     .wait_timeout(Duration::from_secs(2))
///     .fallback(StampedeFallback::Error);
/// assert_eq!(s.wait_timeout_value(), Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StampedeConfig {
    pub(crate) enabled: bool,
    pub(crate) lock_ttl: Duration,
    pub(crate) wait_timeout: Duration,
    pub(crate) fallback: StampedeFallback,
}

impl StampedeConfig {
    /// Turns stampede protection on or off (on by default).
    #[must_use]
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }

    /// How long a regeneration lock lives if its holder dies (default 5 s). A live holder
    /// renews it every third of this while its loader runs, for up to `wait_timeout`, so a
    /// load may take longer: the other instances keep waiting for its write (up to their
    /// `wait_timeout`), and a hung loader holds the key at most `wait_timeout + lock_ttl`.
    #[must_use]
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// How long a caller waits for another instance's load (default 10 s).
    #[must_use]
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// What to do when the wait times out (default [`StampedeFallback::Load`]).
    #[must_use]
    pub fn fallback(mut self, fallback: StampedeFallback) -> Self {
        self.fallback = fallback;
        self
    }
}

impl Default for StampedeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            lock_ttl: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(10),
            fallback: StampedeFallback::Load,
        }
    }
}

/// A predicate deciding whether a loader error may be answered with a stale value.
/// It receives the loader's error as `&dyn Any`; downcast it to your error type.
pub type StaleIfErrorPredicate = Arc<dyn Fn(&dyn Any) -> bool + Send + Sync>;

/// Configuration of the cache plugin. Defaults follow the original toolkit.
///
/// Each option is set by a method of its name and read back by the same name with `_value`
/// (`l1_ttl(..)`, `l1_ttl_value()`).
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::{CacheConfig, CacheMode, CodecKind};
/// let cfg = CacheConfig::default()
///     .l1_max_entries(10_000)
///     .l1_ttl(Duration::from_secs(30))
///     .default_ttl(Duration::from_secs(600))
///     .swr(Duration::from_secs(30))
///     .stale_if_error(Duration::from_secs(3600))
///     .codec(CodecKind::Json);
/// assert_eq!(cfg.mode_value(), CacheMode::L1L2);
/// assert_eq!(cfg.key_prefix_value(), "cache:");
/// ```
#[derive(Clone)]
pub struct CacheConfig {
    pub(crate) mode: CacheMode,
    pub(crate) l1_max_entries: usize,
    pub(crate) l1_max_bytes: Option<u64>,
    pub(crate) l1_ttl: Duration,
    pub(crate) default_ttl: Duration,
    pub(crate) max_ttl: Duration,
    pub(crate) key_prefix: String,
    pub(crate) codec: CodecKind,
    pub(crate) client: Option<String>,
    pub(crate) max_key_len: usize,
    pub(crate) stampede: StampedeConfig,
    pub(crate) swr: Option<Duration>,
    pub(crate) stale_if_error: Option<Duration>,
    pub(crate) stale_if_error_when: Option<StaleIfErrorPredicate>,
    pub(crate) tag_index_prefix: String,
    pub(crate) lock_prefix: String,
    pub(crate) max_tags_per_key: usize,
    pub(crate) invalidation: bool,
}

impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheConfig")
            .field("mode", &self.mode)
            .field("l1_max_entries", &self.l1_max_entries)
            .field("l1_max_bytes", &self.l1_max_bytes)
            .field("l1_ttl", &self.l1_ttl)
            .field("default_ttl", &self.default_ttl)
            .field("max_ttl", &self.max_ttl)
            .field("key_prefix", &self.key_prefix)
            .field("codec", &self.codec)
            .field("client", &self.client)
            .field("max_key_len", &self.max_key_len)
            .field("stampede", &self.stampede)
            .field("swr", &self.swr)
            .field("stale_if_error", &self.stale_if_error)
            .field(
                "stale_if_error_when",
                &self.stale_if_error_when.as_ref().map(|_| "fn"),
            )
            .field("tag_index_prefix", &self.tag_index_prefix)
            .field("lock_prefix", &self.lock_prefix)
            .field("max_tags_per_key", &self.max_tags_per_key)
            .field("invalidation", &self.invalidation)
            .finish()
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            mode: CacheMode::L1L2,
            l1_max_entries: 1000,
            l1_max_bytes: None,
            l1_ttl: Duration::from_secs(60),
            default_ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(86_400),
            key_prefix: "cache:".to_owned(),
            codec: CodecKind::Bincode,
            client: None,
            max_key_len: key::MAX_KEY_LEN,
            stampede: StampedeConfig::default(),
            swr: None,
            stale_if_error: None,
            stale_if_error_when: None,
            tag_index_prefix: "_tag:".to_owned(),
            lock_prefix: "_lock:".to_owned(),
            max_tags_per_key: 10,
            invalidation: true,
        }
    }
}

impl CacheConfig {
    /// Which tiers to use (default [`CacheMode::L1L2`]). [`CacheMode::L1Only`] needs no Redis.
    ///
    /// ```
    /// # use redisx_runtime::{CacheConfig, CacheMode};
    /// let cfg = CacheConfig::default().mode(CacheMode::L1Only); // an in-process cache, no Redis
    /// assert_eq!(cfg.mode_value(), CacheMode::L1Only);
    /// ```
    #[must_use]
    pub fn mode(mut self, mode: CacheMode) -> Self {
        self.mode = mode;
        self
    }

    /// The largest number of L1 entries (default 1000).
    ///
    /// ```
    /// # use redisx_runtime::CacheConfig;
    /// let _cfg = CacheConfig::default().l1_max_entries(50_000);
    /// ```
    #[must_use]
    pub fn l1_max_entries(mut self, n: usize) -> Self {
        self.l1_max_entries = n;
        self
    }

    /// Bounds L1 by weight instead of entry count: the sum of the entries' weights stays
    /// under `bytes`, an entry weighing its encoded size plus its key plus 64 bytes (whatever
    /// path filled it: a load, a write, an L2 hit, `set_many`, an L1-only cache).
    ///
    /// ```
    /// use redisx_runtime::{CacheConfig, CacheMode};
    /// // An in-process cache of at most about 64 MiB of values.
    /// let cfg = CacheConfig::default().mode(CacheMode::L1Only).l1_max_bytes(64 << 20);
    /// # let _ = cfg;
    /// ```
    #[must_use]
    pub fn l1_max_bytes(mut self, bytes: u64) -> Self {
        self.l1_max_bytes = Some(bytes);
        self
    }

    /// The longest time an entry stays in L1 (default 60 s). An L1 entry never outlives the
    /// freshness of its L2 entry either, and other instances evict it on change (pub/sub); this
    /// ttl is the bound if such a message is lost.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::CacheConfig;
    /// // Bounds how long an instance may serve a value if an invalidation message is lost.
    /// let _cfg = CacheConfig::default().l1_ttl(Duration::from_secs(10));
    /// ```
    #[must_use]
    pub fn l1_ttl(mut self, ttl: Duration) -> Self {
        self.l1_ttl = ttl;
        self
    }

    /// The ttl of entries whose call site gives none (default 1 h).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::CacheConfig;
    /// let _cfg = CacheConfig::default().default_ttl(Duration::from_secs(600));
    /// ```
    #[must_use]
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The largest ttl accepted (default 24 h); a larger one is an error, not a silent clamp.
    /// Tag indexes live this long after their last write.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::CacheConfig;
    /// let _cfg = CacheConfig::default().max_ttl(Duration::from_secs(7 * 86_400));
    /// ```
    #[must_use]
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }

    /// The prefix of cache keys after the app prefix (default `cache:`).
    ///
    /// ```
    /// # use redisx_runtime::CacheConfig;
    /// let cfg = CacheConfig::default().key_prefix("c:"); // keys become `{app prefix}c:{key}`
    /// assert_eq!(cfg.key_prefix_value(), "c:");
    /// ```
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The codec of stored values (default [`CodecKind::Bincode`]).
    ///
    /// ```
    /// # use redisx_runtime::{CacheConfig, CodecKind};
    /// let _cfg = CacheConfig::default().codec(CodecKind::Json); // readable with redis-cli
    /// ```
    #[must_use]
    pub fn codec(mut self, codec: CodecKind) -> Self {
        self.codec = codec;
        self
    }

    /// Use the named client instead of the default one.
    ///
    /// ```
    /// # use redisx_runtime::CacheConfig;
    /// // `.client("cache", ..)` on the runtime builder names the connection this uses.
    /// let _cfg = CacheConfig::default().client("cache");
    /// ```
    #[must_use]
    pub fn client(mut self, name: impl Into<String>) -> Self {
        self.client = Some(name.into());
        self
    }

    /// The longest user key in bytes (default 1024).
    ///
    /// ```
    /// # use redisx_runtime::CacheConfig;
    /// let _cfg = CacheConfig::default().max_key_len(256);
    /// ```
    #[must_use]
    pub fn max_key_len(mut self, n: usize) -> Self {
        self.max_key_len = n;
        self
    }

    /// Stampede protection settings (on by default).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::CacheConfig;
    /// # use redisx_runtime::cache::{StampedeConfig, StampedeFallback};
    /// let _cfg = CacheConfig::default().stampede(
    ///     StampedeConfig::default()
    ///         .wait_timeout(Duration::from_secs(2))
    ///         .fallback(StampedeFallback::Error),
    /// );
    /// ```
    #[must_use]
    pub fn stampede(mut self, stampede: StampedeConfig) -> Self {
        self.stampede = stampede;
        self
    }

    /// Turns stale-while-revalidate on for every entry: every entry is kept `window` past
    /// its freshness, and a read in that window gets the stale value at once while one caller
    /// across all instances refreshes it in the background. Off by default; call sites can
    /// turn it on alone (`EntryOptions::swr`, `#[cached(swr = "30s")]`).
    ///
    /// A background refresh needs a loader that can outlive the call (`Send + 'static`):
    /// [`Cache::get_or_load_with`](super::Cache::get_or_load_with) and `#[cached]` functions
    /// with their own `swr` have one, and serve stale values under this setting.
    /// [`Cache::get_or_load`](super::Cache::get_or_load) and `#[cached]` functions without
    /// `swr` take any loader, so they reload a stale value in the foreground (one caller
    /// across all instances, as for a miss), and [`Cache::get`](super::Cache::get) returns it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::CacheConfig;
    /// let _cfg = CacheConfig::default().swr(Duration::from_secs(30));
    /// ```
    #[must_use]
    pub fn swr(mut self, window: Duration) -> Self {
        self.swr = Some(window);
        self
    }

    /// Turns stale-if-error on: for `window` after an entry expires, a failing loader is
    /// answered with the old value (the error is logged and counted). Off by default.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::CacheConfig;
    /// let _cfg = CacheConfig::default().stale_if_error(Duration::from_secs(3600));
    /// ```
    #[must_use]
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = Some(window);
        self
    }

    /// Serve stale values only for loader errors this predicate accepts (it receives the
    /// error as `&dyn Any`; downcast it to your error type).
    ///
    /// ```
    /// use std::time::Duration;
    /// use redisx_runtime::CacheConfig;
    /// #[derive(Debug)]
    /// enum DbError { Timeout, NotFound }
    /// # let _ = DbError::NotFound; let _ = DbError::Timeout;
    /// let cfg = CacheConfig::default()
    ///     .stale_if_error(Duration::from_secs(3600))
    ///     .stale_if_error_when(|e| matches!(e.downcast_ref::<DbError>(), Some(DbError::Timeout)));
    /// # let _ = (cfg, DbError::NotFound);
    /// ```
    #[must_use]
    pub fn stale_if_error_when(
        mut self,
        predicate: impl Fn(&dyn Any) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.stale_if_error_when = Some(Arc::new(predicate));
        self
    }

    /// The prefix of tag indexes after the cache prefix (default `_tag:`). User keys may
    /// not start with it.
    ///
    /// ```
    /// # use redisx_runtime::CacheConfig;
    /// let _cfg = CacheConfig::default().tag_index_prefix("_tags:");
    /// ```
    #[must_use]
    pub fn tag_index_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.tag_index_prefix = prefix.into();
        self
    }

    /// The most tags one entry may carry (default 10; at most 255, the most an entry's tag
    /// section holds).
    ///
    /// ```
    /// # use redisx_runtime::CacheConfig;
    /// let _cfg = CacheConfig::default().max_tags_per_key(20);
    /// ```
    #[must_use]
    pub fn max_tags_per_key(mut self, n: usize) -> Self {
        self.max_tags_per_key = n;
        self
    }

    /// Cross-instance L1 invalidation over pub/sub (default on; only used with L1 and L2).
    ///
    /// ```
    /// # use redisx_runtime::CacheConfig;
    /// // One instance only: no pub/sub subscription, no messages.
    /// let _cfg = CacheConfig::default().invalidation(false);
    /// ```
    #[must_use]
    pub fn invalidation(mut self, on: bool) -> Self {
        self.invalidation = on;
        self
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
        if self.stampede.enabled && self.stampede.lock_ttl.as_millis() < 1 {
            return bad("cache stampede `lock_ttl` must be at least 1 ms".into());
        }
        if self.max_tags_per_key > super::envelope::MAX_TAGS {
            return bad(format!(
                "cache `max_tags_per_key` is at most {} (an entry's tag count is one byte), not {}",
                super::envelope::MAX_TAGS,
                self.max_tags_per_key
            ));
        }
        if self.tag_index_prefix.is_empty() {
            return bad("cache `tag_index_prefix` must not be empty".into());
        }
        key::validate_prefix(&self.key_prefix)?;
        key::validate_prefix(&self.tag_index_prefix)?;
        Ok(())
    }
}

/// Per-call settings with every default applied and every limit checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolved {
    pub(crate) ttl: Duration,
    pub(crate) l1_ttl: Duration,
    pub(crate) swr: Duration,
    pub(crate) sie: Duration,
    pub(crate) mode: CacheMode,
    pub(crate) codec: CodecKind,
}

impl CacheConfig {
    /// The tiers of a call: its own mode, except that a cache without Redis never uses L2.
    pub(crate) fn mode_of(&self, call: Option<CacheMode>) -> CacheMode {
        match (self.mode, call) {
            (CacheMode::L1Only, _) => CacheMode::L1Only,
            (_, Some(m)) | (m, None) => m,
        }
    }

    /// `opts` with the cache's defaults applied; a ttl of zero or over `max_ttl` is an error.
    pub(crate) fn resolve(&self, opts: &EntryOptions) -> Result<Resolved> {
        let ttl = opts.ttl.unwrap_or(self.default_ttl);
        if ttl.is_zero() {
            return Err(Error::new(
                ErrorCode::ConfigInvalid,
                "a cache ttl must be greater than zero",
            ));
        }
        if ttl > self.max_ttl {
            return Err(Error::new(
                ErrorCode::ConfigInvalid,
                format!(
                    "ttl {ttl:?} exceeds the cache's max_ttl of {:?}",
                    self.max_ttl
                ),
            ));
        }
        Ok(Resolved {
            ttl,
            l1_ttl: opts.l1_ttl.unwrap_or(self.l1_ttl).min(self.l1_ttl).min(ttl),
            swr: opts.swr.or(self.swr).unwrap_or(Duration::ZERO),
            sie: opts
                .stale_if_error
                .or(self.stale_if_error)
                .unwrap_or(Duration::ZERO),
            mode: self.mode_of(opts.mode),
            codec: opts.codec.unwrap_or(self.codec),
        })
    }

    /// Checks a user key: valid as a Redis key, and not in the cache's own namespaces.
    pub(crate) fn check_key(&self, key: &str) -> Result<()> {
        key::validate(key, self.max_key_len)?;
        if self.is_internal(key.as_bytes()) {
            return Err(Error::new(
                ErrorCode::CacheKeyInvalid,
                format!(
                    "keys starting with `{}` or `{}` are reserved for the cache's own use",
                    self.tag_index_prefix, self.lock_prefix
                ),
            )
            .with_context("key", key));
        }
        Ok(())
    }

    /// Whether a user key lies in the cache's own namespaces (tag indexes, refresh locks).
    pub(crate) fn is_internal(&self, key: &[u8]) -> bool {
        key.starts_with(self.tag_index_prefix.as_bytes())
            || key.starts_with(self.lock_prefix.as_bytes())
    }

    /// Checks the tags of one entry: at most `max_tags_per_key`, each a valid tag.
    pub(crate) fn check_tags(&self, tags: &[String]) -> Result<()> {
        let max = self.max_tags_per_key;
        if tags.len() > max {
            return Err(Error::new(
                ErrorCode::CacheKeyInvalid,
                format!(
                    "{} tags given; an entry may carry at most {max}",
                    tags.len()
                ),
            ));
        }
        tags.iter().try_for_each(|t| validate_tag(t))
    }
}

/// Options of one cache entry (or one call site): ttl, tags, SWR and stale-if-error windows,
/// tiers, codec. Unset fields take the cache's defaults.
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::cache::EntryOptions;
/// let opts = EntryOptions::new()
///     .ttl(Duration::from_secs(300))
///     .tags(["users", "user:42"])
///     .swr(Duration::from_secs(30));
/// assert_eq!(opts.tags_value(), ["users", "user:42"]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct EntryOptions {
    pub(crate) ttl: Option<Duration>,
    pub(crate) l1_ttl: Option<Duration>,
    pub(crate) swr: Option<Duration>,
    pub(crate) stale_if_error: Option<Duration>,
    pub(crate) mode: Option<CacheMode>,
    pub(crate) codec: Option<CodecKind>,
    pub(crate) tags: Vec<String>,
}

impl EntryOptions {
    /// Options with every field at the cache's default.
    ///
    /// ```
    /// # use redisx_runtime::cache::EntryOptions;
    /// let opts = EntryOptions::new();
    /// assert!(opts.tags_value().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// How long the entry is fresh.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::cache::EntryOptions;
    /// let _opts = EntryOptions::new().ttl(Duration::from_secs(300));
    /// ```
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How long the entry may stay in L1 (never longer than `ttl` or the cache's L1 ttl).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::cache::EntryOptions;
    /// // Fresh in Redis for 5 minutes, but each instance rereads it after 5 s.
    /// let _opts = EntryOptions::new().ttl(Duration::from_secs(300)).l1_ttl(Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn l1_ttl(mut self, ttl: Duration) -> Self {
        self.l1_ttl = Some(ttl);
        self
    }

    /// Stale-while-revalidate window after the entry stops being fresh.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::cache::EntryOptions;
    /// let _opts = EntryOptions::new().ttl(Duration::from_secs(60)).swr(Duration::from_secs(30));
    /// ```
    #[must_use]
    pub fn swr(mut self, window: Duration) -> Self {
        self.swr = Some(window);
        self
    }

    /// Stale-if-error window after the entry expires.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::cache::EntryOptions;
    /// let _opts = EntryOptions::new().stale_if_error(Duration::from_secs(3600));
    /// ```
    #[must_use]
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = Some(window);
        self
    }

    /// Which tiers to use.
    ///
    /// ```
    /// # use redisx_runtime::CacheMode;
    /// # use redisx_runtime::cache::EntryOptions;
    /// let _opts = EntryOptions::new().mode(CacheMode::L2Only); // large values: Redis only
    /// ```
    #[must_use]
    pub fn mode(mut self, mode: CacheMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// The codec of this entry.
    ///
    /// ```
    /// # use redisx_runtime::CodecKind;
    /// # use redisx_runtime::cache::EntryOptions;
    /// let _opts = EntryOptions::new().codec(CodecKind::Json);
    /// ```
    #[must_use]
    pub fn codec(mut self, codec: CodecKind) -> Self {
        self.codec = Some(codec);
        self
    }

    /// The tags of this entry, for [`Cache::invalidate_tags`](crate::Cache::invalidate_tags).
    ///
    /// ```
    /// # use redisx_runtime::cache::EntryOptions;
    /// let opts = EntryOptions::new().tags(["users", "user:42"]);
    /// assert_eq!(opts.tags_value(), ["users", "user:42"]);
    /// ```
    #[must_use]
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }
}

/// Checks one tag: not empty, at most 128 bytes, no whitespace or control characters.
pub(crate) fn validate_tag(tag: &str) -> Result<()> {
    if tag.is_empty() || tag.len() > 128 || tag.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(Error::new(
            ErrorCode::CacheKeyInvalid,
            "a tag must be 1 to 128 bytes without whitespace or control characters",
        )
        .with_context("tag", tag.escape_debug().to_string()));
    }
    Ok(())
}
