//! What `#[stream_consumer]` expands to (re-exported, unstable, as `redisx::__private`): a
//! [`ConsumerSpec`] registered at link time with `inventory` beside the function, naming its
//! stream, group and options and how to start it. [`RedisX::start_consumers`] starts every
//! registered consumer; [`Streams::start_registered`] starts one by its function's name.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{ConsumerHandle, ConsumerOptions, Message, Streams};
use crate::error::{Error, ErrorCode, Result};
use crate::runtime::RedisX;

/// The future a registered consumer's start returns.
pub type StartFuture<'a> = Pin<Box<dyn Future<Output = Result<ConsumerHandle>> + Send + 'a>>;

/// How a registered consumer starts: on a runtime's streams, with the spec's options.
pub type StartFn = for<'a> fn(&'a Streams, &'a ConsumerSpec) -> StartFuture<'a>;

/// A handler `#[stream_consumer]` can run: one whose error converts into a message for the DLQ.
#[diagnostic::on_unimplemented(
    message = "`#[stream_consumer]` cannot report `{Self}` errors",
    label = "this error type must implement `Display + Send + 'static`",
    note = "a failed message is retried, then sent to the DLQ with the error's text: implement `Display` for `{Self}` (and keep it `Send`; `Box<dyn Error + Send + Sync>` works)"
)]
pub trait ConsumerError: Display + Send + 'static {}

#[diagnostic::do_not_recommend]
impl<E: Display + Send + 'static> ConsumerError for E {}

/// A payload `#[stream_consumer]` can decode.
#[diagnostic::on_unimplemented(
    message = "`#[stream_consumer]` decodes messages into `{Self}`, which does not implement `DeserializeOwned`",
    label = "this payload type must implement `serde::Deserialize`",
    note = "messages are JSON (or bincode) in the stream's `data` field: derive `serde::Deserialize` for `{Self}`"
)]
pub trait ConsumerPayload: DeserializeOwned + Send + 'static {}

#[diagnostic::do_not_recommend]
impl<T: DeserializeOwned + Send + 'static> ConsumerPayload for T {}

/// The compile-time description of one `#[stream_consumer]` function; unset options (zero)
/// are [`ConsumerOptions::new`]'s.
#[derive(Debug)]
pub struct ConsumerSpec {
    /// The stream's name.
    pub stream: &'static str,
    /// The consumer group.
    pub group: &'static str,
    /// The module of the function.
    pub module: &'static str,
    /// The function's name.
    pub function: &'static str,
    consumer: Option<&'static str>,
    concurrency: usize,
    max_retries: Option<u32>,
    batch: usize,
    block_ms: u64,
    claim_idle_ms: Option<u64>,
    start_id: Option<&'static str>,
    start: StartFn,
}

impl ConsumerSpec {
    /// A consumer of `stream` in `group`, the function `module::function`, started by `start`.
    pub const fn new(
        stream: &'static str,
        group: &'static str,
        module: &'static str,
        function: &'static str,
        start: StartFn,
    ) -> Self {
        Self {
            stream,
            group,
            module,
            function,
            consumer: None,
            concurrency: 0,
            max_retries: None,
            batch: 0,
            block_ms: 0,
            claim_idle_ms: None,
            start_id: None,
            start,
        }
    }

    /// `consumer`.
    #[must_use]
    pub const fn consumer(mut self, name: &'static str) -> Self {
        self.consumer = Some(name);
        self
    }

    /// `concurrency`.
    #[must_use]
    pub const fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// `max_retries`.
    #[must_use]
    pub const fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// `batch`.
    #[must_use]
    pub const fn batch(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }

    /// `block`, in milliseconds.
    #[must_use]
    pub const fn block_ms(mut self, ms: u64) -> Self {
        self.block_ms = ms;
        self
    }

    /// `claim_idle`, in milliseconds (0 turns automatic reclaim off).
    #[must_use]
    pub const fn claim_idle_ms(mut self, ms: u64) -> Self {
        self.claim_idle_ms = Some(ms);
        self
    }

