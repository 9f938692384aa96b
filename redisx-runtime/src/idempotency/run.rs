//! The typed calls: [`Idempotency::run`] and [`Idempotency::run_recording_errors`] check the
//! key, run the body once, store its outcome (JSON) and replay it to duplicates.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::claim::{Claim, Finish};
use super::record::invalid_record;
use super::{Check, Idempotency, IdempotencyOptions, Replay};
use crate::error::{Error, ErrorCode, Result};
use crate::rate_limit::ErrorPolicy;

/// How a call's `Err` is kept: not at all (the record fails), or recorded and replayed.
pub(crate) trait Errors<E> {
    /// The encoding of an `Err` to record, or `None` (the claim fails instead).
    fn encode(e: &E) -> Option<Result<Vec<u8>>>;
    /// A recorded `Err`, decoded for a replay.
    fn decode(key: &str, bytes: &[u8]) -> Result<E>;
}

pub(crate) struct NotRecorded;

impl<E> Errors<E> for NotRecorded {
    fn encode(_: &E) -> Option<Result<Vec<u8>>> {
        None
    }

    fn decode(key: &str, _: &[u8]) -> Result<E> {
        Err(invalid_record(
            key,
            "it holds a recorded error, and this call does not record errors (`record_errors`)",
        ))
    }
}

pub(crate) struct Recorded<E>(PhantomData<E>);

impl<E: Serialize + DeserializeOwned> Errors<E> for Recorded<E> {
    fn encode(e: &E) -> Option<Result<Vec<u8>>> {
        Some(encode(e))
    }

    fn decode(key: &str, bytes: &[u8]) -> Result<E> {
        decode(key, bytes)
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| {
        Error::new(
            ErrorCode::IdempotencySerialization,
            format!(
                "an idempotent call's outcome (`{}`) cannot be encoded as JSON",
                std::any::type_name::<T>()
            ),
        )
        .with_source(e)
    })
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        invalid_record(
            key,
            &format!(
                "its stored outcome no longer decodes as `{}` (did the type change in a deploy?); the call did not run again",
                std::any::type_name::<T>()
            ),
        )
        .with_source(e)
    })
}

impl Idempotency {
    /// Runs `body` once per `key`: the first call runs it and stores its `Ok` value (JSON,
    /// for the record ttl); a duplicate with the same `fingerprint` gets that value back
    /// without running it, also while the first still runs (it waits, woken by the
    /// completion). An `Err` marks the key failed for the lock ttl (duplicates then get
    /// `IDEMPOTENCY_PREVIOUS_FAILED`; after it a retry runs); dropping the future mid-run
    /// marks it failed (`cancelled`) at once. See [`check_and_lock`](Self::check_and_lock)
    /// for the errors.
    ///
    /// Redis failing before the body: the error (fail closed), or with
    /// [`ErrorPolicy::FailOpen`] the body runs unprotected. Redis failing after it: the store
    /// is retried (`store_attempts`), then the caller still gets its value (the effect
    /// happened), the failure is logged and counted, and duplicates wait for the claim's
    /// lease to run out; then one of them runs the body again.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use redisx_runtime::idempotency::{Fingerprint, IdempotencyOptions};
    ///
    /// let mut fp = Fingerprint::new();
    /// fp.arg("amount", &4200).arg("currency", "EUR");
    /// let receipt: String = rx
    ///     .idempotency()
    ///     .run("payment:abc", &fp.finish()?, &IdempotencyOptions::new(), async {
    ///         Ok::<_, redisx_runtime::Error>("receipt-1".to_owned()) // charge the card once
    ///     })
    ///     .await?;
    /// # let _ = receipt;
    /// # Ok(()) }
    /// ```
    pub fn run<T, E, F>(
        &self,
        key: &str,
        fingerprint: &str,
        opts: &IdempotencyOptions,
        body: F,
    ) -> impl Future<Output = std::result::Result<T, E>>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: Future<Output = std::result::Result<T, E>>,
    {
        // Boxed before the call's own state: a body that is itself a lock or idempotency call
        // nested unboxed goes past rustc's default layout depth (128).
        self.run_with::<T, E, _, NotRecorded>(key, fingerprint, opts, Box::pin(body))
    }

