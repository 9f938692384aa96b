//! A claimed key ([`Claim`]): its lease renewed while the body runs, finished once (completed
//! or failed), and marked failed with the reason `cancelled` when dropped unfinished.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::Shared;
use super::scripts;
use crate::error::Result;
use crate::millis;

/// The outcome stored by [`Claim`]'s finish.
pub(crate) enum Finish<'a> {
    /// Completed: whether the value is a recorded error, and its encoding.
    Completed { error: bool, result: &'a [u8] },
    /// Failed, for this reason.
    Failed(&'a str),
}

/// A key this call claimed: it runs the body, then stores the outcome with
/// [`Idempotency::complete`](super::Idempotency::complete) or
/// [`Idempotency::fail`](super::Idempotency::fail). While it lives, its lease is renewed every
/// third of the lock ttl, so a slow body is never mistaken for a dead owner. Dropped
/// unfinished (the future was cancelled), the record is marked failed with the reason
/// `cancelled` at once: a side effect may have happened, so it is never silently released,
/// and duplicates get `IDEMPOTENCY_PREVIOUS_FAILED` instead of waiting out the lease.
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// use redisx_runtime::idempotency::{Check, Fingerprint, IdempotencyOptions};
///
/// let mut fp = Fingerprint::new();
/// fp.arg("amount", &100);
/// let fp = fp.finish()?;
/// match rx.idempotency().check_and_lock("payment:abc", &fp, &IdempotencyOptions::new()).await? {
///     Check::New(claim) => {
///         let receipt = br#"{"id":"r-1"}"#; // ... charge the card ...
///         rx.idempotency().complete(claim, receipt).await?;
///     }
///     Check::Replay(replay) => println!("already done: {:?}", replay.result()),
/// }
/// # Ok(()) }
/// ```
#[must_use = "a claim dropped unfinished marks its key failed (`cancelled`)"]
pub struct Claim {
    pub(crate) shared: Arc<Shared>,
    pub(crate) key: String,
    pub(crate) full: String,
    pub(crate) owner: String,
    pub(crate) ttl: Duration,
    pub(crate) lock_ttl: Duration,
    pub(crate) takeover: bool,
    pub(crate) started: Instant,
    /// Set when a renewal found the claim gone or taken over.
    pub(crate) lost: Arc<AtomicBool>,
    pub(crate) renewal: Option<tokio::task::AbortHandle>,
    pub(crate) finished: bool,
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim")
            .field("key", &self.key)
            .field("takeover", &self.takeover)
            .finish_non_exhaustive()
    }
}

impl Claim {
    /// The key (as given, without prefixes).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The owner token this claim holds the record with.
    pub fn owner_token(&self) -> &str {
        &self.owner
    }

    /// Whether this call took the key over from an owner whose lease ran out (that owner may
    /// have done part of the work).
    pub fn is_takeover(&self) -> bool {
        self.takeover
    }

    /// Whether a renewal found the record gone or claimed by another owner (the process was
    /// paused or cut off from Redis for longer than the lock ttl): the outcome will not be
    /// stored.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Starts renewing the lease (every third of the lock ttl) until the claim finishes.
    pub(crate) fn renew_in_background(&mut self) {
        let (shared, full, owner) = (self.shared.clone(), self.full.clone(), self.owner.clone());
        let (lost, lock_ttl) = (self.lost.clone(), self.lock_ttl);
        let task = tokio::spawn(async move {
            let every = (lock_ttl / 3).max(Duration::from_millis(1));
            loop {
                tokio::time::sleep(every).await;
                match shared.renew(&full, &owner, lock_ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        lost.store(true, Ordering::Relaxed);
                        tracing::warn!(target: "redisx::idempotency", key = %shared.shown(&full), "an idempotency claim was lost while its body ran (expired or taken over); its outcome will not be stored");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(target: "redisx::idempotency", error = %format_args!("{e:#}"), "renewing an idempotency claim failed; retrying at the next renewal");
                    }
                }
            }
        });
        self.renewal = Some(task.abort_handle());
    }

    fn stop_renewal(&mut self) {
        if let Some(r) = self.renewal.take() {
            r.abort();
        }
    }

    /// Stores the outcome (with `store_attempts` tries on a Redis error). `Ok(false)`: the
    /// claim was lost, nothing changed.
    pub(crate) async fn finish(mut self, outcome: Finish<'_>) -> Result<bool> {
        self.finished = true;
        self.stop_renewal();
        let stored = self
            .shared
            .finish(&self.full, &self.owner, &outcome, self.ttl, self.lock_ttl)
            .await;
        self.shared
            .metrics
            .duration
            .observe(self.started.elapsed().as_secs_f64());
        if matches!(stored, Ok(false)) {
            tracing::warn!(target: "redisx::idempotency", key = %self.shared.shown(&self.full), "an idempotency claim finished after it was lost (expired or taken over); its outcome was not stored");
        }
        stored
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.stop_renewal();
        if self.finished {
            return;
        }
        let (shared, full, owner, lock_ttl) = (
            self.shared.clone(),
            std::mem::take(&mut self.full),
            std::mem::take(&mut self.owner),
            self.lock_ttl,
        );
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(target: "redisx::idempotency", "an idempotency claim was dropped outside a tokio runtime; duplicates wait until its lease runs out");
            return;
        };
        handle.spawn(async move {
            let failed = Finish::Failed("cancelled");
            if let Err(e) = shared.finish(&full, &owner, &failed, lock_ttl, lock_ttl).await {
                tracing::warn!(target: "redisx::idempotency", key = %shared.shown(&full), error = %format_args!("{e:#}"), "a cancelled idempotent call could not be marked failed; duplicates wait until its lease runs out");
            }
        });
    }
}

impl Shared {
    /// Extends the lease of `owner`'s claim on `full`: `false` when it is no longer theirs.
    pub(crate) async fn renew(&self, full: &str, owner: &str, lock_ttl: Duration) -> Result<bool> {
        let mut inv = scripts::RENEW.script.prepare_invoke();
        inv.key(full).arg(owner).arg(millis(lock_ttl).max(1));
        let n: i64 = self.client()?.invoke(&inv).await?;
        Ok(n == 1)
    }

    /// Runs the finish script, retrying a Redis error up to `store_attempts` times.
    pub(crate) async fn finish(
        &self,
        full: &str,
        owner: &str,
        outcome: &Finish<'_>,
        ttl: Duration,
        lock_ttl: Duration,
    ) -> Result<bool> {
        let client = self.client()?;
        let (state, ttl, kind, result, reason): (&str, Duration, &str, &[u8], &str) = match outcome
        {
            Finish::Completed { error, result } => (
                "completed",
                ttl,
                if *error { "err" } else { "ok" },
                result,
                "",
            ),
            Finish::Failed(reason) => ("failed", lock_ttl, "", b"", reason),
        };
        let mut inv = scripts::FINISH.script.prepare_invoke();
        inv.key(full)
            .arg(owner)
            .arg(state)
            .arg(millis(ttl).max(1))
            .arg(kind)
            .arg(result)
            .arg(reason)
            .arg(&self.channel);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match client.invoke::<i64>(&inv).await {
                Ok(n) => return Ok(n == 1),
                Err(e) if attempt < self.cfg.store_attempts && e.is_retryable() => {
                    let backoff = Duration::from_millis(50u64 << (attempt - 1).min(6));
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
