//! Sliding expiry: [`Cache::touch`] and [`Cache::get_and_touch`] move a fresh entry's expiry
//! forward (`touch.lua`), re-index its tags with the new end, and let this instance's L1 copy
//! follow.

use std::time::Duration;

use super::envelope;
use super::l1::Erasure;
use super::l2::with_code;
use super::stats::Op;
use super::{Cache, Cacheable, Call, EntryOptions, scripts};
use crate::error::{ErrorCode, Result};
use crate::millis;

/// What `touch.lua` answers for a touched entry: its bytes (whole, or its header and tag
/// section) and the key's new Redis ttl in milliseconds.
type Touched = Option<(Vec<u8>, u64)>;

impl Cache {
    /// Keeps the fresh entry under `key` fresh for `ttl` from now (or the config's default
    /// ttl): sliding expiry without reading the value. Returns whether there was a fresh
    /// entry to touch; an entry past its freshness is not revived.
    ///
    /// The entry keeps its value and tags, and its stale-while-revalidate and stale-if-error
    /// windows keep their length after the new freshness. Tag invalidation still finds it:
    /// its tags are re-indexed with the new end. This instance's L1 copy lives on as long
    /// (capped by the L1 ttl); other instances' copies keep their own, shorter, expiry and then
    /// read the touched entry from Redis.
    ///
    /// Unlike [`set`](Self::set), a touch reports Redis failures (`CACHE_SET_FAILED`, or the
    /// connection's code): a caller that relies on the entry living longer must learn that it
    /// will not. Without Redis (an L1-only cache or call), the L1 entry is extended.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use std::time::Duration;
    /// let cache = rx.cache();
    /// cache.set("session:abc", &"user-7".to_owned(), Some(Duration::from_secs(1800))).await?;
    /// // Activity: another 30 minutes from now.
    /// assert!(cache.touch("session:abc", Some(Duration::from_secs(1800))).await?);
    /// assert!(!cache.touch("session:gone", None).await?);
    /// # Ok(()) }
    /// ```
    pub async fn touch(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        self.inner.life.check()?;
        let opts = EntryOptions {
            ttl,
            ..EntryOptions::default()
        };
        let call = self.call(key, &opts)?;
        let since = self.inner.l1.epoch();
        if call.full().is_none() {
            return Ok(self.inner.l1.extend(key, Self::l1_ttl_of(&call), since));
        }
        let span = tracing::debug_span!(target: "redisx::cache", "cache.touch",
            otel.kind = "internal",
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            cache.key = self.span_key(key),
            cache.ttl_ms = millis(call.r.ttl),
            cache.hit = tracing::field::Empty
        );
        let touched = traced!(self.slide(&call, false), span).map_err(|e| {
            let e = with_code(e, ErrorCode::CacheSetFailed, key);
            self.failed(Op::Write, &span, e)
        })?;
        span.record("cache.hit", touched.is_some());
        if touched.is_some() {
            self.inner.l1.extend(key, Self::l1_ttl_of(&call), since);
        } else {
            self.inner.l1.remove(key);
        }
        Ok(touched.is_some())
    }

    /// Reads the fresh value under `key` and keeps it fresh for `ttl` from now (or the
    /// config's default ttl) in one atomic step, like Redis's `GETEX`: a session read on each
    /// request. `None` when no fresh entry is stored; a corrupt entry is removed and is `None`.
    ///
    /// Always one round trip, even when L1 holds the value (the Redis entry's expiry must
    /// move); the value read fills L1. The entry, its tags and the other instances' L1 copies
    /// are as after [`touch`](Self::touch), and so are failures: a Redis error is reported,
    /// not read as a miss (for a session, a miss would sign its user out).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use std::time::Duration;
    /// let cache = rx.cache();
    /// let idle = Some(Duration::from_secs(1800));
    /// let user: Option<String> = cache.get_and_touch("session:abc", idle).await?;
    /// match user {
    ///     Some(user) => println!("signed in as {user}, for 30 more idle minutes"),
    ///     None => println!("no session: sign in again"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get_and_touch<T: Cacheable>(
        &self,
        key: &str,
        ttl: Option<Duration>,
    ) -> Result<Option<T>> {
        self.inner.life.check()?;
        let opts = EntryOptions {
            ttl,
            ..EntryOptions::default()
        };
        let call = self.call(key, &opts)?;
        let since = self.inner.l1.epoch();
        if call.full().is_none() {
            let value = self.l1_get::<T>(key, Some(call.r.mode), Erasure::boxed());
            self.inner.l1.extend(key, Self::l1_ttl_of(&call), since);
            return Ok(value);
        }
        let span = tracing::debug_span!(target: "redisx::cache", "cache.get",
            otel.kind = "internal",
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            cache.key = self.span_key(key),
            cache.layer = "l2",
            cache.ttl_ms = millis(call.r.ttl),
            cache.hit = tracing::field::Empty
        );
        let touched = traced!(self.slide(&call, true), span).map_err(|e| {
            let e = with_code(e, ErrorCode::CacheSetFailed, key);
            self.failed(Op::Write, &span, e)
        })?;
        let Some((bytes, _)) = touched else {
            span.record("cache.hit", false);
            self.inner.metrics.l2_misses.inc();
            self.inner.l1.remove(key);
            return Ok(None);
        };
        match envelope::decode::<T>(&bytes) {
            Ok(env) => {
                span.record("cache.hit", true);
                self.inner.metrics.l2_hits.inc();
                self.fill_l1(&call, &env, Erasure::boxed(), since);
                Ok(Some(env.value))
            }
            Err(e) => {
                span.record("cache.hit", false);
                self.inner.metrics.l2_misses.inc();
                self.inner.metrics.corrupt.inc();
                self.inner.l1.remove(key);
                self.remove_corrupt(&self.full_key(key), bytes, &e).await;
                Ok(None)
            }
        }
    }

    /// How long an extended L1 copy lives: the new freshness, capped by the L1 ttl.
    fn l1_ttl_of(call: &Call<'_>) -> Duration {
        call.r.l1_ttl.min(call.r.ttl)
    }

    /// Runs `touch.lua` on the call's entry (`whole`: return the whole entry, else its header
    /// and tag section), then re-indexes the entry's tags with its new end so that a tag
    /// invalidation keeps finding it after its old end.
    async fn slide(&self, call: &Call<'_>, whole: bool) -> Result<Touched> {
        let (Some(client), Some(full)) = (self.l2_client(call.r.mode), call.full()) else {
            return Ok(None);
        };
        let now = envelope::now_ms();
        let stale_at = now.saturating_add(millis(call.r.ttl));
        let touched: Touched = client
            .eval(
                &scripts::TOUCH.script,
                &[full],
                &[now, stale_at, u64::from(whole)],
            )
            .await?;
        let Some((bytes, pttl)) = touched else {
            return Ok(None);
        };
        let tags = envelope::tags_of(&bytes).unwrap_or_default();
        if !tags.is_empty() {
            let mut pipe = redis::pipe();
            self.index_tags(&mut pipe, &[call.key], &tags, pttl, now);
            client.query_pipeline::<()>(&pipe).await?;
        }
        Ok(Some((bytes, pttl)))
    }
}
