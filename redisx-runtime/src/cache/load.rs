//! The miss path: in-process single-flight, the distributed read-or-lock (`stampede.rs`), the
//! load, and the write of its value.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::envelope::HEADER_LEN;
use super::flight::{self, ErrorSharing, Followed, Join, Shared};
use super::l1::Erasure;
use super::l2::{Read, Written};
use super::local::Fill;
use super::stampede::{Claim, FirstRead, LockGuard, RegenLock};
use super::stats::Op;
use super::{Cache, Cacheable, Call, EntryOptions, StampedeFallback, envelope};
use crate::error::{Error, ErrorCode};

/// Everything one loading call takes beyond its entry's options: what
/// [`Cache::get_or_load_using`] and `#[cached]` pass.
///
/// - `unless`: a loaded value it accepts is returned but not cached (default: cache all);
/// - `erasure`: how L1 stores the value ([`Erasure::boxed`] by default; [`Erasure::arc`]
///   stores an `Arc<U>` as itself);
/// - `errors`: whether a failed load's error is handed to the callers waiting on the same
///   load ([`ErrorSharing::known`] by default);
/// - `timeout_error`: whether a stampede wait that timed out under
///   [`StampedeFallback::Error`] returns [`ErrorCode::CacheStampedeTimeout`] (needs
///   `E: From<redisx::Error>`) instead of loading.
///
/// ```
/// use redisx_runtime::cache::{EntryOptions, LoadOptions};
/// let entry = EntryOptions::new().tags(["users"]);
/// let _how = LoadOptions::<Vec<u64>, redisx_runtime::Error>::new(&entry)
///     .unless(|v: &Vec<u64>| v.is_empty())
///     .share_errors()
///     .timeout_error();
/// ```
pub struct LoadOptions<'a, T, E, U = fn(&T) -> bool> {
    pub(crate) entry: &'a EntryOptions,
    pub(crate) unless: U,
    pub(crate) erasure: Erasure<T>,
    pub(crate) errors: ErrorSharing<E>,
    pub(crate) timeout_error: Option<fn(Error) -> E>,
}

impl<T, E, U> std::fmt::Debug for LoadOptions<'_, T, E, U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("entry", self.entry)
            .field("timeout_error", &self.timeout_error.is_some())
            .finish_non_exhaustive()
    }
}

fn cache_all<T>(_: &T) -> bool {
    false
}

impl<'a, T: Clone + Send + Sync + 'static, E: 'static> LoadOptions<'a, T, E> {
    /// The defaults, with the entry options `entry`.
    ///
    /// ```
    /// # use redisx_runtime::cache::{EntryOptions, LoadOptions};
    /// let entry = EntryOptions::new();
    /// let _how = LoadOptions::<u64, redisx_runtime::Error>::new(&entry);
    /// ```
    pub fn new(entry: &'a EntryOptions) -> Self {
        Self {
            entry,
            unless: cache_all::<T>,
            erasure: Erasure::boxed(),
            errors: ErrorSharing::known(),
            timeout_error: None,
        }
    }
}

