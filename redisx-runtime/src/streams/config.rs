//! Configuration of the streams plugin ([`StreamsConfig`]) and of one consumer
//! ([`ConsumerOptions`]); the only owner of the plugin's defaults and limits.

use std::time::Duration;

use crate::codec::CodecKind;
use crate::error::{Error, ErrorCode, Result};
use crate::key;

/// The retry backoff of failed messages: `initial`, multiplied by `multiplier` per attempt, at
/// most `max` (default 1 s doubling to 30 s).
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::streams::Backoff;
///
/// let b = Backoff::default();
/// assert_eq!(b.delay(1), Duration::from_secs(1));
/// assert_eq!(b.delay(3), Duration::from_secs(4));
/// assert_eq!(b.delay(10), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay before the first retry.
    pub initial: Duration,
    /// The factor between two delays.
    pub multiplier: f64,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before retry number `retry` (1 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exp);
        if secs.is_finite() && secs < self.max.as_secs_f64() {
            Duration::from_secs_f64(secs)
        } else {
            self.max
        }
    }
}

/// Configuration of the streams plugin (`rx.streams()`), set on the builder with
/// [`RedisXBuilder::streams`](crate::RedisXBuilder::streams).
///
/// ```
/// use redisx_runtime::streams::StreamsConfig;
///
/// let cfg = StreamsConfig::default().max_len(1_000_000).dlq_max_len(50_000);
/// assert_eq!(cfg.max_len_value(), 1_000_000);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct StreamsConfig {
    pub(crate) key_prefix: String,
    pub(crate) client: Option<String>,
    pub(crate) codec: CodecKind,
    pub(crate) max_len: u64,
    pub(crate) trim_every: Duration,
    pub(crate) dlq: bool,
    pub(crate) dlq_max_len: u64,
    pub(crate) backoff: Backoff,
    pub(crate) delayed_poll: Duration,
    pub(crate) max_key_len: usize,
}

impl Default for StreamsConfig {
    /// Keys under `stream:`; JSON payloads; an approximate cap of 100,000 entries per stream
    /// with a trim behind the oldest pending entry every 10 s; the DLQ on, capped at 10,000;
    /// retries 1 s doubling to 30 s; due delayed messages moved at least every 100 ms;
    /// stream names up to 512 bytes.
    fn default() -> Self {
        Self {
            key_prefix: "stream:".to_owned(),
            client: None,
            codec: CodecKind::Json,
            max_len: 100_000,
            trim_every: Duration::from_secs(10),
            dlq: true,
            dlq_max_len: 10_000,
            backoff: Backoff::default(),
            delayed_poll: Duration::from_millis(100),
            max_key_len: 512,
        }
    }
}

impl StreamsConfig {
    /// The prefix of the stream keys after the app prefix (default `stream:`).
    pub fn key_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.key_prefix);
        self
    }

    /// The client the plugin uses (default: the runtime's default client).
    pub fn client(mut self, name: &str) -> Self {
        self.client = Some(name.to_owned());
        self
    }

    /// How payloads are encoded (default [`CodecKind::Json`], readable by other languages;
    /// a consumer decodes either, by the message's `codec` field).
    pub fn codec(mut self, codec: CodecKind) -> Self {
        self.codec = codec;
        self
    }

    /// The approximate cap of every stream (`XADD .. MAXLEN ~`, default 100,000): the safety
    /// bound behind the periodic trim, which never drops an entry a group has not
    /// acknowledged.
    pub fn max_len(mut self, entries: u64) -> Self {
        self.max_len = entries;
        self
    }

    /// How often a publishing runtime trims each stream it published to behind the oldest
    /// pending entry of every group (`XTRIM MINID ~`, default 10 s).
    pub fn trim_every(mut self, every: Duration) -> Self {
        self.trim_every = every;
        self
    }

    /// Whether messages out of retries go to the dead-letter stream (default on). Off, the
    /// last failure is acknowledged and dropped, logged as an error and counted
    /// (`status = "dead_letter"`).
    pub fn dlq(mut self, on: bool) -> Self {
        self.dlq = on;
        self
    }

    /// The approximate cap of every dead-letter stream (default 10,000).
    pub fn dlq_max_len(mut self, entries: u64) -> Self {
        self.dlq_max_len = entries;
        self
    }

    /// The retry backoff (default 1 s doubling to 30 s).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The longest a due delayed message (a retry, `publish_in`) waits to be moved into its
    /// stream by a running consumer (default 100 ms).
    pub fn delayed_poll(mut self, every: Duration) -> Self {
        self.delayed_poll = every;
        self
    }

    /// See [`max_len`](Self::max_len).
    pub fn max_len_value(&self) -> u64 {
        self.max_len
    }

    /// See [`backoff`](Self::backoff).
    pub fn backoff_value(&self) -> Backoff {
        self.backoff
    }

    /// See [`dlq`](Self::dlq).
    pub fn dlq_value(&self) -> bool {
        self.dlq
    }

    /// Checks the settings.
    pub(crate) fn validate(&self) -> Result<()> {
        key::validate_prefix(&self.key_prefix)?;
        if self.max_len == 0 || self.dlq_max_len == 0 {
            return Err(invalid(
                "the stream caps (`max_len`, `dlq_max_len`) must be at least 1",
            ));
        }
        let b = self.backoff;
        if b.initial.is_zero()
            || b.max < b.initial
            || !(b.multiplier >= 1.0 && b.multiplier.is_finite())
        {
            return Err(invalid(
                "the stream backoff needs 0 < initial <= max and a finite multiplier >= 1",
            ));
        }
        if self.trim_every.is_zero() || self.delayed_poll.is_zero() {
            return Err(invalid(
                "`trim_every` and `delayed_poll` must be above zero",
            ));
        }
        Ok(())
    }
}

