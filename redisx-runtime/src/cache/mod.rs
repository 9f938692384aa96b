//! The two-tier cache: L1 in process (`quick_cache`), L2 in Redis.
//!
//! Reads go L1, then L2 (an L2 hit fills L1), then the loader; a loaded value is written to
//! both tiers. On top of that:
//!
//! * **Stampede protection across instances.** A miss costs two round trips: one atomic
//!   read-or-lock (`SET key <marker> NX PX <lock ttl> GET`: it returns the entry, or places a
//!   regeneration lock in the entry's own key), and one round trip that indexes the entry's
//!   tags (pipelined commands: tag indexes live in other cluster slots) and runs `write.lua`,
//!   which writes the value only while this caller's lock is still there (releasing it) and
//!   wakes the waiters. While recent reads mostly hit, the first read is a plain `GET`
//!   instead (a hit then costs exactly a `GET`; a miss after such a read takes one more round
//!   trip). Callers of the same key in one runtime share one read and one load; callers in
//!   other instances flag the lock and wait for the holder's write, woken by pub/sub (a
//!   bounded poll is only the fallback), then read it.
//! * **Stale-while-revalidate**: within the SWR window a stale value is served at once and
//!   one caller across all instances refreshes it through the normal write path.
//! * **Stale-if-error**: within its window, a failing loader is answered with the old value.
//! * **Tags**: an index per tag (a sorted set of keys scored by when their entries end,
//!   pruned of ended entries as it is written), and every entry names its own tags;
//!   invalidation claims
//!   the set atomically, deletes (per cluster slot) the entries that still carry the tag, so
//!   an entry rewritten since without it stays, evicts local L1 and tells the other
//!   instances.
//! * **Cross-instance L1 invalidation**: every delete, overwrite and tag invalidation is
//!   published on one channel per prefix (a fill only when another instance waits for it:
//!   no instance can hold a copy of a missing entry); each instance evicts its L1 (ignoring
//!   its own messages), resubscribes after a reconnect, and the L1 ttl bounds any lost
//!   message. A read that overlapped an invalidation never refills L1 with the old value.
//!
//! Failure: reads fail open (a Redis error is a miss), writes never fail the caller (logged
//! and counted), corrupt entries are misses and are removed; deletes and invalidations do
//! report Redis errors. A loader that panics propagates to its own caller and gives its lock
//! back at once; the callers waiting for it take over the load.
//!
//! Keys are stored as `{app prefix}{cache prefix}{key}` (`cache:` by default); tag indexes as
//! `{app prefix}{cache prefix}_tag:{tag}`, refresh locks as `..._lock:{key}` (user keys may not
//! start with `_tag:` or `_lock:`).
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

mod config;
mod envelope;
mod flight;
mod invalidation;
pub(crate) mod l1;

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tracing::Instrument as _;

pub use config::{
    CacheConfig, CacheMode, EntryOptions, StaleIfErrorPredicate, StampedeConfig, StampedeFallback,
};

use crate::client::Client;
use crate::codec::CodecKind;
use crate::error::{Error, ErrorCode, Result};
use crate::key::{self, KeyBuilder};
use crate::metrics::CacheMetrics;
use crate::script;
use envelope::Envelope;
use flight::{Flights, Join};
use invalidation::Waiters;
pub use l1::Erasure;
use l1::L1;

/// The first byte of a regeneration lock marker stored in an entry's key.
const MARKER: u8 = 0xFE;
/// How often a waiter re-reads when no pub/sub message woke it: half the lock ttl, within
/// these bounds. It is only the safety net for a lost message or a lock holder that died
/// (its marker expires silently); every normal wake-up comes over pub/sub.
const POLL_FALLBACK_MIN: Duration = Duration::from_millis(50);
const POLL_FALLBACK_MAX: Duration = Duration::from_secs(2);
/// Keys per `UNLINK` and per invalidation message.
const CHUNK: usize = 1000;
/// How long after its entry ended a tag index member is pruned (see `Cache::index_tags`): a
/// margin for clocks that differ between instances (a member's score is its writer's clock).
const TAG_PRUNE_MARGIN: Duration = Duration::from_secs(60);

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

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Cacheable for T {}

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
    /// Loads avoided because another caller (here or in another instance) was loading.
    pub stampedes_prevented: u64,
    /// Stale values served (stale-while-revalidate and stale-if-error).
    pub stale_served: u64,
    /// Background refreshes started (stale-while-revalidate).
    pub refreshes: u64,
    /// Entries that failed to decode and were removed.
    pub corrupt_entries: u64,
    /// Cache operations that failed (Redis errors) and were failed open.
    pub errors: u64,
    /// Entries currently in L1.
    pub l1_entries: u64,
}

/// Counters that have no Prometheus twin (the others are read from the metric handles, so
/// the hit path increments one atomic, not two).
#[derive(Default)]
struct Counters {
    refreshes: AtomicU64,
    corrupt: AtomicU64,
    errors: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The result of [`Cache::warmup`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WarmupReport {
    /// Entries now in the cache (loaded, or already present).
    pub warmed: u64,
    /// Entries whose loader failed (or panicked).
    pub failed: u64,
}

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
    flights: Flights,
    waiters: Waiters,
    reads: ReadPredictor,
    /// The tag index of the entries that live only in L1 (see [`LocalTags`]).
    local_tags: std::sync::Mutex<LocalTags>,
    /// Set once a cache with Redis indexed an L1-only call's tags: from then on its other
    /// fills take `local_tags`' lock to drop the key from it.
    mixed_local_tags: std::sync::atomic::AtomicBool,
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

/// Per-call settings with every default applied.
#[derive(Debug, Clone, Copy)]
struct Resolved {
    ttl: Duration,
    l1_ttl: Duration,
    swr: Duration,
    sie: Duration,
    mode: CacheMode,
    codec: CodecKind,
}

/// What one L2 read found.
enum Read<T> {
    /// Nothing stored; if a marker was offered, this caller now holds the lock.
    Miss,
    /// Another caller's regeneration lock.
    Locked,
    Fresh(Envelope<T>),
    /// Past its freshness, inside the SWR window.
    Stale(Envelope<T>),
    /// Past the SWR window, kept for stale-if-error.
    Expired(Envelope<T>),
    Corrupt(Vec<u8>, Error),
}

/// Whether the next L2 read will probably hit: a saturating score, +1 per hit and -4 per miss,
/// in 0..=16. At 8 and above the first read is a plain `GET` (a hit costs what a `GET` costs);
/// below it the read also takes the regeneration lock (`SET .. NX GET`), so that a miss costs
/// two round trips. A wrong guess costs one extra round trip on that miss, and after two
/// misses in a row the reads take the lock again.
#[derive(Default)]
struct ReadPredictor(std::sync::atomic::AtomicU32);

impl ReadPredictor {
    const MAX: u32 = 16;
    const THRESHOLD: u32 = 8;

    fn expect_hit(&self) -> bool {
        self.0.load(Ordering::Relaxed) >= Self::THRESHOLD
    }

    fn record(&self, hit: bool) {
        let score = self.0.load(Ordering::Relaxed);
        let next = if hit {
            (score + 1).min(Self::MAX)
        } else {
            score.saturating_sub(4)
        };
        if next != score {
            self.0.store(next, Ordering::Relaxed);
        }
    }
}

/// A read already done before coordination: the marker it offered, and what it found.
type FirstRead<T> = (Option<Marker>, Result<Read<T>>);

/// The regeneration lock a loading caller holds.
enum Lock {
    None,
    /// A marker in the entry's own key.
    Marker(Marker),
    /// A separate refresh lock (key, token), taken for an entry that exists but is stale;
    /// the write only happens while the entry still starts with the header that was read.
    Refresh(String, Marker, [u8; envelope::HEADER_LEN]),
}

/// The in-process tag index of the entries that live only in L1 (every entry of an L1-only
/// cache, and the `mode = L1Only` calls of a cache with Redis): both directions, so that a
/// rewrite with other tags (or none) leaves the indexes of the tags it no longer carries.
#[derive(Default)]
struct LocalTags {
    by_tag: HashMap<String, HashSet<Box<str>>>,
    by_key: HashMap<Box<str>, Box<[String]>>,
}

impl LocalTags {
    /// Records that `key` now carries exactly `tags`.
    fn set(&mut self, key: &str, tags: &[String]) {
        self.forget(key);
        if !tags.is_empty() {
            for t in tags {
                self.by_tag
                    .entry(t.clone())
                    .or_default()
                    .insert(Box::from(key));
            }
            self.by_key.insert(Box::from(key), tags.into());
        }
    }

    /// Drops `key` from every index.
    fn forget(&mut self, key: &str) {
        if let Some(old) = self.by_key.remove(key) {
            for t in &old {
                if let Some(keys) = self.by_tag.get_mut(t) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.by_tag.remove(t);
                    }
                }
            }
        }
    }

    /// Takes every key carrying one of `tags` out of the index.
    fn take<S: AsRef<str>>(&mut self, tags: &[S]) -> Vec<Box<str>> {
        let keys: Vec<Box<str>> = tags
            .iter()
            .filter_map(|t| self.by_tag.remove(t.as_ref()))
            .flatten()
            .collect();
        for k in &keys {
            self.forget(k);
        }
        keys
    }

    /// Keeps only the keys `alive` says are still cached.
    fn prune(&mut self, alive: impl Fn(&str) -> bool) {
        let dead: Vec<Box<str>> = self.by_key.keys().filter(|k| !alive(k)).cloned().collect();
        for k in dead {
            self.forget(&k);
        }
    }
}

/// What [`Cache::write`] did.
struct Written {
    /// Whether the entry was stored (false: the lock or the entry changed meanwhile).
    stored: bool,
    /// The encoded entry's size in bytes (0 without L2).
    size: usize,
    /// When the written entry goes stale (epoch milliseconds).
    stale_at: u64,
}

/// What `tag_claim.lua` took from one index: its members, and their scores in the same
/// order (none for an index of an older redisx, a plain set).
type Claimed = (Vec<String>, Vec<String>);

/// A regeneration lock's token: [`MARKER`] and 16 random bytes.
type Marker = [u8; 17];

/// Releases a lock when a load is abandoned (loader panicked or the caller was cancelled).
struct LockGuard<'a> {
    cache: Weak<CacheInner>,
    key: &'a str,
    lock: Lock,
}

impl LockGuard<'_> {
    fn take(&mut self) -> Lock {
        std::mem::replace(&mut self.lock, Lock::None)
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let lock = self.take();
        if matches!(lock, Lock::None) {
            return;
        }
        let (Some(inner), Ok(handle)) =
            (self.cache.upgrade(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let key = self.key.to_owned();
        handle.spawn(async move {
            Cache { inner }.release(&key, lock).await;
        });
    }
}

/// The outcome of the shared fetch path.
pub(crate) enum Fetched<T, E, Fut> {
    Done(Result<T, E>),
    /// A stale value inside the SWR window; the loader was not started.
    Stale {
        value: T,
        loader: Fut,
        /// The stale entry's header, for the refresh's compare-and-set write.
        header: [u8; envelope::HEADER_LEN],
    },
}

/// Groups `items` by the cluster slot of their full key and cuts each group into chunks of at
/// most [`CHUNK`]: one command or script per chunk is cluster-safe and atomic.
fn slot_chunks<T>(items: Vec<T>, full: impl Fn(&T) -> &[u8]) -> Vec<Vec<T>> {
    let mut by_slot: std::collections::BTreeMap<u16, Vec<Vec<T>>> =
        std::collections::BTreeMap::new();
    for item in items {
        let chunks = by_slot.entry(key::slot_of(full(&item))).or_default();
        match chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(item),
            _ => chunks.push(vec![item]),
        }
    }
    by_slot.into_values().flatten().collect()
}

