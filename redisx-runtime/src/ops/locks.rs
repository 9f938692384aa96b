//! Held locks and semaphore leases, read without touching them: `held_locks`, `lock`,
//! `held_semaphores`, `semaphore`, and the administrator's `force_release`.
//!
//! A lock is the string key `{app prefix}{lock prefix}{<key>}` holding its owner's token, with
//! a `PX` ttl; its fence counter `…{<key>}:fence` holds the last fencing token handed out for
//! the key, which is the holder's (the acquire script sets both together). A semaphore is the
//! sorted set `{app prefix}{lock prefix}sem:{<key>}` of owner tokens scored by their lease's
//! expiry, with a fence counter of its own. Each is read by one read-only script
//! (`lua/inspect_*.lua`), so what is reported belongs to one moment. Listing scans the keyspace
//! under the lock prefix with `SCAN .. MATCH .. TYPE` (never `KEYS`), on every master of a
//! cluster.

use std::time::Duration;

use super::Ops;
use crate::cache::glob::glob_escape;
use crate::client::Client;
use crate::error::{Error, ErrorCode, Result};
use crate::lock::{FENCE_SUFFIX, Kind, SEMAPHORE_INFIX};
use crate::script::{LuaScript, lua};

lua!(INSPECT_LOCK, "lua/inspect_lock.lua");
lua!(INSPECT_SEMAPHORE, "lua/inspect_semaphore.lua");

/// Every ops script (preloaded with the plugins' scripts).
pub(crate) static ALL: &[&LuaScript] = &[&INSPECT_LOCK, &INSPECT_SEMAPHORE];

/// Keys inspected at once (one script each) while listing.
const INSPECT_BATCH: usize = 64;

/// A lock held right now, as [`Ops::held_locks`] and [`Ops::lock`] read it.
///
/// ```no_run
/// use redisx_runtime::ops::Ops;
///
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// if let Some(held) = Ops::new(&rx).lock("order:7").await? {
///     println!(
///         "{} held by {} for {:?} more, fencing token {:?}",
///         held.key, held.owner_token, held.ttl, held.fencing_token
///     );
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeldLock {
    /// The lock's key as the application names it (`order:7`), without prefixes.
    pub key: String,
    /// Its Redis key (`{app prefix}lock:{order:7}`).
    pub full_key: String,
    /// The holder's owner token ([`LockGuard::owner_token`](crate::LockGuard::owner_token)).
    pub owner_token: String,
    /// How long the lock lives unless renewed (its `PTTL`); `None` when the key has no expiry
    /// (never the case for a lock redisx took).
    pub ttl: Option<Duration>,
    /// The holder's fencing token ([`LockGuard::fencing_token`](crate::LockGuard::fencing_token)):
    /// the key's fence counter; `None` when the counter is missing.
    pub fencing_token: Option<u64>,
}

/// A semaphore with at least one live lease, as [`Ops::held_semaphores`] and
/// [`Ops::semaphore`] read it.
///
/// ```no_run
/// use redisx_runtime::ops::Ops;
///
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// for sem in Ops::new(&rx).held_semaphores("*").await? {
///     println!("{}: {} permits held", sem.key, sem.leases.len());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeldSemaphore {
    /// The semaphore's key as the application names it (`exports`), without prefixes.
    pub key: String,
    /// Its Redis key, the sorted set of leases (`{app prefix}lock:sem:{exports}`).
    pub full_key: String,
    /// The live leases, soonest expiry first (one per permit held).
    pub leases: Vec<Lease>,
    /// The last fencing token handed out for the key (the newest permit's); `None` when the
    /// counter is missing.
    pub fencing_token: Option<u64>,
}

/// One held permit of a semaphore.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The holder's owner token ([`Permit::owner_token`](crate::lock::Permit::owner_token)).
    pub owner_token: String,
    /// How long the lease lives unless renewed (by the server's clock).
    pub ttl: Duration,
}

