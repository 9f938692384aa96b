//! Trimming streams behind their consumer groups.
//!
//! Every stream a runtime publishes to gets a background task (started by the first publish,
//! ended by the plugin's stop) that trims it every `trim_every` (default 10 s) with
//! `XTRIM .. MINID ~ <id>`, where `<id>` is the oldest entry some group still needs: for each
//! group the smaller of its oldest pending entry (delivered, not acknowledged) and the first
//! entry after its `last-delivered-id` (entries after it are not delivered yet), and the
//! smallest of those over the groups. A stream without groups is not trimmed this way: nobody
//! is known to read it. Every `XADD` also caps the stream at `MAXLEN ~ max_len`, the safety
//! bound for a group that stopped reading (that cap may drop entries a group still needs; the
//! consumers record such losses).
//!
//! The trim reads `XINFO GROUPS`, then the `XPENDING` summary of the groups with pending
//! entries (one pipeline), then trims: anything a group acknowledges or reads meanwhile only
//! moves its bound forward, so the trim never removes an entry a group still needs. `~` trims
//! whole radix-tree nodes only (the default `stream-node-max-entries` is 100), so up to a node
//! of entries before the bound stays.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use redis::Value;
use tokio::sync::watch;

use super::reply::{EntryId, failed, int, parse_pending};
use super::{Shared, Streams};
use crate::error::{ErrorCode, Result};
use crate::life::watched;

/// The trim tasks of one runtime: the stream keys that have one, and their stop signal.
pub(crate) struct Trims {
    keys: RwLock<HashSet<String>>,
    stop: watch::Sender<bool>,
}

impl Default for Trims {
    fn default() -> Self {
        Self {
            keys: RwLock::default(),
            stop: watch::Sender::new(false),
        }
    }
}

impl std::fmt::Debug for Trims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trims").finish_non_exhaustive()
    }
}

impl Trims {
    /// Ends every trim task (the plugin's stop); later publishes start none.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Starts the trim task of the stream `key` (named `name`) unless it has one.
    pub(crate) fn register(&self, shared: &Arc<Shared>, name: &str, key: &str) {
        if self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(key)
            || *self.stop.borrow()
        {
            return;
        }
        if !self
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned())
        {
            return;
        }
        let task = run(
            Arc::downgrade(shared),
            name.to_owned(),
            key.to_owned(),
            shared.cfg.trim_every,
            self.stop.subscribe(),
        );
        tokio::spawn(watched(shared.life.guard("a stream's trim task"), task));
    }
}

impl Streams {
    /// Trims `stream` once behind the oldest entry its consumer groups still need (what the
    /// background trim does every `trim_every`; see [`StreamsConfig::trim_every`]): pending
    /// entries and entries not delivered to some group yet are kept. Returns how many entries
    /// were removed; a stream without groups (or without a key) is left alone (0).
    ///
    /// [`StreamsConfig::trim_every`]: super::StreamsConfig::trim_every
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let removed = rx.streams().trim("orders").await?;
    /// println!("trimmed {removed} entries every group is done with");
    /// # Ok(()) }
    /// ```
    pub async fn trim(&self, stream: &str) -> Result<u64> {
        let keys = self.inner.stream_keys(stream, false)?;
        self.inner.trim_key(stream, &keys.stream).await
    }
}

impl Shared {
    /// Trims the stream `key` (named `name`) behind its groups; the entries removed.
    pub(crate) async fn trim_key(&self, name: &str, key: &str) -> Result<u64> {
        let fail = |e| {
            failed(
                e,
                ErrorCode::StreamReadFailed,
                "trimming the stream failed",
                name,
            )
        };
        let groups = self.groups(name, key).await?;
        if groups.is_empty() {
            return Ok(0);
        }
        let client = self.client().map_err(fail)?;
        let with_pending: Vec<&str> = groups
            .iter()
            .filter(|g| g.pending > 0)
            .map(|g| g.name.as_str())
            .collect();
        let oldest: Vec<Value> = if with_pending.is_empty() {
            Vec::new()
        } else {
            let mut pipe = redis::pipe();
            for g in &with_pending {
                pipe.cmd("XPENDING").arg(key).arg(*g);
            }
            client.query_pipeline(&pipe).await.map_err(fail)?
        };
        let mut oldest = with_pending.into_iter().zip(oldest).map(|(g, v)| {
            let min = parse_pending(v).min_id.as_deref().and_then(EntryId::parse);
            (g, min)
        });
        let mut bound: Option<EntryId> = None;
        for g in &groups {
            // Unreadable ids are not guessed at: no trim this time.
            let Some(delivered) = EntryId::parse(&g.last_delivered_id) else {
                return Ok(0);
            };
            let mut need = delivered.next();
            if g.pending > 0 {
                match oldest.find(|(name, _)| *name == g.name) {
                    Some((_, Some(min))) => need = need.min(min),
                    // Acknowledged meanwhile: nothing pending, the delivered bound holds.
                    Some((_, None)) => {}
                    None => return Ok(0),
                }
            }
            bound = Some(bound.map_or(need, |b| b.min(need)));
        }
        let Some(bound) = bound else { return Ok(0) };
        let removed: Value = client
            .query(
                redis::cmd("XTRIM")
                    .arg(key)
                    .arg("MINID")
                    .arg("~")
                    .arg(bound.to_string()),
            )
            .await
            .map_err(fail)?;
        Ok(int(&removed).unwrap_or(0))
    }
}

/// Trims the stream `key` every `every` until the plugin stops or the service is gone.
async fn run(
    shared: Weak<Shared>,
    name: String,
    key: String,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            () = tokio::time::sleep(every) => {}
        }
        let Some(s) = shared.upgrade() else { return };
        if !s.life.is_running() {
            return;
        }
        let trimmed = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            r = s.trim_key(&name, &key) => r,
        };
        match trimmed {
            Ok(n) => {
                if failing {
                    tracing::info!(target: "redisx::streams", stream = %name, "the stream's trim works again");
                }
                failing = false;
                if n > 0 {
                    tracing::debug!(target: "redisx::streams", stream = %name, removed = n, "trimmed the stream behind its groups");
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(target: "redisx::streams", stream = %name, error = %format_args!("{e:#}"), "the stream's trim failed; it retries every trim_every (the MAXLEN cap still bounds the stream)");
                }
                failing = true;
            }
        }
    }
}
