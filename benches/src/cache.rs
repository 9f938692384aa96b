//! The `cache` suite: `#[cached]` and the cache service against their floors and peers.
//!
//! | bench | ours | floor | peers |
//! |---|---|---|---|
//! | `cache.l1_hit` | `#[redisx::cached]` hit, 100k keys in L1, random order (a fresh shuffle per pass) | `quick_cache` get + clone | `cached` `#[cached]` async hit, `moka` get + clone |
//! | `cache.l1_hit_cycle` | the same, in one shuffle repeated (the order of earlier runs) | the same | the same |
//! | `cache.l1_hit_owned` | the same with owned values (a deep clone per hit) | the same | the same |
//! | `cache.l1_hit_mt` | the same, one task per core on a multi-thread runtime | the same | `cached` |
//! | `cache.l1_hit_scoped` | the same hit without `runtime = ...`, inside `rx.scope(..)` | the same with no scope (installed runtime) | the same with `runtime = rx` (see `cache_scope.rs`) |
//! | `cache.l2_hit` | `#[redisx::cached(mode = "l2_only")]` hit | redis-rs `GET` + bincode decode | `cached` `AsyncRedisCache` hit |
//! | `cache.miss` | `Cache::get_or_load` on fresh keys | `GET` miss + `SET PX` | `cached` `AsyncRedisCache` get + set; our own protocol sent raw through redis-rs |
//! | `cache.stampede` | 1000 concurrent `get_or_load` callers over two runtimes | one loader call | — |
//!
//! Every side uses the same value type ([`User`], about 100 bytes), the same key count and the
//! same (seeded, random) access order; Redis sides use one multiplexed connection, like ours.

use std::cell::Cell;
use std::hint::black_box;
use std::io::Write as _;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cached::{ConcurrentCachedAsync as _, proc_macro::cached as peer_cached};
use rand::SeedableRng as _;
use rand::seq::SliceRandom as _;
use redis::aio::MultiplexedConnection;
use redisx::{CacheConfig, RedisX};
use serde::{Deserialize, Serialize};

use crate::measure::{Comparison, Settings, Side, Unit, compare, emit, time_sync};
use crate::{Context, unpin_current_thread};

/// Keys of the L1 benches.
pub(crate) const L1_KEYS: u64 = 100_000;
/// Keys of the L2 benches (Redis round trips dominate; the key count barely matters there).
const L2_KEYS: u64 = 10_000;
/// Capacity of every in-process cache: all keys fit, nothing is evicted while measuring.
const CAPACITY: usize = 300_000;
/// TTL of every entry written by the suite.
const TTL: Duration = Duration::from_secs(3600);
/// Concurrent callers of the stampede bench.
const STAMPEDE_CALLERS: u64 = 1000;
/// How long the stampede loader takes (tokio timers have 1 ms granularity).
const LOADER_TIME: Duration = Duration::from_millis(20);

/// The cached value: no `Arc` inside, about 100 bytes with its strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct User {
    id: u64,
    name: String,
    email: String,
}

/// The value every side stores under index `i`.
pub(crate) fn user(i: u64) -> User {
    User {
        id: i,
        name: format!("User Number {i:08} Lovelace-Babbage"),
        email: format!("user.{i:08}@bench.redisx.example.com"),
    }
}

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Passes over the keys in an L1 access order ([`random_order`]): 800k indices, read in
/// sequence by every side.
pub(crate) const L1_PASSES: u64 = 8;

/// `passes` passes over `0..n`, each in its own seeded random order, shared by every side of a
/// bench: every key is read equally often, in an order that no cache can predict.
///
/// One permutation repeated would not do for the L1 benches: after one pass, an LRU list is
/// in access order, so the least recently used key, the one read next, has as its neighbour
/// the key read after it, and the unlink of each hit loads the node of the next hit into the
/// CPU cache. `cached`'s `SizedCache` is such a list; reading 100k keys in one repeated
/// permutation made its hits about 20 % cheaper than in fresh passes, while the other sides
/// did not move (`cache.l1_hit_cycle` keeps that order, for comparison).
pub(crate) fn random_order(n: u64, passes: u64, seed: u64) -> Arc<Vec<u64>> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut order = Vec::new();
    for _ in 0..passes.max(1) {
        let mut pass: Vec<u64> = (0..n).collect();
        pass.shuffle(&mut rng);
        order.extend(pass);
    }
    Arc::new(order)
}

