//! Redis Streams: `rx.streams()`, a producer and consumer groups with at-least-once delivery.
//!
//! A stream `name` is the key `{app prefix}stream:{<name>}`, with its dead-letter stream
//! `..:dlq` and its delayed set `..:delayed` under the same hash tag (one cluster slot), so one
//! script moves a message between them. Messages are typed (`T: Serialize`), JSON by default,
//! in a documented field layout ([`fields`](self#field-layout)) that other languages can
//! write and read.
//!
//! Consumers read with `XREADGROUP` on a connection of their own, never asking for more
//! messages than they have free handler slots. A handler's `Ok` acknowledges its message; an
//! `Err` acknowledges it and schedules the next attempt in the delayed set in one script (the
//! backoff holds no slot, and no other consumer can take the message early); after
//! `max_retries` retries the message goes to the dead-letter stream with its error. Messages
//! left pending by a consumer that stopped are claimed by the others after `claim_idle`; a live
//! consumer keeps its in-flight messages however long their handlers run. Delivery is
//! **at least once**: a handler may see a message again after a crash, so effects that must
//! happen once go through an idempotent sink (the idempotency plugin, or a script that records
//! the message id with the effect).
//!
//! # Field layout
//! | field | value |
//! |---|---|
//! | `data` | the payload: JSON text (default), or bincode bytes |
//! | `codec` | absent or `json` for JSON; `bincode` |
//! | `attempt` | which attempt this delivery is, from 1 (absent: 1) |
//! | `traceparent`, `tracestate` | the W3C trace context of the publishing span (feature `opentelemetry`) |
//!
//! A dead-letter entry carries the same fields (`attempt`: the attempts made) and `error`,
//! `original_id`, `original_stream`, `failed_at` (ms since the epoch).

mod acker;
pub(crate) mod call_site;
mod config;
mod consumer;
mod dlq;
mod durable;
mod engine;
pub(crate) mod fields;
pub(crate) mod message;
mod ops;
mod producer;
mod read;
mod reclaim;
pub(crate) mod reply;
pub(crate) mod scripts;
mod stats;
mod trace;
mod trim;

use std::sync::Arc;

pub use config::{Backoff, ConsumerOptions, StreamsConfig};
pub use consumer::{Consumer, ConsumerHandle, DEFAULT_DRAIN};
pub use dlq::DeadLetter;
pub use durable::{Durable, Published};
pub use fields::Fields;
pub use message::Message;
pub use ops::{GroupInfo, PendingSummary, StreamInfo};
pub use producer::PublishOptions;

use crate::client::Client;
use crate::error::{Error, ErrorCode, Result};
use crate::key::KeyBuilder;
use crate::life::Life;
use crate::plugin::{Plugin, PluginContext, PluginFuture};
use stats::StreamMetrics;

/// The Redis keys of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamKeys {
    /// The stream.
    pub stream: String,
    /// Its dead-letter stream.
    pub dlq: String,
    /// Its delayed set (retries and delayed publishes, scored by due time).
    pub delayed: String,
}

/// The streams service of a runtime: `rx.streams()`. Cheap to clone.
#[derive(Clone)]
pub struct Streams {
    pub(crate) inner: Arc<Shared>,
}

