//! The streams plugin's main paths on every topology (`Topology::ALL`: a single server, a Redis
//! Cluster of three masters with a replica each, a sentinel-watched master with two replicas),
//! each written once as a body taking the topology: publish and batch publish, then consume
//! with every message handled once; streams on three different masters of the cluster (their
//! hash tags in different slots), fed by concurrent batches and by one client pipeline spanning
//! their slots, consumed at once; a failing handler retried, dead-lettered, then requeued;
//! delayed messages arriving; durable publishes acknowledged by a replica where the topology
//! has one; the looking-into calls (`info`, `groups`, `lag`, `pending`, the DLQ calls) and the
//! trim behind a group; a consumer's stop draining its in-flight handlers and leaving the rest
//! to the next consumer.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use redisx::streams::{ConsumerHandle as Handle, ConsumerOptions, Message, StreamsConfig};
use redisx::testing::{Deployment, Topology, unique_prefix};
use redisx::{ErrorCode, RedisX, redis};
use redisx_tests::streams::{Job, Log, consumed, fixed_backoff, json, keys, poll};
use redisx_tests::streams::{quick_options, within};
use redisx_tests::{eventually, raw_query};

/// What a handler saw: the stream name, the job and the attempt.
type Seen = (String, u64, u32);

/// A runtime on `deployment` with the streams plugin on `cfg`, under a fresh prefix.
async fn runtime(deployment: &Deployment, test: &str, cfg: StreamsConfig) -> RedisX {
    let topology = deployment.topology();
    deployment
        .redisx_builder()
        .key_prefix(unique_prefix(&format!("{test}_{topology}")))
        .streams(cfg)
        .build()
        .await
        .unwrap_or_else(|e| panic!("on {topology}: the runtime builds: {e:#}"))
}

/// Starts a consumer of the stream `name` logging every message to `log`: `Err` for the jobs
/// `fails` picks, `Ok` for the others.
async fn consumer<F>(
    rx: &RedisX,
    name: &str,
    o: ConsumerOptions,
    log: &Log<Seen>,
    fails: F,
) -> Handle
where
    F: Fn(u64) -> bool + Send + Sync + 'static,
{
    let log = log.clone();
    rx.streams()
        .consumer(name, o, move |m: Message<Job>| {
            log.push((m.stream().to_owned(), m.payload().n, m.attempt()));
            let failed = fails(m.payload().n);
            std::future::ready(if failed { Err("unlucky") } else { Ok(()) })
        })
        .start()
        .await
        .expect("the consumer starts")
}

/// A consumer of the stream `name` logging every message to `log` and acknowledging it.
async fn logging(rx: &RedisX, name: &str, o: ConsumerOptions, log: &Log<Seen>) -> Handle {
    consumer(rx, name, o, log, |_| false).await
}

/// Waits until `group` of `stream` has nothing pending; panics after [`within`].
async fn settle(rx: &RedisX, stream: &str, group: &str, on: Topology) {
    let check = move || async move {
        let pending = rx.streams().pending(stream, group).await;
        pending.is_ok_and(|p| p.count == 0)
    };
    let settled = eventually(within(), poll(), check).await;
    assert!(settled, "on {on}: {stream} keeps entries pending");
}

/// Waits until `rx` counted `n` deliveries with `status` (the counter follows the Redis call
/// that settles a delivery); panics after [`within`].
async fn counted(rx: &RedisX, status: &str, n: u64, on: Topology) {
    let check = move || async move { consumed(rx, status) == n };
    let counted = eventually(within(), poll(), check).await;
    let got = consumed(rx, status);
    assert!(counted, "on {on}: {status}: {got} of {n}");
}

/// Waits until `log` holds `n` deliveries; panics after [`within`].
async fn wait_seen(log: &Log<Seen>, n: usize, on: Topology) {
    let seen = log.wait_len(n).await;
    assert!(seen, "on {on}: {n} expected: {:?}", log.items());
}

/// The jobs `ns`.
fn jobs(ns: Range<u64>) -> Vec<Job> {
    ns.map(|n| Job { n }).collect()
}

/// The jobs `ns` each seen once, at their first attempt, as [`of`] lists them.
fn firsts(ns: impl Iterator<Item = u64>) -> Vec<(u64, u32)> {
    ns.map(|n| (n, 1)).collect()
}

