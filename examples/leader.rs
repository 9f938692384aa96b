//! Leader election: of N instances, one runs a periodic job; it holds the lock
//! `leader:<job>` for as long as it leads (renewed in the background), writes each run with
//! the lock's fencing token, and steps down when the lock is lost. The others stand by and
//! take over when the leader dies (after the lock's ttl) or stops (at once).
//!
//! ```text
//! cargo run --example leader
//! ```
//!
//! Uses the server in `REDIS_URL` when it is set, else one listening on `127.0.0.1:6379`, else
//! starts a throwaway `redis-server` from `PATH` (stopped at exit). It starts three instances
//! of itself as child processes (`a`, `b`, `c`), each running [`run`]; one leads and ticks
//! every 100 ms. The program kills the leader with `SIGKILL`: another takes over once the dead
//! leader's lock expires (ttl 1 s), with a larger fencing token. Then it stops the new leader
//! gracefully (closing its stdin): it releases the lock and the last instance takes over at
//! once. The tick log shows one leader at a time, tokens increasing.
//!
//! The pieces: [`run`] is one instance's loop: `rx.locks().try_with_lock_using` (one attempt;
//! `#[with_lock(on_busy = "skip")]` is the same as an attribute, with a fixed ttl) on
//! [`Election::lock_key`], whose body runs the job until the instance stops; the lock is
//! renewed every third of its ttl while held, and a lost lock drops the body at its next
//! `.await` (`LOCK_EXPIRED`), so a leader that lost its lock stops ticking. Each tick goes to
//! the [`TickLog`] with `redisx::lock::fencing_token()`; the log refuses a token smaller than
//! the largest it accepted, so a leader that lost its lock without knowing yet (a pause, a
//! partition) cannot write after its successor.

#[path = "support/server.rs"]
mod server;

use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redisx::lock::{LockCall, LockOptions, fencing_token};
use redisx::redis::{self, Script};
use redisx::{ConnectionConfig, Error, ErrorCode, RedisX};
use tokio::sync::watch;

/// The periodic job of the program.
pub const JOB: &str = "report";

/// The environment variable that makes the program one instance (its name) rather than the
/// demonstration that starts them.
const INSTANCE_ENV: &str = "LEADER_EXAMPLE_INSTANCE";

/// The app prefix of the program's keys.
const PREFIX: &str = "leader-example:";

/// One instance's part in the election of one job.
#[derive(Clone, Debug)]
pub struct Election {
    job: String,
    instance: String,
    ttl: Duration,
    every: Duration,
    retry: Duration,
}

impl Election {
    /// Instance `instance` in the election of `job`: a lock ttl of 1 s (how long a dead leader
    /// keeps the others waiting), a tick every 100 ms, a follower's try every 100 ms.
    /// `CFG_INVALID` for an empty job or one with `{`, `}` (the hash tag of its keys) or
    /// whitespace, and for an empty instance name or one with whitespace.
    pub fn new(job: &str, instance: &str) -> redisx::Result<Self> {
        let bad = |s: &str| s.is_empty() || s.contains(char::is_whitespace);
        if bad(job) || job.contains(['{', '}']) {
            return Err(Error::new(
                ErrorCode::ConfigInvalid,
                "a job name must be non-empty, without whitespace or braces",
            ));
        }
        if bad(instance) {
            return Err(Error::new(
                ErrorCode::ConfigInvalid,
                "an instance name must be non-empty, without whitespace",
            ));
        }
        Ok(Self {
            job: job.to_owned(),
            instance: instance.to_owned(),
            ttl: Duration::from_secs(1),
            every: Duration::from_millis(100),
            retry: Duration::from_millis(100),
        })
    }

    /// The leader's lock ttl: renewed every third of it while the leader lives, it is how long
    /// the others wait after the leader died.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How often the leader runs the job.
    #[must_use]
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// How often a follower tries to take the lead.
    #[must_use]
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = retry;
        self
    }

    /// The lock the leader holds: `leader:<job>`.
    pub fn lock_key(&self) -> String {
        format!("leader:{}", self.job)
    }

    /// This instance's name.
    pub fn instance(&self) -> &str {
        &self.instance
    }
}

/// One run of the job: who ran it, with which fencing token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tick {
    /// The instance that ran it.
    pub instance: String,
    /// Its lock's fencing token.
    pub fence: u64,
}

