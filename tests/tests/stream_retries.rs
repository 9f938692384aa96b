//! Retries and settlement: a message in backoff is never handled early, by any consumer, and
//! holds up no healthy message; `ordering_key` keeps each key's messages in publish order, one
//! at a time; `reject` dead-letters at once; `ack` then `Err` does not retry; with the DLQ off
//! the last failure is acknowledged, dropped and counted. Each test runs on a standalone
//! server and on the 3-master cluster.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redisx::streams::{ConsumerHandle, ConsumerOptions, Message};
use redisx::testing::{Deployment, Topology};
use redisx::{Error, ErrorCode, RedisX};
use redisx_tests::streams::{
    Job, Log, add, add_many, consumed, create_group, entries, fixed_backoff, keys, pending, poll,
    quick_options, stream_runtime, within, xlen, zcard,
};
use redisx_tests::{eventually, unique_prefix};
use serde::{Deserialize, Serialize};

const STREAM: &str = "jobs";
const GROUP: &str = "g";

fn opts(name: &str) -> ConsumerOptions {
    quick_options(GROUP, name)
}

fn failure() -> Error {
    Error::new(ErrorCode::Internal, "not yet")
}

async fn a_message_in_backoff_is_never_handled_early_by_another_consumer(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("stream_backoff_early");
    let backoff = Duration::from_secs(1);
    let rx_a = stream_runtime(&deployment.url(), &prefix, fixed_backoff(1_000)).await;
    let rx_b = stream_runtime(&deployment.url(), &prefix, fixed_backoff(1_000)).await;
    let k = keys(&rx_a, STREAM);
    let mut raw = deployment.raw_connection().await;
    create_group(&mut raw, &k.stream, GROUP, "0").await;
    // (n, attempt, consumer, when the handler started, when it returned)
    let log: Log<(u64, u32, &str, Instant, Instant)> = Log::new();
    let mut handles = Vec::new();
    for (rx, name) in [(&rx_a, "a"), (&rx_b, "b")] {
        let log = log.clone();
        // A reclaim every 100 ms, eager to take anything idle.
        let options = opts(name)
            .concurrency(2)
            .claim_idle(Duration::from_millis(200));
        let handle = rx
            .streams()
            .consumer(STREAM, options, move |m: Message<Job>| {
                let log = log.clone();
                async move {
                    let start = Instant::now();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let first = m.attempt() == 1;
                    log.push((m.payload().n, m.attempt(), name, start, Instant::now()));
                    if first { Err(failure()) } else { Ok(()) }
                }
            })
            .start()
            .await
            .unwrap();
        handles.push(handle);
    }
    add_many(
        &mut raw,
        &k.stream,
        &(0..6).map(|n| Job { n }).collect::<Vec<_>>(),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), poll(), || {
            let log = log.clone();
            async move { log.len() >= 12 }
        })
        .await,
        "{} deliveries",
        log.len()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = log.items();
    assert_eq!(seen.len(), 12, "each message twice, no more: {seen:?}");
    for n in 0..6 {
        let of_n: Vec<_> = seen.iter().filter(|e| e.0 == n).collect();
        let attempts: Vec<u32> = of_n.iter().map(|e| e.1).collect();
        assert_eq!(attempts, [1, 2], "message {n}");
        // The retry is due `backoff` after the failure was recorded (server time, whole ms:
        // up to 1 ms of rounding), which was after the handler returned.
        let gap = of_n[1].3 - of_n[0].4;
        assert!(
            gap + Duration::from_millis(2) >= backoff,
            "message {n} retried {gap:?} after its failure (by {} after {})",
            of_n[1].2,
            of_n[0].2
        );
    }
    println!(
        "retries handled by: {:?}",
        seen.iter()
            .filter(|e| e.1 == 2)
            .map(|e| e.2)
            .collect::<Vec<_>>()
    );
    assert_eq!(pending(&mut raw, &k.stream, GROUP).await, 0);
    assert_eq!(zcard(&mut raw, &k.delayed).await, 0);
    for h in &handles {
        h.stop().await;
    }
    rx_a.shutdown().await;
    rx_b.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_message_in_backoff_is_never_handled_early_by_another_consumer
);

