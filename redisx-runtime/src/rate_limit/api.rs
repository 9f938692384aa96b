//! The public calls of the rate limiter: `check` (and its cost, multi-limit, default-limit and
//! policy forms), `peek`, `state`, `reset`, `full_key`.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::future::Future;
use std::time::{Duration, UNIX_EPOCH};

use super::config::invalid;
use super::stats::Status;
use super::{Decision, ErrorPolicy, Limit, RateLimiter, scripts};
use crate::client::script_cmd;
use crate::error::{Error, ErrorCode, Result};
use crate::key;

/// Whether a call consumes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Check,
    Peek,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Check => "check",
            Self::Peek => "peek",
        }
    }
}

/// The limits of one call and their state keys.
struct Call<'a> {
    key: &'a str,
    limits: &'a [Limit],
    keys: Vec<String>,
}

impl Call<'_> {
    /// The name of the call in the local deny cache: its state keys.
    fn id(&self) -> Cow<'_, str> {
        match self.keys.as_slice() {
            [one] => Cow::Borrowed(one.as_str()),
            many => Cow::Owned(many.join("\n")),
        }
    }
}

impl RateLimiter {
    /// Checks one point of `limit` on `key`: consumes it when admitted. A denial is
    /// `Ok(Decision { allowed: false, .. })`, not an error.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::rate_limit::Limit;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let d = rx
    ///     .rate_limiter()
    ///     .check("login:10.0.0.1", &Limit::sliding_window(5, Duration::from_secs(60)))
    ///     .await?;
    /// println!("allowed: {}, {} left", d.allowed, d.remaining);
    /// # Ok(()) }
    /// ```
    pub async fn check(&self, key: &str, limit: &Limit) -> Result<Decision> {
        self.check_cost(key, limit, 1).await
    }

    /// Checks `cost` points of `limit` on `key` (a bulk upload costing 10, say).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::rate_limit::Limit;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let quota = Limit::token_bucket(1000, Duration::from_secs(3600));
    /// let d = rx.rate_limiter().check_cost("tenant:42", &quota, 25).await?;
    /// # let _ = d;
    /// # Ok(()) }
    /// ```
    pub async fn check_cost(&self, key: &str, limit: &Limit, cost: u64) -> Result<Decision> {
        let call = self.call(key, std::slice::from_ref(limit), None)?;
        self.run(&call, Mode::Check, cost).await
    }

    /// Checks `cost` points of every limit in `limits` on `key`, all or nothing: when one
    /// denies, none is consumed. Returns the deciding decision: the first denying limit's, else
    /// the one with the fewest points left.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::rate_limit::Limit;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let limits = [
    ///     Limit::fixed_window(10, Duration::from_secs(1)),
    ///     Limit::sliding_window(1000, Duration::from_secs(3600)),
    /// ];
    /// let d = rx.rate_limiter().check_all("user:7", &limits, 1).await?;
    /// # let _ = d;
    /// # Ok(()) }
    /// ```
    pub async fn check_all(&self, key: &str, limits: &[Limit], cost: u64) -> Result<Decision> {
        let call = self.call(key, limits, None)?;
        self.run(&call, Mode::Check, cost).await
    }

    /// Checks one point of the configured default limit
    /// ([`RateLimitConfig::default_limit`](super::RateLimitConfig::default_limit)).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let d = rx.rate_limiter().check_default("ip:10.0.0.1").await?;
    /// # let _ = d;
    /// # Ok(()) }
    /// ```
    pub async fn check_default(&self, key: &str) -> Result<Decision> {
        let limit = std::slice::from_ref(&self.inner.cfg.default_limit);
        let call = self.call(key, limit, None)?;
        self.run(&call, Mode::Check, 1).await
    }

