//! Semaphores: `rx.locks().semaphore(key, permits)`, at most `permits` holders at once across
//! every instance ("at most 4 exports run at once cluster-wide").
//!
//! A semaphore is a sorted set of leases, `{app prefix}{lock prefix}sem:{<key>}`: one member
//! per holder (its owner token) scored by the lease's expiry in server time. Taking a permit
//! first removes the expired leases (holders that died or stopped renewing), then adds one if
//! fewer than `permits` are live, in one script. A [`Permit`] behaves as a [`LockGuard`]: the
//! same ttl, auto-renewal, local validity deadline and loss signal, a fencing token per key
//! (`…sem:{<key>}:fence`), a release that wakes the waiters, and a release in the background
//! when dropped.
//!
//! Every caller of one key should pass the same `permits`: each call enforces its own count
//! against the leases live at that moment.

use std::future::Future;
use std::time::Duration;

use super::api::Attempts;
use super::{Kind, LockCall, LockGuard, LockOptions, Locks, scripts};
use crate::error::{Error, ErrorCode, Result};

/// A counting semaphore over Redis, from [`Locks::semaphore`]. Cheap to clone.
///
/// ```no_run
/// use std::time::Duration;
/// use redisx_runtime::lock::LockOptions;
///
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// let exports = rx.locks().semaphore("exports", 4);
/// let permit = exports
///     .acquire(&LockOptions::new().wait(Duration::from_secs(30)))
///     .await?;
/// // ... at most 4 of these run at once, across every instance ...
/// permit.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Semaphore {
    locks: Locks,
    key: String,
    permits: u32,
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("key", &self.key)
            .field("permits", &self.permits)
            .finish_non_exhaustive()
    }
}

impl Locks {
    /// The semaphore on `key` that lets at most `permits` holders in at once, across every
    /// instance. Sends nothing to Redis: the key and the count are checked by each call (an
    /// invalid key is [`ErrorCode::LockKeyInvalid`], zero permits [`ErrorCode::ConfigInvalid`]).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let sem = rx.locks().semaphore("reports", 2);
    /// assert_eq!((sem.key(), sem.permits()), ("reports", 2));
    /// # Ok(()) }
    /// ```
    pub fn semaphore(&self, key: &str, permits: u32) -> Semaphore {
        Semaphore {
            locks: self.clone(),
            key: key.to_owned(),
            permits,
        }
    }
}

impl Semaphore {
    /// The semaphore's key (without prefixes).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The most holders it lets in at once.
    pub fn permits(&self) -> u32 {
        self.permits
    }

    fn kind(&self) -> Result<Kind> {
        if self.permits == 0 {
            return Err(Error::new(
                ErrorCode::ConfigInvalid,
                "a semaphore needs at least one permit",
            )
            .with_context("key", self.key.clone()));
        }
        Ok(Kind::Permit(self.permits))
    }

