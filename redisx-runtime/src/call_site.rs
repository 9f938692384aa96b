//! What every plugin's call site (the code an attribute expands to) needs: the runtime a call
//! uses, and its rendered keys. Each plugin decides what a missing runtime means: the cache
//! fails open (the function runs uncached); a lock will fail closed.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::runtime::RedisX;
use crate::scope;

/// The warning logged (once per process and plugin) when a call finds no runtime.
pub(crate) struct NoRuntime {
    warned: AtomicBool,
    /// What the calls do without one, e.g. "cached functions run uncached".
    consequence: &'static str,
}

impl NoRuntime {
    pub(crate) const fn new(consequence: &'static str) -> Self {
        Self {
            warned: AtomicBool::new(false),
            consequence,
        }
    }
}

/// Calls `f` with the runtime of a call: the one given with `runtime = expr`, else the current
/// scope's ([`RedisX::scope`]), else the installed one; `None` when there is none (logged once,
/// with `missing`'s consequence).
#[inline]
pub(crate) fn with_runtime<R>(
    explicit: Option<&RedisX>,
    missing: &NoRuntime,
    f: impl FnOnce(Option<&RedisX>) -> R,
) -> R {
    scope::with_runtime(explicit, |rt| {
        if rt.is_none() && !missing.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(target: "redisx",
                "no redisx runtime is installed or in scope (call `rx.install()` at startup, run the call in `rx.scope(..)`, or pass `runtime = ...`); {}",
                missing.consequence
            );
        }
        f(rt)
    })
}

/// Marks a task carries for the calls underneath it (what the layers around a request already
/// did): a task-local list of strings.
pub(crate) type Marks = tokio::task::LocalKey<std::sync::Arc<Vec<String>>>;

/// The marks of `list` this task carries (none outside a scope), and `mark`: the value to
/// scope the calls underneath with.
pub(crate) fn marks_with(list: &'static Marks, mark: String) -> std::sync::Arc<Vec<String>> {
    let mut marks = list.try_with(|m| m.to_vec()).unwrap_or_default();
    marks.push(mark);
    std::sync::Arc::new(marks)
}

/// Whether this task carries `mark` in `list`.
pub(crate) fn has_mark(list: &'static Marks, mark: &str) -> bool {
    list.try_with(|marks| marks.iter().any(|m| m == mark))
        .unwrap_or(false)
}

/// Key or tag templates rendered to strings.
pub(crate) fn render(templates: &[fmt::Arguments<'_>]) -> Vec<String> {
    templates.iter().map(|t| fmt::format(*t)).collect()
}