impl Ops {
    /// Every lock held now whose key matches the glob `pattern` (`*` for all, `order:*`,
    /// `job:?`; Redis `SCAN MATCH` syntax, over the key without prefixes), sorted by key.
    /// The keyspace is scanned under the lock prefix, never with `KEYS`; on a cluster every
    /// master is scanned. A lock released while the scan runs is left out.
    ///
    /// ```no_run
    /// use redisx_runtime::ops::Ops;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// for held in Ops::new(&rx).held_locks("order:*").await? {
    ///     println!("{} ({:?} left)", held.key, held.ttl);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn held_locks(&self, pattern: &str) -> Result<Vec<HeldLock>> {
        let prefix = self.lock_prefix();
        let client = self.lock_client()?;
        let fail = |e: Error| e.with_context("pattern", pattern);
        check_pattern(pattern).map_err(fail)?;
        let keys = scan(
            &client,
            &format!("{}{{{pattern}}}", glob_escape(prefix)),
            "string",
        )
        .await
        .map_err(fail)?;
        let mut held = Vec::new();
        for batch in keys.chunks(INSPECT_BATCH) {
            let reads = batch.iter().filter_map(|full| {
                let key = user_key(full, prefix)?;
                Some(inspect_lock(&client, key, full))
            });
            let found = futures_util::future::try_join_all(reads)
                .await
                .map_err(fail)?;
            held.extend(found.into_iter().flatten());
        }
        Ok(held)
    }

    /// The lock on `key` if someone holds it now: its owner token, ttl and fencing token.
    ///
    /// ```no_run
    /// use redisx_runtime::ops::Ops;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// match Ops::new(&rx).lock("migration:v42").await? {
    ///     Some(held) => println!("held, {:?} left", held.ttl),
    ///     None => println!("free"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lock(&self, key: &str) -> Result<Option<HeldLock>> {
        let keys = self.rx.locks().keys_of(key, Kind::Lock)?;
        let client = self.lock_client()?;
        inspect_lock(&client, key, &keys.lock).await
    }

    /// Every semaphore with at least one live lease whose key matches the glob `pattern`,
    /// sorted by key (scanned as [`held_locks`](Self::held_locks) is).
    ///
    /// ```no_run
    /// use redisx_runtime::ops::Ops;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// for sem in Ops::new(&rx).held_semaphores("*").await? {
    ///     for lease in &sem.leases {
    ///         println!("{}: {} ({:?} left)", sem.key, lease.owner_token, lease.ttl);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn held_semaphores(&self, pattern: &str) -> Result<Vec<HeldSemaphore>> {
        let prefix = format!("{}{SEMAPHORE_INFIX}", self.lock_prefix());
        let client = self.lock_client()?;
        let fail = |e: Error| e.with_context("pattern", pattern);
        check_pattern(pattern).map_err(fail)?;
        let keys = scan(
            &client,
            &format!("{}{{{pattern}}}", glob_escape(&prefix)),
            "zset",
        )
        .await
        .map_err(fail)?;
        let mut held = Vec::new();
        for batch in keys.chunks(INSPECT_BATCH) {
            let reads = batch.iter().filter_map(|full| {
                let key = user_key(full, &prefix)?;
                Some(inspect_semaphore(&client, key, full))
            });
            let found = futures_util::future::try_join_all(reads)
                .await
                .map_err(fail)?;
            held.extend(found.into_iter().flatten());
        }
        Ok(held)
    }

    /// The semaphore on `key` if at least one of its permits is held now.
    ///
    /// ```no_run
    /// use redisx_runtime::ops::Ops;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let held = Ops::new(&rx).semaphore("exports").await?;
    /// println!("{} exports running", held.map_or(0, |s| s.leases.len()));
    /// # Ok(()) }
    /// ```
    pub async fn semaphore(&self, key: &str) -> Result<Option<HeldSemaphore>> {
        // The permit count plays no part in the keys.
        let keys = self.rx.locks().keys_of(key, Kind::Permit(1))?;
        let client = self.lock_client()?;
        inspect_semaphore(&client, key, &keys.lock).await
    }

    /// Removes the lock on `key` whoever holds it, for a holder known to be dead:
    /// [`Locks::force_release`](crate::Locks::force_release). `true` when a lock was removed.
    ///
    /// ```no_run
    /// use redisx_runtime::ops::Ops;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// if Ops::new(&rx).force_release("job:stuck").await? {
    ///     println!("removed; waiters were told");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn force_release(&self, key: &str) -> Result<bool> {
        self.rx.locks().force_release(key).await
    }

    /// `{app prefix}{lock prefix}`: where every lock key starts.
    fn lock_prefix(&self) -> &str {
        self.rx.locks().key_prefix()
    }

    /// The client the locks use: their configured one, else the default.
    fn lock_client(&self) -> Result<Client> {
        match self.rx.locks().config().client_value() {
            Some(name) => self.rx.named_client(name),
            None => self.rx.try_client(),
        }
    }
}