    /// Checks `cost` points of the named policy's limits on `key`, all or nothing
    /// ([`ErrorCode::ConfigInvalid`] for an unknown policy).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// // With `.policy("login", [Limit::sliding_window(5, Duration::from_secs(60))])`:
    /// let d = rx.rate_limiter().check_policy("login", "10.0.0.1", 1).await?;
    /// # let _ = d;
    /// # Ok(()) }
    /// ```
    pub async fn check_policy(&self, policy: &str, key: &str, cost: u64) -> Result<Decision> {
        let call = self.policy_call(policy, key)?;
        self.run(&call, Mode::Check, cost).await
    }

    /// Whether `cost` points of `limit` would be admitted on `key` now, consuming nothing
    /// (`remaining` is what is left now). Two peeks agree.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::rate_limit::Limit;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let limit = Limit::fixed_window(100, Duration::from_secs(60));
    /// let d = rx.rate_limiter().peek("export:7", &limit, 10).await?;
    /// println!("an export of 10 would be {}", if d.allowed { "admitted" } else { "denied" });
    /// # Ok(()) }
    /// ```
    pub async fn peek(&self, key: &str, limit: &Limit, cost: u64) -> Result<Decision> {
        let call = self.call(key, std::slice::from_ref(limit), None)?;
        self.run(&call, Mode::Peek, cost).await
    }

    /// [`peek`](Self::peek) for the named policy's limits.
    pub async fn peek_policy(&self, policy: &str, key: &str, cost: u64) -> Result<Decision> {
        let call = self.policy_call(policy, key)?;
        self.run(&call, Mode::Peek, cost).await
    }

    /// The state of `limit` on `key`: the points consumed and left, and when the quota is
    /// whole again (`allowed` is `true`, `retry_after` zero). Consumes nothing.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::rate_limit::Limit;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let limit = Limit::gcra(10, Duration::from_secs(1));
    /// let s = rx.rate_limiter().state("api:7", &limit).await?;
    /// println!("{} used of {}", s.current, s.limit);
    /// # Ok(()) }
    /// ```
    pub async fn state(&self, key: &str, limit: &Limit) -> Result<Decision> {
        let call = self.call(key, std::slice::from_ref(limit), None)?;
        self.run(&call, Mode::Peek, 0).await
    }

    /// [`state`](Self::state) of the named policy's limits: the deciding one (the one with the
    /// fewest points left).
    pub async fn state_policy(&self, policy: &str, key: &str) -> Result<Decision> {
        let call = self.policy_call(policy, key)?;
        self.run(&call, Mode::Peek, 0).await
    }

    /// Deletes the state `check` writes for `limit` on `key` (the quota is whole again) and
    /// forgets its local denial.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::rate_limit::Limit;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let login = Limit::sliding_window(5, Duration::from_secs(60));
    /// // The user proved who they are: give their attempts back.
    /// rx.rate_limiter().reset("login:alice", &login).await?;
    /// # Ok(()) }
    /// ```
    pub async fn reset(&self, key: &str, limit: &Limit) -> Result<()> {
        let call = self.call(key, std::slice::from_ref(limit), None)?;
        self.delete(&call).await
    }

    /// Deletes the state of the named policy's limits on `key`.
    pub async fn reset_policy(&self, policy: &str, key: &str) -> Result<()> {
        let call = self.policy_call(policy, key)?;
        self.delete(&call).await
    }

    /// The state key of `limit` on `key`:
    /// `{app prefix}{rl prefix}{algorithm}:{limit}/{window}:{<key>}`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::rate_limit::Limit;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) {
    /// // With `.key_prefix("myapp:")` on the builder:
    /// let limit = Limit::sliding_window(5, Duration::from_secs(60));
    /// assert_eq!(
    ///     rx.rate_limiter().full_key("10.0.0.1", &limit),
    ///     "myapp:rl:sliding_window:5/60s:{10.0.0.1}"
    /// );
    /// # }
    /// ```
    pub fn full_key(&self, key: &str, limit: &Limit) -> String {
        self.state_key(key, |out| limit.write_spec(out))
    }