/// Index into an access order: wraps around.
pub(crate) fn at(order: &[u64], n: u64) -> u64 {
    let len = order.len() as u64;
    #[allow(
        clippy::cast_possible_truncation,
        reason = "n % len < len = order.len(), which fits in usize"
    )]
    order[(n % len) as usize]
}

// ---------------------------------------------------------------------------------------------
// The functions under test.

/// Ours, L1 + L2: the hit path is the synchronous L1 probe of the expansion.
#[redisx::cached(key = "bench:{i}", ttl = "1h", runtime = rx)]
async fn ours_l1(rx: &RedisX, i: u64) -> User {
    user(i)
}

/// Ours with an `Arc` value (how a service caches anything bigger than a few fields): a hit
/// clones the `Arc`, not the `User`.
#[redisx::cached(key = "bench:arc:{i}", ttl = "1h", runtime = rx)]
async fn ours_l1_arc(rx: &RedisX, i: u64) -> Arc<User> {
    Arc::new(user(i))
}

/// Ours, L2 only: every hit is a `GET` and a decode.
#[redisx::cached(key = "bench:l2:{i}", ttl = "1h", mode = "l2_only", runtime = rx)]
async fn ours_l2(rx: &RedisX, i: u64) -> User {
    user(i)
}

/// The `cached` crate's async `#[cached]` with the same key (a `String` built from the same
/// template: the crate needs an owned key, so it formats one per call) and value types.
#[allow(
    clippy::unused_async,
    reason = "the async form of the peer's #[cached] is what is measured"
)]
#[peer_cached(
    max_size = 200_000,
    key = "String",
    convert = r#"{ format!("bench:{i}") }"#,
    companions = false
)]
async fn peer_l1(i: u64) -> User {
    user(i)
}

/// The peer with the same `Arc` value as [`ours_l1_arc`].
#[allow(
    clippy::unused_async,
    reason = "the async form of the peer's #[cached] is what is measured"
)]
#[peer_cached(
    max_size = 200_000,
    key = "String",
    convert = r#"{ format!("bench:{i}") }"#,
    companions = false
)]
async fn peer_l1_arc(i: u64) -> Arc<User> {
    Arc::new(user(i))
}

/// The value type of an L1 bench: what each side returns on a hit.
trait L1Value: Clone + Send + Sync + 'static {
    /// Ours: the `#[redisx::cached]` function.
    fn ours(rx: &RedisX, i: u64) -> impl Future<Output = Self> + Send + '_;
    /// The `cached` crate's `#[cached]` function.
    fn peer(i: u64) -> impl Future<Output = Self> + Send;
    /// What the floor hands out for a hit on its `Arc<User>` entry.
    fn from_floor(hit: &Arc<User>) -> Self;
}

/// `Arc<User>` values: a hit costs the cache's own work plus an `Arc` clone.
impl L1Value for Arc<User> {
    fn ours(rx: &RedisX, i: u64) -> impl Future<Output = Self> + Send + '_ {
        ours_l1_arc(rx, i)
    }
    fn peer(i: u64) -> impl Future<Output = Self> + Send {
        peer_l1_arc(i)
    }
    fn from_floor(hit: &Arc<User>) -> Self {
        Arc::clone(hit)
    }
}

/// Owned `User` values: every side also pays a deep clone (two `String`s) per hit.
impl L1Value for User {
    fn ours(rx: &RedisX, i: u64) -> impl Future<Output = Self> + Send + '_ {
        ours_l1(rx, i)
    }
    fn peer(i: u64) -> impl Future<Output = Self> + Send {
        peer_l1(i)
    }
    fn from_floor(hit: &Arc<User>) -> Self {
        User::clone(hit)
    }
}