fn new_marker() -> Marker {
    let mut m = [MARKER; 17];
    m[1..].copy_from_slice(&rand::random::<u128>().to_le_bytes());
    m
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Cache {
    pub(crate) fn new(
        cfg: CacheConfig,
        app_prefix: &str,
        client: Option<Client>,
        metrics: CacheMetrics,
        registry: &crate::metrics::SharedRegistry,
    ) -> Self {
        let keys = KeyBuilder::new(app_prefix, &cfg.key_prefix);
        let l1 = Arc::new(L1::new(cfg.l1_max_entries, cfg.l1_max_bytes));
        // The L1 size gauge is read at scrape time: counting the shards on every insert
        // would cost more than the insert.
        let weak = Arc::downgrade(&l1);
        crate::metrics::register_l1_size(registry, move || {
            weak.upgrade().map(|l1| l1.len() as u64)
        });
        let channel = format!("{}__events", keys.prefix());
        Self {
            inner: Arc::new(CacheInner {
                cfg,
                keys,
                l1,
                client,
                metrics,
                counters: Counters::default(),
                flights: Flights::default(),
                waiters: Waiters::default(),
                reads: ReadPredictor::default(),
                local_tags: std::sync::Mutex::default(),
                mixed_local_tags: std::sync::atomic::AtomicBool::new(false),
                origin: format!("{:016x}", rand::random::<u64>()),
                channel,
                stop: Arc::new(Notify::new()),
            }),
        }
    }

    /// Starts the invalidation listener (when the cache uses Redis) and waits until it is
    /// subscribed, so that a runtime returned by `build()` never misses a message.
    pub(crate) async fn start(&self) -> Result<()> {
        let Some(client) = &self.inner.client else {
            return Ok(());
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        invalidation::spawn(
            Arc::downgrade(&self.inner),
            client.config().clone(),
            self.inner.channel.clone(),
            self.inner.stop.clone(),
            tx,
        );
        rx.await.unwrap_or(Ok(()))
    }

    pub(crate) fn stop(&self) {
        self.inner.stop.notify_one();
    }

    /// The configuration this cache runs with.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.cfg
    }

    /// The full Redis key of a user key (`{app prefix}{cache prefix}{key}`).
    pub fn full_key(&self, key: &str) -> String {
        self.inner.keys.full(key)
    }

    /// The pub/sub channel this cache publishes its changes on.
    pub fn invalidation_channel(&self) -> &str {
        &self.inner.channel
    }

    // ------------------------------------------------------------------ public API

    /// Reads a value: L1, then L2 (an L2 hit fills L1). A stale value inside its SWR window
    /// is returned; a corrupt entry is removed and reported as `None`.
    ///
    /// Fails open: when Redis cannot answer, the read is a miss (`Ok(None)`), logged and
    /// counted in [`CacheStats::errors`]. Only a malformed key is an error.
    pub async fn get<T>(&self, key: &str) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        self.validate_key(key)?;
        let r = self.resolve(&EntryOptions::default())?;
        let span = tracing::info_span!(
            "cache.get",
            cache.key = key,
            cache.layer = tracing::field::Empty,
            cache.hit = tracing::field::Empty
        );
        if let Some(v) = self.l1_get::<T>(key, Some(r.mode), Erasure::boxed()) {
            span.record("cache.layer", "l1");
            span.record("cache.hit", true);
            return Ok(Some(v));
        }
        let Some(client) = self.l2_client(r.mode) else {
            span.record("cache.hit", false);
            return Ok(None);
        };
        let full = self.full_key(key);
        let since = self.inner.l1.epoch();
        let read = match traced!(self.read::<T>(client, &full, None), span) {
            Ok(read) => read,
            Err(e) => {
                self.fail_open("read", key, &e);
                return Ok(None);
            }
        };
        span.record("cache.layer", "l2");
        Ok(match read {
            Read::Fresh(env) => {
                span.record("cache.hit", true);
                self.fill_l1(key, &env, &r, Erasure::boxed(), since);
                Some(env.value)
            }
            Read::Stale(env) => {
                self.inner.metrics.l2_hits.inc();
                self.inner.metrics.stale_served.inc();
                span.record("cache.hit", true);
                Some(env.value)
            }
            Read::Corrupt(bytes, e) => {
                span.record("cache.hit", false);
                self.remove_corrupt(&full, bytes, &e).await;
                None
            }
            Read::Miss | Read::Locked | Read::Expired(_) => {
                span.record("cache.hit", false);
                None
            }
        })
    }

    /// Reads many values with one `MGET` (L1 first). The result has one slot per key.
    /// Fails open like [`get`](Self::get): without Redis, only L1 answers.
    pub async fn get_many<T, K>(&self, keys: &[K]) -> Result<Vec<Option<T>>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        K: AsRef<str>,
    {
        let r = self.resolve(&EntryOptions::default())?;
        let mut out: Vec<Option<T>> = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let k = k.as_ref();
            self.validate_key(k)?;
            let v = self.l1_get::<T>(k, Some(r.mode), Erasure::boxed());
            if v.is_none() {
                missing.push(i);
            }
            out.push(v);
        }
        let Some(client) = self.l2_client(r.mode) else {
            return Ok(out);
        };
        if missing.is_empty() {
            return Ok(out);
        }
        let mut cmd = redis::cmd("MGET");
        for &i in &missing {
            cmd.arg(self.full_key(keys[i].as_ref()));
        }
        let since = self.inner.l1.epoch();
        let values: Vec<Option<Vec<u8>>> = match client.query_named("MGET", &cmd).await {
            Ok(values) => values,
            Err(e) => {
                self.fail_open("read", "get_many", &e);
                return Ok(out);
            }
        };
        let now = envelope::now_ms();
        for (&i, bytes) in missing.iter().zip(values) {
            let key = keys[i].as_ref();
            match self.classify::<T>(bytes, now) {
                Read::Fresh(env) => {
                    self.fill_l1(key, &env, &r, Erasure::boxed(), since);
                    out[i] = Some(env.value);
                }
                Read::Stale(env) => {
                    self.inner.metrics.l2_hits.inc();
                    self.inner.metrics.stale_served.inc();
                    out[i] = Some(env.value);
                }
                Read::Corrupt(bytes, e) => {
                    self.remove_corrupt(&self.full_key(key), bytes, &e).await;
                }
                Read::Miss | Read::Locked | Read::Expired(_) => {}
            }
        }
        Ok(out)
    }

    /// Writes a value to L2 and L1 with `ttl` (or the default ttl), replacing any entry, and
    /// tells the other instances to drop their L1 copy. See [`set_with`](Self::set_with) for
    /// failures.
    pub async fn set<T>(&self, key: &str, value: &T, ttl: Option<Duration>) -> Result<()>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let opts = EntryOptions {
            ttl,
            ..EntryOptions::default()
        };
        self.set_with(key, value, &opts).await
    }

    /// Writes a value with full options (ttl, tags, windows, codec, tiers).
    ///
    /// A write never fails the caller because of Redis: a failed L2 write is logged and
    /// counted (`redisx_cache_write_errors_total`), and this instance's L1 still gets the
    /// value. Invalid input (key, tags, ttl) is an error and writes nothing.
    pub async fn set_with<T>(&self, key: &str, value: &T, opts: &EntryOptions) -> Result<()>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        self.validate_key(key)?;
        self.validate_tags(&opts.tags)?;
        let r = self.resolve(opts)?;
        let span = tracing::info_span!(
            "cache.set",
            cache.key = key,
            cache.ttl_ms = millis(r.ttl),
            cache.tags = opts.tags.len()
        );
        let since = self.inner.l1.epoch();
        let written = traced!(
            self.write(key, None, value, &r, &opts.tags, &Lock::None),
            span
        );
        let (size, stale_at) = match written {
            Ok(w) => (w.size, w.stale_at),
            Err(e) => {
                // An L1 entry must not outlive (or differ from) its L2 entry: drop ours.
                self.inner.metrics.write_errors.inc();
                self.fail_open("write", key, &e);
                self.inner.l1.remove(key);
                return Ok(());
            }
        };
        if r.mode.uses_l1() {
            self.l1_insert(
                key,
                value.clone(),
                r,
                stale_at,
                size,
                Erasure::boxed(),
                Some(since),
                &opts.tags,
            );
        }
        Ok(())
    }

    /// Writes many values in one pipelined round trip (tags indexed), then one invalidation
    /// message for all of them. Like [`set_with`](Self::set_with), a Redis failure is logged
    /// and counted, never returned.
    pub async fn set_many<T, K, I>(&self, items: I, opts: &EntryOptions) -> Result<()>
    where
        T: Serialize + Clone + Send + Sync + 'static,
        K: AsRef<str>,
        I: IntoIterator<Item = (K, T)>,
    {
        self.validate_tags(&opts.tags)?;
        let r = self.resolve(opts)?;
        let items: Vec<(K, T)> = items.into_iter().collect();
        for (k, _) in &items {
            self.validate_key(k.as_ref())?;
        }
        let now = envelope::now_ms();
        let since = self.inner.l1.epoch();
        // The weight of each L1 copy under a byte budget: its encoded size.
        let mut sizes = Vec::with_capacity(items.len());
        if let Some(client) = self.l2_client(r.mode) {
            let (stale_at, expires_at, px) = Self::timing(&r, now);
            let mut pipe = redis::pipe();
            let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_ref()).collect();
            self.index_tags_of(&mut pipe, &keys, &opts.tags, px, now);
            for (k, v) in &items {
                let bytes = envelope::encode(r.codec, v, stale_at, expires_at, &opts.tags)?;
                sizes.push(bytes.len());
                pipe.cmd("SET")
                    .arg(self.full_key(k.as_ref()))
                    .arg(bytes)
                    .arg("PX")
                    .arg(px)
                    .ignore();
            }
            for chunk in items.chunks(CHUNK) {
                let msg = invalidation::keys_message(
                    &self.inner.origin,
                    chunk.iter().map(|(k, _)| k.as_ref()),
                );
                pipe.cmd("PUBLISH")
                    .arg(&self.inner.channel)
                    .arg(msg)
                    .ignore();
            }
            let span = tracing::info_span!(
                "cache.set",
                cache.keys = items.len(),
                cache.ttl_ms = millis(r.ttl),
                cache.tags = opts.tags.len()
            );
            let mut sent = traced!(client.query_pipeline::<()>(&pipe), span);
            if matches!(&sent, Err(e) if is_wrong_type(e)) {
                // An index of an older redisx: convert it, then send the batch again (its
                // writes are idempotent).
                match self.migrate_tag_indexes(client, &opts.tags).await {
                    Ok(0) => {} // no old index: the error was something else's
                    Ok(_) => sent = traced!(client.query_pipeline::<()>(&pipe), span),
                    Err(e) => sent = Err(e),
                }
            }
            if let Err(e) = sent {
                // An L1 entry must not outlive (or differ from) its L2 entry: drop ours.
                self.inner.metrics.write_errors.inc();
                self.fail_open("write", "set_many", &e);
                for (k, _) in &items {
                    self.inner.l1.remove(k.as_ref());
                }
                return Ok(());
            }
        }
        if r.mode.uses_l1() {
            for (i, (k, v)) in items.into_iter().enumerate() {
                let size = match sizes.get(i) {
                    Some(&size) => size,
                    None => self.l1_weight_of(r.codec, &v),
                };
                self.l1_insert(
                    k.as_ref(),
                    v,
                    r,
                    now + millis(r.ttl),
                    size,
                    Erasure::boxed(),
                    Some(since),
                    &opts.tags,
                );
            }
        }
        Ok(())
    }

    /// Deletes a value from both tiers and from the other instances' L1; `true` if L2 held
    /// it (or, without Redis, L1 did).
    ///
    /// Unlike reads and writes, deletes and invalidations report Redis failures: a stale
    /// entry that could not be removed must not pass unnoticed. This instance's L1 is evicted
    /// either way.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.delete_many(&[key]).await? > 0)
    }

    /// Deletes many keys in one pipelined round trip; returns how many existed.
    pub async fn delete_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<u64> {
        let mut removed_l1 = 0u64;
        for k in keys {
            self.validate_key(k.as_ref())?;
            if self.inner.l1.remove(k.as_ref()) {
                removed_l1 += 1;
            }
        }
        let Some(client) = self.inner.client.as_ref() else {
            return Ok(removed_l1);
        };
        let span = tracing::info_span!("cache.invalidate", cache.keys = keys.len());
        let full: Vec<String> = keys.iter().map(|k| self.full_key(k.as_ref())).collect();
        let user: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        self.unlink_and_publish(client, &full, &user)
            .instrument(span)
            .await
            .map_err(|e| with_code(e, ErrorCode::CacheDeleteFailed, "delete"))
    }

    /// Returns the cached value or runs `loader`, caching its `Ok` value with `ttl` (or the
    /// default ttl), with stampede protection across instances. Loader errors pass through
    /// untouched (and are not cached); cache errors fail open (the loader runs and the caller
    /// never sees them). The only redisx error `E` can receive is
    /// [`ErrorCode::CacheStampedeTimeout`], with [`StampedeFallback::Error`].
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: From<Error> + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let opts = EntryOptions {
            ttl,
            ..EntryOptions::default()
        };
        if let Some(v) = self.l1_get::<T>(key, None, Erasure::boxed()) {
            trace_l1_hit(key);
            return Ok(v);
        }
        self.load_through(
            key,
            &opts,
            loader(),
            |_| false,
            |e| Some(E::from(e)),
            Erasure::boxed(),
        )
        .await
    }

    /// [`get_or_load`](Self::get_or_load) with full options. With an SWR window (here or in
    /// the config), a stale value is returned at once and the loader runs in the background,
    /// so it must be `Send + 'static`.
    pub async fn get_or_load_with<T, E, F, Fut>(
        &self,
        key: &str,
        opts: &EntryOptions,
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: From<Error> + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        if let Some(v) = self.l1_get::<T>(key, opts.mode, Erasure::boxed()) {
            trace_l1_hit(key);
            return Ok(v);
        }
        self.load_swr(
            key,
            opts,
            loader(),
            |_| false,
            |e| Some(E::from(e)),
            Erasure::boxed(),
        )
        .await
    }

    /// Whether a fresh (or SWR-stale) value is stored under `key`. Reads only the entry's
    /// header (`GETRANGE`). Fails open: `false` on a Redis error.
    pub async fn has(&self, key: &str) -> bool {
        if self.validate_key(key).is_err() {
            return false;
        }
        if self.inner.l1.contains(key) {
            return true;
        }
        matches!(self.header(key).await, Some((_, expires_at)) if expires_at > envelope::now_ms())
    }

    /// How long the value under `key` stays fresh; `None` when absent, stale or on a Redis
    /// error. Without Redis (an L1-only cache), how long it stays in L1.
    pub async fn ttl(&self, key: &str) -> Option<Duration> {
        if self.validate_key(key).is_err() {
            return None;
        }
        if self.l2_client(self.mode(None)).is_none() {
            return self.inner.l1.ttl(key);
        }
        let (stale_at, _) = self.header(key).await?;
        let now = envelope::now_ms();
        (stale_at > now).then(|| Duration::from_millis(stale_at - now))
    }

    /// Deletes every entry carrying any of `tags`, in every instance's L1 too; returns how
    /// many entries were deleted. Each tag index is claimed atomically (Lua); then one script
    /// per cluster slot deletes the indexed entries that still carry one of the tags (an
    /// entry rewritten since without them stays). Entries that live only in L1 (written with
    /// [`CacheMode::L1Only`]) are found in each instance's in-process index: this instance
    /// evicts (and counts) its own, and the others evict theirs on the invalidation message.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use redisx_runtime::cache::EntryOptions;
    /// let cache = rx.cache();
    /// cache.set_with("user:1", &"Ada", &EntryOptions::new().tags(["users"])).await?;
    /// assert_eq!(cache.invalidate_tags(&["users"]).await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn invalidate_tags<S: AsRef<str>>(&self, tags: &[S]) -> Result<u64> {
        for t in tags {
            config::validate_tag(t.as_ref())?;
        }
        if tags.is_empty() {
            return Ok(0);
        }
        let Some(client) = self.inner.client.as_ref() else {
            // Without Redis the tag index is in process.
            return Ok(self.inner.evict_local_tags(tags, |_| true));
        };
        let span = tracing::info_span!("cache.invalidate", cache.tags = tags.len());
        async {
            let claim = |t: &str| script::CACHE_TAG_CLAIM.script.key(self.tag_key(t));
            let mut pipe = redis::pipe();
            for t in tags {
                pipe.invoke_script(&claim(t.as_ref()));
            }
            // Each claim's own outcome: one that fails must not hide the indexes the others
            // already took (and deleted), which are processed (or put back) below.
            let replies = client.query_pipeline_each::<Claimed>(&pipe).await?;
            let mut claimed: Vec<Claimed> = Vec::with_capacity(tags.len());
            let mut failed: Option<Error> = None;
            for (t, reply) in tags.iter().zip(replies) {
                let reply = match reply {
                    // The script did not run (the server lost it): load it and claim again.
                    Err(e)
                        if e.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                    {
                        client.invoke::<Claimed>(&claim(t.as_ref())).await
                    }
                    other => other.map_err(Error::from_redis),
                };
                claimed.push(reply.unwrap_or_else(|e| {
                    failed.get_or_insert(e);
                    Claimed::default()
                }));
            }
            let refs: Vec<&str> = sorted(
                claimed
                    .iter()
                    .flat_map(|(members, _)| members)
                    .map(String::as_str)
                    .collect(),
            );
            for k in &refs {
                self.inner.l1.remove(k);
            }
            let local = self
                .inner
                .evict_local_tags(tags, |k| refs.binary_search(&k).is_err());
            let deleted = match self.delete_tagged(client, &refs, tags).await {
                Ok(deleted) => deleted,
                Err(e) => {
                    self.restore_tag_indexes(client, tags, &claimed).await;
                    return Err(e);
                }
            };
            // Other instances' L1-only entries are in their own in-process indexes.
            let published: Result<i64> = client
                .query_named(
                    "PUBLISH",
                    redis::cmd("PUBLISH")
                        .arg(&self.inner.channel)
                        .arg(invalidation::tags_message(&self.inner.origin, tags)),
                )
                .await;
            if let Some(e) = failed {
                return Err(e);
            }
            published?;
            Ok(deleted + local)
        }
        .instrument(span)
        .await
        .map_err(|e| with_code(e, ErrorCode::CacheTagInvalidationFailed, "invalidate_tags"))
    }

    /// The user keys indexed under `tag`: those written with it (in Redis, read page by page
    /// with `ZSCAN`, never in one blocking read; without Redis, from the in-process index),
    /// less those whose entries ended a while ago (see the tag indexes in the module docs). The index
    /// may still name a key whose entry expired or was rewritten without the tag since;
    /// [`invalidate_tags`](Self::invalidate_tags) checks each entry before deleting it.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use redisx_runtime::cache::EntryOptions;
    /// let cache = rx.cache();
    /// cache.set_with("user:1", &"Ada", &EntryOptions::new().tags(["users"])).await?;
    /// assert_eq!(cache.keys_by_tag("users").await?, ["user:1"]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn keys_by_tag(&self, tag: &str) -> Result<Vec<String>> {
        config::validate_tag(tag)?;
        let mut keys: Vec<String> = self
            .inner
            .local_index()
            .by_tag
            .get(tag)
            .map(|keys| keys.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        if let Some(client) = self.inner.client.as_ref() {
            let index = self.tag_key(tag);
            let kind: String = client
                .query_named("TYPE", redis::cmd("TYPE").arg(&index))
                .await?;
            // A sorted set (an index of an older redisx is a plain set).
            let (scan, step) = match kind.as_str() {
                // ZSCAN answers member, score, member, score, ...
                "zset" => ("ZSCAN", 2),
                "set" => ("SSCAN", 1),
                _ => return Ok(sorted(keys)),
            };
            let found: Vec<String> = scan_pages(client, scan, |cursor| {
                redis::cmd(scan)
                    .arg(&index)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(1000)
                    .clone()
            })
            .await?;
            keys.extend(found.into_iter().step_by(step));
        }
        Ok(sorted(keys))
    }

    /// Deletes every entry whose user key matches a Redis glob `pattern` (`user:*`), found
    /// with `SCAN` (never `KEYS`), in every instance's L1 too; returns how many were deleted.
    /// Entries that live only in L1 (written with [`CacheMode::L1Only`]) match in each
    /// instance's L1, with Redis's glob syntax (`*`, `?`, `[a-z]`, `[^a]`, `\x`): this
    /// instance evicts (and counts) its own, the others theirs on the invalidation message.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let cache = rx.cache();
    /// cache.set("user:1", &"Ada", None).await?;
    /// cache.set("team:1", &"Core", None).await?;
    /// assert_eq!(cache.invalidate_pattern("user:*").await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn invalidate_pattern(&self, pattern: &str) -> Result<u64> {
        let Some(client) = self.inner.client.as_ref() else {
            return Ok(self.inner.evict_local_pattern(pattern));
        };
        let span = tracing::info_span!("cache.invalidate", cache.pattern = pattern);
        let found = traced!(self.scan(client, pattern), span)?;
        let prefix_len = self.inner.keys.prefix().len();
        let cfg = &self.inner.cfg;
        let mut full: Vec<&[u8]> = Vec::with_capacity(found.len());
        // The user keys: only UTF-8 ones can be in an L1 or in a message.
        let mut refs: Vec<&str> = Vec::with_capacity(found.len());
        for f in &found {
            let u = f.get(prefix_len..).unwrap_or_default();
            if u.starts_with(cfg.tag_index_prefix.as_bytes())
                || u.starts_with(cfg.lock_prefix.as_bytes())
            {
                continue;
            }
            full.push(f);
            if let Ok(u) = std::str::from_utf8(u) {
                refs.push(u);
            }
        }
        for k in &refs {
            self.inner.l1.remove(k);
        }
        let deleted = traced!(self.unlink_and_publish(client, &full, &refs), span)
            .map_err(|e| with_code(e, ErrorCode::CacheDeleteFailed, "invalidate_pattern"))?;
        // Entries that live only in L1 (`CacheMode::L1Only` calls) are not in Redis: this
        // instance evicts and counts its own, the others theirs on the message.
        let local = self.inner.evict_local_pattern(pattern);
        let msg = invalidation::pattern_message(&self.inner.origin, pattern);
        let published: Result<u64> = client
            .query_named(
                "PUBLISH",
                redis::cmd("PUBLISH").arg(&self.inner.channel).arg(msg),
            )
            .await;
        published.map_err(|e| with_code(e, ErrorCode::CacheDeleteFailed, "invalidate_pattern"))?;
        Ok(deleted + local)
    }

    /// Deletes every key under this cache's prefix (entries, tag indexes, locks) and every
    /// instance's L1; keys outside the prefix are untouched. Returns how many were deleted.
    pub async fn clear(&self) -> Result<u64> {
        self.inner.l1.clear();
        let Some(client) = self.inner.client.as_ref() else {
            return Ok(0);
        };
        let span = tracing::info_span!("cache.invalidate", cache.clear = true);
        let full = traced!(self.scan(client, "*"), span)?;
        let deleted = traced!(self.unlink(client, &full), span)?;
        self.inner.l1.clear();
        let msg = invalidation::clear_message(&self.inner.origin);
        client
            .query_named::<i64>(
                "PUBLISH",
                redis::cmd("PUBLISH").arg(&self.inner.channel).arg(msg),
            )
            .await?;
        Ok(deleted)
    }

    /// Loads `entries` (key and loader) with at most `concurrency` loads at a time, through
    /// the normal path (an entry already cached is not reloaded).
    ///
    /// # Panics
    /// Never: the semaphore it waits on is never closed.
    pub async fn warmup<T, E, F, Fut, I>(
        &self,
        entries: I,
        opts: &EntryOptions,
        concurrency: usize,
    ) -> WarmupReport
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: From<Error> + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        I: IntoIterator<Item = (String, F)>,
    {
        let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for (key, loader) in entries {
            let cache = self.clone();
            let opts = opts.clone();
            let permit = sem.clone().acquire_owned().await.expect("never closed");
            set.spawn(async move {
                let _permit = permit;
                cache.get_or_load_with(&key, &opts, loader).await.is_ok()
            });
        }
        let mut report = WarmupReport::default();
        while let Some(r) = set.join_next().await {
            if matches!(r, Ok(true)) {
                report.warmed += 1;
            } else {
                report.failed += 1;
            }
        }
        report
    }

    /// Counters of this cache since the runtime started.
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        let m = &self.inner.metrics;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            l1_hits: m.l1_hits.get(),
            l1_misses: m.l1_misses.get(),
            l2_hits: m.l2_hits.get(),
            l2_misses: m.l2_misses.get(),
            loads: m.loads_ok.get() + m.loads_error.get(),
            load_errors: m.loads_error.get(),
            stampedes_prevented: m.stampede_prevented.get(),
            stale_served: m.stale_served.get(),
            refreshes: l(&c.refreshes),
            corrupt_entries: l(&c.corrupt),
            errors: l(&c.errors),
            l1_entries: self.inner.l1.len() as u64,
        }
    }

    /// The number of entries in L1.
    pub fn l1_len(&self) -> usize {
        self.inner.l1.len()
    }

    /// Empties L1 of this instance (L2 and other instances are untouched).
    pub fn clear_l1(&self) {
        self.inner.l1.clear();
    }

    // ------------------------------------------------------------------ internals

    fn validate_key(&self, key: &str) -> Result<()> {
        key::validate(key, self.inner.cfg.max_key_len)?;
        if self.is_internal(key) {
            return Err(Error::new(
                ErrorCode::CacheKeyInvalid,
                format!(
                    "keys starting with `{}` or `{}` are reserved for the cache's own use",
                    self.inner.cfg.tag_index_prefix, self.inner.cfg.lock_prefix
                ),
            )
            .with_context("key", key));
        }
        Ok(())
    }

    fn is_internal(&self, key: &str) -> bool {
        key.starts_with(&self.inner.cfg.tag_index_prefix)
            || key.starts_with(&self.inner.cfg.lock_prefix)
    }

    fn validate_tags(&self, tags: &[String]) -> Result<()> {
        let max = self.inner.cfg.max_tags_per_key;
        if tags.len() > max {
            return Err(Error::new(
                ErrorCode::CacheKeyInvalid,
                format!(
                    "{} tags given; an entry may carry at most {max}",
                    tags.len()
                ),
            ));
        }
        tags.iter().try_for_each(|t| config::validate_tag(t))
    }

    fn tag_key(&self, tag: &str) -> String {
        let mut k = self.inner.keys.full(&self.inner.cfg.tag_index_prefix);
        k.push_str(tag);
        k
    }

    fn refresh_key(&self, key: &str) -> String {
        let mut k = self.inner.keys.full(&self.inner.cfg.lock_prefix);
        k.push_str(key);
        k
    }

    fn resolve(&self, opts: &EntryOptions) -> Result<Resolved> {
        let cfg = &self.inner.cfg;
        let ttl = opts.ttl.unwrap_or(cfg.default_ttl);
        if ttl.is_zero() {
            return Err(Error::new(
                ErrorCode::ConfigInvalid,
                "a cache ttl must be greater than zero",
            ));
        }
        if ttl > cfg.max_ttl {
            return Err(Error::new(
                ErrorCode::ConfigInvalid,
                format!(
                    "ttl {ttl:?} exceeds the cache's max_ttl of {:?}",
                    cfg.max_ttl
                ),
            ));
        }
        Ok(Resolved {
            ttl,
            l1_ttl: opts.l1_ttl.unwrap_or(cfg.l1_ttl).min(cfg.l1_ttl).min(ttl),
            swr: opts.swr.or(cfg.swr).unwrap_or(Duration::ZERO),
            sie: opts
                .stale_if_error
                .or(cfg.stale_if_error)
                .unwrap_or(Duration::ZERO),
            mode: self.mode(opts.mode),
            codec: opts.codec.unwrap_or(cfg.codec),
        })
    }

    fn mode(&self, call: Option<CacheMode>) -> CacheMode {
        match (self.inner.cfg.mode, call) {
            // A cache configured without Redis can never use L2.
            (CacheMode::L1Only, _) => CacheMode::L1Only,
            (_, Some(m)) | (m, None) => m,
        }
    }

    fn l2_client(&self, mode: CacheMode) -> Option<&Client> {
        if mode.uses_l2() {
            self.inner.client.as_ref()
        } else {
            None
        }
    }

    /// `(stale_at, expires_at, redis px)` of an entry written at `now`.
    fn timing(r: &Resolved, now: u64) -> (u64, u64, u64) {
        let stale_at = now + millis(r.ttl);
        let expires_at = stale_at + millis(r.swr);
        let px = millis(r.ttl) + millis(r.swr) + millis(r.sie);
        (stale_at, expires_at, px.max(1))
    }

    /// The L1 probe of the hit path: no allocation, no await.
    #[inline]
    pub(crate) fn l1_get<T>(
        &self,
        key: &str,
        mode: Option<CacheMode>,
        erasure: Erasure<T>,
    ) -> Option<T> {
        if !self.mode(mode).uses_l1() {
            return None;
        }
        if let Some(v) = self.inner.l1.get(key, Instant::now(), erasure) {
            self.inner.metrics.l1_hits.inc();
            Some(v)
        } else {
            self.inner.metrics.l1_misses.inc();
            None
        }
    }

    /// The size of `value` as L1 weighs it under a byte budget (its encoded size; a value
    /// that cannot be encoded weighs as if empty); 0 without a byte budget, where the
    /// encoding would be wasted work.
    fn l1_weight_of<T: Serialize>(&self, codec: CodecKind, value: &T) -> usize {
        if !self.inner.l1.weighs_bytes() {
            return 0;
        }
        codec.encode(value).map_or(0, |bytes| bytes.len())
    }

    /// Inserts into L1. For an entry that lives only in L1 (an L1-only cache, or an
    /// L1-only call in a cache with Redis, whose entry Redis's tag index never sees) the key's
    /// tags are recorded in the same step, under the tag index's lock and only when the value
    /// was inserted, so the index always names exactly the tags of the value L1 holds (two
    /// racing writes of one key cannot leave one's value under the other's tags).
    #[allow(clippy::too_many_arguments)]
    fn l1_insert<T>(
        &self,
        key: &str,
        value: T,
        r: Resolved,
        stale_at: u64,
        size: usize,
        erasure: Erasure<T>,
        since: Option<u64>,
        tags: &[String],
    ) -> bool {
        let fresh = Duration::from_millis(stale_at.saturating_sub(envelope::now_ms()));
        let ttl = r.l1_ttl.min(fresh);
        let l1 = &self.inner.l1;
        if self.inner.client.is_some() && r.mode != CacheMode::L1Only {
            // An L1 copy of an entry in Redis, whose index holds the tags.
            if !self.inner.mixed_local_tags.load(Ordering::Acquire) {
                return l1.insert(key, value, ttl, size, erasure, since, false);
            }
            // The key may be indexed from an earlier L1-only call: it no longer carries
            // those tags here.
            let mut index = self.inner.local_index();
            let inserted = l1.insert(key, value, ttl, size, erasure, since, false);
            if inserted {
                index.forget(key);
            }
            return inserted;
        }
        let mut index = self.inner.local_index();
        let inserted = l1.insert(key, value, ttl, size, erasure, since, true);
        if inserted && (!tags.is_empty() || !index.by_key.is_empty()) {
            if self.inner.client.is_some() && !tags.is_empty() {
                self.inner.mixed_local_tags.store(true, Ordering::Release);
            }
            index.set(key, tags);
            // Keys L1 dropped since (evicted, expired) are pruned whenever the index tracks
            // more than a few times L1's capacity, so it stays bounded.
            let bound = self.inner.cfg.l1_max_entries.saturating_mul(4).max(64);
            if index.by_key.len() > bound {
                index.prune(|k| l1.contains(k));
            }
        }
        inserted
    }

    fn fill_l1<T: Clone>(
        &self,
        key: &str,
        env: &Envelope<T>,
        r: &Resolved,
        erasure: Erasure<T>,
        since: u64,
    ) {
        if r.mode.uses_l1() {
            self.l1_insert(
                key,
                env.value.clone(),
                *r,
                env.stale_at,
                env.size,
                erasure,
                Some(since),
                // A fill from L2: the cache has Redis, whose index holds the tags.
                &[],
            );
        }
    }

    fn classify<T: DeserializeOwned>(&self, bytes: Option<Vec<u8>>, now: u64) -> Read<T> {
        let Some(bytes) = bytes else {
            self.inner.metrics.l2_misses.inc();
            return Read::Miss;
        };
        // A lock marker is 0xFE and a 16-byte token, plus `w` once a waiter flagged it. Other
        // bytes starting with 0xFE are no lock of ours: they are decoded (and found corrupt)
        // rather than waited for until `wait_timeout`.
        if bytes.first() == Some(&MARKER)
            && (bytes.len() == 17 || (bytes.len() == 18 && bytes[17] == b'w'))
        {
            return Read::Locked;
        }
        match envelope::decode::<T>(&bytes) {
            Ok(env) if now < env.stale_at => {
                self.inner.metrics.l2_hits.inc();
                Read::Fresh(env)
            }
            // Counted where it is served (a hit) or reloaded (a miss).
            Ok(env) if now < env.expires_at => Read::Stale(env),
            Ok(env) => {
                self.inner.metrics.l2_misses.inc();
                Read::Expired(env)
            }
            Err(e) => {
                bump(&self.inner.counters.corrupt);
                self.inner.metrics.l2_misses.inc();
                Read::Corrupt(bytes, e)
            }
        }
    }

    /// One L2 read. With `marker`, a miss atomically places it as the regeneration lock
    /// (`SET key marker NX PX lock_ttl GET`): one round trip for read-or-lock.
    async fn read<T: DeserializeOwned>(
        &self,
        client: &Client,
        full: &str,
        marker: Option<&[u8]>,
    ) -> Result<Read<T>> {
        let bytes: Option<Vec<u8>> = match marker {
            Some(m) => {
                let px = millis(self.inner.cfg.stampede.lock_ttl).max(1);
                client
                    .query_named(
                        "SET",
                        redis::cmd("SET")
                            .arg(full)
                            .arg(m)
                            .arg("NX")
                            .arg("PX")
                            .arg(px)
                            .arg("GET"),
                    )
                    .await?
            }
            None => {
                client
                    .query_named("GET", redis::cmd("GET").arg(full))
                    .await?
            }
        };
        Ok(self.classify(bytes, envelope::now_ms()))
    }

    async fn remove_corrupt(&self, full: &str, bytes: Vec<u8>, why: &Error) {
        let Some(client) = self.inner.client.as_ref() else {
            return;
        };
        tracing::warn!(key = %full, error = %why, "corrupt cache entry; treating it as a miss and removing it");
        // Only while it still holds the bytes we read: a writer that replaced it meanwhile
        // keeps its value.
        let removed = client
            .eval::<u64, _, _>(&script::CACHE_DEL_IF_EQ.script, &[full], &[bytes])
            .await;
        if let Err(e) = removed {
            tracing::debug!(key = %full, error = %e, "could not remove the corrupt entry");
        }
    }

    /// Reads only the header of an entry: `(stale_at, expires_at)`.
    async fn header(&self, key: &str) -> Option<(u64, u64)> {
        let client = self.l2_client(self.mode(None))?;
        let bytes: Option<Vec<u8>> = client
            .query_named(
                "GETRANGE",
                redis::cmd("GETRANGE")
                    .arg(self.full_key(key))
                    .arg(0)
                    .arg(envelope::HEADER_LEN - 1),
            )
            .await
            .ok()?;
        envelope::decode_header(&bytes?)
    }

    /// Adds `key` to its tags' indexes, written at `now` (unix ms) to live `entry_px` in
    /// Redis (its SWR and stale-if-error windows included).
    ///
    /// An index is a sorted set of user keys, each scored by when its entry ends
    /// (`ZADD .. GT`: a rewrite only ever moves the score later). Every write to an index also
    /// drops the members whose entries ended more than [`TAG_PRUNE_MARGIN`] ago
    /// (`ZREMRANGEBYSCORE`), so an index holds the keys of live entries (and of entries
    /// rewritten without the tag since), however long its tag keeps being written: a plain
    /// set grew with every key ever written under a busy tag, and so did its invalidation. A
    /// write in flight scores its member in the future, so pruning never drops it. An index
    /// lives at least `max_ttl` and at least as long as its longest entry: `PEXPIRE .. NX`
    /// sets that on a new index, `PEXPIRE .. GT` only ever extends it.
    fn index_tags(
        &self,
        pipe: &mut redis::Pipeline,
        key: &str,
        tags: &[String],
        entry_px: u64,
        now: u64,
    ) {
        self.index_tags_of(pipe, &[key], tags, entry_px, now);
    }

    /// [`index_tags`](Self::index_tags) for many keys written together: one `ZADD` per tag
    /// (and chunk), one prune and one expiry per tag, not four commands per key and tag.
    fn index_tags_of(
        &self,
        pipe: &mut redis::Pipeline,
        keys: &[&str],
        tags: &[String],
        entry_px: u64,
        now: u64,
    ) {
        let ttl = millis(self.inner.cfg.max_ttl).max(entry_px);
        let ends = now.saturating_add(entry_px);
        let dead_before = format!("({}", now.saturating_sub(millis(TAG_PRUNE_MARGIN)));
        for t in tags {
            let tk = self.tag_key(t);
            for chunk in keys.chunks(CHUNK) {
                let mut zadd = redis::cmd("ZADD");
                zadd.arg(&tk).arg("GT");
                for key in chunk {
                    zadd.arg(ends).arg(*key);
                }
                pipe.add_command(zadd).ignore();
            }
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&tk)
                .arg("-inf")
                .arg(&dead_before)
                .ignore();
            pipe.cmd("PEXPIRE").arg(&tk).arg(ttl).arg("NX").ignore();
            pipe.cmd("PEXPIRE").arg(&tk).arg(ttl).arg("GT").ignore();
        }
    }

    /// Turns the tag indexes of `tags` that are still plain sets (written before indexes
    /// were sorted sets) into sorted sets, keeping their members (`tag_migrate.lua`). Their
    /// members are scored to live as long as any entry can, so none is pruned early.
    /// Returns how many members were converted (0: none of them was a plain set).
    async fn migrate_tag_indexes(&self, client: &Client, tags: &[String]) -> Result<u64> {
        let fallback = self.longest_entry_ms();
        let mut pipe = redis::pipe();
        for t in tags {
            pipe.invoke_script(
                script::CACHE_TAG_MIGRATE
                    .script
                    .key(self.tag_key(t))
                    .arg(fallback),
            );
        }
        let converted: Vec<u64> = client.query_pipeline(&pipe).await?;
        let converted: u64 = converted.iter().sum();
        if converted > 0 {
            tracing::info!(
                tags = ?tags,
                converted,
                "converted tag indexes written by an older redisx (plain sets) into sorted sets"
            );
        }
        Ok(converted)
    }

    /// The longest an entry written with the configured windows lives in Redis (per-call
    /// windows may be longer; the old indexes this serves kept their own ttl for that).
    fn longest_entry_ms(&self) -> u64 {
        let cfg = &self.inner.cfg;
        millis(cfg.max_ttl)
            .saturating_add(millis(cfg.swr.unwrap_or_default()))
            .saturating_add(millis(cfg.stale_if_error.unwrap_or_default()))
    }

    /// The write path: tag index entries, then the entry (compare-and-set against `lock`),
    /// the lock release and the invalidation message, in one pipelined round trip.
    /// `full` is the entry's full key when the caller already built it.
    /// Returns whether the entry was written, its encoded size and its `stale_at`.
    #[allow(clippy::too_many_arguments)]
    async fn write<T: Serialize>(
        &self,
        key: &str,
        full: Option<&str>,
        value: &T,
        r: &Resolved,
        tags: &[String],
        lock: &Lock,
    ) -> Result<Written> {
        let now = envelope::now_ms();
        let (stale_at, expires_at, px) = Self::timing(r, now);
        let Some(client) = self.l2_client(r.mode) else {
            return Ok(Written {
                stored: true,
                size: self.l1_weight_of(r.codec, value),
                stale_at,
            });
        };
        let bytes = envelope::encode(r.codec, value, stale_at, expires_at, tags)?;
        let size = bytes.len();
        let mut invocation = match full {
            Some(full) => script::CACHE_WRITE.script.key(full),
            None => script::CACHE_WRITE.script.key(self.full_key(key)),
        };
        let condition: &[u8] = match lock {
            Lock::Marker(m) => m,
            Lock::Refresh(_, _, header) => header,
            Lock::None => b"",
        };
        invocation.arg(condition).arg(bytes).arg(px);
        // Under a marker, no channel: the script answers 2 when a waiter flagged it, and the
        // wake-up is published below. An entry that was missing has no L1 copies.
        if !matches!(lock, Lock::Marker(_)) {
            invocation
                .arg(&self.inner.channel)
                .arg(invalidation::keys_message(&self.inner.origin, [key]));
        }
        let answer: u8 = if tags.is_empty() && !matches!(lock, Lock::Refresh(..)) {
            // The common case is one script: sent as a plain EVALSHA, not a pipeline.
            client.invoke(&invocation).await
        } else {
            let mut pipe = redis::pipe();
            self.index_tags(&mut pipe, key, tags, px, now);
            pipe.invoke_script(&invocation);
            if let Lock::Refresh(lock_key, token, _) = lock {
                pipe.invoke_script(
                    script::CACHE_RELEASE
                        .script
                        .key(lock_key)
                        .arg(&token[..])
                        .arg(&self.inner.channel)
                        .arg(""),
                )
                .ignore();
            }
            match client.query_pipeline::<(u8,)>(&pipe).await {
                // Maybe an index of an older redisx (a plain set): convert it and index the
                // entry again. The script ran, but its answer went with the error: report
                // the entry as not stored (no L1 copy; the next read fetches it; a waiter in
                // another instance notices it at its fallback poll).
                Err(e) if is_wrong_type(&e) => {
                    match self.migrate_tag_indexes(client, tags).await {
                        Ok(0) => Err(e), // no old index: the error was something else's
                        Ok(_) => {
                            let mut again = redis::pipe();
                            self.index_tags(&mut again, key, tags, px, now);
                            client.query_pipeline::<()>(&again).await.map(|()| 0)
                        }
                        Err(migration) => {
                            tracing::error!(key, error = %migration, "could not convert an old tag index; this entry may be stored without its index entry");
                            Err(e)
                        }
                    }
                }
                other => other.map(|(w,)| w),
            }
        }
        .map_err(|e| with_code(e, ErrorCode::CacheSetFailed, key))?;
        if answer == 2 {
            // Callers in other instances wait for this write: wake them. Should this fail,
            // they notice the value at their bounded fallback poll.
            let msg = invalidation::keys_message(&self.inner.origin, [key]);
            let published: Result<u64> = client
                .query_named(
                    "PUBLISH",
                    redis::cmd("PUBLISH").arg(&self.inner.channel).arg(msg),
                )
                .await;
            if let Err(e) = published {
                tracing::debug!(key, error = %e, "could not wake the instances waiting for a cache fill; they poll");
            }
        }
        Ok(Written {
            stored: answer != 0,
            size,
            stale_at,
        })
    }

    /// Takes the refresh lock of an entry that exists but must be reloaded (`SET NX PX` on
    /// its own key); `None` when another caller holds it.
    async fn take_refresh_lock(
        &self,
        client: &Client,
        key: &str,
        header: [u8; envelope::HEADER_LEN],
    ) -> Result<Option<Lock>> {
        let lock_key = self.refresh_key(key);
        let token = new_marker();
        let px = millis(self.inner.cfg.stampede.lock_ttl).max(1);
        let got: Option<String> = client
            .query_named(
                "SET",
                redis::cmd("SET")
                    .arg(&lock_key)
                    .arg(token.as_slice())
                    .arg("NX")
                    .arg("PX")
                    .arg(px),
            )
            .await?;
        Ok(got.map(|_| Lock::Refresh(lock_key, token, header)))
    }

    /// Gives a lock up and wakes the callers waiting for it.
    async fn release(&self, key: &str, lock: Lock) {
        let Some(client) = self.inner.client.as_ref() else {
            return;
        };
        let (lock_key, token) = match lock {
            Lock::None => return,
            Lock::Marker(m) => (self.full_key(key), m),
            Lock::Refresh(k, t, _) => (k, t),
        };
        let msg = invalidation::keys_message(&self.inner.origin, [key]);
        let r = client
            .eval::<u8, _, _>(
                &script::CACHE_RELEASE.script,
                &[lock_key.as_str()],
                &[
                    token.as_slice(),
                    self.inner.channel.as_bytes(),
                    msg.as_bytes(),
                ],
            )
            .await;
        if let Err(e) = r {
            tracing::debug!(key, error = %e, "could not release a cache regeneration lock; it expires by itself");
        }
    }

    /// Runs `load` while keeping `lock` alive: every third of the lock ttl, `extend.lua`
    /// renews it while it is still this caller's, so a load slower than the lock ttl keeps
    /// the other instances waiting for its write (and a marker's write, which needs the
    /// marker, still lands). Renewing stops once the lock is lost (an invalidation deleted
    /// it: the load runs on, and a marker's write will not land), and once the load has held
    /// it for `wait_timeout`: nobody waits longer than that, and a hung loader must not hold
    /// a key for ever (the lock then lives one more lock ttl). A load that is done at its
    /// first poll costs nothing more: the renewal's timer is only armed when first polled.
    /// `full` is the entry's full key (a marker lives there).
    async fn hold<F: Future>(&self, full: Option<&str>, lock: &Lock, load: F) -> F::Output {
        let (Some(client), Some((lock_key, token))) = (
            self.inner.client.as_ref(),
            match lock {
                Lock::None => None,
                Lock::Marker(m) => full.map(|f| (f, m)),
                Lock::Refresh(k, t, _) => Some((k.as_str(), t)),
            },
        ) else {
            return load.await;
        };
        let ttl = self.inner.cfg.stampede.lock_ttl;
        let every = (ttl / 3).max(Duration::from_millis(1));
        let renew = async {
            let until = Instant::now() + self.inner.cfg.stampede.wait_timeout;
            loop {
                tokio::time::sleep(every).await;
                if Instant::now() >= until {
                    tracing::warn!(
                        key = lock_key,
                        "a cache load has run for the whole stampede wait_timeout; its regeneration lock is no longer renewed"
                    );
                    return;
                }
                let mut invocation = script::CACHE_EXTEND.script.key(lock_key);
                invocation.arg(&token[..]).arg(millis(ttl).max(1));
                match client.invoke::<u8>(&invocation).await {
                    Ok(1) => {}
                    Ok(_) => {
                        tracing::debug!(
                            key = lock_key,
                            "the regeneration lock was lost during the load (invalidated); its value will not be written"
                        );
                        return;
                    }
                    // Try again at the next tick: the lock lives a full ttl from the last
                    // renewal, so one failed renewal loses nothing (unless the round trip
                    // itself takes over two thirds of the ttl).
                    Err(e) => {
                        tracing::debug!(key = lock_key, error = %e, "could not renew a cache regeneration lock");
                    }
                }
            }
        };
        tokio::pin!(load);
        tokio::select! {
            biased;
            v = &mut load => v,
            () = renew => load.await,
        }
    }

    async fn unlink<K: AsRef<[u8]>>(&self, client: &Client, full: &[K]) -> Result<u64> {
        if full.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for chunk in slot_chunks(full.iter().map(AsRef::as_ref).collect(), |k| k) {
            pipe.cmd("UNLINK").arg(chunk);
        }
        let counts: Vec<u64> = client.query_pipeline(&pipe).await?;
        Ok(counts.iter().sum())
    }

    async fn unlink_and_publish<K: AsRef<[u8]>>(
        &self,
        client: &Client,
        full: &[K],
        user: &[&str],
    ) -> Result<u64> {
        let deleted = self.unlink(client, full).await?;
        self.evict_and_publish(client, user).await?;
        Ok(deleted)
    }

    /// After a delete in L2: evicts `user` keys from this L1 and tells the other instances.
    async fn evict_and_publish(&self, client: &Client, user: &[&str]) -> Result<()> {
        // Evict again: a read that started before the delete may have refilled L1 meanwhile
        // (its fill is dropped by the epoch; this catches one that already landed).
        for k in user {
            self.inner.l1.remove(k);
        }
        if !user.is_empty() {
            let mut pipe = redis::pipe();
            for chunk in user.chunks(CHUNK) {
                let msg = invalidation::keys_message(&self.inner.origin, chunk.iter().copied());
                pipe.cmd("PUBLISH")
                    .arg(&self.inner.channel)
                    .arg(msg)
                    .ignore();
            }
            client.query_pipeline::<()>(&pipe).await?;
        }
        Ok(())
    }

    /// After an invalidation claimed its tag indexes but failed to delete their entries:
    /// puts the claimed members back, so that the caller's retry finds them (a member whose
    /// entry was deleted meanwhile is skipped by the next delete, and one written since is
    /// merged in). Should that fail too, the entries stay until their ttl: logged as an error.
    async fn restore_tag_indexes<S: AsRef<str>>(
        &self,
        client: &Client,
        tags: &[S],
        claimed: &[Claimed],
    ) {
        let ttl = millis(self.inner.cfg.max_ttl).max(1);
        // Members of an index of an older redisx (a plain set) had no score: they may live as
        // long as any entry can.
        let unscored = envelope::now_ms()
            .saturating_add(self.longest_entry_ms())
            .to_string();
        let mut pipe = redis::pipe();
        let mut keys = 0;
        for (tag, (members, scores)) in tags.iter().zip(claimed) {
            if members.is_empty() {
                continue;
            }
            keys += members.len();
            let tk = self.tag_key(tag.as_ref());
            for (i, chunk) in members.chunks(CHUNK).enumerate() {
                let mut zadd = redis::cmd("ZADD");
                zadd.arg(&tk).arg("GT");
                for (j, m) in chunk.iter().enumerate() {
                    // The score it had: when its entry ends.
                    let score = scores.get(i * CHUNK + j).unwrap_or(&unscored);
                    zadd.arg(score).arg(m);
                }
                pipe.add_command(zadd).ignore();
            }
            pipe.cmd("PEXPIRE").arg(&tk).arg(ttl).arg("NX").ignore();
            pipe.cmd("PEXPIRE").arg(&tk).arg(ttl).arg("GT").ignore();
        }
        if keys == 0 {
            return;
        }
        if let Err(e) = client.query_pipeline::<()>(&pipe).await {
            let tags: Vec<&str> = tags.iter().map(AsRef::as_ref).collect();
            tracing::error!(
                ?tags,
                keys,
                error = %e,
                "a tag invalidation failed half-way and its tag indexes could not be restored; those entries stay until their ttl unless deleted by key"
            );
        }
    }

    /// Deletes those of `user` keys whose entries still carry one of `tags` (or hold a lock
    /// marker), one `tag_delete.lua` per cluster slot and chunk, all pipelined; then evicts
    /// and publishes the deleted keys and those Redis no longer held (another instance may
    /// still have an L1 copy of an entry Redis evicted). Returns how many were deleted.
    async fn delete_tagged<S: AsRef<str>>(
        &self,
        client: &Client,
        user: &[&str],
        tags: &[S],
    ) -> Result<u64> {
        if user.is_empty() {
            return Ok(0);
        }
        let pairs: Vec<(String, &str)> = user.iter().map(|k| (self.full_key(k), *k)).collect();
        let chunks = slot_chunks(pairs, |(full, _)| full.as_bytes());
        let mut pipe = redis::pipe();
        for chunk in &chunks {
            let mut invocation = script::CACHE_TAG_DELETE.script.prepare_invoke();
            for (full, _) in chunk {
                invocation.key(full.as_str());
            }
            for t in tags {
                invocation.arg(t.as_ref());
            }
            pipe.invoke_script(&invocation);
        }
        let answers: Vec<(Vec<usize>, Vec<usize>)> = client.query_pipeline(&pipe).await?;
        let mut deleted = 0;
        let mut evict: Vec<&str> = Vec::new();
        for (chunk, (gone, missing)) in chunks.iter().zip(&answers) {
            deleted += gone.len() as u64;
            // The script answers 1-based positions in the chunk.
            evict.extend(
                gone.iter()
                    .chain(missing)
                    .filter_map(|&i| chunk.get(i.checked_sub(1)?))
                    .map(|(_, user)| *user),
            );
        }
        self.evict_and_publish(client, &evict).await?;
        Ok(deleted)
    }

    /// The full keys under this cache's prefix matching `pattern`, as bytes: a key another
    /// program wrote under the prefix need not be UTF-8, and must not make the scan fail.
    async fn scan(&self, client: &Client, pattern: &str) -> Result<Vec<Vec<u8>>> {
        let pat = format!("{}{pattern}", glob_escape(self.inner.keys.prefix()));
        let keys = scan_pages(client, "SCAN", |cursor| {
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pat)
                .arg("COUNT")
                .arg(1000)
                .clone()
        })
        .await?;
        Ok(sorted(keys))
    }

    fn fail_open(&self, op: &'static str, key: &str, err: &Error) {
        bump(&self.inner.counters.errors);
        tracing::warn!(op, key, error = %err, "cache operation failed; continuing without the cache");
    }

    // ------------------------------------------------------------------ the load path

    /// `get_or_load` without an SWR refresh: a stale value is reloaded in the foreground.
    pub(crate) async fn load_through<T, E, Fut>(
        &self,
        key: &str,
        opts: &EntryOptions,
        loader: Fut,
        unless: impl FnOnce(&T) -> bool,
        on_timeout: impl FnOnce(Error) -> Option<E>,
        erasure: Erasure<T>,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: 'static,
        Fut: Future<Output = Result<T, E>>,
    {
        match self
            .fetch(key, opts, loader, false, unless, on_timeout, erasure)
            .await
        {
            Fetched::Done(r) => r,
            Fetched::Stale { .. } => {
                unreachable!("fetch never answers Stale when allow_stale is false")
            }
        }
    }

    /// `get_or_load` with an SWR refresh in the background.
    pub(crate) async fn load_swr<T, E, Fut>(
        &self,
        key: &str,
        opts: &EntryOptions,
        loader: Fut,
        unless: impl FnOnce(&T) -> bool + Send + 'static,
        on_timeout: impl FnOnce(Error) -> Option<E>,
        erasure: Erasure<T>,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        // `unless` is needed by the fetch and, for a stale hit, by the refresh: share it.
        let unless = std::sync::Mutex::new(Some(unless));
        let take = || unless.lock().ok().and_then(|mut u| u.take());
        let first = |v: &T| take().is_some_and(|f| f(v));
        match self
            .fetch(key, opts, loader, true, first, on_timeout, erasure)
            .await
        {
            Fetched::Done(r) => r,
            Fetched::Stale {
                value,
                loader,
                header,
            } => {
                let unless = take();
                self.spawn_refresh(key, opts, loader, unless, erasure, header);
                Ok(value)
            }
        }
    }

    fn spawn_refresh<T, E, Fut, U>(
        &self,
        key: &str,
        opts: &EntryOptions,
        loader: Fut,
        unless: Option<U>,
        erasure: Erasure<T>,
        header: [u8; envelope::HEADER_LEN],
    ) where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        U: FnOnce(&T) -> bool + Send + 'static,
    {
        let Some(client) = self.inner.client.clone() else {
            return;
        };
        let Ok(r) = self.resolve(opts) else { return };
        let cache = self.clone();
        let key = key.to_owned();
        let tags = opts.tags.clone();
        tokio::spawn(async move {
            let lock = match cache.take_refresh_lock(&client, &key, header).await {
                Ok(Some(lock)) => lock,
                Ok(None) => return, // another instance is refreshing
                Err(e) => return cache.fail_open("refresh", &key, &e),
            };
            let mut guard = LockGuard {
                cache: Arc::downgrade(&cache.inner),
                key: &key,
                lock,
            };
            // Another instance may have refreshed (and released the lock) between our read
            // and our lock: refresh only the entry we saw stale.
            let now: Result<Vec<u8>> = client
                .query_named(
                    "GETRANGE",
                    redis::cmd("GETRANGE")
                        .arg(cache.full_key(&key))
                        .arg(0)
                        .arg(envelope::HEADER_LEN - 1),
                )
                .await;
            if !matches!(&now, Ok(h) if h[..] == header[..]) {
                return; // the guard releases the lock
            }
            bump(&cache.inner.counters.refreshes);
            // A refresh nobody awaits must not run for ever: it is abandoned (and its lock
            // given back) when its lock would have lapsed without renewals.
            let budget = cache.inner.cfg.stampede.wait_timeout + cache.inner.cfg.stampede.lock_ttl;
            let Ok(outcome) =
                tokio::time::timeout(budget, cache.hold(None, &guard.lock, loader)).await
            else {
                cache.inner.metrics.loads_error.inc();
                tracing::warn!(
                    key,
                    ?budget,
                    "background refresh abandoned: its loader did not finish in time; the stale value stays until its window ends"
                );
                return;
            };
            if let Ok(v) = outcome {
                cache.inner.metrics.loads_ok.inc();
                if unless.is_some_and(|u| u(&v)) {
                    return; // the guard releases the lock
                }
                // The write's pipeline releases the refresh lock whether it stores or not.
                cache
                    .store_loaded(
                        "refresh write",
                        &key,
                        None,
                        &v,
                        &r,
                        &tags,
                        &mut guard,
                        erasure,
                    )
                    .await;
            } else {
                cache.inner.metrics.loads_error.inc();
                if let Err(e) = &outcome {
                    tracing::warn!(
                        key,
                        error = %describe_error(e),
                        error_type = std::any::type_name::<E>(),
                        "background refresh failed; the stale value stays until its window ends"
                    );
                }
            }
        });
    }

    /// The shared miss path: in-process single-flight, then the distributed read-or-lock,
    /// waiting, loading and writing.
    #[allow(clippy::too_many_arguments)]
    async fn fetch<T, E, Fut>(
        &self,
        key: &str,
        opts: &EntryOptions,
        loader: Fut,
        allow_stale: bool,
        unless: impl FnOnce(&T) -> bool,
        on_timeout: impl FnOnce(Error) -> Option<E>,
        erasure: Erasure<T>,
    ) -> Fetched<T, E, Fut>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: 'static,
        Fut: Future<Output = Result<T, E>>,
    {
        let r = match self
            .validate_key(key)
            .and_then(|()| self.validate_tags(&opts.tags))
            .and_then(|()| self.resolve(opts))
        {
            Ok(r) => r,
            Err(e) => {
                self.fail_open("read", key, &e);
                return Fetched::Done(loader.await);
            }
        };
        let span = tracing::info_span!(
            "cache.get",
            cache.key = key,
            cache.layer = tracing::field::Empty,
            cache.hit = tracing::field::Empty
        );
        // One load (or one wait for another instance's load) per key per runtime: callers
        // that arrive while a read or load of the key runs share its outcome, so a stampede
        // of callers costs one L2 read, not one each. Waiting here and for another instance
        // together lasts at most `wait_timeout` from the first wait (the clock is only read
        // once a caller waits, not on every read).
        let mut deadline: Option<Instant> = None;
        let flight_leader = loop {
            match self.inner.flights.join(key) {
                Join::Leader(l) => break l,
                Join::Follower(rx) => {
                    let deadline = *deadline.get_or_insert_with(|| {
                        Instant::now() + self.inner.cfg.stampede.wait_timeout
                    });
                    let wait = deadline.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(wait, flight::follow(rx)).await {
                        Ok(Some(v)) => {
                            if let Some(v) = v.downcast_ref::<T>() {
                                self.inner.metrics.stampede_prevented.inc();
                                return Fetched::Done(Ok(v.clone()));
                            }
                            // A value of another type under this key (another call site):
                            // lead (or follow) the next flight.
                        }
                        // The leader failed, panicked or was cancelled: one of its followers
                        // leads next, one at a time, until the deadline.
                        Ok(None) => {}
                        Err(_) => return self.after_wait_timeout(key, on_timeout, loader).await,
                    }
                }
            }
        };
        let mut first = None;
        // Built once: the read, the wait and the write all use it.
        let l2 = self.l2_client(r.mode).map(|c| (c, self.full_key(key)));
        if let Some((client, full)) = &l2 {
            // Take the lock with the read only when reads have been missing lately: a plain
            // `GET` is cheaper, and a call site that mostly hits would pay for the lock
            // option on every hit (see `ReadPredictor`).
            let marker = (self.inner.cfg.stampede.enabled && !self.inner.reads.expect_hit())
                .then(new_marker);
            let since = self.inner.l1.epoch();
            let read = traced!(
                self.read::<T>(client, full, marker.as_ref().map(|m| &m[..])),
                span
            );
            self.inner
                .reads
                .record(matches!(read, Ok(Read::Fresh(_) | Read::Stale(_))));
            match read {
                Ok(Read::Fresh(env)) => {
                    span.record("cache.layer", "l2");
                    span.record("cache.hit", true);
                    self.fill_l1(key, &env, &r, erasure, since);
                    flight_leader
                        .complete(|| Arc::new(env.value.clone()) as Arc<dyn Any + Send + Sync>);
                    return Fetched::Done(Ok(env.value));
                }
                Ok(Read::Stale(env)) if allow_stale && r.swr > Duration::ZERO => {
                    span.record("cache.layer", "l2");
                    span.record("cache.hit", true);
                    self.inner.metrics.l2_hits.inc();
                    self.inner.metrics.stale_served.inc();
                    flight_leader
                        .complete(|| Arc::new(env.value.clone()) as Arc<dyn Any + Send + Sync>);
                    let header = env.header();
                    return Fetched::Stale {
                        value: env.value,
                        loader,
                        header,
                    };
                }
                // A plain read that found nothing took no lock: the coordinated path reads
                // again with the lock option (without stampede protection there is no lock
                // to take, and the miss goes straight to the load).
                Ok(Read::Miss) if marker.is_none() && self.inner.cfg.stampede.enabled => {}
                other => first = Some((marker, other)),
            }
        }
        let outcome = traced!(
            self.fetch_leader(
                key,
                l2.as_ref().map(|(_, full)| full.as_str()),
                &r,
                &opts.tags,
                loader,
                allow_stale,
                unless,
                on_timeout,
                first,
                deadline,
                erasure,
            ),
            span
        );
        Self::finish_flight(flight_leader, &outcome);
        outcome
    }

    /// A wait for `whom` ran out at `wait_timeout`: logs it, and with
    /// [`StampedeFallback::Error`] returns the caller's [`ErrorCode::CacheStampedeTimeout`]
    /// (when its error type can hold a redisx error). `None`: the caller loads instead.
    fn stampede_timed_out<E>(
        &self,
        key: &str,
        whom: &str,
        on_timeout: impl FnOnce(Error) -> Option<E>,
    ) -> Option<E> {
        let stampede = &self.inner.cfg.stampede;
        tracing::warn!(
            key,
            "cache stampede wait for {whom} timed out; falling back to {:?}",
            stampede.fallback
        );
        if stampede.fallback != StampedeFallback::Error {
            return None;
        }
        on_timeout(
            Error::new(
                ErrorCode::CacheStampedeTimeout,
                format!("waited {:?} for {whom}", stampede.wait_timeout),
            )
            .with_context("key", key),
        )
    }

    /// A caller waited `wait_timeout` for another caller of this instance: it fails as
    /// [`stampede_timed_out`](Self::stampede_timed_out) says, or runs its own loader (its
    /// value is not written: the leader's write is still due).
    async fn after_wait_timeout<T, E, Fut>(
        &self,
        key: &str,
        on_timeout: impl FnOnce(Error) -> Option<E>,
        loader: Fut,
    ) -> Fetched<T, E, Fut>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(e) = self.stampede_timed_out(
            key,
            "the load of the key by another caller in this instance",
            on_timeout,
        ) {
            return Fetched::Done(Err(e));
        }
        let outcome = loader.await;
        if outcome.is_ok() {
            self.inner.metrics.loads_ok.inc();
        } else {
            self.inner.metrics.loads_error.inc();
        }
        Fetched::Done(outcome)
    }

    fn finish_flight<T, E, Fut>(leader: flight::Leader<'_>, outcome: &Fetched<T, E, Fut>)
    where
        T: Clone + Send + Sync + 'static,
    {
        match outcome {
            Fetched::Done(Ok(v)) | Fetched::Stale { value: v, .. } => {
                leader.complete(|| Arc::new(v.clone()) as Arc<dyn Any + Send + Sync>);
            }
            Fetched::Done(Err(_)) => leader.fail(),
        }
    }

    #[allow(clippy::too_many_lines, clippy::too_many_arguments)]
    async fn fetch_leader<T, E, Fut>(
        &self,
        key: &str,
        full: Option<&str>,
        r: &Resolved,
        tags: &[String],
        loader: Fut,
        allow_stale: bool,
        unless: impl FnOnce(&T) -> bool,
        on_timeout: impl FnOnce(Error) -> Option<E>,
        mut first: Option<FirstRead<T>>,
        deadline: Option<Instant>,
        erasure: Erasure<T>,
    ) -> Fetched<T, E, Fut>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: 'static,
        Fut: Future<Output = Result<T, E>>,
    {
        let span = tracing::Span::current();
        let stampede = &self.inner.cfg.stampede;
        let mut lock = Lock::None;
        let mut stale: Option<T> = None;
        if let (Some(client), Some(full)) = (self.l2_client(r.mode), full) {
            let deadline = deadline.unwrap_or_else(|| Instant::now() + stampede.wait_timeout);
            // Dropped (unregistered) on every way out, cancellation included.
            let mut waiter: Option<invalidation::Registration<'_>> = None;
            let mut corrupt_retries = 0;
            let mut has_waited = false;
            loop {
                // The wake-up generation before this read (see `WaitSlot`), and the L1 epoch
                // (a fill after an invalidation that overlapped the read is dropped).
                let seen = waiter.as_ref().map(|w| w.slot().generation());
                let since = self.inner.l1.epoch();
                let (marker, read) = if let Some(done) = first.take() {
                    done
                } else {
                    let marker = stampede.enabled.then(new_marker);
                    let read = self
                        .read::<T>(client, full, marker.as_ref().map(|m| &m[..]))
                        .await;
                    (marker, read)
                };
                let read = match read {
                    Ok(read) => read,
                    Err(e) => {
                        self.fail_open("read", key, &e);
                        break;
                    }
                };
                let marker_locked = matches!(read, Read::Locked);
                match read {
                    Read::Miss => {
                        if let Some(m) = marker {
                            lock = Lock::Marker(m);
                        }
                        break;
                    }
                    Read::Fresh(env) => {
                        span.record("cache.layer", "l2");
                        span.record("cache.hit", true);
                        if has_waited {
                            self.inner.metrics.stampede_prevented.inc();
                        }
                        self.fill_l1(key, &env, r, erasure, since);
                        return Fetched::Done(Ok(env.value));
                    }
                    Read::Stale(env) if allow_stale && r.swr > Duration::ZERO => {
                        span.record("cache.layer", "l2");
                        span.record("cache.hit", true);
                        self.inner.metrics.l2_hits.inc();
                        self.inner.metrics.stale_served.inc();
                        let header = env.header();
                        return Fetched::Stale {
                            value: env.value,
                            loader,
                            header,
                        };
                    }
                    read @ (Read::Stale(_) | Read::Expired(_)) => {
                        // The entry exists but must be reloaded; keep it for stale-if-error.
                        let env = match read {
                            Read::Stale(env) => {
                                // A stale entry this call does not serve: a miss (an expired
                                // one was counted as such when read).
                                self.inner.metrics.l2_misses.inc();
                                env
                            }
                            Read::Expired(env) => env,
                            _ => unreachable!("matched as stale or expired"),
                        };
                        let header = env.header();
                        stale = Some(env.value);
                        if !stampede.enabled {
                            break;
                        }
                        match self.take_refresh_lock(client, key, header).await {
                            Ok(Some(refresh)) => {
                                lock = refresh;
                                break;
                            }
                            Ok(None) => {} // someone else reloads it: wait below
                            Err(e) => {
                                self.fail_open("lock", key, &e);
                                break;
                            }
                        }
                    }
                    Read::Corrupt(bytes, e) => {
                        self.remove_corrupt(full, bytes, &e).await;
                        corrupt_retries += 1;
                        if corrupt_retries > 2 {
                            break;
                        }
                        continue;
                    }
                    Read::Locked => {}
                }
                // Another caller holds the lock: wait for its write (pub/sub), then re-read.
                // Register first, then flag the marker, so no wake-up can slip in between.
                let (slot, seen) = if let (Some(n), Some(seen)) = (&waiter, seen) {
                    (n.slot().clone(), seen)
                } else {
                    let n = self.inner.waiters.register(full);
                    let slot = n.slot().clone();
                    let seen = slot.generation();
                    waiter = Some(n);
                    has_waited = true;
                    if !marker_locked {
                        // A refresh holder publishes its write unflagged: read again now
                        // that we are registered, so its wake-up cannot slip by.
                        continue;
                    }
                    (slot, seen)
                };
                if marker_locked {
                    let flagged: Result<u8> = client
                        .eval(&script::CACHE_FLAG_WAITER.script, &[full], &[] as &[&str])
                        .await;
                    match flagged {
                        Ok(1) => {}
                        Ok(_) => continue, // filled or released meanwhile: re-read now
                        Err(e) => {
                            self.fail_open("wait", key, &e);
                            break;
                        }
                    }
                }
                let now = Instant::now();
                if now >= deadline {
                    // `waiter` unregisters when dropped, after this iteration's `slot`.
                    if let Some(e) =
                        self.stampede_timed_out(key, "another instance to load the key", on_timeout)
                    {
                        return Fetched::Done(Err(e));
                    }
                    break;
                }
                let poll = (stampede.lock_ttl / 2).clamp(POLL_FALLBACK_MIN, POLL_FALLBACK_MAX);
                let wait = (deadline - now).min(poll);
                let notified = slot.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if slot.generation() == seen {
                    let _ = tokio::time::timeout(wait, notified).await;
                }
            }
            drop(waiter);
        }
        span.record("cache.hit", false);
        // Load. The guard gives the lock back if the loader panics or we are cancelled.
        let mut guard = LockGuard {
            cache: Arc::downgrade(&self.inner),
            key,
            lock,
        };
        let value = match self.hold(full, &guard.lock, loader).await {
            Ok(v) => {
                self.inner.metrics.loads_ok.inc();
                v
            }
            Err(e) => {
                self.inner.metrics.loads_error.inc();
                let lock = guard.take();
                self.release(key, lock).await;
                if let Some(s) = stale
                    && r.sie > Duration::ZERO
                    && self.serve_stale_on(&e)
                {
                    self.inner.metrics.stale_served.inc();
                    tracing::warn!(
                        key,
                        error = %describe_error(&e),
                        error_type = std::any::type_name::<E>(),
                        "loader failed; serving the stale value (stale-if-error)"
                    );
                    return Fetched::Done(Ok(s));
                }
                return Fetched::Done(Err(e));
            }
        };
        if unless(&value) {
            let lock = guard.take();
            self.release(key, lock).await;
            return Fetched::Done(Ok(value));
        }
        self.store_loaded("write", key, full, &value, r, tags, &mut guard, erasure)
            .await;
        Fetched::Done(Ok(value))
    }

    /// Writes a loaded value under the guard's lock, then fills L1 with it; on a write error,
    /// counts and logs it (as `op`) and gives the lock back. The lock stays in the guard during the
    /// write, so a caller cancelled there still gives it back (in the background).
    #[allow(clippy::too_many_arguments)]
    async fn store_loaded<T>(
        &self,
        op: &'static str,
        key: &str,
        full: Option<&str>,
        value: &T,
        r: &Resolved,
        tags: &[String],
        guard: &mut LockGuard<'_>,
        erasure: Erasure<T>,
    ) where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let since = self.inner.l1.epoch();
        let written = self.write(key, full, value, r, tags, &guard.lock).await;
        let lock = guard.take();
        match written {
            Ok(Written {
                stored: true,
                size,
                stale_at,
            }) => {
                if r.mode.uses_l1() {
                    let since = Some(since);
                    self.l1_insert(key, value.clone(), *r, stale_at, size, erasure, since, tags);
                }
            }
            Ok(Written { stored: false, .. }) => {
                tracing::debug!(
                    key,
                    "the entry changed while loading (invalidated or lock expired); not writing it back"
                );
            }
            Err(e) => {
                self.inner.metrics.write_errors.inc();
                self.fail_open(op, key, &e);
                self.release(key, lock).await;
            }
        }
    }

    fn serve_stale_on<E: 'static>(&self, err: &E) -> bool {
        match &self.inner.cfg.stale_if_error_when {
            Some(pred) => pred(err as &dyn Any),
            None => true,
        }
    }
}

