//! Configuration of the lock plugin ([`LockConfig`]), per-call options ([`LockOptions`]) and
//! the retry strategies; the only owner of the plugin's defaults and limits.

use std::time::Duration;

use crate::error::{Error, ErrorCode, Result};
use crate::key;

/// How long to sleep between two attempts to take a busy lock.
///
/// The delay after the `n`-th failed attempt (`n` from 1) is the strategy's value for `n`; with
/// full jitter (on by default, [`LockConfig::jitter`]) the sleep is drawn uniformly between zero
/// and that value, so contenders that failed together do not retry together.
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::lock::RetryStrategy;
///
/// let ms = Duration::from_millis;
/// let exp = RetryStrategy::Exponential(ms(100), ms(3000));
/// assert_eq!(exp.delay(1), ms(100));
/// assert_eq!(exp.delay(3), ms(400));
/// assert_eq!(exp.delay(20), ms(3000)); // capped
/// assert_eq!(RetryStrategy::Linear(ms(50), ms(120)).delay(2), ms(100));
/// assert_eq!(RetryStrategy::Fixed(ms(5)).delay(9), ms(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryStrategy {
    /// The same delay after every attempt.
    Fixed(Duration),
    /// `step × n` after the `n`-th attempt, at most the second value.
    Linear(Duration, Duration),
    /// The first value, doubled after every attempt, at most the second value.
    Exponential(Duration, Duration),
}

impl Default for RetryStrategy {
    /// 100 ms, doubling, capped at 3 s.
    fn default() -> Self {
        Self::Exponential(Duration::from_millis(100), Duration::from_secs(3))
    }
}

impl RetryStrategy {
    /// The delay (before jitter) after the `attempt`-th failed attempt, counted from 1.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::lock::RetryStrategy;
    /// assert_eq!(RetryStrategy::default().delay(2), Duration::from_millis(200));
    /// ```
    pub fn delay(&self, attempt: u32) -> Duration {
        let n = attempt.max(1);
        match *self {
            Self::Fixed(d) => d,
            Self::Linear(step, max) => step.saturating_mul(n).min(max),
            Self::Exponential(initial, max) => {
                let factor = 1u32.checked_shl(n - 1).unwrap_or(u32::MAX);
                initial.saturating_mul(factor).min(max)
            }
        }
    }

    /// The longest the sleeps after attempts `after + 1 ..= last` can take together (jitter
    /// only shortens them): how long a caller that has slept `after` times may still wait.
    pub(crate) fn remaining(&self, after: u32, last: u32) -> Duration {
        // Exact for the first steps; past them every delay is at most the cap.
        const EXACT: u32 = 64;
        let cap = match *self {
            Self::Fixed(d) => d,
            Self::Linear(_, max) | Self::Exponential(_, max) => max,
        };
        let first = after.saturating_add(1);
        let exact_last = last.min(after.saturating_add(EXACT));
        let exact =
            (first..=exact_last).fold(Duration::ZERO, |acc, n| acc.saturating_add(self.delay(n)));
        exact.saturating_add(cap.saturating_mul(last.saturating_sub(exact_last)))
    }

    /// How many of the sleeps after attempts `after + 1 ..= last` fit, unjittered, in
    /// `elapsed`: the retries a caller spent waiting that long in line.
    pub(crate) fn spent(&self, after: u32, last: u32, elapsed: Duration) -> u32 {
        if let Self::Fixed(d) = *self {
            let n = if d.is_zero() {
                u128::MAX
            } else {
                elapsed.as_nanos() / d.as_nanos()
            };
            return u32::try_from(n)
                .unwrap_or(u32::MAX)
                .min(last.saturating_sub(after));
        }
        let mut acc = Duration::ZERO;
        let mut n = 0;
        while after + n < last {
            acc = acc.saturating_add(self.delay(after + n + 1));
            if acc > elapsed {
                break;
            }
            n += 1;
        }
        n
    }

