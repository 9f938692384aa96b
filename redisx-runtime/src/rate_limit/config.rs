//! Configuration of the rate limiter ([`RateLimitConfig`]), the limits ([`Limit`]) and the
//! algorithms ([`Algorithm`]); the only owner of the plugin's defaults and limits.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, ErrorCode, Result};
use crate::key;

/// How a limit counts. Choose by what the limit must guarantee:
///
/// | algorithm | exact? | memory per key | choose it for |
/// |---|---|---|---|
/// | [`SlidingWindow`](Self::SlidingWindow) (default) | exact over any window-long interval | O(limit) | login attempts, costly endpoints, small limits |
/// | [`FixedWindow`](Self::FixedWindow) | exact per epoch-aligned window; up to 2 × limit across a window boundary | O(1) | quotas per minute/hour/day that reset at a known time |
/// | [`SlidingCounter`](Self::SlidingCounter) | approximate (see below) | O(1) | large limits on many keys, where the log is too big |
/// | [`TokenBucket`](Self::TokenBucket) | exact for its model: bursts up to the capacity, then the refill rate | O(1) | APIs that allow bursts with a steady average |
/// | [`Gcra`](Self::Gcra) | exact: a burst, then evenly spaced | O(1) | smoothing traffic (redis-cell's algorithm) |
///
/// The sliding counter estimates the last window as the current aligned window's count plus
/// the previous one's, weighted by how much of it is still inside. It never admits more than
/// the limit per aligned window; across a boundary it can admit up to 2 × limit in a
/// window-long interval when the previous window's hits were bunched at its end, and it is
/// exact for evenly spread traffic.
///
/// ```
/// use redisx_runtime::rate_limit::Algorithm;
///
/// let a: Algorithm = "token_bucket".parse()?;
/// assert_eq!(a, Algorithm::TokenBucket);
/// assert_eq!(Algorithm::default().as_str(), "sliding_window");
/// assert!("leaky".parse::<Algorithm>().is_err());
/// # Ok::<(), redisx_runtime::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// Points per epoch-aligned window; denied hits are not counted.
    FixedWindow,
    /// A log of the admitted points: exact over any window-long interval; denied hits are not
    /// recorded, so repeated denials never push the unblock time back.
    #[default]
    SlidingWindow,
    /// Two fixed-window counters weighted by their overlap with the last window.
    SlidingCounter,
    /// A bucket of `limit` tokens refilled at a steady rate (default: `limit` per window).
    TokenBucket,
    /// The generic cell rate algorithm: a burst (default: the limit), then one point every
    /// `window / limit`.
    Gcra,
}

impl Algorithm {
    /// Every algorithm.
    pub const ALL: [Self; 5] = [
        Self::FixedWindow,
        Self::SlidingWindow,
        Self::SlidingCounter,
        Self::TokenBucket,
        Self::Gcra,
    ];

    /// Its name in keys, metrics, spans and config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FixedWindow => "fixed_window",
            Self::SlidingWindow => "sliding_window",
            Self::SlidingCounter => "sliding_counter",
            Self::TokenBucket => "token_bucket",
            Self::Gcra => "gcra",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses an algorithm's name; an unknown one is [`ErrorCode::ConfigInvalid`] naming the
/// accepted ones.
impl FromStr for Algorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                invalid(format!(
                    "unknown rate limit algorithm `{s}`; use one of fixed_window, sliding_window, sliding_counter, token_bucket, gcra"
                ))
            })
    }
}

/// One limit: `limit` points per `window`, counted by an algorithm.
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::rate_limit::{Algorithm, Limit};
///
/// let login = Limit::sliding_window(5, Duration::from_secs(60));
/// let api = Limit::token_bucket(100, Duration::from_secs(60)).refill(10, Duration::from_secs(1));
/// let smooth = Limit::gcra(10, Duration::from_secs(1)).burst(3);
/// assert_eq!((login.algorithm(), login.limit()), (Algorithm::SlidingWindow, 5));
/// # let _ = (api, smooth);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Limit {
    pub(crate) algorithm: Algorithm,
    pub(crate) points: u64,
    pub(crate) window: Duration,
    /// Token bucket: the refill, tokens per millisecond.
    pub(crate) refill: Option<f64>,
    /// GCRA: the burst.
    pub(crate) burst: Option<u64>,
}

impl Limit {
    /// `limit` points per `window`, counted by `algorithm`.
    pub fn new(algorithm: Algorithm, limit: u64, window: Duration) -> Self {
        Self {
            algorithm,
            points: limit,
            window,
            refill: None,
            burst: None,
        }
    }

    /// A fixed window limit.
    pub fn fixed_window(limit: u64, window: Duration) -> Self {
        Self::new(Algorithm::FixedWindow, limit, window)
    }

    /// A sliding window (log) limit.
    pub fn sliding_window(limit: u64, window: Duration) -> Self {
        Self::new(Algorithm::SlidingWindow, limit, window)
    }

    /// A sliding window counter limit.
    pub fn sliding_counter(limit: u64, window: Duration) -> Self {
        Self::new(Algorithm::SlidingCounter, limit, window)
    }

