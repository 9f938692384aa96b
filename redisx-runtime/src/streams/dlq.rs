//! The dead-letter stream of a stream: `dlq_list`, `dlq_len`, `requeue`, `requeue_all`,
//! `purge_dlq`.
//!
//! A dead-letter entry holds the message's fields (`data`, `codec`, trace context, `attempt`:
//! the attempts made) and why it failed: `error`, `original_id`, `original_stream`,
//! `failed_at` (ms since the epoch). A requeue puts the message's fields back into the stream
//! as a first attempt (`attempt` 1, without the failure fields) and removes the dead-letter
//! entry, together (`lua/requeue.lua`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use super::fields::{self, Fields};
use super::reply::failed;
use super::{Shared, StreamKeys, Streams, message, scripts};
use crate::error::{Error, ErrorCode, Result};

/// Dead-letter entries requeued per round trip by [`Streams::requeue_all`].
const REQUEUE_PAGE: usize = 100;

/// One entry of a stream's dead-letter stream: a message that ran out of retries (or was
/// rejected, or could not be decoded).
///
/// ```no_run
/// #[derive(serde::Deserialize)]
/// struct Order { id: u64 }
///
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// for dead in rx.streams().dlq_list("orders", 10).await? {
///     let order: Order = dead.payload()?;
///     println!("order {} failed {} times: {:?}", order.id, dead.attempts, dead.error);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The dead-letter entry's id (what [`Streams::requeue`] takes).
    pub id: String,
    /// The message's fields (`data`, `codec`, trace context, `attempt`, and any others its
    /// producer wrote), without the failure fields.
    pub fields: Fields,
    /// Why it failed (the last error, or the rejection's reason).
    pub error: Option<String>,
    /// Its id in the stream.
    pub original_id: Option<String>,
    /// The stream's name (as its consumer was given it).
    pub original_stream: Option<String>,
    /// When it was dead-lettered.
    pub failed_at: Option<SystemTime>,
    /// The attempts made (its `attempt` field; 1 when absent).
    pub attempts: u32,
}

impl DeadLetter {
    /// Decodes the payload (by the entry's `codec` field).
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T> {
        message::decode(&self.fields).map_err(|e| e.with_context("id", self.id.clone()))
    }

    /// Reads one dead-letter entry.
    fn from_entry(id: String, entry: Fields) -> Self {
        let mut dead = Self {
            id,
            fields: Vec::with_capacity(entry.len()),
            error: None,
            original_id: None,
            original_stream: None,
            failed_at: None,
            attempts: fields::attempt(&entry),
        };
        for (name, value) in entry {
            let text = || String::from_utf8_lossy(&value).into_owned();
            match name.as_str() {
                fields::ERROR => dead.error = Some(text()),
                fields::ORIGINAL_ID => dead.original_id = Some(text()),
                fields::ORIGINAL_STREAM => dead.original_stream = Some(text()),
                fields::FAILED_AT => {
                    dead.failed_at = text()
                        .parse::<u64>()
                        .ok()
                        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
                }
                _ => dead.fields.push((name, value)),
            }
        }
        dead
    }

    /// The fields of the message requeued: its own, as a first attempt.
    fn requeued_fields(&self) -> Fields {
        let mut out = self.fields.clone();
        fields::set(&mut out, fields::ATTEMPT, b"1".to_vec());
        out
    }
}

