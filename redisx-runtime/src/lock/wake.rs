//! Waking the callers that wait for a lock when it is released, instead of letting them sleep
//! through their backoff.
//!
//! Callers of this process that wait on one key form a FIFO queue (a fair async mutex, the
//! key's gate): only its head sends attempts to Redis; the others wait for their turn, each
//! still bounded by its own retry strategy. The head waits on the key's [`Notify`]: a release
//! wakes it, so a release sends one attempt to Redis per process, not one per waiter. When
//! the head takes the lock, the next caller in line becomes the head.
//!
//! Releases by this process wake the head directly. Releases elsewhere arrive as the release
//! script's message on the lock's channel (`{lock key}:released`, the message
//! `{runtime id}:{fencing token}`), received by one pattern subscription per runtime, opened
//! when a caller first waits; a runtime skips its own messages. A lost message (a reconnect, a
//! holder whose lock expired instead of being released) only means the waiter retries on its
//! backoff: the retry strategy stays the bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use redis::Msg;
use tokio::sync::{Notify, OwnedMutexGuard};

use super::Shared;
use crate::cache::glob::glob_escape;
use crate::client::listener::{self, Listener};
use crate::client::{Client, PubSub};
use crate::error::Result;
use crate::life::watched;
use crate::plugin::PluginFuture;

/// The channels' suffix after the lock key.
pub(crate) const CHANNEL_SUFFIX: &str = ":released";

/// The waiters of one runtime, by full lock key.
#[derive(Default)]
pub(crate) struct Wakeups {
    slots: Mutex<HashMap<String, Slot>>,
    /// The callers waiting on any key: zero lets an uncontended acquisition skip the map.
    waiting: AtomicUsize,
    /// Set once the pattern subscription was started.
    listening: AtomicBool,
    /// Ends the subscription (the plugin's stop).
    stop: Arc<Notify>,
}

struct Slot {
    notify: Arc<Notify>,
    /// Held by the head of the key's queue; fair, so callers get their turn in arrival order.
    gate: Arc<tokio::sync::Mutex<()>>,
    waiters: usize,
}

/// The turn of the head of a key's queue; the next caller in line gets it when dropped.
pub(crate) type Turn = OwnedMutexGuard<()>;

/// One caller waiting on a lock; leaves the queue when dropped.
pub(crate) struct Waiter<'a> {
    wakeups: &'a Wakeups,
    lock: String,
    notify: Arc<Notify>,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl Waiter<'_> {
    /// Resolves when the lock is released (here or elsewhere), or at once when a release
    /// arrived since the last wait. Only the head of the queue waits on it.
    pub(crate) async fn released(&self) {
        self.notify.notified().await;
    }

    /// The head's turn now, when nobody else is in line or at the head.
    pub(crate) fn try_turn(&self) -> Option<Turn> {
        self.gate.clone().try_lock_owned().ok()
    }

    /// Resolves when this caller is the head of the key's queue. The future keeps the
    /// caller's place in line: it must live until it resolves.
    pub(crate) fn turn(&self) -> impl Future<Output = Turn> + Send + 'static {
        self.gate.clone().lock_owned()
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.wakeups.waiting.fetch_sub(1, Ordering::Relaxed);
        let mut slots = self.wakeups.slots();
        if let Some(slot) = slots.get_mut(&self.lock) {
            slot.waiters -= 1;
            if slot.waiters == 0 {
                slots.remove(&self.lock);
            }
        }
    }
}

impl Wakeups {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether callers of this process wait on the lock `lock` (its full key): a newcomer
    /// then queues behind them instead of trying first.
    pub(crate) fn queued(&self, lock: &str) -> bool {
        self.waiting.load(Ordering::Relaxed) != 0 && self.slots().contains_key(lock)
    }

    /// Queues a caller on the lock `lock` (its full key).
    pub(crate) fn wait(&self, lock: &str) -> Waiter<'_> {
        let mut slots = self.slots();
        let slot = slots.entry(lock.to_owned()).or_insert_with(|| Slot {
            notify: Arc::new(Notify::new()),
            gate: Arc::new(tokio::sync::Mutex::new(())),
            waiters: 0,
        });
        slot.waiters += 1;
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Waiter {
            wakeups: self,
            lock: lock.to_owned(),
            notify: slot.notify.clone(),
            gate: slot.gate.clone(),
        }
    }

    /// The lock `lock` was released: one of its waiters here tries again.
    pub(crate) fn wake(&self, lock: &str) {
        if let Some(slot) = self.slots().get(lock) {
            slot.notify.notify_one();
        }
    }

    /// Ends the subscription.
    pub(crate) fn stop(&self) {
        self.stop.notify_one();
    }

    /// Starts the subscription to every lock channel of the runtime, once.
    pub(crate) fn listen(&self, shared: &Arc<Shared>, client: &Client) {
        if self.listening.load(Ordering::Relaxed) || self.listening.swap(true, Ordering::SeqCst) {
            return;
        }
        let task = listener::listen(Arc::downgrade(shared), client.clone(), self.stop.clone());
        tokio::spawn(watched(
            shared.life.guard("the locks' release listener"),
            task,
        ));
    }
}

/// Release messages wake the waiters of their locks; a runtime skips its own (it woke its
/// waiters directly).
impl Listener for Shared {
    const WHAT: &'static str = "the lock release listener";
    const FALLBACK: &'static str = "waiters fall back to their retry strategy until it can";

    fn subscribe<'a>(&'a self, pubsub: &'a mut PubSub) -> PluginFuture<'a, Result<()>> {
        let pattern = format!("{}*{CHANNEL_SUFFIX}", glob_escape(&self.keys.full("")));
        Box::pin(async move { pubsub.psubscribe(&pattern).await })
    }

    fn message(this: &Arc<Self>, msg: &Msg) {
        let own = msg
            .get_payload_bytes()
            .strip_prefix(this.instance.as_bytes())
            .is_some_and(|rest| rest.first() == Some(&b':'));
        if !own && let Some(lock) = msg.get_channel_name().strip_suffix(CHANNEL_SUFFIX) {
            this.wakeups.wake(lock);
        }
    }
}