impl CacheInner {
    /// Evicts from L1 the keys the in-process index names under `tags` (and takes them out
    /// of it); returns how many of those for which `count` holds were in L1.
    fn evict_local_tags<S: AsRef<str>>(&self, tags: &[S], count: impl Fn(&str) -> bool) -> u64 {
        let mut index = self.local_index();
        // A fill that read the epoch before this invalidation and has not inserted yet loses
        // (it may carry one of the tags).
        self.l1.invalidate_fills();
        let keys = index.take(tags);
        drop(index);
        let removed = keys
            .iter()
            .filter(|k| self.l1.remove(k) && count(k))
            .count();
        removed as u64
    }

    fn local_index(&self) -> std::sync::MutexGuard<'_, LocalTags> {
        self.local_tags
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Evicts from L1 every key matching the Redis glob `pattern`; returns how many of them
    /// lived only in L1 (L1 copies of entries in Redis are counted where Redis deletes them).
    fn evict_local_pattern(&self, pattern: &str) -> u64 {
        let matcher = Glob::new(pattern);
        let removed = std::cell::Cell::new(0_u64);
        self.l1.retain_keys(|k, local| {
            let hit = matcher.matches(k);
            removed.set(removed.get() + u64::from(hit && local));
            !hit
        });
        removed.get()
    }

