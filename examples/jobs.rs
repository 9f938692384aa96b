//! Background jobs: a producer publishes jobs to a stream, a `#[stream_consumer]` of a consumer
//! group works through them several at a time, retries a job the sink refused for a moment,
//! and a graceful shutdown finishes the jobs in flight and leaves the rest for another
//! instance.
//!
//! ```text
//! cargo run --example jobs
//! ```
//!
//! Uses the server in `REDIS_URL` when it is set, else one listening on `127.0.0.1:6379`, else
//! starts a throwaway `redis-server` from `PATH` (stopped at exit). Instance A publishes 12
//! jobs, one of which the sink refuses once; its worker runs 4 at a time (the [`Sink`] counts
//! them), retries the refused one after the backoff, and writes each job once. Then A publishes
//! 10 more and shuts down while 4 of them run: those 4 finish and are acknowledged, the other 6
//! stay in the stream, and instance B (another runtime, as a restarted or second replica
//! would be) picks them up. Nothing is left pending; every job was written once.
//!
//! The pieces: [`process_job`] is the `#[stream_consumer]` (group [`GROUP`], [`CONCURRENCY`]
//! handlers, [`MAX_RETRIES`] retries, then the DLQ; `start_id = "0"`, so the group its first
//! worker creates starts at the beginning of the stream and jobs published before any worker
//! ran are not skipped); [`runtime`] sets the retry backoff; `rx.shutdown()` drains the
//! worker.
//! Delivery is at least once: after a crash, a job can run again, so a real sink deduplicates
//! by job id (this one counts every write, so that the tests see a duplicate).

#[path = "support/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use redisx::streams::{Backoff, ConsumerHandle, Message, StreamsConfig};
use redisx::{ConnectionConfig, RedisX, stream_consumer};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The stream jobs are published to (the `stream` of [`process_job`]).
pub const STREAM: &str = "jobs";
/// The consumer group of the workers (the `group` of [`process_job`]).
pub const GROUP: &str = "workers";
/// How many jobs one worker runs at once (the `concurrency` of [`process_job`]).
pub const CONCURRENCY: usize = 4;
/// Retries after a job's first attempt before it goes to the DLQ (the `max_retries` of
/// [`process_job`]).
pub const MAX_RETRIES: u32 = 3;
/// How long one write to the sink takes (the job's work).
pub const WORK: Duration = Duration::from_millis(20);

/// One job: which one, and how many times the sink refuses it before accepting it (a
/// simulated transient outage of the downstream; 0 for most jobs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The job's id.
    pub id: u64,
    /// How many attempts the sink refuses before it accepts the job.
    pub transient_failures: u32,
}

impl Job {
    /// A job the sink accepts at once.
    pub fn new(id: u64) -> Self {
        Self {
            id,
            transient_failures: 0,
        }
    }

    /// A job the sink refuses `n` times first.
    pub fn flaky(id: u64, n: u32) -> Self {
        Self {
            id,
            transient_failures: n,
        }
    }
}

/// Why the sink refused a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkError {
    /// The downstream is unavailable for a moment: worth a retry.
    Unavailable {
        /// The job refused.
        job: u64,
        /// The attempt refused (from 1).
        attempt: u32,
    },
}

impl std::fmt::Display for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable { job, attempt } => write!(
                f,
                "the sink is unavailable (job {job}, attempt {attempt}); try again later"
            ),
        }
    }
}

impl std::error::Error for SinkError {}

/// What the sink saw.
#[derive(Default)]
struct SinkState {
    /// Per job, how many times it was written.
    written: BTreeMap<u64, u32>,
    /// Per job, how many write attempts reached the sink (refused ones included).
    attempts: BTreeMap<u64, u32>,
    /// Per job, the stream attempt (`msg.attempt()`) of the write that was accepted.
    accepted_on: BTreeMap<u64, u32>,
    in_flight: usize,
    max_in_flight: usize,
}

/// The simulated downstream the jobs write to (a mailer, a search index, a payment provider),
/// in process. It counts every write and how many run at once, and can be held: while held,
/// writes wait at its door (a slow downstream), so that the program and the tests see exactly
/// which jobs are in flight at a moment.
pub struct Sink {
    state: Mutex<SinkState>,
    /// `true` while writes may go through.
    open: watch::Sender<bool>,
}

