//! Reclaiming and draining: the messages of a consumer that died (a killed process, or a
//! reader that never acknowledged) are reclaimed by another after `claim_idle`, their attempt
//! counting Redis's deliveries; a live consumer's long handler is never reclaimed; `stop()`
//! lets in-flight handlers finish, reads nothing after, and leaves the rest to another
//! consumer; a drain out of time leaves its message pending for another; stopping twice is
//! harmless; two consumers of one name in one process are refused. Each test runs on a
//! standalone server and on the 3-master cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redisx::streams::{ConsumerOptions, Message, StreamsConfig};
use redisx::testing::{ChildProcess, Deployment, Topology, in_scenario};
use redisx::{Error, ErrorCode, RedisX};
use redisx_tests::streams::{
    Job, Log, add, create_group, keys, pending, pending_entries, poll, quick_options,
    stream_runtime, wait_settled, within,
};
use redisx_tests::{eventually, unique_prefix};

const URL_ENV: &str = "REDISX_STREAM_RECLAIM_URL";
const PREFIX_ENV: &str = "REDISX_STREAM_RECLAIM_PREFIX";
const STREAM: &str = "jobs";
const GROUP: &str = "g";

fn opts(name: &str) -> ConsumerOptions {
    quick_options(GROUP, name)
}

/// A consumer of `STREAM` on `rx` logging `(n, attempt)` of every message and acknowledging it.
async fn logging(
    rx: &RedisX,
    o: ConsumerOptions,
    log: &Log<(u64, u32)>,
) -> redisx::streams::ConsumerHandle {
    let log = log.clone();
    rx.streams()
        .consumer(STREAM, o, move |m: Message<Job>| {
            log.push((m.payload().n, m.attempt()));
            async { Ok::<_, Error>(()) }
        })
        .start()
        .await
        .unwrap()
}

/// A consumer process that takes the three messages of the stream and never finishes them.
#[test]
#[ignore = "scenario: run in a child process by a_killed_consumers_messages_are_reclaimed_with_their_deliveries"]
fn holder() {
    if !in_scenario("holder") {
        return;
    }
    let url = std::env::var(URL_ENV).unwrap();
    let prefix = std::env::var(PREFIX_ENV).unwrap();
    let rt = redisx_tests::scenario_runtime();
    rt.block_on(async {
        let rx = stream_runtime(&url, &prefix, StreamsConfig::default()).await;
        let held = Arc::new(AtomicUsize::new(0));
        let o = opts("holder")
            .concurrency(3)
            .batch(3)
            .claim_idle(Duration::from_millis(300));
        let _handle = rx
            .streams()
            .consumer(STREAM, o, move |_m: Message<Job>| {
                let n = held.fetch_add(1, Ordering::SeqCst) + 1;
                println!("holding {n}");
                std::future::pending::<Result<(), Error>>()
            })
            .start()
            .await
            .unwrap();
        std::future::pending::<()>().await;
    });
}

async fn a_killed_consumers_messages_are_reclaimed_with_their_deliveries(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (url, prefix) = (deployment.url(), unique_prefix("stream_reclaim_kill"));
    let rx = stream_runtime(&url, &prefix, StreamsConfig::default()).await;
    let k = keys(&rx, STREAM);
    let mut raw = deployment.raw_connection().await;
    create_group(&mut raw, &k.stream, GROUP, "0").await;
    for n in 0..3 {
        add(&mut raw, &k.stream, &Job { n }).await;
    }
    let builder = ChildProcess::scenario("holder")
        .env(URL_ENV, &url)
        .env(PREFIX_ENV, &prefix)
        .ready_line("holding 3");
    let mut child = tokio::task::spawn_blocking(move || builder.start())
        .await
        .unwrap();
    let held = pending_entries(&mut raw, &k.stream, GROUP).await;
    assert!(
        held.iter().all(|(_, c, n)| c == "holder" && *n == 1),
        "the holder has them, delivered once: {held:?}"
    );
    tokio::task::block_in_place(|| child.kill());

    let log = Log::new();
    let rescuer = logging(
        &rx,
        opts("rescuer")
            .concurrency(4)
            .claim_idle(Duration::from_millis(300)),
        &log,
    )
    .await;
    assert!(log.wait_len(3).await, "reclaimed: {:?}", log.items());
    let mut got = log.items();
    got.sort_unstable();
    assert_eq!(
        got,
        [(0, 2), (1, 2), (2, 2)],
        "each once, as its second delivery"
    );
    let settled = wait_settled(&raw, &k.stream, GROUP, within()).await;
    assert!(
        settled,
        "acknowledged: {:?}",
        pending_entries(&mut raw, &k.stream, GROUP).await
    );
    rescuer.stop().await;
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_killed_consumers_messages_are_reclaimed_with_their_deliveries
);