    /// `start_id`: where a group the consumer creates starts.
    #[must_use]
    pub const fn start_id(mut self, id: &'static str) -> Self {
        self.start_id = Some(id);
        self
    }

    /// The options the spec gives.
    pub fn options(&self) -> ConsumerOptions {
        let mut o = ConsumerOptions::new(self.group);
        if let Some(name) = self.consumer {
            o = o.consumer(name);
        }
        if self.concurrency > 0 {
            o = o.concurrency(self.concurrency);
        }
        if let Some(n) = self.max_retries {
            o = o.max_retries(n);
        }
        if self.batch > 0 {
            o = o.batch(self.batch);
        }
        if self.block_ms > 0 {
            o = o.block(Duration::from_millis(self.block_ms));
        }
        if let Some(ms) = self.claim_idle_ms {
            o = o.claim_idle(Duration::from_millis(ms));
        }
        if let Some(id) = self.start_id {
            o = o.start_id(id);
        }
        o
    }

    /// `module::function`.
    pub fn path(&self) -> String {
        format!("{}::{}", self.module, self.function)
    }
}

inventory::collect!(ConsumerSpec);

/// Starts the consumer of a handler taking `Message<T>` (what a spec's start calls).
pub fn start_message<'a, T, F, Fut, E>(
    streams: &'a Streams,
    spec: &'a ConsumerSpec,
    handler: F,
) -> StartFuture<'a>
where
    T: ConsumerPayload,
    F: Fn(Message<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: ConsumerError,
{
    Box::pin(
        streams
            .consumer(spec.stream, spec.options(), handler)
            .start(),
    )
}

/// Starts the consumer of a handler taking the payload `T` itself.
pub fn start_payload<'a, T, F, Fut, E>(
    streams: &'a Streams,
    spec: &'a ConsumerSpec,
    handler: F,
) -> StartFuture<'a>
where
    T: ConsumerPayload,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: ConsumerError,
{
    start_message(streams, spec, move |m: Message<T>| {
        handler(m.into_payload())
    })
}

/// Every `#[stream_consumer]` function linked into the program.
pub(crate) fn registered() -> impl Iterator<Item = &'static ConsumerSpec> {
    inventory::iter::<ConsumerSpec>.into_iter()
}

impl Streams {
    /// Starts the `#[stream_consumer]` function named `name` (its name, or its path
    /// `module::name` when several share a name).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let billing = rx.streams().start_registered("on_order").await?;
    /// billing.stop().await;
    /// # Ok(()) }
    /// ```
    pub async fn start_registered(&self, name: &str) -> Result<ConsumerHandle> {
        let found: Vec<&ConsumerSpec> = registered()
            .filter(|s| s.function == name || s.path() == name)
            .collect();
        match found.as_slice() {
            [spec] => (spec.start)(self, spec).await,
            [] => Err(Error::new(
                ErrorCode::ConfigInvalid,
                format!("no `#[stream_consumer]` function is named `{name}`"),
            )),
            many => Err(Error::new(
                ErrorCode::ConfigInvalid,
                format!(
                    "several `#[stream_consumer]` functions are named `{name}`: {}; use the path",
                    many.iter().map(|s| s.path()).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }
}

impl RedisX {
    /// Starts every `#[stream_consumer]` function linked into the program, in a stable order
    /// (by path); the first that fails stops the ones started and is returned. The runtime's
    /// shutdown stops them (draining in-flight handlers).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let consumers = rx.start_consumers().await?;
    /// println!("{} consumers running", consumers.len());
    /// # Ok(()) }
    /// ```
    pub async fn start_consumers(&self) -> Result<Vec<ConsumerHandle>> {
        let mut specs: Vec<&ConsumerSpec> = registered().collect();
        specs.sort_by_key(|s| s.path());
        let mut started = Vec::with_capacity(specs.len());
        for spec in specs {
            match (spec.start)(self.streams(), spec).await {
                Ok(h) => started.push(h),
                Err(e) => {
                    for h in &started {
                        h.stop().await;
                    }
                    return Err(e.with_context("consumer", spec.path()));
                }
            }
        }
        Ok(started)
    }
}
