//! Cross-instance invalidation over pub/sub, and the waiters woken by it.
//!
//! Every delete, overwrite and tag invalidation of a cache prefix is published on one channel,
//! `{app prefix}{cache prefix}__events`, and so is a fill that another instance flagged as
//! awaited (`flag_waiter.lua`). A message is
//!
//! ```text
//! k<origin>\n<key>\n<key>...   these keys changed: evict them from L1, wake their waiters
//! t<origin>\n<tag>\n<tag>...   these tags were invalidated: evict the L1-only entries the
//!                              instance's in-process tag index names under them (entries
//!                              in Redis are named by the `k` message of their deletion)
//! p<origin>\n<pattern>          a pattern was invalidated: evict the L1 keys matching it
//!                              (entries in Redis are named by a `k` message too; this
//!                              reaches the L1-only ones)
//! c<origin>                    the whole prefix was cleared: empty L1
//! ```
//!
//! where `<origin>` identifies the publishing runtime, so that an instance ignores its own
//! evictions (its L1 is already up to date) while still waking its waiters. The listener runs
//! on its own connection, resubscribes after a reconnect and then empties L1, since messages
//! may have been lost while it was away; the L1 ttl bounds staleness in between.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::{Notify, oneshot};

use super::{Cache, CacheInner};
use crate::client::{Client, PubSub};
use crate::error::{Error, ErrorCode, Result};
use crate::life::{TaskGuard, watched};

/// Builds a "keys changed" message.
pub(crate) fn keys_message<'a>(origin: &str, keys: impl IntoIterator<Item = &'a str>) -> String {
    let mut msg = String::with_capacity(64);
    msg.push('k');
    msg.push_str(origin);
    for k in keys {
        msg.push('\n');
        msg.push_str(k);
    }
    msg
}

/// Builds a "tags invalidated" message.
pub(crate) fn tags_message<S: AsRef<str>>(origin: &str, tags: &[S]) -> String {
    let mut msg =
        String::with_capacity(16 + tags.iter().map(|t| t.as_ref().len() + 1).sum::<usize>());
    msg.push('t');
    msg.push_str(origin);
    for t in tags {
        msg.push('\n');
        msg.push_str(t.as_ref());
    }
    msg
}

/// Builds a "pattern invalidated" message.
pub(crate) fn pattern_message(origin: &str, pattern: &str) -> String {
    format!("p{origin}\n{pattern}")
}

/// Builds a "prefix cleared" message.
pub(crate) fn clear_message(origin: &str) -> String {
    format!("c{origin}")
}

pub(crate) enum Message<'a> {
    Keys {
        origin: &'a str,
        keys: std::str::Split<'a, char>,
    },
    Tags {
        origin: &'a str,
        tags: std::str::Split<'a, char>,
    },
    Pattern {
        origin: &'a str,
        pattern: &'a str,
    },
    Clear {
        origin: &'a str,
    },
}

pub(crate) fn parse(payload: &str) -> Option<Message<'_>> {
    let (head, rest) = payload.split_once('\n').unwrap_or((payload, ""));
    let kind = head.chars().next()?;
    let origin = &head[kind.len_utf8()..];
    match kind {
        'k' if !rest.is_empty() => Some(Message::Keys {
            origin,
            keys: rest.split('\n'),
        }),
        't' if !rest.is_empty() => Some(Message::Tags {
            origin,
            tags: rest.split('\n'),
        }),
        'p' if payload.contains('\n') => Some(Message::Pattern {
            origin,
            pattern: rest,
        }),
        'c' => Some(Message::Clear { origin }),
        _ => None,
    }
}

/// Callers in this runtime waiting for another instance to fill a key.
#[derive(Default)]
pub(crate) struct Waiters {
    map: Mutex<HashMap<Box<str>, Arc<WaitSlot>>>,
}

/// One key's wake-ups: a generation counter, bumped by every wake-up, beside the `Notify`. A
/// waiter notes the generation before it reads; if the generation moved by the time its
/// `Notified` is armed, a wake-up already came and it reads again instead of sleeping.
#[derive(Default)]
pub(crate) struct WaitSlot {
    pub(crate) notify: Notify,
    generation: AtomicU64,
    /// Registrations of this slot alive now; changed under the map's lock only. The slot
    /// leaves the map when the last one drops (counting `Arc`s instead missed that whenever
    /// a wake-up held a clone at that moment).
    registered: AtomicU64,
}