    /// [`run`](Self::run), recording an `Err` like a value: duplicates get the same error
    /// back without running the body (a declined payment stays declined).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) {
    /// use redisx_runtime::idempotency::IdempotencyOptions;
    ///
    /// #[derive(Debug, serde::Serialize, serde::Deserialize)]
    /// enum ChargeError { Declined, Redis(String) }
    /// impl From<redisx_runtime::Error> for ChargeError {
    ///     fn from(e: redisx_runtime::Error) -> Self { Self::Redis(e.to_string()) }
    /// }
    ///
    /// let out: Result<u64, ChargeError> = rx
    ///     .idempotency()
    ///     .run_recording_errors("payment:abc", "fp", &IdempotencyOptions::new(), async {
    ///         Err(ChargeError::Declined)
    ///     })
    ///     .await;
    /// # let _ = out;
    /// # }
    /// ```
    pub fn run_recording_errors<T, E, F>(
        &self,
        key: &str,
        fingerprint: &str,
        opts: &IdempotencyOptions,
        body: F,
    ) -> impl Future<Output = std::result::Result<T, E>>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error> + Serialize + DeserializeOwned,
        F: Future<Output = std::result::Result<T, E>>,
    {
        // Boxed for the reason given in `run`.
        self.run_with::<T, E, _, Recorded<E>>(key, fingerprint, opts, Box::pin(body))
    }

    /// [`run`](Self::run) (`R` = [`NotRecorded`]) or
    /// [`run_recording_errors`](Self::run_recording_errors) (`R` = [`Recorded`]) on a body
    /// boxed already (those two box it; so does the attribute's call site).
    pub(crate) async fn run_with<T, E, F, R>(
        &self,
        key: &str,
        fingerprint: &str,
        opts: &IdempotencyOptions,
        body: Pin<Box<F>>,
    ) -> std::result::Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        F: Future<Output = std::result::Result<T, E>>,
        R: Errors<E>,
    {
        let full = self.inner.keys.full(key);
        if super::already_claimed(&full) {
            // An outer layer of this task holds the key: its claim covers this body.
            return body.await;
        }
        let claim = match self.check(key, fingerprint, opts, true).await {
            Ok(Check::New(claim)) => claim,
            Ok(Check::Replay(Replay {
                error: false,
                result,
            })) => return Ok(decode(key, &result)?),
            Ok(Check::Replay(Replay {
                error: true,
                result,
            })) => {
                return Err(R::decode(key, &result).unwrap_or_else(E::from));
            }
            Err(e) if self.inner.fails_open(&e) => return body.await,
            Err(e) => return Err(e.into()),
        };
        let out = super::CLAIMED.scope(super::claimed_with(full), body).await;
        let (finish, encode_err) = match &out {
            Ok(v) => match encode(v) {
                Ok(bytes) => (Stored::Completed(false, bytes), None),
                Err(e) => (Stored::Failed("unencodable_result"), Some(e)),
            },
            Err(e) => match R::encode(e) {
                Some(Ok(bytes)) => (Stored::Completed(true, bytes), None),
                Some(Err(enc)) => (Stored::Failed("unencodable_error"), Some(enc)),
                None => (Stored::Failed("error"), None),
            },
        };
        if let Some(e) = encode_err {
            tracing::error!(target: "redisx::idempotency", error = %format_args!("{e:#}"), "an idempotent call's outcome cannot be stored; the key is marked failed (duplicates get IDEMPOTENCY_PREVIOUS_FAILED until it expires)");
        }
        self.store(claim, &finish).await;
        out
    }

    /// Stores a claim's outcome; a failure is logged and counted, never returned (the body
    /// already ran).
    async fn store(&self, claim: Claim, finish: &Stored) {
        let outcome = match finish {
            Stored::Completed(error, bytes) => Finish::Completed {
                error: *error,
                result: bytes,
            },
            Stored::Failed(reason) => Finish::Failed(reason),
        };
        let why = match claim.finish(outcome).await {
            Ok(true) => return,
            Ok(false) => "the claim was lost (taken over or deleted)".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        self.inner.metrics.store_failures.inc();
        tracing::error!(target: "redisx::idempotency", error = why, "an idempotent call ran but its outcome could not be stored; duplicates see the claim until its lease runs out, then one runs the body again");
    }
}

/// A claim's outcome, owned for the store.
enum Stored {
    Completed(bool, Vec<u8>),
    Failed(&'static str),
}

impl super::Shared {
    /// Whether a failed check lets the body run unprotected: a Redis failure under
    /// [`ErrorPolicy::FailOpen`].
    pub(crate) fn fails_open(&self, e: &Error) -> bool {
        self.cfg.error_policy == ErrorPolicy::FailOpen && is_redis_failure(e.code())
    }

    /// Logs a check that failed open, at most once per error code every 5 s.
    pub(crate) fn warn_fail_open(&self, e: &Error) {
        if let Some(held_back) = self.warnings.admit(&e.code(), std::time::Instant::now()) {
            tracing::warn!(target: "redisx::idempotency", error = %format_args!("{e:#}"), held_back, "an idempotency check failed; the call runs unprotected (fail open)");
        }
    }
}

/// Errors of Redis itself (not of the key or the record); `SCRIPT_ERROR` is an operation
/// error.
fn is_redis_failure(code: ErrorCode) -> bool {
    matches!(code.family(), "connection" | "operation")
}
