//! Delayed messages: 1,000 messages scheduled over 5 s (raw `ZADD` into the delayed set, in the
//! documented member layout) each arrive no earlier than their due time and all arrive, with one
//! consumer, across a graceful restart (stop, then a new runtime) and across a crash of the
//! consumer process (`SIGKILL`, then a new process). Arrivals are stamped with Redis's clock
//! (`TIME`, the clock due times are scored by) in the script that records them. The lateness is
//! printed, not asserted. Each test runs on a standalone server and on the 3-master cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use redisx::streams::{ConsumerHandle, ConsumerOptions, Message, StreamsConfig};
use redisx::testing::{
    ChildProcess, Deployment, RawConnection, Topology, in_scenario, signal_ready,
};
use redisx::{Error, RedisX};
use redisx_tests::streams::{create_group, keys, schedule_many, server_time_ms, stream_runtime};
use redisx_tests::{eventually, unique_prefix};
use serde::{Deserialize, Serialize};

const URL_ENV: &str = "REDISX_STREAM_DELAYED_URL";
const PREFIX_ENV: &str = "REDISX_STREAM_DELAYED_PREFIX";
const STREAM: &str = "later";
const GROUP: &str = "g";
const MESSAGES: u64 = 1_000;
/// The messages are due over this window, one every 5 ms.
const WINDOW_MS: u64 = 5_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Timed {
    n: u64,
    /// When it is due, ms since the epoch on Redis's clock.
    due: u64,
}

/// Appends `n:due:now` to `KEYS[1]`, `now` being Redis's clock in ms.
const RECORD_LUA: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('RPUSH', KEYS[1], ARGV[1] .. ':' .. ARGV[2] .. ':' .. now)
return now";

fn arrivals_key(prefix: &str) -> String {
    format!("{prefix}arrivals")
}

/// Starts a consumer of `STREAM` on `rx` recording every arrival in the list under `prefix`.
async fn recorder(rx: &RedisX, prefix: &str, name: &str) -> ConsumerHandle {
    let (client_rx, list) = (rx.clone(), arrivals_key(prefix));
    let opts = ConsumerOptions::new(GROUP)
        .consumer(name)
        .concurrency(8)
        .block(Duration::from_millis(200))
        .claim_idle(Duration::from_millis(500))
        .start_id("0");
    rx.streams()
        .consumer(STREAM, opts, move |m: Message<Timed>| {
            let (rx, list) = (client_rx.clone(), list.clone());
            async move {
                let script = redis::Script::new(RECORD_LUA);
                let mut inv = script.prepare_invoke();
                inv.key(&list).arg(m.payload().n).arg(m.payload().due);
                let _: u64 = rx.client().invoke_script(&inv).await?;
                Ok::<_, Error>(())
            }
        })
        .start()
        .await
        .unwrap()
}

/// Creates the group and schedules `MESSAGES` messages, due from 300 ms from now on, over
/// `WINDOW_MS`.
async fn schedule(raw: &mut RawConnection, rx: &RedisX) {
    let k = keys(rx, STREAM);
    create_group(raw, &k.stream, GROUP, "0").await;
    let start = server_time_ms(raw).await + 300;
    let items: Vec<(Timed, u64)> = (0..MESSAGES)
        .map(|n| {
            let due = start + n * WINDOW_MS / MESSAGES;
            (Timed { n, due }, due)
        })
        .collect();
    schedule_many(raw, &k.delayed, &items).await;
}

/// Every arrival so far: `(n, due, arrived)`.
async fn arrivals(raw: &mut RawConnection, prefix: &str) -> Vec<(u64, u64, u64)> {
    let rows: Vec<String> = redis::cmd("LRANGE")
        .arg(arrivals_key(prefix))
        .arg(0)
        .arg(-1)
        .query_async(raw)
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let v: Vec<u64> = r.split(':').map(|x| x.parse().unwrap()).collect();
            (v[0], v[1], v[2])
        })
        .collect()
}

/// Waits until `n` distinct messages arrived (the window plus 15 s at most).
async fn wait_distinct(raw: &RawConnection, prefix: &str, n: u64) -> bool {
    let within = Duration::from_millis(WINDOW_MS) + Duration::from_secs(15);
    eventually(within, Duration::from_millis(20), || {
        let (mut raw, prefix) = (raw.clone(), prefix.to_owned());
        async move {
            let seen: BTreeSet<u64> = arrivals(&mut raw, &prefix)
                .await
                .iter()
                .map(|a| a.0)
                .collect();
            seen.len() as u64 >= n
        }
    })
    .await
}