// ---------------------------------------------------------------------------------------------

/// Runs the suite; returns every comparison, each already printed as a JSON line when its
/// bench finished (so that an interrupted run still reports what it measured).
pub(crate) async fn run(ctx: &Context) -> Vec<Comparison> {
    let rx = runtime(ctx).await;
    let mut all = Vec::new();
    let mut done = |part: Vec<Comparison>| {
        part.iter().for_each(emit);
        all.extend(part);
    };
    if ctx.selected("cache.l1_hit") {
        done(l1_hit::<Arc<User>>(ctx, &rx, "cache.l1_hit", L1_PASSES).await);
    }
    if ctx.selected("cache.l1_hit_cycle") {
        done(l1_hit::<Arc<User>>(ctx, &rx, "cache.l1_hit_cycle", 1).await);
    }
    if ctx.selected("cache.l1_hit_owned") {
        done(l1_hit::<User>(ctx, &rx, "cache.l1_hit_owned", L1_PASSES).await);
    }
    if ctx.selected("cache.l1_hit_scoped") {
        done(crate::cache_scope::l1_hit_scoped(ctx, &rx).await);
    }
    if ctx.selected("cache.l1_hit_mt") {
        done(l1_hit_mt(ctx, &rx).await);
    }
    if ctx.selected("cache.l2_hit") {
        done(l2_hit(ctx, &rx).await);
    }
    if ctx.selected("cache.miss") {
        done(miss(ctx, &rx).await);
    }
    if ctx.selected("cache.stampede") {
        done(stampede(ctx).await);
    }
    rx.shutdown().await;
    all
}

async fn runtime(ctx: &Context) -> RedisX {
    ctx.runtime(|b| {
        b.cache(
            CacheConfig::default()
                .l1_max_entries(CAPACITY)
                .l1_ttl(TTL)
                .default_ttl(TTL),
        )
    })
    .await
}

async fn connection(ctx: &Context) -> MultiplexedConnection {
    redis::Client::open(ctx.url.as_str())
        .expect("the Redis URL is valid")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("cannot connect redis-rs to {}: {e}", ctx.url))
}

async fn peer_redis_cache(ctx: &Context, name: &str) -> cached::AsyncRedisCache<String, User> {
    cached::AsyncRedisCache::builder(name)
        .namespace(&ctx.prefix)
        .connection_string(&ctx.url)
        .ttl(TTL)
        .build()
        .await
        .unwrap_or_else(|e| panic!("cannot build cached's AsyncRedisCache: {e}"))
}

/// Prints where a bench is, on stderr.
pub(crate) fn stage(what: &str) {
    eprintln!("cache: {what}");
}

// ---------------------------------------------------------------------------------------------
// cache.l1_hit

