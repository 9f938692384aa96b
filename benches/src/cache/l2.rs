//! The benches of the `cache` suite that go to Redis: `cache.l2_hit`, `cache.miss` and
//! `cache.stampede`.

use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cached::ConcurrentCachedAsync as _;
use redisx::RedisX;

use super::{
    L2_KEYS, LOADER_TIME, STAMPEDE_CALLERS, TTL, User, at, bincode_config, connection, ours_l2,
    peer_redis_cache, random_order, runtime, stage, user,
};
use crate::Context;
use crate::floor::FloorConnection;
use crate::measure::{Comparison, Settings, Side, Unit, compare};

// ---------------------------------------------------------------------------------------------
// cache.l2_hit

pub(super) async fn l2_hit(ctx: &Context, rx: &RedisX) -> Vec<Comparison> {
    stage("l2_hit: writing 10k keys for every side");
    let order = random_order(L2_KEYS, 1, 3);
    let mut conn = connection(ctx).await;
    let peer = if ctx.peer_runs("cache.l2_hit", "the `cached` AsyncRedisCache peer") {
        Some(peer_redis_cache(ctx, "l2").await)
    } else {
        None
    };
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
        if let Some(peer) = &peer {
            let _ = peer
                .async_cache_set(format!("bench:l2:{i}"), user(i))
                .await
                .expect("cached set");
        }
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
    let peer_side = peer.map(|peer| peer_hit_side(peer, &order));
    let result = compare(
        &ctx.bench_name("cache.l2_hit"),
        Unit::UsPerOp,
        &ctx.settings,
        ours,
        std::iter::once(floor_side).chain(peer_side).collect(),
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

/// The `cached` crate's Redis store reading the same entries in the same order.
fn peer_hit_side(peer: cached::AsyncRedisCache<String, User>, order: &Arc<Vec<u64>>) -> Side {
    let order = Arc::clone(order);
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
}

fn ttl_ms() -> u64 {
    u64::try_from(TTL.as_millis()).expect("the ttl fits in u64 milliseconds")
}

// ---------------------------------------------------------------------------------------------
// cache.miss

pub(super) async fn miss(ctx: &Context, rx: &RedisX) -> Vec<Comparison> {
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
fn protocol_miss(ctx: &Context, conn: &FloorConnection, fresh: &Rc<Cell<u64>>) -> Side {
    let (conn, fresh, prefix) = (conn.clone(), Rc::clone(fresh), ctx.prefix.clone());
    let write = Rc::new(redis::Script::new(include_str!(
        "../../../redisx-runtime/src/cache/lua/write.lua"
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

pub(super) async fn stampede(ctx: &Context) -> Vec<Comparison> {
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
