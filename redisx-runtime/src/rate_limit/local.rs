//! The local deny cache: a key that was denied is answered in process, with no round trip,
//! until its `retry_after`. Nothing can be admitted before then whatever other instances do:
//! they can only consume more (a fixed window ends when it ends; a sliding log's oldest point
//! leaves when it leaves; a bucket refills at its rate). A `reset` here clears the entry; a
//! `reset` by another instance is seen once the entry's time has passed.

use std::time::Instant;

use super::config::Algorithm;
use super::decision::Decision;

/// A denial remembered for a call: its cost, until when, and the deciding limit's algorithm.
#[derive(Clone)]
struct Entry {
    cost: u64,
    until: Instant,
    decision: Decision,
    algorithm: Algorithm,
}

/// The denied calls, by their state keys; `None` when switched off.
pub(crate) struct LocalDeny {
    cache: Option<quick_cache::sync::Cache<String, Entry>>,
}

impl LocalDeny {
    pub(crate) fn new(on: bool, capacity: usize) -> Self {
        Self {
            cache: (on && capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
        }
    }

    /// The denial of `call` for `cost` points, if one holds now (any cost at least the one
    /// that was denied is denied too), with the deciding limit's algorithm.
    pub(crate) fn get(&self, call: &str, cost: u64) -> Option<(Decision, Algorithm)> {
        let cache = self.cache.as_ref()?;
        let entry = cache.get(call)?;
        let now = Instant::now();
        if now >= entry.until {
            cache.remove(call);
            return None;
        }
        if cost < entry.cost {
            return None;
        }
        let mut d = entry.decision;
        d.retry_after = entry.until - now;
        d.local = true;
        Some((d, entry.algorithm))
    }

    /// Remembers a denial of `call` for `cost` points.
    pub(crate) fn insert(&self, call: &str, cost: u64, decision: &Decision, algorithm: Algorithm) {
        let Some(cache) = &self.cache else { return };
        if decision.allowed || decision.retry_after.is_zero() {
            return;
        }
        cache.insert(
            call.to_owned(),
            Entry {
                cost,
                until: Instant::now() + decision.retry_after,
                decision: decision.clone(),
                algorithm,
            },
        );
    }

    /// Forgets the denial of `call` (a reset).
    pub(crate) fn remove(&self, call: &str) {
        if let Some(cache) = &self.cache {
            cache.remove(call);
        }
    }
}