/// Appends a tick unless a larger token was accepted before; refused ticks go to a list of
/// their own. Tokens are compared as numbers: they are the server's time in µs (about 1.8e15),
/// exact in Lua's doubles (below 2^53 until the year 2255).
static RECORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local last = redis.call('GET', KEYS[3])
local entry = ARGV[1] .. ' ' .. ARGV[2]
if last and tonumber(last) > tonumber(ARGV[2]) then
  redis.call('RPUSH', KEYS[2], entry)
  redis.call('LTRIM', KEYS[2], -1000, -1)
  return 0
end
redis.call('SET', KEYS[3], ARGV[2])
redis.call('RPUSH', KEYS[1], entry)
redis.call('LTRIM', KEYS[1], -1000, -1)
return 1
",
    )
});

/// What the job writes to, in Redis: the list of its runs (the last 1,000), kept under
/// `{app prefix}job:{<job>}:ticks` with the largest token accepted (`..:fence`) and the
/// refused ticks (`..:refused`), one hash tag so one script updates them together. It is the
/// resource the leadership protects, and it checks the fencing token itself.
#[derive(Clone)]
pub struct TickLog {
    rx: RedisX,
    ticks: String,
    refused: String,
    fence: String,
}

impl TickLog {
    /// The log of `job` (a name [`Election::new`] accepts) on `rx`.
    pub fn new(rx: &RedisX, job: &str) -> Self {
        let base = format!("{}job:{{{job}}}", rx.key_prefix());
        Self {
            rx: rx.clone(),
            ticks: format!("{base}:ticks"),
            refused: format!("{base}:refused"),
            fence: format!("{base}:fence"),
        }
    }

    /// Records a tick of `instance` with `fence`: `false` (recorded as refused) when a larger
    /// token was accepted before, i.e. a newer leader exists.
    pub async fn record(&self, instance: &str, fence: u64) -> redisx::Result<bool> {
        let fence = fence.to_string();
        let n: i64 = self
            .rx
            .client()
            .run_script(
                &RECORD,
                &[&self.ticks, &self.refused, &self.fence],
                &[instance, fence.as_str()],
            )
            .await?;
        Ok(n == 1)
    }

    /// The accepted ticks, oldest first.
    pub async fn ticks(&self) -> redisx::Result<Vec<Tick>> {
        self.read(&self.ticks).await
    }

    /// The refused ticks, oldest first.
    pub async fn refused(&self) -> redisx::Result<Vec<Tick>> {
        self.read(&self.refused).await
    }

    /// Empties the log (a fresh start).
    pub async fn clear(&self) -> redisx::Result<()> {
        let mut del = redis::cmd("DEL");
        del.arg(&self.ticks).arg(&self.refused).arg(&self.fence);
        let _: i64 = self.rx.client().query(&del).await?;
        Ok(())
    }

    async fn read(&self, key: &str) -> redisx::Result<Vec<Tick>> {
        let mut range = redis::cmd("LRANGE");
        range.arg(key).arg(0).arg(-1);
        let entries: Vec<String> = self.rx.client().query(&range).await?;
        // An entry another program wrote in another shape is skipped.
        Ok(entries
            .iter()
            .filter_map(|e| {
                let (instance, fence) = e.split_once(' ')?;
                Some(Tick {
                    instance: instance.to_owned(),
                    fence: fence.parse().ok()?,
                })
            })
            .collect())
    }
}

/// The terms of leadership in `ticks`: each run of consecutive ticks of one instance with one
/// token, as `(instance, token, ticks)`.
pub fn terms(ticks: &[Tick]) -> Vec<(String, u64, usize)> {
    let mut out: Vec<(String, u64, usize)> = Vec::new();
    for t in ticks {
        match out.last_mut() {
            Some((instance, fence, n)) if *instance == t.instance && *fence == t.fence => *n += 1,
            _ => out.push((t.instance.clone(), t.fence, 1)),
        }
    }
    out
}

/// How a term of leadership ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TermEnd {
    /// The instance was asked to stop: it released the lock.
    Stopped,
    /// The lock was lost (found by a renewal, or its validity ran out): the job was dropped
    /// at its next `.await`.
    Lost,
    /// The tick log refused a tick: a newer leader had written.
    Fenced,
    /// Redis failed during a tick (the lock was released, or expires at its ttl).
    Failed(String),
}

/// One term of leadership of an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// The lock's fencing token.
    pub fence: u64,
    /// How many ticks it wrote.
    pub ticks: u64,
    /// How it ended.
    pub end: TermEnd,
}

/// Why a term's body ended without a stop.
enum LeadError {
    /// A lock or Redis error (`LOCK_EXPIRED` when the lock was lost).
    Redis(Error),
    /// The tick log refused the token.
    Fenced,
}