impl WaitSlot {
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn wake(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
}

/// A waiter's registration for the wake-ups of one key. Dropping it unregisters, also when
/// the waiting caller is cancelled (its future dropped), so the map only ever holds the keys
/// somebody waits for right now.
pub(crate) struct Registration<'a> {
    waiters: &'a Waiters,
    key: &'a str,
    slot: Arc<WaitSlot>,
}

impl Registration<'_> {
    pub(crate) fn slot(&self) -> &Arc<WaitSlot> {
        &self.slot
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.waiters.unregister(self.key, &self.slot);
    }
}

impl Waiters {
    pub(crate) fn register<'a>(&'a self, key: &'a str) -> Registration<'a> {
        let slot = {
            let mut map = self
                .map
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = map.entry(Box::from(key)).or_default();
            slot.registered.fetch_add(1, Ordering::SeqCst);
            slot.clone()
        };
        Registration {
            waiters: self,
            key,
            slot,
        }
    }

    /// The number of keys with registered waiters.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    fn unregister(&self, key: &str, notify: &Arc<WaitSlot>) {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let last = notify.registered.fetch_sub(1, Ordering::SeqCst) == 1;
        if last && map.get(key).is_some_and(|n| Arc::ptr_eq(n, notify)) {
            map.remove(key);
        }
    }

    pub(crate) fn wake(&self, key: &str) {
        let notify = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned();
        if let Some(n) = notify {
            n.wake();
        }
    }

    pub(crate) fn wake_all(&self) {
        let all: Vec<_> = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for n in all {
            n.wake();
        }
    }
}

impl CacheInner {
    /// Applies one message of the channel: evicts what another instance changed (unless
    /// invalidation is off) and wakes the callers waiting for those keys.
    pub(crate) fn on_message(&self, payload: &str) {
        match parse(payload) {
            Some(Message::Keys { origin, keys }) => {
                let evict = origin != self.origin && self.cfg.invalidation;
                for k in keys {
                    if evict {
                        self.l1.remove(k);
                    }
                    self.waiters.wake(&self.keys.full(k));
                }
            }
            Some(Message::Tags { origin, tags }) => {
                if origin != self.origin && self.cfg.invalidation {
                    let tags: Vec<&str> = tags.collect();
                    self.evict_local_tags(&tags, |_| true);
                }
            }
            Some(Message::Pattern { origin, pattern }) => {
                if origin != self.origin && self.cfg.invalidation {
                    self.evict_local_pattern(pattern);
                }
            }
            Some(Message::Clear { origin }) => {
                if origin != self.origin {
                    self.l1.clear();
                }
                self.waiters.wake_all();
            }
            None => {
                tracing::debug!(target: "redisx::cache", payload, "ignoring an unknown cache invalidation message");
            }
        }
    }
}

impl Cache {
    /// Publishes one message on this cache's channel.
    pub(crate) async fn publish(&self, client: &Client, msg: String) -> Result<()> {
        client
            .query_named::<i64>(
                "PUBLISH",
                redis::cmd("PUBLISH").arg(&self.inner.channel).arg(msg),
            )
            .await
            .map(drop)
    }
}

/// Starts the listener; resolves `ready` once the first subscription is in place.
pub(crate) fn spawn(
    guard: TaskGuard,
    cache: Weak<CacheInner>,
    client: Client,
    channel: String,
    stop: Arc<Notify>,
    ready: oneshot::Sender<Result<()>>,
) {
    tokio::spawn(watched(guard, listen(cache, client, channel, stop, ready)));
}

/// A pub/sub connection of the client's own ([`Client::pubsub`]: its connect timeout and
/// errors), subscribed to `channel` within the connect timeout too.
async fn subscribe(client: &Client, channel: &str) -> Result<PubSub> {
    let mut pubsub = client.pubsub().await?;
    match tokio::time::timeout(client.config().connect_timeout, pubsub.subscribe(channel)).await {
        Ok(r) => r
            .map(|()| pubsub)
            .map_err(|e| e.with_context("channel", channel.to_owned())),
        Err(_) => Err(Error::new(
            ErrorCode::ConnectionTimeout,
            "subscribing to the cache invalidation channel timed out",
        )
        .with_context("channel", channel.to_owned())),
    }
}