/// The jobs of `stream` in `seen` with their attempts, sorted.
fn of(seen: &[Seen], stream: &str) -> Vec<(u64, u32)> {
    let mut got: Vec<(u64, u32)> = seen
        .iter()
        .filter(|s| s.0 == stream)
        .map(|s| (s.1, s.2))
        .collect();
    got.sort_unstable();
    got
}

/// A stream entry id (`<ms>-<seq>`) as numbers, to compare.
fn entry_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').expect("an entry id");
    (ms.parse().expect("ms"), seq.parse().expect("seq"))
}

/// Whether `ids` are in increasing order.
fn increasing<S: AsRef<str>>(ids: &[S]) -> bool {
    ids.windows(2)
        .all(|w| entry_id(w[0].as_ref()) < entry_id(w[1].as_ref()))
}

/// Three stream names whose keys (hash tag: the name) fall in the first, second and last third
/// of the slots: the ranges of the three masters `redis-cli --cluster create` makes.
fn spread_names() -> Vec<String> {
    let in_third = |third: u16| {
        (0..10_000)
            .map(|i| format!("spread{i}"))
            .find(|name| redisx::key::slot(name) / 5462 == third)
            .expect("some name falls in every third")
    };
    (0..3).map(in_third).collect()
}

/// On a cluster, the port of the master serving each of `slots` (`CLUSTER SLOTS`); empty on
/// other topologies.
async fn slot_owners(deployment: &Deployment, slots: &[u16]) -> Vec<u16> {
    if deployment.cluster().is_none() {
        return Vec::new();
    }
    let cmd = redis::cmd("CLUSTER").arg("SLOTS").clone();
    // Each range: [start, end, [host, port, id, ..], replicas..].
    let ranges: Vec<Vec<redis::Value>> = raw_query(deployment, &cmd).await;
    let owner = |slot: &u16| {
        let num = |v: &redis::Value| redis::from_redis_value::<u16>(v.clone()).ok();
        ranges.iter().find_map(|r| {
            let node: Vec<redis::Value> = redis::from_redis_value(r[2].clone()).ok()?;
            let range = num(&r[0])?..=num(&r[1])?;
            range.contains(slot).then(|| num(&node[1]))?
        })
    };
    slots.iter().map(|s| owner(s).expect("served")).collect()
}

