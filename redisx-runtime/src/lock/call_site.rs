//! What `#[with_lock]` expands to (re-exported, unstable, as `redisx::__private`): a
//! [`LockSpec`] static with the attribute's options, and [`with_lock`], which renders the key
//! and finds the runtime, then runs the body through [`Locks::with_lock_using`] or
//! [`Locks::try_with_lock_using`]. Locks fail closed: without a runtime the call is an error
//! and the body never runs.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use super::{LockCall, LockOptions, Locks, OnLost, RetryStrategy};
use crate::call_site::{self, NoRuntime};
use crate::context;
use crate::error::{Error, ErrorCode};
use crate::runtime::RedisX;

static NO_RUNTIME: NoRuntime = NoRuntime::new("#[with_lock] functions fail with CFG_NOT_INSTALLED");

/// An error type `#[with_lock]` can return: one a [`redisx::Error`](Error) converts into (a
/// lock that cannot be had, no runtime or Redis down is returned as the function's error).
#[diagnostic::on_unimplemented(
    message = "`#[with_lock]` cannot return its errors as `{Self}`",
    label = "this error type must implement `From<redisx::Error>`",
    note = "a lock that cannot be had, no runtime, or Redis down is returned as the function's error: add `impl From<redisx::Error> for {Self}`"
)]
pub trait LockError: From<Error> {}

/// Not recommended in errors: a type without the conversion gets the message above.
#[diagnostic::do_not_recommend]
impl<E: From<Error>> LockError for E {}

/// The retry strategy an attribute names, with its `retry_delay` and `retry_max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryKind {
    /// `retry = "fixed"`.
    Fixed,
    /// `retry = "linear"`.
    Linear,
    /// `retry = "exponential"`.
    Exponential,
}

/// The compile-time options of one `#[with_lock]` call site; zero means "the config's".
#[derive(Debug)]
pub struct LockSpec {
    ttl_ms: u64,
    wait_ms: u64,
    retries: Option<u32>,
    retry: Option<RetryKind>,
    retry_delay_ms: u64,
    retry_max_ms: u64,
    auto_renew: Option<bool>,
    on_lost: OnLost,
    vary_by: &'static [&'static str],
}

impl LockSpec {
    /// Every option at the config's default, and `on_lost = "cancel"`.
    pub const fn new() -> Self {
        Self {
            ttl_ms: 0,
            wait_ms: 0,
            retries: None,
            retry: None,
            retry_delay_ms: 0,
            retry_max_ms: 0,
            auto_renew: None,
            on_lost: OnLost::Cancel,
            vary_by: &[],
        }
    }

    /// `vary_by`: the context values the key varies by (see [`crate::context`]).
    #[must_use]
    pub const fn vary_by(mut self, names: &'static [&'static str]) -> Self {
        self.vary_by = names;
        self
    }

    /// `ttl`, in milliseconds.
    #[must_use]
    pub const fn ttl_ms(mut self, ms: u64) -> Self {
        self.ttl_ms = ms;
        self
    }

    /// `wait`, in milliseconds.
    #[must_use]
    pub const fn wait_ms(mut self, ms: u64) -> Self {
        self.wait_ms = ms;
        self
    }

    /// `retries`.
    #[must_use]
    pub const fn retries(mut self, n: u32) -> Self {
        self.retries = Some(n);
        self
    }

    /// `retry`.
    #[must_use]
    pub const fn retry(mut self, kind: RetryKind) -> Self {
        self.retry = Some(kind);
        self
    }

    /// `retry_delay`, in milliseconds: the fixed delay, the linear step or the first
    /// exponential delay.
    #[must_use]
    pub const fn retry_delay_ms(mut self, ms: u64) -> Self {
        self.retry_delay_ms = ms;
        self
    }

    /// `retry_max`, in milliseconds: the cap of the linear and exponential strategies.
    #[must_use]
    pub const fn retry_max_ms(mut self, ms: u64) -> Self {
        self.retry_max_ms = ms;
        self
    }

    /// `auto_renew`.
    #[must_use]
    pub const fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = Some(on);
        self
    }

    /// `on_lost = "continue"`.
    #[must_use]
    pub const fn on_lost_continue(mut self) -> Self {
        self.on_lost = OnLost::Continue;
        self
    }

    /// The options of one call.
    fn call(&self) -> LockCall {
        let ms = Duration::from_millis;
        let mut opts = LockOptions::new();
        if self.ttl_ms > 0 {
            opts = opts.ttl(ms(self.ttl_ms));
        }
        if self.wait_ms > 0 {
            opts = opts.wait(ms(self.wait_ms));
        }
        if let Some(n) = self.retries {
            opts = opts.retries(n);
        }
        if let Some(kind) = self.retry {
            let default = RetryStrategy::default();
            let (first, cap) = match default {
                RetryStrategy::Exponential(first, cap) | RetryStrategy::Linear(first, cap) => {
                    (first, cap)
                }
                RetryStrategy::Fixed(d) => (d, d),
            };
            let delay = if self.retry_delay_ms > 0 {
                ms(self.retry_delay_ms)
            } else {
                first
            };
            let max = if self.retry_max_ms > 0 {
                ms(self.retry_max_ms)
            } else {
                cap
            };
            opts = opts.retry(match kind {
                RetryKind::Fixed => RetryStrategy::Fixed(delay),
                RetryKind::Linear => RetryStrategy::Linear(delay, max),
                RetryKind::Exponential => RetryStrategy::Exponential(delay, max),
            });
        }
        if let Some(on) = self.auto_renew {
            opts = opts.auto_renew(on);
        }
        LockCall::new().options(opts).on_lost(self.on_lost)
    }
}