/// `bench`: the name to report; `passes`: of the access order ([`random_order`]).
async fn l1_hit<V: L1Value>(
    ctx: &Context,
    rx: &RedisX,
    bench: &str,
    passes: u64,
) -> Vec<Comparison> {
    stage(&format!("{bench}: warming 100k keys in every cache"));
    let order = random_order(L1_KEYS, passes, 1);
    for i in 0..L1_KEYS {
        black_box(V::ours(rx, i).await);
        black_box(V::peer(i).await);
    }
    let floor: Arc<quick_cache::sync::Cache<String, Arc<User>>> =
        Arc::new(quick_cache::sync::Cache::new(CAPACITY));
    let moka: moka::sync::Cache<String, Arc<User>> = moka::sync::Cache::new(CAPACITY as u64);
    for i in 0..L1_KEYS {
        floor.insert(format!("bench:{i}"), Arc::new(user(i)));
        moka.insert(format!("bench:{i}"), Arc::new(user(i)));
    }
    moka.run_pending_tasks();
    let before = rx.cache().stats();

    let ours = {
        let (rx, order) = (rx.clone(), Arc::clone(&order));
        Side::new("redisx #[cached] L1 hit", move |ops| {
            let (rx, order) = (rx.clone(), Arc::clone(&order));
            async move {
                let start = Instant::now();
                for n in 0..ops {
                    black_box(V::ours(&rx, at(&order, n)).await);
                }
                start.elapsed()
            }
        })
    };
    let floor_side = {
        let (floor, order) = (Arc::clone(&floor), Arc::clone(&order));
        Side::new("quick_cache get + clone", move |ops| {
            let d = time_sync(ops, |n| {
                let mut buf = [0; KEY_BUF];
                let hit = floor
                    .get(stack_key(&mut buf, at(&order, n)))
                    .expect("warmed");
                black_box(V::from_floor(&hit));
            });
            async move { d }
        })
    };
    let peer_side = {
        let order = Arc::clone(&order);
        Side::new("cached #[cached] async hit", move |ops| {
            let order = Arc::clone(&order);
            async move {
                let start = Instant::now();
                for n in 0..ops {
                    black_box(V::peer(at(&order, n)).await);
                }
                start.elapsed()
            }
        })
    };
    let moka_side = {
        let (moka, order) = (moka.clone(), Arc::clone(&order));
        Side::new("moka get + clone", move |ops| {
            let d = time_sync(ops, |n| {
                let mut buf = [0; KEY_BUF];
                let hit = moka
                    .get(stack_key(&mut buf, at(&order, n)))
                    .expect("warmed");
                black_box(V::from_floor(&hit));
            });
            async move { d }
        })
    };
    let result = compare(
        bench,
        Unit::NsPerOp,
        &ctx.settings,
        ours,
        vec![floor_side, peer_side, moka_side],
    )
    .await;
    check_only_l1(rx, before, bench);
    result
}

/// Room for `bench:` and any `u64`.
const KEY_BUF: usize = 32;

/// Renders `bench:{i}` into a stack buffer: the floors' key.
///
/// Ours renders its key template through a hashing writer, without allocating, on an L1 hit.
/// The floors do the same work: format the same template (through `fmt`, like ours) but into a
/// stack buffer, then hash and compare. A `format!` per lookup (about 55 ns) would make the floor
/// do more than ours, and looking up pre-built `String`s would add a random memory access to
/// a scattered key that ours does not make; either would flatter our ratio.
fn stack_key(buf: &mut [u8; KEY_BUF], i: u64) -> &str {
    let mut cursor: &mut [u8] = &mut buf[..];
    write!(cursor, "bench:{i}").expect("a u64 key fits in the buffer");
    let len = KEY_BUF - cursor.len();
    std::str::from_utf8(&buf[..len]).expect("the key is ASCII")
}

/// Warns when an L1 bench touched Redis (its figures would not be L1 hits).
pub(crate) fn check_only_l1(rx: &RedisX, before: redisx::CacheStats, bench: &str) {
    let after = rx.cache().stats();
    let l2 = (after.l2_hits + after.l2_misses) - (before.l2_hits + before.l2_misses);
    if l2 > 0 || after.loads > before.loads {
        eprintln!(
            "warning: {bench}: {l2} L2 lookups and {} loads while measuring L1 hits",
            after.loads - before.loads
        );
    }
}

// ---------------------------------------------------------------------------------------------
// cache.l1_hit_mt