    /// `{app prefix}{rl prefix}{what}:{<key>}`, built in one buffer.
    fn state_key(&self, key: &str, what: impl FnOnce(&mut String)) -> String {
        let prefix = self.inner.keys.prefix();
        let mut s = String::with_capacity(prefix.len() + key.len() + 48);
        s.push_str(prefix);
        what(&mut s);
        for part in [":{", key, "}"] {
            s.push_str(part);
        }
        s
    }

    /// Runs `body` if `cost` points of `limit` on `key` are admitted; a denial returns
    /// `Err(E::from(Error::rate_limited(decision)))` without running it, and a Redis error
    /// (under [`ErrorPolicy::FailClosed`]) returns that error. What `#[rate_limit]` expands to.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::rate_limit::Limit;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let limit = Limit::sliding_window(5, Duration::from_secs(60));
    /// let session = rx
    ///     .rate_limiter()
    ///     .with_limit("login:10.0.0.1", &limit, 1, async { Ok::<_, redisx_runtime::Error>("token") })
    ///     .await?;
    /// # let _ = session;
    /// # Ok(()) }
    /// ```
    pub fn with_limit<T, E, F>(
        &self,
        key: &str,
        limit: &Limit,
        cost: u64,
        body: F,
    ) -> impl Future<Output = Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
        E: From<Error>,
    {
        // Boxed before the call's own state: a body that is itself a lock, idempotency or
        // rate-limit call nested unboxed goes past rustc's default layout depth (128).
        let body = Box::pin(body);
        async move {
            let d = self.check_cost(key, limit, cost).await?;
            admit(d, body).await
        }
    }

    /// [`with_limit`](Self::with_limit) for the named policy's limits, all or nothing.
    pub fn with_policy<T, E, F>(
        &self,
        policy: &str,
        key: &str,
        cost: u64,
        body: F,
    ) -> impl Future<Output = Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
        E: From<Error>,
    {
        // Boxed for the reason given in `with_limit`.
        let body = Box::pin(body);
        async move {
            let d = self.check_policy(policy, key, cost).await?;
            admit(d, body).await
        }
    }

