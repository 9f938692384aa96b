//! What the lock plugin counts: [`LockStats`], its Prometheus metrics (registered by the plugin
//! in the runtime's registry), and its spans (`lock.acquire`, `lock.release`, target
//! `redisx::lock`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `redisx_lock_acquisitions_total` | counter | `status` (`acquired` / `busy` / `timeout` / `error`) |
//! | `redisx_lock_wait_duration_seconds` | histogram | |
//! | `redisx_lock_hold_duration_seconds` | histogram | |
//! | `redisx_locks_active` | gauge | |
//! | `redisx_lock_lost_total` | counter | |
//! | `redisx_lock_release_errors_total` | counter | |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::SharedRegistry;

/// The buckets of `redisx_lock_wait_duration_seconds`: 1 ms to 30 s.
const WAIT_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// The buckets of `redisx_lock_hold_duration_seconds`: 1 ms to 10 min.
const HOLD_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 600.0,
];

/// Counters of one runtime's locks, as returned by [`Locks::stats`](super::Locks::stats).
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) {
/// let stats: redisx_runtime::lock::LockStats = rx.locks().stats();
/// if stats.lost > 0 {
///     eprintln!("{} locks were lost while held", stats.lost);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockStats {
    /// Locks acquired (`acquire`, `try_acquire`, `with_lock`).
    pub acquired: u64,
    /// `try_acquire` calls that found the lock held elsewhere.
    pub busy: u64,
    /// `acquire` calls that gave up (`LOCK_ACQUISITION_TIMEOUT`).
    pub timeouts: u64,
    /// Acquisitions that failed on a Redis error (failed closed).
    pub errors: u64,
    /// Locks lost while held (expired, deleted or taken over, or not renewed in time).
    pub lost: u64,
    /// Releases that failed on a Redis error (the key then expires at its ttl).
    pub release_errors: u64,
    /// Locks held by this runtime right now.
    pub active: i64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// How an acquisition ended (`status` of `redisx_lock_acquisitions_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Acquired,
    Busy,
    Timeout,
    Error,
}

/// The lock plugin's metric handles.
#[derive(Clone)]
pub(crate) struct LockMetrics {
    outcomes: [Counter; 4],
    pub(crate) wait: Histogram,
    pub(crate) hold: Histogram,
    pub(crate) active: Gauge,
    pub(crate) lost: Counter,
    pub(crate) release_errors: Counter,
}

impl LockMetrics {
    /// Registers the lock metrics in `registry`, under `redisx_`.
    pub(crate) fn register(registry: &SharedRegistry) -> Self {
        let acquisitions = Family::<StatusLabels, Counter>::default();
        let labels = ["acquired", "busy", "timeout", "error"];
        let m = Self {
            outcomes: labels
                .map(|status| acquisitions.get_or_create_owned(&StatusLabels { status })),
            wait: Histogram::new(WAIT_BUCKETS),
            hold: Histogram::new(HOLD_BUCKETS),
            active: Gauge::default(),
            lost: Counter::default(),
            release_errors: Counter::default(),
        };
        let mut reg = registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let r = reg.sub_registry_with_prefix("redisx");
        r.register(
            "lock_acquisitions",
            "Lock acquisitions, by outcome (acquired, busy: try_acquire found it held, timeout: acquire gave up, error: Redis failed)",
            acquisitions,
        );
        r.register(
            "lock_wait_duration_seconds",
            "Time spent acquiring a lock, whatever the outcome",
            m.wait.clone(),
        );
        r.register(
            "lock_hold_duration_seconds",
            "Time a lock was held, from its acquisition to its release, drop or loss",
            m.hold.clone(),
        );
        r.register(
            "locks_active",
            "Locks held by this process (a guard counts until it is released, dropped or loses its lock)",
            m.active.clone(),
        );
        r.register(
            "lock_lost",
            "Locks lost while held: expired, deleted or taken over, or not renewed before the local validity deadline",
            m.lost.clone(),
        );
        r.register(
            "lock_release_errors",
            "Lock releases that failed on a Redis error (the key then expires at its ttl)",
            m.release_errors.clone(),
        );
        m
    }

    /// Counts one acquisition's outcome.
    pub(crate) fn outcome(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].inc();
    }

    pub(crate) fn stats(&self) -> LockStats {
        LockStats {
            acquired: self.outcomes[Outcome::Acquired as usize].get(),
            busy: self.outcomes[Outcome::Busy as usize].get(),
            timeouts: self.outcomes[Outcome::Timeout as usize].get(),
            errors: self.outcomes[Outcome::Error as usize].get(),
            lost: self.lost.get(),
            release_errors: self.release_errors.get(),
            active: self.active.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn the_metrics_are_exported_under_their_names() {
        let registry: SharedRegistry = Arc::new(Mutex::new(Registry::default()));
        let m = LockMetrics::register(&registry);
        m.outcome(Outcome::Acquired);
        m.outcome(Outcome::Timeout);
        m.active.inc();
        m.lost.inc();
        m.wait.observe(0.002);
        m.hold.observe(1.5);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry.lock().unwrap()).unwrap();
        for line in [
            "redisx_lock_acquisitions_total{status=\"acquired\"} 1",
            "redisx_lock_acquisitions_total{status=\"timeout\"} 1",
            "redisx_lock_acquisitions_total{status=\"busy\"} 0",
            "redisx_locks_active 1",
            "redisx_lock_lost_total 1",
            "redisx_lock_wait_duration_seconds_count 1",
            "redisx_lock_hold_duration_seconds_count 1",
            "redisx_lock_release_errors_total 0",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        let s = m.stats();
        assert_eq!((s.acquired, s.timeouts, s.lost, s.active), (1, 1, 1, 1));
    }
}