    /// Takes a permit, waiting while every permit is held exactly as
    /// [`Locks::acquire`] waits for a lock: the retry strategy, `retries` or the `wait`
    /// budget, the local queue and the wake-up on release. Gives up with
    /// [`ErrorCode::LockAcquisitionTimeout`] (its `attempts` context says how many were made).
    /// Fails closed: a Redis error is returned at once, as its own code.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::lock::LockOptions;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let permit = rx
    ///     .locks()
    ///     .semaphore("gpu", 2)
    ///     .acquire(&LockOptions::new().wait(Duration::from_secs(10)))
    ///     .await?;
    /// println!("fencing token {}", permit.fencing_token());
    /// permit.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire(&self, opts: &LockOptions) -> Result<Permit> {
        let kind = self.kind()?;
        match self
            .locks
            .acquire_with(&self.key, kind, opts, Attempts::Retry)
            .await?
        {
            Ok(guard) => Ok(Permit { guard }),
            Err(attempts) => Err(Error::new(
                ErrorCode::LockAcquisitionTimeout,
                "every permit of the semaphore stayed held through every attempt",
            )
            .with_context("key", self.key.clone())
            .with_context("permits", self.permits.to_string())
            .with_context("attempts", attempts.to_string())),
        }
    }

    /// Makes exactly one attempt: `Ok(None)` when every permit is held.
    ///
    /// ```no_run
    /// use redisx_runtime::lock::LockOptions;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// match rx.locks().semaphore("crawlers", 8).try_acquire(&LockOptions::new()).await? {
    ///     Some(permit) => permit.release().await?,
    ///     None => println!("8 crawlers run already"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_acquire(&self, opts: &LockOptions) -> Result<Option<Permit>> {
        let kind = self.kind()?;
        Ok(self
            .locks
            .acquire_with(&self.key, kind, opts, Attempts::One)
            .await?
            .ok()
            .map(|guard| Permit { guard }))
    }

    /// Runs `body` holding a permit, as [`Locks::with_lock_using`] runs one under a lock: the
    /// body never runs without a permit; [`fencing_token`](super::fencing_token) returns the
    /// permit's token inside it; a lost permit stops the body with [`ErrorCode::LockExpired`]
    /// under [`OnLost::Cancel`](super::OnLost::Cancel); the body's error reaches the caller
    /// unchanged and the permit is released either way.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::lock::{LockCall, LockOptions};
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let call = LockCall::new().options(LockOptions::new().wait(Duration::from_secs(60)));
    /// let rows = rx
    ///     .locks()
    ///     .semaphore("exports", 4)
    ///     .with_permit(&call, async { Ok::<_, redisx_runtime::Error>(1200) })
    ///     .await?;
    /// assert_eq!(rows, 1200);
    /// # Ok(()) }
    /// ```
    pub fn with_permit<T, E, F>(
        &self,
        call: &LockCall,
        body: F,
    ) -> impl Future<Output = Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
        E: From<Error>,
    {
        // Boxed before the call's own state: a body that is itself a lock or idempotency call
        // nested unboxed goes past rustc's default layout depth (128).
        let body = Box::pin(body);
        async move {
            let permit = self.acquire(call.options_value()).await?;
            self.locks
                .guarded(permit.guard, call.on_lost_value(), body)
                .await
        }
    }

    /// How many permits are held right now (leases not yet expired, by the server's clock).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let sem = rx.locks().semaphore("exports", 4);
    /// println!("{} of {} exports running", sem.holders().await?, sem.permits());
    /// # Ok(()) }
    /// ```
    pub async fn holders(&self) -> Result<u32> {
        let shared = &self.locks.inner;
        let keys = shared.keys_of(&self.key, self.kind()?)?;
        let n: u32 = shared
            .client()?
            .eval(&scripts::SEM_HOLDERS.script, &[&keys.lock], &[] as &[&str])
            .await
            .map_err(|e| e.with_context("key", self.key.clone()))?;
        Ok(n)
    }
}

/// A held permit of a [`Semaphore`]: a [`LockGuard`] on one of its leases, with the same
/// methods. Release it with [`release`](Self::release); dropped without it, it is released
/// in the background.
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// let permit = rx.locks().semaphore("exports", 4).acquire(&Default::default()).await?;
/// tokio::select! {
///     () = permit.lost() => eprintln!("lost the permit; stopping"),
///     () = tokio::time::sleep(std::time::Duration::from_secs(1)) => println!("export done"),
/// }
/// permit.release().await?;
/// # Ok(()) }
/// ```
#[must_use = "a permit is released as soon as it is dropped"]
#[derive(Debug)]
pub struct Permit {
    guard: LockGuard,
}

impl Permit {
    /// The semaphore's key (without prefixes).
    pub fn key(&self) -> &str {
        self.guard.key()
    }

    /// Gives the permit back and wakes the waiters; [`ErrorCode::LockNotOwned`] when its
    /// lease expired or was removed (see [`LockGuard::release`]).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let permit = rx.locks().semaphore("exports", 4).acquire(&Default::default()).await?;
    /// permit.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn release(self) -> Result<()> {
        self.guard.release().await
    }

    /// Sets the lease to end `ttl` from now if it is still live (see [`LockGuard::extend`]).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let permit = rx.locks().semaphore("exports", 4).acquire(&Default::default()).await?;
    /// permit.extend(std::time::Duration::from_secs(120)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        self.guard.extend(ttl).await
    }

    /// Whether the permit still counts as held (see [`LockGuard::is_held`]).
    pub fn is_held(&self) -> bool {
        self.guard.is_held()
    }

    /// The random token of this holder (its member in the sorted set of leases).
    pub fn owner_token(&self) -> &str {
        self.guard.owner_token()
    }

    /// The local validity left (see [`LockGuard::valid_for`]).
    pub fn valid_for(&self) -> Duration {
        self.guard.valid_for()
    }

    /// This holder's fencing token: larger than every earlier permit holder's of the same
    /// semaphore (see [`LockGuard::fencing_token`]).
    pub fn fencing_token(&self) -> u64 {
        self.guard.fencing_token()
    }

    /// A future that resolves once the permit is gone: lost, released, or released by the
    /// shutdown (see [`LockGuard::lost`]).
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        self.guard.lost()
    }
}
