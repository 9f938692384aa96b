//! Crash safety of consumer groups: consumers in child OS processes (`claim_idle` 500 ms,
//! concurrency 4) handle a stream through an idempotent sink (one script records the message id
//! with its effect, and counts every delivery) while the parent kills a random child with
//! `SIGKILL` at random points of the run, K times, restarting it each time. Every message is
//! handled at least once (the done set holds every published id), every effect happens exactly
//! once (the effects counter is M), and nothing is left pending. It runs on a standalone server
//! and on the 3-master cluster (the children get the deployment's URL).
//!
//! CI size: M = 2,000 messages, K = 5 kills. `REDISX_STREAM_CRASH_FULL=1`: 10,000 and 20.
//! `REDISX_STREAM_CRASH_SEED=<n>` replays a run (the seed is printed).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redisx::streams::{ConsumerOptions, Message, StreamsConfig};
use redisx::testing::{
    ChildProcess, Deployment, RawConnection, Topology, in_scenario, signal_ready,
};
use redisx_tests::streams::{
    Job, Rng, add_many, create_group, get_u64, keys, pending, pending_entries, sink, sink_keys,
    stream_runtime, wait_settled,
};
use redisx_tests::{eventually, unique_prefix};

/// What the parent tells its children: the deployment's URL and the app prefix.
const URL_ENV: &str = "REDISX_STREAM_CRASH_URL";
const PREFIX_ENV: &str = "REDISX_STREAM_CRASH_PREFIX";

const STREAM: &str = "crash";
const GROUP: &str = "workers";
/// Consumer processes running at once.
const CHILDREN: u64 = 3;
/// How long the parent waits for all messages to be handled.
const ALL_DONE: Duration = Duration::from_secs(60);

/// `(messages, kills)`: 2,000 and 5 by default, 10,000 and 20 with
/// `REDISX_STREAM_CRASH_FULL=1`.
fn size() -> (u64, u64) {
    if std::env::var("REDISX_STREAM_CRASH_FULL").is_ok_and(|v| v == "1") {
        (10_000, 20)
    } else {
        (2_000, 5)
    }
}

/// A child's consumer name: `crash-{pid}`, so the parent knows whose messages it kills.
fn consumer_name(pid: u32) -> String {
    format!("crash-{pid}")
}

/// The work of job `n` before and after its effect: 0–4 ms each, spread by `n`, so that a kill
/// lands before some effects and between other effects and their acknowledgement.
fn work(n: u64) -> (Duration, Duration) {
    let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    (
        Duration::from_millis(h % 5),
        Duration::from_millis((h / 5) % 5),
    )
}

/// A consumer process: consumes `STREAM` until killed, each message through the idempotent sink.
#[test]
#[ignore = "scenario: run in child processes by killed_consumers_lose_nothing_and_apply_each_effect_once"]
fn crash_worker() {
    if !in_scenario("crash_worker") {
        return;
    }
    let url = std::env::var(URL_ENV).unwrap();
    let prefix = std::env::var(PREFIX_ENV).unwrap();
    let rt = redisx_tests::scenario_runtime();
    // The runtime's warnings and reclaims, in the output the parent prints on failure.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .init();
    rt.block_on(async {
        let rx = stream_runtime(&url, &prefix, StreamsConfig::default()).await;
        let opts = ConsumerOptions::new(GROUP)
            .consumer(&consumer_name(std::process::id()))
            .concurrency(4)
            .batch(4)
            .block(Duration::from_millis(200))
            .claim_idle(Duration::from_millis(500))
            .start_id("0");
        let sink_rx = rx.clone();
        let _handle = rx
            .streams()
            .consumer(STREAM, opts, move |m: Message<Job>| {
                let (rx, prefix) = (sink_rx.clone(), prefix.clone());
                async move {
                    let (before, after) = work(m.payload().n);
                    tokio::time::sleep(before).await;
                    sink(&rx, &prefix, m.id()).await?;
                    tokio::time::sleep(after).await;
                    Ok::<_, redisx::Error>(())
                }
            })
            .start()
            .await
            .unwrap();
        signal_ready();
        // Until the parent kills this process.
        std::future::pending::<()>().await;
    });
}

/// How many entries `consumer` holds pending.
async fn held_by(conn: &mut impl ConnectionLike, stream: &str, consumer: &str) -> usize {
    let rows: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(stream)
        .arg(GROUP)
        .arg("-")
        .arg("+")
        .arg(1_000)
        .arg(consumer)
        .query_async(conn)
        .await
        .unwrap();
    rows.len()
}

async fn handled(conn: &mut impl ConnectionLike, done: &str) -> u64 {
    redis::cmd("SCARD")
        .arg(done)
        .query_async(conn)
        .await
        .unwrap()
}