    /// The state keys of a call of `limits` on `key` (`policy`: the policy's keys).
    fn call<'a>(
        &self,
        key: &'a str,
        limits: &'a [Limit],
        policy: Option<&str>,
    ) -> Result<Call<'a>> {
        key::check(
            key,
            self.inner.cfg.max_key_len,
            ErrorCode::RateLimitKeyInvalid,
        )?;
        if limits.is_empty() {
            return Err(invalid(
                "a rate limit check needs at least one limit".to_owned(),
            ));
        }
        for l in limits {
            l.validate()?;
        }
        let keys: Vec<String> = match policy {
            Some(p) if limits.len() == 1 => vec![self.state_key(key, |s| s.push_str(p))],
            Some(p) => (0..limits.len())
                .map(|i| {
                    self.state_key(key, |s| {
                        let _ = write!(s, "{p}#{i}");
                    })
                })
                .collect(),
            None => limits
                .iter()
                .map(|l| self.state_key(key, |s| l.write_spec(s)))
                .collect(),
        };
        if keys.len() > 1 && key.contains(['{', '}']) {
            let slot = key::slot(&keys[0]);
            if keys.iter().any(|k| key::slot(k) != slot) {
                return Err(Error::new(
                    ErrorCode::RateLimitKeyInvalid,
                    "the key's braces break its hash tag (the limits of one call would land in different cluster slots)",
                )
                .with_context("key", key.escape_debug().to_string()));
            }
        }
        Ok(Call { key, limits, keys })
    }

    /// The call of the named policy on `key`.
    fn policy_call<'a>(&'a self, policy: &str, key: &'a str) -> Result<Call<'a>> {
        let limits = self.inner.cfg.policies.get(policy).ok_or_else(|| {
            invalid(format!(
                "unknown rate limit policy `{policy}`; add it with `RateLimitConfig::policy`"
            ))
        })?;
        self.call(key, limits, Some(policy))
    }

    /// Runs the script for `call` (answering a denied check locally when it can), within a
    /// `ratelimit.check` span.
    async fn run(&self, call: &Call<'_>, mode: Mode, cost: u64) -> Result<Decision> {
        let shared = &self.inner;
        check_cost(call, mode, cost)?;
        let id = call.id();
        if mode == Mode::Check
            && let Some((d, algorithm)) = shared.local.get(&id, cost)
        {
            shared.metrics.count(algorithm, Status::LocalDeny);
            return Ok(d);
        }
        let span = tracing::debug_span!(target: "redisx::rate_limit", "ratelimit.check",
            otel.kind = "internal",
            ratelimit.mode = mode.as_str(),
            ratelimit.key = shared.record_keys.then_some(call.key),
            ratelimit.algorithm = tracing::field::Empty,
            ratelimit.allowed = tracing::field::Empty,
            ratelimit.remaining = tracing::field::Empty,
            ratelimit.limit = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let out = traced!(self.eval(call, mode, cost), span);
        match out {
            Ok((at, d)) => {
                let algorithm = call.limits[at].algorithm;
                span.record("ratelimit.algorithm", algorithm.as_str());
                span.record("ratelimit.allowed", d.allowed);
                span.record("ratelimit.remaining", d.remaining);
                span.record("ratelimit.limit", d.limit);
                if mode == Mode::Check {
                    let status = if d.allowed {
                        Status::Allowed
                    } else {
                        shared.local.insert(&id, cost, &d, algorithm);
                        Status::Denied
                    };
                    shared.metrics.count(algorithm, status);
                }
                Ok(d)
            }
            Err(e) => {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", e.code().as_str());
                if mode == Mode::Check {
                    // No limit decided: counted under the call's first.
                    shared
                        .metrics
                        .count(call.limits[0].algorithm, Status::Error);
                }
                let e = e.with_context("key", call.key.to_owned());
                match shared.cfg.error_policy {
                    ErrorPolicy::FailClosed => Err(e),
                    ErrorPolicy::FailOpen => {
                        let now = std::time::Instant::now();
                        if let Some(held_back) = shared.warnings.admit(&e.code(), now) {
                            tracing::warn!(target: "redisx::rate_limit", error = %format_args!("{e:#}"), held_back, "a rate limit check failed; admitted (fail open)");
                        }
                        Ok(Decision::open(deciding_limit(call.limits)))
                    }
                }
            }
        }
    }

    /// The script: the deciding limit's index and decision.
    async fn eval(&self, call: &Call<'_>, mode: Mode, cost: u64) -> Result<(usize, Decision)> {
        let client = self.inner.client()?;
        let script = match call.limits {
            [one] => scripts::single(one.algorithm),
            _ => &scripts::CHECK,
        };
        let mut cmd = script_cmd(&script.script, call.keys.len(), 2 + 4 * call.limits.len());
        for k in &call.keys {
            cmd.arg(k);
        }
        cmd.arg(mode.as_str()).arg(cost);
        for l in call.limits {
            cmd.arg(l.algorithm.as_str())
                .arg(l.points)
                .arg(l.window_ms());
            match (l.refill, l.burst) {
                (Some(r), _) => cmd.arg(r),
                (_, Some(b)) => cmd.arg(b),
                _ => cmd.arg(0),
            };
        }
        if let [_] = call.limits {
            // One limit: a single decision from the one-string reply, without collecting.
            let text: Vec<u8> = client.eval_cmd(&script.script, cmd).await?;
            let d = parse_single(&text).ok_or_else(|| {
                Error::new(
                    ErrorCode::RateLimitScriptError,
                    format!(
                        "the rate limit script answered {:?}, not 5 integers",
                        String::from_utf8_lossy(&text)
                    ),
                )
            })?;
            return Ok((0, decision(&d)));
        }
        let reply: Vec<i64> = client.eval_cmd(&script.script, cmd).await?;
        if reply.len() != 5 * call.limits.len() {
            return Err(Error::new(
                ErrorCode::RateLimitScriptError,
                format!(
                    "the rate limit script answered {} values for {} limits",
                    reply.len(),
                    call.limits.len()
                ),
            ));
        }
        let decisions: Vec<Decision> = reply.chunks(5).map(decision).collect();
        let at = decisions
            .iter()
            .position(|d| !d.allowed)
            .or_else(|| {
                decisions
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, d)| d.remaining)
                    .map(|(i, _)| i)
            })
            .unwrap_or(0);
        let d = decisions.into_iter().nth(at).expect("a decision per limit");
        Ok((at, d))
    }

    /// Deletes the state keys of `call` and forgets its local denial.
    async fn delete(&self, call: &Call<'_>) -> Result<()> {
        self.inner.local.remove(&call.id());
        let client = self.inner.client()?;
        let mut cmd = redis::cmd("UNLINK");
        for k in &call.keys {
            cmd.arg(k);
        }
        let _: i64 = client
            .query(&cmd)
            .await
            .map_err(|e| e.with_context("key", call.key.to_owned()))?;
        Ok(())
    }
}