/// The process's sink: a `#[stream_consumer]` is a free function, so what it writes to is
/// reached from a static (in a service, a `OnceLock` set at startup with a database pool).
static SINK: LazyLock<Sink> = LazyLock::new(|| Sink {
    state: Mutex::default(),
    open: watch::Sender::new(true),
});

/// The sink the worker writes to.
pub fn sink() -> &'static Sink {
    &SINK
}

/// Counts a write in flight from its start to its end (or until its handler is dropped).
struct InFlight<'a>(&'a Sink);

impl<'a> InFlight<'a> {
    fn enter(sink: &'a Sink) -> Self {
        let mut s = sink.lock();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        Self(sink)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.lock().in_flight -= 1;
    }
}

impl Sink {
    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `job` (its `attempt`-th delivery): waits while the sink is held, takes [`WORK`],
    /// then refuses it while it has refusals left, else records it.
    pub async fn write(&self, job: &Job, attempt: u32) -> Result<(), SinkError> {
        let _in_flight = InFlight::enter(self);
        let mut open = self.open.subscribe();
        // The sender lives in a static: the wait cannot fail.
        let _ = open.wait_for(|open| *open).await;
        tokio::time::sleep(WORK).await;
        let mut s = self.lock();
        let tries = s.attempts.entry(job.id).or_default();
        *tries += 1;
        if *tries <= job.transient_failures {
            return Err(SinkError::Unavailable {
                job: job.id,
                attempt,
            });
        }
        *s.written.entry(job.id).or_default() += 1;
        s.accepted_on.insert(job.id, attempt);
        Ok(())
    }

    /// Holds every write at the door until [`resume`](Self::resume).
    pub fn hold(&self) {
        self.open.send_replace(false);
    }

    /// Lets the held writes (and the next ones) through.
    pub fn resume(&self) {
        self.open.send_replace(true);
    }

    /// Writes running now (held ones included).
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// The most writes that ran at once since the last [`reset`](Self::reset).
    pub fn max_in_flight(&self) -> usize {
        self.lock().max_in_flight
    }

    /// Per job id, how many times it was written.
    pub fn written(&self) -> BTreeMap<u64, u32> {
        self.lock().written.clone()
    }

    /// How many write attempts of job `id` reached the sink (refused ones included).
    pub fn attempts(&self, id: u64) -> u32 {
        self.lock().attempts.get(&id).copied().unwrap_or(0)
    }

    /// The stream attempt (`msg.attempt()`, from 1) on which job `id` was accepted.
    pub fn accepted_on(&self, id: u64) -> Option<u32> {
        self.lock().accepted_on.get(&id).copied()
    }

    /// Forgets everything and opens the door (a fresh start).
    pub fn reset(&self) {
        let mut s = self.lock();
        let in_flight = s.in_flight;
        *s = SinkState {
            in_flight,
            ..SinkState::default()
        };
        drop(s);
        self.resume();
    }
}

/// The worker: every job of [`STREAM`], [`CONCURRENCY`] at a time in the group [`GROUP`]. An
/// `Err` (the sink refused) acknowledges the delivery and schedules the next attempt after the
/// backoff; after [`MAX_RETRIES`] retries the job goes to the stream's DLQ with the error. The
/// first worker to start creates the group at `0`, the start of the stream: the jobs published
/// before it are handled too (the default, `$`, would skip them).
#[stream_consumer(
    stream = "jobs",
    group = "workers",
    concurrency = 4,
    max_retries = 3,
    start_id = "0"
)]
pub async fn process_job(msg: Message<Job>) -> Result<(), SinkError> {
    sink().write(msg.payload(), msg.attempt()).await
}

/// A runtime on `url` under `prefix` whose failed jobs are retried after 200 ms, doubling, at
/// most 5 s apart.
pub async fn runtime(url: &str, prefix: &str) -> redisx::Result<RedisX> {
    let backoff = Backoff {
        initial: Duration::from_millis(200),
        multiplier: 2.0,
        max: Duration::from_secs(5),
    };
    RedisX::builder()
        .client("default", ConnectionConfig::from_url(url)?)
        .key_prefix(prefix)
        .streams(StreamsConfig::default().backoff(backoff))
        .build()
        .await
}

/// Starts [`process_job`] on `rx` (creating its group at the start of the stream if missing);
/// `rx.shutdown()` (or the handle's `stop()`) drains it.
pub async fn start_worker(rx: &RedisX) -> redisx::Result<ConsumerHandle> {
    rx.streams().start_registered("process_job").await
}

