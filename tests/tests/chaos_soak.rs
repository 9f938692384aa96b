//! A bounded chaos soak: two runtimes (one app prefix) run a mixed load of every plugin while
//! the test kills (`SIGKILL`) and restarts `redis-server` every few seconds (up 2–4 s, down
//! 300–800 ms), on a server that keeps its data as a production one does (`appendonly yes`,
//! `appendfsync always`, its data directory kept across restarts).
//!
//! The load runs 60 s (the first 5 s without kills, to warm up); the server then stays up
//! while the last restart's recovery is seen (up to 10 s) and the streams drain (up to 20 s):
//! about 65 s in all, 90 s at most. A restart waits 300–800 ms after the kill, then for the
//! server to load its append-only file and answer `PING`.
//! `REDISX_SOAK_SECS=600 cargo test -p redisx-tests --test chaos_soak -- --nocapture`
//! runs a longer soak; `--nocapture` shows the figures.
//!
//! What must hold, whatever the kills:
//! - no panic, and no hang: every call returns within 5 s (the command timeout, 500 ms, plus
//!   the reconnect and the plugins' own waits of at most 1 s; a bound on hangs, not a
//!   performance figure);
//! - cache: `get_or_load`, `get` and `set` keep answering (from the loader or L1 while Redis is
//!   down): no error at all, as documented (they fail open);
//! - locks: the holders of one lock write their fencing token into a resource that accepts
//!   only a token greater than the last one: no refusal, and never two holders inside the
//!   section at once;
//! - rate limit: a fixed window of 20 per second on one key, checked from both runtimes (fail
//!   closed: an error admits nothing) never admits more than 20 in a window;
//! - streams: every message whose publish returned `Ok` is handled at least once by the
//!   group's consumers (one per runtime);
//! - idempotency: a key whose completion was stored (`complete` returned `Ok(true)`) is never
//!   claimed again: its duplicates replay;
//! - persistence: every stored idempotency completion is still in Redis at the end;
//! - every restart is followed by a call Redis answers (a recovery);
//! - the process's resident memory at the end is within `start + max(start, 64 MiB)` (at most
//!   twice the start, or 64 MiB more for a small start), the start measured after warm-up.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use redisx::idempotency::{Check, IdempotencyConfig, IdempotencyOptions};
use redisx::lock::{LockConfig, LockOptions};
use redisx::rate_limit::{Limit, RateLimitConfig};
use redisx::streams::{Message, StreamsConfig};
use redisx::{CacheConfig, Error, RedisX};
use redisx_tests::soak::{self, Chaos, DataDir, Plugin, Rng, Tally};
use redisx_tests::streams::{Job, quick_options};
use redisx_tests::{eventually, quick_connection, unique_prefix};
use tokio::task::JoinHandle;

/// The load time without `REDISX_SOAK_SECS`.
const DEFAULT_LOAD: Duration = Duration::from_secs(60);
/// The first part of the load, without kills, after which the start RSS is read.
const WARM_UP: Duration = Duration::from_secs(5);
/// No call may take longer (a hang).
const HANG: Duration = Duration::from_secs(5);
/// The rate limit: `LIMIT` per `WINDOW`.
const LIMIT: u64 = 20;
const WINDOW: Duration = Duration::from_secs(1);
/// How long the consumers get, after the load, to handle every published message.
const DRAIN: Duration = Duration::from_secs(20);
/// The resident memory may grow by its start or by this much, whichever is more.
const RSS_SLACK_KIB: u64 = 64 * 1024;

/// What the load checks, besides the [`Tally`].
#[derive(Default)]
struct Invariants {
    /// Lock holders inside the section now, and the times one entered while another was in.
    inside: AtomicUsize,
    double_holds: AtomicU64,
    /// The fenced resource: the last accepted token, and the writes accepted and refused.
    fence: Mutex<(u64, u64, u64)>,
    /// Admitted rate-limit checks per window (by the window's end, server time in µs).
    windows: Mutex<BTreeMap<u128, u64>>,
    /// Stream messages whose publish returned `Ok`, those handled, and all deliveries.
    published: Mutex<HashSet<u64>>,
    consumed: Mutex<HashSet<u64>>,
    deliveries: AtomicU64,
    /// Idempotency keys whose completion was stored, claims of such a key, and replays.
    completed: Mutex<HashSet<u64>>,
    reruns: AtomicU64,
    replays: AtomicU64,
}

impl Invariants {
    /// Writes `token` into the fenced resource: accepted only when greater than the last one.
    fn fenced_write(&self, token: u64) -> bool {
        let mut fence = self.fence.lock().unwrap();
        if token > fence.0 {
            fence.0 = token;
            fence.1 += 1;
            true
        } else {
            fence.2 += 1;
            false
        }
    }
}

