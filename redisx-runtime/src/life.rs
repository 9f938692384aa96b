//! Whether a runtime can still serve: running, shut down by [`RedisX::shutdown`], or gone
//! because the tokio runtime its background tasks ran on has shut down.
//!
//! A runtime's background tasks (the reconnect loop of a multiplexed connection, the cache's
//! invalidation listener, ...) live on the tokio runtime that built it. When that tokio
//! runtime ends (typically: a `RedisX` built inside one `#[tokio::test]` and installed
//! globally, used again by the next test), tokio drops those tasks. Each one holds a
//! [`TaskGuard`]; dropped while the runtime still counts as running, it marks the runtime
//! *gone*, and every later call reports [`ErrorCode::ConfigRuntimeGone`] (logged once, with
//! the cause and the fix) instead of retrying a reconnect that can never happen.
//!
//! [`RedisX::shutdown`]: crate::RedisX::shutdown

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::{Error, ErrorCode, Result};

const RUNNING: u8 = 0;
const SHUT_DOWN: u8 = 1;
const GONE: u8 = 2;

/// The state of one runtime, shared by its clients, plugins and background tasks.
#[derive(Debug, Default)]
pub(crate) struct Life {
    state: AtomicU8,
    /// The background task whose drop marked the runtime gone.
    lost: OnceLock<&'static str>,
    /// Set once the gone runtime was reported (logged at ERROR).
    reported: AtomicBool,
}

impl Life {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Neither shut down nor gone: one relaxed load, for the hot paths.
    #[inline]
    pub(crate) fn is_running(&self) -> bool {
        self.state.load(Ordering::Relaxed) == RUNNING
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.state.load(Ordering::SeqCst) == SHUT_DOWN
    }

    pub(crate) fn is_gone(&self) -> bool {
        self.state.load(Ordering::SeqCst) == GONE
    }

    /// Marks the runtime shut down; `false` when it already was (or is gone).
    pub(crate) fn shut_down(&self) -> bool {
        self.state
            .compare_exchange(RUNNING, SHUT_DOWN, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// `Ok` unless the runtime is gone; then the error, reported once.
    pub(crate) fn check(&self) -> Result<()> {
        if self.is_gone() {
            let e = self.gone_error();
            self.report(&e);
            return Err(e);
        }
        Ok(())
    }

    /// Logs that the runtime is gone, once per runtime; `true` the first time.
    pub(crate) fn report(&self, e: &Error) -> bool {
        let first = !self.reported.swap(true, Ordering::Relaxed);
        if first {
            tracing::error!(target: "redisx", "{e}");
        }
        first
    }

    /// The error calls on a gone runtime get: what happened and what to do.
    pub(crate) fn gone_error(&self) -> Error {
        let task = self.lost.get().copied().unwrap_or("a background task");
        Error::new(
            ErrorCode::ConfigRuntimeGone,
            format!(
                "this redisx runtime can no longer serve: {task} ran on a tokio runtime that has shut down; \
                 use a RedisX only while the tokio runtime that built it runs (in tests: build one per test with \
                 `#[redisx::test]` or `redisx::testing::run`, and select it with `rx.scope(..)` instead of installing it globally)"
            ),
        )
        .with_context("task", task)
    }

    /// A guard for the background task `task`: see [`watched`].
    pub(crate) fn guard(self: &Arc<Self>, task: &'static str) -> TaskGuard {
        TaskGuard {
            life: Arc::clone(self),
            task,
            armed: true,
        }
    }
}

/// Held by a background task; dropped before the task finished while the runtime was
/// running, it marks the runtime gone.
pub(crate) struct TaskGuard {
    life: Arc<Life>,
    task: &'static str,
    armed: bool,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.armed
            && self
                .life
                .state
                .compare_exchange(RUNNING, GONE, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            let _ = self.life.lost.set(self.task);
        }
    }
}

/// Runs `fut` holding `guard`: finishing disarms it, being dropped half-way (its tokio
/// runtime shut down) marks the runtime gone.
pub(crate) async fn watched<F: Future>(mut guard: TaskGuard, fut: F) -> F::Output {
    let out = fut.await;
    guard.armed = false;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_dropped_with_its_tokio_runtime_marks_the_runtime_gone() {
        let life = Life::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let guard = life.guard("the test task");
        rt.block_on(async {
            tokio::spawn(watched(guard, std::future::pending::<()>()));
            tokio::task::yield_now().await;
        });
        assert!(life.is_running());
        drop(rt);
        assert!(life.is_gone());
        let e = life.check().unwrap_err();
        assert_eq!(e.code(), ErrorCode::ConfigRuntimeGone);
        assert!(e.message().contains("the test task"), "{e}");
        assert!(!life.report(&e), "reported only once");
    }

    #[test]
    fn a_finished_task_or_a_shutdown_is_not_gone() {
        let life = Life::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(watched(life.guard("done"), async {}));
        drop(rt);
        assert!(life.is_running());
        assert!(life.shut_down());
        drop(life.guard("after shutdown"));
        assert!(life.is_shut_down());
        assert!(life.check().is_ok());
    }
}