/// A multi-thread runtime owned inside an async context: dropping a `Runtime` there would
/// panic (it blocks), so it is shut down in the background.
struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl BackgroundRuntime {
    fn get(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `tasks` tasks on `mt`, each doing its share of `ops` operations starting at a different
/// place of the order, and returns the wall time of the whole run.
async fn spread<F, Fut>(mt: &tokio::runtime::Runtime, tasks: u64, ops: u64, task: F) -> Duration
where
    F: Fn(u64, u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let share = ops.div_ceil(tasks);
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| mt.spawn(task(t * 7919, share)))
        .collect();
    for h in handles {
        h.await.expect("a benchmark task panicked");
    }
    start.elapsed()
}

/// A side that spreads `ops` over `tasks` tasks of the multi-thread runtime; `task(offset, n)`
/// makes the future of one task (`n` operations from `offset` in the access order).
fn mt_side<F, Fut>(label: &str, mt: &Rc<BackgroundRuntime>, tasks: u64, task: F) -> Side
where
    F: Fn(u64, u64) -> Fut + Clone + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mt = Rc::clone(mt);
    Side::new(label, move |ops| {
        let (mt, task) = (Rc::clone(&mt), task.clone());
        async move { spread(mt.get(), tasks, ops, task).await }
    })
}

async fn l1_hit_mt(ctx: &Context, rx: &RedisX) -> Vec<Comparison> {
    let threads = ctx.cores.max(1);
    stage(&format!(
        "l1_hit_mt: {threads} worker threads on a multi-thread runtime"
    ));
    let unpin = ctx.all_cpus.clone();
    let mt = Rc::new(BackgroundRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .on_thread_start(move || {
                if let Some(cpus) = &unpin {
                    unpin_current_thread(cpus);
                }
            })
            .build()
            .expect("a multi-thread runtime"),
    )));
    let order = random_order(L1_KEYS, L1_PASSES, 2);
    let floor: Arc<quick_cache::sync::Cache<String, Arc<User>>> =
        Arc::new(quick_cache::sync::Cache::new(CAPACITY));
    for i in 0..L1_KEYS {
        floor.insert(format!("bench:{i}"), Arc::new(user(i)));
        // Warm (no-ops when cache.l1_hit ran first).
        black_box(ours_l1_arc(rx, i).await);
        black_box(peer_l1_arc(i).await);
    }
    let before = rx.cache().stats();
    let tasks = threads as u64;

    let ours = {
        let (rx, order) = (rx.clone(), Arc::clone(&order));
        mt_side(
            "redisx #[cached] L1 hit",
            &mt,
            tasks,
            move |offset, share| {
                let (rx, order) = (rx.clone(), Arc::clone(&order));
                async move {
                    for n in offset..offset + share {
                        black_box(ours_l1_arc(&rx, at(&order, n)).await);
                    }
                }
            },
        )
    };
    let floor_side = {
        let (floor, order) = (Arc::clone(&floor), Arc::clone(&order));
        mt_side(
            "quick_cache get + clone",
            &mt,
            tasks,
            move |offset, share| {
                let (floor, order) = (Arc::clone(&floor), Arc::clone(&order));
                async move {
                    for n in offset..offset + share {
                        let mut buf = [0; KEY_BUF];
                        let hit = floor
                            .get(stack_key(&mut buf, at(&order, n)))
                            .expect("warmed");
                        black_box(Arc::clone(&hit));
                    }
                }
            },
        )
    };
    let peer_side = {
        let order = Arc::clone(&order);
        mt_side(
            "cached #[cached] async hit",
            &mt,
            tasks,
            move |offset, share| {
                let order = Arc::clone(&order);
                async move {
                    for n in offset..offset + share {
                        black_box(peer_l1_arc(at(&order, n)).await);
                    }
                }
            },
        )
    };
    let result = compare(
        "cache.l1_hit_mt",
        Unit::NsPerOp,
        &ctx.settings,
        ours,
        vec![floor_side, peer_side],
    )
    .await;
    check_only_l1(rx, before, "cache.l1_hit_mt");
    let threads_value = u64::try_from(threads).unwrap_or(u64::MAX);
    result
        .into_iter()
        .map(|c| c.with("threads", threads_value))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// cache.l2_hit

