//! Configuration of the idempotency plugin ([`IdempotencyConfig`]) and the options of one call
//! ([`IdempotencyOptions`]); the only owner of the plugin's defaults and limits.

use std::time::Duration;

use crate::error::{Error, ErrorCode, Result};
use crate::key;
use crate::rate_limit::ErrorPolicy;

/// Configuration of the idempotency plugin (`rx.idempotency()`), set on the builder with
/// [`RedisXBuilder::idempotency`](crate::RedisXBuilder::idempotency).
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::idempotency::IdempotencyConfig;
/// use redisx_runtime::rate_limit::ErrorPolicy;
///
/// let cfg = IdempotencyConfig::default()
///     .ttl(Duration::from_secs(48 * 3600))
///     .lock_ttl(Duration::from_secs(10))
///     .wait(Duration::from_secs(20))
///     .error_policy(ErrorPolicy::FailClosed);
/// assert_eq!(cfg.lock_ttl_value(), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct IdempotencyConfig {
    pub(crate) key_prefix: String,
    pub(crate) client: Option<String>,
    pub(crate) ttl: Duration,
    pub(crate) lock_ttl: Duration,
    pub(crate) wait: Duration,
    pub(crate) error_policy: ErrorPolicy,
    pub(crate) recheck: Duration,
    pub(crate) store_attempts: u32,
    pub(crate) max_key_len: usize,
}

impl Default for IdempotencyConfig {
    /// Records kept 24 h; a claim's lease 30 s (renewed while the body runs); duplicates wait
    /// up to 60 s; fail closed; waiting duplicates re-read the record
    /// every second when no completion message came; a completion stored with up to 3
    /// attempts; keys under `idem:`, up to 1,024 bytes.
    fn default() -> Self {
        Self {
            key_prefix: "idem:".to_owned(),
            client: None,
            ttl: Duration::from_secs(24 * 3600),
            lock_ttl: Duration::from_secs(30),
            wait: Duration::from_secs(60),
            error_policy: ErrorPolicy::FailClosed,
            recheck: Duration::from_secs(1),
            store_attempts: 3,
            max_key_len: 1024,
        }
    }
}