impl From<Error> for LeadError {
    fn from(e: Error) -> Self {
        Self::Redis(e)
    }
}

/// Whether `stop` asks to stop (`true`, or its sender is gone).
fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Waits `d`, or less when asked to stop; `false` when stopping.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    // Done before `d`: asked to stop, or the sender is gone (an error).
    tokio::time::timeout(d, stop.wait_for(|s| *s))
        .await
        .is_err()
}

/// The leader's work, under the lock: a tick now and every `every`, each with the lock's
/// fencing token, until `stop` (then `Ok`). `fence` and `ticks` are kept outside, so that
/// they survive the body being dropped when the lock is lost.
async fn lead(
    log: &TickLog,
    election: &Election,
    fence: &AtomicU64,
    ticks: &AtomicU64,
    mut stop: watch::Receiver<bool>,
) -> Result<(), LeadError> {
    let token = fencing_token()
        .ok_or_else(|| Error::new(ErrorCode::LockNotOwned, "the job runs outside its lock"))?;
    fence.store(token, Ordering::Release);
    println!("    [{}] leads, fencing token {token}", election.instance);
    loop {
        if !log.record(&election.instance, token).await? {
            return Err(LeadError::Fenced);
        }
        ticks.fetch_add(1, Ordering::AcqRel);
        if !pause(&mut stop, election.every).await {
            return Ok(());
        }
    }
}

/// One instance: tries to take the lead every `retry`; while it leads, runs the job (see
/// [`Election`]); after a lost term, stands again after `retry`. Redis errors never end the
/// loop (a follower keeps trying; a leader whose tick failed steps down). Returns the terms it
/// led once `stop` turns `true` (or its sender is dropped); a leader then releases the lock,
/// so a follower takes over without waiting for the ttl.
pub async fn run(rx: &RedisX, election: &Election, mut stop: watch::Receiver<bool>) -> Vec<Term> {
    let log = TickLog::new(rx, &election.job);
    let key = election.lock_key();
    // On loss the body is dropped (the default `OnLost::Cancel`); renewed while held.
    let call = LockCall::new().options(LockOptions::new().ttl(election.ttl));
    let name = &election.instance;
    let mut terms = Vec::new();
    let mut warned = false;
    while !stopping(&stop) {
        let (fence, ticks) = (AtomicU64::new(0), AtomicU64::new(0));
        let body = lead(&log, election, &fence, &ticks, stop.clone());
        let outcome = rx.locks().try_with_lock_using(&key, &call, body).await;
        let fence = fence.load(Ordering::Acquire);
        let end = match outcome {
            Ok(None) => None, // another instance leads
            Ok(Some(())) => Some(TermEnd::Stopped),
            Err(LeadError::Fenced) => Some(TermEnd::Fenced),
            Err(LeadError::Redis(e)) if e.code() == ErrorCode::LockExpired => Some(TermEnd::Lost),
            Err(LeadError::Redis(e)) if fence != 0 => Some(TermEnd::Failed(format!("{e:#}"))),
            Err(LeadError::Redis(e)) => {
                // Could not even try (Redis down): a follower keeps trying.
                if !warned {
                    println!("    [{name}] cannot reach the lock: {e:#}; retrying");
                    warned = true;
                }
                None
            }
        };
        if let Some(end) = end {
            warned = false;
            let ticks = ticks.load(Ordering::Acquire);
            if end != TermEnd::Stopped {
                println!("    [{name}] steps down after {ticks} ticks: {end:?}");
            }
            terms.push(Term { fence, ticks, end });
        }
        if !pause(&mut stop, election.retry).await {
            break;
        }
    }
    terms
}

/// A runtime for one instance on `url` under `prefix` (every instance of a service shares
/// it).
pub async fn runtime(url: &str, prefix: &str) -> redisx::Result<RedisX> {
    RedisX::builder()
        .client("default", ConnectionConfig::from_url(url)?)
        .key_prefix(prefix)
        .build()
        .await
}

/// The program as one instance (a child process of the demonstration): runs until its stdin
/// closes, then steps down and exits.
async fn instance_main(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL")?;
    let rx = runtime(&url, PREFIX).await?;
    let election = Election::new(JOB, name)?;
    let (tx, stop) = watch::channel(false);
    std::thread::spawn(move || {
        // EOF (the parent closed the pipe, or died) or an error: stop.
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = tx.send(true);
    });
    let led = run(&rx, &election, stop).await;
    println!("    [{name}] stopped; terms led: {}", led.len());
    rx.shutdown().await;
    Ok(())
}