    fn on_message(this: &Arc<Self>, payload: &str) {
        match invalidation::parse(payload) {
            Some(invalidation::Message::Keys { origin, keys }) => {
                let evict = origin != this.origin && this.cfg.invalidation;
                for k in keys {
                    if evict {
                        this.l1.remove(k);
                    }
                    this.waiters.wake(&this.keys.full(k));
                }
            }
            Some(invalidation::Message::Tags { origin, tags }) => {
                if origin != this.origin && this.cfg.invalidation {
                    let tags: Vec<&str> = tags.collect();
                    this.evict_local_tags(&tags, |_| true);
                }
            }
            Some(invalidation::Message::Pattern { origin, pattern }) => {
                if origin != this.origin && this.cfg.invalidation {
                    this.evict_local_pattern(pattern);
                }
            }
            Some(invalidation::Message::Clear { origin }) => {
                if origin != this.origin {
                    this.l1.clear();
                }
                this.waiters.wake_all();
            }
            None => tracing::debug!(payload, "ignoring an unknown cache invalidation message"),
        }
    }
}

/// The `cache.get` span of an L1 hit on the load paths (`get_or_load`, `#[cached]`): at TRACE
/// level, because these hits are the hot path (an INFO span would cost more than the hit
/// under a typical subscriber); every other `cache.get` span is at INFO.
#[inline]
pub(crate) fn trace_l1_hit(key: &str) {
    let _span = tracing::trace_span!(
        "cache.get",
        cache.key = key,
        cache.layer = "l1",
        cache.hit = true
    );
}

