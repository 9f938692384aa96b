//! L2, the Redis tier: reads (classified by the wire format), the write path (entry, tag
//! indexes, wake-ups and invalidation in one round trip), corrupt-entry removal, deletes and
//! scans.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::envelope::{self, Envelope, HEADER_LEN, Marker};
use super::glob::glob_escape;
use super::stats::RateLimitedLog;
use super::{Cache, Call, invalidation, scripts};
use crate::client::Client;
use crate::error::{Error, ErrorCode, Result};
use crate::key;
use crate::millis;

/// Keys per `UNLINK`, per `ZADD` and per invalidation message.
pub(crate) const CHUNK: usize = 1000;
/// How long after its entry ended a tag index member is pruned (see [`Cache::index_tags`]): a
/// margin for clocks that differ between instances (a member's score is its writer's clock).
const TAG_PRUNE_MARGIN: Duration = Duration::from_secs(60);

/// How often an undecodable entry is logged per key family: a type that changed shape makes
/// every read of its old entries fail, and one warning (with the count since) says it.
const CORRUPT_LOG_EVERY: Duration = Duration::from_secs(10);
/// Key families tracked at once; past this, quiet ones are forgotten (and a new family is
/// logged unthrottled until there is room).
const CORRUPT_LOG_FAMILIES: usize = 256;

static CORRUPT_LOG: RateLimitedLog<String> =
    RateLimitedLog::new(CORRUPT_LOG_EVERY, CORRUPT_LOG_FAMILIES);

/// The family of a full key, for rate-limited logging: the key up to its last `:`
/// (`myapp:cache:user:42` is in `myapp:cache:user:`), so the entries of one cached type share
/// a family.
fn key_family(full: &str) -> &str {
    full.rfind(':').map_or(full, |i| &full[..=i])
}

/// What one L2 read found.
pub(crate) enum Read<T> {
    /// Nothing stored; if a marker was offered, this caller now holds the lock.
    Miss,
    /// Another caller's regeneration lock.
    Locked,
    Fresh(Envelope<T>),
    /// Past its freshness, inside the SWR window.
    Stale(Envelope<T>),
    /// Past the SWR window, kept for stale-if-error.
    Expired(Envelope<T>),
    Corrupt(Vec<u8>, Error),
}

/// What [`Cache::write`] requires of the key before it writes.
#[derive(Clone, Copy)]
pub(crate) enum Condition<'a> {
    /// Nothing: an explicit set, which tells the other instances to drop their L1 copy.
    None,
    /// The key holds this caller's lock marker (flagged by a waiter or not).
    Marker(&'a Marker),
    /// The entry still starts with `header` (a refresh of a stale entry under the separate
    /// lock `lock_key`, released in the same round trip).
    Refresh {
        header: &'a [u8; HEADER_LEN],
        lock_key: &'a str,
        token: &'a Marker,
    },
}

/// What [`Cache::write`] did.
pub(crate) struct Written {
    /// Whether the entry was stored (false: the lock or the entry changed meanwhile).
    pub(crate) stored: bool,
    /// The encoded entry's size in bytes (0 without L2).
    pub(crate) size: usize,
    /// When the written entry goes stale (epoch milliseconds).
    pub(crate) stale_at: u64,
}

/// `(stale_at, expires_at, redis px)` of an entry of `call` written at `now`.
pub(crate) fn timing(call: &Call<'_>, now: u64) -> (u64, u64, u64) {
    let r = &call.r;
    let stale_at = now + millis(r.ttl);
    let expires_at = stale_at + millis(r.swr);
    let px = millis(r.ttl) + millis(r.swr) + millis(r.sie);
    (stale_at, expires_at, px.max(1))
}

/// Groups `items` by the cluster slot of their full key and cuts each group into chunks of at
/// most [`CHUNK`]: one command or script per chunk is cluster-safe and atomic.
pub(crate) fn slot_chunks<T>(items: Vec<T>, full: impl Fn(&T) -> &[u8]) -> Vec<Vec<T>> {
    let mut by_slot: std::collections::BTreeMap<u16, Vec<Vec<T>>> =
        std::collections::BTreeMap::new();
    for item in items {
        let chunks = by_slot.entry(key::slot_of(full(&item))).or_default();
        match chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(item),
            _ => chunks.push(vec![item]),
        }
    }
    by_slot.into_values().flatten().collect()
}

