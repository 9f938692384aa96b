//! Reclaiming the messages of consumers that stopped: every half `claim_idle`, entries pending
//! longer than `claim_idle` are claimed with `XAUTOCLAIM` (a batch at a time, as handler slots
//! free up) and handled here, their attempt counting Redis's deliveries. Entries a stream's cap
//! removed while they were pending (`XAUTOCLAIM` reports their ids) are recorded in the DLQ as
//! lost, counted and logged. A consumer of the group with nothing pending and idle past
//! `claim_idle` is then removed (`XGROUP DELCONSUMER`, in a script that checks again that it
//! has nothing pending).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;

use super::engine::Engine;
use super::fields;
use crate::error::{ErrorCode, Result};

impl Engine {
    /// Reclaims until the consumer stops (nothing when `claim_idle` is zero).
    pub(crate) async fn reclaim_loop(self: Arc<Self>) {
        let idle = self.opts.claim_idle;
        if idle.is_zero() {
            return;
        }
        let every = (idle / 2).max(Duration::from_millis(50));
        loop {
            tokio::select! {
                () = self.stopped() => return,
                () = tokio::time::sleep(every) => {}
            }
            match self.claim().await {
                Ok(_) => {
                    if let Err(e) = self.remove_stale_consumers().await {
                        tracing::debug!(target: "redisx::streams", stream = %self.name, error = %format_args!("{e:#}"), "listing the group's consumers failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(target: "redisx::streams", stream = %self.name, group = %self.opts.group, error = %format_args!("{e:#}"), "reclaiming idle messages failed; retrying at the next round");
                }
            }
        }
    }

    /// Claims the entries idle past `claim_idle` (as many as there are free slots, waiting for
    /// the first) and starts handling them; returns how many were claimed.
    pub(crate) async fn claim(self: &Arc<Self>) -> Result<usize> {
        let mut claimed = 0;
        let mut cursor = "0-0".to_owned();
        loop {
            // Waits for a free slot: an idle reader holds every free one while it blocks in
            // `XREADGROUP`, so taking only the free slots of the moment never reclaimed anything.
            let Some(permits) = self.slots(self.opts.batch).await else {
                return Ok(claimed);
            };
            let reply: Value = self
                .shared
                .client()?
                .query(
                    redis::cmd("XAUTOCLAIM")
                        .arg(&self.keys.stream)
                        .arg(&self.opts.group)
                        .arg(&self.consumer)
                        .arg(crate::millis(self.opts.claim_idle))
                        .arg(&cursor)
                        .arg("COUNT")
                        .arg(permits.len()),
                )
                .await
                .map_err(|e| {
                    self.error(ErrorCode::StreamConsumerGroupError, "XAUTOCLAIM failed", e)
                })?;
            let Value::Array(mut parts) = reply else {
                return Ok(claimed);
            };
            let deleted = if parts.len() >= 3 { parts.pop() } else { None };
            let entries = parts.pop().map(fields::entries).unwrap_or_default();
            let next = parts
                .pop()
                .and_then(fields::text)
                .unwrap_or_else(|| "0-0".to_owned());
            if let Some(Value::Array(ids)) = deleted {
                for id in ids.into_iter().filter_map(fields::text) {
                    self.lost(&id).await;
                }
            }
            if !entries.is_empty() {
                let counts = self.delivery_counts(&entries).await;
                claimed += entries.len();
                tracing::info!(target: "redisx::streams", stream = %self.name, group = %self.opts.group, n = entries.len(), "reclaimed messages of a consumer that stopped");
                self.dispatch(entries, permits, &counts);
            }
            if next == "0-0" {
                return Ok(claimed);
            }
            cursor = next;
        }
    }

    /// How many times Redis delivered each of `entries` (`XPENDING` over their id range, for
    /// this consumer).
    async fn delivery_counts(&self, entries: &[(String, fields::Fields)]) -> HashMap<String, u32> {
        let (Some((first, _)), Some((last, _))) = (entries.first(), entries.last()) else {
            return HashMap::new();
        };
        let Ok(client) = self.shared.client() else {
            return HashMap::new();
        };
        let reply: Result<Vec<(String, String, u64, u32)>> = client
            .query(
                redis::cmd("XPENDING")
                    .arg(&self.keys.stream)
                    .arg(&self.opts.group)
                    .arg(first)
                    .arg(last)
                    .arg(entries.len())
                    .arg(&self.consumer),
            )
            .await;
        reply
            .map(|rows| rows.into_iter().map(|(id, _, _, n)| (id, n)).collect())
            .unwrap_or_default()
    }

    /// An entry trimmed away while pending: recorded in the DLQ as lost, acknowledged, counted.
    async fn lost(&self, id: &str) {
        self.shared
            .metrics
            .trimmed_pending
            .get_or_create(&super::stats::GroupLabels {
                stream: self.name.to_string(),
                group: self.opts.group.clone(),
            })
            .inc();
        tracing::error!(target: "redisx::streams", stream = %self.name, group = %self.opts.group, id, "a pending message was removed by the stream's cap before it was acknowledged; it is recorded in the DLQ as lost");
        // XAUTOCLAIM already dropped it from the pending list: only the record is written.
        let failed_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let r: Result<String> = match self.shared.client() {
            Ok(client) => {
                client
                    .query(
                        redis::cmd("XADD")
                            .arg(&self.keys.dlq)
                            .arg("MAXLEN")
                            .arg("~")
                            .arg(self.shared.cfg.dlq_max_len)
                            .arg("*")
                            .arg(fields::ERROR)
                            .arg("lost: removed by the stream's cap before it was acknowledged")
                            .arg(fields::ORIGINAL_ID)
                            .arg(id)
                            .arg(fields::ORIGINAL_STREAM)
                            .arg(&*self.name)
                            .arg(fields::FAILED_AT)
                            .arg(failed_at.to_string()),
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        match r {
            Ok(_) => self.gauges_due.notify_one(),
            Err(e) => {
                tracing::error!(target: "redisx::streams", stream = %self.name, id, error = %format_args!("{e:#}"), "recording a lost message in the DLQ failed");
            }
        }
    }

    /// Removes the group's consumers (other than this one) that have nothing pending and have
    /// been idle past `claim_idle`.
    async fn remove_stale_consumers(&self) -> Result<()> {
        let client = self.shared.client()?;
        let consumers: Vec<HashMap<String, Value>> = client
            .query(
                redis::cmd("XINFO")
                    .arg("CONSUMERS")
                    .arg(&self.keys.stream)
                    .arg(&self.opts.group),
            )
            .await?;
        let idle_ms = crate::millis(self.opts.claim_idle);
        for c in consumers {
            let name = c
                .get("name")
                .cloned()
                .and_then(fields::text)
                .unwrap_or_default();
            let pending = int(c.get("pending"));
            let idle = int(c.get("idle"));
            if name.is_empty() || name == self.consumer || pending != 0 || idle <= idle_ms {
                continue;
            }
            let mut inv = super::scripts::DELCONSUMER.script.prepare_invoke();
            inv.key(&self.keys.stream).arg(&self.opts.group).arg(&name);
            let removed: i64 = client.invoke(&inv).await?;
            if removed != 0 {
                continue;
            }
            tracing::info!(target: "redisx::streams", stream = %self.name, group = %self.opts.group, consumer = name, "removed a stale consumer with nothing pending");
        }
        Ok(())
    }
}

fn int(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Value::BulkString(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}
