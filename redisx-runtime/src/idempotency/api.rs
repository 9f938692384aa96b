//! The public calls of the idempotency plugin: `check_and_lock` (with waiting), `complete`,
//! `fail`, `get`, `delete`, `full_key`, `stats`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tracing::field::Empty;

use super::claim::{Claim, Finish};
use super::config::Resolved;
use super::record::{Checked, Record};
use super::stats::{IdempotencyStats, Outcome};
use super::{Idempotency, IdempotencyOptions, Shared, scripts};
use crate::error::{Error, ErrorCode, Result};
use crate::key;
use crate::millis;

/// What [`Idempotency::check_and_lock`] found.
#[derive(Debug)]
pub enum Check {
    /// The key is this call's: run the body, then [`complete`](Idempotency::complete) or
    /// [`fail`](Idempotency::fail) the claim.
    New(Claim),
    /// An earlier call with the same fingerprint finished: its recorded outcome.
    Replay(Replay),
}

/// The recorded outcome of an earlier call, replayed to a duplicate.
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// use redisx_runtime::idempotency::{Check, IdempotencyOptions};
///
/// if let Check::Replay(r) = rx.idempotency().check_and_lock("job:7", "fp", &IdempotencyOptions::new()).await? {
///     assert!(!r.is_recorded_error());
///     let receipt: serde_json::Value = serde_json::from_slice(r.result()).unwrap();
///     # let _ = receipt;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub(crate) error: bool,
    pub(crate) result: Vec<u8>,
}

impl Replay {
    /// Whether the outcome is a recorded `Err` (`record_errors`).
    pub fn is_recorded_error(&self) -> bool {
        self.error
    }

    /// The encoded outcome, as the first call stored it.
    pub fn result(&self) -> &[u8] {
        &self.result
    }

    /// The encoded outcome, owned.
    pub fn into_result(self) -> Vec<u8> {
        self.result
    }
}

