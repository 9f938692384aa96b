//! The background task of a held lock: renews it every third of its ttl (when auto-renew is
//! on) and declares it lost when its local validity deadline passes without a confirmed
//! renewal, whether Redis answered "not yours" or did not answer at all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::guard::{Held, Status};
use crate::life::watched;

/// Starts the task of `held` on the current tokio runtime; it ends with the lock.
pub(crate) fn spawn(held: Arc<Held>) {
    let guard = held.shared.life.guard("a lock's renewal task");
    tokio::spawn(watched(guard, run(held)));
}

/// After a failed renewal (a Redis error), the next try comes this share of the ttl later.
const RETRY_DIVISOR: u32 = 10;

async fn run(held: Arc<Held>) {
    let mut status = held.subscribe();
    // When to renew next; `None` without auto-renew (only the deadline is watched).
    let mut next = held.auto_renew.then(|| {
        let t = held.timing();
        t.confirmed + t.ttl / 3
    });
    loop {
        let t = held.timing();
        let wake = next.map_or(t.deadline, |n| n.min(t.deadline));
        tokio::select! {
            _ = status.wait_for(|s| *s != Status::Held) => return,
            () = held.changed.notified() => {
                // A manual extend moved the deadline: renew a third of the new ttl after it.
                let t = held.timing();
                next = next.map(|_| t.confirmed + t.ttl / 3);
                continue;
            }
            () = tokio::time::sleep_until(wake.into()) => {}
        }
        let t = held.timing();
        let now = Instant::now();
        if now >= t.deadline {
            held.lose(if held.auto_renew {
                "Redis did not confirm a renewal before the lock's local validity deadline"
            } else {
                "its ttl ran out (auto-renew is off) before it was released"
            });
            return;
        }
        if next.is_some_and(|n| now >= n) {
            next = Some(renew(&held, t.deadline, t.ttl).await);
        }
        if held.status() != Status::Held {
            return;
        }
    }
}

/// One renewal, bounded by the validity left: the time of the next one.
async fn renew(held: &Held, deadline: Instant, ttl: Duration) -> Instant {
    let sent = Instant::now();
    let left = deadline.saturating_duration_since(sent);
    match tokio::time::timeout(left, held.extend_in_redis(ttl)).await {
        Ok(Ok(true)) => {
            held.confirm(sent, ttl);
            sent + ttl / 3
        }
        Ok(Ok(false)) => {
            held.lose("it expired, was deleted or another owner took it (found by its renewal)");
            sent
        }
        Ok(Err(e)) => {
            tracing::debug!(target: "redisx::lock", key = held.key(), error = %format_args!("{e:#}"), "could not renew a lock; trying again before its validity deadline");
            Instant::now() + (ttl / RETRY_DIVISOR).max(Duration::from_millis(1))
        }
        // The deadline passed while waiting: the loop declares the loss.
        Err(_) => Instant::now(),
    }
}