impl<'a, T, E, U> LoadOptions<'a, T, E, U> {
    /// Values for which `unless` answers `true` are returned but not cached.
    ///
    /// ```
    /// # use redisx_runtime::cache::{EntryOptions, LoadOptions};
    /// let entry = EntryOptions::new();
    /// // An empty result is returned to the caller but not cached.
    /// let _how = LoadOptions::<Vec<u64>, String>::new(&entry).unless(|v: &Vec<u64>| v.is_empty());
    /// ```
    #[must_use]
    pub fn unless<V: FnOnce(&T) -> bool>(self, unless: V) -> LoadOptions<'a, T, E, V> {
        LoadOptions {
            entry: self.entry,
            unless,
            erasure: self.erasure,
            errors: self.errors,
            timeout_error: self.timeout_error,
        }
    }

    /// How L1 stores the value (use the same erasure for every call of one key).
    ///
    /// ```
    /// # use redisx_runtime::cache::{EntryOptions, Erasure, LoadOptions};
    /// use std::sync::Arc;
    /// let entry = EntryOptions::new();
    /// // L1 keeps the `Arc` itself: a hit costs one reference count increment.
    /// let _how = LoadOptions::<Arc<Vec<u8>>, String>::new(&entry).erasure(Erasure::arc());
    /// ```
    #[must_use]
    pub fn erasure(mut self, erasure: Erasure<T>) -> Self {
        self.erasure = erasure;
        self
    }

    /// How a failed load's error reaches the callers waiting on it.
    ///
    /// ```
    /// # use redisx_runtime::cache::{EntryOptions, ErrorSharing, LoadOptions};
    /// let entry = EntryOptions::new();
    /// // The callers waiting on a failed load take it over instead of sharing its error.
    /// let _how = LoadOptions::<u64, String>::new(&entry).errors(ErrorSharing::none());
    /// ```
    #[must_use]
    pub fn errors(mut self, errors: ErrorSharing<E>) -> Self {
        self.errors = errors;
        self
    }

    /// Hands every caller waiting on a failed load a clone of its error.
    ///
    /// ```
    /// # use redisx_runtime::cache::{EntryOptions, LoadOptions};
    /// #[derive(Clone, Debug)]
    /// struct DbDown;
    /// let entry = EntryOptions::new();
    /// let _how = LoadOptions::<u64, DbDown>::new(&entry).share_errors();
    /// ```
    #[must_use]
    pub fn share_errors(self) -> Self
    where
        E: Clone + Send + Sync + 'static,
    {
        self.errors(ErrorSharing::cloned())
    }

    /// A stampede wait that timed out under [`StampedeFallback::Error`] returns
    /// [`ErrorCode::CacheStampedeTimeout`] as an `E`.
    ///
    /// ```
    /// # use redisx_runtime::cache::{EntryOptions, LoadOptions};
    /// let entry = EntryOptions::new();
    /// let _how = LoadOptions::<u64, redisx_runtime::Error>::new(&entry).timeout_error();
    /// ```
    #[must_use]
    pub fn timeout_error(mut self) -> Self
    where
        E: From<Error>,
    {
        self.timeout_error = Some(E::from);
        self
    }
}

/// The outcome of the shared fetch path.
pub(crate) enum Fetched<T, E, Fut> {
    /// A value, or the loader's error.
    Done(Result<T, E>),
    /// A redisx error in the loader's error type (a stampede wait that timed out): never
    /// shared with other callers, who have their own wait.
    Refused(E),
    /// A stale value inside the SWR window; the loader was not started.
    Stale {
        value: T,
        loader: Fut,
        /// The stale entry's header, for the refresh's compare-and-set write.
        header: [u8; HEADER_LEN],
    },
}

impl Cache {
    /// `get_or_load` without an SWR refresh: a stale value is reloaded in the foreground.
    pub(crate) async fn load_through<T, E, U, Fut>(
        &self,
        key: &str,
        how: LoadOptions<'_, T, E, U>,
        loader: Fut,
    ) -> Result<T, E>
    where
        T: Cacheable,
        E: 'static,
        U: FnOnce(&T) -> bool,
        Fut: Future<Output = Result<T, E>>,
    {
        match self.fetch(key, how, loader, false).await {
            Fetched::Done(r) => r,
            Fetched::Refused(e) => Err(e),
            Fetched::Stale { .. } => {
                unreachable!("fetch never answers Stale when allow_stale is false")
            }
        }
    }

