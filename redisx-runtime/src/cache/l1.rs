//! L1: the in-process tier. A bounded `quick_cache` of decoded values, with an expiry per entry.

use std::any::Any;
use std::hash::{BuildHasher as _, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How values of one type are stored in L1 (type-erased) and taken out again.
///
/// The default boxes the value in an `Arc<dyn Any>`. A value that already is an `Arc<U>` is
/// stored as that `Arc` itself ([`Erasure::arc`], chosen per call site by `#[cached]`), so a
/// hit clones one `Arc` and touches one allocation, exactly as a plain `quick_cache` of
/// `Arc<U>` would, instead of following a second pointer.
pub struct Erasure<T> {
    erase: fn(T) -> Arc<dyn Any + Send + Sync>,
    /// Takes the entry's `Arc` (already cloned out of the cache) by value, so an `Arc` value
    /// is handed out without a second reference count round trip.
    unerase: fn(Arc<dyn Any + Send + Sync>) -> Option<T>,
}

impl<T> Clone for Erasure<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Erasure<T> {}

impl<T> std::fmt::Debug for Erasure<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Erasure")
    }
}

impl<T: Clone + Send + Sync + 'static> Erasure<T> {
    /// Any type: boxed in an `Arc<dyn Any>`.
    ///
    /// ```
    /// # use redisx_runtime::cache::Erasure;
    /// let _erasure = Erasure::<Vec<u64>>::boxed();
    /// ```
    pub fn boxed() -> Self {
        Self {
            erase: |v| Arc::new(v),
            unerase: |a| a.downcast_ref::<T>().cloned(),
        }
    }
}

impl<U: Send + Sync + 'static> Erasure<Arc<U>> {
    /// An `Arc<U>`: stored as the `Arc` itself. Also reads entries stored boxed.
    ///
    /// ```
    /// # use redisx_runtime::cache::Erasure;
    /// use std::sync::Arc;
    /// let _erasure = Erasure::<Arc<Vec<u64>>>::arc();
    /// ```
    pub fn arc() -> Self {
        Self {
            erase: |v| v,
            unerase: |a| match a.downcast::<U>() {
                Ok(u) => Some(u),
                Err(a) => a.downcast_ref::<Arc<U>>().cloned(),
            },
        }
    }
}

/// One decoded value in L1.
#[derive(Clone)]
pub(crate) struct L1Entry {
    pub(crate) value: Arc<dyn Any + Send + Sync>,
    pub(crate) expires_at: Instant,
    weight: u32,
    /// The entry lives only in L1 (an L1-only call or cache): no Redis entry backs it.
    local: bool,
}

/// Weighs entries by count (1 each) or by their approximate size in bytes.
#[derive(Clone, Copy)]
pub(crate) struct EntryWeighter {
    by_bytes: bool,
}

impl quick_cache::Weighter<L1Key, L1Entry> for EntryWeighter {
    fn weight(&self, _key: &L1Key, val: &L1Entry) -> u64 {
        if self.by_bytes {
            u64::from(val.weight.max(1))
        } else {
            1
        }
    }
}

/// How an entry goes into L1.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placement {
    /// How long it lives.
    pub(crate) ttl: Duration,
    /// Its approximate size in bytes (for the weight budget).
    pub(crate) size_hint: usize,
    /// The epoch seen before the value was read or written: nothing is inserted if an
    /// invalidation came in between.
    pub(crate) since: Option<u64>,
    /// The entry lives only in L1 (no Redis entry backs it), which
    /// [`retain_keys`](L1::retain_keys) tells apart.
    pub(crate) local: bool,
}

pub(crate) struct L1 {
    cache: quick_cache::sync::Cache<L1Key, L1Entry, EntryWeighter>,
    /// Bounded by a byte budget (entries weigh their size), not by an entry count.
    by_bytes: bool,
    /// The invalidation clock, ticked by every eviction for invalidation (`remove`, `clear`,
    /// `retain_keys`, `invalidate_fills`). A fill passes the clock it read before reading
    /// the value ([`epoch`](Self::epoch)); it is dropped when its key was invalidated after
    /// that, so a read that overlapped a delete never puts the deleted value back into L1.
    clock: AtomicU64,
    /// The clock of the last invalidation of any key of each stripe (keys are spread over
    /// [`STRIPES`] by hash): an invalidation of one key drops the fills in flight of its
    /// stripe only, not every fill in flight (under a steady stream of invalidations from
    /// other instances, a global epoch kept L1 from filling at all).
    stripes: Box<[AtomicU64]>,
    /// The clock of the last invalidation of every key (`clear`, `retain_keys`,
    /// `invalidate_fills`).
    all: AtomicU64,
    stripe_hasher: quick_cache::DefaultHashBuilder,
}

