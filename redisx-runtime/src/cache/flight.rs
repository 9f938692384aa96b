//! In-process single-flight: callers of one key in one runtime share one load.
//!
//! The first caller of a key becomes the leader; later callers follow and receive the leader's
//! value. A leader that fails, panics or is cancelled marks its flight failed (in `Drop`), so
//! followers never hang: each then loads for itself.

use std::any::Any;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

#[derive(Clone)]
pub(crate) enum FlightState {
    Running,
    Done(Arc<dyn Any + Send + Sync>),
    Failed,
}

/// The running flights by key. A flight gets its channel only when a follower arrives, so a
/// load nobody else waits for costs one map insert and remove. The map only ever holds the
/// keys loading right now, so it is hashed with `quick_cache`'s fast randomly seeded hasher
/// (the one L1 uses) rather than the std `SipHash`: every read hashes its key twice here
/// (one lookup-or-insert, one remove).
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<
        HashMap<Box<str>, Option<watch::Sender<FlightState>>, quick_cache::DefaultHashBuilder>,
    >,
}

pub(crate) enum Join<'a> {
    Leader(Leader<'a>),
    Follower(watch::Receiver<FlightState>),
}

impl Flights {
    pub(crate) fn join<'a>(&'a self, key: &'a str) -> Join<'a> {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.entry(Box::from(key)) {
            Entry::Occupied(mut slot) => {
                let tx = slot
                    .get_mut()
                    .get_or_insert_with(|| watch::channel(FlightState::Running).0);
                Join::Follower(tx.subscribe())
            }
            Entry::Vacant(slot) => {
                slot.insert(None);
                Join::Leader(Leader {
                    flights: self,
                    key,
                    finished: false,
                })
            }
        }
    }

    fn finish(&self, key: &str, state: impl FnOnce() -> FlightState) {
        let tx = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key)
            .flatten();
        // Only build the outcome (a clone of the value) when someone follows.
        if let Some(tx) = tx.filter(|tx| tx.receiver_count() > 0) {
            let _ = tx.send(state());
        }
    }
}

/// The leader's handle: publishes the outcome to followers exactly once.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: &'a str,
    finished: bool,
}

impl Leader<'_> {
    /// Hands the value to the followers; `value` runs only if there are any.
    pub(crate) fn complete(mut self, value: impl FnOnce() -> Arc<dyn Any + Send + Sync>) {
        self.finished = true;
        self.flights.finish(self.key, || FlightState::Done(value()));
    }

    pub(crate) fn fail(mut self) {
        self.finished = true;
        self.flights.finish(self.key, || FlightState::Failed);
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.flights.finish(self.key, || FlightState::Failed);
        }
    }
}

/// Waits for the leader's outcome; `None` when it failed, panicked or was cancelled.
pub(crate) async fn follow(
    mut rx: watch::Receiver<FlightState>,
) -> Option<Arc<dyn Any + Send + Sync>> {
    loop {
        match &*rx.borrow_and_update() {
            FlightState::Done(v) => return Some(v.clone()),
            FlightState::Failed => return None,
            FlightState::Running => {}
        }
        if rx.changed().await.is_err() {
            // The sender is gone; its last value tells what happened.
            return match &*rx.borrow() {
                FlightState::Done(v) => Some(v.clone()),
                _ => None,
            };
        }
    }
}
