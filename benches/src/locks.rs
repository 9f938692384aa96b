//! The `locks` suite: `rx.locks()` against its raw Redis floor and the `rslock` crate.
//!
//! | bench | ours | floor | peers |
//! |---|---|---|---|
//! | `locks.acquire_release` | `rx.locks().acquire` + `LockGuard::release` with the default options (auto-renew on), one key, sequential | redis-rs `SET NX PX` + the compare-and-delete script (`EVALSHA`, loaded once) | `rslock` `lock` + `unlock` (not with `--cluster`); ours' own two scripts sent raw by redis-rs (the server's share of the fencing token and the waiters flag, without our client side); ours with auto-renew off |
//! | `locks.contended` | 64 tasks over 8 keys, each looping acquire → critical section → release, a fixed 1 ms retry without jitter | the same loop raw: `SET NX PX`, a 1 ms sleep after a failed attempt, the release script | `rslock` `acquire_no_guard` (its own retry: 3 attempts 0–200 ms apart, then again) + `unlock` |
//!
//! Every side talks to the same server over one multiplexed connection (ours through its
//! client, the floor through redis-rs, `rslock` through its own), with the same lock ttl (ours'
//! default) and a fresh random 128-bit owner token per acquisition.
//!
//! With `--cluster`, `locks.acquire_release` runs on the cluster (`cluster.locks.acquire_release`):
//! ours through its cluster client, the raw sides through redis-rs's cluster connection, every
//! lock key hash-tagged as ours tags it (`..lock:{bench:acquire_release}`, so ours and the floor
//! lock on the same master); `rslock` is left out (it cannot talk to a cluster). Ours' release
//! publishes its release message with a classic `PUBLISH`, which a cluster broadcasts to every
//! node: the side with ours' scripts sent raw pays it too, the plain floor does not.
//!
//! `locks.contended` costs the wall time of a round over the critical sections it completed.
//! A section yields to the runtime once while holding the lock, so that a second holder of the
//! same key, if a lock ever let one in, would run meanwhile and be caught by the key's flag:
//! the `overlaps` fields count those (they must be 0). Its lines also carry the mean
//! release-to-next-holder latency (`handoff_us`: from a holder leaving its section to the next
//! holder of the key entering it).

use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redisx::RedisX;
use redisx::lock::{LockOptions, Locks, RetryStrategy};

use crate::Context;
use crate::floor::{FloorConnection, load_script};
use crate::measure::{Comparison, Side, Unit, compare, emit};

/// Tasks of `locks.contended`.
const TASKS: u64 = 64;
/// Keys of `locks.contended`: task `t` locks key `t % KEYS`.
const KEYS: u64 = 8;
/// The fixed sleep after a failed attempt, for ours and the floor.
const RETRY: Duration = Duration::from_millis(1);
/// Ours' wait budget under contention: long enough never to give up.
const WAIT: Duration = Duration::from_secs(60);
/// The key of `locks.acquire_release`.
const KEY: &str = "bench:acquire_release";
/// The floor's release script.
const FLOOR_RELEASE: &str = include_str!("lua/floor_release.lua");
/// Ours' acquire and release scripts, sent raw by the fenced floor (the acquire after
/// `fence.lua`, as the runtime assembles it).
const OURS_ACQUIRE: &str = concat!(
    include_str!("../../redisx-runtime/src/lock/lua/fence.lua"),
    include_str!("../../redisx-runtime/src/lock/lua/acquire.lua")
);
const OURS_RELEASE: &str = include_str!("../../redisx-runtime/src/lock/lua/release.lua");

/// Runs the suite; returns every comparison, each already printed as a JSON line when its
/// bench finished.
pub(crate) async fn run(ctx: &Context) -> Vec<Comparison> {
    let rx = ctx.runtime(|b| b).await;
    let mut all = Vec::new();
    let mut done = |part: Vec<Comparison>| {
        part.iter().for_each(emit);
        all.extend(part);
    };
    if ctx.selected("locks.acquire_release") {
        done(acquire_release(ctx, &rx).await);
    }
    if ctx.selected("locks.contended") {
        done(contended(ctx, &rx).await);
    }
    rx.shutdown().await;
    all
}