    /// The sleep before the next attempt: [`delay`](Self::delay), or with `jitter` a uniform
    /// draw between zero and it.
    pub(crate) fn sleep(&self, attempt: u32, jitter: bool) -> Duration {
        let d = self.delay(attempt);
        if !jitter || d.is_zero() {
            return d;
        }
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::random_range(0..=nanos))
    }
}

/// The shortest lock ttl accepted: a renewal every third of it must have time to answer.
///
/// ```
/// use redisx_runtime::lock::MIN_TTL;
/// assert_eq!(MIN_TTL, std::time::Duration::from_millis(10));
/// ```
pub const MIN_TTL: Duration = Duration::from_millis(10);

/// Configuration of the lock plugin (`rx.locks()`), set on the builder with
/// [`RedisXBuilder::locks`](crate::RedisXBuilder::locks). Every option is set by a method of
/// its name and read back with `_value`. With the `serde` feature it also loads from a config
/// file's table, by the same names (see its `Deserialize` impl).
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::lock::{LockConfig, RetryStrategy};
///
/// let cfg = LockConfig::default()
///     .default_ttl(Duration::from_secs(10))
///     .retry(RetryStrategy::Fixed(Duration::from_millis(50)))
///     .retries(20);
/// assert_eq!(cfg.default_ttl_value(), Duration::from_secs(10));
/// assert_eq!(cfg.max_ttl_value(), Duration::from_secs(300));
/// assert!(cfg.auto_renew_value());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockConfig {
    pub(crate) default_ttl: Duration,
    pub(crate) max_ttl: Duration,
    pub(crate) key_prefix: String,
    pub(crate) client: Option<String>,
    pub(crate) retry: RetryStrategy,
    pub(crate) jitter: bool,
    pub(crate) retries: u32,
    pub(crate) wait: Option<Duration>,
    pub(crate) auto_renew: bool,
    pub(crate) max_key_len: usize,
}

impl Default for LockConfig {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(300),
            key_prefix: "lock:".to_owned(),
            client: None,
            retry: RetryStrategy::default(),
            jitter: true,
            retries: 3,
            wait: None,
            auto_renew: true,
            max_key_len: key::MAX_KEY_LEN,
        }
    }
}

