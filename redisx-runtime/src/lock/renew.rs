//! Renewing held locks: one task per runtime watches every held lock, renews it every third
//! of its ttl (when auto-renew is on) and declares it lost when its local validity deadline
//! passes without a confirmed renewal, whether Redis answered "not yours" or did not answer
//! at all.
//!
//! Each held lock has one live entry in a queue ordered by time (the next renewal, or its
//! deadline, whichever comes first); entries left behind by a reschedule carry an older
//! generation and are skipped. Taking a lock only pushes an entry: no task per lock. A due
//! renewal runs in a task of its own, bounded by the validity left, so a Redis that hangs
//! delays no other lock's renewal or deadline.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::Shared;
use super::guard::{Held, Status};
use crate::life::watched;

/// After a failed renewal (a Redis error), the next try comes this share of the ttl later.
const RETRY_DIVISOR: u32 = 10;

/// The queue of one runtime's held locks, by when each needs attention.
#[derive(Default)]
pub(crate) struct Renewals {
    /// `(when, lock id, generation)`, earliest first.
    due: Mutex<BinaryHeap<Reverse<(Instant, u64, u64)>>>,
    /// Woken when an entry earlier than every other is pushed, and when the service is gone.
    changed: Arc<Notify>,
    /// Set once the task was started.
    started: AtomicBool,
}

impl Renewals {
    fn due(&self) -> std::sync::MutexGuard<'_, BinaryHeap<Reverse<(Instant, u64, u64)>>> {
        self.due.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets every entry (the plugin's stop, which releases the locks itself).
    pub(crate) fn stop(&self) {
        self.due().clear();
    }
}

/// The service is gone: the task wakes up to end.
impl Drop for Renewals {
    fn drop(&mut self) {
        self.changed.notify_one();
    }
}

/// (Re)schedules `held` at its next renewal or its deadline, whichever comes first; the
/// entries pushed for it before are skipped from now on. Starts the runtime's task on the
/// first call.
pub(crate) fn schedule(held: &Arc<Held>) {
    let t = held.timing();
    let at = if held.auto_renew {
        t.renew_at.min(t.deadline)
    } else {
        t.deadline
    };
    let generation = held.generation.fetch_add(1, Ordering::AcqRel) + 1;
    let shared = &held.shared;
    let earliest = {
        let mut due = shared.renewals.due();
        let earliest = due.peek().is_none_or(|Reverse((first, ..))| at < *first);
        due.push(Reverse((at, held.id, generation)));
        earliest
    };
    if !shared.renewals.started.swap(true, Ordering::AcqRel) {
        let guard = shared.life.guard("the locks' renewal task");
        let changed = shared.renewals.changed.clone();
        tokio::spawn(watched(guard, run(Arc::downgrade(shared), changed)));
    } else if earliest {
        shared.renewals.changed.notify_one();
    }
}

/// The task: sleeps until the earliest entry is due, then handles every due one; ends with
/// the service (it holds no strong reference while it sleeps).
async fn run(shared: Weak<Shared>, changed: Arc<Notify>) {
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            shared.renewals.due().peek().map(|Reverse((at, ..))| *at)
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {}
                    () = changed.notified() => {}
                }
            }
            None => changed.notified().await,
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        loop {
            let entry = {
                let mut due = shared.renewals.due();
                match due.peek() {
                    Some(Reverse((at, ..))) if *at <= now => due.pop(),
                    _ => None,
                }
            };
            let Some(Reverse((_, id, generation))) = entry else {
                break;
            };
            let held = shared.registry().get(&id).cloned();
            if let Some(held) = held
                && held.generation.load(Ordering::Acquire) == generation
            {
                attend(held, now);
            }
        }
    }
}

/// A due entry of `held`: declares the loss past the deadline, starts a due renewal, or
/// schedules the next look.
fn attend(held: Arc<Held>, now: Instant) {
    if held.status() != Status::Held {
        return;
    }
    let t = held.timing();
    if now >= t.deadline {
        held.lose(if held.auto_renew {
            "Redis did not confirm a renewal before the lock's local validity deadline"
        } else {
            "its ttl ran out (auto-renew is off) before it was released"
        });
        return;
    }
    if held.auto_renew && now >= t.renew_at {
        let guard = held.shared.life.guard("a lock's renewal");
        tokio::spawn(watched(guard, renew(held, t.deadline, t.ttl)));
    } else {
        schedule(&held);
    }
}

/// One renewal, bounded by the validity left; schedules the next look at the lock unless it
/// was lost.
async fn renew(held: Arc<Held>, deadline: Instant, ttl: Duration) {
    let sent = Instant::now();
    let left = deadline.saturating_duration_since(sent);
    match tokio::time::timeout(left, held.extend_in_redis(ttl)).await {
        Ok(Ok(true)) => held.confirm(sent, ttl),
        Ok(Ok(false)) => {
            held.lose("it expired, was deleted or another owner took it (found by its renewal)");
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(target: "redisx::lock", key = held.key(), error = %format_args!("{e:#}"), "could not renew a lock; trying again before its validity deadline");
            held.retry_renewal_at(
                Instant::now() + (ttl / RETRY_DIVISOR).max(Duration::from_millis(1)),
            );
        }
        Err(_) => {
            held.lose("Redis did not confirm a renewal before the lock's local validity deadline");
            return;
        }
    }
    if held.status() == Status::Held {
        schedule(&held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_pops_the_earliest_first() {
        let r = Renewals::default();
        let now = Instant::now();
        for (i, ms) in [30u64, 10, 20].into_iter().enumerate() {
            r.due()
                .push(Reverse((now + Duration::from_millis(ms), i as u64, 0)));
        }
        let order: Vec<u64> =
            std::iter::from_fn(|| r.due().pop().map(|Reverse((_, id, _))| id)).collect();
        assert_eq!(order, [1, 2, 0]);
        r.stop();
        assert!(r.due().is_empty());
    }
}
