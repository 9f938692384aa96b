//! What the cache counts: [`CacheStats`], its Prometheus metrics (registered by the cache in
//! the runtime's registry), and the log line and span of its common events.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `redisx_cache_hits_total` | counter | `layer` (`l1` / `l2`) |
//! | `redisx_cache_misses_total` | counter | `layer` |
//! | `redisx_cache_stampede_prevented_total` | counter | |
//! | `redisx_cache_stale_served_total` | counter | |
//! | `redisx_cache_loads_total` | counter | `status` (`ok` / `error`) |
//! | `redisx_cache_errors_total` | counter | `op` (`read` / `write` / `delete` / `invalidate`) |
//! | `redisx_cache_corrupt_entries_total` | counter | |
//! | `redisx_cache_l1_entries` | gauge | |

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;

use super::Cache;
use super::l1::L1;
use crate::error::{Error, ErrorCode};
use crate::metrics::{SharedRegistry, Striped};

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
pub(crate) struct Counters {
    pub(crate) refreshes: AtomicU64,
    pub(crate) errors: AtomicU64,
}

/// The cache operations whose Redis failures are counted (`op` of
/// `redisx_cache_errors_total`): reads and writes fail open, deletes and invalidations report
/// the error to their caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    Read,
    Write,
    Delete,
    Invalidate,
}

impl Op {
    const ALL: [Op; 4] = [Op::Read, Op::Write, Op::Delete, Op::Invalidate];