    /// The shared miss path: in-process single-flight, then the distributed read-or-lock,
    /// waiting, loading and writing.
    pub(crate) async fn fetch<T, E, U, Fut>(
        &self,
        key: &str,
        how: LoadOptions<'_, T, E, U>,
        loader: Fut,
        allow_stale: bool,
    ) -> Fetched<T, E, Fut>
    where
        T: Cacheable,
        E: 'static,
        U: FnOnce(&T) -> bool,
        Fut: Future<Output = Result<T, E>>,
    {
        let call = match self.call(key, how.entry) {
            Ok(call) => call,
            Err(e) => {
                self.fail_open(Op::Read, "check", key, &e);
                return Fetched::Done(loader.await);
            }
        };
        let span = tracing::debug_span!(target: "redisx::cache", "cache.get",
            otel.kind = "internal",
            cache.key = self.span_key(key),
            cache.layer = tracing::field::Empty,
            cache.hit = tracing::field::Empty
        );
        // One load (or one wait for another instance's load) per key per runtime: callers
        // that arrive while a read or load of the key runs share its outcome, so a stampede
        // of callers costs one L2 read, not one each. Waiting here and for another instance
        // together lasts at most `wait_timeout` from the first wait (the clock is only read
        // once a caller waits, not on every read).
        let mut deadline: Option<Instant> = None;
        let flight_leader = loop {
            let rx = match self.inner.flights.join(key) {
                Join::Leader(l) => break l,
                Join::Follower(rx) => rx,
            };
            let deadline = *deadline
                .get_or_insert_with(|| Instant::now() + self.inner.cfg.stampede.wait_timeout);
            let wait = deadline.saturating_duration_since(Instant::now());
            let Ok(followed) = tokio::time::timeout(wait, flight::follow(rx)).await else {
                return self
                    .after_wait_timeout(key, how.timeout_error, loader)
                    .await;
            };
            let shared = match followed {
                Some(Followed::Value(v)) => v.downcast_ref::<T>().cloned().map(Ok),
                Some(Followed::Error(e)) => how.errors.receive(&*e).map(Err),
                // The leader failed (with an error it could not share), panicked or was
                // cancelled: one of its followers leads next, one at a time, until the
                // deadline.
                None => None,
            };
            if let Some(outcome) = shared {
                self.inner.metrics.stampede_prevented.inc();
                return Fetched::Done(outcome);
            }
            // Otherwise a value or error of another type under this key (another call site):
            // lead (or follow) the next flight.
        };
        let mut first = None;
        if let (Some(client), Some(full)) = (self.l2_client(call.r.mode), call.full()) {
            // Take the lock with the read only when reads have been missing lately: a plain
            // `GET` is cheaper, and a call site that mostly hits would pay for the lock
            // option on every hit (see `ReadPredictor`).
            let marker = (self.inner.cfg.stampede.enabled && !self.inner.reads.expect_hit())
                .then(envelope::new_marker);
            let since = self.inner.l1.epoch();
            let read = traced!(
                self.read::<T>(client, full, marker.as_ref(), (call.key, call.tags)),
                span
            );
            self.inner
                .reads
                .record(matches!(read, Ok(Read::Fresh(_) | Read::Stale(_))));
            match read {
                Ok(Read::Fresh(env)) => {
                    span.record("cache.layer", "l2");
                    span.record("cache.hit", true);
                    self.fill_l1(&call, &env, how.erasure, since);
                    flight_leader.complete(|| Arc::new(env.value.clone()) as Shared);
                    return Fetched::Done(Ok(env.value));
                }
                Ok(Read::Stale(env)) if allow_stale && call.r.swr > Duration::ZERO => {
                    let outcome = self.serve_stale(&span, env, loader);
                    Self::finish_flight(flight_leader, &outcome, how.errors);
                    return outcome;
                }
                // A plain read that found nothing took no lock: the coordinated path reads
                // again with the lock option (without stampede protection there is no lock
                // to take, and the miss goes straight to the load).
                Ok(Read::Miss) if marker.is_none() && self.inner.cfg.stampede.enabled => {}
                other => first = Some((marker, other)),
            }
        }
        let errors = how.errors;
        let outcome = traced!(
            self.lead(&call, loader, how, allow_stale, first, deadline),
            span
        );
        Self::finish_flight(flight_leader, &outcome, errors);
        outcome
    }

    /// Serves a stale value inside its SWR window (a hit), handing back the loader for the
    /// background refresh.
    fn serve_stale<T, E, Fut>(
        &self,
        span: &tracing::Span,
        env: envelope::Envelope<T>,
        loader: Fut,
    ) -> Fetched<T, E, Fut> {
        span.record("cache.layer", "l2");
        span.record("cache.hit", true);
        self.inner.metrics.l2_hits.inc();
        self.inner.metrics.stale_served.inc();
        let header = env.header();
        Fetched::Stale {
            value: env.value,
            loader,
            header,
        }
    }

    /// A wait for `whom` ran out at `wait_timeout`: logs it, and with
    /// [`StampedeFallback::Error`] returns the caller's [`ErrorCode::CacheStampedeTimeout`]
    /// (when its error type can hold a redisx error). `None`: the caller loads instead.
    fn stampede_timed_out<E>(
        &self,
        key: &str,
        whom: &str,
        timeout_error: Option<fn(Error) -> E>,
    ) -> Option<E> {
        let stampede = &self.inner.cfg.stampede;
        tracing::warn!(target: "redisx::cache",
            key,
            "cache stampede wait for {whom} timed out; falling back to {:?}",
            stampede.fallback
        );
        if stampede.fallback != StampedeFallback::Error {
            return None;
        }
        timeout_error.map(|into| {
            into(
                Error::new(
                    ErrorCode::CacheStampedeTimeout,
                    format!("waited {:?} for {whom}", stampede.wait_timeout),
                )
                .with_context("key", key),
            )
        })
    }