/// Prints where a bench is, on stderr.
fn stage(what: &str) {
    eprintln!("locks: {what}");
}

/// A fresh owner token, made as ours makes its own (128 random bits in hex).
fn token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The lock ttl of every side: ours' default.
fn ttl(rx: &RedisX) -> Duration {
    rx.locks().config().default_ttl_value()
}

/// The raw floor: redis-rs on one multiplexed connection (a cluster connection with
/// `--cluster`).
#[derive(Clone)]
struct Floor {
    conn: FloorConnection,
    release_sha: Arc<str>,
    /// Ours' scripts, loaded for the fenced floor.
    fenced_acquire_sha: Arc<str>,
    fenced_release_sha: Arc<str>,
    ttl_ms: u64,
}

impl Floor {
    async fn new(ctx: &Context, ttl: Duration) -> Self {
        let mut conn = ctx.floor_connection().await;
        Self {
            release_sha: load_script(&mut conn, FLOOR_RELEASE).await,
            fenced_acquire_sha: load_script(&mut conn, OURS_ACQUIRE).await,
            fenced_release_sha: load_script(&mut conn, OURS_RELEASE).await,
            conn,
            ttl_ms: u64::try_from(ttl.as_millis()).expect("the ttl fits in u64 milliseconds"),
        }
    }

    /// The full key of lock `key` on the floor's side.
    fn key(ctx: &Context, key: &str) -> String {
        format!("{}floor:lock:{{{key}}}", ctx.prefix)
    }

