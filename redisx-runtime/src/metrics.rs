//! Prometheus metrics: the `redisx_` metric set in a `prometheus-client` registry.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `redisx_commands_total` | counter | `command`, `client`, `status` (`ok` / `error`) |
//! | `redisx_command_duration_seconds` | histogram | `command`, `client` |
//! | `redisx_errors_total` | counter | `client`, `error_type` (an [`ErrorCode`](crate::ErrorCode) string) |
//!
//! Each plugin registers its own metrics beside these when it is built (the cache's
//! `redisx_cache_*` set is listed in the README).
//!
//! The registry is either created by the runtime or passed in by the user
//! ([`RedisXBuilder::registry`](crate::RedisXBuilder::registry)) so that redisx metrics sit beside
//! the application's own; [`RedisX::metrics_text`](crate::RedisX::metrics_text) renders it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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

fn duration_histogram() -> Histogram {
    Histogram::new(COMMAND_DURATION_BUCKETS)
}

/// Every metric redisx records, registered once per runtime.
pub(crate) struct Metrics {
    pub(crate) registry: SharedRegistry,
    pub(crate) commands: Family<CommandLabels, Counter>,
    pub(crate) command_duration: Family<DurationLabels, Histogram, fn() -> Histogram>,
    pub(crate) errors: Family<ErrorLabels, Counter>,
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

impl Metrics {
    pub(crate) fn new(registry: Option<SharedRegistry>) -> Self {
        let registry = registry.unwrap_or_else(|| Arc::new(Mutex::new(Registry::default())));
        let commands = Family::<CommandLabels, Counter>::default();
        let command_duration =
            Family::<DurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram as fn() -> Histogram,
            );
        let errors = Family::<ErrorLabels, Counter>::default();
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
        }
        Self {
            registry,
            commands,
            command_duration,
            errors,
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
