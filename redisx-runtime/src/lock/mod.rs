//! Distributed locks: `rx.locks()`.
//!
//! A lock is one Redis key, `{app prefix}lock:{<key>}` (the user key inside a hash tag), set
//! with `SET NX PX` to a random owner token; only the owner's token releases
//! ([`LockGuard::release`]) or extends it. Acquiring retries a busy lock with the configured
//! [`RetryStrategy`] (a retry count, or a `wait` budget). A held lock is renewed in the
//! background every third of its ttl, and its guard keeps a local validity deadline (the
//! last confirmed acquisition or renewal, plus the ttl, minus a safety margin of a tenth of
//! the ttl, at most 1 s): when it passes without a confirmed renewal, even with Redis hanging,
//! [`LockGuard::lost`] resolves. Redis down fails closed: `acquire` returns the connection or
//! operation error, never a guard.
//!
//! Callers of one process waiting for the same lock queue in arrival order; only the head of
//! the queue sends attempts to Redis, and a release (here, or elsewhere through the lock's
//! release channel) wakes it to try at once. Every caller's own retry strategy still bounds
//! its wait.
//!
//! [`Locks::semaphore`] gives a [`Semaphore`]: up to N holders at once across every instance,
//! each [`Permit`] with a lock guard's renewal, loss signal, fencing token and wake-up.
//!
//! The plugin (`"locks"`) is always started, right after the cache, with
//! [`LockConfig::default`] unless [`RedisXBuilder::locks`](crate::RedisXBuilder::locks) gives
//! another: it costs nothing until a lock is taken (no connection, no task). Its stop, in
//! [`RedisX::shutdown`](crate::RedisX::shutdown), releases every lock still held.
//!
//! # Fencing tokens
//! Every acquisition also returns a fencing token ([`LockGuard::fencing_token`]): a `u64`,
//! `max(counter + 1, server TIME in µs)`, computed and stored in the key's counter
//! (`{app prefix}lock:{<key>}:fence`, the same cluster slot) by the same script that takes
//! the lock. What is guaranteed:
//! - per key, every holder's token is strictly larger than every earlier holder's token on
//!   the same server (the counter);
//! - after a restart that lost the data, or a failover to a replica whose counter is missing
//!   or behind, tokens still increase **as long as the server's clock moves forward** (the
//!   new token is at least the server time in µs, and earlier tokens ran ahead of the clock by
//!   at most one per acquisition made within the same microsecond);
//! - the counter expires an hour after its lock would (its ttl is the lock's ttl plus an hour,
//!   set again by every acquisition and renewal), so counters of keys no longer used do not
//!   pile up; past that, the clock alone orders tokens.
//!
//! What is not: a token says nothing about whether its holder *still* holds the lock (a paused
//! holder wakes up with an old token); a clock stepped backwards on a failed-over server can
//! hand out a smaller token; tokens are not consecutive (they follow the clock), and tokens of
//! different keys are unrelated. The token protects a resource only if the resource checks it:
//! send it with every write, and have the resource refuse a token smaller than the largest it
//! has seen for that key (a conditional `UPDATE .. WHERE fence < $token`, a version column, an
//! object store's precondition). Then a holder that lost its lock without knowing can no
//! longer overwrite the work of the next one.
//!
//! ```no_run
//! use std::time::Duration;
//! use redisx_runtime::lock::LockOptions;
//!
//! # #[allow(dead_code)]
//! # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
//! let opts = LockOptions::new().ttl(Duration::from_secs(10)).wait(Duration::from_secs(2));
//! let guard = rx.locks().acquire("order:7", &opts).await?;
//! // Pass the token to the resource, which refuses writes with a smaller one.
//! let fence = guard.fencing_token();
//! # let _ = fence;
//! guard.release().await?;
//! # Ok(()) }
//! ```

mod api;
pub(crate) mod call_site;
mod config;
mod guard;
mod renew;
mod replicas;
mod retry;
pub(crate) mod scripts;
mod semaphore;
mod stats;
mod wake;
mod with;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use config::{LockConfig, LockOptions, MIN_TTL};
pub use guard::LockGuard;
pub use retry::RetryStrategy;
pub use semaphore::{Permit, Semaphore};
pub use stats::LockStats;
pub use with::{LockCall, OnLost, fencing_token};

use crate::client::{Client, WaitPool};
use crate::error::{Error, ErrorCode, Result};
use crate::key::{self, KeyBuilder};
use crate::life::Life;
use crate::plugin::{Plugin, PluginContext, PluginFuture};
use guard::Held;
use stats::LockMetrics;
use wake::{CHANNEL_SUFFIX, Waiter, Wakeups};

/// How much longer than its lock a key's fence counter lives: its ttl is the lock's plus this,
/// set by every acquisition and renewal.
///
/// ```
/// use redisx_runtime::lock::FENCE_COUNTER_GRACE;
/// assert_eq!(FENCE_COUNTER_GRACE.as_secs(), 3600);
/// ```
pub const FENCE_COUNTER_GRACE: Duration = Duration::from_secs(3600);