    /// One `SET NX PX` attempt: the owner token when the lock was taken.
    async fn try_acquire(&mut self, key: &str) -> Option<String> {
        let token = token();
        let reply: redis::Value = redis::cmd("SET")
            .arg(key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(self.ttl_ms)
            .query_async(&mut self.conn)
            .await
            .expect("SET NX PX");
        matches!(reply, redis::Value::Okay).then_some(token)
    }

    /// One attempt with ours' acquire script (the lock and its fencing token), as a caller
    /// that will wait sends it: the owner token and the fencing token when the lock was taken.
    async fn try_acquire_fenced(&mut self, key: &str, fence: &str) -> Option<(String, u64)> {
        let token = token();
        let (won, value): (i64, u64) = redis::cmd("EVALSHA")
            .arg(&*self.fenced_acquire_sha)
            .arg(3)
            .arg(key)
            .arg(fence)
            .arg(format!("{key}:waiters"))
            .arg(&token)
            .arg(self.ttl_ms)
            .arg(self.ttl_ms + 3_600_000)
            .arg(1)
            .query_async(&mut self.conn)
            .await
            .expect("EVALSHA of ours' acquire script");
        (won == 1).then_some((token, value))
    }

    /// Ours' release script (the compare, the `DEL`, and the release message when a waiter
    /// flagged itself).
    async fn release_fenced(&mut self, key: &str, channel: &str, token: &str, fence: u64) -> bool {
        let n: i64 = redis::cmd("EVALSHA")
            .arg(&*self.fenced_release_sha)
            .arg(2)
            .arg(key)
            .arg(format!("{key}:waiters"))
            .arg(token)
            .arg(channel)
            .arg(fence)
            .query_async(&mut self.conn)
            .await
            .expect("EVALSHA of ours' release script");
        n == 1
    }

    /// The release script: whether the lock was still `token`'s.
    async fn release(&mut self, key: &str, token: &str) -> bool {
        let n: i64 = redis::cmd("EVALSHA")
            .arg(&*self.release_sha)
            .arg(1)
            .arg(key)
            .arg(token)
            .query_async(&mut self.conn)
            .await
            .expect("EVALSHA of the release script");
        n == 1
    }
}

/// The peer, on the same one server.
fn rslock(ctx: &Context) -> rslock::LockManager {
    rslock::LockManager::new(vec![ctx.url.clone()])
}

/// The full key of lock `key` on rslock's side.
fn rslock_key(ctx: &Context, key: &str) -> String {
    format!("{}rslock:{key}", ctx.prefix)
}

// ---------------------------------------------------------------------------------------------
// locks.acquire_release

async fn acquire_release(ctx: &Context, rx: &RedisX) -> Vec<Comparison> {
    stage("acquire_release: one key, uncontended, sequential");
    let ttl = ttl(rx);

    let ours = ours_sequential(
        "redisx acquire + release (auto-renew on)",
        rx.locks(),
        LockOptions::new(),
        KEY,
    );
    let ours_no_renew = ours_sequential(
        "redisx acquire + release, auto-renew off",
        rx.locks(),
        LockOptions::new().auto_renew(false),
        KEY,
    );
    let floor_side = {
        let (floor, key) = (Floor::new(ctx, ttl).await, Floor::key(ctx, KEY));
        Side::new("redis-rs SET NX PX + release EVALSHA", move |ops| {
            let (mut floor, key) = (floor.clone(), key.clone());
            async move {
                let start = Instant::now();
                for _ in 0..ops {
                    let token = floor.try_acquire(&key).await.expect("the key is free");
                    assert!(floor.release(&key, &token).await, "the floor lost its lock");
                }
                start.elapsed()
            }
        })
    };
    let fenced_side = {
        let floor = Floor::new(ctx, ttl).await;
        let key = Floor::key(ctx, "fenced");
        let (fence, channel) = (format!("{key}:fence"), format!("{key}:released"));
        Side::new("redis-rs, ours' acquire + release scripts", move |ops| {
            let (mut floor, key, fence, channel) =
                (floor.clone(), key.clone(), fence.clone(), channel.clone());
            async move {
                let start = Instant::now();
                for _ in 0..ops {
                    let (token, value) = floor
                        .try_acquire_fenced(&key, &fence)
                        .await
                        .expect("the key is free");
                    assert!(
                        floor.release_fenced(&key, &channel, &token, value).await,
                        "the fenced floor lost its lock"
                    );
                }
                start.elapsed()
            }
        })
    };
    let peer_side = ctx
        .peer_runs("locks.acquire_release", "the `rslock` peer")
        .then(|| {
            let (peer, key) = (rslock(ctx), rslock_key(ctx, KEY));
            Side::new("rslock lock + unlock", move |ops| {
                let (peer, key) = (peer.clone(), key.clone());
                async move {
                    let start = Instant::now();
                    for _ in 0..ops {
                        let lock = peer
                            .lock(key.as_bytes(), ttl)
                            .await
                            .unwrap_or_else(|e| panic!("rslock lock of a free key: {e}"));
                        peer.unlock(&lock).await;
                    }
                    start.elapsed()
                }
            })
        });
    let baselines = std::iter::once(floor_side)
        .chain(peer_side)
        .chain([fenced_side, ours_no_renew])
        .collect();
    compare(
        &ctx.bench_name("locks.acquire_release"),
        Unit::UsPerOp,
        &ctx.settings,
        ours,
        baselines,
    )
    .await
}

/// Ours, sequential: `ops` acquisitions of `key`, each released before the next.
fn ours_sequential(label: &str, locks: &Locks, opts: LockOptions, key: &'static str) -> Side {
    let locks = locks.clone();
    Side::new(label, move |ops| {
        let (locks, opts) = (locks.clone(), opts.clone());
        async move {
            let start = Instant::now();
            for _ in 0..ops {
                let guard = locks
                    .acquire(key, &opts)
                    .await
                    .unwrap_or_else(|e| panic!("redisx acquire of a free key: {e:#}"));
                guard
                    .release()
                    .await
                    .unwrap_or_else(|e| panic!("redisx release: {e:#}"));
            }
            start.elapsed()
        }
    })
}

// ---------------------------------------------------------------------------------------------
// locks.contended

/// What the tasks of one contended round share: a flag and a release time per key, and the
/// round's tallies.
struct Round {
    base: Instant,
    held: Vec<AtomicBool>,
    /// When the last holder of each key left its section, in ns since `base` plus one (0: none
    /// yet this round).
    left_at: Vec<AtomicU64>,
    sections: AtomicU64,
    overlaps: AtomicU64,
    handoff_ns: AtomicU64,
    handoffs: AtomicU64,
}

impl Round {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            held: (0..KEYS).map(|_| AtomicBool::new(false)).collect(),
            left_at: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
            sections: AtomicU64::new(0),
            overlaps: AtomicU64::new(0),
            handoff_ns: AtomicU64::new(0),
            handoffs: AtomicU64::new(0),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The critical section of key `k`, entered holding its lock: counts the handoff from the
    /// previous holder, checks and sets the key's flag, bumps `counter`, yields once, clears
    /// the flag.
    async fn section(&self, k: usize, counter: &mut u64) {
        let now = self.now();
        let left = self.left_at[k].load(Ordering::SeqCst);
        if left != 0 {
            self.handoff_ns
                .fetch_add(now.saturating_sub(left - 1), Ordering::Relaxed);
            self.handoffs.fetch_add(1, Ordering::Relaxed);
        }
        if self.held[k].swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        *counter += 1;
        tokio::task::yield_now().await;
        self.held[k].store(false, Ordering::SeqCst);
        self.sections.fetch_add(1, Ordering::SeqCst);
        self.left_at[k].store(self.now() + 1, Ordering::SeqCst);
    }
}

/// The tallies of one side over all its rounds (calibration included).
#[derive(Default)]
struct Totals {
    sections: u64,
    overlaps: u64,
    handoff_ns: u64,
    handoffs: u64,
}

impl Totals {
    #[allow(
        clippy::cast_precision_loss,
        reason = "the figures stay far below 2^52"
    )]
    fn handoff_us(&self) -> f64 {
        let us = self.handoff_ns as f64 / 1e3 / self.handoffs.max(1) as f64;
        (us * 10.0).round() / 10.0
    }
}