impl IdempotencyConfig {
    /// How long a completed record (and so its replay) is kept (default 24 h).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The lease of a claim (default 30 s): renewed every third of it while the body runs, so
    /// only an owner that died (or cannot reach Redis for that long) is taken over. Also how
    /// long a failed record refuses duplicates (`IDEMPOTENCY_PREVIOUS_FAILED`) before a retry
    /// may run.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// How long a duplicate waits for the first call to finish (default 60 s), then
    /// `IDEMPOTENCY_IN_PROGRESS`.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// What a call does when Redis fails (default [`ErrorPolicy::FailClosed`]: the error,
    /// and the body does not run). [`ErrorPolicy::FailOpen`] runs the body unprotected, logged
    /// and counted (`status = "fail_open"`).
    pub fn error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.error_policy = policy;
        self
    }

    /// How often a waiting duplicate re-reads the record when no completion message arrived
    /// (default 1 s): the bound on a lost message. One read per key and process, whatever the
    /// number of waiters.
    pub fn recheck(mut self, every: Duration) -> Self {
        self.recheck = every;
        self
    }

    /// How many times a completion is sent before giving up (default 3, with 50 ms, 100 ms,
    /// ... between them). Past them the caller still gets its result (the effect happened),
    /// the failure is logged and counted, and duplicates see the claim until its lease runs
    /// out; then one of them runs the body again.
    pub fn store_attempts(mut self, attempts: u32) -> Self {
        self.store_attempts = attempts;
        self
    }

    /// The prefix of the record keys after the app prefix (default `idem:`).
    pub fn key_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.key_prefix);
        self
    }

    /// The client the plugin uses (default: the runtime's default client).
    pub fn client(mut self, name: &str) -> Self {
        self.client = Some(name.to_owned());
        self
    }

    /// The longest key accepted (default 1,024 bytes).
    pub fn max_key_len(mut self, bytes: usize) -> Self {
        self.max_key_len = bytes;
        self
    }

    /// See [`ttl`](Self::ttl).
    pub fn ttl_value(&self) -> Duration {
        self.ttl
    }

    /// See [`lock_ttl`](Self::lock_ttl).
    pub fn lock_ttl_value(&self) -> Duration {
        self.lock_ttl
    }

    /// See [`wait`](Self::wait).
    pub fn wait_value(&self) -> Duration {
        self.wait
    }

    /// See [`error_policy`](Self::error_policy).
    pub fn error_policy_value(&self) -> ErrorPolicy {
        self.error_policy
    }

    /// Checks the settings: every duration at least a millisecond, the prefix, the attempts.
    pub(crate) fn validate(&self) -> Result<()> {
        key::validate_prefix(&self.key_prefix)?;
        for (name, d) in [
            ("ttl", self.ttl),
            ("lock_ttl", self.lock_ttl),
            ("wait", self.wait),
            ("recheck", self.recheck),
        ] {
            check_duration(name, d)?;
        }
        if self.store_attempts == 0 {
            return Err(invalid(
                "the idempotency `store_attempts` is 0; at least one attempt stores a result"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

/// A duration setting must be at least a millisecond (Redis expiries are in milliseconds).
fn check_duration(name: &str, d: Duration) -> Result<()> {
    if d < Duration::from_millis(1) {
        return Err(invalid(format!(
            "the idempotency `{name}` is {d:?}; it must be at least 1 ms"
        )));
    }
    Ok(())
}

fn invalid(msg: String) -> Error {
    Error::new(ErrorCode::ConfigInvalid, msg)
}

/// The options of one call; each unset one is the config's.
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::idempotency::IdempotencyOptions;
///
/// let opts = IdempotencyOptions::new()
///     .ttl(Duration::from_secs(3600))
///     .lock_ttl(Duration::from_secs(5))
///     .wait(Duration::from_secs(10));
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct IdempotencyOptions {
    pub(crate) ttl: Option<Duration>,
    pub(crate) lock_ttl: Option<Duration>,
    pub(crate) wait: Option<Duration>,
}

impl IdempotencyOptions {
    /// Every option at the config's value.
    pub const fn new() -> Self {
        Self {
            ttl: None,
            lock_ttl: None,
            wait: None,
        }
    }

    /// See [`IdempotencyConfig::ttl`].
    pub const fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// See [`IdempotencyConfig::lock_ttl`].
    pub const fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = Some(ttl);
        self
    }

    /// See [`IdempotencyConfig::wait`].
    pub const fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }
}

/// The options of one call resolved against the config, checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolved {
    pub(crate) ttl: Duration,
    pub(crate) lock_ttl: Duration,
    pub(crate) wait: Duration,
}

impl IdempotencyConfig {
    /// `opts` over the config; a zero duration is a `CFG_INVALID` error.
    pub(crate) fn resolve(&self, opts: &IdempotencyOptions) -> Result<Resolved> {
        let r = Resolved {
            ttl: opts.ttl.unwrap_or(self.ttl),
            lock_ttl: opts.lock_ttl.unwrap_or(self.lock_ttl),
            wait: opts.wait.unwrap_or(self.wait),
        };
        if opts != &IdempotencyOptions::new() {
            check_duration("ttl", r.ttl)?;
            check_duration("lock_ttl", r.lock_ttl)?;
            check_duration("wait", r.wait)?;
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_durations_are_config_errors() {
        assert!(IdempotencyConfig::default().validate().is_ok());
        for cfg in [
            IdempotencyConfig::default().ttl(Duration::ZERO),
            IdempotencyConfig::default().lock_ttl(Duration::from_micros(10)),
            IdempotencyConfig::default().wait(Duration::ZERO),
            IdempotencyConfig::default().store_attempts(0),
            IdempotencyConfig::default().key_prefix("a\nb"),
        ] {
            let err = cfg.validate().unwrap_err();
            assert_eq!(err.code(), ErrorCode::ConfigInvalid, "{err}");
        }
        let err = IdempotencyConfig::default()
            .lock_ttl(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(err.message().contains("`lock_ttl`"), "{err}");
        let err = IdempotencyConfig::default()
            .resolve(&IdempotencyOptions::new().wait(Duration::ZERO))
            .unwrap_err();
        assert!(err.message().contains("`wait`"), "{err}");
    }
}