/// A loader error as text for a log line, when its type is one redisx can read without a
/// bound on it (a redisx [`Error`], a `String` or `&str`, an `std::io::Error`, a boxed
/// `std::error::Error`); otherwise its type's name (a `stale_if_error_when` predicate sees
/// every error and can log more).
fn describe_error<E: 'static>(err: &E) -> String {
    let any = err as &dyn Any;
    if let Some(e) = any.downcast_ref::<Error>() {
        e.to_string()
    } else if let Some(s) = any.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = any.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(e) = any.downcast_ref::<std::io::Error>() {
        e.to_string()
    } else if let Some(e) = any.downcast_ref::<Box<dyn std::error::Error + Send + Sync>>() {
        e.to_string()
    } else if let Some(e) = any.downcast_ref::<Box<dyn std::error::Error>>() {
        e.to_string()
    } else {
        format!("an error of type `{}`", std::any::type_name::<E>())
    }
}

/// Every element of a cursor command (`SCAN`, `SSCAN`, `ZSCAN`), page by page; `page(cursor)`
/// builds the command of one page. A cursor may return an element twice (see [`sorted`]).
async fn scan_pages<T: redis::FromRedisValue>(
    client: &Client,
    name: &'static str,
    page: impl Fn(u64) -> redis::Cmd,
) -> Result<Vec<T>> {
    let mut cursor = 0;
    let mut out = Vec::new();
    loop {
        let (next, items): (u64, Vec<T>) = client.query_named(name, &page(cursor)).await?;
        out.extend(items);
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

/// `items` sorted, without duplicates.
fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort_unstable();
    items.dedup();
    items
}

/// Escapes the glob characters of a literal for `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A Redis-style glob matcher for L1 pattern invalidation, reading patterns exactly as
/// Redis's `stringmatchlen` does (so L1 and `SCAN MATCH` agree): bytes, not characters;
/// `*`, `?`, `[abc]`, `[^abc]`, `[a-z]` (a reversed range counts too; bounds compare as
/// signed bytes, as Redis's `char`s do), `\x` (an escaped class member starts no range); an
/// unterminated class runs to the end of the pattern. It matches in O(pattern × key) steps
/// (one backtracking point, the last `*`), so no pattern can make it run away, whoever
/// published it.
struct Glob {
    toks: Vec<GlobTok>,
}

enum GlobTok {
    Star,
    Any,
    Lit(u8),
    Class {
        negated: bool,
        /// Inclusive ranges of signed bytes; a single byte is a range of one.
        ranges: Vec<(i8, i8)>,
    },
}

impl GlobTok {
    fn matches(&self, b: u8) -> bool {
        match self {
            Self::Star | Self::Any => true,
            Self::Lit(l) => *l == b,
            Self::Class { negated, ranges } => {
                let b = b.cast_signed();
                ranges.iter().any(|&(lo, hi)| lo <= b && b <= hi) != *negated
            }
        }
    }
}

impl Glob {
    fn new(p: &str) -> Self {
        let p = p.as_bytes();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < p.len() {
            let tok = match p[i] {
                b'*' => {
                    i += 1;
                    if matches!(toks.last(), Some(GlobTok::Star)) {
                        continue;
                    }
                    GlobTok::Star
                }
                b'?' => {
                    i += 1;
                    GlobTok::Any
                }
                b'\\' if i + 1 < p.len() => {
                    i += 2;
                    GlobTok::Lit(p[i - 1])
                }
                b'[' => {
                    i += 1;
                    let negated = p.get(i) == Some(&b'^');
                    if negated {
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    while i < p.len() {
                        match p[i] {
                            b']' => {
                                i += 1;
                                break;
                            }
                            b'\\' if i + 1 < p.len() => {
                                let b = p[i + 1].cast_signed();
                                ranges.push((b, b));
                                i += 2;
                            }
                            _ if i + 2 < p.len() && p[i + 1] == b'-' => {
                                let (a, b) = (p[i].cast_signed(), p[i + 2].cast_signed());
                                ranges.push((a.min(b), a.max(b)));
                                i += 3;
                            }
                            c => {
                                ranges.push((c.cast_signed(), c.cast_signed()));
                                i += 1;
                            }
                        }
                    }
                    GlobTok::Class { negated, ranges }
                }
                c => {
                    i += 1;
                    GlobTok::Lit(c)
                }
            };
            toks.push(tok);
        }
        Self { toks }
    }

    fn matches(&self, key: &str) -> bool {
        let s = key.as_bytes();
        let toks = &self.toks;
        let (mut p, mut i) = (0, 0);
        // The last `*` seen and the key position it is tried to end at next.
        let mut star: Option<(usize, usize)> = None;
        while i < s.len() {
            match toks.get(p) {
                Some(GlobTok::Star) => {
                    star = Some((p, i));
                    p += 1;
                }
                Some(t) if t.matches(s[i]) => {
                    p += 1;
                    i += 1;
                }
                _ => match star {
                    Some((sp, si)) => {
                        star = Some((sp, si + 1));
                        p = sp + 1;
                        i = si + 1;
                    }
                    None => return false,
                },
            }
        }
        toks[p..].iter().all(|t| matches!(t, GlobTok::Star))
    }
}

/// Whether a command failed with `WRONGTYPE` (a key of another type than the command's).
fn is_wrong_type(err: &Error) -> bool {
    err.message().contains("WRONGTYPE") || err.message().contains("WrongType")
}

fn with_code(err: Error, code: ErrorCode, key: &str) -> Error {
    let kept = err.code();
    let code = if kept.family() == "connection" || kept == ErrorCode::OperationTimeout {
        kept
    } else {
        code
    };
    let msg = err.message().to_owned();
    Error::new(code, msg)
        .with_context("key", key)
        .with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_errors_are_described_when_their_type_is_readable() {
        struct Opaque;
        assert_eq!(describe_error(&String::from("db down")), "db down");
        assert_eq!(describe_error(&"db down"), "db down");
        let io = std::io::Error::other("refused");
        assert_eq!(describe_error(&io), "refused");
        let boxed: Box<dyn std::error::Error + Send + Sync> = "boxed".into();
        assert_eq!(describe_error(&boxed), "boxed");
        let rx = Error::new(ErrorCode::OperationTimeout, "slow");
        assert!(describe_error(&rx).contains("slow"));
        assert!(describe_error(&Opaque).contains("Opaque"));
    }

    #[test]
    fn glob_matches_like_redis() {
        let g = |p: &str, s: &str| Glob::new(p).matches(s);
        assert!(g("user:*", "user:1"));
        assert!(!g("user:*", "users"));
        assert!(g("a?c", "abc"));
        assert!(g("[ab]x", "bx"));
        assert!(!g("[ab]x", "cx"));
        assert!(g("a\\*", "a*"));
        assert!(!g("a\\*", "ab"));
        assert!(
            !g("[\\a-z]", "m"),
            "an escaped member starts no range, as in Redis"
        );
        assert!(g("[\\a-z]", "-") && g("[\\a-z]", "z"));
        assert!(!g("user:?", "user:é"), "`?` is one byte, as in Redis");
        assert!(g("user:??", "user:é"));
        assert!(g("[^ab]x", "cx"));
        assert!(!g("[^ab]x", "ax"));
        assert!(g("user:[0-9]", "user:7"));
        assert!(
            g("user:[9-0]", "user:7"),
            "a reversed range, as Redis reads it"
        );
        assert!(!g("user:[0-9]", "user:x"));
        assert!(g("[\\]]", "]"));
        // As Redis reads it (checked against `SCAN MATCH`): `a-]` is the range `]`..`a`, and
        // the class then runs to the end.
        assert!(g("[a-]", "_") && g("[a-]", "]") && !g("[a-]", "-"));
        assert!(
            g("[ab", "b"),
            "an unterminated class runs to the end, as in Redis"
        );
        assert!(g("*", ""));
        assert!(g("a*b*c", "aXXbYYc"));
        assert!(!g("a*b*c", "aXXbYY"));
        assert!(g("*user*", "user"));
        assert!(g("h?llo*", "hello world"));
        assert!(!g("", "a"));
        assert!(g("", ""));
        // A pattern that makes a naive recursive matcher run for ages answers at once.
        let key = "a".repeat(4000);
        assert!(!g("*a*a*a*a*a*a*a*a*a*a*a*b", &key));
        assert_eq!(glob_escape("a*b[1]"), "a\\*b\\[1\\]");
        for lit in ["a*b[1]", "x\\y?", "plain"] {
            assert!(
                g(&glob_escape(lit), lit),
                "an escaped literal matches itself: {lit}"
            );
        }
    }
}
