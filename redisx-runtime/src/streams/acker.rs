//! Batched acknowledgements: the handlers of one consumer hand their ids to one task, which
//! sends every id queued so far in one `XACK` while the previous one is in flight, so ten
//! handlers finishing together cost about two round trips, not ten. A handled message's
//! acknowledgement is sent without waiting (its slot is free at once); a failed one leaves the
//! message pending, to be reclaimed and delivered again (at least once). A manual
//! [`Message::ack`](super::Message::ack) waits for its outcome, and a drain waits until every
//! queued acknowledgement was sent ([`Acker::flush`]).

use tokio::sync::{mpsc, oneshot};

use crate::client::Client;
use crate::error::{Error, ErrorCode, Result};

/// The most ids one `XACK` carries.
const MAX_BATCH: usize = 512;

/// One id to acknowledge (none: a flush), and who waits for the outcome, if anyone.
type Request = (Option<String>, Option<oneshot::Sender<Result<()>>>);

/// The sending side, held by the consumer's engine; the task ends when it is dropped.
pub(crate) struct Acker {
    tx: mpsc::UnboundedSender<Request>,
}

impl Acker {
    /// Starts the task acknowledging in `stream` for `group` on `client`.
    pub(crate) fn start(client: Client, stream: String, group: String) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, client, stream, group));
        Self { tx }
    }

    /// Acknowledges `id` (with whatever else is queued) and waits for the outcome.
    pub(crate) async fn ack(&self, id: &str) -> Result<()> {
        self.request(Some(id.to_owned())).await
    }

    /// Queues the acknowledgement of `id` without waiting (a failure is logged).
    pub(crate) fn ack_later(&self, id: &str) {
        if self.tx.send((Some(id.to_owned()), None)).is_err() {
            tracing::warn!(target: "redisx::streams", id, "the acknowledgement task has ended; the message stays pending and may be delivered again");
        }
    }

    /// Resolves once every acknowledgement queued before it was sent.
    pub(crate) async fn flush(&self) -> Result<()> {
        self.request(None).await
    }

    async fn request(&self, id: Option<String>) -> Result<()> {
        let (done, outcome) = oneshot::channel();
        self.tx.send((id, Some(done))).map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }
}

fn gone() -> Error {
    Error::new(
        ErrorCode::StreamAckFailed,
        "the consumer's acknowledgement task has ended",
    )
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Request>,
    client: Client,
    stream: String,
    group: String,
) {
    let mut batch: Vec<Request> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&stream).arg(&group);
        let mut ids = 0;
        for id in batch.iter().filter_map(|(id, _)| id.as_ref()) {
            cmd.arg(id);
            ids += 1;
        }
        let outcome = if ids == 0 {
            Ok(())
        } else {
            client.query::<i64>(&cmd).await.map(|_| ())
        };
        if let Err(e) = &outcome {
            tracing::warn!(target: "redisx::streams", stream, ids, error = %format_args!("{e:#}"), "acknowledging handled messages failed; they stay pending and may be delivered again");
        }
        for done in batch.drain(..).filter_map(|(_, done)| done) {
            let _ = done.send(outcome.clone());
        }
    }
}
