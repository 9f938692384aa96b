//! What `#[rate_limit]` expands to (re-exported, unstable, as `redisx::__private`): a
//! [`RateLimitSpec`] static with the attribute's options, and [`rate_limit`], which renders
//! the key and finds the runtime, then runs the body through
//! [`RateLimiter::with_limit`](super::RateLimiter::with_limit) or
//! [`with_policy`](super::RateLimiter::with_policy). Rate limits fail closed: without a runtime
//! the call is an error and the body never runs.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use super::{Algorithm, Limit, RateLimiter};
use crate::call_site::{self, NoRuntime};
use crate::context;
use crate::error::{Error, ErrorCode};
use crate::runtime::RedisX;

static NO_RUNTIME: NoRuntime =
    NoRuntime::new("#[rate_limit] functions fail with CFG_NOT_INSTALLED");

/// An error type `#[rate_limit]` can return: one a [`redisx::Error`](Error) converts into (a
/// denial, no runtime or Redis down is returned as the function's error).
#[diagnostic::on_unimplemented(
    message = "`#[rate_limit]` cannot return its errors as `{Self}`",
    label = "this error type must implement `From<redisx::Error>`",
    note = "a denial (`RATE_LIMIT_EXCEEDED`, with its decision), no runtime, or Redis down is returned as the function's error: add `impl From<redisx::Error> for {Self}`"
)]
pub trait RateLimitError: From<Error> {}

/// Not recommended in errors: a type without the conversion gets the message above.
#[diagnostic::do_not_recommend]
impl<E: From<Error>> RateLimitError for E {}

/// The compile-time options of one `#[rate_limit]` call site; unset parts of the limit come
/// from the config's default limit.
#[derive(Debug)]
pub struct RateLimitSpec {
    policy: Option<&'static str>,
    algorithm: Option<Algorithm>,
    limit: u64,
    window_ms: u64,
    cost: u64,
    vary_by: &'static [&'static str],
}

impl RateLimitSpec {
    /// The config's default limit, cost 1.
    pub const fn new() -> Self {
        Self {
            policy: None,
            algorithm: None,
            limit: 0,
            window_ms: 0,
            cost: 1,
            vary_by: &[],
        }
    }

    /// `vary_by`: the context values the key varies by (see [`crate::context`]).
    #[must_use]
    pub const fn vary_by(mut self, names: &'static [&'static str]) -> Self {
        self.vary_by = names;
        self
    }

    /// `policy`.
    #[must_use]
    pub const fn policy(mut self, name: &'static str) -> Self {
        self.policy = Some(name);
        self
    }

    /// `algorithm`.
    #[must_use]
    pub const fn algorithm(mut self, a: Algorithm) -> Self {
        self.algorithm = Some(a);
        self
    }

    /// `limit`.
    #[must_use]
    pub const fn limit(mut self, n: u64) -> Self {
        self.limit = n;
        self
    }

    /// `window`, in milliseconds.
    #[must_use]
    pub const fn window_ms(mut self, ms: u64) -> Self {
        self.window_ms = ms;
        self
    }

    /// `cost`.
    #[must_use]
    pub const fn cost(mut self, n: u64) -> Self {
        self.cost = n;
        self
    }

    /// The limit of a call without a policy: the spec's parts over the config's default.
    fn limit_with(&self, default: &Limit) -> Limit {
        Limit::new(
            self.algorithm.unwrap_or(default.algorithm),
            if self.limit > 0 {
                self.limit
            } else {
                default.points
            },
            if self.window_ms > 0 {
                Duration::from_millis(self.window_ms)
            } else {
                default.window
            },
        )
    }
}

impl Default for RateLimitSpec {
    fn default() -> Self {
        Self::new()
    }
}

/// A `#[rate_limit]` call with its key rendered and its runtime found; see [`rate_limit`].
pub struct RateLimitCall {
    target: Result<(RateLimiter, String), Error>,
    spec: &'static RateLimitSpec,
}

/// The synchronous half of `#[rate_limit]`: renders the key and finds the runtime
/// (`runtime = ...`, else the scope's, else the installed one).
pub fn rate_limit(
    spec: &'static RateLimitSpec,
    runtime: Option<&RedisX>,
    key: fmt::Arguments<'_>,
) -> RateLimitCall {
    let target = call_site::with_runtime(runtime, &NO_RUNTIME, |rt| match rt {
        Some(rt) => Ok((
            rt.rate_limiter().clone(),
            context::vary_rendered_key(fmt::format(key), spec.vary_by)?,
        )),
        None => Err(Error::new(
            ErrorCode::ConfigNotInstalled,
            "#[rate_limit] found no redisx runtime (install one with `rx.install()`, run the call in `rx.scope(..)`, or pass `runtime = ...`); the body did not run",
        )),
    });
    RateLimitCall { target, spec }
}

impl RateLimitCall {
    /// Checks the limit, then runs the body if admitted.
    pub fn run<T, E, F>(self, body: F) -> impl Future<Output = Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
        E: RateLimitError,
    {
        // Boxed before the call's own state: the body may be another attribute's future, and
        // the two nested unboxed go past rustc's default layout depth (128).
        let body = Box::pin(body);
        self.run_boxed(body)
    }

    async fn run_boxed<T, E, F>(self, body: std::pin::Pin<Box<F>>) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
        E: RateLimitError,
    {
        let (limiter, key) = self.target?;
        let spec = self.spec;
        if let Some(policy) = spec.policy {
            if super::already_checked(&super::mark(None, Some(policy), &key)) {
                return body.await;
            }
            let d = limiter.check_policy(policy, &key, spec.cost).await?;
            super::api::admit(d, body).await
        } else {
            let limit = spec.limit_with(&limiter.config().default_limit);
            if super::already_checked(&super::mark(Some(&limit), None, &key)) {
                return body.await;
            }
            let d = limiter.check_cost(&key, &limit, spec.cost).await?;
            super::api::admit(d, body).await
        }
    }
}