async fn messages_a_reader_never_acknowledged_are_reclaimed_counting_deliveries(
    topology: Topology,
) {
    let deployment = Deployment::start(topology);
    let (url, prefix) = (deployment.url(), unique_prefix("stream_reclaim_ghost"));
    let rx = stream_runtime(&url, &prefix, StreamsConfig::default()).await;
    let k = keys(&rx, STREAM);
    let mut raw = deployment.raw_connection().await;
    create_group(&mut raw, &k.stream, GROUP, "0").await;
    let first = add(&mut raw, &k.stream, &Job { n: 1 }).await;
    add(&mut raw, &k.stream, &Job { n: 2 }).await;
    // A reader that dies before acknowledging: two deliveries of the first, one of the second.
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg("ghost")
        .arg("COUNT")
        .arg(2)
        .arg("STREAMS")
        .arg(&k.stream)
        .arg(">")
        .query_async(&mut raw)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(&k.stream)
        .arg(GROUP)
        .arg("ghost-2")
        .arg(0)
        .arg(&first)
        .query_async(&mut raw)
        .await
        .unwrap();

    let log = Log::new();
    let handle = logging(
        &rx,
        opts("live")
            .concurrency(2)
            .claim_idle(Duration::from_millis(300)),
        &log,
    )
    .await;
    add(&mut raw, &k.stream, &Job { n: 3 }).await;
    assert!(log.wait_len(3).await, "handled: {:?}", log.items());
    let mut got = log.items();
    got.sort_unstable();
    assert_eq!(
        got,
        [(1, 3), (2, 2), (3, 1)],
        "attempt = Redis's deliveries"
    );
    let settled = wait_settled(&raw, &k.stream, GROUP, within()).await;
    assert!(settled);
    handle.stop().await;
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    messages_a_reader_never_acknowledged_are_reclaimed_counting_deliveries
);

async fn a_live_consumers_long_handler_is_never_reclaimed(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (url, prefix) = (deployment.url(), unique_prefix("stream_reclaim_live"));
    // Two instances of one service.
    let a = stream_runtime(&url, &prefix, StreamsConfig::default()).await;
    let b = stream_runtime(&url, &prefix, StreamsConfig::default()).await;
    let k = keys(&a, STREAM);
    let mut raw = deployment.raw_connection().await;
    create_group(&mut raw, &k.stream, GROUP, "0").await;
    let claim_idle = Duration::from_millis(400);
    let (started, finished) = (Log::new(), Log::new());
    let mut handles = Vec::new();
    for (rx, name) in [(&a, "a"), (&b, "b")] {
        let (started, finished) = (started.clone(), finished.clone());
        let h = rx
            .streams()
            .consumer(
                STREAM,
                opts(name).claim_idle(claim_idle),
                move |m: Message<Job>| {
                    let (started, finished) = (started.clone(), finished.clone());
                    async move {
                        started.push((name, m.attempt()));
                        // Five times claim_idle.
                        tokio::time::sleep(claim_idle * 5).await;
                        finished.push(name);
                        Ok::<_, Error>(())
                    }
                },
            )
            .start()
            .await
            .unwrap();
        handles.push(h);
    }
    add(&mut raw, &k.stream, &Job { n: 1 }).await;
    assert!(started.wait_len(1).await);
    // On demand too: nothing is idle past claim_idle while its handler runs.
    while finished.is_empty() {
        for h in &handles {
            assert_eq!(
                h.claim().await.unwrap(),
                0,
                "nothing to reclaim from a live consumer"
            );
        }
        tokio::time::sleep(claim_idle / 4).await;
    }
    // Longer than a reclaim round after the handler ended.
    tokio::time::sleep(claim_idle * 2).await;
    assert_eq!(
        started.items().len(),
        1,
        "handled once: {:?}",
        started.items()
    );
    assert_eq!(started.items()[0].1, 1);
    assert_eq!(pending(&mut raw, &k.stream, GROUP).await, 0);
    for h in &handles {
        h.stop().await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_live_consumers_long_handler_is_never_reclaimed
);

async fn stop_lets_in_flight_handlers_finish_and_reads_nothing_after(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (url, prefix) = (deployment.url(), unique_prefix("stream_reclaim_drain"));
    let rx = stream_runtime(&url, &prefix, StreamsConfig::default()).await;
    let k = keys(&rx, STREAM);
    let mut raw = deployment.raw_connection().await;
    create_group(&mut raw, &k.stream, GROUP, "0").await;
    for n in 0..5 {
        add(&mut raw, &k.stream, &Job { n }).await;
    }
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (started, finished) = (Log::new(), Log::new());
    let handle = {
        let (gate, started, finished) = (gate.clone(), started.clone(), finished.clone());
        rx.streams()
            .consumer(
                STREAM,
                opts("first").concurrency(2),
                move |m: Message<Job>| {
                    let (gate, started, finished) =
                        (gate.clone(), started.clone(), finished.clone());
                    async move {
                        started.push(m.payload().n);
                        let _pass = gate.acquire().await.unwrap();
                        finished.push(m.payload().n);
                        Ok::<_, Error>(())
                    }
                },
            )
            .start()
            .await
            .unwrap()
    };
    assert!(started.wait_len(2).await);
    assert_eq!(handle.in_flight(), 2);
    let stopping = {
        let h = handle.clone();
        tokio::spawn(async move { h.stop().await })
    };
    assert!(
        eventually(within(), poll(), || {
            let h = handle.clone();
            async move { !h.is_running() }
        })
        .await
    );
    // Published after the stop: never read by this consumer.
    for n in 5..7 {
        add(&mut raw, &k.stream, &Job { n }).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stopping.is_finished(), "the drain waits for the handlers");
    gate.add_permits(100);
    tokio::time::timeout(within(), stopping)
        .await
        .unwrap()
        .unwrap();
    let (mut done, mut taken) = (finished.items(), started.items());
    done.sort_unstable();
    taken.sort_unstable();
    assert_eq!(done, taken, "both in-flight handlers finished");
    assert_eq!(handle.in_flight(), 0);
    // A read round later, still nothing more.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        started.len(),
        2,
        "nothing read after the stop: {:?}",
        started.items()
    );
    assert_eq!(
        pending(&mut raw, &k.stream, GROUP).await,
        0,
        "both acknowledged, nothing else delivered"
    );

    let log = Log::new();
    let next = logging(&rx, opts("next"), &log).await;
    assert!(log.wait_len(5).await, "{:?}", log.items());
    let mut rest = log.items();
    rest.sort_unstable();
    let want: Vec<(u64, u32)> = (0..7)
        .filter(|n| !done.contains(n))
        .map(|n| (n, 1))
        .collect();
    assert_eq!(
        rest, want,
        "the rest, each delivered once, to the next consumer"
    );
    next.stop().await;
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    stop_lets_in_flight_handlers_finish_and_reads_nothing_after
);

