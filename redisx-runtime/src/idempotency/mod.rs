//! Idempotency: `rx.idempotency()`, exactly-once execution per key with the outcome replayed
//! to duplicates.
//!
//! One record per key, `{app prefix}idem:{key}`: a hash written atomically with its ttl by one
//! of three scripts. The check-and-lock script (one round trip) claims an absent key as
//! `processing` under a lease (the lock ttl) and the call runs; a key that `completed` with the
//! same fingerprint is replayed; another fingerprint is `IDEMPOTENCY_FINGERPRINT_MISMATCH`; a
//! `processing` key whose lease ran out (its owner died) is taken over by exactly one caller;
//! one still leased makes the caller wait. The owner renews its lease every third of the lock
//! ttl while the body runs, so a body slower than the lock ttl is never run twice. The finish
//! script stores the outcome (for the record ttl, default 24 h) only while the caller still
//! owns the claim, and wakes the waiting duplicates of every instance through pub/sub; a
//! re-read every `recheck` (default 1 s) covers a lost message. Waiting is bounded by `wait`
//! (default 60 s), then `IDEMPOTENCY_IN_PROGRESS`.
//!
//! An `Err` marks the key `failed` for the lock ttl (duplicates get
//! `IDEMPOTENCY_PREVIOUS_FAILED`, then a retry runs), unless errors are recorded
//! ([`Idempotency::run_recording_errors`], `#[idempotent(record_errors = true)]`): then it is
//! replayed like a value. A call cancelled mid-run (its future dropped) marks the key failed
//! (`cancelled`) at once, since a side effect may have happened; a process that dies instead
//! leaves its claim until the lease runs out, then one duplicate takes over.
//!
//! Values are stored as JSON. A stored value that no longer decodes (its type changed in a
//! deploy) is `IDEMPOTENCY_RECORD_INVALID`, never a second execution.
//!
//! Redis down fails closed by default; [`ErrorPolicy::FailOpen`] runs the body unprotected.
//!
//! ```no_run
//! use redisx_runtime::idempotency::{Fingerprint, IdempotencyOptions};
//!
//! # #[allow(dead_code)]
//! # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
//! let mut fp = Fingerprint::new();
//! fp.arg("amount", &4200);
//! let receipt: u64 = rx
//!     .idempotency()
//!     .run("payment:abc", &fp.finish()?, &IdempotencyOptions::new(), async {
//!         Ok::<_, redisx_runtime::Error>(7) // the side effect, once
//!     })
//!     .await?;
//! # let _ = receipt;
//! # Ok(()) }
//! ```

mod api;
pub(crate) mod call_site;
mod claim;
mod config;
mod fingerprint;
mod record;
mod run;
pub(crate) mod scripts;
mod stats;
mod wait;

use std::sync::Arc;

pub use api::{Check, Replay};
pub use claim::Claim;
pub use config::{IdempotencyConfig, IdempotencyOptions};
pub use fingerprint::{Fingerprint, canonical_json, canonicalize_json_body, http_fingerprint};
pub use record::{Record, Status};
pub use stats::IdempotencyStats;

pub use crate::rate_limit::ErrorPolicy;

use crate::cache::stats::RateLimitedLog;
use crate::client::Client;
use crate::error::{Error, ErrorCode, Result};
use crate::key::KeyBuilder;
use crate::life::Life;
use crate::plugin::{Plugin, PluginContext, PluginFuture};
use stats::IdempotencyMetrics;
use wait::Waits;

/// The completion channel's name after the plugin's key prefix: `{app prefix}idem:@done`.
pub const DONE_CHANNEL: &str = "@done";

tokio::task_local! {
    /// The full record keys claimed by the calls around the one this task runs (an HTTP
    /// layer, an outer attribute): a call underneath on the same key runs under that claim
    /// instead of waiting for it.
    pub(crate) static CLAIMED: Arc<Vec<String>>;
}

/// The keys claimed around this task, and `full`.
pub(crate) fn claimed_with(full: String) -> Arc<Vec<String>> {
    crate::call_site::marks_with(&CLAIMED, full)
}

/// Whether a call around this task holds the claim of `full`.
pub(crate) fn already_claimed(full: &str) -> bool {
    crate::call_site::has_mark(&CLAIMED, full)
}

/// The idempotency service of a runtime: `rx.idempotency()`. Cheap to clone.
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) {
/// let idem = rx.idempotency().clone(); // into a task of its own
/// tokio::spawn(async move {
///     let _ = idem.get("payment:abc").await;
/// });
/// # }
/// ```
#[derive(Clone)]
pub struct Idempotency {
    pub(crate) inner: Arc<Shared>,
}

/// What the service, its claims and its listener share.
pub(crate) struct Shared {
    cfg: IdempotencyConfig,
    keys: KeyBuilder,
    /// `None` when the runtime has no Redis client: every call fails (closed or open).
    client: Option<Client>,
    metrics: IdempotencyMetrics,
    record_keys: bool,
    life: Arc<Life>,
    waits: Waits,
    /// `{app prefix}{prefix}@done`.
    channel: String,
    /// The fail-open warnings: one per error code every 5 s, with the count held back.
    warnings: RateLimitedLog<ErrorCode>,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency")
            .field("config", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl Idempotency {
    /// The service with `cfg` (checked), on its configured client or the default one.
    pub(crate) fn new(cfg: IdempotencyConfig, ctx: &PluginContext) -> Result<Self> {
        cfg.validate()?;
        let client = ctx.plugin_client("idempotency plugin's", cfg.client.as_deref())?;
        let keys = ctx.keys(&cfg.key_prefix);
        Ok(Self {
            inner: Arc::new(Shared {
                channel: keys.full(DONE_CHANNEL),
                keys,
                cfg,
                client,
                metrics: IdempotencyMetrics::register(ctx.registry()),
                record_keys: ctx.record_keys(),
                life: ctx.life.clone(),
                waits: Waits::default(),
                warnings: RateLimitedLog::new(std::time::Duration::from_secs(5), usize::MAX),
            }),
        })
    }

    /// The configuration the plugin runs with.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) {
    /// println!("records kept {:?}", rx.idempotency().config().ttl_value());
    /// # }
    /// ```
    pub fn config(&self) -> &IdempotencyConfig {
        &self.inner.cfg
    }
}

impl Shared {
    /// The client, or the error of a runtime without one.
    fn client(&self) -> Result<&Client> {
        self.client.as_ref().ok_or_else(|| {
            Error::new(
                ErrorCode::ConfigUnknownClient,
                "idempotency needs a Redis client; add one with `.client(name, config)`",
            )
        })
    }

    /// A full key as logs may show it: itself with `record_keys`, else hidden.
    fn shown<'a>(&self, full: &'a str) -> &'a str {
        if self.record_keys {
            full
        } else {
            "(hidden; see record_keys)"
        }
    }
}

/// The idempotency plugin: its start does nothing (the completion listener starts with the
/// first wait); its stop ends the listener. Claims still running are marked failed by their
/// own drop when their futures are dropped.
impl Plugin for Idempotency {
    fn name(&self) -> &'static str {
        "idempotency"
    }

    fn start<'a>(&'a self, _ctx: &'a PluginContext) -> PluginFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn stop(&self, _deadline: tokio::time::Instant) -> PluginFuture<'_, ()> {
        self.inner.waits.stop();
        Box::pin(async {})
    }
}
