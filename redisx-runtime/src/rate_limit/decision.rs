//! [`Decision`]: what a check answers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The answer of a check, a peek or a state read.
///
/// `current` is the points consumed (`limit - remaining`) for every algorithm; `reset` is when
/// the quota is whole again; `retry_after` is the wait before the checked cost can be admitted
/// (zero when allowed). For GCRA, `limit` is the burst.
///
/// ```no_run
/// use std::time::Duration;
/// use redisx_runtime::rate_limit::Limit;
///
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// let d = rx
///     .rate_limiter()
///     .check("ip:10.0.0.1", &Limit::fixed_window(10, Duration::from_secs(1)))
///     .await?;
/// if d.allowed {
///     println!("{} of {} left", d.remaining, d.limit);
/// } else {
///     println!("denied; retry in {} s", d.retry_after_secs());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the cost was admitted (for a peek: whether it would be).
    pub allowed: bool,
    /// The points per window (GCRA: the burst).
    pub limit: u64,
    /// The points left after this check.
    pub remaining: u64,
    /// The points consumed: `limit - remaining`.
    pub current: u64,
    /// When the quota is whole again.
    pub reset: SystemTime,
    /// The wait before the checked cost can be admitted; zero when allowed.
    pub retry_after: Duration,
    /// Answered in process from the local deny cache, without a round trip.
    pub local: bool,
}

impl Decision {
    pub(crate) fn new(
        allowed: bool,
        limit: u64,
        remaining: u64,
        reset: SystemTime,
        retry_after: Duration,
    ) -> Self {
        let remaining = remaining.min(limit);
        Self {
            allowed,
            limit,
            remaining,
            current: limit - remaining,
            reset,
            retry_after,
            local: false,
        }
    }

    /// The answer of a fail-open check: allowed, the whole quota left.
    pub(crate) fn open(limit: u64) -> Self {
        Self::new(true, limit, limit, SystemTime::now(), Duration::ZERO)
    }

    /// `retry_after` in whole seconds, rounded up (the `Retry-After` header's value).
    ///
    /// ```
    /// # use redisx_runtime::rate_limit::Decision;
    /// # #[allow(dead_code)]
    /// # fn demo(d: Decision) {
    /// let secs = d.retry_after_secs(); // 1.2 s -> 2
    /// # let _ = secs;
    /// # }
    /// ```
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }

    /// `reset` as unix seconds, rounded up (the `X-RateLimit-Reset` header's value).
    pub fn reset_unix_secs(&self) -> u64 {
        let d = self.reset.duration_since(UNIX_EPOCH).unwrap_or_default();
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }
}
