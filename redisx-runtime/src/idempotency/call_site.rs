//! What `#[idempotent]` expands to (re-exported, unstable, as `redisx::__private`): an
//! [`IdempotentSpec`] static with the attribute's options, the fingerprint of the call's
//! arguments ([`fingerprint_arg`]), and [`idempotent`], which renders the key and finds the
//! runtime, then runs the body through [`Idempotency::run`](super::Idempotency::run) or
//! [`run_recording_errors`](super::Idempotency::run_recording_errors). Idempotency fails
//! closed: without a runtime the call is an error and the body never runs.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::run::{NotRecorded, Recorded};
use super::{Fingerprint, Idempotency, IdempotencyOptions};
use crate::call_site::{self, NoRuntime};
use crate::context;
use crate::error::{Error, ErrorCode};
use crate::runtime::RedisX;

static NO_RUNTIME: NoRuntime =
    NoRuntime::new("#[idempotent] functions fail with CFG_NOT_INSTALLED");

/// An error type `#[idempotent]` can return: one a [`redisx::Error`](Error) converts into.
#[diagnostic::on_unimplemented(
    message = "`#[idempotent]` cannot return its errors as `{Self}`",
    label = "this error type must implement `From<redisx::Error>`",
    note = "a duplicate refused (mismatch, in progress, previous failure), no runtime, or Redis down is returned as the function's error: add `impl From<redisx::Error> for {Self}`"
)]
pub trait IdempotentError: From<Error> {}

/// Not recommended in errors: a type without the conversion gets the message above.
#[diagnostic::do_not_recommend]
impl<E: From<Error>> IdempotentError for E {}

/// A value `#[idempotent]` can record and replay.
#[diagnostic::on_unimplemented(
    message = "`#[idempotent]` records the function's value, and `{Self}` cannot be recorded",
    label = "this type must implement `Serialize` and `DeserializeOwned`",
    note = "duplicates get the recorded value back (stored as JSON): derive `serde::Serialize` and `serde::Deserialize` for `{Self}`"
)]
pub trait IdempotentValue: Serialize + DeserializeOwned {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> IdempotentValue for T {}

/// An error `#[idempotent(record_errors = true)]` can record and replay.
#[diagnostic::on_unimplemented(
    message = "`#[idempotent(record_errors = true)]` records the function's errors, and `{Self}` cannot be recorded",
    label = "this error type must implement `Serialize`, `DeserializeOwned` and `From<redisx::Error>`",
    note = "derive `serde::Serialize` and `serde::Deserialize` for `{Self}`, or leave errors unrecorded (an error then marks the key failed for the lock ttl)"
)]
pub trait IdempotentRecordedError: IdempotentError + Serialize + DeserializeOwned {}

#[diagnostic::do_not_recommend]
impl<E: From<Error> + Serialize + DeserializeOwned> IdempotentRecordedError for E {}

/// An argument `#[idempotent]` can fingerprint.
#[diagnostic::on_unimplemented(
    message = "`#[idempotent]` fingerprints its arguments with serde, and `{Self}` does not implement `Serialize`",
    label = "fingerprinted here",
    note = "list the arguments that identify the request in `fingerprint = [..]` (every argument by default), leaving this one out, or derive `serde::Serialize` for it"
)]
pub trait IdempotentArg: Serialize {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + ?Sized> IdempotentArg for T {}

/// Adds one argument to a call's fingerprint.
pub fn fingerprint_arg<T: IdempotentArg + ?Sized>(
    fp: &mut Fingerprint,
    name: &'static str,
    value: &T,
) {
    fp.arg(name, value);
}

/// The compile-time options of one `#[idempotent]` call site, in milliseconds; zero means
/// "the config's".
#[derive(Debug)]
pub struct IdempotentSpec {
    ttl_ms: u64,
    lock_ttl_ms: u64,
    wait_ms: u64,
    vary_by: &'static [&'static str],
}

impl IdempotentSpec {
    /// Every option at the config's value.
    pub const fn new() -> Self {
        Self {
            ttl_ms: 0,
            lock_ttl_ms: 0,
            wait_ms: 0,
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

    /// `lock_ttl`, in milliseconds.
    #[must_use]
    pub const fn lock_ttl_ms(mut self, ms: u64) -> Self {
        self.lock_ttl_ms = ms;
        self
    }

    /// `wait`, in milliseconds.
    #[must_use]
    pub const fn wait_ms(mut self, ms: u64) -> Self {
        self.wait_ms = ms;
        self
    }

    fn options(&self) -> IdempotencyOptions {
        let mut o = IdempotencyOptions::new();
        if self.ttl_ms > 0 {
            o = o.ttl(Duration::from_millis(self.ttl_ms));
        }
        if self.lock_ttl_ms > 0 {
            o = o.lock_ttl(Duration::from_millis(self.lock_ttl_ms));
        }
        if self.wait_ms > 0 {
            o = o.wait(Duration::from_millis(self.wait_ms));
        }
        o
    }
}

impl Default for IdempotentSpec {
    fn default() -> Self {
        Self::new()
    }
}

/// An `#[idempotent]` call with its key rendered, its fingerprint computed and its runtime
/// found; see [`idempotent`].
pub struct IdempotentCall {
    target: Result<(Idempotency, String, String), Error>,
    spec: &'static IdempotentSpec,
}

/// The synchronous half of `#[idempotent]`: renders the key, finishes the fingerprint and
/// finds the runtime (`runtime = ...`, else the scope's, else the installed one).
pub fn idempotent(
    spec: &'static IdempotentSpec,
    runtime: Option<&RedisX>,
    key: fmt::Arguments<'_>,
    fingerprint: Fingerprint,
) -> IdempotentCall {
    let target = call_site::with_runtime(runtime, &NO_RUNTIME, |rt| match rt {
        Some(rt) => Ok((
            rt.idempotency().clone(),
            context::vary_rendered_key(fmt::format(key), spec.vary_by)?,
            fingerprint.finish()?,
        )),
        None => Err(Error::new(
            ErrorCode::ConfigNotInstalled,
            "#[idempotent] found no redisx runtime (install one with `rx.install()`, run the call in `rx.scope(..)`, or pass `runtime = ...`); the body did not run",
        )),
    });
    IdempotentCall { target, spec }
}

impl IdempotentCall {
    /// Runs the body once per key; duplicates get its recorded value. An `Err` marks the key
    /// failed for the lock ttl.
    pub fn run<T, E, F>(self, body: F) -> impl Future<Output = Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
        T: IdempotentValue,
        E: IdempotentError,
    {
        // Boxed before the call's own state: the body may be another attribute's future, and
        // the two nested unboxed go past rustc's default layout depth (128).
        let body = Box::pin(body);
        async move {
            let (idem, key, fp) = self.target?;
            idem.run_with::<T, E, F, NotRecorded>(&key, &fp, &self.spec.options(), body)
                .await
        }
    }

    /// Runs the body once per key; duplicates get its recorded value or error.
    pub fn run_recording_errors<T, E, F>(self, body: F) -> impl Future<Output = Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
        T: IdempotentValue,
        E: IdempotentRecordedError,
    {
        // Boxed before the call's own state: the body may be another attribute's future, and
        // the two nested unboxed go past rustc's default layout depth (128).
        let body = Box::pin(body);
        async move {
            let (idem, key, fp) = self.target?;
            idem.run_with::<T, E, F, Recorded<E>>(&key, &fp, &self.spec.options(), body)
                .await
        }
    }
}
