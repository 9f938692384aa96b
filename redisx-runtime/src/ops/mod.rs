//! An operator's view of a deployment: [`Ops`], a thin façade over the plugins' own calls for
//! the questions asked during an incident, and the actions that answer them.
//!
//! | question | call | reads / does |
//! |---|---|---|
//! | what failed for good? | [`Ops::dlq`], [`Ops::dlq_len`] | the stream's dead-letter stream, oldest first |
//! | give it another chance | [`Ops::requeue`], [`Ops::requeue_all`] | moves entries back into the stream as first attempts |
//! | drop it | [`Ops::purge_dlq`] | deletes the dead-letter stream |
//! | is a group keeping up? | [`Ops::pending`], [`Ops::lag`] | delivered-not-acknowledged entries; entries not delivered yet |
//! | who holds what? | [`Ops::held_locks`], [`Ops::lock`] | owner token, ttl and fencing token of each held lock |
//! | and the semaphores? | [`Ops::held_semaphores`], [`Ops::semaphore`] | the live leases of each semaphore |
//! | a holder is dead | [`Ops::force_release`] | removes the lock whoever holds it |
//! | why is this key refused? | [`Ops::rate_limit_state`], [`Ops::rate_limit_policy_state`] | points used and left, and when the quota is whole again, consuming nothing |
//! | let it through | [`Ops::reset_rate_limit`], [`Ops::reset_rate_limit_policy`] | deletes the key's state |
//!
//! Every read is read-only on the server: the lock and semaphore reads are scripts flagged
//! `no-writes` (they run on a server out of memory too), listings use `SCAN` (never `KEYS`,
//! on every master of a cluster), and a rate-limit state is the limiter's own `state` read,
//! the same script as a check with nothing consumed. Keys are named as the application names
//! them (`order:7`, not `myapp:lock:{order:7}`): the [`RedisX`] given to [`Ops::new`] must
//! be built with the application's key prefix and plugin settings (lock, stream and
//! rate-limit prefixes, the plugins' clients), which say where the keys are.
//!
//! ```no_run
//! use redisx_runtime::ops::Ops;
//! use redisx_runtime::{ConnectionConfig, RedisX};
//!
//! # #[allow(dead_code)]
//! # async fn demo() -> redisx_runtime::Result<()> {
//! let rx = RedisX::builder()
//!     .client("default", ConnectionConfig::from_url("redis://127.0.0.1:6379")?)
//!     .key_prefix("myapp:")
//!     .build()
//!     .await?;
//! let ops = Ops::new(&rx);
//! for dead in ops.dlq("orders", 10).await? {
//!     println!("{}: {:?}", dead.id, dead.error);
//! }
//! for held in ops.held_locks("*").await? {
//!     println!("{} held for {:?} more, token {:?}", held.key, held.ttl, held.fencing_token);
//! }
//! # Ok(()) }
//! ```

mod locks;

pub(crate) use locks::ALL as SCRIPTS;
pub use locks::{HeldLock, HeldSemaphore, Lease};

pub use crate::rate_limit::{Algorithm, Decision, Limit};
pub use crate::streams::{DeadLetter, PendingSummary};

use crate::RedisX;
use crate::error::Result;

/// The operator's façade over one runtime (see the [module docs](self)). Cheap to clone; it
/// holds a clone of the runtime handle.
///
/// ```no_run
/// use redisx_runtime::ops::Ops;
///
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// let ops = Ops::new(&rx);
/// println!("{} dead letters in orders", ops.dlq_len("orders").await?);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Ops {
    rx: RedisX,
}

impl Ops {
    /// The façade over `rx`: its key prefix, plugin settings and clients say where to look.
    ///
    /// ```no_run
    /// use redisx_runtime::ops::Ops;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) {
    /// let ops = Ops::new(&rx);
    /// assert_eq!(ops.runtime().key_prefix(), rx.key_prefix());
    /// # }
    /// ```
    pub fn new(rx: &RedisX) -> Self {
        Self { rx: rx.clone() }
    }

