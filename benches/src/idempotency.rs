//! The `idempotency` suite: `rx.idempotency()` against its raw Redis floor.
//!
//! | bench | ours | floor / baseline |
//! |---|---|---|
//! | `idempotency.first` | `run` of a fresh key (check-and-lock, the body, the completion) | redis-rs `EVALSHA` of the same two scripts (check, finish) on one connection |
//! | `idempotency.replay` | `run` of a completed key (one check, the value decoded) | redis-rs `EVALSHA` of the check script on that key |
//! | `idempotency.duplicates` | 1,000 concurrent duplicates of one key: time from the first call's body ending to the last duplicate answered (woken by the completion message) | the original's design: each duplicate polls the record (`HGETALL`) every 100 ms |
//!
//! Every side talks to the same server on the same pinned CPU.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redisx::RedisX;
use redisx::idempotency::{IdempotencyConfig, IdempotencyOptions};

use crate::Context;
use crate::floor::{FloorConnection, load_script};
use crate::measure::{Comparison, Side, Unit, compare, emit};

const CHECK: &str = include_str!("../../redisx-runtime/src/idempotency/lua/check.lua");
const FINISH: &str = include_str!("../../redisx-runtime/src/idempotency/lua/finish.lua");

/// The fingerprint every call sends (a SHA-256 in hex, as `Fingerprint` makes).
const FP: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
/// Duplicates of `idempotency.duplicates`.
const DUPLICATES: usize = 1000;
/// How long the first call's body runs there, so every duplicate is waiting when it ends.
const BODY: Duration = Duration::from_millis(200);

/// Runs the suite; returns every comparison, each already printed as a JSON line when its
/// bench finished.
pub(crate) async fn run(ctx: &Context) -> Vec<Comparison> {
    let rx = ctx
        .runtime(|b| b.idempotency(IdempotencyConfig::default()))
        .await;
    let floor = Floor::new(ctx).await;
    let mut all = Vec::new();
    let mut done = |part: Vec<Comparison>| {
        part.iter().for_each(emit);
        all.extend(part);
    };
    if ctx.selected("idempotency.first") {
        done(first(ctx, &rx, &floor).await);
    }
    if ctx.selected("idempotency.replay") {
        done(replay(ctx, &rx, &floor).await);
    }
    if ctx.selected("idempotency.duplicates") {
        done(duplicates(ctx, &rx, &floor).await);
    }
    rx.shutdown().await;
    all
}

fn stage(what: &str) {
    eprintln!("idempotency: {what}");
}

/// The raw floor: redis-rs on one multiplexed connection, the scripts loaded once.
#[derive(Clone)]
struct Floor {
    conn: FloorConnection,
    check: Arc<str>,
    finish: Arc<str>,
    channel: Arc<str>,
}

impl Floor {
    async fn new(ctx: &Context) -> Self {
        let mut conn = ctx.floor_connection().await;
        let check = load_script(&mut conn, CHECK).await;
        let finish = load_script(&mut conn, FINISH).await;
        Self {
            conn,
            check,
            finish,
            channel: format!("{}floor:idem:@done", ctx.prefix).into(),
        }
    }

    /// The check script on `key`, as the runtime sends it.
    async fn check(&mut self, key: &str, owner: &str) -> redis::Value {
        redis::cmd("EVALSHA")
            .arg(&*self.check)
            .arg(1)
            .arg(key)
            .arg(FP)
            .arg(owner)
            .arg(30_000)
            .query_async(&mut self.conn)
            .await
            .expect("EVALSHA of the check script")
    }

    /// The finish script completing `owner`'s claim on `key` with `result`.
    async fn finish(&mut self, key: &str, owner: &str, result: &[u8]) {
        let n: i64 = redis::cmd("EVALSHA")
            .arg(&*self.finish)
            .arg(1)
            .arg(key)
            .arg(owner)
            .arg("completed")
            .arg(86_400_000)
            .arg("ok")
            .arg(result)
            .arg("")
            .arg(&*self.channel)
            .query_async(&mut self.conn)
            .await
            .expect("EVALSHA of the finish script");
        assert_eq!(n, 1, "the floor's claim was its own");
    }
}

fn owner() -> String {
    format!("{:032x}", rand::random::<u128>())
}

async fn first(ctx: &Context, rx: &RedisX, floor: &Floor) -> Vec<Comparison> {
    stage("first: a fresh key per call (check, body, completion)");
    let ours = {
        let idem = rx.idempotency().clone();
        Side::new("redisx run (fresh key)", move |ops| {
            let idem = idem.clone();
            let run = rand::random::<u64>();
            async move {
                let opts = IdempotencyOptions::new();
                let start = Instant::now();
                for i in 0..ops {
                    let key = format!("first:{run}:{i}");
                    let v: u64 = idem
                        .run(&key, FP, &opts, async { Ok::<_, redisx::Error>(i) })
                        .await
                        .expect("a first run");
                    assert_eq!(v, i);
                }
                start.elapsed()
            }
        })
    };
    let raw = {
        let (floor, prefix) = (floor.clone(), ctx.prefix.clone());
        Side::new("redis-rs EVALSHA check + finish", move |ops| {
            let mut floor = floor.clone();
            let run = rand::random::<u64>();
            let prefix = prefix.clone();
            async move {
                let start = Instant::now();
                for i in 0..ops {
                    let key = format!("{prefix}floor:idem:first:{run}:{i}");
                    let owner = owner();
                    let _ = floor.check(&key, &owner).await;
                    floor.finish(&key, &owner, i.to_string().as_bytes()).await;
                }
                start.elapsed()
            }
        })
    };
    compare(
        "idempotency.first",
        Unit::UsPerOp,
        &ctx.settings,
        ours,
        vec![raw],
    )
    .await
}