/// Stripes of the per-key invalidation clock ([`L1::stripes`]): a fill is dropped by an
/// invalidation of another key only when the two keys share a stripe (1 in 1024).
const STRIPES: usize = 1024;

impl L1 {
    /// An L1 bounded by `max_entries`, or by `max_bytes` of approximate entry size.
    pub(crate) fn new(max_entries: usize, max_bytes: Option<u64>) -> Self {
        let cache = match max_bytes {
            Some(bytes) => quick_cache::sync::Cache::with_weighter(
                max_entries.max(1),
                bytes.max(1),
                EntryWeighter { by_bytes: true },
            ),
            None => quick_cache::sync::Cache::with_weighter(
                max_entries.max(1),
                max_entries.max(1) as u64,
                EntryWeighter { by_bytes: false },
            ),
        };
        Self {
            cache,
            by_bytes: max_bytes.is_some(),
            clock: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            all: AtomicU64::new(0),
            stripe_hasher: quick_cache::DefaultHashBuilder::default(),
        }
    }

    /// Whether entries weigh their size (a byte budget): callers then pass real sizes.
    pub(crate) fn weighs_bytes(&self) -> bool {
        self.by_bytes
    }

    /// The invalidation clock; pass it to [`L1::insert`] as `since` for a value read after.
    pub(crate) fn epoch(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    /// Ticks the clock for an invalidation; returns the new time.
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn stripe(&self, key: &str) -> &AtomicU64 {
        let h = self.stripe_hasher.hash_one(key.as_bytes());
        #[allow(
            clippy::cast_possible_truncation,
            reason = "the remainder is below STRIPES, which fits in usize"
        )]
        &self.stripes[(h % STRIPES as u64) as usize]
    }

    /// Whether `key` (or every key) was invalidated after `since`.
    fn invalidated_since(&self, key: &str, since: u64) -> bool {
        self.all.load(Ordering::SeqCst) > since || self.stripe(key).load(Ordering::SeqCst) > since
    }

    /// Marks every key invalidated now.
    fn invalidate_all(&self) {
        let now = self.tick();
        self.all.fetch_max(now, Ordering::SeqCst);
    }

    /// The value under `key` if present, unexpired and of type `T`.
    #[inline]
    pub(crate) fn get<T>(&self, key: &str, now: Instant, erasure: Erasure<T>) -> Option<T> {
        let entry = self.cache.get(&Probe(key))?;
        if entry.expires_at <= now {
            self.cache.remove(&Probe(key));
            return None;
        }
        (erasure.unerase)(entry.value)
    }

    /// Inserts a value as `at` says (a zero ttl removes the key instead). Returns whether
    /// the value was inserted.
    pub(crate) fn insert<T>(
        &self,
        key: &str,
        value: T,
        erasure: Erasure<T>,
        at: Placement,
    ) -> bool {
        let Placement {
            ttl,
            size_hint,
            since,
            local,
        } = at;
        if ttl.is_zero() {
            self.cache.remove(&Probe(key));
            return false;
        }
        if since.is_some_and(|s| self.invalidated_since(key, s)) {
            return false;
        }
        let weight = u32::try_from(size_hint + key.len() + 64).unwrap_or(u32::MAX);
        let value = (erasure.erase)(value);
        // Kept only to recognise this insert below (one reference count, on fills only).
        let mine = since.map(|_| Arc::clone(&value));
        self.cache.insert(
            L1Key::new(key),
            L1Entry {
                value,
                expires_at: Instant::now() + ttl,
                weight,
                local,
            },
        );
        // An invalidation that ticked between the check and the insert may have evicted
        // before the insert landed: take this value out again (not a newer one that another
        // writer put there since).
        if let (Some(s), Some(mine)) = (since, mine)
            && self.invalidated_since(key, s)
        {
            self.cache
                .remove_if(&Probe(key), |e| Arc::ptr_eq(&e.value, &mine));
            return false;
        }
        true
    }

    /// Sets how long the entry under `key` stays (a touch that moved its Redis entry's expiry),
    /// unless `key` was invalidated after `since`: then the copy may be older than the entry
    /// that was touched, and is dropped. Returns whether an entry was kept.
    pub(crate) fn extend(&self, key: &str, ttl: Duration, since: u64) -> bool {
        let Some(entry) = self.cache.get(&Probe(key)) else {
            return false;
        };
        if ttl.is_zero() || self.invalidated_since(key, since) {
            self.cache.remove(&Probe(key));
            return false;
        }
        let value = Arc::clone(&entry.value);
        self.cache.insert(
            L1Key::new(key),
            L1Entry {
                expires_at: Instant::now() + ttl,
                ..entry
            },
        );
        // An invalidation between the check and the insert: take this copy out again.
        if self.invalidated_since(key, since) {
            self.cache
                .remove_if(&Probe(key), |e| Arc::ptr_eq(&e.value, &value));
            return false;
        }
        true
    }

    /// Keeps only the entries for which `keep(key, local)` holds (`local`: the entry lives
    /// only in L1).
    pub(crate) fn retain_keys(&self, keep: impl Fn(&str, bool) -> bool) {
        self.invalidate_all();
        self.cache.retain(|k, e| keep(k.as_str(), e.local));
    }

    /// Makes every fill that started before now lose (see [`epoch`](Self::epoch)).
    pub(crate) fn invalidate_fills(&self) {
        self.invalidate_all();
    }

    /// Whether an unexpired entry is stored under `key` (of any type).
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.cache
            .get(&Probe(key))
            .is_some_and(|e| e.expires_at > Instant::now())
    }

    /// How long the entry under `key` stays in L1; `None` when there is none (or it expired).
    pub(crate) fn ttl(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        self.cache
            .get(&Probe(key))
            .filter(|e| e.expires_at > now)
            .map(|e| e.expires_at - now)
    }

    pub(crate) fn remove(&self, key: &str) -> bool {
        let now = self.tick();
        self.stripe(key).fetch_max(now, Ordering::SeqCst);
        self.cache.remove(&Probe(key)).is_some()
    }

    pub(crate) fn clear(&self) {
        self.invalidate_all();
        self.cache.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }
}

