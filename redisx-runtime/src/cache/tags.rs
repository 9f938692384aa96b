//! Tags: invalidation by tag (each index claimed atomically, then the entries that still carry
//! the tag deleted per cluster slot) and the keys indexed under a tag. Indexes are written
//! with their entries (`l2.rs`); entries that live only in L1 are in the in-process index
//! (`local.rs`).

use tracing::Instrument as _;

use super::entry::validate_tag;
use super::l2::{CHUNK, scan_pages, slot_chunks, sorted, with_code};
use super::stats::Op;
use super::{Cache, invalidation, scripts};
use crate::client::Client;
use crate::error::{Error, ErrorCode, Result};
use crate::millis;

/// What `tag_claim.lua` took from one index: its members, and their scores in the same order.
type Claimed = (Vec<String>, Vec<String>);

impl Cache {
    /// Deletes every entry carrying any of `tags`, in every instance's L1 too; returns how
    /// many entries were deleted. Each tag index is claimed atomically (Lua); then one script
    /// per cluster slot deletes the indexed entries that still carry one of the tags (an
    /// entry rewritten since without them stays). Entries that live only in L1 (written with
    /// [`CacheMode::L1Only`](super::CacheMode::L1Only)) are found in each instance's in-process index: this instance
    /// evicts (and counts) its own, and the others evict theirs on the invalidation message.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use redisx_runtime::cache::EntryOptions;
    /// let cache = rx.cache();
    /// cache.set_with("user:1", &"Ada", &EntryOptions::new().tags(["users"])).await?;
    /// assert_eq!(cache.invalidate_tags(&["users"]).await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn invalidate_tags<S: AsRef<str>>(&self, tags: &[S]) -> Result<u64> {
        for t in tags {
            validate_tag(t.as_ref())?;
        }
        if tags.is_empty() {
            return Ok(0);
        }
        let Some(client) = self.inner.client.as_ref() else {
            // Without Redis the tag index is in process.
            return Ok(self.inner.evict_local_tags(tags, |_| true));
        };
        let span = tracing::debug_span!(target: "redisx::cache", "cache.invalidate", otel.kind = "internal", otel.status_code = tracing::field::Empty, error.type = tracing::field::Empty, cache.tags = tags.len());
        async {
            let claim = |t: &str| scripts::TAG_CLAIM.script.key(self.tag_key(t));
            let mut pipe = redis::pipe();
            for t in tags {
                pipe.invoke_script(&claim(t.as_ref()));
            }
            // Each claim's own outcome: one that fails must not hide the indexes the others
            // already took (and deleted), which are processed (or put back) below.
            let replies = client.query_pipeline_each::<Claimed>(&pipe).await?;
            let mut claimed: Vec<Claimed> = Vec::with_capacity(tags.len());
            let mut failed: Option<Error> = None;
            for (t, reply) in tags.iter().zip(replies) {
                let reply = match reply {
                    // The script did not run (the server lost it): load it and claim again.
                    Err(e)
                        if e.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                    {
                        client.invoke::<Claimed>(&claim(t.as_ref())).await
                    }
                    other => other.map_err(Error::from_redis),
                };
                claimed.push(reply.unwrap_or_else(|e| {
                    failed.get_or_insert(e);
                    Claimed::default()
                }));
            }
            let refs: Vec<&str> = sorted(
                claimed
                    .iter()
                    .flat_map(|(members, _)| members)
                    .map(String::as_str)
                    .collect(),
            );
            for k in &refs {
                self.inner.l1.remove(k);
            }
            let local = self
                .inner
                .evict_local_tags(tags, |k| refs.binary_search(&k).is_err());
            let deleted = match self.delete_tagged(client, &refs, tags).await {
                Ok(deleted) => deleted,
                Err(e) => {
                    self.restore_tag_indexes(client, tags, &claimed).await;
                    return Err(e);
                }
            };
            // Other instances' L1-only entries are in their own in-process indexes.
            let msg = invalidation::tags_message(&self.inner.origin, tags);
            let published = self.publish(client, msg).await;
            if let Some(e) = failed {
                return Err(e);
            }
            published?;
            Ok(deleted + local)
        }
        .instrument(span.clone())
        .await
        .map_err(|e| {
            let e = with_code(e, ErrorCode::CacheTagInvalidationFailed, "invalidate_tags");
            self.failed(Op::Invalidate, &span, e)
        })
    }

    /// The user keys indexed under `tag`: those written with it (in Redis, read page by page
    /// with `ZSCAN`, never in one blocking read; without Redis, from the in-process index),
    /// less those whose entries ended a while ago (see the tag indexes in the module docs). The index
    /// may still name a key whose entry expired or was rewritten without the tag since;
    /// [`invalidate_tags`](Self::invalidate_tags) checks each entry before deleting it.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use redisx_runtime::cache::EntryOptions;
    /// let cache = rx.cache();
    /// cache.set_with("user:1", &"Ada", &EntryOptions::new().tags(["users"])).await?;
    /// assert_eq!(cache.keys_by_tag("users").await?, ["user:1"]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn keys_by_tag(&self, tag: &str) -> Result<Vec<String>> {
        validate_tag(tag)?;
        let mut keys: Vec<String> = self
            .inner
            .local_index()
            .by_tag
            .get(tag)
            .map(|keys| keys.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        if let Some(client) = self.inner.client.as_ref() {
            let index = self.tag_key(tag);
            // ZSCAN answers member, score, member, score, ...
            let found: Vec<String> = scan_pages(client, "ZSCAN", |cursor| {
                redis::cmd("ZSCAN")
                    .arg(&index)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(1000)
                    .clone()
            })
            .await?;
            keys.extend(found.into_iter().step_by(2));
        }
        Ok(sorted(keys))
    }

    /// After an invalidation claimed its tag indexes but failed to delete their entries:
    /// puts the claimed members back, so that the caller's retry finds them (a member whose
    /// entry was deleted meanwhile is skipped by the next delete, and one written since is
    /// merged in). Should that fail too, the entries stay until their ttl: logged as an error.
    async fn restore_tag_indexes<S: AsRef<str>>(
        &self,
        client: &Client,
        tags: &[S],
        claimed: &[Claimed],
    ) {
        let ttl = millis(self.inner.cfg.max_ttl).max(1);
        let mut pipe = redis::pipe();
        let mut keys = 0;
        for (tag, (members, scores)) in tags.iter().zip(claimed) {
            if members.is_empty() {
                continue;
            }
            keys += members.len();
            let tk = self.tag_key(tag.as_ref());
            for (i, chunk) in members.chunks(CHUNK).enumerate() {
                let mut zadd = redis::cmd("ZADD");
                zadd.arg(&tk).arg("GT");
                // The score each had: when its entry ends.
                let scores = scores.iter().skip(i * CHUNK);
                for (m, score) in chunk.iter().zip(scores) {
                    zadd.arg(score).arg(m);
                }
                pipe.add_command(zadd).ignore();
            }
            pipe.cmd("PEXPIRE").arg(&tk).arg(ttl).arg("NX").ignore();
            pipe.cmd("PEXPIRE").arg(&tk).arg(ttl).arg("GT").ignore();
        }
        if keys == 0 {
            return;
        }
        if let Err(e) = client.query_pipeline::<()>(&pipe).await {
            let tags: Vec<&str> = tags.iter().map(AsRef::as_ref).collect();
            tracing::error!(target: "redisx::cache",
                ?tags,
                keys,
                error = %format_args!("{e:#}"),
                "a tag invalidation failed half-way and its tag indexes could not be restored; those entries stay until their ttl unless deleted by key"
            );
        }
    }

    /// Deletes those of `user` keys whose entries still carry one of `tags` (or hold a lock
    /// marker), one `tag_delete.lua` per cluster slot and chunk, all pipelined; then evicts
    /// and publishes the deleted keys and those Redis no longer held (another instance may
    /// still have an L1 copy of an entry Redis evicted). Returns how many were deleted.
    async fn delete_tagged<S: AsRef<str>>(
        &self,
        client: &Client,
        user: &[&str],
        tags: &[S],
    ) -> Result<u64> {
        if user.is_empty() {
            return Ok(0);
        }
        let pairs: Vec<(String, &str)> = user.iter().map(|k| (self.full_key(k), *k)).collect();
        let chunks = slot_chunks(pairs, |(full, _)| full.as_bytes());
        let mut pipe = redis::pipe();
        for chunk in &chunks {
            let mut invocation = scripts::TAG_DELETE.script.prepare_invoke();
            for (full, _) in chunk {
                invocation.key(full.as_str());
            }
            for t in tags {
                invocation.arg(t.as_ref());
            }
            pipe.invoke_script(&invocation);
        }
        let answers: Vec<(Vec<usize>, Vec<usize>)> = client.query_pipeline(&pipe).await?;
        let mut deleted = 0;
        let mut evict: Vec<&str> = Vec::new();
        for (chunk, (gone, missing)) in chunks.iter().zip(&answers) {
            deleted += gone.len() as u64;
            // The script answers 1-based positions in the chunk.
            evict.extend(
                gone.iter()
                    .chain(missing)
                    .filter_map(|&i| chunk.get(i.checked_sub(1)?))
                    .map(|(_, user)| *user),
            );
        }
        self.evict_and_publish(client, &evict).await?;
        Ok(deleted)
    }
}