async fn a_drain_out_of_time_leaves_its_message_to_another_and_stopping_twice_is_harmless(
    topology: Topology,
) {
    let deployment = Deployment::start(topology);
    let (url, prefix) = (deployment.url(), unique_prefix("stream_reclaim_abort"));
    let rx = stream_runtime(&url, &prefix, StreamsConfig::default()).await;
    let other = stream_runtime(&url, &prefix, StreamsConfig::default()).await;
    let k = keys(&rx, STREAM);
    let mut raw = deployment.raw_connection().await;
    create_group(&mut raw, &k.stream, GROUP, "0").await;
    add(&mut raw, &k.stream, &Job { n: 1 }).await;
    let stuck = Log::new();
    let handle = {
        let stuck = stuck.clone();
        rx.streams()
            .consumer(STREAM, opts("stuck"), move |m: Message<Job>| {
                stuck.push(m.payload().n);
                std::future::pending::<Result<(), Error>>()
            })
            .start()
            .await
            .unwrap()
    };
    assert!(stuck.wait_len(1).await);
    tokio::time::timeout(within(), handle.stop_within(Duration::from_millis(200)))
        .await
        .expect("the drain gives up at its deadline");
    // Aborted: the task ends at its next poll (`stop_within` does not wait for that).
    let aborted = eventually(within(), poll(), || {
        let h = handle.clone();
        async move { h.in_flight() == 0 }
    })
    .await;
    assert!(aborted, "the handler was aborted");
    let left = pending_entries(&mut raw, &k.stream, GROUP).await;
    assert_eq!(left.len(), 1);
    assert_eq!(
        (left[0].1.as_str(), left[0].2),
        ("stuck", 1),
        "pending on the stopped consumer"
    );
    // Again, from a clone and at once from two tasks: nothing happens.
    let clone = handle.clone();
    tokio::join!(handle.stop(), clone.stop());
    assert!(!handle.is_running());

    let log = Log::new();
    let rescuer = logging(
        &other,
        opts("rescuer").claim_idle(Duration::from_millis(300)),
        &log,
    )
    .await;
    assert!(log.wait_len(1).await);
    assert_eq!(log.items(), [(1, 2)], "reclaimed as its second delivery");
    rescuer.stop().await;
    rescuer.stop().await;
    // The runtime's own stop after the handles' is harmless too.
    rx.shutdown().await;
    other.shutdown().await;
    assert_eq!(stuck.len(), 1);
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_drain_out_of_time_leaves_its_message_to_another_and_stopping_twice_is_harmless
);

async fn a_second_consumer_of_one_name_in_one_process_is_refused(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = stream_runtime(
        &deployment.url(),
        &unique_prefix("stream_reclaim_name"),
        StreamsConfig::default(),
    )
    .await;
    let log = Log::new();
    let first = logging(&rx, opts("same"), &log).await;
    let second = rx
        .streams()
        .consumer(STREAM, opts("same"), |_m: Message<Job>| async {
            Ok::<_, Error>(())
        })
        .start()
        .await;
    let err = second.expect_err("the same stream, group and name twice");
    assert_eq!(err.code(), ErrorCode::StreamConsumerGroupError, "{err:#}");
    // Another name, or another group, is fine.
    let other_name = logging(&rx, opts("other"), &log).await;
    let other_group = logging(&rx, ConsumerOptions::new("g2").consumer("same"), &log).await;
    // Once the first stopped, its name is free again.
    first.stop().await;
    let again = logging(&rx, opts("same"), &log).await;
    for h in [other_name, other_group, again] {
        h.stop().await;
    }
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_second_consumer_of_one_name_in_one_process_is_refused
);
