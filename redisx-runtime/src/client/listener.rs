//! A subscription kept alive in the background for a plugin ([`Listener`], [`listen`]): it
//! subscribes on a [`PubSub`] connection of its own, hands every message over, and when the
//! connection drops, subscribes again with backoff (100 ms doubling to 3.2 s), until the
//! plugin stops it or the plugin is gone. The lock release and idempotency completion
//! listeners are two. Its logs have the target `redisx::pubsub` and name the listener.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::Msg;
use tokio::sync::Notify;

use super::{Client, PubSub};
use crate::error::Result;
use crate::plugin::PluginFuture;

/// What a background subscription does; implemented by the plugin state it serves.
pub(crate) trait Listener: Send + Sync + 'static {
    /// What it is, for logs (`"the lock release listener"`).
    const WHAT: &'static str;
    /// What its users do while it cannot subscribe, for the warning.
    const FALLBACK: &'static str;

    /// Subscribes `pubsub` to the listener's channels or patterns.
    fn subscribe<'a>(&'a self, pubsub: &'a mut PubSub) -> PluginFuture<'a, Result<()>>;

    /// A message arrived.
    fn message(this: &Arc<Self>, msg: &Msg);

    /// The subscription is (again) established: messages published before may have been
    /// missed.
    fn subscribed(_this: &Arc<Self>) {}

    /// The subscription's connection dropped.
    fn unsubscribed(&self) {}

    /// How often [`tick`](Self::tick) runs while subscribed (`None`: never).
    fn tick_every(&self) -> Option<Duration> {
        None
    }

    /// A periodic call while subscribed.
    fn tick(_this: &Arc<Self>) {}
}

/// Runs `listener`'s subscription until `stop` is notified or the listener is dropped.
pub(crate) async fn listen<L: Listener>(listener: Weak<L>, client: Client, stop: Arc<Notify>) {
    let mut failures: u32 = 0;
    loop {
        let subscribed = async {
            let mut pubsub = client.pubsub().await?;
            let Some(l) = listener.upgrade() else {
                return Ok(None);
            };
            l.subscribe(&mut pubsub).await?;
            Ok::<_, crate::error::Error>(Some(pubsub))
        };
        let pubsub = tokio::select! {
            () = stop.notified() => return,
            r = subscribed => r,
        };
        match pubsub {
            Ok(None) => return,
            Ok(Some(pubsub)) => {
                failures = 0;
                let Some(l) = listener.upgrade() else { return };
                L::subscribed(&l);
                let every = l.tick_every();
                drop(l);
                if !receive(&listener, pubsub, &stop, every).await {
                    return;
                }
                if let Some(l) = listener.upgrade() {
                    l.unsubscribed();
                }
                tracing::debug!(target: "redisx::pubsub", listener = L::WHAT, "a listener's connection closed; resubscribing");
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if failures == 1 {
                    tracing::warn!(target: "redisx::pubsub", listener = L::WHAT, error = %format_args!("{e:#}"), fallback = L::FALLBACK, "a listener cannot subscribe; it retries with backoff");
                }
            }
        }
        if listener.strong_count() == 0 {
            return;
        }
        let backoff = Duration::from_millis(100u64.saturating_mul(1 << failures.min(5)));
        tokio::select! {
            () = stop.notified() => return,
            () = tokio::time::sleep(backoff) => {}
        }
    }
}

/// Hands messages (and ticks) to the listener until the connection closes (`true`) or the
/// listener must end (`false`: stopped or gone).
async fn receive<L: Listener>(
    listener: &Weak<L>,
    pubsub: PubSub,
    stop: &Notify,
    every: Option<Duration>,
) -> bool {
    let mut messages = pubsub.into_on_message();
    let mut tick = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.reset();
    loop {
        tokio::select! {
            () = stop.notified() => return false,
            _ = tick.tick(), if every.is_some() => {
                let Some(l) = listener.upgrade() else { return false };
                L::tick(&l);
            }
            msg = messages.next() => {
                let Some(msg) = msg else { return true };
                let Some(l) = listener.upgrade() else { return false };
                L::message(&l, &msg);
            }
        }
    }
}