/// Publishes `jobs` in one round trip; returns their entry ids.
pub async fn publish(rx: &RedisX, jobs: &[Job]) -> redisx::Result<Vec<String>> {
    rx.streams().publish_batch(STREAM, jobs).await
}

/// Waits (polling every 5 ms) until `check` holds; an error naming `what` after 5 s.
async fn until(what: &str, check: impl Fn() -> bool) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check() {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("timed out waiting until {what}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// The group's pending count once it reaches 0 (acknowledgements are sent in batches, a moment
/// after the handlers return), or what is left after 5 s.
async fn settled(rx: &RedisX) -> redisx::Result<u64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let pending = rx.streams().pending(STREAM, GROUP).await?.count;
        if pending == 0 || tokio::time::Instant::now() > deadline {
            return Ok(pending);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How many jobs were written, and whether each was written once.
fn summary(written: &BTreeMap<u64, u32>) -> String {
    let once = written.values().all(|n| *n == 1);
    format!(
        "{} jobs written, {}",
        written.len(),
        if once {
            "each once"
        } else {
            "SOME MORE THAN ONCE"
        }
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _server) = server::find_or_start_redis()?; // `_server` stops a throwaway server
    let prefix = "jobs-example:";
    let a = runtime(&url, prefix).await?;
    // Start fresh when run again on the same server: the stream (with its group), DLQ and
    // delayed set.
    let keys = a.streams().keys(STREAM, false)?;
    let () = a
        .client()
        .query(
            redisx::redis::cmd("DEL")
                .arg(&keys.stream)
                .arg(&keys.dlq)
                .arg(&keys.delayed),
        )
        .await?;

    // 1. Concurrency and a retry.
    sink().hold();
    let jobs: Vec<Job> = (1..=12)
        .map(|id| {
            if id == 3 {
                Job::flaky(id, 1)
            } else {
                Job::new(id)
            }
        })
        .collect();
    publish(&a, &jobs).await?;
    println!(
        "--> instance A published jobs 1..=12 before any worker ran (the sink refuses job 3 once)"
    );
    let worker_a = start_worker(&a).await?;
    until("the worker fills its slots", || {
        sink().in_flight() == CONCURRENCY
    })
    .await?;
    println!(
        "--> {} jobs in flight at once (concurrency {CONCURRENCY}); the sink was held",
        sink().in_flight()
    );
    sink().resume();
    until("jobs 1..=12 are written", || sink().written().len() == 12).await?;
    println!(
        "--> {}; at most {} ran at once",
        summary(&sink().written()),
        sink().max_in_flight()
    );
    let accepted_on = sink().accepted_on(3).ok_or("job 3 was not written")?;
    println!(
        "--> job 3: refused once, retried after the backoff, written on attempt {accepted_on} ({} attempts reached the sink)",
        sink().attempts(3)
    );

    // 2. A graceful shutdown with jobs in flight; another instance takes the rest.
    sink().hold();
    let more: Vec<Job> = (13..=22).map(Job::new).collect();
    publish(&a, &more).await?;
    until("the worker fills its slots again", || {
        sink().in_flight() == CONCURRENCY
    })
    .await?;
    println!(
        "--> instance A published jobs 13..=22 and shuts down with {} in flight",
        sink().in_flight()
    );
    let stopping = tokio::spawn({
        let a = a.clone();
        async move { a.shutdown().await }
    });
    until("the worker stops reading", || !worker_a.is_running()).await?;
    sink().resume(); // the jobs in flight finish during the drain
    stopping.await?;
    let b = runtime(&url, prefix).await?;
    let pending = b.streams().pending(STREAM, GROUP).await?.count;
    let lag = b.streams().lag(STREAM, GROUP).await?;
    println!(
        "--> A is down: {} jobs written so far, {pending} pending (unacknowledged), {} never delivered",
        sink().written().len(),
        lag.map_or_else(|| "?".to_owned(), |n| n.to_string())
    );
    let _worker_b = start_worker(&b).await?;
    until("jobs 1..=22 are written", || sink().written().len() == 22).await?;
    let pending = settled(&b).await?;
    println!(
        "--> instance B took the rest: {}; {pending} pending",
        summary(&sink().written())
    );
    b.shutdown().await;
    Ok(())
}