/// A pattern must be a non-empty glob without control characters.
fn check_pattern(pattern: &str) -> Result<()> {
    if pattern.is_empty() || pattern.contains(char::is_control) {
        return Err(Error::new(
            ErrorCode::LockKeyInvalid,
            "a lock pattern must be a non-empty glob (`*` for every lock) without control characters",
        ));
    }
    Ok(())
}

/// The user key of `full` (`{prefix}{<key>}`), or `None` when it is not one.
fn user_key<'a>(full: &'a str, prefix: &str) -> Option<&'a str> {
    full.strip_prefix(prefix)?
        .strip_prefix('{')?
        .strip_suffix('}')
        .filter(|k| !k.is_empty())
}

/// Every key of `kind` (`string`, `zset`) matching the glob `pattern`, sorted
/// ([`Client::scan_keys`]). Keys that are not UTF-8 are skipped (no redisx lock key is).
async fn scan(client: &Client, pattern: &str, kind: &str) -> Result<Vec<String>> {
    let keys = client.scan_keys(pattern, Some(kind)).await?;
    Ok(keys
        .into_iter()
        .filter_map(|k| String::from_utf8(k).ok())
        .collect())
}

/// Reads the lock `full` (named `key`); `None` when nobody holds it.
async fn inspect_lock(client: &Client, key: &str, full: &str) -> Result<Option<HeldLock>> {
    let fence = format!("{full}{FENCE_SUFFIX}");
    let reply: Option<(String, i64, String)> = client
        .eval(
            &INSPECT_LOCK.script,
            &[full, fence.as_str()],
            &[] as &[&str],
        )
        .await
        .map_err(|e| e.with_context("key", key))?;
    Ok(reply.map(|(owner_token, pttl, fence)| HeldLock {
        key: key.to_owned(),
        full_key: full.to_owned(),
        owner_token,
        ttl: u64::try_from(pttl).ok().map(Duration::from_millis),
        fencing_token: fence.parse().ok(),
    }))
}

/// Reads the semaphore `full` (named `key`); `None` when no lease is live.
async fn inspect_semaphore(
    client: &Client,
    key: &str,
    full: &str,
) -> Result<Option<HeldSemaphore>> {
    let fence = format!("{full}{FENCE_SUFFIX}");
    let reply: Vec<redis::Value> = client
        .eval(
            &INSPECT_SEMAPHORE.script,
            &[full, fence.as_str()],
            &[] as &[&str],
        )
        .await
        .map_err(|e| e.with_context("key", key))?;
    let mut values = reply.into_iter();
    let counter: Option<String> = values.next().and_then(|v| redis::from_redis_value(v).ok());
    let mut leases = Vec::new();
    while let (Some(token), Some(left)) = (values.next(), values.next()) {
        let (Ok(owner_token), Ok(left)) = (
            redis::from_redis_value::<String>(token),
            redis::from_redis_value::<i64>(left),
        ) else {
            return Err(Error::new(
                ErrorCode::Internal,
                "the semaphore inspection script answered an unexpected reply",
            )
            .with_context("key", key));
        };
        leases.push(Lease {
            owner_token,
            ttl: Duration::from_millis(u64::try_from(left).unwrap_or(0)),
        });
    }
    if leases.is_empty() {
        return Ok(None);
    }
    Ok(Some(HeldSemaphore {
        key: key.to_owned(),
        full_key: full.to_owned(),
        leases,
        fencing_token: counter.and_then(|c| c.parse().ok()),
    }))
}

#[cfg(test)]
mod tests {
    use super::user_key;

    #[test]
    fn user_keys_are_read_back_from_lock_keys() {
        assert_eq!(user_key("app:lock:{order:7}", "app:lock:"), Some("order:7"));
        assert_eq!(user_key("app:lock:{a}b}", "app:lock:"), Some("a}b"));
        assert_eq!(user_key("app:lock:{}", "app:lock:"), None);
        assert_eq!(user_key("app:lock:{x}:fence", "app:lock:"), None);
        assert_eq!(user_key("other:{x}", "app:lock:"), None);
    }
}
