//! The connection driver and the reconnect backoff of a client.

use std::time::Duration;

/// The connection driver of a client.
///
/// Both drivers pass the same integration tests; they differ in cost:
///
/// * [`DriverKind::Multiplexed`] (the default): one shared, pipelined connection per client,
///   re-established in the background with exponential backoff when it drops. While it is down,
///   commands fail at once with
///   [`ErrorCode::ConnectionClosed`](crate::ErrorCode::ConnectionClosed) instead of queueing.
/// * `DriverKind::Pool` (feature `pool`, on by default): a `deadpool-redis` pool. Every checkout sends `UNWATCH` + `PING`
///   (a second round trip per call, about 7× lower throughput on loopback), so use it only when
///   you need connection-level isolation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriverKind {
    /// One multiplexed auto-reconnecting connection (default).
    Multiplexed,
    /// A deadpool-redis pool of up to `max_size` connections (feature `pool`).
    #[cfg(feature = "pool")]
    Pool {
        /// The largest number of connections the pool opens.
        max_size: usize,
    },
}

/// Reconnect backoff: `initial`, multiplied by `factor` after every failed attempt, capped at
/// `max`, with up to 50 % random jitter subtracted so instances do not reconnect in lockstep.
///
/// The default is 1 s doubling to 30 s, with jitter, forever. Each option is set by a method
/// of its name and read back with `_value`.
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::ReconnectPolicy;
/// let p = ReconnectPolicy::default();
/// assert_eq!(p.initial_value(), Duration::from_secs(1));
/// assert_eq!(p.delay(0, 1.0), Duration::from_secs(1));
/// assert_eq!(p.delay(3, 1.0), Duration::from_secs(8));
/// assert_eq!(p.delay(10, 1.0), Duration::from_secs(30));
///
/// let fast = ReconnectPolicy::default()
///     .initial(Duration::from_millis(50))
///     .max(Duration::from_millis(200));
/// assert_eq!(fast.delay(5, 1.0), Duration::from_millis(200));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ReconnectPolicy {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
    pub(crate) factor: f64,
    pub(crate) jitter: bool,
}

impl ReconnectPolicy {
    /// The delay before the first reconnect attempt (default 1 s).
    #[must_use]
    pub fn initial(mut self, delay: Duration) -> Self {
        self.initial = delay;
        self
    }

    /// The longest delay between attempts (default 30 s).
    #[must_use]
    pub fn max(mut self, delay: Duration) -> Self {
        self.max = delay;
        self
    }

    /// The factor applied after every failed attempt (default 2; below 1 counts as 1).
    #[must_use]
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// Whether to randomise each delay, between 50 % and 100 % of it (default on).
    #[must_use]
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// The delay before the first reconnect attempt.
    pub fn initial_value(&self) -> Duration {
        self.initial
    }

    /// The longest delay between attempts.
    pub fn max_value(&self) -> Duration {
        self.max
    }

    /// The factor applied after every failed attempt.
    pub fn factor_value(&self) -> f64 {
        self.factor
    }

    /// Whether each delay is randomised.
    pub fn jitter_value(&self) -> bool {
        self.jitter
    }
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: true,
        }
    }
}

impl ReconnectPolicy {
    /// The delay before attempt number `attempt` (0-based), given a jitter sample in `[0, 1]`
    /// (`1.0` = no reduction). Without `jitter` the sample is ignored.
    pub fn delay(&self, attempt: u32, jitter_sample: f64) -> Duration {
        let exp = i32::try_from(attempt.min(64)).unwrap_or(64);
        let base = self.initial.as_secs_f64() * self.factor.max(1.0).powi(exp);
        let capped = base.min(self.max.as_secs_f64());
        let factor = if self.jitter {
            0.5 + 0.5 * jitter_sample.clamp(0.0, 1.0)
        } else {
            1.0
        };
        Duration::from_secs_f64(capped * factor)
    }
}
