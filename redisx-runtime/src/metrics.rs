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

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
pub(crate) struct LayerLabels {
    pub(crate) layer: &'static str,
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

/// The cache plugin's metric handles (pre-resolved so the hit path does no label lookup).
#[derive(Clone)]
pub(crate) struct CacheMetrics {
    pub(crate) l1_hits: Counter,
    pub(crate) l2_hits: Counter,
    pub(crate) l1_misses: Counter,
    pub(crate) l2_misses: Counter,
    pub(crate) stampede_prevented: Counter,
    pub(crate) stale_served: Counter,
    pub(crate) loads_ok: Counter,
    pub(crate) loads_error: Counter,
    pub(crate) write_errors: Counter,
    pub(crate) l1_entries: Gauge,
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
        let hits = Family::<LayerLabels, Counter>::default();
        let misses = Family::<LayerLabels, Counter>::default();
        let loads = Family::<StatusLabels, Counter>::default();
        let layer =
            |f: &Family<LayerLabels, Counter>, layer| f.get_or_create_owned(&LayerLabels { layer });
        let cache = CacheMetrics {
            l1_hits: layer(&hits, "l1"),
            l2_hits: layer(&hits, "l2"),
            l1_misses: layer(&misses, "l1"),
            l2_misses: layer(&misses, "l2"),
            stampede_prevented: Counter::default(),
            stale_served: Counter::default(),
            loads_ok: loads.get_or_create_owned(&StatusLabels { status: "ok" }),
            loads_error: loads.get_or_create_owned(&StatusLabels { status: "error" }),
            write_errors: Counter::default(),
            l1_entries: Gauge::default(),
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
            r.register("cache_hits", "Cache hits, by layer", hits);
            r.register("cache_misses", "Cache misses, by layer", misses);
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
            r.register(
                "cache_l1_entries",
                "Entries in the in-process L1 cache",
                cache.l1_entries.clone(),
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
