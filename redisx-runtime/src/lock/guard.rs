//! [`LockGuard`]: a held lock, its validity deadline, its loss signal, its release.

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::config::safety_margin;
use super::{FENCE_COUNTER_GRACE, Kind, LockKeys, Shared, scripts};
use crate::error::{Error, ErrorCode, Result};
use crate::millis;

/// Where a held lock stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Held,
    /// Released by its guard (`release`, or dropped).
    Released,
    /// Lost while held: expired, deleted or taken over, or not renewed in time.
    Lost,
    /// Released by the runtime's shutdown.
    Stopped,
}

/// The renewal state of a held lock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub(crate) ttl: Duration,
    /// When the last confirmed acquisition or renewal was sent.
    pub(crate) confirmed: Instant,
    /// `confirmed + ttl - margin`: past it, the lock counts as lost.
    pub(crate) deadline: Instant,
    /// When auto-renewal renews it next: a third of the ttl after `confirmed`, sooner after
    /// a failed renewal.
    pub(crate) renew_at: Instant,
}

impl Timing {
    pub(crate) fn new(sent: Instant, ttl: Duration) -> Self {
        Self {
            ttl,
            confirmed: sent,
            deadline: sent + ttl.saturating_sub(safety_margin(ttl)),
            renew_at: sent + ttl / 3,
        }
    }
}

/// What an acquisition that took the lock learned: the lock's identity, its token and fence,
/// and when the winning attempt was sent with which ttl.
pub(crate) struct Taken<'a> {
    pub(crate) id: u64,
    pub(crate) key: &'a str,
    pub(crate) keys: LockKeys,
    pub(crate) token: String,
    pub(crate) fence: u64,
    pub(crate) sent: Instant,
    pub(crate) ttl: Duration,
    pub(crate) auto_renew: bool,
}

/// One held lock, shared by its guard, its renewal task and the plugin's registry.
pub(crate) struct Held {
    pub(crate) id: u64,
    pub(crate) shared: Arc<Shared>,
    key: String,
    pub(crate) keys: LockKeys,
    token: String,
    fence: u64,
    acquired_at: Instant,
    pub(crate) auto_renew: bool,
    timing: Mutex<Timing>,
    status: watch::Sender<Status>,
    /// The generation of its live entry in the renewal queue (older entries are skipped).
    pub(crate) generation: AtomicU64,
}

