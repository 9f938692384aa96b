//! Running a body under a lock with loss handling: [`Locks::with_lock_using`] and
//! [`Locks::try_with_lock_using`] (what `#[with_lock]` expands to), and the fencing token
//! of the lock the current task runs under ([`fencing_token`]).

use std::future::Future;
use std::pin::Pin;

use super::{LockGuard, LockOptions, Locks};
use crate::error::{Error, ErrorCode};

tokio::task_local! {
    static FENCE: u64;
}

/// The fencing token of the lock the current task's body runs under
/// ([`Locks::with_lock_using`], `#[with_lock]`); `None` outside one. Pass it to the protected
/// resource with each write, so a write from a holder whose lock was lost meanwhile is refused
/// there (see the module docs on fencing).
///
/// ```no_run
/// use redisx_runtime::lock::{LockCall, fencing_token};
///
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// rx.locks()
///     .with_lock_using("ledger:7", &LockCall::new(), async {
///         let fence = fencing_token().expect("inside the lock");
///         // UPDATE ledger SET .., fence = $fence WHERE id = 7 AND fence < $fence
///         # let _ = fence;
///         Ok::<_, redisx_runtime::Error>(())
///     })
///     .await
/// # }
/// ```
pub fn fencing_token() -> Option<u64> {
    FENCE.try_with(|f| *f).ok()
}

/// What happens to a body whose lock is lost while it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnLost {
    /// The body is dropped at its next `.await` and the call returns
    /// [`ErrorCode::LockExpired`]: the work never goes on unprotected (default).
    #[default]
    Cancel,
    /// The body runs to its end; the loss is logged and counted, and the release that follows
    /// reports [`ErrorCode::LockNotOwned`] (logged, the body's result is returned).
    Continue,
}

/// The options of one guarded call: the lock's [`LockOptions`] and what a loss does.
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::lock::{LockCall, LockOptions, OnLost};
///
/// let call = LockCall::new()
///     .options(LockOptions::new().ttl(Duration::from_secs(10)))
///     .on_lost(OnLost::Continue);
/// assert_eq!(call.on_lost_value(), OnLost::Continue);
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct LockCall {
    opts: LockOptions,
    on_lost: OnLost,
}

impl LockCall {
    /// The config's defaults, and [`OnLost::Cancel`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The lock's ttl, retries and renewal.
    pub fn options(mut self, opts: LockOptions) -> Self {
        self.opts = opts;
        self
    }

    /// What a loss does to the body.
    pub fn on_lost(mut self, on_lost: OnLost) -> Self {
        self.on_lost = on_lost;
        self
    }

    /// The lock's options.
    pub fn options_value(&self) -> &LockOptions {
        &self.opts
    }

    /// What a loss does to the body.
    pub fn on_lost_value(&self) -> OnLost {
        self.on_lost
    }
}

impl From<LockOptions> for LockCall {
    fn from(opts: LockOptions) -> Self {
        Self::new().options(opts)
    }
}

impl Locks {
    /// Runs `body` under the lock on `key`, waiting for it as [`acquire`](Self::acquire) does
    /// (the body never runs when the lock cannot be had). While the body runs,
    /// [`fencing_token`] returns the lock's token; with [`OnLost::Cancel`] a lost lock drops
    /// the body and the call returns [`ErrorCode::LockExpired`]. The body's own error reaches
    /// the caller unchanged and the lock is released either way; a release that fails after
    /// the body succeeded is logged and counted, and the body's result is returned.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::lock::{LockCall, LockOptions};
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let call = LockCall::new().options(LockOptions::new().wait(Duration::from_secs(5)));
    /// let charged = rx
    ///     .locks()
    ///     .with_lock_using("order:7", &call, async { Ok::<_, redisx_runtime::Error>(true) })
    ///     .await?;
    /// assert!(charged);
    /// # Ok(()) }
    /// ```
    pub fn with_lock_using<T, E, F>(
        &self,
        key: &str,
        call: &LockCall,
        body: F,
    ) -> impl Future<Output = Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
        E: From<Error>,
    {
        // Boxed before the call's own state: a body that is itself a lock or idempotency call
        // nested unboxed goes past rustc's default layout depth (128).
        self.with_lock_boxed(key, call, Box::pin(body))
    }

    /// [`with_lock_using`](Self::with_lock_using) with the body boxed already (the
    /// attribute's call site boxes it before its own state).
    pub(crate) async fn with_lock_boxed<T, E, F>(
        &self,
        key: &str,
        call: &LockCall,
        body: Pin<Box<F>>,
    ) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
        E: From<Error>,
    {
        let guard = self.acquire(key, &call.opts).await?;
        self.guarded(guard, call.on_lost, body).await
    }

    /// [`with_lock_using`](Self::with_lock_using) with exactly one attempt: `Ok(None)`
    /// without running the body when another owner holds the lock.
    ///
    /// ```no_run
    /// use redisx_runtime::lock::LockCall;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// // Hourly job: whichever instance gets the lock runs it, the others skip.
    /// let ran = rx
    ///     .locks()
    ///     .try_with_lock_using("cron:hourly", &LockCall::new(), async { Ok::<_, redisx_runtime::Error>(()) })
    ///     .await?;
    /// println!("ran here: {}", ran.is_some());
    /// # Ok(()) }
    /// ```
    pub fn try_with_lock_using<T, E, F>(
        &self,
        key: &str,
        call: &LockCall,
        body: F,
    ) -> impl Future<Output = Result<Option<T>, E>>
    where
        F: Future<Output = Result<T, E>>,
        E: From<Error>,
    {
        // Boxed for the reason given in `with_lock_using`.
        self.try_with_lock_boxed(key, call, Box::pin(body))
    }

    /// [`try_with_lock_using`](Self::try_with_lock_using) with the body boxed already.
    pub(crate) async fn try_with_lock_boxed<T, E, F>(
        &self,
        key: &str,
        call: &LockCall,
        body: Pin<Box<F>>,
    ) -> Result<Option<T>, E>
    where
        F: Future<Output = Result<T, E>>,
        E: From<Error>,
    {
        match self.try_acquire(key, &call.opts).await? {
            Some(guard) => self.guarded(guard, call.on_lost, body).await.map(Some),
            None => Ok(None),
        }
    }

    /// Runs `body` while `guard` holds, then releases it.
    pub(super) async fn guarded<T, E, F>(
        &self,
        guard: LockGuard,
        on_lost: OnLost,
        body: F,
    ) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
        E: From<Error>,
    {
        let body = FENCE.scope(guard.fencing_token(), body);
        let out = match on_lost {
            OnLost::Continue => body.await,
            OnLost::Cancel => {
                let lost = guard.lost();
                tokio::select! {
                    biased;
                    out = body => out,
                    () = lost => Err(Error::new(
                        ErrorCode::LockExpired,
                        "the lock was lost while the body ran; the body was stopped",
                    )
                    .with_context("key", guard.key().to_owned())
                    .into()),
                }
            }
        };
        self.finish(guard).await;
        out
    }

    /// Releases `guard` after its body ran: a failure is logged and counted, never returned
    /// (the body's result is what the caller gets).
    async fn finish(&self, guard: LockGuard) {
        let key = guard.key().to_owned();
        let fence = guard.fencing_token();
        if let Err(e) = guard.release().await {
            if e.code() == ErrorCode::LockNotOwned {
                self.inner.metrics.release_errors.inc();
            }
            tracing::warn!(target: "redisx::lock", key, fencing_token = fence, error = %format_args!("{e:#}"), "the lock could not be released after the body ran");
        }
    }
}