async fn replay(ctx: &Context, rx: &RedisX, floor: &Floor) -> Vec<Comparison> {
    stage("replay: a completed key");
    let key = format!("replay:{}", rand::random::<u64>());
    let opts = IdempotencyOptions::new();
    let idem = rx.idempotency().clone();
    let _: u64 = idem
        .run(&key, FP, &opts, async { Ok::<_, redisx::Error>(42) })
        .await
        .expect("the first run");
    let ours = Side::new("redisx run (replay)", move |ops| {
        let (idem, key) = (idem.clone(), key.clone());
        async move {
            let opts = IdempotencyOptions::new();
            let start = Instant::now();
            for _ in 0..ops {
                let v: u64 = idem
                    .run(&key, FP, &opts, async {
                        unreachable!("a replay never runs the body") as Result<u64, redisx::Error>
                    })
                    .await
                    .expect("a replay");
                assert_eq!(v, 42);
            }
            start.elapsed()
        }
    });
    let raw = {
        let mut floor = floor.clone();
        let key = format!("{}floor:idem:replay:{}", ctx.prefix, rand::random::<u64>());
        let owner = owner();
        let _ = floor.check(&key, &owner).await;
        floor.finish(&key, &owner, b"42").await;
        Side::new("redis-rs EVALSHA check (completed)", move |ops| {
            let (mut floor, key) = (floor.clone(), key.clone());
            async move {
                let start = Instant::now();
                for _ in 0..ops {
                    let _ = floor.check(&key, "someone-else").await;
                }
                start.elapsed()
            }
        })
    };
    compare(
        "idempotency.replay",
        Unit::UsPerOp,
        &ctx.settings,
        ours,
        vec![raw],
    )
    .await
}

/// One round of the duplicates bench with `rx`: the time from the first call's body ending to
/// the last duplicate answered.
async fn duplicates_round(rx: &RedisX) -> Duration {
    let key = format!("dups:{}", rand::random::<u64>());
    let idem = rx.idempotency().clone();
    let ended = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let first = {
        let (idem, key, ended) = (idem.clone(), key.clone(), ended.clone());
        tokio::spawn(async move {
            idem.run(&key, FP, &IdempotencyOptions::new(), async move {
                tokio::time::sleep(BODY).await;
                *ended.lock().expect("the instant") = Some(Instant::now());
                Ok::<_, redisx::Error>(7_u64)
            })
            .await
        })
    };
    // Let the first call claim the key, then start the duplicates while its body runs.
    tokio::time::sleep(BODY / 4).await;
    let waiters: Vec<_> = (0..DUPLICATES)
        .map(|_| {
            let (idem, key) = (idem.clone(), key.clone());
            tokio::spawn(async move {
                let v: u64 = idem
                    .run(&key, FP, &IdempotencyOptions::new(), async {
                        unreachable!("a duplicate never runs the body")
                            as Result<u64, redisx::Error>
                    })
                    .await
                    .expect("a duplicate's replay");
                assert_eq!(v, 7);
                Instant::now()
            })
        })
        .collect();
    let mut last = Instant::now();
    for w in waiters {
        last = w.await.expect("a duplicate task");
    }
    let _ = first.await.expect("the first task");
    let ended = ended.lock().expect("the instant").expect("the body ran");
    last.saturating_duration_since(ended)
}

/// The original's design: each duplicate polls the record every 100 ms until it completes.
async fn polling_round(floor: &Floor, prefix: &str) -> Duration {
    let key = format!("{prefix}floor:idem:dups:{}", rand::random::<u64>());
    let owner = owner();
    let mut conn = floor.clone();
    let _ = conn.check(&key, &owner).await;
    let waiters: Vec<_> = (0..DUPLICATES)
        .map(|_| {
            let (mut conn, key) = (floor.conn.clone(), key.clone());
            tokio::spawn(async move {
                // Duplicates arrive at any time: the first poll is anywhere in the period.
                tokio::time::sleep(Duration::from_millis(rand::random_range(0..100))).await;
                loop {
                    let state: Option<String> = redis::cmd("HGET")
                        .arg(&key)
                        .arg("state")
                        .query_async(&mut conn)
                        .await
                        .expect("HGET of the record");
                    if state.as_deref() == Some("completed") {
                        return Instant::now();
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(BODY).await;
    let ended = Instant::now();
    conn.finish(&key, &owner, b"7").await;
    let mut last = ended;
    for w in waiters {
        last = last.max(w.await.expect("a polling task"));
    }
    last.saturating_duration_since(ended)
}

async fn duplicates(ctx: &Context, rx: &RedisX, floor: &Floor) -> Vec<Comparison> {
    stage("duplicates: 1,000 waiting duplicates of one key");
    let settings = ctx.settings.with_max_ops(1);
    let ours = {
        let rx = rx.clone();
        Side::new("redisx: woken by the completion message", move |ops| {
            let rx = rx.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..ops {
                    total += duplicates_round(&rx).await;
                }
                total
            }
        })
    };
    let polling = {
        let (floor, prefix) = (floor.clone(), ctx.prefix.clone());
        Side::new("the original's design: HGET every 100 ms", move |ops| {
            let (floor, prefix) = (floor.clone(), prefix.clone());
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..ops {
                    total += polling_round(&floor, &prefix).await;
                }
                total
            }
        })
    };
    compare(
        "idempotency.duplicates",
        Unit::UsPerOp,
        &settings,
        ours,
        vec![polling],
    )
    .await
}