    /// The runtime this façade reads through.
    ///
    /// ```no_run
    /// use redisx_runtime::ops::Ops;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) {
    /// let ops = Ops::new(&rx);
    /// println!("looking under `{}`", ops.runtime().key_prefix());
    /// # }
    /// ```
    pub fn runtime(&self) -> &RedisX {
        &self.rx
    }

    /// The oldest `count` entries of `stream`'s dead-letter stream, oldest first
    /// ([`Streams::dlq_list`](crate::Streams::dlq_list)).
    ///
    /// ```no_run
    /// use redisx_runtime::ops::Ops;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// for dead in Ops::new(&rx).dlq("orders", 20).await? {
    ///     println!("{} after {} attempts: {:?}", dead.id, dead.attempts, dead.error);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn dlq(&self, stream: &str, count: usize) -> Result<Vec<DeadLetter>> {
        self.rx.streams().dlq_list(stream, count).await
    }

    /// Entries in `stream`'s dead-letter stream ([`Streams::dlq_len`](crate::Streams::dlq_len)).
    ///
    /// ```no_run
    /// use redisx_runtime::ops::Ops;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// println!("{} dead letters", Ops::new(&rx).dlq_len("orders").await?);
    /// # Ok(()) }
    /// ```
    pub async fn dlq_len(&self, stream: &str) -> Result<u64> {
        self.rx.streams().dlq_len(stream).await
    }

    /// Moves the dead-letter entry `dlq_id` back into `stream` as a first attempt; the new
    /// entry's id, or `None` when there is no such dead-letter entry
    /// ([`Streams::requeue`](crate::Streams::requeue)).
    ///
    /// ```no_run
    /// use redisx_runtime::ops::Ops;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// match Ops::new(&rx).requeue("orders", "1700000000000-0").await? {
    ///     Some(id) => println!("requeued as {id}"),
    ///     None => println!("no such dead letter"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn requeue(&self, stream: &str, dlq_id: &str) -> Result<Option<String>> {
        self.rx.streams().requeue(stream, dlq_id).await
    }

    /// Requeues every entry the dead-letter stream holds now; how many were requeued
    /// ([`Streams::requeue_all`](crate::Streams::requeue_all)).
    ///
    /// ```no_run
    /// use redisx_runtime::ops::Ops;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let n = Ops::new(&rx).requeue_all("orders").await?;
    /// println!("{n} requeued");
    /// # Ok(()) }
    /// ```
    pub async fn requeue_all(&self, stream: &str) -> Result<u64> {
        self.rx.streams().requeue_all(stream).await
    }

    /// Deletes `stream`'s dead-letter stream; how many entries it held
    /// ([`Streams::purge_dlq`](crate::Streams::purge_dlq)).
    ///
    /// ```no_run
    /// use redisx_runtime::ops::Ops;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let dropped = Ops::new(&rx).purge_dlq("orders").await?;
    /// println!("dropped {dropped} dead letters");
    /// # Ok(()) }
    /// ```
    pub async fn purge_dlq(&self, stream: &str) -> Result<u64> {
        self.rx.streams().purge_dlq(stream).await
    }

    /// The entries `group` was delivered and has not acknowledged, in all and per consumer
    /// ([`Streams::pending`](crate::Streams::pending)); a missing group or stream is a
    /// `STREAM_CONSUMER_GROUP_ERROR`.
    ///
    /// ```no_run
    /// use redisx_runtime::ops::Ops;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let p = Ops::new(&rx).pending("orders", "billing").await?;
    /// println!("{} pending, oldest {:?}", p.count, p.min_id);
    /// # Ok(()) }
    /// ```
    pub async fn pending(&self, stream: &str, group: &str) -> Result<PendingSummary> {
        self.rx.streams().pending(stream, group).await
    }

    /// How many entries of `stream` were not delivered to `group` yet; `None` when Redis
    /// cannot tell ([`Streams::lag`](crate::Streams::lag)).
    ///
    /// ```no_run
    /// use redisx_runtime::ops::Ops;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// if let Some(lag) = Ops::new(&rx).lag("orders", "billing").await? {
    ///     println!("billing is {lag} behind");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lag(&self, stream: &str, group: &str) -> Result<Option<u64>> {
        self.rx.streams().lag(stream, group).await
    }

    /// The state of `limit` on `key` now: points used (`current`) and left (`remaining`), and
    /// when the quota is whole again (`reset`), consuming nothing
    /// ([`RateLimiter::state`](crate::RateLimiter::state): the algorithm's own script in its
    /// read mode, so the numbers are the ones the next check starts from, for every
    /// algorithm). `limit` must be the one the application checks: its algorithm, points and
    /// window name the state key.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::ops::{Limit, Ops};
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let login = Limit::sliding_window(5, Duration::from_secs(60));
    /// let s = Ops::new(&rx).rate_limit_state("login:10.0.0.1", &login).await?;
    /// println!("{} used, {} left, whole again at {:?}", s.current, s.remaining, s.reset);
    /// # Ok(()) }
    /// ```
    pub async fn rate_limit_state(&self, key: &str, limit: &Limit) -> Result<Decision> {
        self.rx.rate_limiter().state(key, limit).await
    }

    /// [`rate_limit_state`](Self::rate_limit_state) of the named policy's limits on `key`:
    /// the deciding one, with the fewest points left
    /// ([`RateLimiter::state_policy`](crate::RateLimiter::state_policy)).
    ///
    /// ```no_run
    /// use redisx_runtime::ops::Ops;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// // With `.policy("login", [..])` in the runtime's `RateLimitConfig`:
    /// let s = Ops::new(&rx).rate_limit_policy_state("login", "10.0.0.1").await?;
    /// println!("{} of {} left", s.remaining, s.limit);
    /// # Ok(()) }
    /// ```
    pub async fn rate_limit_policy_state(&self, policy: &str, key: &str) -> Result<Decision> {
        self.rx.rate_limiter().state_policy(policy, key).await
    }

    /// The Redis key holding the state of `limit` on `key`
    /// ([`RateLimiter::full_key`](crate::RateLimiter::full_key)).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::ops::{Limit, Ops};
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) {
    /// let limit = Limit::fixed_window(100, Duration::from_secs(60));
    /// println!("{}", Ops::new(&rx).rate_limit_key("api:7", &limit));
    /// # }
    /// ```
    pub fn rate_limit_key(&self, key: &str, limit: &Limit) -> String {
        self.rx.rate_limiter().full_key(key, limit)
    }

    /// Deletes the state of `limit` on `key`: its quota is whole again
    /// ([`RateLimiter::reset`](crate::RateLimiter::reset)). Other instances that remembered a
    /// denial of the key locally go on refusing it until that denial's `retry_after`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::ops::{Limit, Ops};
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let login = Limit::sliding_window(5, Duration::from_secs(60));
    /// Ops::new(&rx).reset_rate_limit("login:alice", &login).await?;
    /// # Ok(()) }
    /// ```
    pub async fn reset_rate_limit(&self, key: &str, limit: &Limit) -> Result<()> {
        self.rx.rate_limiter().reset(key, limit).await
    }

    /// Deletes the state of the named policy's limits on `key`
    /// ([`RateLimiter::reset_policy`](crate::RateLimiter::reset_policy)).
    ///
    /// ```no_run
    /// use redisx_runtime::ops::Ops;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// Ops::new(&rx).reset_rate_limit_policy("login", "10.0.0.1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn reset_rate_limit_policy(&self, policy: &str, key: &str) -> Result<()> {
        self.rx.rate_limiter().reset_policy(policy, key).await
    }
}
