//! Fixtures of the chaos soak (`tests/chaos_soak.rs`): a [`Tally`] of calls, errors by code and
//! latency per plugin, a [`Recovery`] log of the server's restarts and the time to the first
//! call Redis answered after each, the [`Chaos`] thread that kills and restarts the server,
//! a persistent server ([`persistent_server`]) and the process's resident memory
//! ([`rss_kib`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redisx::testing::RedisServer;

/// The plugins the soak loads, in the order the figures are printed.
pub const PLUGINS: [&str; 5] = ["cache", "lock", "rate_limit", "streams", "idempotency"];

/// The plugins' indices in [`PLUGINS`] (and in a [`Tally`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plugin {
    /// `rx.cache()`.
    Cache = 0,
    /// `rx.locks()`.
    Lock = 1,
    /// `rx.rate_limiter()`.
    RateLimit = 2,
    /// `rx.streams()`.
    Streams = 3,
    /// `rx.idempotency()`.
    Idempotency = 4,
}

/// A redis-server that keeps its data as a production server does: `appendonly yes`,
/// `appendfsync always` (every acknowledged write is on disk before its reply), its files in
/// `dir`, which the harness's restarts keep (the arguments are kept for every restart).
pub fn persistent_server(dir: &Path) -> RedisServer {
    RedisServer::builder()
        .arg("--appendonly")
        .arg("yes")
        .arg("--appendfsync")
        .arg("always")
        .arg("--dir")
        .arg(dir)
        .start()
}

/// The calls of one plugin: how many, how many succeeded, the errors by code and the longest.
#[derive(Debug, Default)]
struct PluginTally {
    calls: AtomicU64,
    ok: AtomicU64,
    max_us: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    /// The first error of each code, as displayed.
    samples: Mutex<BTreeMap<&'static str, String>>,
}

/// The calls of every plugin, and the [`Recovery`] log their successes complete.
#[derive(Debug, Default)]
pub struct Tally {
    plugins: [PluginTally; 5],
    /// The restarts, and when Redis answered again after each.
    pub recovery: Recovery,
}

impl Tally {
    /// Records a call of `plugin` that started at `started`: `Ok(redis)` when it succeeded
    /// (`redis`: the answer came from Redis, so it proves Redis answers again, which a cache
    /// answer from L1 or the loader does not), else its error.
    pub fn record(&self, plugin: Plugin, started: Instant, outcome: Result<bool, &redisx::Error>) {
        let p = &self.plugins[plugin as usize];
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        p.calls.fetch_add(1, Ordering::Relaxed);
        p.max_us.fetch_max(us, Ordering::Relaxed);
        match outcome {
            Ok(redis) => {
                p.ok.fetch_add(1, Ordering::Relaxed);
                if redis {
                    self.recovery.answered();
                }
            }
            Err(e) => {
                let code = e.code().as_str();
                *p.errors
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(code)
                    .or_default() += 1;
                p.samples
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(code)
                    .or_insert_with(|| format!("{e:#}"));
            }
        }
    }

    /// Records a call as [`Tally::record`] does, from its result.
    pub fn result<T>(&self, plugin: Plugin, started: Instant, redis: bool, r: &redisx::Result<T>) {
        self.record(plugin, started, r.as_ref().map(|_| redis));
    }

    /// The calls of `plugin` so far.
    pub fn calls(&self, plugin: Plugin) -> u64 {
        self.plugins[plugin as usize].calls.load(Ordering::Relaxed)
    }

    /// The successful calls of `plugin` so far.
    pub fn ok(&self, plugin: Plugin) -> u64 {
        self.plugins[plugin as usize].ok.load(Ordering::Relaxed)
    }

    /// The longest call of `plugin` so far.
    pub fn max_latency(&self, plugin: Plugin) -> Duration {
        Duration::from_micros(self.plugins[plugin as usize].max_us.load(Ordering::Relaxed))
    }

    /// The errors of `plugin` by code.
    pub fn errors(&self, plugin: Plugin) -> BTreeMap<&'static str, u64> {
        self.plugins[plugin as usize]
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Prints a line per plugin (calls, successes, errors by code, the longest call), then the
    /// first error of each code.
    pub fn print(&self) {
        for (i, name) in PLUGINS.iter().enumerate() {
            let p = &self.plugins[i];
            println!(
                "soak: {name:<12} calls {:>7}  ok {:>7}  max latency {:>8.1?}  errors {:?}",
                p.calls.load(Ordering::Relaxed),
                p.ok.load(Ordering::Relaxed),
                Duration::from_micros(p.max_us.load(Ordering::Relaxed)),
                p.errors.lock().unwrap_or_else(PoisonError::into_inner)
            );
        }
        for (i, name) in PLUGINS.iter().enumerate() {
            for (code, sample) in self.plugins[i]
                .samples
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
            {
                println!("soak: {name:<12} first {code}: {sample}");
            }
        }
    }
}

