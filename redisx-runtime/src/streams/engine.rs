//! The consumer engine, shared by every typed consumer: the read loop (never asking for more
//! messages than there are free handler slots), one task per message, and what a handler's
//! outcome does to its message (acknowledge; retry through the delayed set; dead-letter).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::Either;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tracing::Instrument as _;
use tracing::field::Empty;

use super::fields::{self, Fields};
use super::message::{Settle, Settled};
use super::stats::Consumed;
use super::{ConsumerOptions, Shared, StreamKeys, scripts};
use crate::error::{Error, ErrorCode, Result};
use crate::plugin::PluginFuture;

/// What a handler made of one delivery.
pub(crate) enum Outcome {
    Ok,
    /// The handler's error, as text (for the DLQ and logs).
    Err(String),
    /// The entry does not decode as the consumer's type: to the DLQ at once.
    Undecodable(String),
}

/// One delivery handed to the typed handler.
pub(crate) struct Delivery {
    pub(crate) id: String,
    pub(crate) attempt: u32,
    pub(crate) fields: Arc<Fields>,
    pub(crate) settled: Arc<Settled>,
    pub(crate) settle: Arc<dyn Settle>,
}

/// The typed handler, erased: decodes, runs the user's function, reports the outcome.
pub(crate) type Run =
    Arc<dyn Fn(Delivery) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// The ordering key of an entry, erased (`None`: no ordering).
pub(crate) type OrderingKey = Arc<dyn Fn(&Fields) -> Option<String> + Send + Sync>;

/// One running consumer: what its tasks share.
pub(crate) struct Engine {
    pub(crate) shared: Arc<Shared>,
    /// The stream's name as given (labels, messages).
    pub(crate) name: Arc<str>,
    pub(crate) keys: StreamKeys,
    pub(crate) opts: ConsumerOptions,
    pub(crate) consumer: String,
    pub(crate) run: Run,
    pub(crate) ordering: Option<OrderingKey>,
    /// One permit per handler slot.
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) stopping: AtomicBool,
    pub(crate) stop: Notify,
    /// Handlers running now, and the wake-up of a drain waiting for them.
    pub(crate) running: AtomicUsize,
    pub(crate) idle: Notify,
    /// `ordering_key`: per key, the end of the last message dispatched (its generation, and
    /// the receiver its successor waits on), so each waits for the one read before it.
    pub(crate) order_chain: Mutex<HashMap<String, (u64, oneshot::Receiver<()>)>>,
    pub(crate) order_gen: AtomicU64,
    /// Set (and notified) when a drain runs out of time: the handlers still running stop at
    /// their next await.
    pub(crate) aborting: AtomicBool,
    pub(crate) abort: Notify,
    /// Sends the acknowledgements, batched.
    pub(crate) acker: super::acker::Acker,
    /// The consumer's metric handles.
    pub(crate) metrics: super::stats::GroupMetrics,
    /// Wakes the gauge refresh early (a message went to the DLQ).
    pub(crate) gauges_due: Notify,
}

impl Engine {
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Resolves when the consumer is asked to stop.
    pub(crate) async fn stopped(&self) {
        let notified = self.stop.notified();
        if self.is_stopping() {
            return;
        }
        notified.await;
    }

    /// Creates the group (and the stream) if missing; an existing group is fine. Redis
    /// unreachable keeps its own code: the caller backs off and tries again.
    pub(crate) async fn ensure_group(&self, start_id: &str) -> Result<()> {
        self.shared
            .create_group(&self.keys.stream, &self.name, &self.opts.group, start_id)
            .await
            .map(|_| ())
    }

    /// An error naming the stream and group.
    pub(crate) fn error(&self, code: ErrorCode, what: &str, cause: Error) -> Error {
        Error::new(code, what.to_owned())
            .with_context("stream", self.name.to_string())
            .with_context("group", self.opts.group.clone())
            .with_source(cause)
    }