fn invalid(msg: &'static str) -> Error {
    Error::new(ErrorCode::ConfigInvalid, msg)
}

/// The options of one consumer: its group, its name, and how it reads and handles messages.
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::streams::ConsumerOptions;
///
/// let opts = ConsumerOptions::new("billing")
///     .concurrency(8)
///     .max_retries(5)
///     .batch(10)
///     .block(Duration::from_secs(5))
///     .claim_idle(Duration::from_secs(30));
/// assert_eq!(opts.group_value(), "billing");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ConsumerOptions {
    pub(crate) group: String,
    pub(crate) consumer: Option<String>,
    pub(crate) concurrency: usize,
    pub(crate) max_retries: u32,
    pub(crate) batch: usize,
    pub(crate) block: Duration,
    pub(crate) claim_idle: Duration,
    pub(crate) start_id: String,
    pub(crate) raw_name: bool,
}

impl ConsumerOptions {
    /// A consumer of `group`: one message at a time, 3 retries, reads of up to 10 blocking
    /// 5 s, messages of dead consumers reclaimed after 30 s idle, a new group reading new
    /// messages only (`$`).
    pub fn new(group: &str) -> Self {
        Self {
            group: group.to_owned(),
            consumer: None,
            concurrency: 1,
            max_retries: 3,
            batch: 10,
            block: Duration::from_secs(5),
            claim_idle: Duration::from_secs(30),
            start_id: "$".to_owned(),
            raw_name: false,
        }
    }

    /// The consumer's name in its group (default `{hostname}-{pid}`, and `{hostname}-{pid}-2`,
    /// `-3`, .. in the second, third, .. runtime built in the process, so that two runtimes
    /// never share one). Two consumers of one runtime may not share a name in one group; give
    /// those of two runtimes different names too, or they are one consumer to Redis.
    pub fn consumer(mut self, name: &str) -> Self {
        self.consumer = Some(name.to_owned());
        self
    }

    /// How many handlers run at once (default 1); a read never asks for more messages than
    /// there are free slots.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Retries after the first attempt (default 3: at most 4 attempts in all), then the DLQ.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The most messages one read asks for (default 10).
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }

    /// How long a read blocks waiting for messages (default 5 s).
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// How long a message stays pending on a consumer that stopped before another claims it
    /// (default 30 s; zero turns automatic reclaim off). A live consumer's messages are never
    /// claimed, however long their handlers run.
    pub fn claim_idle(mut self, idle: Duration) -> Self {
        self.claim_idle = idle;
        self
    }

    /// Where a group created by this consumer starts: `$` (default, new messages only) or
    /// `0` (the whole stream), or an id. A group that disappears while the consumer runs (a
    /// Redis restart without persistence, `XGROUP DESTROY`) is created again from `0`, so
    /// nothing published since is skipped.
    pub fn start_id(mut self, id: &str) -> Self {
        id.clone_into(&mut self.start_id);
        self
    }

    /// Uses the stream name verbatim as its key (no prefix, no hash tag), for streams other
    /// programs write; its DLQ and delayed set are `{name}:dlq` and `{name}:delayed`, which may
    /// then sit in other cluster slots (the retry and DLQ moves need one slot: use raw names
    /// on a single server, or give them a hash tag).
    pub fn raw_name(mut self, on: bool) -> Self {
        self.raw_name = on;
        self
    }

    /// See [`new`](Self::new).
    pub fn group_value(&self) -> &str {
        &self.group
    }

    /// Checks the options.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.group.is_empty() || self.group.contains(char::is_control) {
            return Err(invalid(
                "a consumer group name must be non-empty without control characters",
            ));
        }
        if self.concurrency == 0 || self.batch == 0 {
            return Err(invalid(
                "a consumer's `concurrency` and `batch` must be at least 1",
            ));
        }
        if self.block < Duration::from_millis(1) {
            return Err(invalid("a consumer's `block` must be at least 1 ms"));
        }
        Ok(())
    }
}

/// The default consumer name of a new runtime's streams: `{hostname}-{pid}` for the first
/// runtime of the process, `{hostname}-{pid}-{n}` for the `n`th.
pub(crate) fn default_consumer_name() -> String {
    // The runtimes built in this process, so that two of them never share a consumer name.
    static RUNTIMES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nth = RUNTIMES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    match nth {
        1 => format!("{host}-{}", std::process::id()),
        n => format!("{host}-{}-{n}", std::process::id()),
    }
}
