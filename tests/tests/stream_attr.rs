//! `#[stream_consumer]` end to end and a consumer's resilience: registered functions started by
//! `rx.start_consumers()` (both handler forms) and one by one by name, a group created at
//! `start_id = "0"`; a consumer that outlives
//! a Redis restart resumes by itself; entries a stream's cap removed while pending are recorded
//! in the DLQ as lost and counted; the runtime's shutdown drains the handlers in flight.
//!
//! Each test runs on a standalone server and on the 3-master cluster, except the restart, which
//! restarts a server of its own.

use std::sync::Mutex;
use std::time::Duration;

use redisx::streams::{ConsumerOptions, Message, PublishOptions, StreamsConfig};
use redisx::testing::{Deployment, Topology};
use redisx::{Error, stream_consumer};
use redisx_tests::streams::{Job, keys, stream_runtime};
use redisx_tests::{RedisServer, eventually, unique_prefix};

/// What the registered consumers saw, by stream.
static SEEN: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());

/// Where the job numbers a test on `topology` sends start: the registered consumers of the
/// standalone and the cluster test share [`SEEN`], each test reads its own numbers.
fn base(topology: Topology) -> u64 {
    match topology {
        Topology::Standalone => 0,
        _ => 1_000,
    }
}

/// The job numbers of `stream` from `base` on (below `base + 1000`), less `base`, sorted.
fn seen(stream: &str, base: u64) -> Vec<u64> {
    let mut v: Vec<u64> = SEEN
        .lock()
        .unwrap()
        .iter()
        .filter(|(s, n)| s == stream && (base..base + 1_000).contains(n))
        .map(|(_, n)| n - base)
        .collect();
    v.sort_unstable();
    v
}

#[stream_consumer(
    stream = "attr_messages",
    group = "g",
    concurrency = 2,
    block = "200ms"
)]
async fn on_message(msg: Message<Job>) -> Result<(), Error> {
    SEEN.lock()
        .unwrap()
        .push(("attr_messages".to_owned(), msg.payload().n));
    Ok(())
}

#[stream_consumer(
    stream = "attr_payloads",
    group = "g",
    block = "200ms",
    claim_idle = "off"
)]
async fn on_payload(job: Job) -> Result<(), String> {
    SEEN.lock()
        .unwrap()
        .push(("attr_payloads".to_owned(), job.n));
    Ok(())
}

#[stream_consumer(stream = "attr_by_name", group = "g", block = "200ms", start_id = "0")]
async fn on_named(job: Job) -> Result<(), Error> {
    SEEN.lock()
        .unwrap()
        .push(("attr_by_name".to_owned(), job.n));
    Ok(())
}

fn within() -> Duration {
    Duration::from_secs(5)
}

fn poll() -> Duration {
    Duration::from_millis(10)
}

async fn wait_seen(stream: &str, base: u64, want: &[u64]) -> bool {
    eventually(within(), poll(), || async { seen(stream, base) == want }).await
}