impl LockConfig {
    /// The ttl of a lock whose call gives none (default 30 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::lock::LockConfig;
    /// let _cfg = LockConfig::default().default_ttl(Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The largest ttl accepted (default 300 s): a larger one, in the config or in a call, is
    /// an [`ErrorCode::ConfigInvalid`] error naming both values, never a silent clamp.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::lock::LockConfig;
    /// let _cfg = LockConfig::default().max_ttl(Duration::from_secs(3600));
    /// ```
    #[must_use]
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }

    /// The prefix of lock keys after the app prefix (default `lock:`): a lock on `order:7` is
    /// the key `{app prefix}lock:{order:7}`.
    ///
    /// ```
    /// # use redisx_runtime::lock::LockConfig;
    /// let cfg = LockConfig::default().key_prefix("mutex:");
    /// assert_eq!(cfg.key_prefix_value(), "mutex:");
    /// ```
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The client the locks use, by name (default: the runtime's default client).
    ///
    /// ```
    /// # use redisx_runtime::lock::LockConfig;
    /// let _cfg = LockConfig::default().client("coordination");
    /// ```
    #[must_use]
    pub fn client(mut self, name: impl Into<String>) -> Self {
        self.client = Some(name.into());
        self
    }

    /// How long to sleep between attempts (default [`RetryStrategy::default`]: 100 ms doubling,
    /// capped at 3 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::lock::{LockConfig, RetryStrategy};
    /// let _cfg = LockConfig::default().retry(RetryStrategy::Linear(
    ///     Duration::from_millis(20),
    ///     Duration::from_millis(500),
    /// ));
    /// ```
    #[must_use]
    pub fn retry(mut self, strategy: RetryStrategy) -> Self {
        self.retry = strategy;
        self
    }

    /// Full jitter on the retry sleeps (default on): each sleep is drawn between zero and the
    /// strategy's delay.
    ///
    /// ```
    /// # use redisx_runtime::lock::LockConfig;
    /// let _cfg = LockConfig::default().jitter(false);
    /// ```
    #[must_use]
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// How many times a busy lock is tried again after the first attempt (default 3, so four
    /// attempts), unless a [`wait`](Self::wait) budget is set.
    ///
    /// ```
    /// # use redisx_runtime::lock::LockConfig;
    /// let _cfg = LockConfig::default().retries(10);
    /// ```
    #[must_use]
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// A time budget instead of a retry count (default none): attempts go on until the budget
    /// is spent, and stop before a sleep would pass it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::lock::LockConfig;
    /// let _cfg = LockConfig::default().wait(Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn wait(mut self, budget: Duration) -> Self {
        self.wait = Some(budget);
        self
    }

    /// Renews held locks in the background every third of their ttl (default on).
    ///
    /// ```
    /// # use redisx_runtime::lock::LockConfig;
    /// let _cfg = LockConfig::default().auto_renew(false);
    /// ```
    #[must_use]
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = on;
        self
    }

    /// The longest lock key, in bytes (default [`key::MAX_KEY_LEN`]).
    ///
    /// ```
    /// # use redisx_runtime::lock::LockConfig;
    /// let _cfg = LockConfig::default().max_key_len(256);
    /// ```
    #[must_use]
    pub fn max_key_len(mut self, len: usize) -> Self {
        self.max_key_len = len;
        self
    }

    /// See [`default_ttl`](Self::default_ttl).
    pub fn default_ttl_value(&self) -> Duration {
        self.default_ttl
    }

    /// See [`max_ttl`](Self::max_ttl).
    pub fn max_ttl_value(&self) -> Duration {
        self.max_ttl
    }

    /// See [`key_prefix`](Self::key_prefix).
    pub fn key_prefix_value(&self) -> &str {
        &self.key_prefix
    }

    /// See [`client`](Self::client).
    pub fn client_value(&self) -> Option<&str> {
        self.client.as_deref()
    }

    /// See [`retry`](Self::retry).
    pub fn retry_value(&self) -> RetryStrategy {
        self.retry
    }

    /// See [`jitter`](Self::jitter).
    pub fn jitter_value(&self) -> bool {
        self.jitter
    }

    /// See [`retries`](Self::retries).
    pub fn retries_value(&self) -> u32 {
        self.retries
    }

    /// See [`wait`](Self::wait).
    pub fn wait_value(&self) -> Option<Duration> {
        self.wait
    }

    /// See [`auto_renew`](Self::auto_renew).
    pub fn auto_renew_value(&self) -> bool {
        self.auto_renew
    }

    /// See [`max_key_len`](Self::max_key_len).
    pub fn max_key_len_value(&self) -> usize {
        self.max_key_len
    }

    /// Checks the settings: ttls within bounds, a valid prefix.
    pub(crate) fn validate(&self) -> Result<()> {
        key::validate_prefix(&self.key_prefix)?;
        if self.max_ttl < MIN_TTL {
            return Err(invalid(format!(
                "the lock max_ttl of {:?} is below the minimum ttl of {MIN_TTL:?}",
                self.max_ttl
            )));
        }
        self.check_ttl(self.default_ttl, "default_ttl")?;
        if let RetryStrategy::Linear(_, max) | RetryStrategy::Exponential(_, max) = self.retry
            && max.is_zero()
        {
            return Err(invalid(
                "the lock retry strategy's maximum delay is zero".to_owned(),
            ));
        }
        Ok(())
    }

    /// Checks one ttl against [`MIN_TTL`] and the max ttl; `what` names it in the error.
    fn check_ttl(&self, ttl: Duration, what: &str) -> Result<()> {
        if ttl > self.max_ttl {
            return Err(invalid(format!(
                "the lock {what} of {ttl:?} is over the max_ttl of {:?} (raise `LockConfig::max_ttl` or lower the ttl)",
                self.max_ttl
            )));
        }
        if ttl < MIN_TTL {
            return Err(invalid(format!(
                "the lock {what} of {ttl:?} is below the minimum of {MIN_TTL:?}"
            )));
        }
        Ok(())
    }

    /// One call's settings: `opts` over the config, checked.
    pub(crate) fn resolve(&self, opts: &LockOptions) -> Result<Resolved> {
        let ttl = opts.ttl.unwrap_or(self.default_ttl);
        self.check_ttl(ttl, "ttl")?;
        Ok(Resolved {
            ttl,
            retry: opts.retry.unwrap_or(self.retry),
            jitter: opts.jitter.unwrap_or(self.jitter),
            retries: opts.retries.unwrap_or(self.retries),
            wait: opts.wait.or(self.wait),
            auto_renew: opts.auto_renew.unwrap_or(self.auto_renew),
        })
    }
}