async fn publish_then_consume(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(&deployment, "ts_consume", StreamsConfig::default()).await;
    let streams = rx.streams();
    for job in jobs(0..10) {
        streams.publish("jobs", &job).await.unwrap();
    }
    let ids = streams.publish_batch("jobs", &jobs(10..50)).await.unwrap();
    let in_order = ids.len() == 40 && increasing(&ids);
    assert!(in_order, "on {topology}: {ids:?}");
    assert_eq!(streams.len("jobs").await.unwrap(), 50, "on {topology}");

    let log = Log::new();
    let handle = logging(&rx, "jobs", quick_options("g", "c").concurrency(4), &log).await;
    wait_seen(&log, 50, topology).await;
    settle(&rx, "jobs", "g", topology).await;
    handle.stop().await;
    let seen = of(&log.items(), "jobs");
    assert_eq!(seen, firsts(0..50), "on {topology}: each handled once");
    counted(&rx, "success", 50, topology).await;
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_messages_are_each_handled_once() {
    for &topology in Topology::ALL {
        publish_then_consume(topology).await;
    }
}

async fn streams_across_slots(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(&deployment, "ts_slots", StreamsConfig::default()).await;
    let streams = rx.streams();
    let names = spread_names();
    let slots: Vec<u16> = names.iter().map(|n| redisx::key::slot(n)).collect();
    let owners = slot_owners(&deployment, &slots).await;
    let masters: std::collections::HashSet<&u16> = owners.iter().collect();
    let spread = owners.is_empty() || masters.len() == 3;
    assert!(spread, "on {topology}: {names:?} {slots:?} on {owners:?}");

    // A batch per stream, all at once: stream `i` gets the jobs 100 i .. 100 i + 20.
    let base = |i: usize| 100 * i as u64;
    let batches = names.iter().enumerate().map(|(i, name)| {
        let batch = jobs(base(i)..base(i) + 20);
        async move { streams.publish_batch(name, &batch).await }
    });
    for ids in futures_util::future::join_all(batches).await {
        assert_eq!(ids.unwrap().len(), 20, "on {topology}");
    }
    // One pipeline of `XADD`s to the three streams, interleaved: it spans their slots.
    let mut pipe = redis::pipe();
    for round in 0..5 {
        for (i, name) in names.iter().enumerate() {
            let n = base(i) + 20 + round;
            let data = json(&Job { n });
            let key = keys(&rx, name).stream;
            pipe.cmd("XADD").arg(key).arg("*").arg("data").arg(data);
        }
    }
    let ids: Vec<String> = rx
        .client()
        .query_pipeline(&pipe)
        .await
        .unwrap_or_else(|e| panic!("on {topology}: a pipeline across slots: {e:#}"));
    for i in 0..3 {
        let own: Vec<&String> = ids.iter().skip(i).step_by(3).collect();
        let in_order = own.len() == 5 && increasing(&own);
        assert!(in_order, "on {topology}: replies in order: {ids:?}");
    }

    // One consumer per stream, all running at once.
    let log = Log::new();
    let mut handles = Vec::new();
    for name in &names {
        handles.push(logging(&rx, name, quick_options("g", "c").concurrency(4), &log).await);
    }
    wait_seen(&log, 75, topology).await;
    for (i, name) in names.iter().enumerate() {
        settle(&rx, name, "g", topology).await;
        let want = firsts(base(i)..base(i) + 25);
        let got = (of(&log.items(), name), streams.len(name).await.unwrap());
        assert_eq!(got, (want, 25), "on {topology}: {name}'s jobs, once");
    }
    for h in handles {
        h.stop().await;
    }
    assert_eq!(log.len(), 75, "on {topology}: nothing handled twice");
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_in_different_slots_are_fed_and_consumed_at_once() {
    for &topology in Topology::ALL {
        streams_across_slots(topology).await;
    }
}

async fn retries_then_dlq(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(&deployment, "ts_retry", fixed_backoff(50)).await;
    let streams = rx.streams();
    let broken = Arc::new(AtomicBool::new(true));
    let still = broken.clone();
    let fails = move |n| n == 13 && still.load(Ordering::SeqCst);
    let log = Log::new();
    let o = quick_options("g", "c").max_retries(2);
    let handle = consumer(&rx, "jobs", o, &log, fails).await;
    streams.publish("jobs", &Job { n: 1 }).await.unwrap();
    let original = streams.publish("jobs", &Job { n: 13 }).await.unwrap();

    let dlq_len = move |n: u64| async move { streams.dlq_len("jobs").await.unwrap() == n };
    let dead = eventually(within(), poll(), || dlq_len(1)).await;
    assert!(dead, "on {topology}: dead-lettered: {:?}", log.items());
    // max_retries = 2: three attempts in all.
    let seen = of(&log.items(), "jobs");
    assert_eq!(seen, [(1, 1), (13, 1), (13, 2), (13, 3)], "on {topology}");
    let listed = streams.dlq_list("jobs", 10).await.unwrap();
    assert_eq!(listed.len(), 1, "on {topology}");
    let d = &listed[0];
    let why = (d.error.as_deref(), d.attempts, d.original_stream.as_deref());
    assert_eq!(why, (Some("unlucky"), 3, Some("jobs")), "on {topology}");
    assert_eq!(d.payload::<Job>().unwrap(), Job { n: 13 }, "on {topology}");
    // The entry of the last attempt (each retry is an entry of its own).
    let last = d.original_id.as_deref().map(entry_id);
    assert!(last > Some(entry_id(&original)), "on {topology}: {d:?}");
    counted(&rx, "retry", 2, topology).await;
    counted(&rx, "dead_letter", 1, topology).await;
    settle(&rx, "jobs", "g", topology).await;

    // Fixed, then requeued: handled again as a first attempt.
    broken.store(false, Ordering::SeqCst);
    let requeued = streams.requeue("jobs", &d.id).await.unwrap();
    assert!(requeued.is_some(), "on {topology}: requeued");
    wait_seen(&log, 5, topology).await;
    assert_eq!(log.items()[4], ("jobs".to_owned(), 13, 1), "on {topology}");
    assert!(dlq_len(0).await, "on {topology}: the DLQ is empty");
    settle(&rx, "jobs", "g", topology).await;
    handle.stop().await;
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_is_retried_then_dead_lettered_and_requeued() {
    for &topology in Topology::ALL {
        retries_then_dlq(topology).await;
    }
}

async fn delayed(topology: Topology) {
    let deployment = Deployment::start(topology);
    let cfg = StreamsConfig::default().delayed_poll(Duration::from_millis(50));
    let rx = runtime(&deployment, "ts_delayed", cfg).await;
    let streams = rx.streams();
    let ms = Duration::from_millis;
    let later = async |n, d| streams.publish_in("later", &Job { n }, d).await.unwrap();
    later(0, ms(200)).await;
    later(1, ms(400)).await;
    // A due time in the past: due at once.
    let at = UNIX_EPOCH + Duration::from_secs(1);
    streams
        .publish_at("later", &Job { n: 2 }, at)
        .await
        .unwrap();
    let lens = || async {
        let waiting = streams.delayed_len("later").await.unwrap();
        (waiting, streams.len("later").await.unwrap())
    };
    // No consumer yet: nothing moved them.
    assert_eq!(lens().await, (3, 0), "on {topology}");

    let log = Log::new();
    let handle = logging(&rx, "later", quick_options("g", "c"), &log).await;
    wait_seen(&log, 3, topology).await;
    // Scheduled while the consumer runs.
    later(3, ms(100)).await;
    wait_seen(&log, 4, topology).await;
    let seen = of(&log.items(), "later");
    assert_eq!(seen, firsts(0..4), "on {topology}: each once");
    assert_eq!(lens().await, (0, 4), "on {topology}");
    settle(&rx, "later", "g", topology).await;
    handle.stop().await;
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_arrive() {
    for &topology in Topology::ALL {
        delayed(topology).await;
    }
}

async fn durable(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(&deployment, "ts_durable", StreamsConfig::default()).await;
    let streams = rx.streams();
    // The cluster's masters have a replica each and the sentinels' master two: one
    // acknowledgement is required there; a single server has none to wait for.
    let (required, timeout) = match deployment.standalone() {
        Some(_) => (0, Duration::from_millis(50)),
        None => (1, Duration::from_secs(5)),
    };
    let durable = streams.durable(1, timeout).require_replicas(required);
    // Two rounds over streams on different masters: the pooled connection is reused.
    let names = spread_names();
    for round in 0..2 {
        for name in &names {
            let p = durable
                .publish(name, &Job { n: round })
                .await
                .unwrap_or_else(|e| panic!("on {topology}: a durable publish to {name}: {e:#}"));
            assert!(p.replicas >= required, "on {topology}: {name}: {p:?}");
        }
    }
    for name in &names {
        assert_eq!(streams.len(name).await.unwrap(), 2, "on {topology}: {name}");
    }
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_publish_waits_for_a_replica() {
    for &topology in Topology::ALL {
        durable(topology).await;
    }
}

async fn ops_and_trim(topology: Topology) {
    let deployment = Deployment::start(topology);
    // No background trim during the test: its own `trim` calls are checked.
    let cfg = StreamsConfig::default().trim_every(Duration::from_secs(3600));
    let rx = runtime(&deployment, "ts_ops", cfg).await;
    let streams = rx.streams();
    let ids = streams.publish_batch("ops", &jobs(0..600)).await.unwrap();
    let first = streams.create_group("ops", "work", "0").await.unwrap();
    let again = streams.create_group("ops", "work", "0").await.unwrap();
    assert_eq!((first, again), (true, false), "on {topology}");
    let groups = streams.groups("ops").await.unwrap();
    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["work"], "on {topology}");
    let info = streams.info("ops").await.unwrap().expect("a stream");
    let ends = (info.first_id.as_deref(), info.last_id.as_deref());
    assert_eq!(ends, (Some(&*ids[0]), Some(&*ids[599])), "on {topology}");
    let counts = (info.length, info.dlq_length, info.delayed);
    assert_eq!(counts, (600, 0, 0), "on {topology}");
    let lag = streams.lag("ops", "work").await.unwrap();
    let trimmed = streams.trim("ops").await.unwrap();
    // Nothing delivered yet: every entry is needed.
    assert_eq!((lag, trimmed), (Some(600), 0), "on {topology}");

    let log = Log::new();
    let o = quick_options("work", "c").concurrency(8).batch(100);
    let handle = logging(&rx, "ops", o, &log).await;
    wait_seen(&log, 600, topology).await;
    settle(&rx, "ops", "work", topology).await;
    handle.stop().await;
    let p = streams.pending("ops", "work").await.unwrap();
    let lag = streams.lag("ops", "work").await.unwrap();
    assert_eq!((p.count, lag), (0, Some(0)), "on {topology}");
    // Entries every group is done with go.
    let removed = streams.trim("ops").await.unwrap();
    assert!(removed > 0, "on {topology}");

    let after = (
        streams.len("ops").await.unwrap(),
        streams.delayed_len("ops").await.unwrap(),
        streams.dlq_len("ops").await.unwrap(),
        streams.dlq_list("ops", 10).await.unwrap().len(),
        streams.requeue("ops", "1-0").await.unwrap(),
        streams.requeue_all("ops").await.unwrap(),
        streams.purge_dlq("ops").await.unwrap(),
    );
    assert_eq!(after, (600 - removed, 0, 0, 0, None, 0, 0), "on {topology}");
    let e = streams.pending("ops", "nobody").await.unwrap_err();
    assert_eq!(
        e.code(),
        ErrorCode::StreamConsumerGroupError,
        "on {topology}"
    );
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_calls_and_the_trim_work() {
    for &topology in Topology::ALL {
        ops_and_trim(topology).await;
    }
}

async fn drain(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(&deployment, "ts_drain", StreamsConfig::default()).await;
    let streams = rx.streams();
    streams.publish_batch("jobs", &jobs(0..5)).await.unwrap();
    // Handlers that wait at a gate, two at a time.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (started, finished) = (Log::new(), Log::new());
    let handler = {
        let (gate, started, finished) = (gate.clone(), started.clone(), finished.clone());
        move |m: Message<Job>| {
            let (gate, started, finished) = (gate.clone(), started.clone(), finished.clone());
            async move {
                started.push(m.payload().n);
                let _pass = gate.acquire().await.expect("the gate stays open");
                finished.push(m.payload().n);
                Ok::<_, redisx::Error>(())
            }
        }
    };
    let o = quick_options("g", "first").concurrency(2);
    let handle = streams.consumer("jobs", o, handler).start().await.unwrap();
    assert!(started.wait_len(2).await, "on {topology}");
    let h = handle.clone();
    let stopping = tokio::spawn(async move { h.stop().await });
    let stopped = eventually(within(), poll(), || async { !handle.is_running() }).await;
    assert!(stopped, "on {topology}: stopping");
    // The drain waits for the handlers.
    assert!(!stopping.is_finished(), "on {topology}");
    gate.add_permits(100);
    let drained = tokio::time::timeout(within(), stopping).await;
    assert!(drained.is_ok_and(|r| r.is_ok()), "on {topology}");
    let (mut done, taken) = (finished.items(), started.items());
    done.sort_unstable();
    // Both in-flight handlers finished; nothing was read after the stop.
    let both = taken.len() == 2 && taken.iter().all(|n| done.contains(n));
    assert!(both, "on {topology}: {taken:?} {done:?}");
    // Both acknowledged, nothing else delivered.
    let p = streams.pending("jobs", "g").await.unwrap();
    assert_eq!(p.count, 0, "on {topology}");

    let log = Log::new();
    let next = logging(&rx, "jobs", quick_options("g", "next"), &log).await;
    wait_seen(&log, 3, topology).await;
    settle(&rx, "jobs", "g", topology).await;
    next.stop().await;
    let rest = firsts((0..5).filter(|n| !done.contains(n)));
    let seen = of(&log.items(), "jobs");
    assert_eq!(seen, rest, "on {topology}: the rest, once each");
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_consumer_drains_it_and_leaves_the_rest() {
    for &topology in Topology::ALL {
        drain(topology).await;
    }
}