    /// Takes up to `want` free slots, waiting for the first; `None` when stopping.
    pub(crate) async fn slots(&self, want: usize) -> Option<Vec<OwnedSemaphorePermit>> {
        let first = tokio::select! {
            () = self.stopped() => return None,
            p = self.slots.clone().acquire_owned() => p.ok()?,
        };
        if want > 1 && self.slots.available_permits() + 1 < want {
            // Handlers finishing together (their acknowledgements come back in one batch) free
            // their slots in the same instant: let them land, so the read asks for them all.
            tokio::task::yield_now().await;
        }
        let mut permits = vec![first];
        while permits.len() < want {
            match self.slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        Some(permits)
    }

    /// Starts handling `entries` (each with one of `permits`; the unused ones are released).
    /// `counts` are the deliveries Redis counted, by id (reclaimed entries).
    pub(crate) fn dispatch(
        self: &Arc<Self>,
        entries: Vec<(String, Fields)>,
        mut permits: Vec<OwnedSemaphorePermit>,
        counts: &HashMap<String, u32>,
    ) {
        for (id, entry) in entries {
            let Some(permit) = permits.pop() else {
                // Never: a read asks for at most as many entries as it holds permits.
                tracing::error!(target: "redisx::streams", id, "more entries than free slots; the entry stays pending");
                break;
            };
            let attempt = fields::attempt(&entry).max(counts.get(&id).copied().unwrap_or(1));
            // Taken here, in read order: the spawned tasks may start in any order.
            let turn = self.turn(&entry);
            let engine = self.clone();
            let running = Running::new(self.clone());
            // Boxed: the task then moves a pointer, not the handler's whole state machine.
            let work = Box::pin(async move {
                let turn = match turn {
                    Some(mut t) => {
                        if let Some(previous) = t.previous.take() {
                            // Resolves when the previous message of the key is done (or its
                            // task is gone).
                            let _ = previous.await;
                        }
                        Some(t)
                    }
                    None => None,
                };
                engine.clone().handle(id, entry, attempt).await;
                drop(permit);
                if let Some(t) = turn {
                    engine.end_turn(t);
                }
            });
            // In the consuming runtime's scope: the handler's attributes and
            // `RedisX::current()` find the runtime that delivered the message.
            let work = match self.shared.owner() {
                Some(rx) => Either::Left(crate::scope::scoped_boxed(rx, work)),
                None => Either::Right(work),
            };
            let engine = self.clone();
            tokio::spawn(async move {
                let _running = running;
                tokio::select! {
                    biased;
                    () = engine.aborted() => {}
                    () = work => {}
                }
            });
        }
    }

    /// Resolves when a drain gave up waiting for the handlers.
    async fn aborted(&self) {
        let notified = self.abort.notified();
        if self.aborting.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }

    /// The place of `entry` in its key's order (`None` without `ordering_key`, or without a
    /// key).
    fn turn(&self, entry: &Fields) -> Option<Turn> {
        let key = (self.ordering.as_ref()?)(entry)?;
        let (done, next) = oneshot::channel();
        let generation = self.order_gen.fetch_add(1, Ordering::Relaxed);
        let previous = self
            .order_chain
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), (generation, next))
            .map(|(_, r)| r);
        Some(Turn {
            key,
            generation,
            previous,
            done,
        })
    }

    /// A keyed message is done: its successor may start, and the key leaves the chain when
    /// nothing came after it.
    fn end_turn(&self, turn: Turn) {
        let mut chain = self
            .order_chain
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if chain
            .get(&turn.key)
            .is_some_and(|(g, _)| *g == turn.generation)
        {
            chain.remove(&turn.key);
        }
        drop(chain);
        let _ = turn.done.send(());
    }

    /// Handles one delivery to the end: the handler, then its outcome.
    async fn handle(self: Arc<Self>, id: String, entry: Fields, attempt: u32) {
        let span = tracing::info_span!(target: "redisx::streams", "stream.process",
            otel.kind = "consumer",
            messaging.system = "redis",
            messaging.operation.type = "process",
            messaging.destination.name = %self.name,
            messaging.consumer.group.name = %self.opts.group,
            messaging.message.id = %id,
            redisx.attempt = attempt,
            redisx.outcome = Empty,
            otel.status_code = Empty,
        );
        super::trace::set_parent(&span, &entry);
        let entry = Arc::new(entry);
        let settled = Arc::new(Settled::default());
        let delivery = Delivery {
            id: id.clone(),
            attempt,
            fields: entry.clone(),
            settled: settled.clone(),
            settle: self.clone(),
        };
        let started = Instant::now();
        let outcome = {
            // In the span: the handler's synchronous part (before its future) as well.
            let run = span
                .in_scope(|| (self.run)(delivery))
                .instrument(span.clone());
            let keep = self.keep_claimed(&id);
            tokio::pin!(run, keep);
            tokio::select! {
                out = &mut run => out,
                () = &mut keep => run.await,
            }
        };
        self.metrics
            .processing
            .observe(started.elapsed().as_secs_f64());
        if settled.is_settled() {
            span.record("redisx.outcome", "settled_by_handler");
            return;
        }
        let status = match outcome {
            Outcome::Ok => {
                self.acker.ack_later(&id);
                Consumed::Success
            }
            Outcome::Err(error) => {
                span.record("otel.status_code", "ERROR");
                self.failed(&id, &entry, attempt, &error).await
            }
            Outcome::Undecodable(why) => {
                span.record("otel.status_code", "ERROR");
                tracing::error!(target: "redisx::streams", stream = %self.name, id, error = why, "a message does not decode; it goes to the DLQ at once");
                self.dead_letter_or_log(&id, &entry, attempt, &why).await;
                Consumed::DecodeError
            }
        };
        span.record("redisx.outcome", status.as_str());
        self.metrics.consumed(status);
    }

    /// Keeps `id` claimed by this consumer while its handler runs (its idle time reset every
    /// third of `claim_idle`), so no other consumer reclaims it; never resolves.
    async fn keep_claimed(&self, id: &str) {
        let idle = self.opts.claim_idle;
        if idle.is_zero() {
            return std::future::pending().await;
        }
        let every = (idle / 3).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(every).await;
            let Ok(client) = self.shared.client() else {
                continue;
            };
            let r: Result<redis::Value> = client
                .query(
                    redis::cmd("XCLAIM")
                        .arg(&self.keys.stream)
                        .arg(&self.opts.group)
                        .arg(&self.consumer)
                        .arg(0)
                        .arg(id)
                        .arg("JUSTID"),
                )
                .await;
            if let Err(e) = r {
                tracing::warn!(target: "redisx::streams", stream = %self.name, id, error = %format_args!("{e:#}"), "keeping an in-flight message claimed failed; another consumer may reclaim it after claim_idle");
            }
        }
    }

    /// A failed attempt: retried through the delayed set, or dead-lettered after the last.
    async fn failed(&self, id: &str, entry: &Fields, attempt: u32, error: &str) -> Consumed {
        let retries_done = attempt.saturating_sub(1);
        if retries_done < self.opts.max_retries {
            let delay = self.shared.cfg.backoff.delay(attempt);
            let mut next = entry.clone();
            fields::set(
                &mut next,
                fields::ATTEMPT,
                (attempt + 1).to_string().into_bytes(),
            );
            let mut inv = scripts::RETRY.script.prepare_invoke();
            inv.key(&self.keys.stream)
                .key(&self.keys.delayed)
                .arg(&self.opts.group)
                .arg(id)
                .arg(crate::millis(delay))
                .arg(fields::delayed_member(&next));
            match self.shared.client() {
                Ok(client) => match client.invoke::<i64>(&inv).await {
                    Ok(_) => {
                        tracing::debug!(target: "redisx::streams", stream = %self.name, id, attempt, error, "a handler failed; retrying after the backoff");
                    }
                    Err(e) => {
                        tracing::warn!(target: "redisx::streams", stream = %self.name, id, error = %format_args!("{e:#}"), "scheduling a retry failed; the message stays pending and is reclaimed after claim_idle");
                    }
                },
                Err(e) => {
                    tracing::warn!(target: "redisx::streams", error = %e, "no client to schedule a retry");
                }
            }
            return Consumed::Retry;
        }
        tracing::warn!(target: "redisx::streams", stream = %self.name, id, attempt, error, "a message is out of retries");
        self.dead_letter_or_log(id, entry, attempt, error).await;
        Consumed::DeadLetter
    }

    async fn ack(&self, id: &str) -> Result<()> {
        self.acker.ack(id).await
    }

    /// Dead-letters `id` (or, with the DLQ off, acknowledges and drops it with an error log).
    pub(crate) async fn dead_letter_or_log(
        &self,
        id: &str,
        entry: &Fields,
        attempts: u32,
        error: &str,
    ) {
        if let Err(e) = self.dead_letter(id, entry, attempts, error).await {
            tracing::error!(target: "redisx::streams", stream = %self.name, id, error = %format_args!("{e:#}"), "dead-lettering a message failed; it stays pending and is reclaimed after claim_idle");
        }
    }

    async fn dead_letter(
        &self,
        id: &str,
        entry: &Fields,
        attempts: u32,
        error: &str,
    ) -> Result<()> {
        if !self.shared.cfg.dlq {
            tracing::error!(target: "redisx::streams", stream = %self.name, id, attempts, error, "a message failed for good and the DLQ is off: it is acknowledged and dropped");
            return self.ack(id).await;
        }
        let failed_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut inv = scripts::DEAD_LETTER.script.prepare_invoke();
        inv.key(&self.keys.stream)
            .key(&self.keys.dlq)
            .arg(&self.opts.group)
            .arg(id)
            .arg(self.shared.cfg.dlq_max_len);
        let meta = [
            (fields::ERROR, error.as_bytes().to_vec()),
            (fields::ORIGINAL_ID, id.as_bytes().to_vec()),
            (fields::ORIGINAL_STREAM, self.name.as_bytes().to_vec()),
            (fields::FAILED_AT, failed_at.to_string().into_bytes()),
        ];
        for (name, value) in entry {
            if name == fields::ATTEMPT || meta.iter().any(|(m, _)| m == name) {
                continue;
            }
            inv.arg(name.as_str()).arg(value.as_slice());
        }
        inv.arg(fields::ATTEMPT).arg(attempts);
        for (name, value) in &meta {
            inv.arg(*name).arg(value.as_slice());
        }
        let _: Option<String> = self.shared.client()?.invoke(&inv).await?;
        self.gauges_due.notify_one();
        Ok(())
    }

    /// Stops reading, waits for the running handlers until `deadline`, then aborts the rest
    /// (their messages stay pending for another consumer).
    pub(crate) async fn drain(&self, deadline: tokio::time::Instant) {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify_waiters();
        loop {
            let idle = self.idle.notified();
            if self.running.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                let left = self.running.load(Ordering::Acquire);
                tracing::warn!(target: "redisx::streams", stream = %self.name, group = %self.opts.group, left, "the drain ran out of time; the unfinished messages stay pending for another consumer");
                self.aborting.store(true, Ordering::Release);
                self.abort.notify_waiters();
                // Returns once the aborted handlers have ended (each at its next await).
                loop {
                    let idle = self.idle.notified();
                    if self.running.load(Ordering::Acquire) == 0 {
                        break;
                    }
                    idle.await;
                }
                break;
            }
        }
        // The acknowledgements of the handlers that finished are sent before the drain ends.
        let flushed = tokio::time::timeout_at(deadline, self.acker.flush()).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!(target: "redisx::streams", stream = %self.name, group = %self.opts.group, "the drain could not send every acknowledgement; those messages stay pending and may be delivered again");
        }
    }
}

