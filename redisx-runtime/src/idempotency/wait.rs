//! Waking the duplicates that wait for a key's first call, instead of polling the record.
//!
//! The finish script publishes the record's key on one channel per runtime prefix
//! (`{app prefix}idem:@done`) when a duplicate waits for it (a check that found the key running
//! marked the record), so a call nobody waits for publishes nothing. Each runtime subscribes
//! to the channel once, when a caller first waits, and holds the duplicates waiting here in one slot per key: a message for a key with waiters
//! reads its record once (`HGETALL`, one read per key and process whatever the number of
//! waiters) and hands it to all of them. The same read runs for every waited-on key when the
//! subscription is (re)established, and every `recheck` while waiters exist: a lost message
//! costs at most that long, and never a check-script call per waiter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::Msg;
use tokio::sync::{Notify, watch};

use super::Shared;
use super::record::Record;
use crate::client::listener::{self, Listener};
use crate::client::{Client, PubSub};
use crate::error::Result;
use crate::life::watched;
use crate::plugin::PluginFuture;

/// What a slot's waiters were last handed: `None` before any read; then the record (`None`
/// when the key is gone).
pub(crate) type Seen = Option<Arc<Option<Record>>>;

/// The duplicates of one runtime waiting on keys, by full record key.
#[derive(Default)]
pub(crate) struct Waits {
    slots: Mutex<HashMap<String, Slot>>,
    /// The waiters on any key: zero lets a message skip the map.
    waiting: AtomicUsize,
    /// Set once the subscription was started.
    listening: AtomicBool,
    /// Whether the subscription is established right now.
    subscribed: AtomicBool,
    /// Ends the subscription (the plugin's stop).
    stop: Arc<Notify>,
}

struct Slot {
    tx: watch::Sender<Seen>,
    waiters: usize,
}

/// One duplicate waiting on a key; leaves the slot when dropped.
pub(crate) struct Waiter<'a> {
    waits: &'a Waits,
    key: String,
    rx: watch::Receiver<Seen>,
}

impl Waiter<'_> {
    /// Resolves with the record read after a message (or a re-check) for the key.
    pub(crate) async fn changed(&mut self) -> Arc<Option<Record>> {
        loop {
            if self.rx.changed().await.is_err() {
                // The slot's sender lives as long as a waiter: unreachable, but never spin.
                std::future::pending::<()>().await;
            }
            if let Some(seen) = self.rx.borrow_and_update().clone() {
                return seen;
            }
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.waits.waiting.fetch_sub(1, Ordering::Relaxed);
        let mut slots = self.waits.slots();
        if let Some(slot) = slots.get_mut(&self.key) {
            slot.waiters -= 1;
            if slot.waiters == 0 {
                slots.remove(&self.key);
            }
        }
    }
}

impl Waits {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a duplicate on `key` (a full record key). Done before its check, so a
    /// completion published in between is not missed.
    pub(crate) fn wait(&self, key: &str) -> Waiter<'_> {
        let mut slots = self.slots();
        let slot = slots.entry(key.to_owned()).or_insert_with(|| Slot {
            tx: watch::Sender::new(None),
            waiters: 0,
        });
        slot.waiters += 1;
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Waiter {
            waits: self,
            key: key.to_owned(),
            rx: slot.tx.subscribe(),
        }
    }

    /// Whether the completion messages arrive right now (else waiters re-check on their own).
    pub(crate) fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    /// The keys with waiters.
    fn waited_keys(&self) -> Vec<String> {
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        self.slots().keys().cloned().collect()
    }

    fn has_waiters(&self, key: &str) -> bool {
        self.waiting.load(Ordering::Relaxed) != 0 && self.slots().contains_key(key)
    }

    /// Hands `record` to the waiters of `key`.
    fn deliver(&self, key: &str, record: Option<Record>) {
        if let Some(slot) = self.slots().get(key) {
            slot.tx.send_replace(Some(Arc::new(record)));
        }
    }

    /// Ends the subscription.
    pub(crate) fn stop(&self) {
        self.stop.notify_one();
    }

    /// Starts the subscription to the completion channel, once.
    pub(crate) fn listen(&self, shared: &Arc<Shared>, client: &Client) {
        if self.listening.load(Ordering::Relaxed) || self.listening.swap(true, Ordering::SeqCst) {
            return;
        }
        let task = listener::listen(Arc::downgrade(shared), client.clone(), self.stop.clone());
        tokio::spawn(watched(
            shared.life.guard("the idempotency completion listener"),
            task,
        ));
    }
}

/// Reads the record of `key` and hands it to its waiters; a failed read is left to the next
/// re-check.
fn refresh(shared: &Arc<Shared>, key: String) {
    let shared = shared.clone();
    tokio::spawn(async move {
        match shared.read(&key).await {
            Ok(record) => shared.waits.deliver(&key, record),
            Err(e) => {
                tracing::debug!(target: "redisx::idempotency", error = %format_args!("{e:#}"), "a waited-on record could not be read; the next re-check tries again");
            }
        }
    });
}

fn refresh_all(shared: &Arc<Shared>) {
    for key in shared.waits.waited_keys() {
        refresh(shared, key);
    }
}

/// A completion message re-reads its record for the waiters here; so does every
/// (re)subscription and every `recheck` while waiters exist.
impl Listener for Shared {
    const WHAT: &'static str = "the idempotency completion listener";
    const FALLBACK: &'static str =
        "waiting duplicates re-check the record on their own until it can";

    fn subscribe<'a>(&'a self, pubsub: &'a mut PubSub) -> PluginFuture<'a, Result<()>> {
        Box::pin(pubsub.subscribe(&self.channel))
    }

    fn message(this: &Arc<Self>, msg: &Msg) {
        if let Ok(key) = std::str::from_utf8(msg.get_payload_bytes())
            && this.waits.has_waiters(key)
        {
            refresh(this, key.to_owned());
        }
    }

    fn subscribed(this: &Arc<Self>) {
        this.waits.subscribed.store(true, Ordering::Relaxed);
        // A completion published before the subscription took effect was missed.
        refresh_all(this);
    }

    fn unsubscribed(&self) {
        self.waits.subscribed.store(false, Ordering::Relaxed);
    }

    fn tick_every(&self) -> Option<Duration> {
        Some(self.cfg.recheck)
    }

    fn tick(this: &Arc<Self>) {
        refresh_all(this);
    }
}
