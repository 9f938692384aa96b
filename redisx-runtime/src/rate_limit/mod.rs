//! Rate limiting: `rx.rate_limiter()`.
//!
//! A check runs one Lua script, one round trip, on the server's clock (`TIME`, never a client
//! clock): the algorithm of each limit ([`Algorithm`]: fixed window, sliding window log, sliding
//! window counter, token bucket, GCRA) decides on the key's state and consumes the cost only
//! when every limit of the call admits it, so several limits of one key (10 per second and
//! 1,000 per hour, of any algorithms) are all or nothing. A denial is an answer, not an error:
//! [`Decision::allowed`] is `false`, with `retry_after` and `reset`.
//!
//! State keys are `{app prefix}rl:{algorithm}:{limit}/{window}:{<key>}`, or
//! `{app prefix}rl:{policy}:{<key>}` for a named policy ([`RateLimitConfig::policy`]), so one
//! key under two limits never shares a state; the user key is the hash tag, so every key of a
//! call sits in one cluster slot. Each key expires on its own (about a window, or a bucket's
//! time to refill): idle keys never pile up. Limits over *different* keys (per IP and per
//! account) cannot be atomic on a cluster: check them one after the other.
//!
//! A denied call is remembered in process until its `retry_after` and answered without a round
//! trip ([`RateLimitConfig::local_deny`], on by default): nothing can be admitted before then
//! whatever other instances do.
//!
//! Redis down fails closed by default (the connection or operation error, with its own code);
//! [`ErrorPolicy::FailOpen`] admits instead, with the whole quota left.
//!
//! ```no_run
//! use std::time::Duration;
//! use redisx_runtime::rate_limit::Limit;
//!
//! # #[allow(dead_code)]
//! # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
//! let login = Limit::sliding_window(5, Duration::from_secs(60));
//! let d = rx.rate_limiter().check("login:10.0.0.1", &login).await?;
//! if !d.allowed {
//!     println!("too many attempts; retry in {} s", d.retry_after_secs());
//! }
//! # Ok(()) }
//! ```

mod api;
pub(crate) mod call_site;
mod config;
mod decision;
mod local;
pub(crate) mod scripts;
mod stats;

use std::sync::Arc;

pub use config::{Algorithm, ErrorPolicy, Limit, RateLimitConfig};
pub use decision::Decision;

use crate::cache::stats::RateLimitedLog;
use crate::client::Client;
use crate::error::{Error, ErrorCode, Result};
use crate::key::KeyBuilder;
use crate::plugin::{Plugin, PluginContext, PluginFuture};
use local::LocalDeny;
use stats::RateLimitMetrics;

tokio::task_local! {
    /// The (limit, key) pairs the HTTP layers around the request this task serves already
    /// checked, as `{limit spec or "policy:{name}"}\n{key}`: a layer or `#[rate_limit]`
    /// underneath does not charge the same pair again.
    pub(crate) static CHECKED: Arc<Vec<String>>;
}

/// The marks checked so far for this task's request, and `mark`.
#[cfg_attr(
    not(feature = "axum"),
    allow(dead_code, reason = "set by the HTTP layer")
)]
pub(crate) fn marks_with(mark: String) -> Arc<Vec<String>> {
    crate::call_site::marks_with(&CHECKED, mark)
}

/// Whether the request this task serves was already checked for `mark`.
pub(crate) fn already_checked(mark: &str) -> bool {
    crate::call_site::has_mark(&CHECKED, mark)
}

/// The mark of a check of `key` under one limit, or under a policy.
pub(crate) fn mark(limit: Option<&Limit>, policy: Option<&str>, key: &str) -> String {
    let mut s = match (policy, limit) {
        (Some(p), _) => format!("policy:{p}"),
        (None, Some(l)) => l.spec(),
        (None, None) => String::new(),
    };
    s.push('\n');
    s.push_str(key);
    s
}

/// The rate limiter of a runtime: `rx.rate_limiter()`. Cheap to clone.
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// let limiter = rx.rate_limiter().clone(); // into a task of its own
/// tokio::spawn(async move {
///     let _ = limiter.check_default("ip:10.0.0.1").await;
/// });
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Shared>,
}

/// What the limiter's calls share.
pub(crate) struct Shared {
    cfg: RateLimitConfig,
    keys: KeyBuilder,
    /// `None` when the runtime has no Redis client: every call fails (closed or open).
    client: Option<Client>,
    metrics: RateLimitMetrics,
    record_keys: bool,
    local: LocalDeny,
    /// The fail-open warnings: one per error code every 5 s, with the count held back.
    warnings: RateLimitedLog<ErrorCode>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("config", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// The limiter with `cfg` (checked), on its configured client or the default one.
    pub(crate) fn new(cfg: RateLimitConfig, ctx: &PluginContext) -> Result<Self> {
        cfg.validate()?;
        let client = ctx.plugin_client("rate limiter's", cfg.client.as_deref())?;
        Ok(Self {
            inner: Arc::new(Shared {
                keys: ctx.keys(&cfg.key_prefix),
                local: LocalDeny::new(cfg.local_deny, cfg.local_deny_capacity),
                cfg,
                client,
                metrics: RateLimitMetrics::register(ctx.registry()),
                record_keys: ctx.record_keys(),
                warnings: RateLimitedLog::new(std::time::Duration::from_secs(5), usize::MAX),
            }),
        })
    }

    /// The configuration the limiter runs with.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) {
    /// println!("default limit: {}", rx.rate_limiter().config().default_limit_value());
    /// # }
    /// ```
    pub fn config(&self) -> &RateLimitConfig {
        &self.inner.cfg
    }
}

impl Shared {
    /// The client, or the error of a runtime without one.
    fn client(&self) -> Result<&Client> {
        self.client.as_ref().ok_or_else(|| {
            Error::new(
                ErrorCode::ConfigUnknownClient,
                "the rate limiter needs a Redis client; add one with `.client(name, config)`",
            )
        })
    }
}

/// The rate-limit plugin: nothing to start or stop (its state lives in Redis and expires by
/// itself; the local deny cache is memory only).
impl Plugin for RateLimiter {
    fn name(&self) -> &'static str {
        "rate_limit"
    }

    fn start<'a>(&'a self, _ctx: &'a PluginContext) -> PluginFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn stop(&self, _deadline: tokio::time::Instant) -> PluginFuture<'_, ()> {
        Box::pin(async {})
    }
}
