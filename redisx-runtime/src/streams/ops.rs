//! Looking into streams: `len`, `info`, `groups`, `create_group`, `pending`, `lag`,
//! `delayed_len`.

use redis::Value;

use super::fields;
use super::reply::{entry_id, failed, int, is_no_such_key, pairs, parse_groups, parse_pending};
use super::stats::GroupLabels;
use super::{Shared, Streams};
use crate::error::{Error, ErrorCode, Result};

/// What [`Streams::info`] reports about a stream.
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// if let Some(info) = rx.streams().info("orders").await? {
///     println!("{} entries, last {:?}", info.length, info.last_id);
///     for g in &info.groups {
///         println!("group {}: {} pending, lag {:?}", g.name, g.pending, g.lag);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamInfo {
    /// Entries in the stream now (`XLEN`).
    pub length: u64,
    /// The oldest entry's id, `None` when the stream is empty.
    pub first_id: Option<String>,
    /// The newest entry's id, `None` when the stream is empty.
    pub last_id: Option<String>,
    /// The last id the stream generated (entries trimmed or deleted since included).
    pub last_generated_id: String,
    /// Entries ever added to the stream (Redis 7).
    pub entries_added: u64,
    /// Its consumer groups.
    pub groups: Vec<GroupInfo>,
    /// Entries in its dead-letter stream.
    pub dlq_length: u64,
    /// Messages waiting in its delayed set (retries, delayed publishes).
    pub delayed: u64,
}

/// One consumer group of a stream, as `XINFO GROUPS` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupInfo {
    /// The group's name.
    pub name: String,
    /// Consumers known to the group.
    pub consumers: u64,
    /// Entries delivered to the group and not acknowledged yet.
    pub pending: u64,
    /// The last entry delivered to the group (`0-0`: none yet).
    pub last_delivered_id: String,
    /// Entries delivered to the group so far, when Redis can tell.
    pub entries_read: Option<u64>,
    /// Entries not delivered to the group yet; `None` when Redis cannot tell (entries were
    /// deleted in the middle of the stream).
    pub lag: Option<u64>,
}

/// What [`Streams::pending`] reports: the entries a group delivered and has not acknowledged.
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// let p = rx.streams().pending("orders", "billing").await?;
/// println!("{} pending, oldest {:?}", p.count, p.min_id);
/// for (consumer, n) in &p.consumers {
///     println!("  {consumer}: {n}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingSummary {
    /// Pending entries in all.
    pub count: u64,
    /// The oldest pending entry's id.
    pub min_id: Option<String>,
    /// The newest pending entry's id.
    pub max_id: Option<String>,
    /// Pending entries per consumer (consumers with none are not listed).
    pub consumers: Vec<(String, u64)>,
}

impl Streams {
    /// Entries in the stream `stream` (`XLEN`); 0 for a stream that does not exist.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// println!("{} orders queued", rx.streams().len("orders").await?);
    /// # Ok(()) }
    /// ```
    pub async fn len(&self, stream: &str) -> Result<u64> {
        let keys = self.inner.stream_keys(stream, false)?;
        self.inner
            .count(redis::cmd("XLEN").arg(&keys.stream), stream)
            .await
    }

    /// Messages waiting in the stream's delayed set (retries and delayed publishes).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// println!("{} scheduled", rx.streams().delayed_len("orders").await?);
    /// # Ok(()) }
    /// ```
    pub async fn delayed_len(&self, stream: &str) -> Result<u64> {
        let keys = self.inner.stream_keys(stream, false)?;
        self.inner
            .count(redis::cmd("ZCARD").arg(&keys.delayed), stream)
            .await
    }