impl Idempotency {
    /// Checks `key` and claims it when it is free: [`Check::New`] with a [`Claim`] (the caller
    /// runs the body, then completes or fails the claim), or [`Check::Replay`] with the
    /// outcome of an earlier call with the same `fingerprint`. One script, one round trip,
    /// unless another call runs the key right now: then this one waits (up to the `wait`
    /// option) to be woken by its completion, and replays it; or takes over when the owner's
    /// lease runs out (the owner died).
    ///
    /// Errors: `IDEMPOTENCY_FINGERPRINT_MISMATCH` (the key was used by a call with another
    /// fingerprint), `IDEMPOTENCY_PREVIOUS_FAILED` (the last attempt failed; a retry may run
    /// once the failed record expires, after the lock ttl), `IDEMPOTENCY_IN_PROGRESS` (still
    /// running after `wait`), `IDEMPOTENCY_KEY_INVALID`, `IDEMPOTENCY_RECORD_INVALID`, and
    /// Redis errors (whatever the error policy: only [`run`](Self::run) fails open).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use redisx_runtime::idempotency::{Check, IdempotencyOptions};
    ///
    /// let idem = rx.idempotency();
    /// match idem.check_and_lock("refund:42", "fp-of-the-request", &IdempotencyOptions::new()).await? {
    ///     Check::New(claim) => {
    ///         // ... the side effect ...
    ///         idem.complete(claim, b"{\"refunded\":true}").await?;
    ///     }
    ///     Check::Replay(r) => println!("replayed {} bytes", r.result().len()),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn check_and_lock(
        &self,
        key: &str,
        fingerprint: &str,
        opts: &IdempotencyOptions,
    ) -> Result<Check> {
        self.check(key, fingerprint, opts, false).await
    }

    /// [`check_and_lock`](Self::check_and_lock) for a caller that runs unprotected when it
    /// fails open (`may_fail_open`): such a failure is counted and logged as `fail_open`,
    /// not as an error.
    pub(crate) async fn check(
        &self,
        key: &str,
        fingerprint: &str,
        opts: &IdempotencyOptions,
        may_fail_open: bool,
    ) -> Result<Check> {
        let resolved = self.inner.cfg.resolve(opts)?;
        self.inner.check_key(key)?;
        let full = self.inner.keys.full(key);
        let span = tracing::debug_span!(target: "redisx::idempotency", "idempotency.check",
            otel.kind = "internal",
            db.system = "redis",
            idempotency.key = Empty,
            idempotency.outcome = Empty,
            otel.status_code = Empty,
            error.type = Empty,
        );
        if self.inner.record_keys {
            span.record("idempotency.key", key);
        }
        let (out, mut outcome) = traced!(
            self.inner.check_waiting(key, &full, fingerprint, &resolved),
            span
        );
        if let Err(e) = &out
            && may_fail_open
            && self.inner.fails_open(e)
        {
            self.inner.warn_fail_open(e);
            outcome = Outcome::FailOpen;
        }
        self.inner.metrics.outcome(outcome);
        span.record("idempotency.outcome", outcome.as_str());
        if let Err(e) = &out {
            if outcome == Outcome::Error {
                span.record("otel.status_code", "ERROR");
            }
            span.record("error.type", e.code().as_str());
        }
        out
    }

    /// Stores `result` as the outcome of `claim` (for the record ttl) and wakes the waiting
    /// duplicates in every instance. `Ok(false)`: the claim was lost (its lease ran out and
    /// another call took the key over, or the record was deleted): nothing was stored. A
    /// Redis error is retried up to `store_attempts` times.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX, claim: redisx_runtime::idempotency::Claim) -> redisx_runtime::Result<()> {
    /// if !rx.idempotency().complete(claim, b"done").await? {
    ///     eprintln!("the claim was lost; a duplicate may run the work again");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn complete(&self, claim: Claim, result: &[u8]) -> Result<bool> {
        claim
            .finish(Finish::Completed {
                error: false,
                result,
            })
            .await
    }

    /// Stores `error` as a recorded error outcome of `claim` (replayed like a result, as
    /// `record_errors` does). See [`complete`](Self::complete).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX, claim: redisx_runtime::idempotency::Claim) -> redisx_runtime::Result<()> {
    /// rx.idempotency().complete_with_error(claim, br#"{"declined":"insufficient funds"}"#).await?;
    /// # Ok(()) }
    /// ```
    pub async fn complete_with_error(&self, claim: Claim, error: &[u8]) -> Result<bool> {
        claim
            .finish(Finish::Completed {
                error: true,
                result: error,
            })
            .await
    }

    /// Marks `claim` failed with `reason` for the lock ttl: duplicates in that time get
    /// `IDEMPOTENCY_PREVIOUS_FAILED`; after it, a retry runs. `Ok(false)`: the claim was lost.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX, claim: redisx_runtime::idempotency::Claim) -> redisx_runtime::Result<()> {
    /// rx.idempotency().fail(claim, "gateway_timeout").await?;
    /// # Ok(()) }
    /// ```
    pub async fn fail(&self, claim: Claim, reason: &str) -> Result<bool> {
        claim.finish(Finish::Failed(reason)).await
    }

    /// The record of `key`, or `None`.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// if let Some(r) = rx.idempotency().get("payment:abc").await? {
    ///     println!("{:?} since {:?}", r.status(), r.started_at());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, key: &str) -> Result<Option<Record>> {
        self.inner.check_key(key)?;
        self.inner.read(&self.inner.keys.full(key)).await
    }

    /// Deletes the record of `key` (an admin call: a call running it loses its claim, and
    /// the next call runs again). `true` when there was one.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// rx.idempotency().delete("payment:abc").await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, key: &str) -> Result<bool> {
        self.inner.check_key(key)?;
        let full = self.inner.keys.full(key);
        let n: i64 = self
            .inner
            .client()?
            .query(redis::cmd("DEL").arg(&full))
            .await?;
        Ok(n == 1)
    }

    /// The Redis key of the record of `key`: `{app prefix}{idempotency prefix}{key}`.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) {
    /// // With `.key_prefix("myapp:")` on the builder and the default prefix:
    /// assert_eq!(rx.idempotency().full_key("payment:abc"), "myapp:idem:payment:abc");
    /// # }
    /// ```
    pub fn full_key(&self, key: &str) -> String {
        self.inner.keys.full(key)
    }

    /// Counters of the idempotent calls since the runtime started.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) {
    /// println!("{} replayed", rx.idempotency().stats().replayed);
    /// # }
    /// ```
    pub fn stats(&self) -> IdempotencyStats {
        self.inner.metrics.stats()
    }
}

impl Shared {
    pub(crate) fn check_key(&self, key: &str) -> Result<()> {
        key::check(key, self.cfg.max_key_len, ErrorCode::IdempotencyKeyInvalid)
    }

    /// Reads a record (`HGETALL`).
    pub(crate) async fn read(&self, full: &str) -> Result<Option<Record>> {
        let fields = self
            .client()?
            .query(redis::cmd("HGETALL").arg(full))
            .await?;
        Record::from_fields(full, fields)
    }

    /// One check-and-lock script call.
    async fn check_once(
        &self,
        full: &str,
        fp: &str,
        owner: &str,
        lock_ttl: Duration,
    ) -> Result<Checked> {
        let mut inv = scripts::CHECK.script.prepare_invoke();
        inv.key(full)
            .arg(fp)
            .arg(owner)
            .arg(millis(lock_ttl).max(1));
        let reply: redis::Value = self.client()?.invoke(&inv).await?;
        Checked::parse(full, reply)
    }