async fn l2_hit(ctx: &Context, rx: &RedisX) -> Vec<Comparison> {
    stage("l2_hit: writing 10k keys for every side");
    let order = random_order(L2_KEYS, 1, 3);
    let mut conn = connection(ctx).await;
    let peer = peer_redis_cache(ctx, "l2").await;
    let floor_prefix = format!("{}floor:l2:", ctx.prefix);
    for i in 0..L2_KEYS {
        black_box(ours_l2(rx, i).await); // a miss: loads and writes L2 only
        let bytes = bincode::serde::encode_to_vec(user(i), bincode_config()).expect("encodes");
        let () = redis::cmd("SET")
            .arg(format!("{floor_prefix}{i}"))
            .arg(bytes)
            .arg("PX")
            .arg(ttl_ms())
            .query_async(&mut conn)
            .await
            .expect("SET");
        let _ = peer
            .async_cache_set(format!("bench:l2:{i}"), user(i))
            .await
            .expect("cached set");
    }
    let before = rx.cache().stats();

    let ours = {
        let (rx, order) = (rx.clone(), Arc::clone(&order));
        Side::new("redisx #[cached] L2 hit", move |ops| {
            let (rx, order) = (rx.clone(), Arc::clone(&order));
            async move {
                let start = Instant::now();
                for n in 0..ops {
                    black_box(ours_l2(&rx, at(&order, n)).await);
                }
                start.elapsed()
            }
        })
    };
    let floor_side = {
        let (conn, order, prefix) = (conn.clone(), Arc::clone(&order), floor_prefix.clone());
        Side::new("redis-rs GET + bincode decode", move |ops| {
            let (mut conn, order, prefix) = (conn.clone(), Arc::clone(&order), prefix.clone());
            async move {
                let start = Instant::now();
                for n in 0..ops {
                    // The key is rendered per call, as ours renders its template per call.
                    let key = format!("{prefix}{}", at(&order, n));
                    let bytes: Vec<u8> = redis::cmd("GET")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .expect("GET");
                    let (u, _): (User, usize) =
                        bincode::serde::decode_from_slice(&bytes, bincode_config())
                            .expect("decodes");
                    black_box(u);
                }
                start.elapsed()
            }
        })
    };
    let peer_side = {
        let (peer, order) = (peer.clone(), Arc::clone(&order));
        Side::new("cached AsyncRedisCache hit", move |ops| {
            let (peer, order) = (peer.clone(), Arc::clone(&order));
            async move {
                let start = Instant::now();
                for n in 0..ops {
                    let key = format!("bench:l2:{}", at(&order, n));
                    black_box(
                        peer.async_cache_get(&key)
                            .await
                            .expect("cached get")
                            .expect("hit"),
                    );
                }
                start.elapsed()
            }
        })
    };
    let result = compare(
        "cache.l2_hit",
        Unit::UsPerOp,
        &ctx.settings,
        ours,
        vec![floor_side, peer_side],
    )
    .await;
    let after = rx.cache().stats();
    if after.loads > before.loads || after.l2_misses > before.l2_misses {
        eprintln!(
            "warning: cache.l2_hit: {} loads and {} L2 misses while measuring L2 hits",
            after.loads - before.loads,
            after.l2_misses - before.l2_misses
        );
    }
    result
}

fn ttl_ms() -> u64 {
    u64::try_from(TTL.as_millis()).expect("the ttl fits in u64 milliseconds")
}

// ---------------------------------------------------------------------------------------------
// cache.miss