    fn label(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Delete => "delete",
            Op::Invalidate => "invalidate",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

/// How often one cause of failure (an operation and an error code) is logged: with Redis down,
/// every call fails the same way, and one warning per call would flood the log.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// Rate-limits log lines: at most one per key (a cause of failure, a family of keys) and
/// window; the lines held back are counted and reported with the next one. At most
/// `max_keys` keys are tracked; past that, quiet ones are forgotten (and a new key logs
/// unthrottled until there is room).
pub(crate) struct RateLimitedLog<K> {
    every: Duration,
    max_keys: usize,
    seen: Mutex<Option<HashMap<K, (Instant, u64)>>>,
}

impl<K: Hash + Eq> RateLimitedLog<K> {
    pub(crate) const fn new(every: Duration, max_keys: usize) -> Self {
        Self {
            every,
            max_keys,
            seen: Mutex::new(None),
        }
    }

    /// `Some(held back since the last line)` when `key` may log at `now`; `None` (and one
    /// more held back) otherwise.
    pub(crate) fn admit<Q>(&self, key: &Q, now: Instant) -> Option<u64>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let seen = seen.get_or_insert_with(HashMap::new);
        if let Some((since, held)) = seen.get_mut(key) {
            if now.duration_since(*since) < self.every {
                *held += 1;
                return None;
            }
            *since = now;
            return Some(std::mem::take(held));
        }
        if seen.len() >= self.max_keys {
            seen.retain(|_, (since, _)| now.duration_since(*since) < self.every);
        }
        if seen.len() < self.max_keys {
            seen.insert(key.to_owned(), (now, 0));
        }
        Some(0)
    }
}

/// The fail-open warnings of one cache: one per cause (operation and error code) per
/// [`WARN_EVERY`]; the causes are few, so all are tracked.
pub(crate) type Warnings = RateLimitedLog<(Op, ErrorCode)>;

/// A cache's [`Warnings`], empty.
pub(crate) fn warnings() -> Warnings {
    RateLimitedLog::new(WARN_EVERY, usize::MAX)
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// The cache's metric handles (pre-resolved so the hit path does no label lookup).
#[derive(Clone)]
pub(crate) struct CacheMetrics {
    pub(crate) l1_hits: Striped,
    pub(crate) l2_hits: Striped,
    pub(crate) l1_misses: Striped,
    pub(crate) l2_misses: Striped,
    pub(crate) stampede_prevented: Counter,
    pub(crate) stale_served: Counter,
    pub(crate) loads_ok: Counter,
    pub(crate) loads_error: Counter,
    errors: [Counter; 4],
    pub(crate) corrupt: Counter,
}

impl CacheMetrics {
    /// Registers the cache's metrics in `registry` (under `redisx_`); the L1 size gauge reads
    /// `l1` at scrape time (counting the shards on every insert would cost more than the
    /// insert) and disappears with it.
    pub(crate) fn register(registry: &SharedRegistry, l1: Weak<L1>) -> Self {
        let loads = Family::<StatusLabels, Counter>::default();
        let errors = Family::<OpLabels, Counter>::default();
        let m = Self {
            l1_hits: Striped::default(),
            l2_hits: Striped::default(),
            l1_misses: Striped::default(),
            l2_misses: Striped::default(),
            stampede_prevented: Counter::default(),
            stale_served: Counter::default(),
            loads_ok: loads.get_or_create_owned(&StatusLabels { status: "ok" }),
            loads_error: loads.get_or_create_owned(&StatusLabels { status: "error" }),
            errors: Op::ALL.map(|op| errors.get_or_create_owned(&OpLabels { op: op.label() })),
            corrupt: Counter::default(),
        };
        let mut reg = registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let r = reg.sub_registry_with_prefix("redisx");
        r.register_collector(Box::new(HitsCollector(m.clone())));
        r.register_collector(Box::new(L1SizeCollector(l1)));
        r.register(
            "cache_stampede_prevented",
            "Cache loads avoided because another caller was already loading the key",
            m.stampede_prevented.clone(),
        );
        r.register(
            "cache_stale_served",
            "Stale cache values served (stale-while-revalidate or stale-if-error)",
            m.stale_served.clone(),
        );
        r.register("cache_loads", "Cache loader runs, by status", loads);
        r.register(
            "cache_errors",
            "Cache operations that failed (a Redis error, or a call over the config's limits), by operation; reads and writes fail open, deletes and invalidations return the error",
            errors,
        );
        r.register(
            "cache_corrupt_entries",
            "Entries that did not decode (another codec, another shape of the type, garbage): misses, removed",
            m.corrupt.clone(),
        );
        m
    }

    /// Counts one Redis failure of `op`.
    pub(crate) fn error(&self, op: Op) {
        self.errors[op as usize].inc();
    }

    /// Counts one loader run.
    pub(crate) fn load(&self, ok: bool) {
        if ok {
            self.loads_ok.inc();
        } else {
            self.loads_error.inc();
        }
    }
}

/// Exports the striped hit and miss counters as `redisx_cache_hits_total{layer}` and
/// `redisx_cache_misses_total{layer}` at scrape time.
struct HitsCollector(CacheMetrics);

impl std::fmt::Debug for HitsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HitsCollector")
    }
}

impl Collector for HitsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let m = &self.0;
        let families = [
            ("cache_hits", "Cache hits, by layer", &m.l1_hits, &m.l2_hits),
            (
                "cache_misses",
                "Cache misses, by layer",
                &m.l1_misses,
                &m.l2_misses,
            ),
        ];
        for (name, help, l1, l2) in families {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (layer, counter) in [("l1", l1), ("l2", l2)] {
                let labels = [("layer", layer)];
                let family = metric.encode_family(&labels)?;
                ConstCounter::new(counter.get()).encode(family)?;
            }
        }
        Ok(())
    }
}

/// Exports `redisx_cache_l1_entries`, read at scrape time.
#[derive(Debug)]
struct L1SizeCollector(Weak<L1>);

impl Collector for L1SizeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let Some(l1) = self.0.upgrade() else {
            return Ok(());
        };
        let metric = encoder.encode_descriptor(
            "cache_l1_entries",
            "Entries in the in-process L1 cache",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(l1.len()).unwrap_or(i64::MAX)).encode(metric)
    }
}

