//! What lives in this process: L1 probes and fills, and the in-process tag index of the
//! entries that live only in L1.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::envelope::{self, Envelope};
use super::glob::Glob;
use super::l1::{Erasure, Placement};
use super::{Cache, CacheInner, CacheMode, Call};
use crate::codec::CodecKind;

/// The in-process tag index of the entries that live only in L1 (every entry of an L1-only
/// cache, and the `mode = L1Only` calls of a cache with Redis): both directions, so that a
/// rewrite with other tags (or none) leaves the indexes of the tags it no longer carries.
#[derive(Default)]
pub(crate) struct LocalTags {
    pub(crate) by_tag: HashMap<String, HashSet<Box<str>>>,
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

/// How a value enters L1: when its entry goes stale (unix ms), its weight under a byte budget,
/// and the L1 epoch seen before it was read or written (an invalidation since drops it).
#[derive(Clone, Copy)]
pub(crate) struct Fill {
    pub(crate) stale_at: u64,
    pub(crate) size: usize,
    pub(crate) since: u64,
}

impl Cache {
    /// The L1 probe of the hit path: no allocation, no await. Counts the hit or the miss.
    #[inline]
    pub(crate) fn l1_get<T>(
        &self,
        key: &str,
        mode: Option<CacheMode>,
        erasure: Erasure<T>,
    ) -> Option<T> {
        let v = self.l1_peek(key, mode, erasure);
        if v.is_none() && self.inner.cfg.mode_of(mode).uses_l1() {
            self.inner.metrics.l1_misses.inc();
        }
        v
    }

    /// An L1 probe that counts only a hit: a call site probes before it builds its options,
    /// and on a miss makes the public call, whose own probe counts the miss.
    #[allow(
        clippy::inline_always,
        reason = "the whole probe of a `#[cached]` hit: left to the compiler it was called out of line, about 5 instructions more per hit (callgrind)"
    )]
    #[inline(always)]
    pub(crate) fn l1_peek<T>(
        &self,
        key: &str,
        mode: Option<CacheMode>,
        erasure: Erasure<T>,
    ) -> Option<T> {
        if !self.inner.cfg.mode_of(mode).uses_l1() {
            return None;
        }
        let v = self.inner.l1.get(key, Instant::now(), erasure)?;
        self.inner.metrics.l1_hits.inc();
        Some(v)
    }

    /// The size of `value` as L1 weighs it under a byte budget (its encoded size; a value
    /// that cannot be encoded weighs as if empty); 0 without a byte budget, where the
    /// encoding would be wasted work.
    pub(crate) fn l1_weight_of<T: Serialize>(&self, codec: CodecKind, value: &T) -> usize {
        if !self.inner.l1.weighs_bytes() {
            return 0;
        }
        codec.encode(value).map_or(0, |bytes| bytes.len())
    }

    /// Inserts a call's value into L1 (when its mode uses L1). For an entry that lives only
    /// in L1 (an L1-only cache, or an L1-only call in a cache with Redis, whose entry Redis's
    /// tag index never sees) the key's tags are recorded in the same step, under the tag
    /// index's lock and only when the value was inserted, so the index always names exactly
    /// the tags of the value L1 holds (two racing writes of one key cannot leave one's value
    /// under the other's tags).
    pub(crate) fn l1_insert<T>(&self, call: &Call<'_>, value: T, fill: Fill, erasure: Erasure<T>) {
        let r = &call.r;
        if !r.mode.uses_l1() {
            return;
        }
        let fresh = Duration::from_millis(fill.stale_at.saturating_sub(envelope::now_ms()));
        let ttl = r.l1_ttl.min(fresh);
        let (key, l1) = (call.key, &self.inner.l1);
        let at = |local| Placement {
            ttl,
            size_hint: fill.size,
            since: Some(fill.since),
            local,
        };
        if self.inner.client.is_some() && r.mode != CacheMode::L1Only {
            // An L1 copy of an entry in Redis, whose index holds the tags.
            if !self.inner.mixed_local_tags.load(Ordering::Acquire) {
                l1.insert(key, value, erasure, at(false));
                return;
            }
            // The key may be indexed from an earlier L1-only call: it no longer carries
            // those tags here.
            let mut index = self.inner.local_index();
            if l1.insert(key, value, erasure, at(false)) {
                index.forget(key);
            }
            return;
        }
        let mut index = self.inner.local_index();
        let inserted = l1.insert(key, value, erasure, at(true));
        if inserted && (!call.tags.is_empty() || !index.by_key.is_empty()) {
            if self.inner.client.is_some() && !call.tags.is_empty() {
                self.inner.mixed_local_tags.store(true, Ordering::Release);
            }
            index.set(key, call.tags);
            // Keys L1 dropped since (evicted, expired) are pruned whenever the index tracks
            // more than a few times L1's capacity, so it stays bounded.
            let bound = self.inner.cfg.l1_max_entries.saturating_mul(4).max(64);
            if index.by_key.len() > bound {
                index.prune(|k| l1.contains(k));
            }
        }
    }

    /// Fills L1 with an entry read from L2 (whose tags Redis's index holds).
    pub(crate) fn fill_l1<T: Clone>(
        &self,
        call: &Call<'_>,
        env: &Envelope<T>,
        erasure: Erasure<T>,
        since: u64,
    ) {
        let fill = Fill {
            stale_at: env.stale_at,
            size: env.size,
            since,
        };
        let untagged = Call {
            key: call.key,
            full: None,
            r: call.r,
            tags: &[],
        };
        self.l1_insert(&untagged, env.value.clone(), fill, erasure);
    }
}

impl CacheInner {
    /// Evicts from L1 the keys the in-process index names under `tags` (and takes them out
    /// of it); returns how many of those for which `count` holds were in L1.
    pub(crate) fn evict_local_tags<S: AsRef<str>>(
        &self,
        tags: &[S],
        count: impl Fn(&str) -> bool,
    ) -> u64 {
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

    pub(crate) fn local_index(&self) -> std::sync::MutexGuard<'_, LocalTags> {
        self.local_tags
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Evicts from L1 every key matching the Redis glob `pattern`; returns how many of them
    /// lived only in L1 (L1 copies of entries in Redis are counted where Redis deletes them).
    pub(crate) fn evict_local_pattern(&self, pattern: &str) -> u64 {
        let matcher = Glob::new(pattern);
        let removed = std::cell::Cell::new(0_u64);
        self.l1.retain_keys(|k, local| {
            let hit = matcher.matches(k);
            removed.set(removed.get() + u64::from(hit && local));
            !hit
        });
        removed.get()
    }
}