async fn miss(ctx: &Context, rx: &RedisX) -> Vec<Comparison> {
    stage("miss: fresh keys on every call");
    // Every call of every side uses a key nobody used before.
    let fresh = Rc::new(Cell::new(0_u64));
    let conn = connection(ctx).await;
    let peer = peer_redis_cache(ctx, "miss").await;

    let ours = {
        let (rx, fresh) = (rx.clone(), Rc::clone(&fresh));
        Side::new("redisx Cache::get_or_load miss", move |ops| {
            let (rx, fresh) = (rx.clone(), Rc::clone(&fresh));
            async move {
                let first = fresh.get();
                fresh.set(first + ops);
                let start = Instant::now();
                for i in first..first + ops {
                    let key = format!("miss:ours:{i}");
                    let u: Result<User, redisx::Error> = rx
                        .cache()
                        .get_or_load(&key, Some(TTL), || async move { Ok(user(i)) })
                        .await;
                    let _ = black_box(u);
                }
                start.elapsed()
            }
        })
    };
    let floor_side = {
        let (conn, fresh, prefix) = (conn.clone(), Rc::clone(&fresh), ctx.prefix.clone());
        Side::new("GET miss + SET PX", move |ops| {
            let (mut conn, fresh, prefix) = (conn.clone(), Rc::clone(&fresh), prefix.clone());
            async move {
                let first = fresh.get();
                fresh.set(first + ops);
                let start = Instant::now();
                for i in first..first + ops {
                    let key = format!("{prefix}floor:miss:{i}");
                    let got: Option<Vec<u8>> = redis::cmd("GET")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .expect("GET");
                    assert!(got.is_none(), "the floor's key {key} was not fresh");
                    let u = user(i);
                    let bytes =
                        bincode::serde::encode_to_vec(&u, bincode_config()).expect("encodes");
                    let () = redis::cmd("SET")
                        .arg(&key)
                        .arg(bytes)
                        .arg("PX")
                        .arg(ttl_ms())
                        .query_async(&mut conn)
                        .await
                        .expect("SET");
                    black_box(u);
                }
                start.elapsed()
            }
        })
    };
    let peer_side = {
        let (peer, fresh) = (peer.clone(), Rc::clone(&fresh));
        Side::new("cached AsyncRedisCache get + set", move |ops| {
            let (peer, fresh) = (peer.clone(), Rc::clone(&fresh));
            async move {
                let first = fresh.get();
                fresh.set(first + ops);
                let start = Instant::now();
                for i in first..first + ops {
                    let key = format!("miss:{i}");
                    let got = peer.async_cache_get(&key).await.expect("cached get");
                    assert!(got.is_none(), "the peer's key {key} was not fresh");
                    let u = user(i);
                    let _ = peer
                        .async_cache_set(key, u.clone())
                        .await
                        .expect("cached set");
                    black_box(u);
                }
                start.elapsed()
            }
        })
    };
    let protocol_side = protocol_miss(ctx, &conn, &fresh);
    compare(
        "cache.miss",
        Unit::UsPerOp,
        &ctx.settings,
        ours,
        vec![floor_side, peer_side, protocol_side],
    )
    .await
}

/// Our miss protocol sent raw: the same two commands (read-or-lock, then `write.lua`) with the
/// same arguments, through redis-rs directly. Ours against it is the client's own cost; it
/// against the floor is what the lock and the compare-and-write script cost Redis.
fn protocol_miss(ctx: &Context, conn: &MultiplexedConnection, fresh: &Rc<Cell<u64>>) -> Side {
    let (conn, fresh, prefix) = (conn.clone(), Rc::clone(fresh), ctx.prefix.clone());
    let write = Rc::new(redis::Script::new(include_str!(
        "../../redisx-runtime/src/cache/lua/write.lua"
    )));
    Side::new("raw SET NX GET + write.lua", move |ops| {
        let (mut conn, fresh, prefix) = (conn.clone(), Rc::clone(&fresh), prefix.clone());
        let write = Rc::clone(&write);
        async move {
            let first = fresh.get();
            fresh.set(first + ops);
            let marker = [0xFE_u8; 17];
            let start = Instant::now();
            for i in first..first + ops {
                let key = format!("{prefix}protocol:miss:{i}");
                let got: Option<Vec<u8>> = redis::cmd("SET")
                    .arg(&key)
                    .arg(&marker[..])
                    .arg("NX")
                    .arg("PX")
                    .arg(5000)
                    .arg("GET")
                    .query_async(&mut conn)
                    .await
                    .expect("SET NX GET");
                assert!(got.is_none(), "the protocol's key {key} was not fresh");
                let u = user(i);
                let mut bytes = vec![0x01_u8; 17];
                bincode::serde::encode_into_std_write(&u, &mut bytes, bincode_config())
                    .expect("encodes");
                // As ours: a write under a lock marker sends no channel (nobody waited).
                let written: u8 = write
                    .key(&key)
                    .arg(&marker[..])
                    .arg(bytes)
                    .arg(ttl_ms())
                    .invoke_async(&mut conn)
                    .await
                    .expect("write.lua");
                assert_eq!(written, 1, "the protocol's write found its marker");
                black_box(u);
            }
            start.elapsed()
        }
    })
}

