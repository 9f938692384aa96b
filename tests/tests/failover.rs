//! Failover mid-run, on a cluster and on a sentinel set of their own, under a load of every
//! plugin at once: a manual failover (`CLUSTER FAILOVER` on the replica of master 0;
//! `SENTINEL FAILOVER`) and a crash (the master killed).
//!
//! Throughout and after the switch:
//! - the cache answers every call (fail-open) and serves from the new master afterwards, and
//!   an update in one runtime still reaches another runtime's L1 (pub/sub invalidation);
//! - a resource fenced by the locks' tokens never accepts a token at or below one it accepted;
//! - the rate limiter counts exactly before and after the switch, and inside it follows its
//!   error policy (fail closed: a Redis error, never another kind of failure);
//! - every message published with `require_replicas(1)` reaches the consumer, which resumes
//!   by itself;
//! - the longest stretch without a successful command is printed (not asserted).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redisx::lock::{LockConfig, LockOptions, RetryStrategy};
use redisx::rate_limit::{Limit, RateLimitConfig};
use redisx::streams::{ConsumerOptions, Message, StreamsConfig};
use redisx::testing::{Deployment, Topology};
use redisx::{RedisX, redis};
use redisx_tests::{eventually, unique_prefix};

/// What the switch does to the deployment.
#[derive(Clone, Copy, Debug)]
enum Switch {
    /// `CLUSTER FAILOVER` / `SENTINEL FAILOVER`: the master hands over.
    Manual,
    /// The master is killed (`SIGKILL`), and its replica promoted.
    Crash,
}

fn switch(deployment: &mut Deployment, how: Switch) {
    if let Some(cluster) = deployment.cluster_mut() {
        let master = cluster.masters()[0];
        match how {
            Switch::Manual => cluster.failover(master),
            Switch::Crash => {
                cluster.kill(master);
                cluster.wait_ok();
                // Back as the new master's replica, so its shard takes durable writes again.
                cluster.start_again(master);
            }
        }
    } else if let Some(set) = deployment.sentinel_mut() {
        match how {
            Switch::Manual => set.failover(),
            Switch::Crash => set.kill_master(),
        }
    } else {
        panic!("an owned cluster or sentinel deployment");
    }
}

async fn runtime(deployment: &Deployment, prefix: &str) -> RedisX {
    let cfg = deployment
        .connection_config()
        .command_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .reconnect(
            redisx::ReconnectPolicy::default()
                .initial(Duration::from_millis(20))
                .max(Duration::from_millis(200)),
        );
    RedisX::builder()
        .client("default", cfg)
        .key_prefix(prefix)
        .locks(LockConfig::default())
        .rate_limit(RateLimitConfig::default())
        .streams(StreamsConfig::default())
        .build()
        .await
        .unwrap()
}

/// The load's counters and what it saw.
#[derive(Default)]
struct Seen {
    stop: AtomicBool,
    /// Successful probe commands, and the longest gap between two of them (ms).
    probes: AtomicU64,
    longest_gap_ms: AtomicU64,
    cache_calls: AtomicU64,
    cache_errors: AtomicU64,
    /// The fenced resource: the highest token it accepted, and how many it refused.
    fence: Mutex<u64>,
    fenced_accepted: AtomicU64,
    fenced_refused: AtomicU64,
    limit_checks: AtomicU64,
    /// Rate-limit checks that failed, and those that failed with something other than a Redis
    /// error (connection or operation family), which the fail-closed policy never returns.
    limit_errors: AtomicU64,
    limit_wrong_errors: Mutex<Vec<String>>,
    published: Mutex<HashSet<String>>,
    consumed: Mutex<HashSet<String>>,
}