/// A contended side: each run spawns [`TASKS`] tasks, task `t` running `task(t % KEYS, round,
/// sections)` for its share of the `ops` sections, and returns the wall time of them all.
fn contended_side<F, Fut>(label: &str, totals: &Rc<RefCell<Totals>>, task: F) -> Side
where
    F: Fn(usize, Arc<Round>, u64) -> Fut + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let totals = Rc::clone(totals);
    let label_owned = label.to_owned();
    let task = Rc::new(task);
    Side::new(label, move |ops| {
        let (totals, task, label) = (Rc::clone(&totals), Rc::clone(&task), label_owned.clone());
        async move {
            let round = Round::new();
            let start = Instant::now();
            let handles: Vec<_> = (0..TASKS)
                .map(|t| {
                    let share = ops / TASKS + u64::from(t < ops % TASKS);
                    #[allow(clippy::cast_possible_truncation, reason = "t % KEYS < 8")]
                    let k = (t % KEYS) as usize;
                    tokio::spawn(task(k, Arc::clone(&round), share))
                })
                .collect();
            for h in handles {
                h.await
                    .unwrap_or_else(|e| panic!("a task of {label} failed: {e}"));
            }
            let elapsed = start.elapsed();
            let sections = round.sections.load(Ordering::SeqCst);
            assert_eq!(sections, ops, "{label}: sections completed");
            let mut t = totals.borrow_mut();
            t.sections += sections;
            t.overlaps += round.overlaps.load(Ordering::SeqCst);
            t.handoff_ns += round.handoff_ns.load(Ordering::SeqCst);
            t.handoffs += round.handoffs.load(Ordering::SeqCst);
            elapsed
        }
    })
}

/// The names of the contended keys, rendered by `full` for one side.
fn contended_keys(full: impl Fn(&str) -> String) -> Arc<Vec<String>> {
    Arc::new(
        (0..KEYS)
            .map(|k| full(&format!("bench:contended:{k}")))
            .collect(),
    )
}

