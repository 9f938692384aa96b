//! Durable publishes: `rx.streams().durable(replicas, timeout)`, an `XADD` followed by `WAIT` on a
//! dedicated connection.

use std::time::Duration;

use serde::Serialize;

use super::producer::PublishOptions;
use super::{Shared, Streams};
use crate::error::{Error, ErrorCode, Result};

/// A durable publish's outcome: the entry id and how many replicas acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The new entry's id.
    pub id: String,
    /// How many replicas acknowledged the write within the timeout (`WAIT`'s answer).
    pub replicas: u64,
}

/// Publishes that wait for replicas: [`Streams::durable`].
///
/// Each publish sends its `XADD` and then `WAIT replicas timeout` in one round trip on a
/// dedicated connection (pooled; `WAIT` blocks its connection, so it never runs on the shared
/// one) and reports how many replicas acknowledged the entry. With
/// [`require_replicas`](Self::require_replicas), fewer is an error (the entry is published
/// all the same: it is on the primary and may still replicate).
///
/// `WAIT` narrows the window in which an acknowledged publish is lost in a failover, but does
/// not close it: Redis replication stays asynchronous, so a failover may promote a replica
/// that had not acknowledged the entry, and an entry reported short of replicas may still be
/// there after all. Publishing again after such an error can duplicate the message, which
/// at-least-once consumers handle anyway.
///
/// ```no_run
/// use std::time::Duration;
///
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// let durable = rx.streams().durable(1, Duration::from_millis(200)).require_replicas(1);
/// let p = durable.publish("payments", &serde_json::json!({"id": 7})).await?;
/// println!("{} reached {} replica(s)", p.id, p.replicas);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Durable {
    streams: Streams,
    replicas: u64,
    timeout: Duration,
    required: u64,
}

impl Durable {
    /// Fails the publish (`STREAM_PUBLISH_FAILED`, naming the count) when fewer than `n`
    /// replicas acknowledged it within the timeout; `WAIT` then waits for at least `n`.
    pub fn require_replicas(mut self, n: u64) -> Self {
        self.required = n;
        self
    }

    /// Publishes `msg` to `stream` and waits for the replicas; see [`Streams::publish`].
    pub async fn publish<T: Serialize + ?Sized>(&self, stream: &str, msg: &T) -> Result<Published> {
        let published = self
            .streams
            .inner
            .publish_one(stream, msg, &PublishOptions::new(), Some(self))
            .await?;
        published.ok_or_else(|| {
            Error::new(ErrorCode::Internal, "XADD without NOMKSTREAM answered nil")
                .with_context("stream", stream)
        })
    }

    /// Publishes `msg` to `stream` with `opts` and waits for the replicas; `Ok(None)` when
    /// `nomkstream` is set and the stream does not exist (nothing is waited for then).
    pub async fn publish_with<T: Serialize + ?Sized>(
        &self,
        stream: &str,
        msg: &T,
        opts: &PublishOptions,
    ) -> Result<Option<Published>> {
        self.streams
            .inner
            .publish_one(stream, msg, opts, Some(self))
            .await
    }
}

impl Streams {
    /// Publishes that wait until `replicas` replicas acknowledged each entry (`WAIT`), or
    /// `timeout` passed (a zero timeout counts as 1 ms: `WAIT 0` would block for good); see
    /// [`Durable`], which also says what `WAIT` does not guarantee.
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let p = rx.streams().durable(1, Duration::from_millis(100)).publish("orders", &7).await?;
    /// if p.replicas == 0 {
    ///     eprintln!("{} is only on the primary so far", p.id);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn durable(&self, replicas: u64, timeout: Duration) -> Durable {
        Durable {
            streams: self.clone(),
            replicas,
            timeout,
            required: 0,
        }
    }
}

impl Shared {
    /// Ends the producer's background work (the plugin's stop): the trim tasks stop and the
    /// idle connections of durable publishes are closed.
    pub(crate) fn stop_producer(&self) {
        self.trims.stop();
        self.wait_pool.clear();
    }

    /// The `XADD` and `WAIT` of a durable publish, on a pooled dedicated connection; then the
    /// check of the replica count.
    pub(crate) async fn publish_durable(
        &self,
        stream: &str,
        xadd: redis::Cmd,
        d: &Durable,
    ) -> Result<Option<Published>> {
        let waited = d.replicas.max(d.required);
        let timeout_ms = crate::millis(d.timeout.max(Duration::from_millis(1)));
        let client = self.client()?;
        let (id, replicas): (Option<String>, u64) = self
            .wait_pool
            .write_and_wait(client, xadd, waited, d.timeout, "XADD")
            .await?;
        let Some(id) = id else { return Ok(None) };
        if replicas < d.required {
            return Err(Error::new(
                ErrorCode::StreamPublishFailed,
                format!(
                    "the entry reached {replicas} of the {} replica(s) required within {} ms; it is published on the primary and may still replicate (or be lost in a failover)",
                    d.required, timeout_ms
                ),
            )
            .with_context("stream", stream)
            .with_context("id", id)
            .with_context("replicas", replicas.to_string()));
        }
        Ok(Some(Published { id, replicas }))
    }
}