    /// A token bucket of `limit` tokens, refilled by `limit` per `window` unless
    /// [`refill`](Self::refill) says otherwise.
    pub fn token_bucket(limit: u64, window: Duration) -> Self {
        Self::new(Algorithm::TokenBucket, limit, window)
    }

    /// A GCRA limit: `limit` points per `window`, with a burst of `limit` unless
    /// [`burst`](Self::burst) says otherwise.
    pub fn gcra(limit: u64, window: Duration) -> Self {
        Self::new(Algorithm::Gcra, limit, window)
    }

    /// Token bucket: refill `tokens` every `per` (checked by the calls: other algorithms
    /// refuse it).
    #[allow(
        clippy::cast_precision_loss,
        reason = "refill rates are far below 2^52"
    )]
    pub fn refill(mut self, tokens: u64, per: Duration) -> Self {
        let per_ms = per.as_secs_f64() * 1000.0;
        self.refill = Some(if per_ms > 0.0 {
            tokens as f64 / per_ms
        } else {
            0.0
        });
        self
    }

    /// GCRA: admit up to `burst` points at once (checked by the calls: other algorithms
    /// refuse it).
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Its points per window.
    pub fn limit(&self) -> u64 {
        self.points
    }

    /// Its window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Checks the limit: a positive limit and window (at least 1 ms), and only its own
    /// algorithm's parameter.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.points == 0 {
            return Err(invalid(format!(
                "a rate limit of 0 admits nothing ({self}); use a limit of at least 1"
            )));
        }
        if self.window < Duration::from_millis(1) {
            return Err(invalid(format!(
                "the rate limit window must be at least 1 ms ({self})"
            )));
        }
        if self.refill.is_some() && self.algorithm != Algorithm::TokenBucket {
            return Err(invalid(format!(
                "`refill` is a token bucket setting ({self})"
            )));
        }
        if self.refill.is_some_and(|r| r <= 0.0 || !r.is_finite()) {
            return Err(invalid(format!(
                "the token bucket refill must be positive ({self})"
            )));
        }
        match self.burst {
            Some(_) if self.algorithm != Algorithm::Gcra => {
                Err(invalid(format!("`burst` is a GCRA setting ({self})")))
            }
            Some(0) => Err(invalid(format!("a GCRA burst must be at least 1 ({self})"))),
            _ => Ok(()),
        }
    }

    /// The window in whole milliseconds.
    pub(crate) fn window_ms(&self) -> u64 {
        u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX)
    }

    /// Its part of a state key: `{algorithm}:{limit}/{window}`, plus its parameter when set,
    /// so one key under two limits never shares a state.
    pub(crate) fn spec(&self) -> String {
        let mut s = String::new();
        self.write_spec(&mut s);
        s
    }

    /// Appends [`spec`](Self::spec) to `out` (the hot path builds a key in one buffer).
    pub(crate) fn write_spec(&self, out: &mut String) {
        let ms = self.window_ms();
        let _ = write!(out, "{}:{}/", self.algorithm, self.points);
        let _ = if ms.is_multiple_of(1000) {
            write!(out, "{}s", ms / 1000)
        } else {
            write!(out, "{ms}ms")
        };
        if let Some(r) = self.refill {
            let _ = write!(out, ":r{r}");
        }
        if let Some(b) = self.burst {
            let _ = write!(out, ":b{b}");
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} per {:?} ({})",
            self.points, self.window, self.algorithm
        )
    }
}

/// What a check does when Redis fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorPolicy {
    /// The error is returned with its own code (a connection or operation error): nothing is
    /// admitted unchecked (default).
    #[default]
    FailClosed,
    /// The call is admitted, with `remaining = limit` (`check` and `peek` alike); the error is
    /// logged and counted (`status = "error"`).
    FailOpen,
}

/// Configuration of the rate limiter (`rx.rate_limiter()`), set on the builder with
/// [`RedisXBuilder::rate_limit`](crate::RedisXBuilder::rate_limit). With the `serde` feature it
/// also loads from a config file's table, by the setters' names (see its `Deserialize` impl).
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::rate_limit::{ErrorPolicy, Limit, RateLimitConfig};
///
/// let cfg = RateLimitConfig::default()
///     .default_limit(Limit::sliding_window(300, Duration::from_secs(60)))
///     .policy("login", [Limit::sliding_window(5, Duration::from_secs(60))])
///     .policy("api", [
///         Limit::fixed_window(10, Duration::from_secs(1)),
///         Limit::fixed_window(1000, Duration::from_secs(3600)),
///     ])
///     .error_policy(ErrorPolicy::FailOpen);
/// assert_eq!(cfg.default_limit_value().limit(), 300);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RateLimitConfig {
    pub(crate) default_limit: Limit,
    pub(crate) policies: HashMap<String, Vec<Limit>>,
    pub(crate) key_prefix: String,
    pub(crate) client: Option<String>,
    pub(crate) error_policy: ErrorPolicy,
    pub(crate) local_deny: bool,
    pub(crate) local_deny_capacity: usize,
    pub(crate) max_key_len: usize,
}