/// One kill and restart of the server.
#[derive(Clone, Debug)]
pub struct Restart {
    /// How long the server was down.
    pub down: Duration,
    /// When it answered `PING` again.
    pub up_at: Instant,
    /// From `up_at` to the first call Redis answered; `None` until then.
    pub first_ok: Option<Duration>,
}

/// The restarts, each with the time to the first call answered after it.
#[derive(Debug, Default)]
pub struct Recovery {
    awaiting: AtomicBool,
    restarts: Mutex<Vec<Restart>>,
}

impl Recovery {
    /// Notes a restart: the server was down for `down` and answers since `up_at`.
    pub fn restarted(&self, down: Duration, up_at: Instant) {
        self.restarts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Restart {
                down,
                up_at,
                first_ok: None,
            });
        self.awaiting.store(true, Ordering::SeqCst);
    }

    /// Notes a call Redis answered: the first after a restart is its recovery.
    fn answered(&self) {
        if self.awaiting.load(Ordering::Relaxed) && self.awaiting.swap(false, Ordering::SeqCst) {
            let mut restarts = self.restarts.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(last) = restarts.last_mut() {
                last.first_ok = Some(last.up_at.elapsed());
            }
        }
    }

    /// The restarts so far.
    pub fn restarts(&self) -> Vec<Restart> {
        self.restarts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A small xorshift generator: the soak's random pauses, reproducible from the printed seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from the clock (never 0).
    pub fn from_clock() -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| {
            d.as_secs().wrapping_mul(1_000_000_007) ^ u64::from(d.subsec_nanos())
        });
        Self(nanos | 1)
    }

    /// The seed it starts from.
    pub fn seed(&self) -> u64 {
        self.0
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo + 1)
    }
}

/// The thread that kills the server (`SIGKILL`) and starts it again, over and over, until
/// [`Chaos::stop`]: up for 2–4 s, down for 300–800 ms.
#[derive(Debug)]
pub struct Chaos {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<RedisServer>,
}

impl Chaos {
    /// Starts killing and restarting `server`, logging each restart in `tally.recovery`.
    pub fn start(mut server: RedisServer, tally: Arc<Tally>, mut rng: Rng) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            loop {
                let up = Instant::now() + Duration::from_millis(rng.between(2_000, 4_000));
                while Instant::now() < up && !stopping.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if stopping.load(Ordering::SeqCst) {
                    return server;
                }
                let killed = Instant::now();
                server.kill();
                std::thread::sleep(Duration::from_millis(rng.between(300, 800)));
                server.start_again();
                tally.recovery.restarted(killed.elapsed(), Instant::now());
            }
        });
        Self { stop, thread }
    }

    /// Stops the kills (the server is left running) and gives the server back.
    ///
    /// # Panics
    /// When the thread panicked (a restart failed).
    pub async fn stop(self) -> RedisServer {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join().expect("the chaos thread"))
            .await
            .expect("joining the chaos thread")
    }
}

/// The process's resident memory in KiB (`VmRSS` of `/proc/self/status`).
///
/// # Panics
/// When the file cannot be read (not Linux).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// The soak's load time: `REDISX_SOAK_SECS` seconds when set, else `default`.
///
/// # Panics
/// When `REDISX_SOAK_SECS` is not a number of seconds.
pub fn budget(default: Duration) -> Duration {
    match std::env::var("REDISX_SOAK_SECS") {
        Ok(s) if !s.trim().is_empty() => Duration::from_secs(
            s.trim()
                .parse()
                .expect("REDISX_SOAK_SECS is a number of seconds"),
        ),
        _ => default,
    }
}

/// A directory of the test's own under the temporary directory, for the server's files; kept
/// across the server's restarts, removed with everything in it when dropped (drop it after
/// the server).
#[derive(Debug)]
pub struct DataDir(std::path::PathBuf);

impl DataDir {
    /// Creates `redisx-soak-<pid>-<nanos>` in the temporary directory.
    ///
    /// # Panics
    /// When the directory cannot be created.
    pub fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("redisx-soak-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir(&path).expect("the soak's data directory");
        Self(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for DataDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