    /// The stream, its groups, its dead-letter stream and delayed set, in one round trip;
    /// `None` when the stream does not exist.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let info = rx.streams().info("orders").await?.unwrap_or_default();
    /// println!("{} entries, {} dead letters", info.length, info.dlq_length);
    /// # Ok(()) }
    /// ```
    pub async fn info(&self, stream: &str) -> Result<Option<StreamInfo>> {
        let keys = self.inner.stream_keys(stream, false)?;
        let read = |e| {
            failed(
                e,
                ErrorCode::StreamReadFailed,
                "reading the stream failed",
                stream,
            )
        };
        let mut pipe = redis::pipe();
        pipe.cmd("XINFO").arg("STREAM").arg(&keys.stream);
        pipe.cmd("XINFO").arg("GROUPS").arg(&keys.stream);
        pipe.cmd("XLEN").arg(&keys.dlq);
        pipe.cmd("ZCARD").arg(&keys.delayed);
        let client = self.inner.client().map_err(read)?;
        let mut replies = client
            .query_pipeline_each::<Value>(&pipe)
            .await
            .map_err(read)?
            .into_iter();
        let mut next = || -> Result<Value> {
            match replies.next() {
                Some(Ok(v)) => Ok(v),
                Some(Err(e)) => Err(read(Error::from_redis(e))),
                None => Err(read(Error::new(
                    ErrorCode::Internal,
                    "the pipeline answered fewer replies than it sent commands",
                ))),
            }
        };
        let stream_info = match next() {
            Err(e) if is_no_such_key(&e) => return Ok(None),
            other => other?,
        };
        let mut info = StreamInfo::default();
        for (name, v) in pairs(stream_info) {
            match name.as_str() {
                "length" => info.length = int(&v).unwrap_or(0),
                "last-generated-id" => info.last_generated_id = fields::text(v).unwrap_or_default(),
                "entries-added" => info.entries_added = int(&v).unwrap_or(0),
                "first-entry" => info.first_id = entry_id(v),
                "last-entry" => info.last_id = entry_id(v),
                _ => {}
            }
        }
        info.groups = parse_groups(next()?);
        info.dlq_length = int(&next()?).unwrap_or(0);
        info.delayed = int(&next()?).unwrap_or(0);
        Ok(Some(info))
    }

    /// The stream's consumer groups (`XINFO GROUPS`); none for a stream that does not exist.
    /// Sets the `redisx_stream_lag` gauge of each group whose lag Redis can tell.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// for g in rx.streams().groups("orders").await? {
    ///     println!("{}: {} consumers, {} pending", g.name, g.consumers, g.pending);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn groups(&self, stream: &str) -> Result<Vec<GroupInfo>> {
        let keys = self.inner.stream_keys(stream, false)?;
        self.inner.groups(stream, &keys.stream).await
    }

    /// Creates the consumer group `group` of `stream` starting at `start_id` (`$`: new
    /// entries only, `0`: the whole stream, or an entry id), creating the stream when it does
    /// not exist (`XGROUP CREATE .. MKSTREAM`). `Ok(false)` when the group already existed (it
    /// is left as it is).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let created = rx.streams().create_group("orders", "billing", "0").await?;
    /// # let _ = created;
    /// # Ok(()) }
    /// ```
    pub async fn create_group(&self, stream: &str, group: &str, start_id: &str) -> Result<bool> {
        let keys = self.inner.stream_keys(stream, false)?;
        if group.is_empty() || group.contains(char::is_control) {
            return Err(failed(
                Error::new(
                    ErrorCode::StreamConsumerGroupError,
                    "a consumer group name must be non-empty without control characters",
                ),
                ErrorCode::StreamConsumerGroupError,
                "creating the consumer group failed",
                stream,
            )
            .with_context("group", group));
        }
        self.inner
            .create_group(&keys.stream, stream, group, start_id)
            .await
    }

    /// The entries `group` delivered and has not acknowledged (`XPENDING` summary). A group
    /// (or stream) that does not exist is a `STREAM_CONSUMER_GROUP_ERROR`.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let p = rx.streams().pending("orders", "billing").await?;
    /// assert_eq!(p.count, p.consumers.iter().map(|(_, n)| n).sum::<u64>());
    /// # Ok(()) }
    /// ```
    pub async fn pending(&self, stream: &str, group: &str) -> Result<PendingSummary> {
        let keys = self.inner.stream_keys(stream, false)?;
        let fail = |e| {
            failed(
                e,
                ErrorCode::StreamConsumerGroupError,
                "reading the pending entries failed",
                stream,
            )
            .with_context("group", group)
        };
        let client = self.inner.client().map_err(fail)?;
        let reply: Value = client
            .query(redis::cmd("XPENDING").arg(&keys.stream).arg(group))
            .await
            .map_err(fail)?;
        Ok(parse_pending(reply))
    }

    /// How many entries of `stream` were not delivered to `group` yet (`XINFO GROUPS` lag),
    /// also set as the `redisx_stream_lag` gauge; `None` when Redis cannot tell (entries were
    /// deleted in the middle of the stream). A group (or stream) that does not exist is a
    /// `STREAM_CONSUMER_GROUP_ERROR`.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// if let Some(lag) = rx.streams().lag("orders", "billing").await? {
    ///     println!("billing is {lag} orders behind");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lag(&self, stream: &str, group: &str) -> Result<Option<u64>> {
        let keys = self.inner.stream_keys(stream, false)?;
        let groups = self
            .inner
            .groups(stream, &keys.stream)
            .await
            .map_err(|e| e.with_context("group", group))?;
        match groups.into_iter().find(|g| g.name == group) {
            Some(g) => Ok(g.lag),
            None => Err(Error::new(
                ErrorCode::StreamConsumerGroupError,
                "the consumer group does not exist",
            )
            .with_context("stream", stream)
            .with_context("group", group)),
        }
    }
}