async fn a_message_in_backoff_holds_up_no_healthy_message(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = stream_runtime(
        &deployment.url(),
        &unique_prefix("stream_backoff_flow"),
        fixed_backoff(3_000),
    )
    .await;
    let k = keys(&rx, STREAM);
    let mut raw = deployment.raw_connection().await;
    create_group(&mut raw, &k.stream, GROUP, "0").await;
    let log: Log<(u64, u32)> = Log::new();
    let handle = {
        let log = log.clone();
        rx.streams()
            .consumer(
                STREAM,
                opts("one").concurrency(1),
                move |m: Message<Job>| {
                    log.push((m.payload().n, m.attempt()));
                    let bad = m.payload().n == 0 && m.attempt() == 1;
                    async move { if bad { Err(failure()) } else { Ok(()) } }
                },
            )
            .start()
            .await
            .unwrap()
    };
    add_many(
        &mut raw,
        &k.stream,
        &(0..6).map(|n| Job { n }).collect::<Vec<_>>(),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), poll(), || {
            let log = log.clone();
            async move { log.items().contains(&(0, 2)) }
        })
        .await,
        "the retry came: {:?}",
        log.items()
    );
    let seen = log.items();
    let retry = seen.iter().position(|e| *e == (0, 2)).unwrap();
    let mut before: Vec<u64> = seen[..retry].iter().map(|e| e.0).collect();
    before.sort_unstable();
    assert_eq!(
        before,
        [0, 1, 2, 3, 4, 5],
        "the healthy messages flowed while the failed one waited, on the only slot: {seen:?}"
    );
    handle.stop().await;
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_message_in_backoff_holds_up_no_healthy_message
);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Keyed {
    key: String,
    seq: u64,
}

/// What one round of the ordering test saw: per key, the sequence numbers in handling order;
/// the `(key, seq)` that started while another of its key ran; the peak of handlers at once.
struct Ordered {
    order: HashMap<String, Vec<u64>>,
    overlaps: Vec<(String, u64)>,
    peak: usize,
}

/// One round: `keys_n` × `per_key` messages, interleaved (message `i` is number `i / keys_n`
/// of key `i % keys_n`), published on `deployment` to `stream` before its consumer starts so
/// that its reads are full batches holding several messages of each key; handled with
/// concurrency 8 and `ordering_key`.
async fn ordered_round(
    rx: &RedisX,
    deployment: &Deployment,
    stream: &str,
    keys_n: u64,
    per_key: u64,
) -> Ordered {
    let k = keys(rx, stream);
    let mut raw = deployment.raw_connection().await;
    create_group(&mut raw, &k.stream, GROUP, "0").await;
    let msgs: Vec<Keyed> = (0..keys_n * per_key)
        .map(|i| Keyed {
            key: format!("account-{}", i % keys_n),
            seq: i / keys_n,
        })
        .collect();
    add_many(&mut raw, &k.stream, &msgs).await;
    let order: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
    let active: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let overlaps: Log<(String, u64)> = Log::new();
    let (now, peak, done) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Log::<()>::new(),
    );
    let handle = {
        let (order, active, overlaps) = (order.clone(), active.clone(), overlaps.clone());
        let (now, peak, done) = (now.clone(), peak.clone(), done.clone());
        let options = opts("ordered").concurrency(8).batch(8);
        rx.streams()
            .consumer(stream, options, move |m: Message<Keyed>| {
                let (order, active, overlaps) = (order.clone(), active.clone(), overlaps.clone());
                let (now, peak, done) = (now.clone(), peak.clone(), done.clone());
                async move {
                    let Keyed { key, seq } = m.into_payload();
                    {
                        let mut running = active.lock().unwrap();
                        let of_key = running.entry(key.clone()).or_default();
                        if *of_key > 0 {
                            overlaps.push((key.clone(), seq));
                        }
                        *of_key += 1;
                    }
                    peak.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                    order
                        .lock()
                        .unwrap()
                        .entry(key.clone())
                        .or_default()
                        .push(seq);
                    tokio::time::sleep(Duration::from_millis(seq % 3)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    *active.lock().unwrap().get_mut(&key).unwrap() -= 1;
                    done.push(());
                    Ok::<_, Error>(())
                }
            })
            .ordering_key(|m: &Keyed| m.key.clone())
            .start()
            .await
            .unwrap()
    };
    let total = usize::try_from(keys_n * per_key).unwrap();
    let all = eventually(Duration::from_secs(20), poll(), || {
        let done = done.clone();
        async move { done.len() >= total }
    })
    .await;
    assert!(all, "{} of {total} handled", done.len());
    handle.stop().await;
    let order = order.lock().unwrap().clone();
    Ordered {
        order,
        overlaps: overlaps.items(),
        peak: peak.load(Ordering::SeqCst),
    }
}

async fn ordering_key_keeps_each_keys_publish_order_one_at_a_time(topology: Topology) {
    const KEYS: u64 = 4;
    const PER_KEY: u64 = 50;
    /// Rounds: a misordering is a race between handler tasks, so give it several chances.
    const ROUNDS: usize = 5;
    let deployment = Deployment::start(topology);
    let rx = stream_runtime(
        &deployment.url(),
        &unique_prefix("stream_ordering"),
        fixed_backoff(50),
    )
    .await;
    let want: Vec<u64> = (0..PER_KEY).collect();
    let mut peak = 0;
    for round in 0..ROUNDS {
        let seen =
            ordered_round(&rx, &deployment, &format!("ordered-{round}"), KEYS, PER_KEY).await;
        assert!(
            seen.overlaps.is_empty(),
            "round {round}: two of one key at once: {:?}",
            seen.overlaps
        );
        for key in 0..KEYS {
            let got = &seen.order[&format!("account-{key}")];
            assert_eq!(
                *got, want,
                "round {round}: account-{key} handled out of publish order"
            );
        }
        peak = peak.max(seen.peak);
    }
    assert!(peak >= 2, "different keys ran in parallel (peak {peak})");
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    ordering_key_keeps_each_keys_publish_order_one_at_a_time
);

