//! The `rate-limit` suite: `rx.rate_limiter()` against its raw Redis floor.
//!
//! | bench | ours | floor | other baselines |
//! |---|---|---|---|
//! | `rate_limit.<algorithm>` | `check` of one key, sequential, never denied (a limit of 10⁹ per minute) | redis-rs `EVALSHA` of the same script (the algorithm's one-limit script) with the same arguments on one connection | `EVALSHA` of a trivial script (`return 1`) |
//! | `rate_limit.<algorithm>_c64` | 64 tasks over 64 keys, each checking in a loop; cost per check | the same loop with the raw `EVALSHA` | |
//! | `rate_limit.denied_flood` | checks of an exhausted key with the local deny cache (on by default) | the same without it (every check a round trip) | |
//! | `rate_limit.http` | `GET /` through axum with `RateLimitLayer` (peer-IP key), over loopback | the same server without the layer | |
//!
//! The algorithms: `fixed_window`, `sliding_window` (the log), `sliding_counter`,
//! `token_bucket`, `gcra`. Every side talks to the same server over one multiplexed
//! connection, on the same pinned CPU.
//!
//! With `--cluster`, `rate_limit.sliding_window` runs on the cluster
//! (`cluster.rate_limit.sliding_window`): ours through its cluster client, the raw sides through
//! redis-rs's cluster connection (the scripts loaded on every node), each key hash-tagged as
//! ours tags its state keys (`..:{<key>}`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use redisx::RedisX;
use redisx::http::RateLimitLayer;
use redisx::rate_limit::{Algorithm, Limit, RateLimitConfig};

use crate::Context;
use crate::floor::{FloorConnection, load_script};
use crate::measure::{Comparison, Side, Unit, compare, emit};

/// The pieces of the rate-limit scripts, as the runtime assembles them.
const PRELUDE: &str = include_str!("../../redisx-runtime/src/rate_limit/lua/prelude.lua");
const SINGLE: &str = include_str!("../../redisx-runtime/src/rate_limit/lua/single.lua");

/// The algorithm's Lua file.
fn algorithm_file(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::FixedWindow => {
            include_str!("../../redisx-runtime/src/rate_limit/lua/fixed_window.lua")
        }
        Algorithm::SlidingWindow => {
            include_str!("../../redisx-runtime/src/rate_limit/lua/sliding_window.lua")
        }
        Algorithm::SlidingCounter => {
            include_str!("../../redisx-runtime/src/rate_limit/lua/sliding_counter.lua")
        }
        Algorithm::TokenBucket => {
            include_str!("../../redisx-runtime/src/rate_limit/lua/token_bucket.lua")
        }
        Algorithm::Gcra => include_str!("../../redisx-runtime/src/rate_limit/lua/gcra.lua"),
    }
}

/// The one-limit script of `algorithm`, the one a single-limit check runs.
fn single_script(algorithm: Algorithm) -> String {
    format!(
        "{PRELUDE}{}\nlocal algorithm = {}\n{SINGLE}",
        algorithm_file(algorithm),
        algorithm.as_str()
    )
}

/// A limit that never denies within a run.
const HUGE: u64 = 1_000_000_000;
/// Its window.
const WINDOW: Duration = Duration::from_secs(60);
/// Tasks (and keys) of the `_c64` benches.
const TASKS: u64 = 64;

/// Runs the suite; returns every comparison, each already printed as a JSON line when its
/// bench finished.
pub(crate) async fn run(ctx: &Context) -> Vec<Comparison> {
    let rx = runtime(ctx, true).await;
    let mut all = Vec::new();
    let mut done = |part: Vec<Comparison>| {
        part.iter().for_each(emit);
        all.extend(part);
    };
    let floor = Floor::new(ctx).await;
    for algorithm in Algorithm::ALL {
        let name = format!("rate_limit.{algorithm}");
        if ctx.selected(&name) {
            done(sequential(ctx, &rx, &floor, algorithm, &name).await);
        }
        let name = format!("rate_limit.{algorithm}_c64");
        if ctx.selected(&name) {
            done(concurrent(ctx, &rx, &floor, algorithm, &name).await);
        }
    }
    if ctx.selected("rate_limit.denied_flood") {
        done(denied_flood(ctx, &rx).await);
    }
    if ctx.selected("rate_limit.http") {
        done(http(ctx, &rx).await);
    }
    rx.shutdown().await;
    all
}