/// The lock service of a runtime: `rx.locks()`. Cheap to clone.
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// let locks = rx.locks().clone(); // into a task of its own
/// tokio::spawn(async move {
///     if let Ok(Some(guard)) = locks.try_acquire("cron:hourly", &Default::default()).await {
///         // ... one instance runs the job ...
///         let _ = guard.release().await;
///     }
/// });
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Locks {
    inner: Arc<Shared>,
}

/// What the service, its guards and their renewal tasks share.
pub(crate) struct Shared {
    cfg: LockConfig,
    keys: KeyBuilder,
    /// `None` when the runtime has no Redis client: every call fails closed.
    client: Option<Client>,
    metrics: LockMetrics,
    record_keys: bool,
    life: Arc<Life>,
    /// The locks held (or being released after a drop), for the shutdown to release.
    held: Mutex<HashMap<u64, Arc<Held>>>,
    next_id: AtomicU64,
    /// The callers waiting for a lock here, woken on its release.
    wakeups: Wakeups,
    /// The held locks' renewals and deadlines.
    renewals: renew::Renewals,
    /// This runtime's random id, at the head of its release messages.
    instance: String,
    /// Dedicated connections for acquires with `wait_replicas`.
    wait_pool: WaitPool,
}

impl std::fmt::Debug for Locks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locks")
            .field("config", &self.inner.cfg)
            .field("held", &self.inner.registry().len())
            .finish_non_exhaustive()
    }
}

/// What is held: a lock (one owner), or a semaphore's permit (one of `permits` owners).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Lock,
    Permit(u32),
}

/// The Redis keys and channel of one lock or semaphore.
#[derive(Debug, Clone)]
pub(crate) struct LockKeys {
    pub(crate) kind: Kind,
    /// The lock key, or the semaphore's sorted set of leases.
    pub(crate) lock: String,
    pub(crate) fence: String,
    /// The flag a waiting caller sets, so that the release publishes (see `acquire.lua`).
    pub(crate) waiters: String,
    pub(crate) channel: String,
}

/// Where a semaphore's keys sit after the lock prefix: `{lock prefix}sem:{<key>}`, apart from
/// every lock key (`{lock prefix}{<key>}`).
pub(crate) const SEMAPHORE_INFIX: &str = "sem:";

/// The fence counter's suffix after the lock key.
pub(crate) const FENCE_SUFFIX: &str = ":fence";

/// The waiters flag's suffix after the lock key.
const WAITERS_SUFFIX: &str = ":waiters";

impl Locks {
    /// The service with `cfg` (checked), on its configured client or the default one.
    pub(crate) fn new(cfg: LockConfig, ctx: &PluginContext) -> Result<Self> {
        cfg.validate()?;
        let client = ctx.plugin_client("locks'", cfg.client.as_deref())?;
        Ok(Self {
            inner: Arc::new(Shared {
                keys: ctx.keys(&cfg.key_prefix),
                cfg,
                client,
                metrics: LockMetrics::register(ctx.registry()),
                record_keys: ctx.record_keys(),
                life: ctx.life.clone(),
                held: Mutex::default(),
                next_id: AtomicU64::new(0),
                wakeups: Wakeups::default(),
                renewals: renew::Renewals::default(),
                instance: format!("{:016x}", rand::random::<u64>()),
                wait_pool: WaitPool::default(),
            }),
        })
    }

    /// The configuration the locks run with.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) {
    /// println!("default ttl {:?}", rx.locks().config().default_ttl_value());
    /// # }
    /// ```
    pub fn config(&self) -> &LockConfig {
        &self.inner.cfg
    }

    /// The Redis key of the lock on `key`: `{app prefix}{lock prefix}{<key>}`.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) {
    /// // With `.key_prefix("myapp:")` on the builder and the default lock prefix:
    /// assert_eq!(rx.locks().full_key("order:7"), "myapp:lock:{order:7}");
    /// # }
    /// ```
    pub fn full_key(&self, key: &str) -> String {
        self.inner.keys.full(&key::tagged(key))
    }

    /// `{app prefix}{lock prefix}`: where every lock and semaphore key starts.
    pub(crate) fn key_prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// Checks `key` as an acquisition does and builds the keys of its lock (`Kind::Lock`) or
    /// semaphore (`Kind::Permit`, whatever the count).
    pub(crate) fn keys_of(&self, key: &str, kind: Kind) -> Result<LockKeys> {
        self.inner.keys_of(key, kind)
    }

    /// Counters of the locks since the runtime started.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) {
    /// let stats = rx.locks().stats();
    /// println!("{} acquired, {} held now, {} lost", stats.acquired, stats.active, stats.lost);
    /// # }
    /// ```
    pub fn stats(&self) -> LockStats {
        self.inner.metrics.stats()
    }
}

