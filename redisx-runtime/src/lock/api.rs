//! The public calls of the lock service: `acquire`, `try_acquire`, `with_lock`, `is_locked`,
//! `force_release`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::config::Resolved;
use super::guard::{Held, Taken};
use super::stats::Outcome;
use super::wake::{Turn, Waiter};
use super::{
    FENCE_COUNTER_GRACE, Kind, LockCall, LockGuard, LockKeys, LockOptions, Locks, Shared, renew,
    scripts,
};
use crate::error::{Error, ErrorCode, Result};
use crate::millis;

/// How many attempts a call may make: one, or by the retry settings.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempts {
    One,
    Retry,
}

impl Locks {
    /// Acquires the lock on `key`, retrying while another owner holds it: up to `retries`
    /// more times, or until the `wait` budget is spent when one is set (see [`LockOptions`]),
    /// sleeping by the retry strategy in between. Gives up with
    /// [`ErrorCode::LockAcquisitionTimeout`] (its `attempts` context says how many were made).
    /// Fails closed: a Redis error (down, timeout) is returned at once, as its own code.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::ErrorCode;
    /// use redisx_runtime::lock::LockOptions;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let opts = LockOptions::new().wait(Duration::from_secs(5));
    /// match rx.locks().acquire("invoice:2024-001", &opts).await {
    ///     Ok(guard) => {
    ///         // ... issue the invoice ...
    ///         guard.release().await?;
    ///     }
    ///     Err(e) if e.code() == ErrorCode::LockAcquisitionTimeout => {
    ///         eprintln!("someone else is issuing it: {e}");
    ///     }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn acquire(&self, key: &str, opts: &LockOptions) -> Result<LockGuard> {
        match self
            .acquire_with(key, Kind::Lock, opts, Attempts::Retry)
            .await?
        {
            Ok(guard) => Ok(guard),
            Err(attempts) => Err(Error::new(
                ErrorCode::LockAcquisitionTimeout,
                "the lock stayed held by another owner through every attempt",
            )
            .with_context("key", key)
            .with_context("attempts", attempts.to_string())),
        }
    }

    /// Makes exactly one attempt: `Ok(None)` when another owner holds the lock.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use redisx_runtime::lock::LockOptions;
    ///
    /// // A periodic job that one instance runs, the others skip.
    /// if let Some(guard) = rx.locks().try_acquire("cron:cleanup", &LockOptions::new()).await? {
    ///     // ... clean up ...
    ///     guard.release().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_acquire(&self, key: &str, opts: &LockOptions) -> Result<Option<LockGuard>> {
        Ok(self
            .acquire_with(key, Kind::Lock, opts, Attempts::One)
            .await?
            .ok())
    }

    /// Runs `body` holding the lock on `key`, then releases it. The body never runs when the
    /// lock is not acquired (the acquisition's error, converted into `E`, is returned). The
    /// body's error reaches the caller unchanged, after the release. When the body succeeded
    /// but the release fails (Redis down, or the lock expired meanwhile), the body's result is
    /// returned; the release error is logged and counted (`redisx_lock_release_errors_total`).
    /// A lock lost while the body runs stops the body with [`ErrorCode::LockExpired`]
    /// ([`with_lock_using`](Self::with_lock_using) chooses otherwise); the body reads the
    /// lock's fencing token with [`fencing_token`](super::fencing_token).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::lock::LockOptions;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let opts = LockOptions::new().ttl(Duration::from_secs(10)).wait(Duration::from_secs(3));
    /// let settled = rx
    ///     .locks()
    ///     .with_lock("order:7", &opts, async {
    ///         // ... settle the order; runs on one instance at a time ...
    ///         Ok::<_, redisx_runtime::Error>(true)
    ///     })
    ///     .await?;
    /// assert!(settled);
    /// # Ok(()) }
    /// ```
    pub fn with_lock<T, E, F>(
        &self,
        key: &str,
        opts: &LockOptions,
        body: F,
    ) -> impl Future<Output = Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
        E: From<Error>,
    {
        let call = LockCall::from(opts.clone());
        // Boxed now, for the reason given in `with_lock_using`.
        let body = Box::pin(body);
        async move { self.with_lock_boxed(key, &call, body).await }
    }

    /// Whether any owner holds the lock on `key` right now.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// if rx.locks().is_locked("migration:v42").await? {
    ///     println!("a migration is running");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn is_locked(&self, key: &str) -> Result<bool> {
        let keys = self.inner.lock_keys(key)?;
        let client = self.inner.client()?;
        let n: i64 = client
            .query(redis::cmd("EXISTS").arg(&keys.lock))
            .await
            .map_err(|e| e.with_context("key", key))?;
        Ok(n == 1)
    }

    /// Removes the lock on `key` whoever holds it (an administrator's call, for a holder known
    /// to be dead): `true` when a lock was removed. Waiters are told on the lock's channel. The
    /// holder, if alive, finds out at its next renewal ([`LockGuard::lost`]); its fencing
    /// token stays smaller than the next holder's.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let removed = rx.locks().force_release("job:stuck").await?;
    /// println!("removed a lock: {removed}");
    /// # Ok(()) }
    /// ```
    pub async fn force_release(&self, key: &str) -> Result<bool> {
        let keys = self.inner.lock_keys(key)?;
        let client = self.inner.client()?;
        let n: i64 = client
            .eval(
                &scripts::FORCE_RELEASE.script,
                &[&keys.lock],
                &[keys.channel.as_str(), "forced"],
            )
            .await
            .map_err(|e| e.with_context("key", key))?;
        Ok(n == 1)
    }

    /// The acquisition loop of a lock or a permit: `Ok(Ok(guard))`, `Ok(Err(attempts made))`
    /// when it stayed busy, `Err` on a Redis or argument error. Within a `lock.acquire` span.
    pub(crate) async fn acquire_with(
        &self,
        key: &str,
        kind: Kind,
        opts: &LockOptions,
        attempts: Attempts,
    ) -> Result<Result<LockGuard, u32>> {
        let shared = &self.inner;
        let plan = shared.cfg.resolve(opts)?;
        let keys = shared.keys_of(key, kind)?;
        let permits = match kind {
            Kind::Lock => None,
            Kind::Permit(n) => Some(n),
        };
        let span = tracing::debug_span!(target: "redisx::lock", "lock.acquire",
            otel.kind = "internal",
            lock.key = shared.record_keys.then_some(key),
            lock.permits = permits,
            lock.ttl_ms = millis(plan.ttl),
            lock.attempts = tracing::field::Empty,
            lock.acquired = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let start = Instant::now();
        let (out, made) = traced!(self.attempts(key, &keys, &plan, attempts), span);
        shared.metrics.wait.observe(start.elapsed().as_secs_f64());
        span.record("lock.attempts", made);
        let outcome = match &out {
            Ok(Ok(_)) => Outcome::Acquired,
            Ok(Err(_)) if attempts == Attempts::One => Outcome::Busy,
            Ok(Err(_)) => Outcome::Timeout,
            Err(_) => Outcome::Error,
        };
        shared.metrics.outcome(outcome);
        span.record("lock.acquired", outcome == Outcome::Acquired);
        if let Err(e) = &out {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", e.code().as_str());
        }
        out.map_err(|e| e.with_context("key", key))
    }

    /// Attempts until acquired or out of attempts; also returns how many were made. Between
    /// attempts the caller sleeps by the retry strategy. Callers of this process waiting on
    /// one key queue in arrival order and only the head of the queue sends attempts; a
    /// newcomer tries first only when nobody here waits on the key. A caller in line waits
    /// for its turn no longer than its strategy would have kept trying (the `wait` budget,
    /// or the longest its remaining retries can take), and the retries that fit in the time
    /// it waited count as spent. A release of the lock (here or elsewhere) wakes the head,
    /// which tries again at once; if that try loses, it sleeps out the rest of the same
    /// interval, so tries on a release spend no retry. A semaphore's new head tries at once
    /// (the caller before it took one permit; another may be free), a lock's does not.
    async fn attempts(
        &self,
        key: &str,
        keys: &LockKeys,
        plan: &Resolved,
        attempts: Attempts,
    ) -> (Result<Result<LockGuard, u32>>, u32) {
        let shared = &self.inner;
        let budget_end = plan.wait.map(|w| Instant::now() + w);
        let mut made = 0u32;
        // Full sleeps of the retry strategy so far.
        let mut slept = 0u32;
        let mut try_now = attempts == Attempts::One || !shared.wakeups.queued(&keys.lock);
        let mut waiter: Option<Waiter<'_>> = None;
        // This caller's turn at the head of the queue.
        let mut turn: Option<Turn> = None;
        // The end of the sleep a release interrupted.
        let mut until: Option<tokio::time::Instant> = None;
        loop {
            if try_now {
                made = made.saturating_add(1);
                match self.attempt(key, keys, plan, attempts).await {
                    Ok(Some(guard)) => return (Ok(Ok(guard)), made),
                    Ok(None) => {}
                    Err(e) => return (Err(e), made),
                }
                if attempts == Attempts::One {
                    return (Ok(Err(made)), made);
                }
            }
            let waiter = waiter.get_or_insert_with(|| shared.waiter(keys));
            if turn.is_none() {
                turn = waiter.try_turn();
            }
            if turn.is_none() {
                // In line behind others: no attempts, no wake-ups.
                let queued_at = Instant::now();
                let give_up = budget_end
                    .unwrap_or_else(|| queued_at + plan.retry.remaining(slept, plan.retries));
                tokio::select! {
                    t = waiter.turn() => turn = Some(t),
                    () = tokio::time::sleep_until(give_up.into()) => return (Ok(Err(made)), made),
                }
                if budget_end.is_none() {
                    let spent = plan.retry.spent(slept, plan.retries, queued_at.elapsed());
                    slept = slept.saturating_add(spent);
                }
                // The caller ahead just took a permit; another may be free.
                if matches!(keys.kind, Kind::Permit(n) if n > 1) {
                    try_now = true;
                    continue;
                }
            }
            let end = if let Some(end) = until.take() {
                end
            } else {
                let sleep = plan.retry.sleep(slept.saturating_add(1), plan.jitter);
                let more = match budget_end {
                    Some(end) => Instant::now() + sleep <= end,
                    None => slept < plan.retries,
                };
                if !more {
                    return (Ok(Err(made)), made);
                }
                tokio::time::Instant::now() + sleep
            };
            tokio::select! {
                () = tokio::time::sleep_until(end) => {
                    slept = slept.saturating_add(1);
                    until = None;
                }
                () = waiter.released() => until = Some(end),
            }
            try_now = true;
        }
    }

    /// One attempt: the acquire script. `Ok(None)` when another owner holds the lock (then,
    /// when the caller will retry, it is flagged as a waiter for the release to tell).
    async fn attempt(
        &self,
        key: &str,
        keys: &LockKeys,
        plan: &Resolved,
        attempts: Attempts,
    ) -> Result<Option<LockGuard>> {
        let shared = &self.inner;
        let client = shared.client()?;
        let token = format!("{:032x}", rand::random::<u128>());
        let mut in_flight = InFlight {
            shared,
            keys,
            token: &token,
            armed: true,
        };
        let sent = Instant::now();
        let ttl = millis(plan.ttl).to_string();
        let counter_ttl = millis(plan.ttl + FENCE_COUNTER_GRACE).to_string();
        let waits = if attempts == Attempts::Retry {
            "1"
        } else {
            "0"
        };
        let lock_args;
        let sem_args;
        let permits;
        let (script, args): (_, &[&str]) = match keys.kind {
            Kind::Lock => {
                lock_args = [token.as_str(), &ttl, &counter_ttl, waits];
                (&scripts::ACQUIRE, &lock_args)
            }
            Kind::Permit(n) => {
                permits = n.to_string();
                sem_args = [token.as_str(), &ttl, &permits, &counter_ttl, waits];
                (&scripts::SEM_ACQUIRE, &sem_args)
            }
        };
        let lock_keys = [
            keys.lock.as_str(),
            keys.fence.as_str(),
            keys.waiters.as_str(),
        ];
        let (reply, acked): (Result<(i64, i64)>, Option<u64>) = match plan.wait_replicas {
            None => (client.eval(&script.script, &lock_keys, args).await, None),
            Some(wait) => match shared
                .acquire_replicated(client, script, &lock_keys, args, wait)
                .await
            {
                Ok((reply, acked)) => (Ok(reply), Some(acked)),
                Err(e) => (Err(e), None),
            },
        };
        // Without a reply in time the script may still have run: the lock is given up then.
        in_flight.armed = matches!(&reply, Err(e) if e.code() == ErrorCode::OperationTimeout);
        drop(in_flight);
        let reply = reply?;
        if reply.0 != 1 {
            return Ok(None);
        }
        if let (Some(acked), Some(wait)) = (acked, plan.wait_replicas)
            && acked < u64::from(wait.0)
        {
            if let Err(e) = shared
                .release_by_token(keys, &token, "too few replicas")
                .await
            {
                tracing::warn!(target: "redisx::lock", key, error = %format_args!("{e:#}"), "could not release a lock that reached too few replicas; it expires at its ttl");
            }
            return Err(super::replicas::too_few_replicas(key, acked, wait));
        }
        let fence = u64::try_from(reply.1).unwrap_or(0);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let held = Arc::new(Held::new(
            shared.clone(),
            Taken {
                id,
                key,
                keys: keys.clone(),
                token,
                fence,
                sent,
                ttl: plan.ttl,
                auto_renew: plan.auto_renew,
            },
        ));
        shared.registry().insert(id, held.clone());
        renew::schedule(&held);
        Ok(Some(LockGuard::new(held)))
    }
}

/// One acquisition attempt in flight. Dropped while armed (the caller's future was cancelled
/// before the reply came, or the reply timed out), the script may have taken the lock with
/// nobody to hold it: it is released in the background by its token, instead of being left
/// to its ttl.
struct InFlight<'a> {
    shared: &'a Arc<Shared>,
    keys: &'a LockKeys,
    token: &'a str,
    armed: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (shared, keys, token) = (
            self.shared.clone(),
            self.keys.clone(),
            self.token.to_owned(),
        );
        handle.spawn(async move {
            if let Err(e) = shared.release_by_token(&keys, &token, "abandoned").await {
                tracing::debug!(target: "redisx::lock", error = %format_args!("{e:#}"), "could not give up an abandoned acquisition attempt; its lock expires at its ttl");
            }
        });
    }
}
