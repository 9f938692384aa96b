//! What the rate limiter counts: its Prometheus metric (registered by the plugin in the
//! runtime's registry) and its span (`ratelimit.check`, target `redisx::rate_limit`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `redisx_ratelimit_requests_total` | counter | `algorithm`, `status` (`allowed` / `denied` / `local_deny` / `error`) |
//!
//! Checks are counted (peeks and state reads are not), under the deciding limit's algorithm:
//! the denying one, else the one with the fewest points left; a failed check under its first
//! limit's.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::config::Algorithm;
use crate::metrics::SharedRegistry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    algorithm: &'static str,
    status: &'static str,
}

/// How a check ended (`status` of `redisx_ratelimit_requests_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Allowed,
    Denied,
    LocalDeny,
    Error,
}

const STATUSES: [&str; 4] = ["allowed", "denied", "local_deny", "error"];

/// The rate limiter's metric handles, one per algorithm and status.
pub(crate) struct RateLimitMetrics {
    requests: [[Counter; 4]; 5],
}

impl RateLimitMetrics {
    /// Registers the metric in `registry`, under `redisx_`.
    pub(crate) fn register(registry: &SharedRegistry) -> Self {
        let family = Family::<Labels, Counter>::default();
        let requests = Algorithm::ALL.map(|a| {
            STATUSES.map(|status| {
                family.get_or_create_owned(&Labels {
                    algorithm: a.as_str(),
                    status,
                })
            })
        });
        let mut reg = registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        reg.sub_registry_with_prefix("redisx").register(
            "ratelimit_requests",
            "Rate limit checks, by algorithm (of the deciding limit) and outcome (allowed, denied, local_deny: denied in process without a round trip, error: Redis failed)",
            family,
        );
        Self { requests }
    }

    /// Counts one check.
    pub(crate) fn count(&self, algorithm: Algorithm, status: Status) {
        let a = Algorithm::ALL
            .iter()
            .position(|x| *x == algorithm)
            .unwrap_or(0);
        self.requests[a][status as usize].inc();
    }
}
