//! A delivered message ([`Message`]), and the encoding of payloads into entry fields.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::fields::{self, Fields};
use crate::codec::{Bincode, Codec, CodecKind, Json};
use crate::error::{Error, ErrorCode, Result};

/// The fields of a new entry holding `payload`: `data` (encoded with `codec`), `codec` when not
/// JSON, and the trace context of the current span.
pub(crate) fn encode<T: Serialize + ?Sized>(
    stream: &str,
    codec: CodecKind,
    payload: &T,
) -> Result<Fields> {
    let data = match codec {
        CodecKind::Bincode => Bincode::encode(payload),
        CodecKind::Json => Json::encode(payload),
    }
    .map_err(|e| {
        Error::new(
            ErrorCode::StreamPublishFailed,
            "the message cannot be encoded",
        )
        .with_context("stream", stream.to_owned())
        .with_source(e)
    })?;
    let mut out: Fields = Vec::with_capacity(4);
    out.push((fields::DATA.to_owned(), data));
    if codec == CodecKind::Bincode {
        out.push((fields::CODEC.to_owned(), b"bincode".to_vec()));
    }
    super::trace::inject(&mut out);
    Ok(out)
}

/// Appends to `cmd` the fields [`encode`] makes, encoding into `buf` (cleared first; a batch
/// reuses it, so no message allocates its own).
pub(crate) fn write_fields<T: Serialize + ?Sized>(
    cmd: &mut redis::Cmd,
    buf: &mut Vec<u8>,
    stream: &str,
    codec: CodecKind,
    payload: &T,
) -> Result<()> {
    buf.clear();
    match codec {
        CodecKind::Bincode => Bincode::encode_into(payload, buf),
        CodecKind::Json => Json::encode_into(payload, buf),
    }
    .map_err(|e| {
        Error::new(
            ErrorCode::StreamPublishFailed,
            "the message cannot be encoded",
        )
        .with_context("stream", stream.to_owned())
        .with_source(e)
    })?;
    cmd.arg(fields::DATA).arg(buf.as_slice());
    if codec == CodecKind::Bincode {
        cmd.arg(fields::CODEC).arg("bincode");
    }
    let mut trace: Fields = Vec::new();
    super::trace::inject(&mut trace);
    for (name, value) in &trace {
        cmd.arg(name).arg(value);
    }
    Ok(())
}

/// Decodes the payload of an entry by its `codec` field.
pub(crate) fn decode<T: DeserializeOwned>(entry: &[(String, Vec<u8>)]) -> Result<T> {
    let bad = |what: String| Error::new(ErrorCode::StreamReadFailed, what);
    let data = fields::get(entry, fields::DATA)
        .ok_or_else(|| bad("the entry has no `data` field".to_owned()))?;
    let decoded = match fields::get(entry, fields::CODEC) {
        None | Some(b"json") => Json::decode(data),
        Some(b"bincode") => Bincode::decode(data),
        Some(other) => {
            return Err(bad(format!(
                "the entry's codec `{}` is unknown (`json` or `bincode`)",
                String::from_utf8_lossy(other)
            )));
        }
    };
    decoded.map_err(|e| {
        bad(format!(
            "the entry's `data` does not decode as `{}`",
            std::any::type_name::<T>()
        ))
        .with_source(e)
    })
}

/// What happened to a message, shared between its [`Message`] and the consumer.
#[derive(Debug, Default)]
pub(crate) struct Settled(AtomicU8);

impl Settled {
    const OPEN: u8 = 0;
    const ACKED: u8 = 1;
    const REJECTED: u8 = 2;

    /// Claims the settlement; `false` when the message was already settled.
    fn settle(&self, how: u8) -> bool {
        self.0
            .compare_exchange(Self::OPEN, how, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether the handler settled the message itself.
    pub(crate) fn is_settled(&self) -> bool {
        self.0.load(Ordering::Acquire) != Self::OPEN
    }
}

/// What a [`Message`] settles itself with: the consumer's acknowledgement and dead-lettering.
pub(crate) trait Settle: Send + Sync {
    /// Acknowledges `id`.
    fn ack<'a>(&'a self, id: &'a str) -> crate::plugin::PluginFuture<'a, Result<()>>;
    /// Moves `id` (with `entry`'s fields and `attempt`) to the DLQ with `reason`.
    fn reject<'a>(
        &'a self,
        id: &'a str,
        entry: &'a Fields,
        attempt: u32,
        reason: &'a str,
    ) -> crate::plugin::PluginFuture<'a, Result<()>>;
}

/// A message delivered to a consumer: its payload, its id and which attempt this is. A
/// handler's `Ok` acknowledges it and its `Err` schedules a retry, unless the handler settled it
/// itself with [`ack`](Self::ack) or [`reject`](Self::reject).
///
/// ```no_run
/// use redisx_runtime::streams::Message;
///
/// #[derive(serde::Deserialize)]
/// struct Order { id: u64 }
///
/// # #[allow(dead_code)]
/// async fn on_order(msg: Message<Order>) -> redisx_runtime::Result<()> {
///     if msg.payload().id == 0 {
///         // Never valid: to the DLQ at once, without retries.
///         return msg.reject("order id 0").await;
///     }
///     println!("order {} (attempt {}, entry {})", msg.payload().id, msg.attempt(), msg.id());
///     Ok(())
/// }
/// ```
pub struct Message<T> {
    pub(crate) id: String,
    pub(crate) stream: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) payload: T,
    pub(crate) fields: Arc<Fields>,
    pub(crate) settled: Arc<Settled>,
    pub(crate) settle: Arc<dyn Settle>,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Message<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("stream", &self.stream)
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

impl<T> Message<T> {
    /// The entry id (`1700000000000-0`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The stream's name (as given to the consumer).
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Which attempt this delivery is, from 1: the larger of the entry's `attempt` field and
    /// the deliveries Redis counted (a message reclaimed from a dead consumer counts).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The payload.
    pub fn payload(&self) -> &T {
        &self.payload
    }

    /// The payload, owned.
    pub fn into_payload(self) -> T {
        self.payload
    }

    /// The entry's raw fields (trace context and any fields another producer added).
    pub fn fields(&self) -> &[(String, Vec<u8>)] {
        &self.fields
    }

    /// Acknowledges the message now (the handler's result then changes nothing). A second
    /// settlement is a no-op.
    pub async fn ack(&self) -> Result<()> {
        if !self.settled.settle(Settled::ACKED) {
            return Ok(());
        }
        self.settle.ack(&self.id).await
    }

    /// Sends the message to the dead-letter stream now, with `reason`, without retries (the
    /// handler's result then changes nothing). A second settlement is a no-op.
    pub async fn reject(&self, reason: &str) -> Result<()> {
        if !self.settled.settle(Settled::REJECTED) {
            return Ok(());
        }
        self.settle
            .reject(&self.id, &self.fields, self.attempt, reason)
            .await
    }
}