/// Every element of a cursor command (`SCAN`, `ZSCAN`), page by page; `page(cursor)` builds
/// the command of one page. A cursor may return an element twice (see [`sorted`]).
pub(crate) async fn scan_pages<T: redis::FromRedisValue>(
    client: &Client,
    name: &'static str,
    page: impl Fn(u64) -> redis::Cmd,
) -> Result<Vec<T>> {
    let mut cursor = 0;
    let mut out = Vec::new();
    loop {
        let (next, items): (u64, Vec<T>) = client.query_named(name, &page(cursor)).await?;
        out.extend(items);
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

/// Every key matching the glob `pattern`, on every master of a cluster
/// ([`Client::scan_keys`]).
pub(crate) async fn scan_match(client: &Client, pattern: &str) -> Result<Vec<Vec<u8>>> {
    client.scan_keys(pattern, None).await
}

/// `items` sorted, without duplicates.
pub(crate) fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort_unstable();
    items.dedup();
    items
}

/// `err` as a cache error of `code` (connection and timeout codes are kept: they say more),
/// with `key` as context.
pub(crate) fn with_code(err: Error, code: ErrorCode, key: &str) -> Error {
    let kept = err.code();
    let code = if kept.family() == "connection" || kept == ErrorCode::OperationTimeout {
        kept
    } else {
        code
    };
    // The wrapped error (the source) says what went wrong; the message names the operation.
    let what = match code {
        ErrorCode::CacheSetFailed => "writing the cache entry failed",
        ErrorCode::CacheDeleteFailed => "deleting from the cache failed",
        ErrorCode::CacheTagInvalidationFailed => "invalidating the tags failed",
        _ => "the cache operation failed",
    };
    Error::new(code, what)
        .with_context("key", key)
        .with_source(err)
}

impl Cache {
    pub(crate) fn classify<T: DeserializeOwned>(
        &self,
        bytes: Option<Vec<u8>>,
        now: u64,
    ) -> Read<T> {
        let Some(bytes) = bytes else {
            self.inner.metrics.l2_misses.inc();
            return Read::Miss;
        };
        if envelope::is_marker(&bytes) {
            return Read::Locked;
        }
        match envelope::decode::<T>(&bytes) {
            Ok(env) if now < env.stale_at => {
                self.inner.metrics.l2_hits.inc();
                Read::Fresh(env)
            }
            // Counted where it is served (a hit) or reloaded (a miss).
            Ok(env) if now < env.expires_at => Read::Stale(env),
            Ok(env) => {
                self.inner.metrics.l2_misses.inc();
                Read::Expired(env)
            }
            // A miss, counted where it is handled: the stampede path reads again after
            // removing it, and that read counts the one miss (or hit).
            Err(e) => {
                self.inner.metrics.corrupt.inc();
                Read::Corrupt(bytes, e)
            }
        }
    }

    /// One L2 read. With `marker`, a miss atomically places it as the regeneration lock
    /// (`SET key marker NX PX lock_ttl GET`): one round trip for read-or-lock. On a client that
    /// reads from replicas, a plain `GET` (served by a replica) comes first and only a miss
    /// goes on to the master's `SET .. GET`.
    ///
    /// With a marker, `tagged` (the user key and the call's tags) indexes the key under its
    /// tags in the same round trip, before the lock is placed: a tag invalidation from then on
    /// finds the key and deletes the marker, so the load's write (which needs its marker) does
    /// not store a value read before the invalidation. The index would otherwise name the key
    /// only once its value is written.
    pub(crate) async fn read<T: DeserializeOwned>(
        &self,
        client: &Client,
        full: &str,
        marker: Option<&Marker>,
        tagged: (&str, &[String]),
    ) -> Result<Read<T>> {
        if marker.is_some() && client.config().read_from_replicas_value() {
            let bytes: Option<Vec<u8>> = client
                .query_read("GET", redis::cmd("GET").arg(full))
                .await?;
            if bytes.is_some() {
                return Ok(self.classify(bytes, envelope::now_ms()));
            }
        }
        let bytes: Option<Vec<u8>> = match marker {
            Some(m) => {
                let px = millis(self.inner.cfg.stampede.lock_ttl).max(1);
                let mut set = redis::cmd("SET");
                set.arg(full)
                    .arg(&m[..])
                    .arg("NX")
                    .arg("PX")
                    .arg(px)
                    .arg("GET");
                let (key, tags) = tagged;
                if tags.is_empty() {
                    client.query_named("SET", &set).await?
                } else {
                    let mut pipe = redis::pipe();
                    self.index_tags(&mut pipe, &[key], tags, px, envelope::now_ms());
                    pipe.add_command(set);
                    let (bytes,): (Option<Vec<u8>>,) = client.query_pipeline(&pipe).await?;
                    bytes
                }
            }
            None => {
                client
                    .query_read("GET", redis::cmd("GET").arg(full))
                    .await?
            }
        };
        Ok(self.classify(bytes, envelope::now_ms()))
    }

    /// Removes a corrupt entry, only while it still holds the bytes read: a writer that
    /// replaced it meanwhile keeps its value.
    pub(crate) async fn remove_corrupt(&self, full: &str, bytes: Vec<u8>, why: &Error) {
        let Some(client) = self.inner.client.as_ref() else {
            return;
        };
        if let Some(suppressed) = CORRUPT_LOG.admit(key_family(full), Instant::now()) {
            tracing::warn!(target: "redisx::cache",
                key = %full,
                suppressed,
                error = %format_args!("{why:#}"),
                "cache entry does not decode (its type changed shape, or it is corrupt); treating it as a miss and removing it"
            );
        }
        let removed = client
            .eval::<u64, _, _>(&scripts::DEL_IF_EQ.script, &[full], &[bytes])
            .await;
        if let Err(e) = removed {
            tracing::debug!(target: "redisx::cache", key = %full, error = %format_args!("{e:#}"), "could not remove the corrupt entry");
        }
    }

    /// Reads only the first [`HEADER_LEN`] bytes of an entry (`GETRANGE`).
    pub(crate) async fn read_header(&self, client: &Client, full: &str) -> Result<Vec<u8>> {
        let mut cmd = redis::cmd("GETRANGE");
        cmd.arg(full).arg(0).arg(HEADER_LEN - 1);
        client.query_named("GETRANGE", &cmd).await
    }

    /// Adds `keys` to the indexes of `tags`, written at `now` (unix ms) to live `entry_px` in
    /// Redis (SWR and stale-if-error windows included): one `ZADD` per tag and chunk, one
    /// prune and one expiry per tag.
    ///
    /// An index is a sorted set of user keys, each scored by when its entry ends (`ZADD ..
    /// GT`: a rewrite only ever moves the score later). Every write to an index also drops
    /// the members whose entries ended more than [`TAG_PRUNE_MARGIN`] ago, so an index holds
    /// the keys of live entries (and of entries rewritten without the tag since), however
    /// long its tag keeps being written. A write in flight scores its member in the future,
    /// so pruning never drops it. An index lives at least `max_ttl` and at least as long as
    /// its longest entry: `PEXPIRE .. NX` sets that on a new index, `PEXPIRE .. GT` only ever
    /// extends it.
    pub(crate) fn index_tags(
        &self,
        pipe: &mut redis::Pipeline,
        keys: &[&str],
        tags: &[String],
        entry_px: u64,
        now: u64,
    ) {
        let ttl = millis(self.inner.cfg.max_ttl).max(entry_px);
        let ends = now.saturating_add(entry_px);
        let dead_before = format!("({}", now.saturating_sub(millis(TAG_PRUNE_MARGIN)));
        for t in tags {
            let tk = self.tag_key(t);
            for chunk in keys.chunks(CHUNK) {
                let mut zadd = redis::cmd("ZADD");
                zadd.arg(&tk).arg("GT");
                for key in chunk {
                    zadd.arg(ends).arg(*key);
                }
                pipe.add_command(zadd).ignore();
            }
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&tk)
                .arg("-inf")
                .arg(&dead_before)
                .ignore();
            pipe.cmd("PEXPIRE").arg(&tk).arg(ttl).arg("NX").ignore();
            pipe.cmd("PEXPIRE").arg(&tk).arg(ttl).arg("GT").ignore();
        }
    }

    /// The full key of a tag's index.
    pub(crate) fn tag_key(&self, tag: &str) -> String {
        let mut k = self.inner.keys.full(&self.inner.cfg.tag_index_prefix);
        k.push_str(tag);
        k
    }

    /// The write path: tag index entries, then the entry (under `cond`), a refresh lock's
    /// release and the invalidation message, in one pipelined round trip. Without Redis, only
    /// the timing and the L1 weight are computed.
    pub(crate) async fn write<T: Serialize>(
        &self,
        call: &Call<'_>,
        value: &T,
        cond: Condition<'_>,
    ) -> Result<Written> {
        let now = envelope::now_ms();
        let (stale_at, expires_at, px) = timing(call, now);
        let (Some(client), Some(full)) = (self.l2_client(call.r.mode), call.full()) else {
            return Ok(Written {
                stored: true,
                size: self.l1_weight_of(call.r.codec, value),
                stale_at,
            });
        };
        let key = call.key;
        let bytes = envelope::encode(call.r.codec, value, stale_at, expires_at, call.tags)?;
        let size = bytes.len();
        let mut invocation = scripts::WRITE.script.key(full);
        let required: &[u8] = match cond {
            Condition::None => b"",
            Condition::Marker(m) => m,
            Condition::Refresh { header, .. } => header,
        };
        invocation.arg(required).arg(bytes).arg(px);
        // Under a marker, no channel: the script answers 2 when a waiter flagged it, and the
        // wake-up is published below. An entry that was missing has no L1 copies.
        if !matches!(cond, Condition::Marker(_)) {
            invocation
                .arg(&self.inner.channel)
                .arg(invalidation::keys_message(&self.inner.origin, [key]));
        }
        let answer: Result<u8> = match cond {
            // The common case is one script: sent as a plain EVALSHA, not a pipeline.
            Condition::None | Condition::Marker(_) if call.tags.is_empty() => {
                client.invoke(&invocation).await
            }
            _ => {
                let mut pipe = redis::pipe();
                self.index_tags(&mut pipe, &[key], call.tags, px, now);
                pipe.invoke_script(&invocation);
                if let Condition::Refresh {
                    lock_key, token, ..
                } = cond
                {
                    let mut release = scripts::RELEASE.script.key(lock_key);
                    release.arg(&token[..]).arg(&self.inner.channel).arg("");
                    pipe.invoke_script(&release).ignore();
                }
                client.query_pipeline::<(u8,)>(&pipe).await.map(|(w,)| w)
            }
        };
        let answer = answer.map_err(|e| with_code(e, ErrorCode::CacheSetFailed, key))?;
        if answer == 2 {
            // Callers in other instances wait for this write: wake them. Should this fail,
            // they notice the value at their bounded fallback poll.
            let msg = invalidation::keys_message(&self.inner.origin, [key]);
            if let Err(e) = self.publish(client, msg).await {
                tracing::debug!(target: "redisx::cache", key, error = %format_args!("{e:#}"), "could not wake the instances waiting for a cache fill; they poll");
            }
        }
        Ok(Written {
            stored: answer != 0,
            size,
            stale_at,
        })
    }

    /// Unlinks `full` keys (per cluster slot and chunk, pipelined); returns how many existed.
    pub(crate) async fn unlink<K: AsRef<[u8]>>(&self, client: &Client, full: &[K]) -> Result<u64> {
        if full.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for chunk in slot_chunks(full.iter().map(AsRef::as_ref).collect(), |k| k) {
            pipe.cmd("UNLINK").arg(chunk);
        }
        let counts: Vec<u64> = client.query_pipeline(&pipe).await?;
        Ok(counts.iter().sum())
    }

    /// Unlinks `full` keys, then evicts their `user` keys here and in the other instances.
    pub(crate) async fn unlink_and_publish<K: AsRef<[u8]>>(
        &self,
        client: &Client,
        full: &[K],
        user: &[&str],
    ) -> Result<u64> {
        let deleted = self.unlink(client, full).await?;
        self.evict_and_publish(client, user).await?;
        Ok(deleted)
    }

    /// After a delete in L2: evicts `user` keys from this L1 and tells the other instances.
    pub(crate) async fn evict_and_publish(&self, client: &Client, user: &[&str]) -> Result<()> {
        // Evict again: a read that started before the delete may have refilled L1 meanwhile
        // (its fill is dropped by the epoch; this catches one that already landed).
        for k in user {
            self.inner.l1.remove(k);
        }
        if !user.is_empty() {
            let mut pipe = redis::pipe();
            for chunk in user.chunks(CHUNK) {
                let msg = invalidation::keys_message(&self.inner.origin, chunk.iter().copied());
                pipe.cmd("PUBLISH")
                    .arg(&self.inner.channel)
                    .arg(msg)
                    .ignore();
            }
            client.query_pipeline::<()>(&pipe).await?;
        }
        Ok(())
    }

    /// The full keys under this cache's prefix matching `pattern`, as bytes: a key another
    /// program wrote under the prefix need not be UTF-8, and must not make the scan fail.
    pub(crate) async fn scan(&self, client: &Client, pattern: &str) -> Result<Vec<Vec<u8>>> {
        let pat = format!("{}{pattern}", glob_escape(self.inner.keys.prefix()));
        scan_match(client, &pat).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_entries_are_logged_once_per_family_and_window() {
        let log = RateLimitedLog::<String>::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        let family = key_family("app:cache:user:42");
        assert_eq!(family, "app:cache:user:");
        assert_eq!(log.admit(family, t0), Some(0));
        assert_eq!(log.admit(key_family("app:cache:user:43"), t0), None);
        assert_eq!(log.admit(family, t0 + Duration::from_secs(1)), None);
        // Another family has its own window.
        assert_eq!(log.admit("app:cache:order:", t0), Some(0));
        // After the window: one line, with the count held back.
        assert_eq!(log.admit(family, t0 + Duration::from_secs(11)), Some(2));
        assert_eq!(log.admit(family, t0 + Duration::from_secs(12)), None);
        // Full: a new family still logs, and quiet families make room.
        assert_eq!(log.admit("x:", t0 + Duration::from_secs(12)), Some(0));
        assert_eq!(log.admit("y:", t0 + Duration::from_secs(30)), Some(0));
        assert_eq!(log.admit("y:", t0 + Duration::from_secs(31)), None);
    }
}
