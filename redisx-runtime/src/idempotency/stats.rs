//! What the idempotency plugin counts: [`IdempotencyStats`], its Prometheus metrics (registered
//! by the plugin in the runtime's registry) and its span (`idempotency.check`, target
//! `redisx::idempotency`, with the field `idempotency.outcome`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `redisx_idempotency_requests_total` | counter | `status` (`new` / `replay` / `takeover` / `mismatch` / `in_progress` / `previous_failed` / `error` / `fail_open`) |
//! | `redisx_idempotency_duration_seconds` | histogram | |
//! | `redisx_idempotency_wait_seconds` | histogram | |
//! | `redisx_idempotency_store_failures_total` | counter | |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::SharedRegistry;

/// The buckets of both histograms: 1 ms to 60 s.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0,
];

/// Counters of one runtime's idempotent calls, as returned by
/// [`Idempotency::stats`](super::Idempotency::stats).
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) {
/// let s = rx.idempotency().stats();
/// println!("{} ran, {} replayed, {} taken over", s.new, s.replayed, s.takeovers);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdempotencyStats {
    /// Calls that claimed a fresh key and ran.
    pub new: u64,
    /// Calls answered with a recorded result.
    pub replayed: u64,
    /// Calls that took a claim over from an owner whose lease ran out, and ran.
    pub takeovers: u64,
    /// Calls refused for another fingerprint.
    pub mismatches: u64,
    /// Duplicates that gave up waiting (`IDEMPOTENCY_IN_PROGRESS`).
    pub in_progress: u64,
    /// Duplicates refused after a failed attempt (`IDEMPOTENCY_PREVIOUS_FAILED`).
    pub previous_failed: u64,
    /// Checks that failed on a Redis error and failed closed.
    pub errors: u64,
    /// Checks that failed on a Redis error and ran unprotected ([`ErrorPolicy::FailOpen`]).
    ///
    /// [`ErrorPolicy::FailOpen`]: crate::rate_limit::ErrorPolicy::FailOpen
    pub fail_open: u64,
    /// Completions that could not be stored after the body ran (the caller got its result).
    pub store_failures: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// How a check ended (`status` of `redisx_idempotency_requests_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    New,
    Replay,
    Takeover,
    Mismatch,
    InProgress,
    PreviousFailed,
    Error,
    FailOpen,
}

impl Outcome {
    pub(crate) const ALL: [Self; 8] = [
        Self::New,
        Self::Replay,
        Self::Takeover,
        Self::Mismatch,
        Self::InProgress,
        Self::PreviousFailed,
        Self::Error,
        Self::FailOpen,
    ];

    /// Its label, also the span's `idempotency.outcome`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Replay => "replay",
            Self::Takeover => "takeover",
            Self::Mismatch => "mismatch",
            Self::InProgress => "in_progress",
            Self::PreviousFailed => "previous_failed",
            Self::Error => "error",
            Self::FailOpen => "fail_open",
        }
    }
}

/// The plugin's metric handles.
pub(crate) struct IdempotencyMetrics {
    outcomes: [Counter; 8],
    pub(crate) duration: Histogram,
    pub(crate) wait: Histogram,
    pub(crate) store_failures: Counter,
}

impl IdempotencyMetrics {
    /// Registers the metrics in `registry`, under `redisx_`.
    pub(crate) fn register(registry: &SharedRegistry) -> Self {
        let requests = Family::<StatusLabels, Counter>::default();
        let m = Self {
            outcomes: Outcome::ALL
                .map(|o| requests.get_or_create_owned(&StatusLabels { status: o.as_str() })),
            duration: Histogram::new(BUCKETS),
            wait: Histogram::new(BUCKETS),
            store_failures: Counter::default(),
        };
        let mut reg = registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let r = reg.sub_registry_with_prefix("redisx");
        r.register(
            "idempotency_requests",
            "Idempotent calls, by outcome (new, replay, takeover of a dead owner's claim, mismatch, in_progress: gave up waiting, previous_failed, error: Redis failed and the call failed closed, fail_open: ran unprotected)",
            requests,
        );
        r.register(
            "idempotency_duration_seconds",
            "Time from a claim to its completion or failure (the body under the claim, and the store)",
            m.duration.clone(),
        );
        r.register(
            "idempotency_wait_seconds",
            "Time duplicates waited for the first call, whatever the outcome",
            m.wait.clone(),
        );
        r.register(
            "idempotency_store_failures",
            "Completions that could not be stored after the body ran (the caller still got its result)",
            m.store_failures.clone(),
        );
        m
    }

    /// Counts one call's outcome.
    pub(crate) fn outcome(&self, o: Outcome) {
        self.outcomes[o as usize].inc();
    }

    pub(crate) fn stats(&self) -> IdempotencyStats {
        let n = |o: Outcome| self.outcomes[o as usize].get();
        IdempotencyStats {
            new: n(Outcome::New),
            replayed: n(Outcome::Replay),
            takeovers: n(Outcome::Takeover),
            mismatches: n(Outcome::Mismatch),
            in_progress: n(Outcome::InProgress),
            previous_failed: n(Outcome::PreviousFailed),
            errors: n(Outcome::Error),
            fail_open: n(Outcome::FailOpen),
            store_failures: self.store_failures.get(),
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
        let m = IdempotencyMetrics::register(&registry);
        m.outcome(Outcome::New);
        m.outcome(Outcome::Replay);
        m.outcome(Outcome::Replay);
        m.wait.observe(0.01);
        m.duration.observe(0.02);
        m.store_failures.inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry.lock().unwrap()).unwrap();
        for line in [
            "redisx_idempotency_requests_total{status=\"new\"} 1",
            "redisx_idempotency_requests_total{status=\"replay\"} 2",
            "redisx_idempotency_requests_total{status=\"fail_open\"} 0",
            "redisx_idempotency_wait_seconds_count 1",
            "redisx_idempotency_duration_seconds_count 1",
            "redisx_idempotency_store_failures_total 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        let s = m.stats();
        assert_eq!((s.new, s.replayed, s.store_failures), (1, 2, 1));
    }
}