async fn contended(ctx: &Context, rx: &RedisX) -> Vec<Comparison> {
    stage("contended: 64 tasks over 8 keys, acquire → section → release");
    let ttl = ttl(rx);
    let totals: Vec<Rc<RefCell<Totals>>> = (0..3).map(|_| Rc::default()).collect();
    let ours = ours_contended(rx, &totals[0]);
    let floor_side = floor_contended(ctx, ttl, &totals[1]).await;
    let peer_side = peer_contended(ctx, ttl, &totals[2]);
    let result = compare(
        "locks.contended",
        Unit::UsPerOp,
        &ctx.settings,
        ours,
        vec![floor_side, peer_side],
    )
    .await;
    let ours_totals = totals[0].borrow();
    result
        .into_iter()
        .zip(&totals[1..])
        .map(|(c, base)| {
            let base = base.borrow();
            c.with("overlaps", ours_totals.overlaps)
                .with("baseline_overlaps", base.overlaps)
                .with("handoff_us", ours_totals.handoff_us())
                .with("baseline_handoff_us", base.handoff_us())
                .with("sections", ours_totals.sections)
                .with("baseline_sections", base.sections)
                .with("tasks", TASKS)
                .with("keys", KEYS)
        })
        .collect()
}

/// Ours under contention: a fixed 1 ms retry without jitter, as the floor sleeps.
fn ours_contended(rx: &RedisX, totals: &Rc<RefCell<Totals>>) -> Side {
    let locks = rx.locks().clone();
    let keys = contended_keys(str::to_owned);
    let opts = LockOptions::new()
        .retry(RetryStrategy::Fixed(RETRY))
        .jitter(false)
        .wait(WAIT);
    contended_side(
        "redisx acquire + release, fixed 1 ms retry",
        totals,
        move |k, round, n| {
            let (locks, key, opts) = (locks.clone(), keys[k].clone(), opts.clone());
            async move {
                let mut count = 0;
                for _ in 0..n {
                    let guard = locks
                        .acquire(&key, &opts)
                        .await
                        .unwrap_or_else(|e| panic!("redisx acquire under contention: {e:#}"));
                    round.section(k, &mut count).await;
                    guard
                        .release()
                        .await
                        .unwrap_or_else(|e| panic!("redisx release: {e:#}"));
                }
                black_box(count);
            }
        },
    )
}

/// The raw floor loop: `SET NX PX` until taken, 1 ms apart; the release script.
async fn floor_contended(ctx: &Context, ttl: Duration, totals: &Rc<RefCell<Totals>>) -> Side {
    let floor = Floor::new(ctx, ttl).await;
    let keys = contended_keys(|key| Floor::key(ctx, key));
    contended_side(
        "raw SET NX PX loop, 1 ms sleep + release EVALSHA",
        totals,
        move |k, round, n| {
            let (mut floor, key) = (floor.clone(), keys[k].clone());
            async move {
                let mut count = 0;
                for _ in 0..n {
                    let token = loop {
                        if let Some(token) = floor.try_acquire(&key).await {
                            break token;
                        }
                        tokio::time::sleep(RETRY).await;
                    };
                    round.section(k, &mut count).await;
                    assert!(floor.release(&key, &token).await, "the floor lost its lock");
                }
                black_box(count);
            }
        },
    )
}

/// The peer with its own retry (the defaults a user gets).
fn peer_contended(ctx: &Context, ttl: Duration, totals: &Rc<RefCell<Totals>>) -> Side {
    let peer = rslock(ctx);
    let keys = contended_keys(|key| rslock_key(ctx, key));
    contended_side(
        "rslock acquire_no_guard + unlock",
        totals,
        move |k, round, n| {
            let (peer, key) = (peer.clone(), keys[k].clone());
            async move {
                let mut count = 0;
                for _ in 0..n {
                    let lock = peer
                        .acquire_no_guard(key.as_bytes(), ttl)
                        .await
                        .unwrap_or_else(|e| panic!("rslock acquire_no_guard: {e}"));
                    round.section(k, &mut count).await;
                    peer.unlock(&lock).await;
                }
                black_box(count);
            }
        },
    )
}