/// Waits until `done` holds at least `n` ids (false after `ALL_DONE`).
async fn wait_handled(raw: &RawConnection, done: &str, n: u64) -> bool {
    eventually(ALL_DONE, Duration::from_millis(2), || {
        let (mut raw, done) = (raw.clone(), done.to_owned());
        async move { handled(&mut raw, &done).await >= n }
    })
    .await
}

async fn killed_consumers_lose_nothing_and_apply_each_effect_once(topology: Topology) {
    let started = Instant::now();
    let (m, k) = size();
    let deployment = Deployment::start(topology);
    let (url, prefix) = (deployment.url(), unique_prefix("stream_crash"));
    let rx = stream_runtime(&url, &prefix, StreamsConfig::default()).await;
    let keys = keys(&rx, STREAM);
    let (done, effects, deliveries) = sink_keys(&prefix);
    let mut raw = deployment.raw_connection().await;
    create_group(&mut raw, &keys.stream, GROUP, "0").await;
    let mut rng = Rng::from_env("REDISX_STREAM_CRASH_SEED");

    let builder = ChildProcess::scenario("crash_worker")
        .env(URL_ENV, &url)
        .env(PREFIX_ENV, &prefix);
    let mut children: Vec<ChildProcess> =
        tokio::task::block_in_place(|| (0..CHILDREN).map(|_| builder.clone().start()).collect());

    let jobs: Vec<Job> = (0..m).map(|n| Job { n }).collect();
    let ids = add_many(&mut raw, &keys.stream, &jobs).await;
    let published = Instant::now();

    // The kills, at random points of the progress (5% to 90% of the messages handled).
    let mut points: Vec<u64> = (0..k).map(|_| rng.range(m / 20, m * 9 / 10)).collect();
    points.sort_unstable();
    let mut mid_batch = 0;
    for point in points {
        assert!(
            wait_handled(&raw, &done, point).await,
            "progress stalled at {} of {m} handled",
            handled(&mut raw, &done).await
        );
        tokio::time::sleep(Duration::from_millis(rng.range(0, 20))).await;
        let i = usize::try_from(rng.range(0, CHILDREN)).unwrap();
        let victim = consumer_name(children[i].pid());
        let held = held_by(&mut raw, &keys.stream, &victim).await;
        tokio::task::block_in_place(|| children[i].kill());
        if held > 0 {
            mid_batch += 1;
        }
        println!(
            "killed {victim} at {} handled, holding {held} messages",
            handled(&mut raw, &done).await
        );
        tokio::task::block_in_place(|| children[i].restart());
    }

    if !wait_handled(&raw, &done, m).await {
        let left = pending_entries(&mut raw, &keys.stream, GROUP).await;
        let consumers: redis::Value = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&keys.stream)
            .arg(GROUP)
            .query_async(&mut raw)
            .await
            .unwrap();
        for c in &children {
            println!("--- consumer process {}:\n{}", c.pid(), c.output());
        }
        panic!(
            "only {} of {m} messages handled within {ALL_DONE:?}; pending (id, consumer, \
             deliveries): {left:?}; consumers: {consumers:?}",
            handled(&mut raw, &done).await
        );
    }
    let all_handled = published.elapsed();
    let settled = wait_settled(&raw, &keys.stream, GROUP, Duration::from_secs(10)).await;

    let got: BTreeSet<String> = redis::cmd("SMEMBERS")
        .arg(&done)
        .query_async(&mut raw)
        .await
        .unwrap();
    let want: BTreeSet<String> = ids.into_iter().collect();
    let missing: Vec<&String> = want.difference(&got).take(10).collect();
    let unknown: Vec<&String> = got.difference(&want).take(10).collect();
    let (effects, deliveries) = (
        get_u64(&mut raw, &effects).await,
        get_u64(&mut raw, &deliveries).await,
    );
    println!(
        "stream crash on {topology}: {m} messages, {k} kills ({mid_batch} while the victim held messages), \
         {deliveries} deliveries ({} repeated), all handled {:.2?} after publishing, {:.2?} in all",
        deliveries.saturating_sub(m),
        all_handled,
        started.elapsed()
    );
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "every published id handled, nothing else: missing {missing:?}, unknown {unknown:?}"
    );
    assert_eq!(effects, m, "each effect exactly once");
    assert!(deliveries >= m, "{deliveries} deliveries of {m} messages");
    assert!(
        settled,
        "every message acknowledged in the end: {} pending",
        pending(&mut raw, &keys.stream, GROUP).await
    );
    drop(children);
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    killed_consumers_lose_nothing_and_apply_each_effect_once
);