/// What the service, its consumers and background tasks share.
pub(crate) struct Shared {
    pub(crate) cfg: StreamsConfig,
    pub(crate) keys: KeyBuilder,
    /// `None` when the runtime has no Redis client: every call fails.
    pub(crate) client: Option<Client>,
    pub(crate) metrics: StreamMetrics,
    pub(crate) life: Arc<Life>,
    /// The trim tasks of the streams this runtime published to.
    pub(crate) trims: trim::Trims,
    /// Idle dedicated connections of durable publishes (`WAIT` blocks its connection).
    pub(crate) wait_pool: crate::client::WaitPool,
    /// The consumers running in this process.
    pub(crate) consumers: consumer::Registry,
    /// The name of this runtime's consumers when their options give none.
    pub(crate) default_consumer: String,
    /// The runtime this service belongs to (set once it is built): handlers run in its
    /// scope. Weak: the runtime owns this service.
    pub(crate) runtime: std::sync::OnceLock<std::sync::Weak<crate::runtime::Inner>>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("config", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl Streams {
    /// The service with `cfg` (checked), on its configured client or the default one.
    pub(crate) fn new(cfg: StreamsConfig, ctx: &PluginContext) -> Result<Self> {
        cfg.validate()?;
        let client = ctx.plugin_client("streams plugin's", cfg.client.as_deref())?;
        Ok(Self {
            inner: Arc::new(Shared {
                keys: ctx.keys(&cfg.key_prefix),
                cfg,
                client,
                metrics: StreamMetrics::register(ctx.registry()),
                life: ctx.life.clone(),
                trims: trim::Trims::default(),
                wait_pool: crate::client::WaitPool::default(),
                consumers: consumer::Registry::default(),
                default_consumer: config::default_consumer_name(),
                runtime: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Binds the service to the runtime that owns it, once built: handlers run in its scope.
    pub(crate) fn bind(&self, runtime: &Arc<crate::runtime::Inner>) {
        let _ = self.inner.runtime.set(Arc::downgrade(runtime));
    }

    /// The configuration the plugin runs with.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) {
    /// println!("streams capped at {}", rx.streams().config().max_len_value());
    /// # }
    /// ```
    pub fn config(&self) -> &StreamsConfig {
        &self.inner.cfg
    }

    /// The keys of the stream `name`: `{app prefix}stream:{<name>}` and its `:dlq` and
    /// `:delayed`; with `raw`, `name` itself and `name:dlq`, `name:delayed`.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// // With `.key_prefix("myapp:")` on the builder:
    /// let k = rx.streams().keys("orders", false)?;
    /// assert_eq!(k.stream, "myapp:stream:{orders}");
    /// assert_eq!(k.dlq, "myapp:stream:{orders}:dlq");
    /// # Ok(()) }
    /// ```
    pub fn keys(&self, name: &str, raw: bool) -> Result<StreamKeys> {
        self.inner.stream_keys(name, raw)
    }
}

impl Shared {
    /// The runtime this service belongs to, while it is alive.
    pub(crate) fn owner(&self) -> Option<crate::RedisX> {
        let inner = self.runtime.get()?.upgrade()?;
        Some(crate::RedisX { inner })
    }

    /// The client, or the error of a runtime without one.
    pub(crate) fn client(&self) -> Result<&Client> {
        self.client.as_ref().ok_or_else(|| {
            Error::new(
                ErrorCode::ConfigUnknownClient,
                "streams need a Redis client; add one with `.client(name, config)`",
            )
        })
    }

    /// Checks `name` and builds its keys.
    pub(crate) fn stream_keys(&self, name: &str, raw: bool) -> Result<StreamKeys> {
        crate::key::check(name, self.cfg.max_key_len, ErrorCode::StreamNameInvalid)
            .map_err(|e| e.with_context("stream", name.escape_debug().to_string()))?;
        let stream = if raw {
            name.to_owned()
        } else {
            if name.contains(['{', '}']) {
                return Err(Error::new(
                    ErrorCode::StreamNameInvalid,
                    "a stream name must not hold `{` or `}` (it is the hash tag of its keys); use `raw_name` for an existing stream",
                )
                .with_context("stream", name.to_owned()));
            }
            let mut tagged = String::with_capacity(name.len() + 2);
            for part in ["{", name, "}"] {
                tagged.push_str(part);
            }
            self.keys.full(&tagged)
        };
        Ok(StreamKeys {
            dlq: format!("{stream}:dlq"),
            delayed: format!("{stream}:delayed"),
            stream,
        })
    }
}

/// The streams plugin: its start does nothing (consumers start when asked); its stop stops
/// every running consumer, letting in-flight handlers finish until the deadline and leaving
/// the rest pending for another consumer.
impl Plugin for Streams {
    fn name(&self) -> &'static str {
        "streams"
    }

    fn dependencies(&self) -> &'static [&'static str] {
        &["locks", "idempotency"]
    }

    fn start<'a>(&'a self, _ctx: &'a PluginContext) -> PluginFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn stop(&self, deadline: tokio::time::Instant) -> PluginFuture<'_, ()> {
        self.inner.stop_producer();
        Box::pin(self.inner.stop_consumers(deadline))
    }
}
