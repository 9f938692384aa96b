//! The `streams` suite: `rx.streams()` against its raw Redis floor.
//!
//! | bench | ours | floor / baseline |
//! |---|---|---|
//! | `streams.publish` | `publish` of a small struct (JSON-encoded, one `XADD .. MAXLEN ~ 100000 *`) | redis-rs `XADD key MAXLEN ~ 100000 * data <json>` on one connection, the JSON encoded per call |
//! | `streams.publish_batch` | `publish_batch` of 100 messages (one pipeline) | a redis-rs pipeline of the same 100 `XADD`s |
//! | `streams.consume`, `streams.delivery`, `streams.apalis` | see [`streams_consume`](crate::streams_consume) | |
//!
//! Every side talks to the same server on the same pinned CPU. With `--cluster`, only
//! `streams.consume` runs (on the cluster, as `cluster.streams.consume`); `streams.apalis` is
//! left out: `apalis-redis` cannot talk to a cluster.

use std::time::Instant;

use redisx::RedisX;
use redisx::streams::StreamsConfig;
use serde::Serialize;

use crate::Context;
use crate::floor::FloorConnection;
use crate::measure::{Comparison, Side, Unit, compare, emit};

/// The cap of both sides (the config's default).
const MAX_LEN: u64 = 100_000;
/// Messages per batch of `streams.publish_batch`.
const BATCH: usize = 100;

/// The message every publish sends.
#[derive(Clone, Serialize)]
struct Order {
    id: u64,
    customer: &'static str,
    amount_cents: u64,
    currency: &'static str,
}

fn order(id: u64) -> Order {
    Order {
        id,
        customer: "c-1042",
        amount_cents: 4200,
        currency: "EUR",
    }
}

/// Runs the suite; returns every comparison, each already printed as a JSON line when its
/// bench finished.
pub(crate) async fn run(ctx: &Context) -> Vec<Comparison> {
    let rx = ctx
        .runtime(|b| b.streams(StreamsConfig::default().max_len(MAX_LEN)))
        .await;
    let floor = ctx.floor_connection().await;
    let mut all = Vec::new();
    let mut done = |part: Vec<Comparison>| {
        part.iter().for_each(emit);
        all.extend(part);
    };
    if ctx.selected("streams.publish") {
        done(publish(ctx, &rx, &floor).await);
    }
    if ctx.selected("streams.publish_batch") {
        done(publish_batch(ctx, &rx, &floor).await);
    }
    if ctx.selected("streams.consume") {
        done(crate::streams_consume::consume(ctx, &rx).await);
    }
    if ctx.selected("streams.delivery") {
        done(crate::streams_consume::delivery(ctx, &rx).await);
    }
    if ctx.selected("streams.apalis") {
        done(crate::streams_consume::apalis(ctx, &rx).await);
    } else if ctx.is_cluster() {
        ctx.peer_runs("streams.apalis", "the `apalis-redis` peer");
    }
    rx.shutdown().await;
    all
}

fn stage(what: &str) {
    eprintln!("streams: {what}");
}

/// The floor's `XADD key MAXLEN ~ 100000 * data <json>`.
fn xadd(key: &str, msg: &Order) -> redis::Cmd {
    let json = serde_json::to_vec(msg).expect("the order encodes");
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key)
        .arg("MAXLEN")
        .arg("~")
        .arg(MAX_LEN)
        .arg("*")
        .arg("data")
        .arg(json);
    cmd
}

/// `streams.publish`: one message per call.
pub(crate) async fn publish(
    ctx: &Context,
    rx: &RedisX,
    floor: &FloorConnection,
) -> Vec<Comparison> {
    stage("publish: one XADD per message");
    let ours = {
        let streams = rx.streams().clone();
        Side::new("redisx publish", move |ops| {
            let streams = streams.clone();
            async move {
                let start = Instant::now();
                for i in 0..ops {
                    streams
                        .publish("bench-publish", &order(i))
                        .await
                        .expect("a publish");
                }
                start.elapsed()
            }
        })
    };
    let raw = {
        let (conn, key) = (floor.clone(), format!("{}floor:stream:publish", ctx.prefix));
        Side::new("redis-rs XADD MAXLEN ~ 100000 * data <json>", move |ops| {
            let (mut conn, key) = (conn.clone(), key.clone());
            async move {
                let start = Instant::now();
                for i in 0..ops {
                    let _: String = xadd(&key, &order(i))
                        .query_async(&mut conn)
                        .await
                        .expect("XADD");
                }
                start.elapsed()
            }
        })
    };
    compare(
        "streams.publish",
        Unit::UsPerOp,
        &ctx.settings,
        ours,
        vec![raw],
    )
    .await
}

/// `streams.publish_batch`: 100 messages per call, one round trip.
pub(crate) async fn publish_batch(
    ctx: &Context,
    rx: &RedisX,
    floor: &FloorConnection,
) -> Vec<Comparison> {
    stage("publish_batch: 100 messages in one pipeline");
    let batch: Vec<Order> = (0..BATCH as u64).map(order).collect();
    let settings = ctx.settings.with_max_ops(500);
    let ours = {
        let (streams, batch) = (rx.streams().clone(), batch.clone());
        Side::new("redisx publish_batch (100)", move |ops| {
            let (streams, batch) = (streams.clone(), batch.clone());
            async move {
                let start = Instant::now();
                for _ in 0..ops {
                    let ids = streams
                        .publish_batch("bench-batch", &batch)
                        .await
                        .expect("a batch");
                    assert_eq!(ids.len(), BATCH);
                }
                start.elapsed()
            }
        })
    };
    let raw = {
        let (conn, key) = (floor.clone(), format!("{}floor:stream:batch", ctx.prefix));
        Side::new("redis-rs pipeline of 100 XADD", move |ops| {
            let (mut conn, key, batch) = (conn.clone(), key.clone(), batch.clone());
            async move {
                let start = Instant::now();
                for _ in 0..ops {
                    let mut pipe = redis::Pipeline::with_capacity(BATCH);
                    for msg in &batch {
                        pipe.add_command(xadd(&key, msg));
                    }
                    let ids: Vec<String> = pipe.query_async(&mut conn).await.expect("XADDs");
                    assert_eq!(ids.len(), BATCH);
                }
                start.elapsed()
            }
        })
    };
    compare(
        "streams.publish_batch",
        Unit::UsPerOp,
        &settings,
        ours,
        vec![raw],
    )
    .await
}
