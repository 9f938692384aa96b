//! Stampede protection across instances: the regeneration lock ([`RegenLock`]: a marker in
//! the entry's own key, or a refresh lock beside a stale entry), the read-or-lock loop with its
//! wait for another instance's holder, renewal while loading, release, and the read predictor
//! that decides whether a first read takes the lock at all.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::envelope::{self, Envelope, HEADER_LEN, Marker};
use super::invalidation::{self, Registration};
use super::l2::{Condition, Read};
use super::stats::Op;
use super::{Cache, CacheInner, Call, scripts};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::millis;

/// How often a waiter re-reads when no pub/sub message woke it: half the lock ttl, within
/// these bounds. It is only the safety net for a lost message or a lock holder that died
/// (its marker expires silently); every normal wake-up comes over pub/sub.
const POLL_FALLBACK_MIN: Duration = Duration::from_millis(50);
const POLL_FALLBACK_MAX: Duration = Duration::from_secs(2);

/// The regeneration lock a loading caller holds.
pub(crate) enum RegenLock {
    None,
    /// A marker in the entry's own key.
    Marker(Marker),
    /// A separate refresh lock (key, token), taken for an entry that exists but is stale;
    /// the write only happens while the entry still starts with the header that was read.
    Refresh {
        key: String,
        token: Marker,
        header: [u8; HEADER_LEN],
    },
}

impl RegenLock {
    /// What a write under this lock requires of the entry.
    pub(crate) fn condition(&self) -> Condition<'_> {
        match self {
            Self::None => Condition::None,
            Self::Marker(m) => Condition::Marker(m),
            Self::Refresh { key, token, header } => Condition::Refresh {
                header,
                lock_key: key,
                token,
            },
        }
    }
}

/// Releases a lock when a load is abandoned (loader panicked or the caller was cancelled).
pub(crate) struct LockGuard<'a> {
    cache: Weak<CacheInner>,
    key: &'a str,
    pub(crate) lock: RegenLock,
}

impl<'a> LockGuard<'a> {
    pub(crate) fn new(cache: &Cache, key: &'a str, lock: RegenLock) -> Self {
        Self {
            cache: Arc::downgrade(&cache.inner),
            key,
            lock,
        }
    }

