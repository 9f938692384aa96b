//! The consumer half of the `streams` suite.
//!
//! | bench | ours | floor |
//! |---|---|---|
//! | `streams.consume` | a consumer (`concurrency` = `batch` = 10) handling pre-published messages with a no-op handler (read, handle, acknowledge); cost per message | redis-rs: `XREADGROUP COUNT 10` then one `XACK` of the ids read, in a loop, the reads on a connection of their own without response timeout, opened in the round (as ours' consumer opens its dedicated one) |
//! | `streams.delivery` | publish to handler start, one message at a time, the consumer blocked on its read | the same with a raw blocking `XREADGROUP` loop |
//! | `streams.apalis` | the `streams.consume` side | `apalis-redis` 1.0 running the same no-op job (worker concurrency 10, fetches of 10) |
//!
//! With `--cluster`, `streams.consume` runs on the cluster (`cluster.streams.consume`): ours
//! through its cluster client, the raw loop through redis-rs's cluster connections (the reads on
//! a `ClusterConnection` of their own without response timeout); both streams are one
//! hash-tagged key (`..{name}`), each on the master of its slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redisx::RedisX;
use redisx::streams::{ConsumerOptions, Message};
use tokio::sync::Notify;

use crate::Context;
use crate::floor::Target;
use crate::measure::{Comparison, Side, Unit, compare};

/// Messages per read, and handler slots.
const COUNT: usize = 10;

fn stage(what: &str) {
    eprintln!("streams: {what}");
}

/// Appends `n` messages to `key` in one pipeline (outside the measured span).
async fn fill(conn: &mut impl ConnectionLike, key: &str, n: u64) {
    let mut p = redis::pipe();
    for i in 0..n {
        p.cmd("XADD")
            .arg(key)
            .arg("*")
            .arg("data")
            .arg(format!("{{\"n\":{i}}}"))
            .ignore();
    }
    let () = p.query_async(conn).await.expect("the fill pipeline");
}

async fn create_group(conn: &mut impl ConnectionLike, key: &str, group: &str) {
    let () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await
        .expect("XGROUP CREATE");
}

#[derive(serde::Deserialize)]
struct Job {
    #[allow(dead_code, reason = "decoded like a real payload")]
    n: u64,
}

pub(crate) async fn consume(ctx: &Context, rx: &RedisX) -> Vec<Comparison> {
    stage("consume: no-op handlers over pre-published messages");
    let settings = ctx.settings.with_max_ops(20_000);
    let ours = consumer_side(ctx, rx);
    let raw = {
        let (target, prefix) = (ctx.target.clone(), ctx.prefix.clone());
        Side::new("redis-rs XREADGROUP COUNT 10 + XACK loop", move |ops| {
            raw_consume(target.clone(), prefix.clone(), ops)
        })
    };
    compare(
        &ctx.bench_name("streams.consume"),
        Unit::UsPerOp,
        &settings,
        ours,
        vec![raw],
    )
    .await
}

pub(crate) async fn delivery(ctx: &Context, rx: &RedisX) -> Vec<Comparison> {
    stage("delivery: publish to handler start");
    let settings = ctx.settings.with_max_ops(2_000);
    let ours = {
        let (rx, url) = (rx.clone(), ctx.url.clone());
        Side::new("redisx: XADD to handler start", move |ops| {
            ours_delivery(rx.clone(), url.clone(), ops)
        })
    };
    let raw = {
        let (url, prefix) = (ctx.url.clone(), ctx.prefix.clone());
        Side::new(
            "redis-rs: XADD to a blocking XREADGROUP's reply",
            move |ops| raw_delivery(url.clone(), prefix.clone(), ops),
        )
    };
    compare(
        "streams.delivery",
        Unit::UsPerOp,
        &settings,
        ours,
        vec![raw],
    )
    .await
}

/// Ours in `streams.consume` and `streams.apalis`: a consumer draining `ops` pre-published
/// messages.
fn consumer_side(ctx: &Context, rx: &RedisX) -> Side {
    let (rx, target) = (rx.clone(), ctx.target.clone());
    Side::new("redisx consumer (concurrency 10, batch 10)", move |ops| {
        ours_consume(rx.clone(), target.clone(), ops)
    })
}