/// A consumer on a runtime with a 50 ms backoff running `settle` on every message, counting
/// runs; returns the runtime, the stream's keys, the run count and the handle.
async fn settling<F, Fut>(
    deployment: &Deployment,
    test: &str,
    dlq: bool,
    settle: F,
) -> (
    RedisX,
    redisx::streams::StreamKeys,
    Arc<AtomicUsize>,
    ConsumerHandle,
)
where
    F: Fn(Message<Job>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    let rx = stream_runtime(
        &deployment.url(),
        &unique_prefix(test),
        fixed_backoff(50).dlq(dlq),
    )
    .await;
    let k = keys(&rx, STREAM);
    let runs = Arc::new(AtomicUsize::new(0));
    let handle = {
        let runs = runs.clone();
        rx.streams()
            .consumer(
                STREAM,
                opts("settler").max_retries(1),
                move |m: Message<Job>| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    settle(m)
                },
            )
            .start()
            .await
            .unwrap()
    };
    (rx, k, runs, handle)
}

async fn reject_dead_letters_at_once_without_retries(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, k, runs, handle) = settling(&deployment, "stream_reject", true, |m| async move {
        m.reject("bad input").await?;
        // What the handler returns after settling changes nothing.
        Err(failure())
    })
    .await;
    let mut raw = deployment.raw_connection().await;
    let id = add(&mut raw, &k.stream, &Job { n: 9 }).await;
    let dead = eventually(within(), poll(), || {
        let (mut raw, dlq) = (raw.clone(), k.dlq.clone());
        async move { xlen(&mut raw, &dlq).await == 1 }
    })
    .await;
    assert!(dead);
    // Several backoffs later: no retry.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let dlq = entries(&mut raw, &k.dlq).await;
    assert_eq!(dlq.len(), 1);
    let f = &dlq[0].1;
    assert_eq!(
        (
            f["error"].as_str(),
            f["attempt"].as_str(),
            f["original_id"].as_str(),
            f["data"].as_str()
        ),
        ("bad input", "1", id.as_str(), r#"{"n":9}"#)
    );
    assert_eq!(pending(&mut raw, &k.stream, GROUP).await, 0);
    assert_eq!(zcard(&mut raw, &k.delayed).await, 0, "no retry scheduled");
    assert_eq!(
        (consumed(&rx, "dead_letter"), consumed(&rx, "retry")),
        (1, 0)
    );
    handle.stop().await;
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    reject_dead_letters_at_once_without_retries
);

async fn ack_then_err_does_not_retry(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, k, runs, handle) = settling(&deployment, "stream_ack_err", true, |m| async move {
        m.ack().await?;
        Err(failure())
    })
    .await;
    let mut raw = deployment.raw_connection().await;
    add(&mut raw, &k.stream, &Job { n: 1 }).await;
    let acked = eventually(within(), poll(), || {
        let rx = rx.clone();
        async move { consumed(&rx, "success") == 1 }
    })
    .await;
    assert!(acked);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "no retry");
    assert_eq!(pending(&mut raw, &k.stream, GROUP).await, 0);
    assert_eq!(zcard(&mut raw, &k.delayed).await, 0);
    assert_eq!(xlen(&mut raw, &k.dlq).await, 0);
    assert_eq!(
        (consumed(&rx, "retry"), consumed(&rx, "dead_letter")),
        (0, 0)
    );
    handle.stop().await;
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    ack_then_err_does_not_retry
);

async fn without_the_dlq_the_last_failure_is_acknowledged_dropped_and_counted(topology: Topology) {
    let deployment = Deployment::start(topology);
    let attempts: Log<u32> = Log::new();
    let (rx, k, runs, handle) = {
        let attempts = attempts.clone();
        settling(&deployment, "stream_no_dlq", false, move |m| {
            attempts.push(m.attempt());
            async { Err(failure()) }
        })
        .await
    };
    let mut raw = deployment.raw_connection().await;
    add(&mut raw, &k.stream, &Job { n: 1 }).await;
    let dropped = eventually(within(), poll(), || {
        let rx = rx.clone();
        async move { consumed(&rx, "dead_letter") == 1 }
    })
    .await;
    assert!(dropped, "attempts {:?}", attempts.items());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(attempts.items(), [1, 2], "max_retries 1: two attempts");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(pending(&mut raw, &k.stream, GROUP).await, 0, "acknowledged");
    assert_eq!(xlen(&mut raw, &k.dlq).await, 0, "no DLQ entry");
    assert_eq!(zcard(&mut raw, &k.delayed).await, 0, "nothing scheduled");
    assert_eq!(consumed(&rx, "retry"), 1);
    handle.stop().await;
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    without_the_dlq_the_last_failure_is_acknowledged_dropped_and_counted
);