/// Checks that every message arrived, none before its due time; prints the lateness.
async fn check(raw: &mut RawConnection, prefix: &str, what: &str) {
    let all = arrivals(raw, prefix).await;
    let mut first: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let early: Vec<&(u64, u64, u64)> = all.iter().filter(|(_, due, at)| at < due).collect();
    for &(n, due, at) in &all {
        first.entry(n).or_insert((due, at));
    }
    let missing: Vec<u64> = (0..MESSAGES)
        .filter(|n| !first.contains_key(n))
        .take(10)
        .collect();
    let mut late: Vec<u64> = first
        .values()
        .map(|(due, at)| at.saturating_sub(*due))
        .collect();
    late.sort_unstable();
    let pct = |p: usize| {
        late.get((late.len() * p / 100).min(late.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let max = late.last().copied().unwrap_or(0);
    println!(
        "{what}: {} arrivals of {MESSAGES} messages ({} repeated); lateness: median {} ms, \
         p99 {} ms, max {max} ms",
        all.len(),
        all.len() - first.len(),
        pct(50),
        pct(99),
    );
    assert!(
        early.is_empty(),
        "{} arrived before due, e.g. (n, due, arrived) {:?}",
        early.len(),
        &early[..early.len().min(5)]
    );
    assert!(missing.is_empty(), "never arrived: {missing:?}...");
}

async fn delayed_messages_all_arrive_none_early(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("stream_delayed");
    let rx = stream_runtime(&deployment.url(), &prefix, StreamsConfig::default()).await;
    let mut raw = deployment.raw_connection().await;
    let handle = recorder(&rx, &prefix, "one").await;
    schedule(&mut raw, &rx).await;
    assert!(
        wait_distinct(&raw, &prefix, MESSAGES).await,
        "not all arrived"
    );
    check(&mut raw, &prefix, "one consumer").await;
    assert_eq!(
        arrivals(&mut raw, &prefix).await.len() as u64,
        MESSAGES,
        "each once"
    );
    handle.stop().await;
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    delayed_messages_all_arrive_none_early
);

async fn delayed_messages_survive_a_consumer_restart(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("stream_delayed_restart");
    let first = stream_runtime(&deployment.url(), &prefix, StreamsConfig::default()).await;
    let mut raw = deployment.raw_connection().await;
    let handle = recorder(&first, &prefix, "first").await;
    schedule(&mut raw, &first).await;
    assert!(wait_distinct(&raw, &prefix, MESSAGES * 2 / 5).await);
    handle.stop().await;
    first.shutdown().await;
    let stopped_at = arrivals(&mut raw, &prefix).await.len();
    // Messages come due with no consumer running: they wait in the delayed set.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = stream_runtime(&deployment.url(), &prefix, StreamsConfig::default()).await;
    let handle = recorder(&second, &prefix, "second").await;
    assert!(
        wait_distinct(&raw, &prefix, MESSAGES).await,
        "not all arrived after the restart"
    );
    println!("graceful restart after {stopped_at} arrivals");
    check(&mut raw, &prefix, "graceful restart").await;
    handle.stop().await;
    second.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    delayed_messages_survive_a_consumer_restart
);

/// A consumer process recording arrivals until killed.
#[test]
#[ignore = "scenario: run in a child process by delayed_messages_survive_a_killed_consumer_process"]
fn delayed_worker() {
    if !in_scenario("delayed_worker") {
        return;
    }
    let url = std::env::var(URL_ENV).unwrap();
    let prefix = std::env::var(PREFIX_ENV).unwrap();
    let rt = redisx_tests::scenario_runtime();
    rt.block_on(async {
        let rx = stream_runtime(&url, &prefix, StreamsConfig::default()).await;
        let _handle = recorder(&rx, &prefix, &format!("worker-{}", std::process::id())).await;
        signal_ready();
        std::future::pending::<()>().await;
    });
}

async fn delayed_messages_survive_a_killed_consumer_process(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (url, prefix) = (deployment.url(), unique_prefix("stream_delayed_kill"));
    let rx = stream_runtime(&url, &prefix, StreamsConfig::default()).await;
    let mut raw = deployment.raw_connection().await;
    let builder = ChildProcess::scenario("delayed_worker")
        .env(URL_ENV, &url)
        .env(PREFIX_ENV, &prefix);
    let mut child = tokio::task::spawn_blocking(move || builder.start())
        .await
        .unwrap();
    schedule(&mut raw, &rx).await;
    assert!(wait_distinct(&raw, &prefix, MESSAGES * 2 / 5).await);
    tokio::task::block_in_place(|| child.kill());
    let killed_at = arrivals(&mut raw, &prefix).await.len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| child.restart());
    assert!(
        wait_distinct(&raw, &prefix, MESSAGES).await,
        "not all arrived after the restart; the consumer said:\n{}",
        child.output()
    );
    println!("killed after {killed_at} arrivals");
    check(&mut raw, &prefix, "killed and restarted").await;
    drop(child);
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    delayed_messages_survive_a_killed_consumer_process
);