impl Shared {
    /// A command answering a count, 0 for a missing key.
    async fn count(&self, cmd: &redis::Cmd, stream: &str) -> Result<u64> {
        let read = |e| {
            failed(
                e,
                ErrorCode::StreamReadFailed,
                "reading the stream failed",
                stream,
            )
        };
        self.client().map_err(read)?.query(cmd).await.map_err(read)
    }

    /// The groups of the stream `key` (named `stream`), none when it does not exist; sets the
    /// lag gauge of each.
    pub(crate) async fn groups(&self, stream: &str, key: &str) -> Result<Vec<GroupInfo>> {
        let read = |e| {
            failed(
                e,
                ErrorCode::StreamConsumerGroupError,
                "reading the consumer groups failed",
                stream,
            )
        };
        let client = self.client().map_err(read)?;
        let groups = match client
            .query::<Value>(redis::cmd("XINFO").arg("GROUPS").arg(key))
            .await
        {
            Err(e) if is_no_such_key(&e) => return Ok(Vec::new()),
            other => parse_groups(other.map_err(read)?),
        };
        for g in &groups {
            if let Some(lag) = g.lag {
                self.metrics
                    .lag
                    .get_or_create(&GroupLabels {
                        stream: stream.to_owned(),
                        group: g.name.clone(),
                    })
                    .set(i64::try_from(lag).unwrap_or(i64::MAX));
            }
        }
        Ok(groups)
    }
}

impl Shared {
    /// `XGROUP CREATE {key} {group} {start_id} MKSTREAM` for the stream `name`: `Ok(false)`
    /// when the group already existed. Connection, timeout and config errors keep their
    /// codes; others are `STREAM_CONSUMER_GROUP_ERROR`, naming the stream and group.
    pub(crate) async fn create_group(
        &self,
        key: &str,
        name: &str,
        group: &str,
        start_id: &str,
    ) -> Result<bool> {
        let fail = |e| {
            failed(
                e,
                ErrorCode::StreamConsumerGroupError,
                "creating the consumer group failed",
                name,
            )
            .with_context("group", group)
        };
        // An existing group (every restart of a consumer) is an expected answer, not counted
        // as a failed command.
        let created = self
            .client()
            .map_err(fail)?
            .query_named_or_code::<()>(
                "XGROUP",
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(key)
                    .arg(group)
                    .arg(start_id)
                    .arg("MKSTREAM"),
                "BUSYGROUP",
            )
            .await
            .map_err(fail)?;
        Ok(created.is_some())
    }
}
