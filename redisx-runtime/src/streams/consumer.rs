//! Typed consumers: [`Streams::consumer`] builds one over a handler, [`Consumer::start`] runs
//! it, and [`ConsumerHandle`] stops it (draining in-flight handlers).

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::{Notify, Semaphore};

use super::engine::{Delivery, Engine, OrderingKey, Outcome, Run};
use super::message::{self, Message};
use super::{ConsumerOptions, Shared, Streams};
use crate::error::{Error, ErrorCode, Result};
use crate::life::watched;

/// How long [`ConsumerHandle::stop`] lets in-flight handlers finish (the runtime's shutdown
/// uses its own `shutdown_timeout`).
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(10);

/// The running consumers of one runtime, by (stream key, group, consumer name).
pub(crate) type Registry = Mutex<HashMap<(String, String, String), Arc<Engine>>>;

/// A consumer not started yet; see [`Streams::consumer`].
#[must_use = "a consumer does nothing until started"]
pub struct Consumer<T> {
    shared: Arc<Shared>,
    stream: String,
    opts: ConsumerOptions,
    run: Run,
    ordering: Option<OrderingKey>,
    _payload: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("stream", &self.stream)
            .field("options", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Streams {
    /// A consumer of `stream` in the group of `opts`, running `handler` on every message:
    /// `Ok` acknowledges it; `Err` retries it after the backoff (through the delayed set,
    /// holding no slot), and after `max_retries` retries sends it to the DLQ with the error's
    /// text. A message that does not decode as `T` goes to the DLQ at once. Delivery is at
    /// least once: a handler may see a message again after a crash.
    ///
    /// ```no_run
    /// use redisx_runtime::streams::{ConsumerOptions, Message};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Order { id: u64 }
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let handle = rx
    ///     .streams()
    ///     .consumer("orders", ConsumerOptions::new("billing").concurrency(8), |msg: Message<Order>| async move {
    ///         println!("billing order {}", msg.payload().id);
    ///         Ok::<_, redisx_runtime::Error>(())
    ///     })
    ///     .start()
    ///     .await?;
    /// // ... on shutdown (or let `rx.shutdown()` do it):
    /// handle.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn consumer<T, F, Fut, E>(
        &self,
        stream: &str,
        opts: ConsumerOptions,
        handler: F,
    ) -> Consumer<T>
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Message<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let name: Arc<str> = Arc::from(stream);
        let run: Run = Arc::new(move |d: Delivery| {
            let decoded = message::decode::<T>(&d.fields);
            let msg = decoded.map(|payload| Message {
                id: d.id,
                stream: name.clone(),
                attempt: d.attempt,
                payload,
                fields: d.fields,
                settled: d.settled,
                settle: d.settle,
            });
            match msg {
                Ok(msg) => {
                    let fut = handler(msg);
                    Box::pin(async move {
                        match fut.await {
                            Ok(()) => Outcome::Ok,
                            Err(e) => Outcome::Err(e.to_string()),
                        }
                    })
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    Box::pin(async move { Outcome::Undecodable(why) })
                }
            }
        });
        Consumer {
            shared: self.inner.clone(),
            stream: stream.to_owned(),
            opts,
            run,
            ordering: None,
            _payload: PhantomData,
        }
    }
}