impl Shared {
    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Held>>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The client, or the error of a runtime without one.
    fn client(&self) -> Result<&Client> {
        self.client.as_ref().ok_or_else(|| {
            Error::new(
                ErrorCode::ConfigUnknownClient,
                "locks need a Redis client; add one with `.client(name, config)`",
            )
        })
    }

    /// Checks `key` and builds the keys of its lock.
    fn lock_keys(&self, key: &str) -> Result<LockKeys> {
        self.keys_of(key, Kind::Lock)
    }

    /// Checks `key` and builds its keys for `kind`. The lock key (or leases) and the fence
    /// counter must hash to one cluster slot: a key whose braces would break the hash tag is
    /// refused.
    fn keys_of(&self, key: &str, kind: Kind) -> Result<LockKeys> {
        key::check(key, self.cfg.max_key_len, ErrorCode::LockKeyInvalid)?;
        // Built by hand: this runs on every acquisition.
        let prefix = self.keys.prefix();
        let infix = match kind {
            Kind::Lock => "",
            Kind::Permit(_) => SEMAPHORE_INFIX,
        };
        let len = prefix.len() + infix.len() + key.len() + 2;
        let build = |suffix: &str| {
            let mut s = String::with_capacity(len + suffix.len());
            for part in [prefix, infix, "{", key, "}", suffix] {
                s.push_str(part);
            }
            s
        };
        let (lock, fence, channel) = (build(""), build(FENCE_SUFFIX), build(CHANNEL_SUFFIX));
        if (key.contains(['{', '}']) || prefix.contains(['{', '}']))
            && key::slot(&lock) != key::slot(&fence)
        {
            return Err(Error::new(
                ErrorCode::LockKeyInvalid,
                "the lock key's braces break its hash tag (its fence counter would land in another cluster slot)",
            )
            .with_context("key", key.escape_debug().to_string()));
        }
        Ok(LockKeys {
            kind,
            waiters: build(WAITERS_SUFFIX),
            lock,
            fence,
            channel,
        })
    }
}

impl Shared {
    /// Runs the release script for the owner `token`: `Ok(true)` when the key (or lease) was
    /// that owner's and is gone (then `message` is published on the lock's channel).
    async fn release_by_token(&self, keys: &LockKeys, token: &str, message: &str) -> Result<bool> {
        let client = self.client()?;
        let script = match keys.kind {
            Kind::Lock => &scripts::RELEASE.script,
            Kind::Permit(_) => &scripts::SEM_RELEASE.script,
        };
        // `{instance}:{message}`: the listener of this runtime skips its own releases, which
        // woke its waiters directly.
        let mut payload = String::with_capacity(self.instance.len() + 1 + message.len());
        for part in [self.instance.as_str(), ":", message] {
            payload.push_str(part);
        }
        let (lock, args) = (
            [&keys.lock, &keys.waiters],
            [token, keys.channel.as_str(), payload.as_str()],
        );
        let n: i64 = client.eval(script, &lock, &args).await?;
        if n == 1 {
            self.wakeups.wake(&keys.lock);
        }
        Ok(n == 1)
    }

    /// Queues a caller on the lock of `keys`, subscribing this runtime to release messages
    /// first (once; without a client there is nothing to wait for, the attempt failed).
    fn waiter(self: &Arc<Self>, keys: &LockKeys) -> Waiter<'_> {
        if let Some(client) = &self.client {
            self.wakeups.listen(self, client);
        }
        self.wakeups.wait(&keys.lock)
    }
}

/// The lock plugin: its start does nothing (locks cost nothing until taken); its stop releases
/// every lock still held, each on its own (one failed release does not stop the others).
impl Plugin for Locks {
    fn name(&self) -> &'static str {
        "locks"
    }

    fn dependencies(&self) -> &'static [&'static str] {
        &["cache"]
    }

    fn start<'a>(&'a self, _ctx: &'a PluginContext) -> PluginFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn stop(&self, deadline: tokio::time::Instant) -> PluginFuture<'_, ()> {
        Box::pin(async move {
            self.inner.wakeups.stop();
            self.inner.renewals.stop();
            let held: Vec<Arc<Held>> = self.inner.registry().drain().map(|(_, h)| h).collect();
            let releases = held.iter().map(|h| async move {
                h.stop_for_shutdown();
                let why = match tokio::time::timeout_at(deadline, h.release_in_redis()).await {
                    Ok(Ok(_)) => return,
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(_) => "the shutdown deadline passed".to_owned(),
                };
                tracing::warn!(target: "redisx::lock", key = h.key(), error = why, "the shutdown could not release a held lock; it expires at its ttl");
            });
            futures_util::future::join_all(releases).await;
            self.inner.wait_pool.clear();
        })
    }
}