    /// Checks until the key is claimed, replayed or refused, waiting for a running call.
    async fn check_waiting(
        self: &Arc<Self>,
        key: &str,
        full: &str,
        fp: &str,
        r: &Resolved,
    ) -> (Result<Check>, Outcome) {
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => return (Err(e), Outcome::Error),
        };
        // Registered before the first check, so a completion published after it is seen.
        let mut slot = self.waits.wait(full);
        let owner = format!("{:032x}", rand::random::<u128>());
        let begun = Instant::now();
        let deadline = tokio::time::Instant::now() + r.wait;
        let mut waited = false;
        let done = |out: (Result<Check>, Outcome), waited: bool| {
            if waited {
                self.metrics.wait.observe(begun.elapsed().as_secs_f64());
            }
            out
        };
        loop {
            let left = match self.check_once(full, fp, &owner, r.lock_ttl).await {
                Err(e) => return done((Err(e), Outcome::Error), waited),
                Ok(Checked::Processing(left)) => left,
                Ok(Checked::Claimed(previous)) => {
                    let takeover = previous.is_some();
                    let claim = self.claim(key, full, owner, r, takeover);
                    let outcome = if takeover {
                        Outcome::Takeover
                    } else {
                        Outcome::New
                    };
                    return done((Ok(Check::New(claim)), outcome), waited);
                }
                Ok(Checked::Mismatch) => {
                    return done((Err(mismatch(key)), Outcome::Mismatch), waited);
                }
                Ok(Checked::Completed { error, result }) => {
                    return done(
                        (Ok(Check::Replay(Replay { error, result })), Outcome::Replay),
                        waited,
                    );
                }
                Ok(Checked::Failed { reason, left }) => {
                    return done(
                        (
                            Err(previous_failed(key, &reason, Some(left))),
                            Outcome::PreviousFailed,
                        ),
                        waited,
                    );
                }
            };
            if !waited {
                // The subscription starts with the first wait; once established it re-reads
                // every waited-on record, so a completion published before is not missed.
                self.waits.listen(self, client);
            }
            waited = true;
            // Past the lease (plus a margin for the clocks), the owner may be dead: check again.
            let lease_end =
                tokio::time::Instant::now() + left + left / 20 + Duration::from_millis(5);
            loop {
                let at = if self.waits.subscribed() {
                    lease_end
                } else {
                    lease_end.min(tokio::time::Instant::now() + self.cfg.recheck)
                };
                tokio::select! {
                    seen = slot.changed() => match &*seen {
                        None => break,
                        Some(rec) => match rec.status {
                            super::Status::Processing => {}
                            super::Status::Failed => {
                                return done((Err(previous_failed(key, &rec.reason, None)), Outcome::PreviousFailed), waited);
                            }
                            super::Status::Completed if rec.fingerprint != fp => {
                                return done((Err(mismatch(key)), Outcome::Mismatch), waited);
                            }
                            super::Status::Completed => {
                                let replay = Replay { error: rec.error_recorded, result: rec.result.clone() };
                                return done((Ok(Check::Replay(replay)), Outcome::Replay), waited);
                            }
                        },
                    },
                    () = tokio::time::sleep_until(at) => break,
                    () = tokio::time::sleep_until(deadline) => {
                        return done((Err(in_progress(key, r.wait)), Outcome::InProgress), waited);
                    }
                }
            }
        }
    }

    /// A claim of `full` by `owner`, renewing its lease from now on.
    fn claim(
        self: &Arc<Self>,
        key: &str,
        full: &str,
        owner: String,
        r: &Resolved,
        takeover: bool,
    ) -> Claim {
        let mut claim = Claim {
            shared: self.clone(),
            key: key.to_owned(),
            full: full.to_owned(),
            owner,
            ttl: r.ttl,
            lock_ttl: r.lock_ttl,
            takeover,
            started: Instant::now(),
            lost: Arc::new(AtomicBool::new(false)),
            renewal: None,
            finished: false,
        };
        claim.renew_in_background();
        claim
    }
}

fn mismatch(key: &str) -> Error {
    Error::new(
        ErrorCode::IdempotencyFingerprintMismatch,
        "the idempotency key was used by a request with other content (another fingerprint)",
    )
    .with_context("key", key.to_owned())
}

fn previous_failed(key: &str, reason: &str, left: Option<Duration>) -> Error {
    let after = left.map_or_else(String::new, |d| format!(" in {} ms", d.as_millis()));
    Error::new(
        ErrorCode::IdempotencyPreviousFailed,
        format!("the last call with this idempotency key failed ({reason}); a retry may run once its record expires{after}"),
    )
    .with_context("key", key.to_owned())
    .with_context("reason", reason.to_owned())
}

fn in_progress(key: &str, wait: Duration) -> Error {
    Error::new(
        ErrorCode::IdempotencyInProgress,
        format!(
            "a call with this idempotency key is still running after waiting {} ms",
            wait.as_millis()
        ),
    )
    .with_context("key", key.to_owned())
}