/// A keyed message's place in its key's order.
struct Turn {
    key: String,
    generation: u64,
    /// Resolves when the message read before it on the same key is done.
    previous: Option<oneshot::Receiver<()>>,
    /// Sent (or dropped, when the task is aborted) when this message is done: its
    /// successor's `previous`.
    done: oneshot::Sender<()>,
}

/// Whether an error means Redis cannot be reached (rather than a refusal).
pub(crate) fn is_unreachable(e: &Error) -> bool {
    e.code().family() == "connection" || e.code() == ErrorCode::OperationTimeout
}

/// One handler task of an engine, counted from its spawn to its end (or abort): the running
/// count a drain waits on, and the in-flight gauge.
struct Running(Arc<Engine>);

impl Running {
    fn new(engine: Arc<Engine>) -> Self {
        engine.running.fetch_add(1, Ordering::AcqRel);
        engine.shared.metrics.in_flight.inc();
        Self(engine)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.shared.metrics.in_flight.dec();
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A message settles itself through its consumer.
impl Settle for Engine {
    fn ack<'a>(&'a self, id: &'a str) -> PluginFuture<'a, Result<()>> {
        Box::pin(async move {
            self.ack(id).await?;
            self.metrics.consumed(Consumed::Success);
            Ok(())
        })
    }

    fn reject<'a>(
        &'a self,
        id: &'a str,
        entry: &'a Fields,
        attempt: u32,
        reason: &'a str,
    ) -> PluginFuture<'a, Result<()>> {
        Box::pin(async move {
            self.dead_letter(id, entry, attempt, reason).await?;
            self.metrics.consumed(Consumed::DeadLetter);
            Ok(())
        })
    }
}