impl Default for RateLimitConfig {
    /// Sliding window, 100 per 60 s; keys under `rl:`; fail closed; local deny on (10,000
    /// keys); keys up to 1,024 bytes.
    fn default() -> Self {
        Self {
            default_limit: Limit::sliding_window(100, Duration::from_secs(60)),
            policies: HashMap::new(),
            key_prefix: "rl:".to_owned(),
            client: None,
            error_policy: ErrorPolicy::FailClosed,
            local_deny: true,
            local_deny_capacity: 10_000,
            max_key_len: 1024,
        }
    }
}

impl RateLimitConfig {
    /// The limit of [`RateLimiter::check_default`](super::RateLimiter::check_default).
    pub fn default_limit(mut self, limit: Limit) -> Self {
        self.default_limit = limit;
        self
    }

    /// A named policy: one or several limits checked together, all or nothing. Its keys are
    /// `{app}rl:{name}:{<key>}` (several limits: `{app}rl:{name}#{n}:{<key>}`).
    pub fn policy(mut self, name: &str, limits: impl IntoIterator<Item = Limit>) -> Self {
        self.policies
            .insert(name.to_owned(), limits.into_iter().collect());
        self
    }

    /// The prefix of the state keys after the app prefix (default `rl:`).
    pub fn key_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.key_prefix);
        self
    }

    /// The client the limiter uses (default: the runtime's default client).
    pub fn client(mut self, name: &str) -> Self {
        self.client = Some(name.to_owned());
        self
    }

    /// What a check does when Redis fails (default [`ErrorPolicy::FailClosed`]).
    pub fn error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.error_policy = policy;
        self
    }

    /// Answer keys that were denied in process until their `retry_after` (default on): nothing
    /// can be admitted before then, whatever other instances do. A `reset` by another instance
    /// is only seen here once that time has passed.
    pub fn local_deny(mut self, on: bool) -> Self {
        self.local_deny = on;
        self
    }

    /// How many denied keys the local deny cache holds at most (default 10,000).
    pub fn local_deny_capacity(mut self, keys: usize) -> Self {
        self.local_deny_capacity = keys;
        self
    }

    /// The longest key accepted (default 1,024 bytes).
    pub fn max_key_len(mut self, bytes: usize) -> Self {
        self.max_key_len = bytes;
        self
    }

    /// See [`default_limit`](Self::default_limit).
    pub fn default_limit_value(&self) -> &Limit {
        &self.default_limit
    }

    /// The limits of the policy `name`.
    pub fn policy_value(&self, name: &str) -> Option<&[Limit]> {
        self.policies.get(name).map(Vec::as_slice)
    }

    /// See [`error_policy`](Self::error_policy).
    pub fn error_policy_value(&self) -> ErrorPolicy {
        self.error_policy
    }

    /// See [`local_deny`](Self::local_deny).
    pub fn local_deny_value(&self) -> bool {
        self.local_deny
    }

    /// Checks the settings: every limit, the policies' names, the prefix.
    pub(crate) fn validate(&self) -> Result<()> {
        key::validate_prefix(&self.key_prefix)?;
        self.default_limit.validate()?;
        for (name, limits) in &self.policies {
            if name.is_empty()
                || name.contains(['{', '}', ':', '#'])
                || name.contains(char::is_control)
            {
                return Err(invalid(format!(
                    "the rate limit policy name `{}` is empty or holds one of `{{}}:#` or a control character",
                    name.escape_debug()
                )));
            }
            if limits.is_empty() {
                return Err(invalid(format!(
                    "the rate limit policy `{name}` has no limit"
                )));
            }
            for l in limits {
                l.validate()
                    .map_err(|e| e.with_context("policy", name.clone()))?;
            }
        }
        Ok(())
    }
}

pub(crate) fn invalid(msg: String) -> Error {
    Error::new(ErrorCode::ConfigInvalid, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_and_named() {
        let s = Duration::from_secs;
        assert!(Limit::fixed_window(0, s(1)).validate().is_err());
        assert!(Limit::fixed_window(1, Duration::ZERO).validate().is_err());
        assert!(Limit::fixed_window(1, s(1)).burst(2).validate().is_err());
        assert!(Limit::gcra(1, s(1)).burst(0).validate().is_err());
        assert!(Limit::gcra(1, s(1)).burst(2).validate().is_ok());
        assert!(
            Limit::sliding_window(1, s(1))
                .refill(1, s(1))
                .validate()
                .is_err()
        );
        assert_eq!(
            Limit::sliding_window(5, s(60)).spec(),
            "sliding_window:5/60s"
        );
        assert_eq!(
            Limit::fixed_window(5, Duration::from_millis(1500)).spec(),
            "fixed_window:5/1500ms"
        );
        assert_eq!(Limit::gcra(5, s(1)).burst(2).spec(), "gcra:5/1s:b2");
        let err = RateLimitConfig::default()
            .policy("a:b", [Limit::fixed_window(1, s(1))])
            .validate()
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConfigInvalid);
        assert!(
            RateLimitConfig::default()
                .policy("login", [])
                .validate()
                .is_err()
        );
        assert!(RateLimitConfig::default().validate().is_ok());
    }
}