async fn listen(
    cache: Weak<CacheInner>,
    client: Client,
    channel: String,
    stop: Arc<Notify>,
    ready: oneshot::Sender<Result<()>>,
) {
    let mut ready = Some(ready);
    let mut attempt: u32 = 0;
    let mut subscribed_before = false;
    loop {
        let pubsub = tokio::select! {
            r = subscribe(&client, &channel) => r,
            () = stop.notified() => return,
        };
        let pubsub = match pubsub {
            Ok(p) => p,
            Err(e) => {
                if let Some(tx) = ready.take() {
                    if !client.config().lazy {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    let _ = tx.send(Ok(()));
                }
                let delay = client
                    .config()
                    .reconnect
                    .delay(attempt, rand::random_range(0.0..=1.0));
                attempt = attempt.saturating_add(1);
                tracing::debug!(target: "redisx::cache", %channel, error = %format_args!("{e:#}"), ?delay, "cache invalidation listener: subscribe failed");
                tokio::select! {
                    () = tokio::time::sleep(delay) => continue,
                    () = stop.notified() => return,
                }
            }
        };
        attempt = 0;
        if let Some(tx) = ready.take() {
            let _ = tx.send(Ok(()));
        }
        if subscribed_before {
            // Messages may have been lost while we were away: start L1 afresh.
            let Some(inner) = cache.upgrade() else { return };
            inner.l1.clear();
            inner.waiters.wake_all();
            tracing::info!(target: "redisx::cache", %channel, "cache invalidation listener resubscribed; L1 cleared");
        }
        subscribed_before = true;
        let mut stream = pubsub.into_on_message();
        loop {
            let msg = tokio::select! {
                m = stream.next() => m,
                () = stop.notified() => return,
            };
            let Some(msg) = msg else { break };
            let Some(inner) = cache.upgrade() else { return };
            match std::str::from_utf8(msg.get_payload_bytes()) {
                Ok(payload) => inner.on_message(payload),
                Err(_) => {
                    tracing::warn!(target: "redisx::cache", %channel, "ignoring a non-UTF-8 cache invalidation message");
                }
            }
        }
        tracing::warn!(target: "redisx::cache", %channel, "cache invalidation listener lost its connection; resubscribing");
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
            () = stop.notified() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a waiter that was cancelled (its future dropped while it waited) never
    /// unregistered, so the map kept one slot per such key for ever.
    #[test]
    fn registrations_leave_the_map_when_dropped_in_any_order() {
        let waiters = Waiters::default();
        let a = waiters.register("k");
        let b = waiters.register("k");
        assert!(Arc::ptr_eq(a.slot(), b.slot()), "one slot per key");
        let c = waiters.register("other");
        assert_eq!(waiters.len(), 2);
        drop(a);
        assert_eq!(waiters.len(), 2, "b still waits for k");
        // A clone held elsewhere (a wake-up in progress) does not keep the slot in the map.
        let held = b.slot().clone();
        drop(b);
        assert_eq!(waiters.len(), 1, "only `other` is still waited for");
        drop(held);
        drop(c);
        assert_eq!(waiters.len(), 0);
        // A waiting future that is dropped (cancelled) unregisters too.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let wait = async {
                let reg = waiters.register("k");
                reg.slot().notify.notified().await;
            };
            let cancelled = tokio::time::timeout(std::time::Duration::from_millis(10), wait).await;
            assert!(cancelled.is_err());
        });
        assert_eq!(
            waiters.len(),
            0,
            "the cancelled waiter left its slot behind"
        );
    }

    #[test]
    fn messages_roundtrip() {
        let m = keys_message("abc", ["user:1", "user:2"]);
        match parse(&m) {
            Some(Message::Keys { origin, keys }) => {
                assert_eq!(origin, "abc");
                assert_eq!(keys.collect::<Vec<_>>(), ["user:1", "user:2"]);
            }
            _ => panic!("not a keys message"),
        }
        match parse(&tags_message("abc", &["users", "user:1"])) {
            Some(Message::Tags { origin, tags }) => {
                assert_eq!(origin, "abc");
                assert_eq!(tags.collect::<Vec<_>>(), ["users", "user:1"]);
            }
            _ => panic!("not a tags message"),
        }
        assert!(
            parse("tabc").is_none(),
            "a tags message names at least one tag"
        );
        assert!(matches!(
            parse(&pattern_message("abc", "user:*")),
            Some(Message::Pattern {
                origin: "abc",
                pattern: "user:*"
            })
        ));
        assert!(matches!(
            parse(&pattern_message("abc", "")),
            Some(Message::Pattern {
                origin: "abc",
                pattern: ""
            })
        ));
        assert!(
            parse("pabc").is_none(),
            "a pattern message carries its pattern line"
        );
        assert!(matches!(
            parse(&clear_message("o")),
            Some(Message::Clear { origin: "o" })
        ));
        assert!(parse("").is_none());
        assert!(parse("x123").is_none());
        assert!(parse("kabc").is_none());
    }
}