/// Key bytes an [`L1Key`] holds in place.
const INLINE_KEY: usize = 22;

/// An L1 key. Keys of up to [`INLINE_KEY`] bytes (most keys without the prefixes) live inside
/// the cache entry itself, so a lookup compares them without following a pointer to a
/// separately allocated string: one fewer memory access per hit on a large L1. Longer keys
/// are boxed. The variant is a pure function of the length, so equal keys always have equal
/// representations.
#[derive(Clone)]
pub(crate) enum L1Key {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<str>),
}

impl L1Key {
    fn new(key: &str) -> Self {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(key.as_bytes());
            #[allow(
                clippy::cast_possible_truncation,
                reason = "key.len() <= INLINE_KEY, which fits in u8"
            )]
            Self::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            Self::Heap(Box::from(key))
        }
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(s) => s.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // A whole `&str` was copied in, so this is valid UTF-8.
            Self::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or(""),
            Self::Heap(s) => s,
        }
    }
}

impl PartialEq for L1Key {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for L1Key {}

/// Hashes the key bytes only, exactly as [`Probe`] does.
impl Hash for L1Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
    }
}

/// A lookup of an [`L1Key`] by `&str`, without building one.
struct Probe<'a>(&'a str);

/// Hashes the key bytes only, exactly as [`L1Key`] does.
impl Hash for Probe<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0.as_bytes());
    }
}

