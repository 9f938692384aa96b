//! In-process single-flight: callers of one key in one runtime share one load.
//!
//! The first caller of a key becomes the leader; later callers follow and receive the leader's
//! value, or its error when the error can be shared ([`ErrorSharing`]). A leader whose error
//! cannot be shared, or that panics or is cancelled, marks its flight failed (in `Drop` for the
//! last two), so followers never hang: one of them then loads in its place.

use std::any::Any;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// A value or an error handed between tasks, type-erased.
pub(crate) type Shared = Arc<dyn Any + Send + Sync>;

#[derive(Clone)]
pub(crate) enum FlightState {
    Running,
    Done(Shared),
    /// The load failed; with the error when it can be shared.
    Failed(Option<Shared>),
}

/// What a follower receives from its leader.
pub(crate) enum Followed {
    Value(Shared),
    Error(Shared),
}

/// How a failed load's error is handed to the callers that waited on the same load: shared
/// (each gets a clone, and no caller loads again), or not (they take over the load one at a
/// time). Picked per call: [`ErrorSharing::cloned`] for any `Clone + Send + Sync` error,
/// [`ErrorSharing::known`] for the error types redisx can clone without a bound (what
/// [`Cache::get_or_load`](crate::Cache::get_or_load) uses), [`ErrorSharing::none`] to always
/// take over.
///
/// ```
/// use redisx_runtime::cache::ErrorSharing;
/// #[derive(Clone, Debug)]
/// struct DbDown;
/// let _shared = ErrorSharing::<DbDown>::cloned();
/// let _by_type = ErrorSharing::<std::io::Error>::known(); // io::Error is not Clone: not shared
/// ```
pub struct ErrorSharing<E> {
    erase: fn(&E) -> Option<Shared>,
    unerase: fn(&(dyn Any + Send + Sync)) -> Option<E>,
}

impl<E> Clone for ErrorSharing<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for ErrorSharing<E> {}

impl<E> std::fmt::Debug for ErrorSharing<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ErrorSharing")
    }
}

impl<E: Clone + Send + Sync + 'static> ErrorSharing<E> {
    /// Every waiting caller gets a clone of the error.
    ///
    /// ```
    /// # use redisx_runtime::cache::ErrorSharing;
    /// #[derive(Clone, Debug)]
    /// struct DbDown;
    /// let _sharing = ErrorSharing::<DbDown>::cloned();
    /// ```
    pub fn cloned() -> Self {
        Self {
            erase: |e| Some(Arc::new(e.clone())),
            unerase: |a| a.downcast_ref::<E>().cloned(),
        }
    }
}

impl<E: 'static> ErrorSharing<E> {
    /// Never shared: the waiting callers take over the load, one at a time.
    ///
    /// ```
    /// # use redisx_runtime::cache::ErrorSharing;
    /// let _sharing = ErrorSharing::<std::io::Error>::none();
    /// ```
    pub fn none() -> Self {
        Self {
            erase: |_| None,
            unerase: |_| None,
        }
    }

    /// Shared when `E` is one of the error types redisx can clone without a bound on `E`:
    /// [`crate::Error`], `String`, `&'static str`, `Arc<dyn Error + Send + Sync>`; any other
    /// type is not shared.
    ///
    /// ```
    /// # use redisx_runtime::cache::ErrorSharing;
    /// let _sharing = ErrorSharing::<redisx_runtime::Error>::known(); // shared
    /// let _not = ErrorSharing::<std::io::Error>::known(); // not `Clone`: not shared
    /// ```
    pub fn known() -> Self {
        Self {
            erase: |e| {
                let any = e as &dyn Any;
                erase::<crate::Error>(any)
                    .or_else(|| erase::<String>(any))
                    .or_else(|| erase::<&'static str>(any))
                    .or_else(|| erase::<Arc<dyn StdError + Send + Sync>>(any))
            },
            unerase: |a| {
                unerase::<crate::Error, E>(a)
                    .or_else(|| unerase::<String, E>(a))
                    .or_else(|| unerase::<&'static str, E>(a))
                    .or_else(|| unerase::<Arc<dyn StdError + Send + Sync>, E>(a))
            },
        }
    }

    /// The error to hand to followers, when it can be shared.
    pub(crate) fn share(&self, err: &E) -> Option<Shared> {
        (self.erase)(err)
    }

    /// A follower's copy of a shared error (`None`: another call site's type).
    pub(crate) fn receive(&self, shared: &(dyn Any + Send + Sync)) -> Option<E> {
        (self.unerase)(shared)
    }
}

fn erase<K: Clone + Send + Sync + 'static>(any: &dyn Any) -> Option<Shared> {
    any.downcast_ref::<K>()
        .map(|k| Arc::new(k.clone()) as Shared)
}

/// A clone of the `K` in `shared`, as an `E` when `E` is `K`.
fn unerase<K: Clone + 'static, E: 'static>(shared: &(dyn Any + Send + Sync)) -> Option<E> {
    let k = shared.downcast_ref::<K>()?.clone();
    (Box::new(k) as Box<dyn Any>)
        .downcast::<E>()
        .ok()
        .map(|e| *e)
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
    pub(crate) fn complete(mut self, value: impl FnOnce() -> Shared) {
        self.finished = true;
        self.flights.finish(self.key, || FlightState::Done(value()));
    }

    /// Marks the flight failed, handing the followers the error `shared` returns (when it
    /// can be shared); `shared` runs only if there are followers.
    pub(crate) fn fail(mut self, shared: impl FnOnce() -> Option<Shared>) {
        self.finished = true;
        self.flights
            .finish(self.key, || FlightState::Failed(shared()));
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.flights.finish(self.key, || FlightState::Failed(None));
        }
    }
}

/// Waits for the leader's outcome; `None` when it failed with an error it could not share,
/// panicked or was cancelled.
pub(crate) async fn follow(mut rx: watch::Receiver<FlightState>) -> Option<Followed> {
    let outcome = |state: &FlightState| match state {
        FlightState::Done(v) => Some(Some(Followed::Value(v.clone()))),
        FlightState::Failed(e) => Some(e.clone().map(Followed::Error)),
        FlightState::Running => None,
    };
    loop {
        if let Some(done) = outcome(&rx.borrow_and_update()) {
            return done;
        }
        if rx.changed().await.is_err() {
            // The sender is gone; its last value tells what happened.
            return outcome(&rx.borrow()).flatten();
        }
    }
}