/// Runs `body` when `d` admitted the call, else returns the denial as an error.
pub(super) async fn admit<T, E, F>(d: Decision, body: F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: From<Error>,
{
    if d.allowed {
        body.await
    } else {
        Err(E::from(Error::rate_limited(d)))
    }
}

/// A check or a peek must cost at least one point, and no more than every limit of the call
/// can ever admit (a state read costs zero).
fn check_cost(call: &Call<'_>, mode: Mode, cost: u64) -> Result<()> {
    if cost == 0 && mode == Mode::Check {
        return Err(invalid(
            "a rate limit check must cost at least 1 point".to_owned(),
        ));
    }
    if let Some(l) = call
        .limits
        .iter()
        .find(|l| cost > l.burst.unwrap_or(l.points))
    {
        return Err(invalid(format!(
            "a cost of {cost} can never be admitted by a limit of {l}"
        )));
    }
    Ok(())
}

/// The limit a fail-open answer reports: the smallest of the call.
fn deciding_limit(limits: &[Limit]) -> u64 {
    limits
        .iter()
        .map(|l| l.burst.unwrap_or(l.points))
        .min()
        .unwrap_or(0)
}

/// The 5 integers of a one-limit reply, `"a b c d e"`; `None` when it is not that.
fn parse_single(text: &[u8]) -> Option<[i64; 5]> {
    let mut out = [0i64; 5];
    let mut parts = text.split(|b| *b == b' ');
    for slot in &mut out {
        let part = parts.next()?;
        if part.is_empty() {
            return None;
        }
        *slot = part.iter().try_fold(0i64, |n, &b| {
            let digit = i64::from(b.checked_sub(b'0').filter(|d| *d < 10)?);
            n.checked_mul(10)?.checked_add(digit)
        })?;
    }
    parts.next().is_none().then_some(out)
}

/// One limit's decision from the script's 5 integers.
fn decision(r: &[i64]) -> Decision {
    let n = |i: usize| u64::try_from(r[i]).unwrap_or(0);
    Decision::new(
        r[0] == 1,
        n(1),
        n(2),
        UNIX_EPOCH + Duration::from_millis(n(3)),
        Duration::from_millis(n(4)),
    )
}

#[cfg(test)]
mod tests {
    use super::parse_single;

    #[test]
    fn a_one_limit_reply_parses_exactly() {
        assert_eq!(
            parse_single(b"1 100 99 1733600000000 0"),
            Some([1, 100, 99, 1_733_600_000_000, 0])
        );
        for bad in [
            &b""[..],
            b"1 2 3 4",
            b"1 2 3 4 5 6",
            b"1 2 x 4 5",
            b"1  2 3 4 5",
            b"-1 2 3 4 5",
        ] {
            assert_eq!(parse_single(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
