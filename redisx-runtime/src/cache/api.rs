//! The public service: reads, writes, deletes, pattern invalidation, clear. The loading calls
//! (`get_or_load*`, `warmup`) are in `get_or_load.rs`, tag calls in `tags.rs`, counters in
//! `stats.rs`.

use std::time::Duration;

use serde::Serialize;
use tracing::Instrument as _;

use super::envelope;
use super::l1::Erasure;
use super::l2::{self, CHUNK, Condition, Read, with_code};
use super::local::Fill;
use super::stats::Op;
use super::{Cache, Cacheable, Call, EntryOptions, invalidation};
use crate::error::{ErrorCode, Result};
use crate::millis;

impl Cache {
    /// Reads a value: L1, then L2 (an L2 hit fills L1). A stale value inside its SWR window
    /// is returned; a corrupt entry is removed and reported as `None`.
    ///
    /// Fails open: when Redis cannot answer, the read is a miss (`Ok(None)`), logged and
    /// counted in [`CacheStats::errors`](super::CacheStats::errors). Only a malformed key is
    /// an error.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let name: Option<String> = rx.cache().get("user:1:name").await?;
    /// if let Some(name) = name {
    ///     println!("cached: {name}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get<T: Cacheable>(&self, key: &str) -> Result<Option<T>> {
        let span = tracing::debug_span!(target: "redisx::cache", "cache.get",
            otel.kind = "internal",
            cache.key = self.span_key(key),
            cache.layer = tracing::field::Empty,
            cache.hit = tracing::field::Empty
        );
        self.inner.life.check()?;
        // Probed before the call context is built: an L1 hit builds no full key.
        self.inner.cfg.check_key(key)?;
        let mode = self.inner.cfg.mode_of(None);
        if let Some(v) = self.l1_get::<T>(key, Some(mode), Erasure::boxed()) {
            span.record("cache.layer", "l1");
            span.record("cache.hit", true);
            return Ok(Some(v));
        }
        let opts = EntryOptions::default();
        let call = self.call(key, &opts)?;
        let (Some(client), Some(full)) = (self.l2_client(call.r.mode), call.full()) else {
            span.record("cache.hit", false);
            return Ok(None);
        };
        let since = self.inner.l1.epoch();
        let read = match traced!(self.read::<T>(client, full, None, (key, &[])), span) {
            Ok(read) => read,
            Err(e) => {
                self.fail_open(Op::Read, "read", key, &e);
                return Ok(None);
            }
        };
        span.record("cache.layer", "l2");
        let value = self.answer(&call, read, since).await;
        span.record("cache.hit", value.is_some());
        Ok(value)
    }

    /// What a plain read (`get`, `get_many`) answers for what L2 holds: a fresh value (filling
    /// L1), a stale one inside its SWR window, or nothing (a corrupt entry is removed).
    async fn answer<T: Cacheable>(&self, call: &Call<'_>, read: Read<T>, since: u64) -> Option<T> {
        match read {
            Read::Fresh(env) => {
                self.fill_l1(call, &env, Erasure::boxed(), since);
                Some(env.value)
            }
            Read::Stale(env) => {
                self.inner.metrics.l2_hits.inc();
                self.inner.metrics.stale_served.inc();
                Some(env.value)
            }
            Read::Corrupt(bytes, e) => {
                self.inner.metrics.l2_misses.inc();
                self.remove_corrupt(&self.full_key(call.key), bytes, &e)
                    .await;
                None
            }
            Read::Miss | Read::Locked | Read::Expired(_) => None,
        }
    }

    /// Reads many values with one `MGET` (L1 first). The result has one slot per key.
    /// Fails open like [`get`](Self::get): without Redis, only L1 answers.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let cache = rx.cache();
    /// cache.set("user:1:name", &"Ada".to_owned(), None).await?;
    /// let names: Vec<Option<String>> = cache.get_many(&["user:1:name", "user:2:name"]).await?;
    /// assert_eq!(names, [Some("Ada".to_owned()), None]);
    /// # Ok(()) }
    /// ```
    pub async fn get_many<T: Cacheable, K: AsRef<str>>(
        &self,
        keys: &[K],
    ) -> Result<Vec<Option<T>>> {
        self.inner.life.check()?;
        let mode = self.inner.cfg.mode_of(None);
        let mut out: Vec<Option<T>> = Vec::with_capacity(keys.len());
        for k in keys {
            self.inner.cfg.check_key(k.as_ref())?;
            out.push(self.l1_get::<T>(k.as_ref(), Some(mode), Erasure::boxed()));
        }
        // The call contexts (full keys) of the keys L1 did not answer, for one `MGET`.
        let opts = EntryOptions::default();
        let mut missing = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            if out[i].is_none() {
                let call = self.call(k.as_ref(), &opts)?;
                if call.full.is_some() {
                    missing.push((i, call));
                }
            }
        }
        let Some(client) = self.inner.client.as_ref().filter(|_| !missing.is_empty()) else {
            return Ok(out);
        };
        let mut cmd = redis::cmd("MGET");
        for (_, call) in &missing {
            cmd.arg(call.full());
        }
        let since = self.inner.l1.epoch();
        let values: Vec<Option<Vec<u8>>> = match client.query_read("MGET", &cmd).await {
            Ok(values) => values,
            Err(e) => {
                self.fail_open(Op::Read, "read", "get_many", &e);
                return Ok(out);
            }
        };
        let now = envelope::now_ms();
        for ((i, call), bytes) in missing.iter().zip(values) {
            let read = self.classify::<T>(bytes, now);
            out[*i] = self.answer(call, read, since).await;
        }
        Ok(out)
    }

    /// Writes a value to L2 and L1 with `ttl` (or the default ttl), replacing any entry, and
    /// tells the other instances to drop their L1 copy. See [`set_with`](Self::set_with) for
    /// failures.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use std::time::Duration;
    /// let cache = rx.cache();
    /// cache.set("user:1:name", &"Ada".to_owned(), Some(Duration::from_secs(300))).await?;
    /// cache.set("user:2:name", &"Grace".to_owned(), None).await?; // the config's default ttl
    /// # Ok(()) }
    /// ```
    pub async fn set<T>(&self, key: &str, value: &T, ttl: Option<Duration>) -> Result<()>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let opts = EntryOptions {
            ttl,
            ..EntryOptions::default()
        };
        self.set_with(key, value, &opts).await
    }

    /// Writes a value with full options (ttl, tags, windows, codec, tiers).
    ///
    /// A write never fails the caller because of Redis: a failed L2 write is logged and
    /// counted (`redisx_cache_errors_total{op="write"}`), and this instance's L1 still gets the
    /// value. Invalid input (key, tags, ttl) is an error and writes nothing.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use std::time::Duration;
    /// use redisx_runtime::cache::EntryOptions;
    /// let opts = EntryOptions::new().ttl(Duration::from_secs(300)).tags(["users", "user:1"]);
    /// rx.cache().set_with("user:1:name", &"Ada".to_owned(), &opts).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_with<T>(&self, key: &str, value: &T, opts: &EntryOptions) -> Result<()>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        let call = self.call(key, opts)?;
        let span = tracing::debug_span!(target: "redisx::cache", "cache.set",
            otel.kind = "internal",
            cache.key = self.span_key(key),
            cache.ttl_ms = millis(call.r.ttl),
            cache.tags = opts.tags.len()
        );
        let since = self.inner.l1.epoch();
        let written = traced!(self.write(&call, value, Condition::None), span);
        let (size, stale_at) = match written {
            Ok(w) => (w.size, w.stale_at),
            Err(e) => {
                // An L1 entry must not outlive (or differ from) its L2 entry: drop ours.
                self.fail_open(Op::Write, "write", key, &e);
                self.inner.l1.remove(key);
                return Ok(());
            }
        };
        if call.r.mode.uses_l1() {
            let fill = Fill {
                stale_at,
                size,
                since,
            };
            self.l1_insert(&call, value.clone(), fill, Erasure::boxed());
        }
        Ok(())
    }

    /// Writes many values in one pipelined round trip (tags indexed), then one invalidation
    /// message for all of them. Like [`set_with`](Self::set_with), a Redis failure is logged
    /// and counted, never returned.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use redisx_runtime::cache::EntryOptions;
    /// let opts = EntryOptions::new().tags(["users"]);
    /// let names = [("user:1:name", "Ada".to_owned()), ("user:2:name", "Grace".to_owned())];
    /// rx.cache().set_many(names, &opts).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_many<T, K, I>(&self, items: I, opts: &EntryOptions) -> Result<()>
    where
        T: Serialize + Clone + Send + Sync + 'static,
        K: AsRef<str>,
        I: IntoIterator<Item = (K, T)>,
    {
        let (keys, values): (Vec<K>, Vec<T>) = items.into_iter().unzip();
        let calls: Vec<Call<'_>> = keys
            .iter()
            .map(|k| self.call(k.as_ref(), opts))
            .collect::<Result<_>>()?;
        let Some(first) = calls.first() else {
            return Ok(());
        };
        let now = envelope::now_ms();
        let since = self.inner.l1.epoch();
        let (stale_at, expires_at, px) = l2::timing(first, now);
        // The weight of each L1 copy under a byte budget: its encoded size.
        let mut sizes = Vec::with_capacity(values.len());
        if let Some(client) = self.l2_client(first.r.mode) {
            let mut pipe = redis::pipe();
            let keys: Vec<&str> = calls.iter().map(|c| c.key).collect();
            self.index_tags(&mut pipe, &keys, &opts.tags, px, now);
            for (call, v) in calls.iter().zip(&values) {
                let bytes = envelope::encode(first.r.codec, v, stale_at, expires_at, &opts.tags)?;
                sizes.push(bytes.len());
                pipe.cmd("SET")
                    .arg(call.full())
                    .arg(bytes)
                    .arg("PX")
                    .arg(px)
                    .ignore();
            }
            for chunk in keys.chunks(CHUNK) {
                let msg = invalidation::keys_message(&self.inner.origin, chunk.iter().copied());
                pipe.cmd("PUBLISH")
                    .arg(&self.inner.channel)
                    .arg(msg)
                    .ignore();
            }
            let span = tracing::debug_span!(target: "redisx::cache", "cache.set",
                cache.keys = values.len(),
                cache.ttl_ms = millis(first.r.ttl),
                cache.tags = opts.tags.len()
            );
            if let Err(e) = traced!(client.query_pipeline::<()>(&pipe), span) {
                // An L1 entry must not outlive (or differ from) its L2 entry: drop ours.
                self.fail_open(Op::Write, "write", "set_many", &e);
                for key in keys {
                    self.inner.l1.remove(key);
                }
                return Ok(());
            }
        }
        if first.r.mode.uses_l1() {
            for (i, (call, v)) in calls.iter().zip(values).enumerate() {
                let size = match sizes.get(i) {
                    Some(&size) => size,
                    None => self.l1_weight_of(call.r.codec, &v),
                };
                let fill = Fill {
                    stale_at,
                    size,
                    since,
                };
                self.l1_insert(call, v, fill, Erasure::boxed());
            }
        }
        Ok(())
    }

    /// Deletes a value from both tiers and from the other instances' L1; `true` if L2 held
    /// it (or, without Redis, L1 did).
    ///
    /// Unlike reads and writes, deletes and invalidations report Redis failures: a stale
    /// entry that could not be removed must not pass unnoticed. This instance's L1 is evicted
    /// either way.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let cache = rx.cache();
    /// cache.set("user:1:name", &"Ada".to_owned(), None).await?;
    /// assert!(cache.delete("user:1:name").await?);
    /// assert!(!cache.delete("user:1:name").await?); // nothing left to delete
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.delete_many(&[key]).await? > 0)
    }

    /// Deletes many keys in one pipelined round trip; returns how many existed.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let cache = rx.cache();
    /// cache.set("user:1:name", &"Ada".to_owned(), None).await?;
    /// assert_eq!(cache.delete_many(&["user:1:name", "user:2:name"]).await?, 1);
    /// # Ok(()) }
    /// ```
    pub async fn delete_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<u64> {
        let mut removed_l1 = 0u64;
        for k in keys {
            self.inner.cfg.check_key(k.as_ref())?;
            if self.inner.l1.remove(k.as_ref()) {
                removed_l1 += 1;
            }
        }
        let Some(client) = self.inner.client.as_ref() else {
            return Ok(removed_l1);
        };
        let span = tracing::debug_span!(target: "redisx::cache", "cache.invalidate", otel.kind = "internal", otel.status_code = tracing::field::Empty, error.type = tracing::field::Empty, cache.keys = keys.len());
        let full: Vec<String> = keys.iter().map(|k| self.full_key(k.as_ref())).collect();
        let user: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        self.unlink_and_publish(client, &full, &user)
            .instrument(span.clone())
            .await
            .map_err(|e| {
                let e = with_code(e, ErrorCode::CacheDeleteFailed, "delete");
                self.failed(Op::Delete, &span, e)
            })
    }

    /// Whether a fresh (or SWR-stale) value is stored under `key`. Reads only the entry's
    /// header (`GETRANGE`). Fails open: `false` on a Redis error.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let cache = rx.cache();
    /// cache.set("user:1:name", &"Ada".to_owned(), None).await?;
    /// assert!(cache.has("user:1:name").await);
    /// # Ok(()) }
    /// ```
    pub async fn has(&self, key: &str) -> bool {
        if self.inner.cfg.check_key(key).is_err() {
            return false;
        }
        if self.inner.l1.contains(key) {
            return true;
        }
        matches!(self.header(key).await, Some((_, expires_at)) if expires_at > envelope::now_ms())
    }

    /// How long the value under `key` stays fresh; `None` when absent, stale or on a Redis
    /// error. Without Redis (an L1-only cache), how long it stays in L1.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use std::time::Duration;
    /// let cache = rx.cache();
    /// cache.set("user:1:name", &"Ada".to_owned(), Some(Duration::from_secs(300))).await?;
    /// let left = cache.ttl("user:1:name").await.expect("just written");
    /// assert!(left <= Duration::from_secs(300));
    /// # Ok(()) }
    /// ```
    pub async fn ttl(&self, key: &str) -> Option<Duration> {
        if self.inner.cfg.check_key(key).is_err() {
            return None;
        }
        if self.l2_client(self.inner.cfg.mode_of(None)).is_none() {
            return self.inner.l1.ttl(key);
        }
        let (stale_at, _) = self.header(key).await?;
        let now = envelope::now_ms();
        (stale_at > now).then(|| Duration::from_millis(stale_at - now))
    }

    /// `(stale_at, expires_at)` of the entry under `key`, read from its header alone.
    async fn header(&self, key: &str) -> Option<(u64, u64)> {
        let client = self.l2_client(self.inner.cfg.mode_of(None))?;
        let bytes = self.read_header(client, &self.full_key(key)).await.ok()?;
        envelope::decode_header(&bytes)
    }

    /// Deletes every entry whose user key matches a Redis glob `pattern` (`user:*`), found
    /// with `SCAN` (never `KEYS`), in every instance's L1 too; returns how many were deleted.
    /// Entries that live only in L1 (written with [`CacheMode::L1Only`](super::CacheMode::L1Only)) match in each
    /// instance's L1, with Redis's glob syntax (`*`, `?`, `[a-z]`, `[^a]`, `\x`): this
    /// instance evicts (and counts) its own, the others theirs on the invalidation message.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let cache = rx.cache();
    /// cache.set("user:1", &"Ada", None).await?;
    /// cache.set("team:1", &"Core", None).await?;
    /// assert_eq!(cache.invalidate_pattern("user:*").await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn invalidate_pattern(&self, pattern: &str) -> Result<u64> {
        let Some(client) = self.inner.client.as_ref() else {
            return Ok(self.inner.evict_local_pattern(pattern));
        };
        let span = tracing::debug_span!(target: "redisx::cache", "cache.invalidate", otel.kind = "internal", otel.status_code = tracing::field::Empty, error.type = tracing::field::Empty, cache.pattern = pattern);
        let found = traced!(self.scan(client, pattern), span)?;
        let prefix_len = self.inner.keys.prefix().len();
        let mut full: Vec<&[u8]> = Vec::with_capacity(found.len());
        // The user keys: only UTF-8 ones can be in an L1 or in a message.
        let mut refs: Vec<&str> = Vec::with_capacity(found.len());
        for f in &found {
            let u = f.get(prefix_len..).unwrap_or_default();
            if self.inner.cfg.is_internal(u) {
                continue;
            }
            full.push(f);
            if let Ok(u) = std::str::from_utf8(u) {
                refs.push(u);
            }
        }
        for k in &refs {
            self.inner.l1.remove(k);
        }
        let failed = |e| {
            let e = with_code(e, ErrorCode::CacheDeleteFailed, "invalidate_pattern");
            self.failed(Op::Invalidate, &span, e)
        };
        let deleted =
            traced!(self.unlink_and_publish(client, &full, &refs), span).map_err(failed)?;
        // Entries that live only in L1 (`CacheMode::L1Only` calls) are not in Redis: this
        // instance evicts and counts its own, the others theirs on the message.
        let local = self.inner.evict_local_pattern(pattern);
        let msg = invalidation::pattern_message(&self.inner.origin, pattern);
        self.publish(client, msg).await.map_err(failed)?;
        Ok(deleted + local)
    }

    /// Deletes every key under this cache's prefix (entries, tag indexes, locks) and every
    /// instance's L1; keys outside the prefix are untouched. Returns how many were deleted.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let cache = rx.cache();
    /// cache.set("user:1:name", &"Ada".to_owned(), None).await?;
    /// let deleted = cache.clear().await?; // only keys under this cache's prefix
    /// assert!(deleted >= 1);
    /// # Ok(()) }
    /// ```
    pub async fn clear(&self) -> Result<u64> {
        self.inner.l1.clear();
        let Some(client) = self.inner.client.as_ref() else {
            return Ok(0);
        };
        let span = tracing::debug_span!(target: "redisx::cache", "cache.invalidate", otel.kind = "internal", otel.status_code = tracing::field::Empty, error.type = tracing::field::Empty, cache.clear = true);
        let failed = |e| self.failed(Op::Invalidate, &span, e);
        let full = traced!(self.scan(client, "*"), span).map_err(failed)?;
        let deleted = traced!(self.unlink(client, &full), span).map_err(failed)?;
        self.inner.l1.clear();
        let msg = invalidation::clear_message(&self.inner.origin);
        self.publish(client, msg).await.map_err(failed)?;
        Ok(deleted)
    }

    /// The number of entries in L1.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let cache = rx.cache();
    /// cache.set("user:1:name", &"Ada".to_owned(), None).await?;
    /// assert_eq!(cache.l1_len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn l1_len(&self) -> usize {
        self.inner.l1.len()
    }

    /// Empties L1 of this instance (L2 and other instances are untouched).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let cache = rx.cache();
    /// cache.set("user:1:name", &"Ada".to_owned(), None).await?;
    /// cache.clear_l1(); // the next read of this instance goes to Redis
    /// assert_eq!(cache.l1_len(), 0);
    /// # Ok(()) }
    /// ```
    pub fn clear_l1(&self) {
        self.inner.l1.clear();
    }
}