impl Default for LockSpec {
    fn default() -> Self {
        Self::new()
    }
}

/// A `#[with_lock]` call with its key rendered and its runtime found; see [`with_lock`].
pub struct WithLockCall {
    target: Result<(Locks, String), Error>,
    call: LockCall,
}

/// The synchronous half of `#[with_lock]`: renders the key and finds the runtime
/// (`runtime = ...`, else the scope's, else the installed one).
pub fn with_lock(
    spec: &'static LockSpec,
    runtime: Option<&RedisX>,
    key: fmt::Arguments<'_>,
) -> WithLockCall {
    let target = call_site::with_runtime(runtime, &NO_RUNTIME, |rt| match rt {
        Some(rt) => Ok((
            rt.locks().clone(),
            context::vary_rendered_key(fmt::format(key), spec.vary_by)?,
        )),
        None => Err(Error::new(
            ErrorCode::ConfigNotInstalled,
            "#[with_lock] found no redisx runtime (install one with `rx.install()`, run the call in `rx.scope(..)`, or pass `runtime = ...`); the body did not run",
        )),
    });
    WithLockCall {
        target,
        call: spec.call(),
    }
}

impl WithLockCall {
    /// `on_busy = "error"`: waits for the lock as configured, then runs the body.
    pub fn run<T, E, F>(self, body: F) -> impl Future<Output = Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
        E: LockError,
    {
        // Boxed before the call's own state: the body may be another attribute's future, and
        // the two nested unboxed go past rustc's default layout depth (128).
        let body = Box::pin(body);
        async move {
            let (locks, key) = self.target?;
            locks.with_lock_boxed(&key, &self.call, body).await
        }
    }

    /// `on_busy = "skip"` on `Result<(), E>`: one attempt; `Ok(())` without running the body
    /// when the lock is held elsewhere.
    pub fn run_skip<E, F>(self, body: F) -> impl Future<Output = Result<(), E>>
    where
        F: Future<Output = Result<(), E>>,
        E: LockError,
    {
        // Boxed before the call's own state: the body may be another attribute's future, and
        // the two nested unboxed go past rustc's default layout depth (128).
        let body = Box::pin(body);
        async move {
            let (locks, key) = self.target?;
            locks
                .try_with_lock_boxed(&key, &self.call, body)
                .await
                .map(|_| ())
        }
    }

    /// `on_busy = "skip"` on `Result<Option<T>, E>`: one attempt; `Ok(None)` without running
    /// the body when the lock is held elsewhere.
    pub fn run_skip_option<T, E, F>(self, body: F) -> impl Future<Output = Result<Option<T>, E>>
    where
        F: Future<Output = Result<Option<T>, E>>,
        E: LockError,
    {
        // Boxed before the call's own state: the body may be another attribute's future, and
        // the two nested unboxed go past rustc's default layout depth (128).
        let body = Box::pin(body);
        async move {
            let (locks, key) = self.target?;
            locks
                .try_with_lock_boxed(&key, &self.call, body)
                .await
                .map(Option::flatten)
        }
    }
}