impl Cache {
    /// Counters of this cache since the runtime started.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let cache = rx.cache();
    /// cache.set("user:1:name", &"Ada".to_owned(), None).await?;
    /// let _: Option<String> = cache.get("user:1:name").await?; // answered by L1
    /// let stats = cache.stats();
    /// assert!(stats.l1_hits >= 1);
    /// println!("{} L1 hits, {} loads, {} errors", stats.l1_hits, stats.loads, stats.errors);
    /// # Ok(()) }
    /// ```
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
            corrupt_entries: m.corrupt.get(),
            errors: l(&c.errors),
            l1_entries: self.inner.l1.len() as u64,
        }
    }

    /// Counts a Redis failure the cache continues without (`op`: what failed, `step`: which
    /// part of it, for the log), and logs it unless the same cause was logged in the last few
    /// seconds (then the next warning says how many were left out).
    pub(crate) fn fail_open(&self, op: Op, step: &'static str, key: &str, err: &Error) {
        bump(&self.inner.counters.errors);
        self.inner.metrics.error(op);
        // A gone runtime was reported once, by the command that found it.
        if err.code() == ErrorCode::ConfigRuntimeGone {
            return;
        }
        if let Some(suppressed) = self.inner.warnings.admit(&(op, err.code()), Instant::now()) {
            tracing::warn!(target: "redisx::cache",
                op = op.label(),
                step,
                key,
                error = %format_args!("{err:#}"),
                suppressed,
                "cache operation failed; continuing without the cache"
            );
        }
    }

    /// Counts a Redis failure that is returned to the caller (a delete or an invalidation) and
    /// marks the operation's span failed (`otel.status_code`, `error.type`).
    pub(crate) fn failed(&self, op: Op, span: &tracing::Span, err: Error) -> Error {
        self.inner.metrics.error(op);
        span.record("otel.status_code", "ERROR");
        span.record("error.type", err.code().as_str());
        err
    }
}

/// The `cache.get` span of an L1 hit on the load paths (`get_or_load*`, `#[cached]`): at TRACE
/// level, because these hits are the hot path (an INFO span would cost more than the hit
/// under a typical subscriber); every other `cache.get` span is at DEBUG. `key` is recorded
/// only when keys may be.
#[inline]
pub(crate) fn trace_l1_hit(key: Option<&str>) {
    let _span = tracing::trace_span!(target: "redisx::cache", "cache.get",
        otel.kind = "internal",
        cache.key = key,
        cache.layer = "l1",
        cache.hit = true
    );
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn a_cause_is_warned_once_per_period_with_the_count_left_out() {
        let w = warnings();
        let code = ErrorCode::ConnectionFailed;
        let t0 = Instant::now();
        assert_eq!(w.admit(&(Op::Read, code), t0), Some(0));
        assert_eq!(w.admit(&(Op::Read, code), t0), None);
        assert_eq!(w.admit(&(Op::Read, code), t0), None);
        // Another cause is its own.
        assert_eq!(w.admit(&(Op::Write, code), t0), Some(0));
        assert_eq!(
            w.admit(&(Op::Read, ErrorCode::OperationTimeout), t0),
            Some(0)
        );
        // A period later, the next warning says how many were left out.
        let later = t0 + WARN_EVERY;
        assert_eq!(w.admit(&(Op::Read, code), later), Some(2));
        assert_eq!(w.admit(&(Op::Read, code), later), None);
    }

    #[test]
    fn striped_counters_are_exported_with_the_redisx_prefix() {
        let registry: SharedRegistry = Arc::new(Mutex::new(Registry::default()));
        let l1 = Arc::new(L1::new(10, None));
        let m = CacheMetrics::register(&registry, Arc::downgrade(&l1));
        m.l1_hits.inc();
        m.l1_hits.inc();
        m.l2_misses.inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry.lock().unwrap()).unwrap();
        assert!(
            text.contains("redisx_cache_hits_total{layer=\"l1\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("redisx_cache_hits_total{layer=\"l2\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("redisx_cache_misses_total{layer=\"l2\"} 1"),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE redisx_cache_hits counter").count(),
            1,
            "{text}"
        );
        assert!(text.contains("redisx_cache_l1_entries 0"), "{text}");
    }
}
