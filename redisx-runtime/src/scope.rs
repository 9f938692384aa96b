//! Runtimes scoped to a task: [`RedisX::scope`], [`RedisX::in_scope`] and [`spawn`].
//!
//! The attributes find their runtime in this order: the one given with `runtime = expr`, else
//! the runtime of the current scope, else the installed one ([`RedisX::install`]). A scope is a
//! tokio task-local value, so it follows one task across `.await`s and threads and never leaks
//! into another task; [`spawn`] starts a task in the scope of the caller, as redisx's own
//! background work (stale-while-revalidate refreshes, warmup loaders) does.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::Either;
use tokio::task::futures::TaskLocalFuture;

use crate::runtime::RedisX;

tokio::task_local! {
    static SCOPED: Entered;
}

/// The value of a scope: its runtime, and its place in the count of entered scopes (kept as
/// long as the scope's future or closure lives).
pub(crate) struct Entered {
    rx: RedisX,
    _active: Active,
}

/// How many scopes are entered right now, process-wide: while none is, finding the runtime
/// of a call costs one load instead of a task-local lookup.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Counts one entered scope while alive.
struct Active;

impl Active {
    fn enter() -> Self {
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        Active
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

impl RedisX {
    /// Runs `fut` with `self` as the runtime of its task: the attributes inside it (at any
    /// depth of calls, across `.await`s) use `self` unless they name one with `runtime = ...`,
    /// before the installed runtime. Scopes nest; the innermost wins.
    ///
    /// Tests give each test its own runtime this way, and a multi-tenant program picks one
    /// per request. Tasks spawned inside with `tokio::spawn` do not inherit the scope; spawn
    /// them with [`redisx::spawn`](crate::spawn), which does.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo() -> redisx_runtime::Result<()> {
    /// use redisx_runtime::RedisX;
    ///
    /// let tenant_a = RedisX::builder().client("default", "redis://127.0.0.1:6379".parse()?)
    ///     .key_prefix("tenant-a:").build().await?;
    /// tenant_a.scope(async {
    ///     // `#[cached]` functions called here store under "tenant-a:".
    ///     assert_eq!(RedisX::current().unwrap().key_prefix(), "tenant-a:");
    /// }).await;
    /// # Ok(()) }
    /// ```
    pub fn scope<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> + use<F> {
        scoped_future(self.clone(), fut)
    }

    /// Runs the closure `f` with `self` as the runtime of the current task while it runs: the
    /// synchronous form of [`scope`](Self::scope), for code that is not `async` (nothing
    /// remains set once `f` returns).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) {
    /// use redisx_runtime::RedisX;
    ///
    /// let prefix = rx.in_scope(|| RedisX::current().map(|rt| rt.key_prefix().to_owned()));
    /// assert_eq!(prefix.as_deref(), Some(rx.key_prefix()));
    /// # }
    /// ```
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        SCOPED.sync_scope(Entered::new(self.clone()), f)
    }

    /// The runtime the attributes use here (without `runtime = ...`): the current scope's,
    /// else the installed one, else `None`.
    ///
    /// ```no_run
    /// use redisx_runtime::RedisX;
    ///
    /// // `GET /metrics` of whichever runtime serves this request.
    /// fn metrics_handler() -> String {
    ///     RedisX::current().map(|rx| rx.metrics_text()).unwrap_or_default()
    /// }
    /// # let _ = metrics_handler;
    /// ```
    pub fn current() -> Option<RedisX> {
        scoped().or_else(RedisX::global)
    }
}

/// [`tokio::spawn`] that carries the caller's runtime scope ([`RedisX::scope`]) and context
/// ([`Context::scope`](crate::context::Context::scope)) into the new task, so the attributes
/// there use the same runtime and vary their keys by the same context. Outside any scope it is
/// `tokio::spawn`. Must be called within a tokio runtime, like `tokio::spawn`.
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) {
/// rx.scope(async {
///     let handle = redisx_runtime::spawn(async {
///         // `#[cached]` calls here use `rx`, as in the spawning task.
///         redisx_runtime::RedisX::current().map(|rt| rt.key_prefix().to_owned())
///     });
///     assert!(handle.await.unwrap().is_some());
/// }).await;
/// # }
/// ```
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(crate::context::carry(carry(fut)))
}

impl Entered {
    fn new(rx: RedisX) -> Self {
        Self {
            rx,
            _active: Active::enter(),
        }
    }
}

/// `fut` with `rx` as its scope. `fut` is boxed: the task-local future's poll holds
/// temporaries the size of its future, which in unoptimised builds would put several copies
/// of a large future on the stack of every poll.
fn scoped_future<F: Future>(rx: RedisX, fut: F) -> TaskLocalFuture<Entered, Pin<Box<F>>> {
    scoped_boxed(rx, Box::pin(fut))
}

/// [`scoped_future`] for a future boxed already (not boxed again).
pub(crate) fn scoped_boxed<F: Future>(
    rx: RedisX,
    fut: Pin<Box<F>>,
) -> TaskLocalFuture<Entered, Pin<Box<F>>> {
    SCOPED.scope(Entered::new(rx), fut)
}

/// `fut` in the caller's scope, if there is one (for work spawned on a caller's behalf).
pub(crate) fn carry<F: Future>(fut: F) -> Either<TaskLocalFuture<Entered, Pin<Box<F>>>, F> {
    match scoped() {
        Some(rx) => Either::Left(scoped_future(rx, fut)),
        None => Either::Right(fut),
    }
}

/// The current scope's runtime.
fn scoped() -> Option<RedisX> {
    if ACTIVE.load(Ordering::Relaxed) == 0 {
        return None;
    }
    SCOPED.try_with(|e| e.rx.clone()).ok()
}

/// Calls `f` with the runtime of a call: `explicit`, else the scope's, else the installed one.
#[inline]
pub(crate) fn with_runtime<R>(
    explicit: Option<&RedisX>,
    f: impl FnOnce(Option<&RedisX>) -> R,
) -> R {
    // `f` is called once, so it inlines here (the body of every `#[cached]` hit).
    let scoped;
    let rt = if explicit.is_some() {
        explicit
    } else if ACTIVE.load(Ordering::Relaxed) != 0
        && let Ok(rx) = SCOPED.try_with(|e| e.rx.clone())
    {
        scoped = rx;
        Some(&scoped)
    } else {
        RedisX::global_ref()
    };
    f(rt)
}