fn invalid(msg: String) -> Error {
    Error::new(ErrorCode::ConfigInvalid, msg)
}

/// Options of one `acquire`: each one left unset takes the [`LockConfig`]'s value.
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::lock::{LockOptions, RetryStrategy};
///
/// let opts = LockOptions::new()
///     .ttl(Duration::from_secs(10))
///     .wait(Duration::from_secs(2))
///     .retry(RetryStrategy::Fixed(Duration::from_millis(20)));
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct LockOptions {
    pub(crate) ttl: Option<Duration>,
    pub(crate) wait: Option<Duration>,
    pub(crate) retries: Option<u32>,
    pub(crate) retry: Option<RetryStrategy>,
    pub(crate) jitter: Option<bool>,
    pub(crate) auto_renew: Option<bool>,
}

impl LockOptions {
    /// Every option from the [`LockConfig`].
    ///
    /// ```
    /// # use redisx_runtime::lock::LockOptions;
    /// assert_eq!(LockOptions::new(), LockOptions::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The lock's ttl (at most the config's max ttl).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::lock::LockOptions;
    /// let _opts = LockOptions::new().ttl(Duration::from_secs(5));
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// A wait budget: attempts go on until it is spent (the retry count is then not used).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::lock::LockOptions;
    /// let _opts = LockOptions::new().wait(Duration::from_secs(2));
    /// ```
    pub fn wait(mut self, budget: Duration) -> Self {
        self.wait = Some(budget);
        self
    }

    /// How many times to try again after the first attempt (when no wait budget is set).
    ///
    /// ```
    /// # use redisx_runtime::lock::LockOptions;
    /// let _opts = LockOptions::new().retries(0); // one attempt, then LOCK_ACQUISITION_TIMEOUT
    /// ```
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    /// The delays between attempts.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::lock::{LockOptions, RetryStrategy};
    /// let _opts = LockOptions::new().retry(RetryStrategy::Fixed(Duration::from_millis(10)));
    /// ```
    pub fn retry(mut self, strategy: RetryStrategy) -> Self {
        self.retry = Some(strategy);
        self
    }

    /// Full jitter on the retry sleeps.
    ///
    /// ```
    /// # use redisx_runtime::lock::LockOptions;
    /// let _opts = LockOptions::new().jitter(false); // sleep the strategy's delays exactly
    /// ```
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = Some(on);
        self
    }

    /// Renews the lock in the background every third of its ttl.
    ///
    /// ```
    /// # use redisx_runtime::lock::LockOptions;
    /// // Held for at most its ttl; `lost()` fires when that runs out.
    /// let _opts = LockOptions::new().auto_renew(false);
    /// ```
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = Some(on);
        self
    }
}

