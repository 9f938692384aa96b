//! Configuration of the lock plugin ([`LockConfig`]) and per-call options ([`LockOptions`]);
//! the only owner of the plugin's defaults and limits (the retry strategies are in `retry`).

use std::time::Duration;

use super::retry::RetryStrategy;
use crate::error::{Error, ErrorCode, Result};
use crate::key;

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
            wait_replicas: opts.wait_replicas.filter(|(n, _)| *n > 0),
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
    pub(crate) wait_replicas: Option<(u32, Duration)>,
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

    /// Waits, after a successful acquire, until `replicas` replicas of the lock's master have
    /// the lock (`WAIT replicas timeout` on the connection that wrote it); when fewer
    /// acknowledge within `timeout`, the lock is released and the acquire fails with
    /// [`ErrorCode::LockAcquisitionFailed`](crate::ErrorCode::LockAcquisitionFailed) saying how many did. This narrows the window in
    /// which a failover (asynchronous replication) loses a fresh lock to a promoted replica
    /// that never saw it; it does not close it (`WAIT` does not make Redis a consensus
    /// store): the fencing token stays the real protection.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use redisx_runtime::lock::LockOptions;
    /// let _opts = LockOptions::new().wait_replicas(1, Duration::from_millis(100));
    /// ```
    pub fn wait_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait_replicas = Some((replicas, timeout));
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
    pub(crate) wait_replicas: Option<(u32, Duration)>,
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
}