    pub(crate) fn take(&mut self) -> RegenLock {
        std::mem::replace(&mut self.lock, RegenLock::None)
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let lock = self.take();
        if matches!(lock, RegenLock::None) {
            return;
        }
        let (Some(inner), Ok(handle)) =
            (self.cache.upgrade(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let key = self.key.to_owned();
        handle.spawn(async move {
            Cache { inner }.release(&key, lock).await;
        });
    }
}

/// Whether the next L2 read will probably hit: a saturating score, +1 per hit and -4 per miss,
/// in 0..=16. At 8 and above the first read is a plain `GET` (a hit costs what a `GET` costs);
/// below it the read also takes the regeneration lock (`SET .. NX GET`), so that a miss costs
/// two round trips. A wrong guess costs one extra round trip on that miss, and after two
/// misses in a row the reads take the lock again.
#[derive(Default)]
pub(crate) struct ReadPredictor(AtomicU32);

impl ReadPredictor {
    const MAX: u32 = 16;
    const THRESHOLD: u32 = 8;

    pub(crate) fn expect_hit(&self) -> bool {
        self.0.load(Ordering::Relaxed) >= Self::THRESHOLD
    }

    pub(crate) fn record(&self, hit: bool) {
        let score = self.0.load(Ordering::Relaxed);
        let next = if hit {
            (score + 1).min(Self::MAX)
        } else {
            score.saturating_sub(4)
        };
        if next != score {
            self.0.store(next, Ordering::Relaxed);
        }
    }
}

/// A read already done before coordination: the marker it offered, and what it found.
pub(crate) type FirstRead<T> = (Option<Marker>, Result<Read<T>>);

/// How the read-or-lock loop ended.
pub(crate) enum Claim<T> {
    /// A fresh value (written by another caller, or there all along); `since` is the L1 epoch
    /// before the read that found it.
    Hit { env: Envelope<T>, since: u64 },
    /// A stale value inside its SWR window, to serve at once.
    Stale(Envelope<T>),
    /// Load now, holding `lock` (none: no stampede protection, or a Redis failure failed
    /// open); `stale` is a value for stale-if-error.
    Load { lock: RegenLock, stale: Option<T> },
    /// The wait for another instance's load reached `wait_timeout`.
    TimedOut { stale: Option<T> },
}

/// How one wait for a lock holder ended.
enum Waited {
    ReadAgain,
    TimedOut,
    Failed(Error),
}

impl Cache {
    /// The distributed read-or-lock: reads `call`'s entry (taking the lock on a miss), and
    /// while another caller holds the lock waits for its write and reads again, until a value
    /// is found, the lock is taken, or `deadline` passes. `first` is a read already done.
    pub(crate) async fn claim<T: DeserializeOwned>(
        &self,
        client: &Client,
        call: &Call<'_>,
        mut first: Option<FirstRead<T>>,
        deadline: Instant,
        allow_stale: bool,
    ) -> Claim<T> {
        let full = call.full().unwrap_or_default();
        let stampede = &self.inner.cfg.stampede;
        // Dropped (unregistered) on every way out, cancellation included.
        let mut waiter: Option<Registration<'_>> = None;
        let mut stale: Option<T> = None;
        let mut corrupt_retries = 0;
        loop {
            // The wake-up generation before this read (see `WaitSlot`), and the L1 epoch (a
            // fill after an invalidation that overlapped the read is dropped).
            let seen = waiter.as_ref().map(|w| w.slot().generation());
            let since = self.inner.l1.epoch();
            let (marker, read) = if let Some(done) = first.take() {
                done
            } else {
                let marker = stampede.enabled.then(envelope::new_marker);
                (
                    marker,
                    self.read::<T>(client, full, marker.as_ref(), (call.key, call.tags))
                        .await,
                )
            };
            let read = match read {
                Ok(read) => read,
                Err(e) => {
                    self.fail_open(Op::Read, "read", call.key, &e);
                    return Claim::Load {
                        lock: RegenLock::None,
                        stale,
                    };
                }
            };
            let marker_locked = matches!(read, Read::Locked);
            // An entry that exists but must be reloaded (kept for stale-if-error).
            let reload = match read {
                Read::Miss => {
                    let lock = marker.map_or(RegenLock::None, RegenLock::Marker);
                    return Claim::Load { lock, stale };
                }
                Read::Fresh(env) => {
                    if waiter.is_some() {
                        self.inner.metrics.stampede_prevented.inc();
                    }
                    return Claim::Hit { env, since };
                }
                Read::Stale(env) if allow_stale && call.r.swr > Duration::ZERO => {
                    return Claim::Stale(env);
                }
                Read::Stale(env) => {
                    // A stale entry this call does not serve: a miss (an expired one was
                    // counted as such when read).
                    self.inner.metrics.l2_misses.inc();
                    Some(env)
                }
                Read::Expired(env) => Some(env),
                Read::Corrupt(bytes, e) => {
                    // Removed, then read again: that read counts this call's miss (or hit).
                    self.remove_corrupt(full, bytes, &e).await;
                    corrupt_retries += 1;
                    if corrupt_retries > 2 {
                        self.inner.metrics.l2_misses.inc();
                        return Claim::Load {
                            lock: RegenLock::None,
                            stale,
                        };
                    }
                    continue;
                }
                Read::Locked => None,
            };
            if let Some(env) = reload {
                let header = env.header();
                stale = Some(env.value);
                if !stampede.enabled {
                    return Claim::Load {
                        lock: RegenLock::None,
                        stale,
                    };
                }
                match self.take_refresh_lock(client, call.key, header).await {
                    Ok(Some(lock)) => return Claim::Load { lock, stale },
                    Ok(None) => {} // someone else reloads it: wait below
                    Err(e) => {
                        self.fail_open(Op::Read, "lock", call.key, &e);
                        return Claim::Load {
                            lock: RegenLock::None,
                            stale,
                        };
                    }
                }
            }
            match self
                .wait_for_holder(client, full, &mut waiter, seen, marker_locked, deadline)
                .await
            {
                Waited::ReadAgain => {}
                Waited::TimedOut => return Claim::TimedOut { stale },
                Waited::Failed(e) => {
                    self.fail_open(Op::Read, "wait", call.key, &e);
                    return Claim::Load {
                        lock: RegenLock::None,
                        stale,
                    };
                }
            }
        }
    }

    /// Another caller holds `full`'s lock: waits for its write (woken over pub/sub; a bounded
    /// poll is the fallback), then the caller reads again. The first wait registers (first,
    /// then flags the marker, so no wake-up can slip in between); `seen` is the wake-up
    /// generation before the last read.
    async fn wait_for_holder<'w>(
        &'w self,
        client: &Client,
        full: &'w str,
        waiter: &mut Option<Registration<'w>>,
        seen: Option<u64>,
        marker_locked: bool,
        deadline: Instant,
    ) -> Waited {
        let (slot, seen) = if let (Some(w), Some(seen)) = (waiter.as_ref(), seen) {
            (w.slot().clone(), seen)
        } else {
            let w = self.inner.waiters.register(full);
            let slot = w.slot().clone();
            let seen = slot.generation();
            *waiter = Some(w);
            if !marker_locked {
                // A refresh holder publishes its write unflagged: read again now that we are
                // registered, so its wake-up cannot slip by.
                return Waited::ReadAgain;
            }
            (slot, seen)
        };
        if marker_locked {
            let flagged: Result<u8> = client
                .eval(&scripts::FLAG_WAITER.script, &[full], &[] as &[&str])
                .await;
            match flagged {
                Ok(1) => {}
                Ok(_) => return Waited::ReadAgain, // filled or released meanwhile
                Err(e) => return Waited::Failed(e),
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Waited::TimedOut;
        }
        let stampede = &self.inner.cfg.stampede;
        let poll = (stampede.lock_ttl / 2).clamp(POLL_FALLBACK_MIN, POLL_FALLBACK_MAX);
        let wait = (deadline - now).min(poll);
        let notified = slot.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if slot.generation() == seen {
            let _ = tokio::time::timeout(wait, notified).await;
        }
        Waited::ReadAgain
    }

    /// The key of the refresh lock of a stale entry.
    fn refresh_key(&self, key: &str) -> String {
        let mut k = self.inner.keys.full(&self.inner.cfg.lock_prefix);
        k.push_str(key);
        k
    }

    /// Takes the refresh lock of an entry that exists but must be reloaded (`SET NX PX` on
    /// its own key); `None` when another caller holds it.
    pub(crate) async fn take_refresh_lock(
        &self,
        client: &Client,
        key: &str,
        header: [u8; HEADER_LEN],
    ) -> Result<Option<RegenLock>> {
        let lock_key = self.refresh_key(key);
        let token = envelope::new_marker();
        let px = millis(self.inner.cfg.stampede.lock_ttl).max(1);
        let mut set = redis::cmd("SET");
        set.arg(&lock_key)
            .arg(token.as_slice())
            .arg("NX")
            .arg("PX")
            .arg(px);
        let got: Option<String> = client.query_named("SET", &set).await?;
        Ok(got.map(|_| RegenLock::Refresh {
            key: lock_key,
            token,
            header,
        }))
    }

    /// Gives a lock up and wakes the callers waiting for it.
    pub(crate) async fn release(&self, key: &str, lock: RegenLock) {
        let Some(client) = self.inner.client.as_ref() else {
            return;
        };
        let (lock_key, token) = match lock {
            RegenLock::None => return,
            RegenLock::Marker(m) => (self.full_key(key), m),
            RegenLock::Refresh { key, token, .. } => (key, token),
        };
        let msg = invalidation::keys_message(&self.inner.origin, [key]);
        let r = client
            .eval::<u8, _, _>(
                &scripts::RELEASE.script,
                &[lock_key.as_str()],
                &[
                    token.as_slice(),
                    self.inner.channel.as_bytes(),
                    msg.as_bytes(),
                ],
            )
            .await;
        if let Err(e) = r {
            tracing::debug!(target: "redisx::cache", key, error = %format_args!("{e:#}"), "could not release a cache regeneration lock; it expires by itself");
        }
    }

    /// Runs `load` while keeping `lock` alive: every third of the lock ttl, `extend.lua`
    /// renews it while it is still this caller's, so a load slower than the lock ttl keeps
    /// the other instances waiting for its write (and a marker's write, which needs the
    /// marker, still lands). Renewing stops once the lock is lost (an invalidation deleted
    /// it: the load runs on, and a marker's write will not land), and once the load has held
    /// it for `wait_timeout`: nobody waits longer than that, and a hung loader must not hold
    /// a key for ever (the lock then lives one more lock ttl). A load that is done at its
    /// first poll costs nothing more: the renewal's timer is only armed when first polled.
    /// `full` is the entry's full key (a marker lives there).
    pub(crate) async fn hold<F: Future>(
        &self,
        full: Option<&str>,
        lock: &RegenLock,
        load: F,
    ) -> F::Output {
        let (Some(client), Some((lock_key, token))) = (
            self.inner.client.as_ref(),
            match lock {
                RegenLock::None => None,
                RegenLock::Marker(m) => full.map(|f| (f, m)),
                RegenLock::Refresh { key, token, .. } => Some((key.as_str(), token)),
            },
        ) else {
            return load.await;
        };
        let ttl = self.inner.cfg.stampede.lock_ttl;
        let every = (ttl / 3).max(Duration::from_millis(1));
        let renew = async {
            let until = Instant::now() + self.inner.cfg.stampede.wait_timeout;
            loop {
                tokio::time::sleep(every).await;
                if Instant::now() >= until {
                    tracing::warn!(target: "redisx::cache",
                        key = lock_key,
                        "a cache load has run for the whole stampede wait_timeout; its regeneration lock is no longer renewed"
                    );
                    return;
                }
                let mut invocation = scripts::EXTEND.script.key(lock_key);
                invocation.arg(&token[..]).arg(millis(ttl).max(1));
                match client.invoke::<u8>(&invocation).await {
                    Ok(1) => {}
                    Ok(_) => {
                        tracing::debug!(target: "redisx::cache",
                            key = lock_key,
                            "the regeneration lock was lost during the load (invalidated); its value will not be written"
                        );
                        return;
                    }
                    // Try again at the next tick: the lock lives a full ttl from the last
                    // renewal, so one failed renewal loses nothing (unless the round trip
                    // itself takes over two thirds of the ttl).
                    Err(e) => {
                        tracing::debug!(target: "redisx::cache", key = lock_key, error = %format_args!("{e:#}"), "could not renew a cache regeneration lock");
                    }
                }
            }
        };
        tokio::pin!(load);
        tokio::select! {
            biased;
            v = &mut load => v,
            () = renew => load.await,
        }
    }
}