    /// A caller waited `wait_timeout` for another caller of this instance: it fails as
    /// [`stampede_timed_out`](Self::stampede_timed_out) says, or runs its own loader (its
    /// value is not written: the leader's write is still due).
    async fn after_wait_timeout<T, E, Fut>(
        &self,
        key: &str,
        timeout_error: Option<fn(Error) -> E>,
        loader: Fut,
    ) -> Fetched<T, E, Fut>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let whom = "the load of the key by another caller in this instance";
        if let Some(e) = self.stampede_timed_out(key, whom, timeout_error) {
            return Fetched::Refused(e);
        }
        let outcome = loader.await;
        self.inner.metrics.load(outcome.is_ok());
        Fetched::Done(outcome)
    }

    fn finish_flight<T, E, Fut>(
        leader: flight::Leader<'_>,
        outcome: &Fetched<T, E, Fut>,
        errors: ErrorSharing<E>,
    ) where
        T: Clone + Send + Sync + 'static,
        E: 'static,
    {
        match outcome {
            Fetched::Done(Ok(v)) | Fetched::Stale { value: v, .. } => {
                leader.complete(|| Arc::new(v.clone()) as Shared);
            }
            Fetched::Done(Err(e)) => leader.fail(|| errors.share(e)),
            Fetched::Refused(_) => leader.fail(|| None),
        }
    }

    /// The flight leader's miss: claims the entry across instances, loads under the lock it
    /// got, and writes the value.
    async fn lead<T, E, U, Fut>(
        &self,
        call: &Call<'_>,
        loader: Fut,
        how: LoadOptions<'_, T, E, U>,
        allow_stale: bool,
        first: Option<FirstRead<T>>,
        deadline: Option<Instant>,
    ) -> Fetched<T, E, Fut>
    where
        T: Cacheable,
        E: 'static,
        U: FnOnce(&T) -> bool,
        Fut: Future<Output = Result<T, E>>,
    {
        let span = tracing::Span::current();
        let mut lock = RegenLock::None;
        let mut stale: Option<T> = None;
        if let Some(client) = self.l2_client(call.r.mode).filter(|_| call.full.is_some()) {
            let deadline =
                deadline.unwrap_or_else(|| Instant::now() + self.inner.cfg.stampede.wait_timeout);
            match self.claim(client, call, first, deadline, allow_stale).await {
                Claim::Hit { env, since } => {
                    span.record("cache.layer", "l2");
                    span.record("cache.hit", true);
                    self.fill_l1(call, &env, how.erasure, since);
                    return Fetched::Done(Ok(env.value));
                }
                Claim::Stale(env) => return self.serve_stale(&span, env, loader),
                Claim::Load {
                    lock: held,
                    stale: kept,
                } => (lock, stale) = (held, kept),
                Claim::TimedOut { stale: kept } => {
                    let whom = "another instance to load the key";
                    if let Some(e) = self.stampede_timed_out(call.key, whom, how.timeout_error) {
                        return Fetched::Refused(e);
                    }
                    stale = kept;
                }
            }
        }
        span.record("cache.hit", false);
        // Load. The guard gives the lock back if the loader panics or we are cancelled.
        let mut guard = LockGuard::new(self, call.key, lock);
        let outcome = self.hold(call.full(), &guard.lock, loader).await;
        self.inner.metrics.load(outcome.is_ok());
        let value = match outcome {
            Ok(v) => v,
            Err(e) => {
                self.release(call.key, guard.take()).await;
                if let Some(s) = stale
                    && call.r.sie > Duration::ZERO
                    && self.serve_stale_on(&e)
                {
                    self.inner.metrics.stale_served.inc();
                    tracing::warn!(target: "redisx::cache",
                        key = call.key,
                        error = %describe_error(&e),
                        error_type = std::any::type_name::<E>(),
                        "loader failed; serving the stale value (stale-if-error)"
                    );
                    return Fetched::Done(Ok(s));
                }
                return Fetched::Done(Err(e));
            }
        };
        if (how.unless)(&value) {
            self.release(call.key, guard.take()).await;
            return Fetched::Done(Ok(value));
        }
        self.store_loaded("write", call, &value, &mut guard, how.erasure)
            .await;
        Fetched::Done(Ok(value))
    }

    /// Writes a loaded value under the guard's lock, then fills L1 with it; on a write error,
    /// counts and logs it (as `op`) and gives the lock back. The lock stays in the guard during
    /// the write, so a caller cancelled there still gives it back (in the background).
    pub(crate) async fn store_loaded<T>(
        &self,
        op: &'static str,
        call: &Call<'_>,
        value: &T,
        guard: &mut LockGuard<'_>,
        erasure: Erasure<T>,
    ) where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let since = self.inner.l1.epoch();
        let written = self.write(call, value, guard.lock.condition()).await;
        let lock = guard.take();
        match written {
            Ok(Written {
                stored: true,
                size,
                stale_at,
            }) => {
                if call.r.mode.uses_l1() {
                    let fill = Fill {
                        stale_at,
                        size,
                        since,
                    };
                    self.l1_insert(call, value.clone(), fill, erasure);
                }
            }
            Ok(Written { stored: false, .. }) => {
                tracing::debug!(target: "redisx::cache",
                    key = call.key,
                    "the entry changed while loading (invalidated or lock expired); not writing it back"
                );
            }
            Err(e) => {
                self.fail_open(Op::Write, op, call.key, &e);
                self.release(call.key, lock).await;
            }
        }
    }

    fn serve_stale_on<E: 'static>(&self, err: &E) -> bool {
        match &self.inner.cfg.stale_if_error_when {
            Some(pred) => pred(err as &dyn Any),
            None => true,
        }
    }
}