/// What every worker shares: the runtime it uses, the tally, the invariants, the stop flag.
#[derive(Clone)]
struct Ctx {
    rx: RedisX,
    tally: Arc<Tally>,
    inv: Arc<Invariants>,
    running: Arc<AtomicBool>,
}

impl Ctx {
    fn running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }
}

/// A runtime with every plugin, on a connection with a 500 ms command timeout and a quick
/// reconnect; idempotency duplicates wait at most 1 s and a dead claim's lease is 2 s.
async fn runtime(url: &str, prefix: &str) -> RedisX {
    RedisX::builder()
        .client("default", quick_connection(url))
        .key_prefix(prefix)
        .cache(CacheConfig::default())
        .locks(LockConfig::default())
        .rate_limit(RateLimitConfig::default())
        .idempotency(
            IdempotencyConfig::default()
                .lock_ttl(Duration::from_secs(2))
                .wait(Duration::from_secs(1)),
        )
        .streams(StreamsConfig::default())
        .build()
        .await
        .expect("the runtime builds")
}

/// `get_or_load`, `set` and `get` on 50 keys, in turn.
async fn cache_worker(ctx: Ctx, id: u64) {
    let cache = ctx.rx.cache();
    let mut n = id;
    while ctx.running() {
        n += 1;
        let key = format!("item:{}", n % 50);
        let started = Instant::now();
        let r = match n % 3 {
            0 => cache
                .get_or_load(&key, None, || async move { Ok::<_, Error>(n) })
                .await
                .map(drop),
            1 => cache.set(&key, &n, None).await,
            _ => cache.get::<u64>(&key).await.map(drop),
        };
        ctx.tally.result(Plugin::Cache, started, false, &r);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

/// Takes the one lock, writes its fencing token into the fenced resource inside a short
/// section, releases it.
async fn lock_worker(ctx: Ctx) {
    let locks = ctx.rx.locks();
    let opts = LockOptions::new()
        .ttl(Duration::from_secs(3))
        .wait(Duration::from_secs(1));
    while ctx.running() {
        let started = Instant::now();
        let acquired = locks.acquire("fenced", &opts).await;
        ctx.tally.result(Plugin::Lock, started, true, &acquired);
        let Ok(guard) = acquired else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if ctx.inv.inside.fetch_add(1, Ordering::SeqCst) != 0 {
            ctx.inv.double_holds.fetch_add(1, Ordering::SeqCst);
        }
        ctx.inv.fenced_write(guard.fencing_token());
        tokio::time::sleep(Duration::from_millis(5)).await;
        ctx.inv.inside.fetch_sub(1, Ordering::SeqCst);
        let started = Instant::now();
        let released = guard.release().await;
        ctx.tally.result(Plugin::Lock, started, true, &released);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Checks the one fixed-window limit, counting the admitted checks per window.
async fn rate_worker(ctx: Ctx) {
    let limiter = ctx.rx.rate_limiter();
    let limit = Limit::fixed_window(LIMIT, WINDOW);
    while ctx.running() {
        let started = Instant::now();
        let r = limiter.check("soak", &limit).await;
        let local = r.as_ref().is_ok_and(|d| d.local);
        ctx.tally.result(Plugin::RateLimit, started, !local, &r);
        if let Ok(d) = r
            && d.allowed
        {
            let end = d.reset.duration_since(UNIX_EPOCH).unwrap_or_default();
            *ctx.inv
                .windows
                .lock()
                .unwrap()
                .entry(end.as_micros())
                .or_default() += 1;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

/// Publishes numbered messages, noting those whose publish returned `Ok`.
async fn producer(ctx: Ctx, numbers: Arc<AtomicU64>) {
    let streams = ctx.rx.streams();
    while ctx.running() {
        let n = numbers.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let r = streams.publish("soak", &Job { n }).await;
        ctx.tally.result(Plugin::Streams, started, true, &r);
        if r.is_ok() {
            ctx.inv.published.lock().unwrap().insert(n);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Starts the group's consumer `name` on `rx`, noting every message it handles.
async fn consumer(ctx: &Ctx, name: &str) -> redisx::streams::ConsumerHandle {
    let inv = ctx.inv.clone();
    let opts = quick_options("soak", name)
        .concurrency(4)
        .claim_idle(Duration::from_secs(2));
    let started = Instant::now();
    let handle = ctx
        .rx
        .streams()
        .consumer("soak", opts, move |m: Message<Job>| {
            let inv = inv.clone();
            async move {
                inv.deliveries.fetch_add(1, Ordering::Relaxed);
                inv.consumed.lock().unwrap().insert(m.payload().n);
                Ok::<_, Error>(())
            }
        })
        .start()
        .await;
    ctx.tally.result(Plugin::Streams, started, true, &handle);
    handle.expect("the consumer starts")
}

/// Runs idempotent operations, three calls per key over both runtimes: the first claims the
/// key and completes it, the others replay (or claim it again when no completion was stored).
async fn idempotency_worker(ctx: Ctx, tickets: Arc<AtomicU64>) {
    let idem = ctx.rx.idempotency();
    let opts = IdempotencyOptions::new();
    while ctx.running() {
        let k = tickets.fetch_add(1, Ordering::Relaxed) / 3;
        let key = format!("op:{k}");
        let started = Instant::now();
        let checked = idem.check_and_lock(&key, "fp", &opts).await;
        ctx.tally
            .result(Plugin::Idempotency, started, true, &checked);
        match checked {
            Ok(Check::New(claim)) => {
                if ctx.inv.completed.lock().unwrap().contains(&k) {
                    ctx.inv.reruns.fetch_add(1, Ordering::SeqCst);
                }
                let started = Instant::now();
                let done = idem.complete(claim, b"done").await;
                ctx.tally.result(Plugin::Idempotency, started, true, &done);
                if matches!(done, Ok(true)) {
                    ctx.inv.completed.lock().unwrap().insert(k);
                }
            }
            Ok(Check::Replay(_)) => {
                ctx.inv.replays.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Starts every worker on `ctx`'s runtime.
fn spawn_load(
    ctx: &Ctx,
    id: u64,
    numbers: &Arc<AtomicU64>,
    tickets: &Arc<AtomicU64>,
) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(cache_worker(ctx.clone(), id * 1_000_000)),
        tokio::spawn(cache_worker(ctx.clone(), id * 1_000_000 + 500_000)),
        tokio::spawn(lock_worker(ctx.clone())),
        tokio::spawn(lock_worker(ctx.clone())),
        tokio::spawn(rate_worker(ctx.clone())),
        tokio::spawn(rate_worker(ctx.clone())),
        tokio::spawn(producer(ctx.clone(), numbers.clone())),
        tokio::spawn(idempotency_worker(ctx.clone(), tickets.clone())),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_plugin_keeps_its_guarantees_while_redis_is_killed_and_restarted() {
    let load = soak::budget(DEFAULT_LOAD);
    assert!(
        load > WARM_UP,
        "REDISX_SOAK_SECS must exceed the {WARM_UP:?} warm-up"
    );
    let dir = DataDir::new();
    let server = soak::persistent_server(dir.path());
    let url = server.url();
    let prefix = unique_prefix("chaos_soak");
    let tally = Arc::new(Tally::default());
    let inv = Arc::new(Invariants::default());
    let running = Arc::new(AtomicBool::new(true));
    let mut ctxs = Vec::new();
    for _ in 0..2 {
        ctxs.push(Ctx {
            rx: runtime(&url, &prefix).await,
            tally: tally.clone(),
            inv: inv.clone(),
            running: running.clone(),
        });
    }
    let consumers = [consumer(&ctxs[0], "a").await, consumer(&ctxs[1], "b").await];
    let (numbers, tickets) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for (id, ctx) in (1..).zip(&ctxs) {
        workers.extend(spawn_load(ctx, id, &numbers, &tickets));
    }

    tokio::time::sleep(WARM_UP).await;
    let rss_start = soak::rss_kib();
    let rng = Rng::from_clock();
    println!(
        "soak: load {load:?} (warm-up {WARM_UP:?}), chaos seed {}",
        rng.seed()
    );
    let chaos = Chaos::start(server, tally.clone(), rng);
    tokio::time::sleep(load.saturating_sub(WARM_UP)).await;
    let server = chaos.stop().await;

    // The server stays up: the load goes on until the last restart's recovery is seen.
    let recovered = eventually(Duration::from_secs(10), Duration::from_millis(50), || {
        let tally = tally.clone();
        async move {
            tally
                .recovery
                .restarts()
                .iter()
                .all(|r| r.first_ok.is_some())
        }
    })
    .await;
    running.store(false, Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("a worker panicked");
    }
    // Every published message is handled (reclaimed from a lost read after 2 s idle).
    let drained = eventually(DRAIN, Duration::from_millis(100), || {
        let inv = inv.clone();
        async move {
            let consumed = inv.consumed.lock().unwrap();
            inv.published
                .lock()
                .unwrap()
                .iter()
                .all(|n| consumed.contains(n))
        }
    })
    .await;
    let rss_end = soak::rss_kib();
    // The server kept its data: every stored idempotency completion is still there.
    let mut vanished = 0;
    let keys: Vec<u64> = inv.completed.lock().unwrap().iter().copied().collect();
    for k in &keys {
        let record = ctxs[0].rx.idempotency().get(&format!("op:{k}")).await;
        if !matches!(record, Ok(Some(_))) {
            vanished += 1;
        }
    }

    for c in &consumers {
        c.stop().await;
    }
    for ctx in &ctxs {
        ctx.rx.shutdown().await;
    }
    drop(server);
    print_and_check(
        &tally,
        &inv,
        &End {
            rss: (rss_start, rss_end),
            recovered,
            drained,
            completed: keys.len(),
            vanished,
        },
    );
}

/// What the end of the soak measured, besides the tally and the invariants.
struct End {
    /// The resident memory after warm-up and at the end, in KiB.
    rss: (u64, u64),
    /// Every restart was followed by an answered call.
    recovered: bool,
    /// Every published message was handled within the drain period.
    drained: bool,
    /// Idempotency completions stored, and those no longer in Redis at the end.
    completed: usize,
    vanished: usize,
}

/// Prints the figures, then checks the guarantees.
fn print_and_check(tally: &Tally, inv: &Invariants, end: &End) {
    let restarts = tally.recovery.restarts();
    let times: Vec<Duration> = restarts.iter().filter_map(|r| r.first_ok).collect();
    let downs: Vec<Duration> = restarts.iter().map(|r| r.down).collect();
    println!(
        "soak: restarts {}, recoveries {}, down {:?}..{:?}",
        restarts.len(),
        times.len(),
        downs.iter().min().unwrap_or(&Duration::ZERO),
        downs.iter().max().unwrap_or(&Duration::ZERO)
    );
    println!("soak: time to first success after each restart: {times:.0?}");
    tally.print();
    let (_, accepted, refused) = *inv.fence.lock().unwrap();
    let double_holds = inv.double_holds.load(Ordering::SeqCst);
    println!(
        "soak: locks: fenced writes accepted {accepted}, refused {refused}, double holds {double_holds}"
    );
    let windows = inv.windows.lock().unwrap().clone();
    let busiest = windows.values().copied().max().unwrap_or(0);
    let full = windows.values().filter(|&&n| n == LIMIT).count();
    println!(
        "soak: rate limit: {} windows with admissions, {full} full, most admitted in one {busiest} (limit {LIMIT})",
        windows.len()
    );
    let (published, lost) = {
        let consumed = inv.consumed.lock().unwrap();
        let published = inv.published.lock().unwrap();
        let lost = published.iter().filter(|n| !consumed.contains(n)).count();
        println!(
            "soak: streams: published (Ok) {}, handled {}, deliveries {}, lost {lost}",
            published.len(),
            consumed.len(),
            inv.deliveries.load(Ordering::Relaxed)
        );
        (published.len(), lost)
    };
    let reruns = inv.reruns.load(Ordering::SeqCst);
    println!(
        "soak: idempotency: completions stored {}, replays {}, claims after a stored \
         completion {reruns}, stored records missing at the end {}",
        end.completed,
        inv.replays.load(Ordering::Relaxed),
        end.vanished
    );
    let (rss_start, rss_end) = end.rss;
    let rss_bound = rss_start + rss_start.max(RSS_SLACK_KIB);
    println!("soak: RSS start {rss_start} KiB, end {rss_end} KiB (bound {rss_bound} KiB)");

    assert!(!restarts.is_empty(), "the server was never restarted");
    assert!(
        end.recovered,
        "a restart was never followed by an answered call: {restarts:?}"
    );
    for plugin in [
        Plugin::Cache,
        Plugin::Lock,
        Plugin::RateLimit,
        Plugin::Streams,
        Plugin::Idempotency,
    ] {
        let max = tally.max_latency(plugin);
        assert!(max < HANG, "{plugin:?}: a call took {max:?}");
        assert!(tally.ok(plugin) > 0, "{plugin:?}: no call succeeded");
    }
    assert_eq!(
        tally.errors(Plugin::Cache),
        BTreeMap::new(),
        "the cache fails open"
    );
    assert_eq!(double_holds, 0, "two holders inside the section at once");
    assert_eq!(
        refused, 0,
        "a holder wrote a token not greater than the last one"
    );
    assert!(accepted > 0, "no lock holder wrote");
    assert!(full > 0, "no window was full: the limit was never reached");
    assert!(
        busiest <= LIMIT,
        "a window admitted {busiest} > {LIMIT}: {windows:?}"
    );
    assert!(published > 0, "no publish succeeded");
    assert!(
        end.drained && lost == 0,
        "{lost} acknowledged publishes were never handled"
    );
    assert!(end.completed > 0, "no idempotency completion was stored");
    assert_eq!(
        reruns, 0,
        "a key was claimed again after its completion was stored"
    );
    assert_eq!(
        end.vanished, 0,
        "stored completions were lost across the kills"
    );
    assert!(
        rss_end <= rss_bound,
        "RSS grew from {rss_start} KiB to {rss_end} KiB"
    );
}