impl<T: DeserializeOwned + 'static> Consumer<T> {
    /// Handles messages with the same key one after another (in delivery order), and messages
    /// with different keys in parallel, up to the concurrency. A message that does not decode
    /// has no key.
    ///
    /// ```no_run
    /// use redisx_runtime::streams::{ConsumerOptions, Message};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Event { account: String }
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let handle = rx
    ///     .streams()
    ///     .consumer("ledger", ConsumerOptions::new("posting").concurrency(16), |_m: Message<Event>| async move {
    ///         Ok::<_, redisx_runtime::Error>(())
    ///     })
    ///     .ordering_key(|e: &Event| e.account.clone())
    ///     .start()
    ///     .await?;
    /// # let _ = handle;
    /// # Ok(()) }
    /// ```
    pub fn ordering_key(mut self, key: impl Fn(&T) -> String + Send + Sync + 'static) -> Self {
        self.ordering = Some(Arc::new(move |entry: &super::Fields| {
            message::decode::<T>(entry).ok().map(|t| key(&t))
        }));
        self
    }

    /// Starts the consumer: creates its group if missing (`XGROUP CREATE .. MKSTREAM`), then
    /// reads, moves due delayed messages, and reclaims the messages of stopped consumers, in
    /// background tasks, until stopped. Redis being down at the start is not an error: the
    /// consumer backs off and starts reading once it can. A consumer of the same stream,
    /// group and name already running in this process is `STREAM_CONSUMER_GROUP_ERROR`.
    pub async fn start(self) -> Result<ConsumerHandle> {
        self.opts.validate()?;
        let keys = self.shared.stream_keys(&self.stream, self.opts.raw_name)?;
        let consumer = self
            .opts
            .consumer
            .clone()
            .unwrap_or_else(|| self.shared.default_consumer.clone());
        let id = (
            keys.stream.clone(),
            self.opts.group.clone(),
            consumer.clone(),
        );
        let acker = super::acker::Acker::start(
            self.shared.client()?.clone(),
            keys.stream.clone(),
            self.opts.group.clone(),
        );
        let metrics = self.shared.metrics.group(&self.stream, &self.opts.group);
        let engine = Arc::new(Engine {
            shared: self.shared.clone(),
            name: Arc::from(self.stream.as_str()),
            keys,
            slots: Arc::new(Semaphore::new(self.opts.concurrency)),
            opts: self.opts,
            consumer,
            run: self.run,
            ordering: self.ordering,
            stopping: AtomicBool::new(false),
            stop: Notify::new(),
            running: AtomicUsize::new(0),
            idle: Notify::new(),
            acker,
            metrics,
            order_chain: Mutex::default(),
            order_gen: std::sync::atomic::AtomicU64::new(0),
            aborting: AtomicBool::new(false),
            abort: Notify::new(),
            gauges_due: Notify::new(),
        });
        {
            let mut running = self.shared.registry();
            if running.contains_key(&id) {
                return Err(Error::new(
                    ErrorCode::StreamConsumerGroupError,
                    "a consumer with this name already runs for this stream and group in this process; give it another name",
                )
                .with_context("stream", self.stream.clone())
                .with_context("group", id.1.clone())
                .with_context("consumer", id.2.clone()));
            }
            running.insert(id.clone(), engine.clone());
        }
        if let Err(e) = engine.ensure_group(&engine.opts.start_id).await {
            if !super::engine::is_unreachable(&e) {
                self.shared.registry().remove(&id);
                return Err(e);
            }
            tracing::warn!(target: "redisx::streams", stream = %engine.name, error = %format_args!("{e:#}"), "Redis is not reachable; the consumer starts reading once it is");
        }
        let life = &self.shared.life;
        tokio::spawn(watched(
            life.guard("a stream consumer's reader"),
            engine.clone().read_loop(),
        ));
        tokio::spawn(watched(
            life.guard("a stream consumer's delayed mover"),
            engine.clone().delayed_loop(),
        ));
        tokio::spawn(watched(
            life.guard("a stream consumer's reclaimer"),
            engine.clone().reclaim_loop(),
        ));
        tokio::spawn(watched(
            life.guard("a stream consumer's gauge refresh"),
            engine.clone().gauge_loop(),
        ));
        Ok(ConsumerHandle { engine, id })
    }
}

/// A running consumer. Dropping the handle leaves it running (the runtime's shutdown stops it).
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn demo(handle: redisx_runtime::streams::ConsumerHandle) {
/// println!("{} handlers running", handle.in_flight());
/// handle.stop().await; // in-flight handlers finish (up to 10 s); the rest stays pending
/// # }
/// ```
#[derive(Clone)]
pub struct ConsumerHandle {
    engine: Arc<Engine>,
    id: (String, String, String),
}

impl std::fmt::Debug for ConsumerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerHandle")
            .field("stream", &self.engine.name)
            .field("group", &self.id.1)
            .field("consumer", &self.id.2)
            .finish_non_exhaustive()
    }
}

impl ConsumerHandle {
    /// The consumer's name in its group.
    pub fn consumer_name(&self) -> &str {
        &self.id.2
    }

    /// Whether it still runs (not stopped).
    pub fn is_running(&self) -> bool {
        !self.engine.is_stopping()
    }

    /// Handlers running now.
    pub fn in_flight(&self) -> usize {
        self.engine
            .running
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Claims now the messages idle past `claim_idle` on stopped consumers (what the
    /// automatic reclaim does every half `claim_idle`) and starts handling them, a batch at a
    /// time as handler slots free up (it waits for a slot, up to the read's block time while
    /// the consumer idles); returns how many were claimed.
    pub async fn claim(&self) -> Result<usize> {
        self.engine.claim().await
    }

    /// Stops reading, lets in-flight handlers finish for up to 10 s, and leaves the rest
    /// pending for another consumer. Stopping twice is harmless.
    pub async fn stop(&self) {
        self.stop_within(DEFAULT_DRAIN).await;
    }

    /// [`stop`](Self::stop) with another drain time.
    pub async fn stop_within(&self, drain: Duration) {
        self.engine.drain(tokio::time::Instant::now() + drain).await;
        self.engine.shared.registry().remove(&self.id);
    }
}

impl Shared {
    pub(crate) fn registry(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String, String), Arc<Engine>>> {
        self.consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops every running consumer, draining them together until `deadline`.
    pub(crate) async fn stop_consumers(&self, deadline: tokio::time::Instant) {
        let engines: Vec<Arc<Engine>> = self.registry().drain().map(|(_, e)| e).collect();
        futures_util::future::join_all(engines.iter().map(|e| e.drain(deadline))).await;
    }
}