async fn registered_consumers_start_together_or_by_name(topology: Topology) {
    let deployment = Deployment::start(topology);
    let base = base(topology);
    let rx = stream_runtime(
        &deployment.url(),
        &unique_prefix("stream_attr"),
        StreamsConfig::default(),
    )
    .await;
    // Published before any group exists: `on_named` creates its group at `start_id = "0"`.
    rx.streams()
        .publish("attr_by_name", &Job { n: base + 6 })
        .await
        .unwrap();
    let started = rx.start_consumers().await.unwrap();
    assert_eq!(started.len(), 3, "every registered consumer of this binary");
    for n in 0..5 {
        rx.streams()
            .publish("attr_messages", &Job { n: base + n })
            .await
            .unwrap();
        rx.streams()
            .publish("attr_payloads", &Job { n: base + n + 100 })
            .await
            .unwrap();
    }
    assert!(
        wait_seen("attr_messages", base, &[0, 1, 2, 3, 4]).await,
        "{:?}",
        seen("attr_messages", base)
    );
    assert!(
        wait_seen("attr_payloads", base, &[100, 101, 102, 103, 104]).await,
        "{:?}",
        seen("attr_payloads", base)
    );
    // Already running: starting it again by name is refused (same stream, group and name).
    let e = rx.streams().start_registered("on_named").await.unwrap_err();
    assert_eq!(
        e.code(),
        redisx::ErrorCode::StreamConsumerGroupError,
        "{e:#}"
    );
    for h in &started {
        h.stop().await;
    }
    // By name, after the others stopped.
    let named = rx.streams().start_registered("on_named").await.unwrap();
    rx.streams()
        .publish("attr_by_name", &Job { n: base + 7 })
        .await
        .unwrap();
    assert!(
        wait_seen("attr_by_name", base, &[6, 7]).await,
        "{:?}",
        seen("attr_by_name", base)
    );
    let e = rx.streams().start_registered("nope").await.unwrap_err();
    assert!(e.message().contains("`nope`"), "{e:#}");
    named.stop().await;
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    registered_consumers_start_together_or_by_name
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_resumes_after_redis_restarts() {
    let mut server = RedisServer::start_owned();
    let rx = stream_runtime(
        &server.url(),
        &unique_prefix("stream_resume"),
        StreamsConfig::default(),
    )
    .await;
    let got = std::sync::Arc::new(Mutex::new(Vec::new()));
    let handle = {
        let got = got.clone();
        rx.streams()
            .consumer(
                "resume",
                ConsumerOptions::new("g").block(Duration::from_millis(200)),
                move |m: Message<Job>| {
                    got.lock().unwrap().push(m.payload().n);
                    async { Ok::<_, Error>(()) }
                },
            )
            .start()
            .await
            .unwrap()
    };
    rx.streams().publish("resume", &Job { n: 1 }).await.unwrap();
    let first = eventually(within(), poll(), || async {
        got.lock().unwrap().len() == 1
    })
    .await;
    assert!(first);
    // Redis goes away and comes back empty: the consumer recreates its group and reads on.
    server.restart();
    let republished = eventually(Duration::from_secs(10), Duration::from_millis(50), || {
        let rx = rx.clone();
        async move { rx.streams().publish("resume", &Job { n: 2 }).await.is_ok() }
    })
    .await;
    assert!(republished, "the producer works again");
    let resumed = eventually(Duration::from_secs(10), poll(), || async {
        got.lock().unwrap().contains(&2)
    })
    .await;
    assert!(
        resumed,
        "the consumer resumed by itself: {:?}",
        got.lock().unwrap()
    );
    handle.stop().await;
    rx.shutdown().await;
}

async fn entries_trimmed_while_pending_are_recorded_as_lost(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = stream_runtime(
        &deployment.url(),
        &unique_prefix("stream_lost"),
        StreamsConfig::default(),
    )
    .await;
    let k = keys(&rx, "lost");
    let mut raw = deployment.raw_connection().await;
    let streams = rx.streams();
    assert!(streams.create_group("lost", "g", "0").await.unwrap());
    // A consumer that died after reading 300 entries, then a publish that caps the stream to
    // one entry (approximately: whole nodes of 100 go).
    let batch: Vec<Job> = (0..300).map(|n| Job { n }).collect();
    streams.publish_batch("lost", &batch).await.unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg("dead")
        .arg("COUNT")
        .arg(300)
        .arg("STREAMS")
        .arg(&k.stream)
        .arg(">")
        .query_async(&mut raw)
        .await
        .unwrap();
    streams
        .publish_with("lost", &Job { n: 999 }, &PublishOptions::new().max_len(1))
        .await
        .unwrap();
    let len: u64 = redis::cmd("XLEN")
        .arg(&k.stream)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(len < 301, "the cap removed entries: {len} left");

    let handle = streams
        .consumer(
            "lost",
            ConsumerOptions::new("g")
                .consumer("alive")
                .block(Duration::from_millis(100))
                .claim_idle(Duration::from_millis(100))
                .batch(100)
                .concurrency(100),
            |_m: Message<Job>| async { Ok::<_, Error>(()) },
        )
        .start()
        .await
        .unwrap();
    let removed = 301 - len;
    let recorded = eventually(within(), poll(), || {
        let streams = streams.clone();
        async move { streams.dlq_len("lost").await.unwrap() >= removed }
    })
    .await;
    assert!(recorded, "every trimmed pending entry is in the DLQ");
    let dead = streams.dlq_list("lost", 1).await.unwrap();
    assert!(
        dead[0].error.as_deref().is_some_and(|e| e.contains("lost")),
        "{dead:?}"
    );
    let counted = redisx_tests::metric_sum(&rx, "redisx_stream_trimmed_pending_total", &[]);
    assert_eq!(counted, removed);
    handle.stop().await;
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    entries_trimmed_while_pending_are_recorded_as_lost
);

async fn shutdown_drains_the_handlers_in_flight(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = stream_runtime(
        &deployment.url(),
        &unique_prefix("stream_shutdown"),
        StreamsConfig::default(),
    )
    .await;
    let k = keys(&rx, "drain");
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = std::sync::Arc::new(Mutex::new(Some(started_tx)));
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _handle = {
        let (started_tx, finished) = (started_tx.clone(), finished.clone());
        rx.streams()
            .consumer(
                "drain",
                ConsumerOptions::new("g").block(Duration::from_millis(200)),
                move |_m: Message<Job>| {
                    let (started_tx, finished) = (started_tx.clone(), finished.clone());
                    async move {
                        if let Some(tx) = started_tx.lock().unwrap().take() {
                            let _ = tx.send(());
                        }
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        finished.store(true, std::sync::atomic::Ordering::SeqCst);
                        Ok::<_, Error>(())
                    }
                },
            )
            .start()
            .await
            .unwrap()
    };
    rx.streams().publish("drain", &Job { n: 1 }).await.unwrap();
    tokio::time::timeout(within(), started_rx)
        .await
        .expect("the handler starts")
        .unwrap();
    // The runtime's shutdown stops the consumer through the plugin lifecycle: the handler in
    // flight finishes and its message is acknowledged before the clients close.
    rx.shutdown().await;
    assert!(
        finished.load(std::sync::atomic::Ordering::SeqCst),
        "the in-flight handler finished before shutdown returned"
    );
    let mut raw = deployment.raw_connection().await;
    let (pending, ..): (u64, Option<String>, Option<String>, redis::Value) = redis::cmd("XPENDING")
        .arg(&k.stream)
        .arg("g")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(pending, 0, "its message was acknowledged");
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    shutdown_drains_the_handlers_in_flight
);