async fn runtime(ctx: &Context, local_deny: bool) -> RedisX {
    ctx.runtime(|b| b.rate_limit(RateLimitConfig::default().local_deny(local_deny)))
        .await
}

fn stage(what: &str) {
    eprintln!("rate-limit: {what}");
}

/// The raw floor: redis-rs on one multiplexed connection (a cluster connection with
/// `--cluster`), the script loaded once (on every node of a cluster).
#[derive(Clone)]
struct Floor {
    conn: FloorConnection,
    /// The one-limit script of each algorithm, in `Algorithm::ALL` order.
    shas: Arc<[Arc<str>]>,
    trivial: Arc<str>,
}

impl Floor {
    async fn new(ctx: &Context) -> Self {
        let conn = ctx.floor_connection().await;
        let load = |body: String| {
            let mut conn = conn.clone();
            async move { load_script(&mut conn, &body).await }
        };
        let mut shas = Vec::new();
        for a in Algorithm::ALL {
            shas.push(load(single_script(a)).await);
        }
        let trivial = load("return 1".to_owned()).await;
        Self {
            conn,
            shas: shas.into(),
            trivial,
        }
    }

    /// One raw check of `key` (1 point of `limit`): whether it was admitted.
    async fn check(&mut self, key: &str, algorithm: Algorithm, limit: u64) -> bool {
        let at = Algorithm::ALL
            .iter()
            .position(|a| *a == algorithm)
            .expect("a known algorithm");
        let reply: String = redis::cmd("EVALSHA")
            .arg(&*self.shas[at])
            .arg(1)
            .arg(key)
            .arg("check")
            .arg(1)
            .arg(algorithm.as_str())
            .arg(limit)
            .arg(u64::try_from(WINDOW.as_millis()).expect("a small window"))
            .arg(0)
            .query_async(&mut self.conn)
            .await
            .expect("EVALSHA of the rate-limit script");
        reply.starts_with("1 ")
    }

    /// `EVALSHA` of `return 1` with one key.
    async fn trivial(&mut self, key: &str) {
        let _: i64 = redis::cmd("EVALSHA")
            .arg(&*self.trivial)
            .arg(1)
            .arg(key)
            .query_async(&mut self.conn)
            .await
            .expect("EVALSHA of the trivial script");
    }
}

/// A fresh key name per run of a side, so no state carries over between sides.
fn fresh(ctx: &Context, what: &str) -> String {
    format!(
        "{}floor:rl:{what}:{{{}}}",
        ctx.prefix,
        rand::random::<u64>()
    )
}

async fn sequential(
    ctx: &Context,
    rx: &RedisX,
    floor: &Floor,
    algorithm: Algorithm,
    name: &str,
) -> Vec<Comparison> {
    stage(&format!("{name}: one key, sequential"));
    let limit = Limit::new(algorithm, HUGE, WINDOW);
    let ours = {
        let limiter = rx.rate_limiter().clone();
        Side::new(format!("redisx check ({algorithm})"), move |ops| {
            let (limiter, limit) = (limiter.clone(), limit.clone());
            let key = format!("seq:{}", rand::random::<u64>());
            async move {
                let start = Instant::now();
                for _ in 0..ops {
                    let d = limiter.check(&key, &limit).await.expect("a check");
                    assert!(d.allowed);
                }
                start.elapsed()
            }
        })
    };
    let raw = {
        let (floor, prefix) = (floor.clone(), ctx.prefix.clone());
        Side::new("redis-rs EVALSHA of the same script", move |ops| {
            let mut floor = floor.clone();
            let key = format!("{prefix}floor:rl:{{{}}}", rand::random::<u64>());
            async move {
                let start = Instant::now();
                for _ in 0..ops {
                    assert!(floor.check(&key, algorithm, HUGE).await);
                }
                start.elapsed()
            }
        })
    };
    let trivial = {
        let floor = floor.clone();
        let key = fresh(ctx, "trivial");
        Side::new("redis-rs EVALSHA of `return 1`", move |ops| {
            let (mut floor, key) = (floor.clone(), key.clone());
            async move {
                let start = Instant::now();
                for _ in 0..ops {
                    floor.trivial(&key).await;
                }
                start.elapsed()
            }
        })
    };
    compare(
        &ctx.bench_name(name),
        Unit::UsPerOp,
        &ctx.settings,
        ours,
        vec![raw, trivial],
    )
    .await
}

