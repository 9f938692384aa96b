//! Prometheus metrics: the `redisx_` metric set in a `prometheus-client` registry.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `redisx_commands_total` | counter | `command`, `client`, `status` (`ok` / `error`) |
//! | `redisx_command_duration_seconds` | histogram | `command`, `client` |
//! | `redisx_errors_total` | counter | `client`, `error_type` (an [`ErrorCode`](crate::ErrorCode) string) |
//! | `redisx_cache_hits_total` | counter | `layer` (`l1` / `l2`) |
//! | `redisx_cache_misses_total` | counter | `layer` |
//! | `redisx_cache_stampede_prevented_total` | counter | |
//! | `redisx_cache_stale_served_total` | counter | |
//! | `redisx_cache_loads_total` | counter | `status` (`ok` / `error`) |
//! | `redisx_cache_write_errors_total` | counter | |
//! | `redisx_cache_l1_entries` | gauge | |
//!
//! The registry is either created by the runtime or passed in by the user
//! ([`RedisXBuilder::registry`](crate::RedisXBuilder::registry)) so that redisx metrics sit beside
//! the application's own; [`RedisX::metrics_text`](crate::RedisX::metrics_text) renders it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A shared `prometheus-client` registry, as accepted by
/// [`RedisXBuilder::registry`](crate::RedisXBuilder::registry).
pub type SharedRegistry = Arc<Mutex<Registry>>;

/// The buckets of `redisx_command_duration_seconds`: 100 µs to 10 s.
pub const COMMAND_DURATION_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CommandLabels {
    pub(crate) command: &'static str,
    pub(crate) client: Arc<str>,
    pub(crate) status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DurationLabels {
    pub(crate) command: &'static str,
    pub(crate) client: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ErrorLabels {
    pub(crate) client: Arc<str>,
    pub(crate) error_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabels {
    pub(crate) status: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(COMMAND_DURATION_BUCKETS)
}

/// Every metric redisx records, registered once per runtime.
pub(crate) struct Metrics {
    pub(crate) registry: SharedRegistry,
    pub(crate) commands: Family<CommandLabels, Counter>,
    pub(crate) command_duration: Family<DurationLabels, Histogram, fn() -> Histogram>,
    pub(crate) errors: Family<ErrorLabels, Counter>,
    pub(crate) cache: CacheMetrics,
}

/// A counter striped over cache lines: each thread increments its own slot, so threads
/// hitting L1 at the same time never fight over one atomic. Read by summing the slots.
#[derive(Clone, Default, Debug)]
pub(crate) struct Striped(Arc<[Slot; STRIPES]>);

const STRIPES: usize = 16;

#[derive(Default, Debug)]
#[repr(align(128))]
struct Slot(AtomicU64);

thread_local! {
    static STRIPE: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES
    };
}

impl Striped {
    #[inline]
    pub(crate) fn inc(&self) {
        let i = STRIPE.with(|s| *s);
        self.0[i].0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// Exports the striped hit and miss counters as `redisx_cache_hits_total{layer}` and
/// `redisx_cache_misses_total{layer}` at scrape time.
#[derive(Debug)]
struct HitsCollector {
    l1_hits: Striped,
    l2_hits: Striped,
    l1_misses: Striped,
    l2_misses: Striped,
}

impl Collector for HitsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let families = [
            (
                "cache_hits",
                "Cache hits, by layer",
                &self.l1_hits,
                &self.l2_hits,
            ),
            (
                "cache_misses",
                "Cache misses, by layer",
                &self.l1_misses,
                &self.l2_misses,
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
struct L1SizeCollector<F>(F);

impl<F> std::fmt::Debug for L1SizeCollector<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("L1SizeCollector")
    }
}

impl<F: Fn() -> Option<u64> + Send + Sync + 'static> Collector for L1SizeCollector<F> {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let Some(len) = (self.0)() else {
            return Ok(());
        };
        let metric = encoder.encode_descriptor(
            "cache_l1_entries",
            "Entries in the in-process L1 cache",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(len).unwrap_or(i64::MAX)).encode(metric)
    }
}

/// Registers the L1 size gauge of one cache; `len` returns `None` once the cache is gone.
pub(crate) fn register_l1_size(
    registry: &SharedRegistry,
    len: impl Fn() -> Option<u64> + Send + Sync + 'static,
) {
    registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .sub_registry_with_prefix("redisx")
        .register_collector(Box::new(L1SizeCollector(len)));
}

/// The cache plugin's metric handles (pre-resolved so the hit path does no label lookup).
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
    pub(crate) write_errors: Counter,
}

impl Metrics {
    pub(crate) fn new(registry: Option<SharedRegistry>) -> Self {
        let registry = registry.unwrap_or_else(|| Arc::new(Mutex::new(Registry::default())));
        let commands = Family::<CommandLabels, Counter>::default();
        let command_duration =
            Family::<DurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram as fn() -> Histogram,
            );
        let errors = Family::<ErrorLabels, Counter>::default();
        let loads = Family::<StatusLabels, Counter>::default();
        let cache = CacheMetrics {
            l1_hits: Striped::default(),
            l2_hits: Striped::default(),
            l1_misses: Striped::default(),
            l2_misses: Striped::default(),
            stampede_prevented: Counter::default(),
            stale_served: Counter::default(),
            loads_ok: loads.get_or_create_owned(&StatusLabels { status: "ok" }),
            loads_error: loads.get_or_create_owned(&StatusLabels { status: "error" }),
            write_errors: Counter::default(),
        };
        {
            let mut reg = registry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let r = reg.sub_registry_with_prefix("redisx");
            r.register(
                "commands",
                "Redis commands sent, by command, client and status",
                commands.clone(),
            );
            r.register(
                "command_duration_seconds",
                "Duration of Redis commands, from send to reply",
                command_duration.clone(),
            );
            r.register(
                "errors",
                "Errors of Redis commands, by client and error type",
                errors.clone(),
            );
            r.register_collector(Box::new(HitsCollector {
                l1_hits: cache.l1_hits.clone(),
                l2_hits: cache.l2_hits.clone(),
                l1_misses: cache.l1_misses.clone(),
                l2_misses: cache.l2_misses.clone(),
            }));
            r.register(
                "cache_stampede_prevented",
                "Cache loads avoided because another caller was already loading the key",
                cache.stampede_prevented.clone(),
            );
            r.register(
                "cache_stale_served",
                "Stale cache values served (stale-while-revalidate or stale-if-error)",
                cache.stale_served.clone(),
            );
            r.register("cache_loads", "Cache loader runs, by status", loads);
            r.register(
                "cache_write_errors",
                "Cache writes that failed (logged; never fail the caller)",
                cache.write_errors.clone(),
            );
        }
        Self {
            registry,
            commands,
            command_duration,
            errors,
            cache,
        }
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let reg = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        prometheus_client::encoding::text::encode(&mut out, &reg)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn striped_counters_are_exported_with_the_redisx_prefix() {
        let m = Metrics::new(None);
        m.cache.l1_hits.inc();
        m.cache.l1_hits.inc();
        m.cache.l2_misses.inc();
        let text = m.render();
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
    }

    #[test]
    fn striped_counter_sums_across_threads() {
        let c = Striped::default();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| (0..1000).for_each(|_| c.inc()));
            }
        });
        assert_eq!(c.get(), 4000);
    }
}