/// One call's settings, resolved against the config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolved {
    pub(crate) ttl: Duration,
    pub(crate) retry: RetryStrategy,
    pub(crate) jitter: bool,
    pub(crate) retries: u32,
    pub(crate) wait: Option<Duration>,
    pub(crate) auto_renew: bool,
}

/// The safety margin taken off a lock's ttl for its local validity deadline: a tenth of the
/// ttl, at most one second (for clock drift between this process and Redis, and the time a
/// reply takes to be read).
pub(crate) fn safety_margin(ttl: Duration) -> Duration {
    (ttl / 10).min(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_ttl_over_the_max_names_both_values() {
        let cfg = LockConfig::default();
        let err = cfg
            .resolve(&LockOptions::new().ttl(Duration::from_secs(301)))
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConfigInvalid);
        assert!(err.message().contains("301s"), "{err}");
        assert!(err.message().contains("300s"), "{err}");
        let err = LockConfig::default()
            .default_ttl(Duration::from_secs(400))
            .validate()
            .unwrap_err();
        assert!(err.message().contains("400s") && err.message().contains("300s"));
        assert!(cfg.resolve(&LockOptions::new().ttl(MS(1))).is_err());
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn options_override_the_config() {
        let cfg = LockConfig::default().wait(MS(500)).retries(7);
        let r = cfg.resolve(&LockOptions::new()).unwrap();
        assert_eq!(r.ttl, Duration::from_secs(30));
        assert_eq!(
            (r.wait, r.retries, r.auto_renew, r.jitter),
            (Some(MS(500)), 7, true, true)
        );
        let r = cfg
            .resolve(
                &LockOptions::new()
                    .wait(MS(9))
                    .auto_renew(false)
                    .jitter(false),
            )
            .unwrap();
        assert_eq!(
            (r.wait, r.auto_renew, r.jitter),
            (Some(MS(9)), false, false)
        );
    }

    #[test]
    fn the_time_left_and_the_retries_spent_in_line_follow_the_schedule() {
        let exp = RetryStrategy::Exponential(MS(100), MS(400));
        // 100 + 200 + 400 + 400 after none slept; 400 + 400 after two.
        assert_eq!(exp.remaining(0, 4), MS(1100));
        assert_eq!(exp.remaining(2, 4), MS(800));
        assert_eq!(exp.remaining(4, 4), Duration::ZERO);
        assert_eq!(exp.remaining(0, 1000), MS(300 + 400 * 998));
        assert_eq!(exp.spent(0, 4, MS(299)), 1);
        assert_eq!(exp.spent(0, 4, MS(300)), 2);
        assert_eq!(exp.spent(0, 4, MS(10_000)), 4);
        assert_eq!(exp.spent(2, 4, MS(500)), 1);
        let fixed = RetryStrategy::Fixed(MS(50));
        assert_eq!(fixed.remaining(1, 3), MS(100));
        assert_eq!(fixed.spent(0, 3, MS(120)), 2);
        assert_eq!(fixed.spent(0, 3, MS(1000)), 3);
        assert_eq!(RetryStrategy::Fixed(Duration::ZERO).spent(0, 3, MS(1)), 3);
    }

    #[test]
    fn delays_follow_the_strategy_and_jitter_stays_below_them() {
        let exp = RetryStrategy::default();
        let delays: Vec<_> = (1..=7).map(|n| exp.delay(n)).collect();
        assert_eq!(
            delays,
            [
                MS(100),
                MS(200),
                MS(400),
                MS(800),
                MS(1600),
                MS(3000),
                MS(3000)
            ]
        );
        assert_eq!(exp.delay(u32::MAX), MS(3000));
        let lin = RetryStrategy::Linear(MS(10), MS(25));
        assert_eq!(
            [lin.delay(1), lin.delay(2), lin.delay(3)],
            [MS(10), MS(20), MS(25)]
        );
        for n in 1..50 {
            assert!(exp.sleep(n, true) <= exp.delay(n));
            assert_eq!(exp.sleep(n, false), exp.delay(n));
        }
    }
}