// ---------------------------------------------------------------------------------------------
// cache.stampede

async fn stampede(ctx: &Context) -> Vec<Comparison> {
    stage("stampede: 1000 callers over two runtimes on a cold key");
    // Two runtimes on the same server and prefix: two instances of one service.
    let a = runtime(ctx).await;
    let b = runtime(ctx).await;
    let loader_calls = Arc::new(AtomicU64::new(0));
    let worst_calls = Rc::new(Cell::new(0_u64));
    let round = Rc::new(Cell::new(0_u64));
    // One stampede per round: `ops` is the caller count (the settings fix it at 1000).
    let settings = Settings {
        min_ops: STAMPEDE_CALLERS,
        ..ctx.settings
    }
    .with_max_ops(STAMPEDE_CALLERS);

    let ours = {
        let (a, b) = (a.clone(), b.clone());
        let (loader_calls, worst_calls, round) = (
            Arc::clone(&loader_calls),
            Rc::clone(&worst_calls),
            Rc::clone(&round),
        );
        Side::new("redisx get_or_load, 1000 callers", move |ops| {
            let (a, b) = (a.clone(), b.clone());
            let (loader_calls, worst_calls, round) = (
                Arc::clone(&loader_calls),
                Rc::clone(&worst_calls),
                Rc::clone(&round),
            );
            async move {
                round.set(round.get() + 1);
                let key = format!("stampede:{}", round.get());
                loader_calls.store(0, Ordering::SeqCst);
                let start = Instant::now();
                let handles: Vec<_> = (0..ops)
                    .map(|n| {
                        let rx = if n % 2 == 0 { a.clone() } else { b.clone() };
                        let (key, calls) = (key.clone(), Arc::clone(&loader_calls));
                        tokio::spawn(async move {
                            let r: Result<User, redisx::Error> = rx
                                .cache()
                                .get_or_load(&key, Some(TTL), || async move {
                                    calls.fetch_add(1, Ordering::SeqCst);
                                    tokio::time::sleep(LOADER_TIME).await;
                                    Ok(user(7))
                                })
                                .await;
                            r
                        })
                    })
                    .collect();
                for h in handles {
                    let _ = black_box(h.await.expect("a caller panicked"));
                }
                let elapsed = start.elapsed();
                worst_calls.set(worst_calls.get().max(loader_calls.load(Ordering::SeqCst)));
                elapsed
            }
        })
    };
    let floor_side = Side::new("one loader call", |_ops| async {
        let start = Instant::now();
        tokio::time::sleep(LOADER_TIME).await;
        black_box(user(7));
        start.elapsed()
    });
    // ours = wall time of 1000 callers / 1000; baseline = one loader call / 1000: the ratio is
    // the wall time of the stampede over the time of the one load it should cost.
    let result = compare(
        "cache.stampede",
        Unit::UsPerOp,
        &settings,
        ours,
        vec![floor_side],
    )
    .await;
    a.shutdown().await;
    b.shutdown().await;
    let loader_ms = u64::try_from(LOADER_TIME.as_millis()).unwrap_or(u64::MAX);
    result
        .into_iter()
        .map(|c| {
            c.with("loader_calls", worst_calls.get())
                .with("callers", STAMPEDE_CALLERS)
                .with("loader_ms", loader_ms)
        })
        .collect()
}