async fn concurrent(
    ctx: &Context,
    rx: &RedisX,
    floor: &Floor,
    algorithm: Algorithm,
    name: &str,
) -> Vec<Comparison> {
    stage(&format!("{name}: {TASKS} tasks over {TASKS} keys"));
    let limit = Limit::new(algorithm, HUGE, WINDOW);
    let ours = {
        let limiter = rx.rate_limiter().clone();
        Side::new(
            format!("redisx check ({algorithm}), 64 tasks"),
            move |ops| {
                let (limiter, limit) = (limiter.clone(), limit.clone());
                let run = rand::random::<u64>();
                async move {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..TASKS)
                        .map(|t| {
                            let (limiter, limit) = (limiter.clone(), limit.clone());
                            let share = ops / TASKS + u64::from(t < ops % TASKS);
                            tokio::spawn(async move {
                                let key = format!("c64:{run}:{t}");
                                for _ in 0..share {
                                    let d = limiter.check(&key, &limit).await.expect("a check");
                                    assert!(d.allowed);
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("a bench task");
                    }
                    start.elapsed()
                }
            },
        )
    };
    let raw = {
        let (floor, prefix) = (floor.clone(), ctx.prefix.clone());
        Side::new(
            "redis-rs EVALSHA of the same script, 64 tasks",
            move |ops| {
                let (floor, prefix) = (floor.clone(), prefix.clone());
                let run = rand::random::<u64>();
                async move {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..TASKS)
                        .map(|t| {
                            let mut floor = floor.clone();
                            let key = format!("{prefix}floor:rl:c64:{run}:{{{t}}}");
                            let share = ops / TASKS + u64::from(t < ops % TASKS);
                            tokio::spawn(async move {
                                for _ in 0..share {
                                    assert!(floor.check(&key, algorithm, HUGE).await);
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("a bench task");
                    }
                    start.elapsed()
                }
            },
        )
    };
    compare(name, Unit::UsPerOp, &ctx.settings, ours, vec![raw]).await
}

async fn denied_flood(ctx: &Context, rx: &RedisX) -> Vec<Comparison> {
    stage("denied_flood: checks of an exhausted key");
    let without = runtime(ctx, false).await;
    let limit = Limit::fixed_window(1, Duration::from_secs(3600));
    let side = |label: &str, rx: &RedisX| {
        let (limiter, limit) = (rx.rate_limiter().clone(), limit.clone());
        Side::new(label, move |ops| {
            let (limiter, limit) = (limiter.clone(), limit.clone());
            let key = format!("flood:{}", rand::random::<u64>());
            async move {
                assert!(limiter.check(&key, &limit).await.expect("a check").allowed);
                let start = Instant::now();
                for _ in 0..ops {
                    let d = limiter.check(&key, &limit).await.expect("a check");
                    assert!(!d.allowed);
                }
                start.elapsed()
            }
        })
    };
    let ours = side("redisx, local deny cache on (default)", rx);
    let off = side("redisx, local deny cache off", &without);
    let out = compare(
        "rate_limit.denied_flood",
        Unit::UsPerOp,
        &ctx.settings,
        ours,
        vec![off],
    )
    .await;
    without.shutdown().await;
    out
}

/// Serves `app` on a free loopback port with `ConnectInfo`.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("the bench server");
    });
    format!("http://{addr}/")
}

async fn http(ctx: &Context, rx: &RedisX) -> Vec<Comparison> {
    stage("http: GET / through axum, with and without the layer");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let plain = Router::new().route("/", get(|| async { "ok" }));
    let limited = plain
        .clone()
        .layer(RateLimitLayer::new(Limit::fixed_window(HUGE, WINDOW)).runtime(rx.clone()));
    let (with_url, without_url) = (serve(limited).await, serve(plain).await);
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let side = |label: &str, url: String| {
        let client = client.clone();
        Side::new(label, move |ops| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let start = Instant::now();
                for _ in 0..ops {
                    let res = client.get(&url).send().await.expect("a response");
                    assert_eq!(res.status(), 200);
                    let _ = res.bytes().await.expect("a body");
                }
                start.elapsed()
            }
        })
    };
    let ours = side("axum + RateLimitLayer (fixed window, peer IP)", with_url);
    let bare = side("the same axum server without the layer", without_url);
    compare(
        "rate_limit.http",
        Unit::UsPerOp,
        &ctx.settings,
        ours,
        vec![bare],
    )
    .await
}