async fn probe_loop(rx: RedisX, seen: Arc<Seen>) {
    let mut last_ok = Instant::now();
    let mut i = 0u64;
    while !seen.stop.load(Ordering::Relaxed) {
        i += 1;
        let key = format!("{}probe:{{{}}}", rx.key_prefix(), i % 16);
        if rx
            .client()
            .query::<i64>(redis::cmd("INCR").arg(&key))
            .await
            .is_ok()
        {
            let gap = u64::try_from(last_ok.elapsed().as_millis()).unwrap_or(u64::MAX);
            seen.longest_gap_ms.fetch_max(gap, Ordering::Relaxed);
            seen.probes.fetch_add(1, Ordering::Relaxed);
            last_ok = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn cache_loop(rx: RedisX, seen: Arc<Seen>) {
    let mut i = 0u64;
    while !seen.stop.load(Ordering::Relaxed) {
        i += 1;
        let key = format!("item:{}", i % 32);
        let set = rx.cache().set(&key, &i, None).await;
        let got = rx.cache().get::<u64>(&key).await;
        seen.cache_calls.fetch_add(2, Ordering::Relaxed);
        if set.is_err() || got.is_err() {
            seen.cache_errors.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn lock_loop(rx: RedisX, seen: Arc<Seen>) {
    let opts = LockOptions::new()
        .ttl(Duration::from_secs(2))
        .wait(Duration::from_millis(300))
        .retry(RetryStrategy::Fixed(Duration::from_millis(20)));
    while !seen.stop.load(Ordering::Relaxed) {
        if let Ok(guard) = rx.locks().acquire("fenced", &opts).await {
            let token = guard.fencing_token();
            {
                let mut highest = seen.fence.lock().unwrap();
                if token > *highest {
                    *highest = token;
                    seen.fenced_accepted.fetch_add(1, Ordering::Relaxed);
                } else {
                    seen.fenced_refused.fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = guard.release().await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn limit_loop(rx: RedisX, seen: Arc<Seen>) {
    let limit = Limit::sliding_window(1_000_000, Duration::from_secs(60));
    while !seen.stop.load(Ordering::Relaxed) {
        seen.limit_checks.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = rx.rate_limiter().check("load", &limit).await {
            seen.limit_errors.fetch_add(1, Ordering::Relaxed);
            if !matches!(e.code().family(), "connection" | "operation") {
                seen.limit_wrong_errors
                    .lock()
                    .unwrap()
                    .push(format!("{e:#}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn publish_loop(rx: RedisX, seen: Arc<Seen>) {
    let durable = rx
        .streams()
        .durable(1, Duration::from_secs(1))
        .require_replicas(1);
    let mut i = 0u64;
    while !seen.stop.load(Ordering::Relaxed) {
        i += 1;
        if let Ok(p) = durable.publish("orders", &i).await {
            seen.published.lock().unwrap().insert(p.id);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Exactly `limit` of `limit + 3` checks on a fresh key are admitted.
async fn counts_exactly(rx: &RedisX, key: &str) {
    let limit = Limit::fixed_window(5, Duration::from_secs(60));
    let mut allowed = 0;
    for _ in 0..8 {
        if rx.rate_limiter().check(key, &limit).await.unwrap().allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5, "exactly the limit on {key}");
}

/// `b` answers `key` from its L1, then `a` updates it and `b` sees the new value (its L1 entry
/// was invalidated by `a`'s message), within 2 s.
async fn l1_invalidated(a: &RedisX, b: &RedisX, what: &str) {
    let key = "shared";
    a.cache().set(key, &1u64, None).await.unwrap();
    let in_l1 = eventually(Duration::from_secs(2), Duration::from_millis(5), || async {
        let before = b.cache().stats().l1_hits;
        let v = b.cache().get::<u64>(key).await.unwrap();
        v == Some(1) && b.cache().stats().l1_hits > before
    })
    .await;
    assert!(in_l1, "{what}: the other runtime answers from its L1");
    a.cache().set(key, &2u64, None).await.unwrap();
    let seen = eventually(Duration::from_secs(2), Duration::from_millis(5), || async {
        b.cache().get::<u64>(key).await.unwrap() == Some(2)
    })
    .await;
    assert!(seen, "{what}: the update reached the other runtime's L1");
}

/// A value written through `rx` now is read back by a fresh runtime (which finds the master
/// anew): the cache's L2 is on the new master.
async fn serves_from_the_new_master(deployment: &Deployment, rx: &RedisX, what: &str) {
    rx.cache().set("after", &7u64, None).await.unwrap();
    let fresh = deployment.runtime(rx.key_prefix()).await;
    assert_eq!(
        fresh.cache().get::<u64>("after").await.unwrap(),
        Some(7),
        "{what}: the cache's L2 is on the new master"
    );
    fresh.shutdown().await;
}

/// No acknowledged publish is lost: the consumer, which resumed by itself, handled each.
async fn every_durable_publish_consumed(seen: &Arc<Seen>, what: &str) {
    let published = seen.published.lock().unwrap().clone();
    assert!(!published.is_empty(), "{what}: publishes succeeded");
    let all = eventually(Duration::from_secs(10), Duration::from_millis(20), || {
        let seen = seen.clone();
        let published = published.clone();
        async move { published.is_subset(&seen.consumed.lock().unwrap()) }
    })
    .await;
    let handled = seen.consumed.lock().unwrap().clone();
    let missing: Vec<_> = published.difference(&handled).collect();
    assert!(
        all,
        "{what}: every durable publish was consumed; missing {missing:?}"
    );
}

/// Every load, each a task of its own until `seen.stop`.
fn start_load(rx: &RedisX, seen: &Arc<Seen>) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(probe_loop(rx.clone(), seen.clone())),
        tokio::spawn(cache_loop(rx.clone(), seen.clone())),
        tokio::spawn(lock_loop(rx.clone(), seen.clone())),
        tokio::spawn(publish_loop(rx.clone(), seen.clone())),
        tokio::spawn(limit_loop(rx.clone(), seen.clone())),
    ]
}

/// The consumer's handler: records each message id.
fn record(
    seen: Arc<Seen>,
) -> impl Fn(Message<u64>) -> std::future::Ready<Result<(), std::convert::Infallible>> {
    move |m| {
        seen.consumed.lock().unwrap().insert(m.id().to_owned());
        std::future::ready(Ok(()))
    }
}

async fn under_load(topology: Topology, how: Switch) {
    let mut deployment = Deployment::start_owned(topology);
    let prefix = unique_prefix(&format!("failover_{topology}"));
    let rx = runtime(&deployment, &prefix).await;
    // Another instance of the service, for L1 invalidation across the switch.
    let other = runtime(&deployment, &prefix).await;
    let seen = Arc::new(Seen::default());
    let consumer = rx
        .streams()
        .consumer(
            "orders",
            ConsumerOptions::new("workers")
                .concurrency(4)
                .block(Duration::from_millis(100)),
            record(seen.clone()),
        )
        .start()
        .await
        .unwrap();
    counts_exactly(&rx, "before").await;
    let tasks = start_load(&rx, &seen);
    // Every load has done its work at least once before the switch.
    let warm = eventually(Duration::from_secs(5), Duration::from_millis(5), || {
        let seen = seen.clone();
        async move {
            seen.fenced_accepted.load(Ordering::Relaxed) > 0
                && !seen.published.lock().unwrap().is_empty()
                && seen.probes.load(Ordering::Relaxed) > 0
        }
    })
    .await;
    assert!(warm, "{topology}/{how:?}: the load runs before the switch");
    let accepted_before = seen.fenced_accepted.load(Ordering::Relaxed);
    let began = Instant::now();
    tokio::task::block_in_place(|| switch(&mut deployment, how));
    let switched = began.elapsed();
    // After the switch: the first successful probe.
    let probes = seen.probes.load(Ordering::Relaxed);
    let back = eventually(Duration::from_secs(10), Duration::from_millis(5), || {
        let seen = seen.clone();
        async move { seen.probes.load(Ordering::Relaxed) > probes }
    })
    .await;
    let recovered = began.elapsed();
    assert!(
        back,
        "{topology}/{how:?}: commands succeed again after the switch"
    );
    // Durable publishes resume once the shard has a replica again.
    let published_at_switch = seen.published.lock().unwrap().len();
    let resumed = eventually(Duration::from_secs(10), Duration::from_millis(10), || {
        let seen = seen.clone();
        async move { seen.published.lock().unwrap().len() > published_at_switch + 3 }
    })
    .await;
    assert!(
        resumed,
        "{topology}/{how:?}: durable publishes resume after the switch"
    );
    let accepted_after = seen.fenced_accepted.load(Ordering::Relaxed);
    seen.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "{topology}/{how:?}: switch took {switched:?}; first command after it at {recovered:?}; \
         longest gap between successful commands {} ms; cache calls {} ({} answered Err); \
         fenced resource accepted {accepted_after} ({accepted_before} before the switch), \
         refused {}; {} durable publishes; rate-limit checks {} ({} failed closed)",
        seen.longest_gap_ms.load(Ordering::Relaxed),
        seen.cache_calls.load(Ordering::Relaxed),
        seen.cache_errors.load(Ordering::Relaxed),
        seen.fenced_refused.load(Ordering::Relaxed),
        seen.published.lock().unwrap().len(),
        seen.limit_checks.load(Ordering::Relaxed),
        seen.limit_errors.load(Ordering::Relaxed),
    );
    assert_eq!(
        *seen.limit_wrong_errors.lock().unwrap(),
        Vec::<String>::new(),
        "{topology}/{how:?}: a failed check is a Redis error (fail closed)"
    );
    assert_eq!(
        seen.cache_errors.load(Ordering::Relaxed),
        0,
        "{topology}/{how:?}: the cache fails open"
    );
    assert!(
        accepted_after > accepted_before,
        "{topology}/{how:?}: locks are granted again after the switch"
    );
    counts_exactly(&rx, "after").await;

    let what = format!("{topology}/{how:?}");
    l1_invalidated(&rx, &other, &what).await;
    other.shutdown().await;

    serves_from_the_new_master(&deployment, &rx, &what).await;
    every_durable_publish_consumed(&seen, &what).await;
    consumer.stop().await;
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_manual_failover_under_load() {
    under_load(Topology::Cluster, Switch::Manual).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_crash_under_load() {
    under_load(Topology::Cluster, Switch::Crash).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_manual_failover_under_load() {
    under_load(Topology::Sentinel, Switch::Manual).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_master_crash_under_load() {
    under_load(Topology::Sentinel, Switch::Crash).await;
}