impl Streams {
    /// The oldest `count` entries of the stream's dead-letter stream, oldest first.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// for dead in rx.streams().dlq_list("orders", 100).await? {
    ///     println!("{} (was {:?}): {:?}", dead.id, dead.original_id, dead.error);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn dlq_list(&self, stream: &str, count: usize) -> Result<Vec<DeadLetter>> {
        let keys = self.inner.stream_keys(stream, false)?;
        if count == 0 {
            return Ok(Vec::new());
        }
        let entries = self.inner.dlq_range(stream, &keys, "-", "+", count).await?;
        Ok(entries
            .into_iter()
            .map(|(id, entry)| DeadLetter::from_entry(id, entry))
            .collect())
    }

    /// Entries in the stream's dead-letter stream.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// println!("{} dead letters", rx.streams().dlq_len("orders").await?);
    /// # Ok(()) }
    /// ```
    pub async fn dlq_len(&self, stream: &str) -> Result<u64> {
        let keys = self.inner.stream_keys(stream, false)?;
        let read = |e| {
            failed(
                e,
                ErrorCode::StreamReadFailed,
                "reading the dead-letter stream failed",
                stream,
            )
        };
        self.inner.dlq_len(stream, &keys.dlq).await.map_err(read)
    }

    /// Moves the dead-letter entry `dlq_id` back into the stream as a first attempt (its
    /// fields without the failure ones, `attempt` 1); returns the new entry's id, or `None`
    /// when there is no such dead-letter entry (requeued or purged meanwhile).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// if let Some(dead) = rx.streams().dlq_list("orders", 1).await?.pop() {
    ///     let id = rx.streams().requeue("orders", &dead.id).await?;
    ///     println!("requeued as {id:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn requeue(&self, stream: &str, dlq_id: &str) -> Result<Option<String>> {
        let keys = self.inner.stream_keys(stream, false)?;
        let Some((id, entry)) = self
            .inner
            .dlq_range(stream, &keys, dlq_id, dlq_id, 1)
            .await?
            .pop()
        else {
            return Ok(None);
        };
        let dead = DeadLetter::from_entry(id, entry);
        let inv = self.inner.requeue_invocation(&keys, &dead);
        let client = self.inner.client().map_err(|e| requeue_failed(e, stream))?;
        client
            .invoke::<Option<String>>(&inv)
            .await
            .map_err(|e| requeue_failed(e, stream).with_context("id", dlq_id))
    }

    /// Requeues every entry the dead-letter stream holds now (see [`requeue`](Self::requeue)),
    /// a page of 100 per round trip; entries dead-lettered meanwhile stay. Returns how many
    /// were requeued.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let n = rx.streams().requeue_all("orders").await?;
    /// println!("{n} orders get another chance");
    /// # Ok(()) }
    /// ```
    pub async fn requeue_all(&self, stream: &str) -> Result<u64> {
        let shared = &self.inner;
        let keys = shared.stream_keys(stream, false)?;
        let fail = |e| requeue_failed(e, stream);
        let client = shared.client().map_err(fail)?;
        // The newest entry now: the last one requeued, so that messages that fail again
        // while this runs are not chased.
        let last: redis::Value = client
            .query(
                redis::cmd("XREVRANGE")
                    .arg(&keys.dlq)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1),
            )
            .await
            .map_err(fail)?;
        let Some((last, _)) = fields::entries(last).pop() else {
            return Ok(0);
        };
        let mut start = "-".to_owned();
        let mut requeued = 0u64;
        loop {
            let page = shared
                .dlq_range(stream, &keys, &start, &last, REQUEUE_PAGE)
                .await?;
            let Some((newest, _)) = page.last() else {
                break;
            };
            start = format!("({newest}");
            let full = page.len() == REQUEUE_PAGE;
            let mut pipe = redis::Pipeline::with_capacity(page.len());
            for (id, entry) in page {
                let dead = DeadLetter::from_entry(id, entry);
                pipe.invoke_script(&shared.requeue_invocation(&keys, &dead));
            }
            let ids: Vec<Option<String>> = client.query_pipeline(&pipe).await.map_err(fail)?;
            requeued += ids.iter().filter(|id| id.is_some()).count() as u64;
            if !full {
                break;
            }
        }
        Ok(requeued)
    }

    /// Deletes the stream's dead-letter stream; returns how many entries it held.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let dropped = rx.streams().purge_dlq("orders").await?;
    /// println!("dropped {dropped} dead letters");
    /// # Ok(()) }
    /// ```
    pub async fn purge_dlq(&self, stream: &str) -> Result<u64> {
        let keys = self.inner.stream_keys(stream, false)?;
        let fail = |e| {
            failed(
                e,
                ErrorCode::StreamReadFailed,
                "purging the dead-letter stream failed",
                stream,
            )
        };
        let client = self.inner.client().map_err(fail)?;
        let mut inv = scripts::PURGE_DLQ.script.prepare_invoke();
        inv.key(&keys.dlq);
        client.invoke(&inv).await.map_err(fail)
    }
}

impl Shared {
    /// The length of the stream `stream`'s dead-letter stream `dlq` (`XLEN`), recorded in
    /// `redisx_stream_dlq_length` as a read of the lag records it in `redisx_stream_lag`.
    pub(crate) async fn dlq_len(&self, stream: &str, dlq: &str) -> Result<u64> {
        let n: u64 = self.client()?.query(redis::cmd("XLEN").arg(dlq)).await?;
        let labels = super::stats::StreamLabels {
            stream: stream.to_owned(),
        };
        self.metrics
            .dlq_length
            .get_or_create(&labels)
            .set(i64::try_from(n).unwrap_or(i64::MAX));
        Ok(n)
    }

    /// Dead-letter entries from `start` to `end`, at most `count`.
    async fn dlq_range(
        &self,
        stream: &str,
        keys: &StreamKeys,
        start: &str,
        end: &str,
        count: usize,
    ) -> Result<Vec<(String, Fields)>> {
        let read = |e| {
            failed(
                e,
                ErrorCode::StreamReadFailed,
                "reading the dead-letter stream failed",
                stream,
            )
        };
        let client = self.client().map_err(read)?;
        let reply: redis::Value = client
            .query(
                redis::cmd("XRANGE")
                    .arg(&keys.dlq)
                    .arg(start)
                    .arg(end)
                    .arg("COUNT")
                    .arg(count),
            )
            .await
            .map_err(read)?;
        Ok(fields::entries(reply))
    }

    /// The requeue script's call for `dead`.
    fn requeue_invocation(
        &self,
        keys: &StreamKeys,
        dead: &DeadLetter,
    ) -> redis::ScriptInvocation<'static> {
        let mut inv = scripts::REQUEUE.script.prepare_invoke();
        inv.key(&keys.stream)
            .key(&keys.dlq)
            .arg(&dead.id)
            .arg(self.cfg.max_len);
        for (name, value) in dead.requeued_fields() {
            inv.arg(name).arg(value);
        }
        inv
    }
}

fn requeue_failed(e: Error, stream: &str) -> Error {
    failed(
        e,
        ErrorCode::StreamPublishFailed,
        "requeueing the dead letter failed",
        stream,
    )
}