/// A loader error as text for a log line, when its type is one redisx can read without a
/// bound on it (a redisx [`Error`] with its causes, a `String` or `&str`, an `std::io::Error`, a boxed
/// `std::error::Error`); otherwise its type's name (a `stale_if_error_when` predicate sees
/// every error and can log more).
pub(crate) fn describe_error<E: 'static>(err: &E) -> String {
    let any = err as &dyn Any;
    if let Some(e) = any.downcast_ref::<Error>() {
        format!("{e:#}")
    } else if let Some(s) = any.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = any.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(e) = any.downcast_ref::<std::io::Error>() {
        e.to_string()
    } else if let Some(e) = any.downcast_ref::<Box<dyn std::error::Error + Send + Sync>>() {
        e.to_string()
    } else if let Some(e) = any.downcast_ref::<Box<dyn std::error::Error>>() {
        e.to_string()
    } else {
        format!("an error of type `{}`", std::any::type_name::<E>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_errors_are_described_when_their_type_is_readable() {
        struct Opaque;
        assert_eq!(describe_error(&String::from("db down")), "db down");
        assert_eq!(describe_error(&"db down"), "db down");
        let io = std::io::Error::other("refused");
        assert_eq!(describe_error(&io), "refused");
        let boxed: Box<dyn std::error::Error + Send + Sync> = "boxed".into();
        assert_eq!(describe_error(&boxed), "boxed");
        let rx = Error::new(ErrorCode::OperationTimeout, "slow");
        assert!(describe_error(&rx).contains("slow"));
        assert!(describe_error(&Opaque).contains("Opaque"));
    }

    #[test]
    fn known_errors_are_shared_and_others_are_not() {
        #[derive(Clone, Debug, PartialEq)]
        struct Mine(u8);
        let known = ErrorSharing::<Error>::known();
        let err = Error::new(ErrorCode::OperationTimeout, "slow");
        let shared = known.share(&err).expect("a redisx error is shared");
        assert_eq!(known.receive(&*shared).unwrap().message(), "slow");
        // Another call site's error type under the same key is not received.
        assert!(ErrorSharing::<String>::known().receive(&*shared).is_none());
        let strings = ErrorSharing::<String>::known();
        let shared = strings.share(&"down".to_owned()).unwrap();
        assert_eq!(strings.receive(&*shared).as_deref(), Some("down"));
        let io = ErrorSharing::<std::io::Error>::known();
        assert!(io.share(&std::io::Error::other("x")).is_none());
        assert!(ErrorSharing::<Error>::none().share(&err).is_none());
        let mine = ErrorSharing::<Mine>::cloned();
        assert_eq!(mine.receive(&*mine.share(&Mine(7)).unwrap()), Some(Mine(7)));
    }
}