/// Polls `log` every 20 ms until `check` holds of its ticks; returns them, or an error naming
/// `what` after 10 s.
async fn wait_ticks(
    log: &TickLog,
    what: &str,
    check: impl Fn(&[Tick]) -> bool,
) -> Result<Vec<Tick>, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ticks = log.ticks().await?;
        if check(&ticks) {
            return Ok(ticks);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting until {what}: {ticks:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The instance of the last tick.
fn leader(ticks: &[Tick]) -> Result<Tick, Box<dyn std::error::Error>> {
    Ok(ticks.last().ok_or("no tick yet")?.clone())
}

/// The child process of `name` among `children`.
fn child<'a>(
    children: &'a mut [(String, Child)],
    name: &str,
) -> Result<&'a mut Child, Box<dyn std::error::Error>> {
    children
        .iter_mut()
        .find(|(n, _)| n == name)
        .map(|(_, c)| c)
        .ok_or_else(|| format!("no instance {name}").into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(name) = std::env::var(INSTANCE_ENV) {
        return instance_main(&name).await;
    }
    let (url, _server) = server::find_or_start_redis()?; // `_server` stops a throwaway server
    let rx = runtime(&url, PREFIX).await?;
    let log = TickLog::new(&rx, JOB);
    // Start fresh when run again on the same server.
    log.clear().await?;
    rx.locks()
        .force_release(&Election::new(JOB, "main")?.lock_key())
        .await?;

    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for name in ["a", "b", "c"] {
        let c = Command::new(&exe)
            .env(INSTANCE_ENV, name)
            .env("REDIS_URL", &url)
            .stdin(Stdio::piped())
            .spawn()?;
        children.push((name.to_owned(), c));
    }
    println!("--> started instances a, b, c (child processes)");

    // Several ttls of one term: the leader's lock is renewed, nobody else ticks.
    let ticks = wait_ticks(&log, "the leader ticked 15 times", |t| t.len() >= 15).await?;
    let first = leader(&ticks)?;
    println!(
        "--> {} leads: {} ticks in {} term(s) so far (longer than the 1 s ttl: renewed)",
        first.instance,
        ticks.len(),
        terms(&ticks).len()
    );

    // A crash: the lock is not released; it expires after its ttl.
    let killed_at = Instant::now();
    let victim = child(&mut children, &first.instance)?;
    victim.kill()?; // SIGKILL
    victim.wait()?;
    println!("--> SIGKILL {} (the leader)", first.instance);
    let ticks = wait_ticks(&log, "another instance leads", |t| {
        t.last().is_some_and(|l| l.instance != first.instance)
    })
    .await?;
    let second = leader(&ticks)?;
    println!(
        "--> {} took over {:.1} s later (the dead leader's lock expired), token {} > {}",
        second.instance,
        killed_at.elapsed().as_secs_f64(),
        second.fence,
        first.fence
    );

    // A graceful stop: the leader releases the lock; the last instance takes over at once.
    let n = ticks.len();
    wait_ticks(&log, "the new leader ticked 5 times", |t| t.len() >= n + 5).await?;
    let stopped_at = Instant::now();
    let leaving = child(&mut children, &second.instance)?;
    drop(leaving.stdin.take()); // EOF: the instance stops
    leaving.wait()?;
    println!("--> stopped {} gracefully", second.instance);
    let ticks = wait_ticks(&log, "the last instance leads", |t| {
        t.last()
            .is_some_and(|l| l.instance != first.instance && l.instance != second.instance)
    })
    .await?;
    let third = leader(&ticks)?;
    println!(
        "--> {} took over {:.1} s later (released, not expired), token {} > {}",
        third.instance,
        stopped_at.elapsed().as_secs_f64(),
        third.fence,
        second.fence
    );
    let n = ticks.len();
    wait_ticks(&log, "the last leader ticked 3 times", |t| t.len() >= n + 2).await?;
    let last = child(&mut children, &third.instance)?;
    drop(last.stdin.take());
    last.wait()?;

    let ticks = log.ticks().await?;
    println!("--> the tick log, term by term (one leader at a time, tokens increasing):");
    for (instance, fence, n) in terms(&ticks) {
        println!("      {instance}: {n} ticks with token {fence}");
    }
    println!("--> refused ticks: {}", log.refused().await?.len());
    rx.shutdown().await;
    Ok(())
}