impl Held {
    pub(crate) fn new(shared: Arc<Shared>, taken: Taken<'_>) -> Self {
        shared.metrics.active.inc();
        Self {
            id: taken.id,
            shared,
            key: taken.key.to_owned(),
            keys: taken.keys,
            token: taken.token,
            fence: taken.fence,
            acquired_at: taken.sent,
            auto_renew: taken.auto_renew,
            timing: Mutex::new(Timing::new(taken.sent, taken.ttl)),
            status: watch::Sender::new(Status::Held),
            generation: AtomicU64::new(0),
        }
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    pub(crate) fn timing(&self) -> Timing {
        *self
            .timing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn status(&self) -> Status {
        *self.status.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Records a confirmed renewal sent at `sent` with `ttl`.
    pub(crate) fn confirm(&self, sent: Instant, ttl: Duration) {
        let mut t = self
            .timing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if sent >= t.confirmed {
            *t = Timing::new(sent, ttl);
        }
    }

    /// Sets the next renewal to `at` (after a failed one).
    pub(crate) fn retry_renewal_at(&self, at: Instant) {
        self.timing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .renew_at = at;
    }

    /// Moves from `Held` to `to`; `true` when this call made the move. The lock stops counting
    /// as active, its hold time is recorded and a loss is counted before the waiters of
    /// `lost()` are woken, so they see the counts.
    fn end(&self, to: Status) -> bool {
        self.status.send_if_modified(|s| {
            if *s != Status::Held {
                return false;
            }
            *s = to;
            let m = &self.shared.metrics;
            m.active.dec();
            m.hold.observe(self.acquired_at.elapsed().as_secs_f64());
            if to == Status::Lost {
                m.lost.inc();
            }
            true
        })
    }

    /// Marks the lock lost (logged once at WARN, counted), unless it already ended.
    pub(crate) fn lose(&self, why: &str) {
        if self.end(Status::Lost) {
            tracing::warn!(target: "redisx::lock", key = self.key, fencing_token = self.fence, "a held lock was lost: {why}");
        }
    }

    /// A release that ended the lock (`Released`) found it expired or held by another owner:
    /// the lock was lost before its release, so the loss is counted and logged once. A loss
    /// seen earlier (renewal, deadline, extend) already ended it as `Lost` and is not counted
    /// again.
    fn lost_at_release(&self, why: &str) {
        let lost = self.status.send_if_modified(|s| {
            if *s != Status::Released {
                return false;
            }
            *s = Status::Lost;
            self.shared.metrics.lost.inc();
            true
        });
        if lost {
            tracing::warn!(target: "redisx::lock", key = self.key, fencing_token = self.fence, "a held lock was lost: {why}");
        }
    }

    /// Marks the lock released by the shutdown.
    pub(crate) fn stop_for_shutdown(&self) {
        self.end(Status::Stopped);
    }

    /// Runs the release script (within a `lock.release` span): `Ok(true)` when the key was
    /// still this owner's and is gone. A Redis error is counted in the release errors.
    pub(crate) async fn release_in_redis(&self) -> Result<bool> {
        let span = tracing::debug_span!(target: "redisx::lock", "lock.release",
            otel.kind = "internal",
            lock.key = self.shared.record_keys.then_some(self.key.as_str()),
            lock.released = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let message = self.fence.to_string();
        let run = self
            .shared
            .release_by_token(&self.keys, &self.token, &message);
        let out: Result<bool> = traced!(run, span);
        match &out {
            Ok(released) => {
                span.record("lock.released", *released);
            }
            Err(e) => {
                self.shared.metrics.release_errors.inc();
                span.record("otel.status_code", "ERROR");
                span.record("error.type", e.code().as_str());
            }
        }
        out
    }

    /// Runs the extend script with `ttl`: `Ok(true)` when the key was still this owner's.
    pub(crate) async fn extend_in_redis(&self, ttl: Duration) -> Result<bool> {
        let client = self.shared.client()?;
        let script = match self.keys.kind {
            Kind::Lock => &scripts::EXTEND.script,
            Kind::Permit(_) => &scripts::SEM_EXTEND.script,
        };
        let n: i64 = client
            .eval(
                script,
                &[&self.keys.lock, &self.keys.fence],
                &[
                    self.token.clone(),
                    millis(ttl).to_string(),
                    millis(ttl + FENCE_COUNTER_GRACE).to_string(),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Leaves the plugin's registry (the shutdown no longer releases it).
    fn unregister(&self) {
        self.shared.registry().remove(&self.id);
    }
}

/// A held lock, from [`Locks::acquire`](super::Locks::acquire) or
/// [`Locks::try_acquire`](super::Locks::try_acquire).
///
/// Release it with [`release`](Self::release). Dropped without it, the lock is released in
/// the background (never left to expire). While held, it is renewed in the background every
/// third of its ttl (unless `auto_renew` is off); [`lost`](Self::lost) resolves when
/// ownership is gone.
///
/// ```no_run
/// use redisx_runtime::lock::LockOptions;
///
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// let guard = rx.locks().acquire("report:daily", &LockOptions::new()).await?;
/// tokio::select! {
///     () = guard.lost() => eprintln!("lost the lock; stopping"),
///     () = tokio::time::sleep(std::time::Duration::from_secs(1)) => println!("work done"),
/// }
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[must_use = "a lock is released as soon as its guard is dropped"]
pub struct LockGuard {
    held: Arc<Held>,
    /// Set once `release` finished, so that the drop does not release again.
    done: bool,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("key", &self.held.key)
            .field("fencing_token", &self.held.fence)
            .field("status", &self.held.status())
            .field("valid_for", &self.valid_for())
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    pub(crate) fn new(held: Arc<Held>) -> Self {
        Self { held, done: false }
    }

    /// The key this lock is on (the user key, without prefixes).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let guard = rx.locks().acquire("order:7", &Default::default()).await?;
    /// assert_eq!(guard.key(), "order:7");
    /// # Ok(()) }
    /// ```
    pub fn key(&self) -> &str {
        &self.held.key
    }

    /// Releases the lock: deletes its key if it is still this owner's, and publishes a
    /// release message on the lock's channel when a caller elsewhere waits for it. Fails with [`ErrorCode::LockNotOwned`] when the
    /// lock expired, another owner holds it (whose key is left untouched) or the runtime's
    /// shutdown released it; with the Redis error when Redis fails (the key then expires at
    /// its ttl). A lock found expired or taken is a loss, logged and counted
    /// (`redisx_lock_lost_total`) once, here unless its renewal found it first.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use redisx_runtime::ErrorCode;
    ///
    /// let guard = rx.locks().acquire("order:7", &Default::default()).await?;
    /// match guard.release().await {
    ///     Ok(()) => {}
    ///     Err(e) if e.code() == ErrorCode::LockNotOwned => eprintln!("held past its ttl: {e}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn release(mut self) -> Result<()> {
        let held = self.held.clone();
        let was = held.status();
        if was == Status::Stopped {
            self.done = true;
            return Err(self.not_owned("the runtime's shutdown released it"));
        }
        // Ended before the script runs, so that no renewal races the release.
        held.end(Status::Released);
        let out = held.release_in_redis().await;
        held.unregister();
        self.done = true;
        match out {
            Ok(true) => Ok(()),
            Ok(false) => {
                held.lost_at_release("it expired or another owner took it before its release");
                Err(self.not_owned(
                    "the lock expired or another owner holds it; that owner's key was left untouched",
                ))
            }
            Err(e) => Err(e.with_context("key", held.key.clone())),
        }
    }

    /// Sets the lock's ttl to `ttl` from now if it is still this owner's (auto-renewal then
    /// goes on with the new ttl). Fails with [`ErrorCode::LockNotOwned`] when it is not,
    /// [`ErrorCode::ConfigInvalid`] for a ttl over the max ttl, and with the Redis error when
    /// Redis fails.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use std::time::Duration;
    ///
    /// let guard = rx.locks().acquire("import:big-file", &Default::default()).await?;
    /// guard.extend(Duration::from_secs(120)).await?; // the next step is slow
    /// # Ok(()) }
    /// ```
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        let held = &self.held;
        held.shared
            .cfg
            .resolve(&super::LockOptions::new().ttl(ttl))?;
        if held.status() != Status::Held {
            return Err(self.not_owned("the lock is no longer held"));
        }
        let sent = Instant::now();
        if held
            .extend_in_redis(ttl)
            .await
            .map_err(|e| e.with_context("key", held.key.clone()))?
        {
            held.confirm(sent, ttl);
            super::renew::schedule(held);
            Ok(())
        } else {
            held.lose("it expired, was deleted or another owner took it (found by extend)");
            Err(self.not_owned("the lock expired, was deleted or another owner holds it"))
        }
    }

    /// Whether the lock still counts as held: not released, not lost, and its local validity
    /// deadline not passed.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let guard = rx.locks().acquire("order:7", &Default::default()).await?;
    /// assert!(guard.is_held());
    /// # Ok(()) }
    /// ```
    pub fn is_held(&self) -> bool {
        self.held.status() == Status::Held && Instant::now() < self.held.timing().deadline
    }

    /// The random token that identifies this owner in Redis (the value of the lock key).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let guard = rx.locks().acquire("order:7", &Default::default()).await?;
    /// assert_eq!(guard.owner_token().len(), 32);
    /// # Ok(()) }
    /// ```
    pub fn owner_token(&self) -> &str {
        &self.held.token
    }

    /// The local validity left: the time until the deadline after which the lock counts as
    /// lost unless a renewal is confirmed before it (zero once released or lost).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let guard = rx.locks().acquire("order:7", &Default::default()).await?;
    /// if guard.valid_for() < std::time::Duration::from_secs(1) {
    ///     eprintln!("not enough time left to start the next step");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn valid_for(&self) -> Duration {
        if self.held.status() != Status::Held {
            return Duration::ZERO;
        }
        self.held
            .timing()
            .deadline
            .saturating_duration_since(Instant::now())
    }

    /// This holder's fencing token: larger than every earlier holder's of the same key (see
    /// [the module documentation](super#fencing-tokens) for exactly what is guaranteed). Pass
    /// it to the protected resource with every write; the resource refuses a token smaller
    /// than the largest it has seen.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let guard = rx.locks().acquire("account:42", &Default::default()).await?;
    /// let fence = guard.fencing_token();
    /// // UPDATE accounts SET balance = $1, fence = $2 WHERE id = 42 AND fence < $2
    /// # let _ = fence;
    /// # Ok(()) }
    /// ```
    pub fn fencing_token(&self) -> u64 {
        self.held.fence
    }

    /// A future that resolves once ownership is gone: the lock was lost (expired, deleted,
    /// taken over, or not renewed before its local validity deadline, even with Redis not
    /// answering), released, or released by the runtime's shutdown. A loss is also logged
    /// once (WARN, target `redisx::lock`) and counted (`redisx_lock_lost_total`). The future
    /// owns what it needs, so it can be moved into another task.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let guard = rx.locks().acquire("job:reindex", &Default::default()).await?;
    /// let work = async { /* the protected work */ };
    /// tokio::select! {
    ///     () = guard.lost() => eprintln!("lost the lock: the work was stopped"),
    ///     () = work => guard.release().await?,
    /// }
    /// # Ok(()) }
    /// ```
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut status = self.held.subscribe();
        async move {
            // An error means the sender is gone, which cannot happen while a guard lives;
            // either way ownership is over.
            let _ = status.wait_for(|s| *s != Status::Held).await;
        }
    }

    fn not_owned(&self, why: &'static str) -> Error {
        Error::new(ErrorCode::LockNotOwned, why).with_context("key", self.held.key.clone())
    }
}

/// A guard dropped without `release` releases its lock in the background (on the current
/// tokio runtime; without one, the shutdown or the ttl does).
impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.done || self.held.status() == Status::Stopped {
            return;
        }
        self.held.end(Status::Released);
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let held = self.held.clone();
        handle.spawn(async move {
            if let Err(e) = held.release_in_redis().await {
                tracing::warn!(target: "redisx::lock", key = held.key, error = %format_args!("{e:#}"), "could not release a dropped lock guard's lock; it expires at its ttl");
            }
            held.unregister();
        });
    }
}
