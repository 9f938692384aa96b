//! The local queue: callers of one runtime waiting on one lock key (or a one-permit semaphore)
//! queue in FIFO order and only the head sends attempts to Redis (counted from the scripts the
//! runtime sent); a queued caller still gives up by its own retry settings.
//!
//! Time is only used to order events (waiters started 100 ms apart queue in that order) and
//! for generous bounds, never asserted as a latency. Each test runs on a standalone server
//! and on the shared 3-master cluster.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redisx::lock::{LockConfig, LockGuard, LockOptions, Permit, RetryStrategy};
use redisx::testing::{Deployment, Topology};
use redisx::{ErrorCode, RedisX};
use redisx_tests::lock::{lock_runtime, scripts_sent};
use redisx_tests::unique_prefix;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// What the callers wait on: a lock, or a semaphore with one permit.
#[derive(Clone, Copy, Debug)]
enum Target {
    Lock,
    Semaphore,
}

/// A held lock or permit.
enum Held {
    Guard(LockGuard),
    Permit(Permit),
}

impl Held {
    async fn release(self) -> redisx::Result<()> {
        match self {
            Self::Guard(g) => g.release().await,
            Self::Permit(p) => p.release().await,
        }
    }
}

/// Waits for `target` on `key` in `rx` with `opts`.
async fn take(rx: &RedisX, target: Target, key: &str, opts: &LockOptions) -> redisx::Result<Held> {
    match target {
        Target::Lock => rx.locks().acquire(key, opts).await.map(Held::Guard),
        Target::Semaphore => {
            let sem = rx.locks().semaphore(key, 1);
            sem.acquire(opts).await.map(Held::Permit)
        }
    }
}

/// Two runtimes on one deployment and prefix: `a` holds, `b` waits.
async fn pair(deployment: &Deployment, test: &str) -> (RedisX, RedisX) {
    let prefix = unique_prefix(test);
    let a = lock_runtime(&deployment.url(), &prefix, LockConfig::default()).await;
    let b = lock_runtime(&deployment.url(), &prefix, LockConfig::default()).await;
    (a, b)
}

