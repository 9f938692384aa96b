//! The `cache` suite: `#[cached]` and the cache service against their floors and peers.
//!
//! | bench | ours | floor | peers |
//! |---|---|---|---|
//! | `cache.l1_hit` | `#[redisx::cached]` hit, 100k keys in L1, random order (a fresh shuffle per pass) | `quick_cache` get + clone | `cached` `#[cached]` async hit, `moka` get + clone |
//! | `cache.l1_hit_cycle` | the same, in one shuffle repeated (the order of earlier runs) | the same | the same |
//! | `cache.l1_hit_owned` | the same with owned values (a deep clone per hit) | the same | the same |
//! | `cache.l1_hit_mt` | the same, one task per core on a multi-thread runtime | the same | `cached` |
//! | `cache.l1_hit_scoped` | the same hit without `runtime = ...`, inside `rx.scope(..)` | the same with no scope (installed runtime) | the same with `runtime = rx` (see `cache_scope.rs`) |
//! | `cache.l2_hit` | `#[redisx::cached(mode = "l2_only")]` hit | redis-rs `GET` + bincode decode | `cached` `AsyncRedisCache` hit (not with `--cluster`) |
//! | `cache.miss` | `Cache::get_or_load` on fresh keys | `GET` miss + `SET PX` | `cached` `AsyncRedisCache` get + set; our own protocol sent raw through redis-rs |
//! | `cache.stampede` | 1000 concurrent `get_or_load` callers over two runtimes | one loader call | — |
//! | `cluster.invalidation` (`--cluster` only) | see [`invalidation`](crate::invalidation) | | |
//!
//! Every side uses the same value type ([`User`], about 100 bytes), the same key count and the
//! same (seeded, random) access order; Redis sides use one multiplexed connection, like ours.
//! With `--cluster`, `cache.l2_hit` runs on the cluster (reported as `cluster.cache.l2_hit`): ours
//! through its cluster client, the floor through redis-rs's cluster connection, over the same
//! untagged keys (spread over the three masters), without the `cached` peer.
//!
//! The suite's `run` and shared setup are here; the L1 benches are in `cache/l1.rs`, those that
//! go to Redis (`cache.l2_hit`, `cache.miss`, `cache.stampede`) in `cache/l2.rs`.

use std::sync::Arc;
use std::time::Duration;

use cached::proc_macro::cached as peer_cached;
use rand::SeedableRng as _;
use rand::seq::SliceRandom as _;
use redisx::{CacheConfig, RedisX};
use serde::{Deserialize, Serialize};

use crate::Context;
use crate::floor::FloorConnection;
use crate::measure::{Comparison, emit};

mod l1;
mod l2;

use l1::{l1_hit, l1_hit_mt};
use l2::{l2_hit, miss, stampede};

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
    if ctx.selected("cluster.invalidation") {
        done(crate::invalidation::invalidation(ctx).await);
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

/// The floors' connection: one multiplexed connection, or a cluster connection with `--cluster`.
async fn connection(ctx: &Context) -> FloorConnection {
    ctx.floor_connection().await
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