impl quick_cache::Equivalent<L1Key> for Probe<'_> {
    #[inline]
    fn equivalent(&self, key: &L1Key) -> bool {
        self.0.as_bytes() == key.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry of `size` bytes for a minute.
    fn minute(size: usize) -> Placement {
        Placement {
            ttl: Duration::from_secs(60),
            size_hint: size,
            since: None,
            local: false,
        }
    }

    #[test]
    fn keys_inline_and_boxed_are_found_and_kept_apart() {
        let l1 = L1::new(100, None);
        let short = "k:1";
        let edge = "x".repeat(INLINE_KEY);
        let long = "y".repeat(INLINE_KEY + 1);
        let prefix_of_edge = "x".repeat(INLINE_KEY - 1);
        for (i, k) in [short, &edge, &long, &prefix_of_edge, ""]
            .into_iter()
            .enumerate()
        {
            l1.insert(k, i, Erasure::boxed(), minute(1));
        }
        assert!(matches!(L1Key::new(&edge), L1Key::Inline { .. }));
        assert!(matches!(L1Key::new(&long), L1Key::Heap(_)));
        let now = Instant::now();
        for (i, k) in [short, &edge, &long, &prefix_of_edge, ""]
            .into_iter()
            .enumerate()
        {
            assert_eq!(l1.get(k, now, Erasure::<usize>::boxed()), Some(i), "{k:?}");
        }
        assert_eq!(l1.get("k:2", now, Erasure::<usize>::boxed()), None);
        assert_eq!(l1.get("k:1\0", now, Erasure::<usize>::boxed()), None);
        l1.retain_keys(|k, _| k != long.as_str() && k != short);
        assert_eq!(l1.len(), 3);
        assert!(l1.contains(&edge) && !l1.contains(&long) && !l1.contains(short));
        assert!(l1.remove(&edge));
        assert!(!l1.contains(&edge));
    }

    #[test]
    fn l1_expires_and_checks_type() {
        let l1 = L1::new(10, None);
        l1.insert("a", 5u32, Erasure::boxed(), minute(4));
        let now = Instant::now();
        assert_eq!(l1.get("a", now, Erasure::<u32>::boxed()), Some(5));
        assert_eq!(l1.get("a", now, Erasure::<u64>::boxed()), None);
        assert_eq!(
            l1.get("a", now + Duration::from_secs(61), Erasure::<u32>::boxed()),
            None
        );
        assert_eq!(l1.len(), 0);
    }

    #[test]
    fn arc_values_are_stored_as_the_arc_and_read_either_way() {
        let l1 = L1::new(10, None);
        let now = Instant::now();
        let v = Arc::new(String::from("x"));
        l1.insert("arc", Arc::clone(&v), Erasure::arc(), minute(1));
        let got = l1.get("arc", now, Erasure::<Arc<String>>::arc()).unwrap();
        assert!(Arc::ptr_eq(&got, &v), "the same allocation, no copy");
        // The boxed reader of the inner type sees it too.
        assert_eq!(
            l1.get("arc", now, Erasure::<String>::boxed()).as_deref(),
            Some("x")
        );
        // An entry stored boxed is read by the Arc reader.
        l1.insert("boxed", Arc::clone(&v), Erasure::boxed(), minute(1));
        assert!(
            l1.get("boxed", now, Erasure::<Arc<String>>::arc())
                .is_some()
        );
    }

    /// A fill of `k` that read the clock at `since`; whether it landed.
    fn fill(l1: &L1, k: &str, since: u64) -> bool {
        l1.insert(
            k,
            1u8,
            Erasure::boxed(),
            Placement {
                since: Some(since),
                ..minute(1)
            },
        )
    }

    #[test]
    fn a_fill_older_than_an_eviction_of_its_key_is_dropped() {
        let l1 = L1::new(10, None);
        let seen = l1.epoch();
        l1.remove("k");
        assert!(
            !fill(&l1, "k", seen),
            "k was invalidated after the fill read it"
        );
        assert_eq!(l1.len(), 0);
        assert!(fill(&l1, "k", l1.epoch()));
        assert_eq!(l1.len(), 1);
    }

    /// Regression: one global epoch made every invalidation (of any key, also the `k`
    /// messages of other instances) drop every fill in flight.
    #[test]
    fn an_eviction_of_another_key_leaves_a_fill_alone() {
        let l1 = L1::new(100, None);
        let others: Vec<String> = (0..50).map(|i| format!("other:{i}")).collect();
        // Among these, at most a few share a stripe with `k` (1 in 1024 each).
        let mut dropped = 0;
        for other in &others {
            let seen = l1.epoch();
            l1.remove(other);
            if !fill(&l1, "k", seen) {
                dropped += 1;
            }
            l1.remove("k");
        }
        assert!(
            dropped <= 2,
            "{dropped} of 50 fills dropped by other keys' evictions"
        );
    }

    #[test]
    fn clear_and_retain_drop_every_fill_in_flight() {
        let l1 = L1::new(10, None);
        let seen = l1.epoch();
        l1.clear();
        assert!(!fill(&l1, "a", seen));
        let seen = l1.epoch();
        l1.retain_keys(|_, _| true);
        assert!(!fill(&l1, "b", seen));
        let seen = l1.epoch();
        l1.invalidate_fills();
        assert!(!fill(&l1, "c", seen));
        assert!(fill(&l1, "c", l1.epoch()));
    }

    #[test]
    fn l1_weight_budget_evicts() {
        let l1 = L1::new(1000, Some(10_000));
        for i in 0..1000 {
            l1.insert(
                &format!("k{i}"),
                vec![0u8; 1000],
                Erasure::boxed(),
                minute(1000),
            );
        }
        assert!(
            l1.len() < 20,
            "{} entries kept within a 10 kB budget",
            l1.len()
        );
    }
}