/// Eight waiters in one runtime retrying every 10 ms for the second another runtime holds the
/// key: only the head polls, about 100 attempts, where eight pollers would make about 800.
async fn only_the_head_polls(topology: Topology, target: Target) {
    const WAITERS: usize = 8;
    let deployment = Deployment::start(topology);
    let (a, b) = pair(&deployment, "queue_head").await;
    let holder = take(&a, target, "job", &LockOptions::new()).await.unwrap();
    let opts = LockOptions::new()
        .retry(RetryStrategy::Fixed(MS(10)))
        .jitter(false)
        .wait(Duration::from_secs(10));
    let before = scripts_sent(&b);
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            let (b, opts) = (b.clone(), opts.clone());
            tokio::spawn(async move {
                let held = take(&b, target, "job", &opts).await?;
                tokio::time::sleep(MS(10)).await;
                held.release().await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Until the holder releases, every script of `b` is an attempt of a waiter.
    let polled = scripts_sent(&b) - before;
    assert!(
        waiters.iter().all(|w| !w.is_finished()),
        "nobody got it while held"
    );
    holder.release().await.unwrap();
    assert!(
        polled > 0 && polled < 300,
        "{polled} attempts in 1 s from {WAITERS} waiters on a 10 ms retry ({target:?} on {topology})"
    );
    for w in waiters {
        tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("every waiter gets its turn")
            .unwrap()
            .expect("acquired and released");
    }
    a.shutdown().await;
    b.shutdown().await;
}

async fn only_the_head_of_a_lock_queue_polls_redis(topology: Topology) {
    only_the_head_polls(topology, Target::Lock).await;
}

async fn only_the_head_of_a_semaphore_queue_polls_redis(topology: Topology) {
    only_the_head_polls(topology, Target::Semaphore).await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    only_the_head_of_a_lock_queue_polls_redis,
    only_the_head_of_a_semaphore_queue_polls_redis,
);

/// Six waiters in one runtime, started 100 ms apart while another runtime holds the key, get
/// it in the order they arrived (each retrying every 5 ms, so without the queue whichever
/// polls first after a release would win).
async fn waiters_are_served_in_arrival_order(topology: Topology, target: Target) {
    const WAITERS: usize = 6;
    let deployment = Deployment::start(topology);
    let (a, b) = pair(&deployment, "queue_fifo").await;
    let holder = take(&a, target, "job", &LockOptions::new()).await.unwrap();
    let opts = LockOptions::new()
        .retry(RetryStrategy::Fixed(MS(5)))
        .jitter(false)
        .wait(Duration::from_secs(30));
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..WAITERS {
        let (b, opts, order) = (b.clone(), opts.clone(), order.clone());
        waiters.push(tokio::spawn(async move {
            let held = take(&b, target, "job", &opts).await?;
            order.lock().unwrap().push(i);
            tokio::time::sleep(MS(20)).await;
            held.release().await
        }));
        // Queued before the next one arrives.
        tokio::time::sleep(MS(100)).await;
    }
    assert!(order.lock().unwrap().is_empty(), "nobody got it while held");
    holder.release().await.unwrap();
    for w in waiters {
        tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("every waiter gets its turn")
            .unwrap()
            .expect("acquired and released");
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(
        order,
        (0..WAITERS).collect::<Vec<_>>(),
        "served in arrival order ({target:?} on {topology})"
    );
    a.shutdown().await;
    b.shutdown().await;
}

async fn lock_waiters_are_served_in_arrival_order(topology: Topology) {
    waiters_are_served_in_arrival_order(topology, Target::Lock).await;
}

async fn semaphore_waiters_are_served_in_arrival_order(topology: Topology) {
    waiters_are_served_in_arrival_order(topology, Target::Semaphore).await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    lock_waiters_are_served_in_arrival_order,
    semaphore_waiters_are_served_in_arrival_order,
);

/// Behind a head that waits up to 10 s, a caller with 3 retries of 50 ms gives up by its own
/// settings, while the head still waits, having made at most its first attempt itself.
async fn a_queued_caller_gives_up_by_its_own_retries(topology: Topology, target: Target) {
    let deployment = Deployment::start(topology);
    let (a, b) = pair(&deployment, "queue_timeout").await;
    let holder = take(&a, target, "job", &LockOptions::new()).await.unwrap();
    let retry = RetryStrategy::Fixed(MS(50));
    let head_opts = LockOptions::new()
        .retry(retry)
        .jitter(false)
        .wait(Duration::from_secs(10));
    let b1 = b.clone();
    let head = tokio::spawn(async move { take(&b1, target, "job", &head_opts).await });
    // The head is queued (and polling) before the second caller arrives.
    tokio::time::sleep(MS(100)).await;
    let queued_opts = LockOptions::new().retry(retry).jitter(false).retries(3);
    let b2 = b.clone();
    let queued = tokio::spawn(async move { take(&b2, target, "job", &queued_opts).await });

    let out = tokio::time::timeout(Duration::from_secs(5), queued)
        .await
        .expect("the queued caller gives up by its retries, not the head's budget")
        .unwrap();
    assert!(
        !head.is_finished(),
        "the head still waits when the queued caller gives up"
    );
    let Err(err) = out else {
        panic!("the queued caller got a held {target:?}")
    };
    assert_eq!(err.code(), ErrorCode::LockAcquisitionTimeout, "{err}");
    let attempts: u32 = err
        .context_value("attempts")
        .expect("an attempts context")
        .parse()
        .unwrap();
    assert!(
        attempts <= 1,
        "{attempts} attempts: behind the head it sends at most its first one ({target:?} on {topology})"
    );
    head.abort();
    holder.release().await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
}

async fn a_queued_lock_caller_gives_up_by_its_own_retries(topology: Topology) {
    a_queued_caller_gives_up_by_its_own_retries(topology, Target::Lock).await;
}

async fn a_queued_semaphore_caller_gives_up_by_its_own_retries(topology: Topology) {
    a_queued_caller_gives_up_by_its_own_retries(topology, Target::Semaphore).await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_queued_lock_caller_gives_up_by_its_own_retries,
    a_queued_semaphore_caller_gives_up_by_its_own_retries,
);

/// Three permits freed at once in the runtime where three callers wait in line, each on a
/// 20 s retry, reach all three: each new head of a semaphore's queue tries at once (the three
/// wake-ups arrive together and count once, so waiting for one each would leave the last
/// caller to its retry).
async fn permits_freed_together_reach_every_caller_in_line(topology: Topology) {
    const PERMITS: u32 = 3;
    let deployment = Deployment::start(topology);
    let rx = lock_runtime(
        &deployment.url(),
        &unique_prefix("queue_permits"),
        LockConfig::default(),
    )
    .await;
    let sem = rx.locks().semaphore("pool", PERMITS);
    let mut held = Vec::new();
    for _ in 0..PERMITS {
        held.push(sem.acquire(&LockOptions::new()).await.unwrap());
    }
    let patient = LockOptions::new()
        .retry(RetryStrategy::Fixed(Duration::from_secs(20)))
        .jitter(false)
        .retries(1);
    let waiters: Vec<_> = (0..PERMITS)
        .map(|_| {
            let (sem, opts) = (sem.clone(), patient.clone());
            tokio::spawn(async move { sem.acquire(&opts).await })
        })
        .collect();
    tokio::time::sleep(MS(300)).await;
    let releases = held.into_iter().map(Permit::release);
    for released in futures_util::future::join_all(releases).await {
        released.unwrap();
    }
    let mut permits = Vec::new();
    for w in waiters {
        let permit = tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .expect("every caller in line got a permit long before its retry (20 s)")
            .unwrap()
            .expect("acquired");
        permits.push(permit);
    }
    for permit in permits {
        permit.release().await.unwrap();
    }
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    permits_freed_together_reach_every_caller_in_line
);
