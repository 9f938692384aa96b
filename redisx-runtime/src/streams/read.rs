//! A consumer's background loops: reading new messages (`XREADGROUP` on a connection of its
//! own), moving due delayed messages into the stream, reclaiming the messages of consumers
//! that stopped (`reclaim.rs`), and refreshing the lag and DLQ length gauges. Each backs off
//! when Redis fails and resumes by itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;

use super::engine::Engine;
use super::fields::{self, Fields};
use super::scripts;
use crate::client::DedicatedConnection;
use crate::error::{ErrorCode, Result};

/// How much longer than its `BLOCK` a read may take before its connection is presumed dead.
const READ_MARGIN: Duration = Duration::from_secs(5);

/// The pause after the `n`th failure in a row (from 1): 100 ms doubling to 5 s.
fn backoff(n: u32) -> Duration {
    let doublings = n.saturating_sub(1).min(6);
    Duration::from_millis(100u64.saturating_mul(1 << doublings)).min(Duration::from_secs(5))
}

impl Engine {
    /// Sleeps `d`, or less when stopping; `false` when stopping.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            () = self.stopped() => false,
            () = tokio::time::sleep(d) => true,
        }
    }

    /// Reads new messages and hands them to handlers until the consumer stops.
    pub(crate) async fn read_loop(self: Arc<Self>) {
        let mut failures: u32 = 0;
        let mut conn: Option<DedicatedConnection> = None;
        let mut group = Group::Unknown;
        while !self.is_stopping() {
            if let Err(e) = self.read_once(&mut conn, &mut group).await {
                failures = failures.saturating_add(1);
                if failures == 1 {
                    tracing::warn!(target: "redisx::streams", stream = %self.name, group = %self.opts.group, error = %format_args!("{e:#}"), "a consumer cannot read; it backs off and resumes by itself");
                }
                if !self.pause(backoff(failures)).await {
                    break;
                }
            } else {
                if failures > 0 {
                    tracing::info!(target: "redisx::streams", stream = %self.name, group = %self.opts.group, "a consumer reads again");
                }
                failures = 0;
            }
        }
    }

    /// One read: free slots, then `XREADGROUP .. COUNT {free} BLOCK {block} .. >`.
    async fn read_once(
        self: &Arc<Self>,
        conn: &mut Option<DedicatedConnection>,
        group: &mut Group,
    ) -> Result<()> {
        match group {
            Group::Ready => {}
            Group::Unknown => self.ensure_group(&self.opts.start_id).await?,
            // Everything in the stream now came after the group disappeared: skip nothing.
            Group::Lost => self.ensure_group("0").await?,
        }
        *group = Group::Ready;
        let Some(permits) = self.slots(self.opts.batch).await else {
            return Ok(());
        };
        if conn.is_none() {
            *conn = Some(self.shared.client()?.dedicated_connection().await?);
        }
        let Some(c) = conn.as_mut() else {
            return Ok(());
        };
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.opts.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(permits.len())
            .arg("BLOCK")
            .arg(crate::millis(self.opts.block))
            .arg("STREAMS")
            .arg(&self.keys.stream)
            .arg(">");
        let read = tokio::select! {
            () = self.stopped() => {
                // The read in flight is abandoned with its connection.
                *conn = None;
                return Ok(());
            }
            r = tokio::time::timeout(self.opts.block + READ_MARGIN, c.query::<Value>(&cmd)) => r,
        };
        match read {
            Ok(Ok(value)) => {
                let entries = stream_entries(value);
                self.dispatch(entries, permits, &HashMap::new());
                Ok(())
            }
            Ok(Err(e)) => {
                if e.redis_error().and_then(redis::RedisError::code) == Some("NOGROUP") {
                    // The stream or group is gone (a restart without persistence, a delete).
                    *group = Group::Lost;
                }
                if e.code() == ErrorCode::ConnectionClosed || e.code().family() == "connection" {
                    *conn = None;
                }
                Err(self.error(ErrorCode::StreamReadFailed, "reading the stream failed", e))
            }
            Err(_) => {
                *conn = None;
                Err(self.error(
                    ErrorCode::StreamReadFailed,
                    "a blocking read outlived its block time; its connection is dropped",
                    crate::error::Error::new(ErrorCode::OperationTimeout, "no reply in time"),
                ))
            }
        }
    }

    /// Moves due delayed messages (retries, `publish_in`) into the stream until the consumer
    /// stops: at once when more are due, else at the next due time or every `delayed_poll`.
    pub(crate) async fn delayed_loop(self: Arc<Self>) {
        let poll = self.shared.cfg.delayed_poll;
        let mut failures: u32 = 0;
        while !self.is_stopping() {
            let wait = match self.promote().await {
                Ok((moved, _)) if moved >= PROMOTE_BATCH => Duration::ZERO,
                Ok((_, next)) => next.map_or(poll, |n| n.min(poll)),
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::warn!(target: "redisx::streams", stream = %self.name, error = %format_args!("{e:#}"), "moving due delayed messages failed; retrying");
                    }
                    backoff(failures)
                }
            };
            if !wait.is_zero() && !self.pause(wait).await {
                break;
            }
        }
    }

    /// One run of the promote script: how many moved, and when the next is due.
    async fn promote(&self) -> Result<(u64, Option<Duration>)> {
        let mut inv = scripts::PROMOTE.script.prepare_invoke();
        inv.key(&self.keys.stream)
            .key(&self.keys.delayed)
            .key(&self.keys.dlq)
            .arg(PROMOTE_BATCH)
            .arg(self.shared.cfg.max_len)
            .arg(self.shared.cfg.dlq_max_len);
        let (moved, next, malformed): (u64, i64, u64) = self.shared.client()?.invoke(&inv).await?;
        if malformed > 0 {
            tracing::error!(target: "redisx::streams", stream = %self.name, malformed, "delayed messages that do not parse were moved to the DLQ");
            self.gauges_due.notify_one();
        }
        Ok((moved, u64::try_from(next).ok().map(Duration::from_millis)))
    }

    /// Refreshes the group's lag and the DLQ length gauges until the consumer stops: at the
    /// start, every [`GAUGES_EVERY`], and [`GAUGES_AFTER_DEAD_LETTER`] after a message went to
    /// the DLQ (dead letters in a burst share one refresh). Off the read path: a task of its
    /// own, two commands per refresh.
    pub(crate) async fn gauge_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = self.stopped() => return,
                () = self.refresh_gauges() => {}
            }
            let early = tokio::select! {
                () = self.stopped() => return,
                () = tokio::time::sleep(GAUGES_EVERY) => false,
                () = self.gauges_due.notified() => true,
            };
            if early && !self.pause(GAUGES_AFTER_DEAD_LETTER).await {
                return;
            }
        }
    }

    /// One refresh: `XINFO GROUPS` of the stream (the lag of each of its groups, this one's
    /// included) and `XLEN` of its DLQ (when the DLQ is on). A failure leaves the last values.
    async fn refresh_gauges(&self) {
        if let Err(e) = self.shared.groups(&self.name, &self.keys.stream).await {
            tracing::debug!(target: "redisx::streams", stream = %self.name, group = %self.opts.group, error = %format_args!("{e:#}"), "reading the group's lag failed");
        }
        if !self.shared.cfg.dlq {
            return;
        }
        if let Err(e) = self.shared.dlq_len(&self.name, &self.keys.dlq).await {
            tracing::debug!(target: "redisx::streams", stream = %self.name, error = %format_args!("{e:#}"), "reading the DLQ length failed");
        }
    }
}

/// How often a consumer refreshes its lag and DLQ length gauges.
const GAUGES_EVERY: Duration = Duration::from_secs(10);

/// How long after a dead letter the gauges are refreshed (the wait gathers a burst).
const GAUGES_AFTER_DEAD_LETTER: Duration = Duration::from_secs(1);

/// What a reader knows of its group.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    /// Not checked yet: created at the configured start id when missing.
    Unknown,
    Ready,
    /// Reads found it missing: created again from the start of the stream, so messages
    /// published since it disappeared are delivered, not skipped.
    Lost,
}

/// The most delayed messages one promote call moves.
const PROMOTE_BATCH: u64 = 100;

/// The entries of an `XREADGROUP` reply for one stream (RESP2 array or RESP3 map; nil when
/// the block ran out).
pub(crate) fn stream_entries(value: Value) -> Vec<(String, Fields)> {
    match value {
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => {
                    pair.pop().map(fields::entries).unwrap_or_default()
                }
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams
            .into_iter()
            .flat_map(|(_, entries)| fields::entries(entries))
            .collect(),
        _ => Vec::new(),
    }
}