/// One round of ours: `ops` pre-published messages consumed and acknowledged.
async fn ours_consume(rx: RedisX, target: Target, ops: u64) -> Duration {
    let name = format!("consume:{}", rand::random::<u64>());
    let keys = rx.streams().keys(&name, false).expect("a stream name");
    let mut conn = target.connect().await;
    create_group(&mut conn, &keys.stream, "g").await;
    fill(&mut conn, &keys.stream, ops).await;
    let done = Arc::new(AtomicU64::new(0));
    let all = Arc::new(Notify::new());
    let start = Instant::now();
    let handle = {
        let (done, all) = (done.clone(), all.clone());
        rx.streams()
            .consumer(
                &name,
                ConsumerOptions::new("g")
                    .concurrency(COUNT)
                    .batch(COUNT)
                    .claim_idle(Duration::ZERO),
                move |_m: Message<Job>| {
                    if done.fetch_add(1, Ordering::Relaxed) + 1 == ops {
                        all.notify_one();
                    }
                    async { Ok::<_, redisx::Error>(()) }
                },
            )
            .start()
            .await
            .expect("the consumer starts")
    };
    all.notified().await;
    // The last acknowledgements are in flight: wait until none is pending.
    loop {
        let (n, ..): (u64, Option<String>, Option<String>, redis::Value) = redis::cmd("XPENDING")
            .arg(&keys.stream)
            .arg("g")
            .query_async(&mut conn)
            .await
            .expect("XPENDING");
        if n == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let took = start.elapsed();
    handle.stop().await;
    let () = redis::cmd("DEL")
        .arg(&keys.stream)
        .query_async(&mut conn)
        .await
        .expect("DEL");
    took
}

/// One round of the raw `XREADGROUP` + `XACK` loop.
async fn raw_consume(target: Target, prefix: String, ops: u64) -> Duration {
    // Hash-tagged as ours' stream key is.
    let key = format!("{prefix}floor:stream:{{{}}}", rand::random::<u64>());
    let mut conn = target.connect().await;
    create_group(&mut conn, &key, "g").await;
    fill(&mut conn, &key, ops).await;
    let start = Instant::now();
    // Inside the round, as ours' consumer opens its dedicated connection after its start (a
    // new cluster connection takes 1–4 ms: it connects to every master).
    let mut reader = target.connect_blocking().await;
    let mut left = ops;
    while left > 0 {
        let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("raw")
            .arg("COUNT")
            .arg(COUNT)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(&key)
            .arg(">")
            .query_async(&mut reader)
            .await
            .expect("XREADGROUP");
        let ids: Vec<String> = reply
            .keys
            .into_iter()
            .flat_map(|k| k.ids.into_iter().map(|e| e.id))
            .collect();
        left = left.saturating_sub(ids.len() as u64);
        let mut ack = redis::cmd("XACK");
        ack.arg(&key).arg("g").arg(&ids);
        let _: u64 = ack.query_async(&mut conn).await.expect("XACK");
    }
    let took = start.elapsed();
    let () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("DEL");
    took
}

/// One round of ours: `ops` messages published one at a time, each timed to its handler.
async fn ours_delivery(rx: RedisX, url: String, ops: u64) -> Duration {
    let name = format!("delivery:{}", rand::random::<u64>());
    let keys = rx.streams().keys(&name, false).expect("a stream name");
    let mut conn = redis::Client::open(url.as_str())
        .expect("a URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a connection");
    create_group(&mut conn, &keys.stream, "g").await;
    let arrived = Arc::new(Notify::new());
    let handle = {
        let arrived = arrived.clone();
        rx.streams()
            .consumer(
                &name,
                ConsumerOptions::new("g").claim_idle(Duration::ZERO),
                move |_m: Message<Job>| {
                    arrived.notify_one();
                    async { Ok::<_, redisx::Error>(()) }
                },
            )
            .start()
            .await
            .expect("the consumer starts")
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut total = Duration::ZERO;
    for i in 0..ops {
        let start = Instant::now();
        let _: String = redis::cmd("XADD")
            .arg(&keys.stream)
            .arg("*")
            .arg("data")
            .arg(format!("{{\"n\":{i}}}"))
            .query_async(&mut conn)
            .await
            .expect("XADD");
        arrived.notified().await;
        total += start.elapsed();
    }
    handle.stop().await;
    let () = redis::cmd("DEL")
        .arg(&keys.stream)
        .query_async(&mut conn)
        .await
        .expect("DEL");
    total
}

/// `streams.apalis`: the same no-op job through `apalis-redis` (its worker with a concurrency
/// limit of 10 and fetches of 10), jobs pushed before the round.
pub(crate) async fn apalis(ctx: &Context, rx: &RedisX) -> Vec<Comparison> {
    stage("apalis: the same no-op jobs through apalis-redis");
    let settings = ctx.settings.with_max_ops(5_000);
    let ours = consumer_side(ctx, rx);
    let theirs = {
        let (url, prefix) = (ctx.url.clone(), ctx.prefix.clone());
        Side::new(
            "apalis-redis worker (concurrency 10, batch 10)",
            move |ops| apalis_round(url.clone(), prefix.clone(), ops),
        )
    };
    compare(
        "streams.apalis",
        Unit::UsPerOp,
        &settings,
        ours,
        vec![theirs],
    )
    .await
}

/// A job for apalis (its JSON codec).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct ApalisJob {
    n: u64,
}

/// One round of apalis: `ops` jobs pushed, then a worker runs until it handled them all.
async fn apalis_round(url: String, prefix: String, ops: u64) -> Duration {
    use apalis::prelude::{BoxDynError, TaskSink as _, WorkerBuilder, WorkerBuilderExt as _};

    let conn = apalis_redis::connect(url.as_str())
        .await
        .expect("apalis connects");
    let config = apalis_redis::Config::default()
        .queue(format!("{prefix}apalis:{}", rand::random::<u64>()))
        .batch_size(COUNT);
    let mut storage = apalis_redis::RedisStorage::new(conn).with_config(config);
    for n in 0..ops {
        storage.push(ApalisJob { n }).await.expect("apalis push");
    }
    let done = Arc::new(AtomicU64::new(0));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    let start = Instant::now();
    let worker = WorkerBuilder::new(format!("bench-{}", rand::random::<u64>()))
        .backend(storage)
        .concurrency(COUNT)
        .build(move |_job: ApalisJob| {
            let (done, tx) = (done.clone(), tx.clone());
            async move {
                if done.fetch_add(1, Ordering::Relaxed) + 1 == ops
                    && let Some(tx) = tx.lock().expect("the sender").take()
                {
                    let _ = tx.send(());
                }
                Ok::<(), BoxDynError>(())
            }
        });
    worker
        .run_until(async move { rx.await.map_err(std::io::Error::other) })
        .await
        .expect("the apalis worker");
    start.elapsed()
}

/// One round of the raw blocking reader: `ops` messages published one at a time, each timed
/// to its reply.
async fn raw_delivery(url: String, prefix: String, ops: u64) -> Duration {
    let key = format!("{prefix}floor:delivery:{}", rand::random::<u64>());
    let client = redis::Client::open(url.as_str()).expect("a URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("a connection");
    create_group(&mut conn, &key, "g").await;
    let arrived = Arc::new(Notify::new());
    let reader = {
        let (client, key, arrived) = (client.clone(), key.clone(), arrived.clone());
        tokio::spawn(async move {
            let mut reader = client
                .get_multiplexed_async_connection()
                .await
                .expect("a connection");
            let mut seen = 0;
            while seen < ops {
                let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg("g")
                    .arg("raw")
                    .arg("COUNT")
                    .arg(1)
                    .arg("BLOCK")
                    .arg(0)
                    .arg("STREAMS")
                    .arg(&key)
                    .arg(">")
                    .query_async(&mut reader)
                    .await
                    .expect("XREADGROUP");
                for k in reply.keys {
                    for e in k.ids {
                        seen += 1;
                        arrived.notify_one();
                        let _: u64 = redis::cmd("XACK")
                            .arg(&key)
                            .arg("g")
                            .arg(&e.id)
                            .query_async(&mut reader)
                            .await
                            .expect("XACK");
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut total = Duration::ZERO;
    for i in 0..ops {
        let start = Instant::now();
        let _: String = redis::cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("data")
            .arg(format!("{{\"n\":{i}}}"))
            .query_async(&mut conn)
            .await
            .expect("XADD");
        arrived.notified().await;
        total += start.elapsed();
    }
    reader.await.expect("the reader");
    let () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("DEL");
    total
}
