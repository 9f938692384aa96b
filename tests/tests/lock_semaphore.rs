//! Counting semaphores (`rx.locks().semaphore(key, n)`): at most `n` holders at once across
//! two runtimes (and `n` reached, so it is no mutex), expired leases reclaimed, one attempt
//! for `try_acquire` and the retry count for `acquire`, fencing tokens increasing across
//! holders, waiters woken by a release (here and from another runtime), the loss of a lease
//! removed from outside, bad arguments refused before Redis, and a dropped permit's slot freed.
//! Each test runs on a standalone server and on the shared 3-master cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use redisx::lock::{
    LockCall, LockConfig, LockOptions, MIN_TTL, Permit, RetryStrategy, fencing_token,
};
use redisx::testing::{Deployment, Topology};
use redisx::{Error, ErrorCode, RedisX};
use redisx_tests::lock::{lock_runtime, scripts_sent, wait_for_release_listener_of};
use redisx_tests::{eventually, unique_prefix};

const MS: fn(u64) -> Duration = Duration::from_millis;

/// The sorted set of the semaphore `key` under the app prefix `prefix` (the documented layout).
fn sem_set(prefix: &str, key: &str) -> String {
    format!("{prefix}lock:sem:{{{key}}}")
}

/// The error of `r`, which must have failed (without needing its value to be `Debug`).
fn error_of<T>(r: redisx::Result<T>) -> Error {
    match r {
        Ok(_) => panic!("expected an error, got a value"),
        Err(e) => e,
    }
}

/// A runtime on a prefix of its own, and the prefix.
async fn one(deployment: &Deployment, test: &str) -> (RedisX, String) {
    let prefix = unique_prefix(test);
    let rx = lock_runtime(&deployment.url(), &prefix, LockConfig::default()).await;
    (rx, prefix)
}

/// Two runtimes on one deployment and prefix: two instances of one service.
async fn pair(deployment: &Deployment, test: &str) -> (RedisX, RedisX) {
    let (a, prefix) = one(deployment, test).await;
    let b = lock_runtime(&deployment.url(), &prefix, LockConfig::default()).await;
    (a, b)
}

async fn never_more_than_n_holders_and_n_are_reached(topology: Topology) {
    const PERMITS: u32 = 3;
    const ROUNDS: u32 = 10;
    let deployment = Deployment::start(topology);
    let (a, b) = pair(&deployment, "sem_bound").await;
    // Holders inside their section now, and the most seen at once.
    let inside = Arc::new(AtomicU32::new(0));
    let most = Arc::new(AtomicU32::new(0));
    let opts = LockOptions::new()
        .retry(RetryStrategy::Fixed(MS(3)))
        .jitter(false)
        .wait(Duration::from_secs(60));
    // 4N contenders, alternately on the two runtimes.
    let tasks: Vec<_> = (0..4 * PERMITS)
        .map(|i| {
            let rx = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (inside, most, opts) = (inside.clone(), most.clone(), opts.clone());
            tokio::spawn(async move {
                let sem = rx.locks().semaphore("pool", PERMITS);
                let mut done = 0;
                for _ in 0..ROUNDS {
                    let permit = sem.acquire(&opts).await.unwrap();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(MS(4)).await;
                    // Out of the section before the permit goes back.
                    inside.fetch_sub(1, Ordering::SeqCst);
                    permit.release().await.unwrap();
                    done += 1;
                }
                done
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.unwrap(),
            ROUNDS,
            "every contender finished its rounds"
        );
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        PERMITS,
        "never more than N at once, and N at once at some point (not a mutex)"
    );
    let sem = a.locks().semaphore("pool", PERMITS);
    assert_eq!((sem.key(), sem.permits()), ("pool", PERMITS));
    assert_eq!(sem.holders().await.unwrap(), 0, "every permit went back");
    a.shutdown().await;
    b.shutdown().await;
}

async fn expired_leases_are_reclaimed(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, _) = one(&deployment, "sem_expiry").await;
    let sem = rx.locks().semaphore("pool", 2);
    // Both permits, unrenewed: their leases run out after 300 ms, and nobody releases them.
    let short = LockOptions::new().ttl(MS(300)).auto_renew(false);
    let old = [
        sem.acquire(&short).await.unwrap(),
        sem.acquire(&short).await.unwrap(),
    ];
    assert_eq!(sem.holders().await.unwrap(), 2);
    assert!(
        sem.try_acquire(&LockOptions::new())
            .await
            .unwrap()
            .is_none(),
        "both permits are taken"
    );

    // Started while both are held; only the expiry can let it in.
    let opts = LockOptions::new()
        .retry(RetryStrategy::Fixed(MS(50)))
        .jitter(false)
        .wait(Duration::from_secs(5));
    let new = sem
        .acquire(&opts)
        .await
        .expect("an expired lease's slot is taken");
    let oldest = old.iter().map(Permit::fencing_token).max().unwrap();
    assert!(new.fencing_token() > oldest);
    assert_eq!(
        sem.holders().await.unwrap(),
        1,
        "expired leases are not counted"
    );
    for permit in old {
        assert!(!permit.is_held());
        let err = error_of(permit.release().await);
        assert_eq!(err.code(), ErrorCode::LockNotOwned, "{err}");
    }
    assert_eq!(
        sem.holders().await.unwrap(),
        1,
        "the new lease is untouched"
    );
    new.release().await.unwrap();
    assert_eq!(sem.holders().await.unwrap(), 0);
    rx.shutdown().await;
}

async fn try_acquire_makes_one_attempt_and_acquire_counts_its_retries(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = pair(&deployment, "sem_attempts").await;
    let theirs = a.locks().semaphore("pool", 2);
    let held = [
        theirs.acquire(&LockOptions::new()).await.unwrap(),
        theirs.acquire(&LockOptions::new()).await.unwrap(),
    ];
    let sem = b.locks().semaphore("pool", 2);

    let sent = scripts_sent(&b);
    let opts = LockOptions::new().retries(10).wait(Duration::from_secs(5));
    assert!(sem.try_acquire(&opts).await.unwrap().is_none());
    assert_eq!(
        scripts_sent(&b) - sent,
        1,
        "one attempt, whatever the retry options"
    );

    let sent = scripts_sent(&b);
    let opts = LockOptions::new()
        .retry(RetryStrategy::Fixed(MS(10)))
        .jitter(false)
        .retries(2);
    let err = error_of(sem.acquire(&opts).await);
    assert_eq!(err.code(), ErrorCode::LockAcquisitionTimeout, "{err}");
    assert_eq!(err.context_value("attempts"), Some("3"), "{err}");
    assert_eq!(scripts_sent(&b) - sent, 3, "one script per attempt");

    for permit in held {
        permit.release().await.unwrap();
    }
    let free = sem.try_acquire(&LockOptions::new()).await.unwrap();
    assert!(free.is_some(), "free again once released");
    drop(free);
    a.shutdown().await;
    b.shutdown().await;
}

async fn fencing_tokens_strictly_increase_across_holders(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = pair(&deployment, "sem_fence").await;
    let mut tokens = Vec::new();
    // Rounds of filling all three permits from both runtimes, then emptying them.
    for _ in 0..5 {
        let mut permits = Vec::new();
        for i in 0..3 {
            let rx = if i % 2 == 0 { &a } else { &b };
            let permit = rx
                .locks()
                .semaphore("pool", 3)
                .acquire(&LockOptions::new())
                .await
                .unwrap();
            tokens.push(permit.fencing_token());
            permits.push(permit);
        }
        for permit in permits {
            permit.release().await.unwrap();
        }
    }
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing in acquisition order: {tokens:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// `holder` takes both permits of `key`; a waiter on `waiter` whose only retry is 20 s away
/// gets one within a few seconds of `holder` releasing one (so the release woke it).
async fn woken_by_a_release(
    deployment: &Deployment,
    holder: &RedisX,
    waiter: &RedisX,
    remote: bool,
) {
    let sem = holder.locks().semaphore("pool", 2);
    let held = [
        sem.acquire(&LockOptions::new()).await.unwrap(),
        sem.acquire(&LockOptions::new()).await.unwrap(),
    ];
    let patient = LockOptions::new()
        .retry(RetryStrategy::Fixed(Duration::from_secs(20)))
        .jitter(false)
        .retries(1);
    let sent = scripts_sent(waiter);
    let theirs = waiter.locks().semaphore("pool", 2);
    let waiting = tokio::spawn(async move { theirs.acquire(&patient).await });
    // Its first attempt failed...
    let tried = eventually(Duration::from_secs(2), MS(10), || {
        let n = scripts_sent(waiter);
        async move { n > sent }
    })
    .await;
    assert!(tried, "the waiter made its first attempt");
    // ... and, for a release elsewhere, its runtime listens for release messages.
    if remote {
        wait_for_release_listener_of(deployment, waiter).await;
    }
    // Lets the waiter settle into its wait.
    tokio::time::sleep(MS(100)).await;
    let [first, second] = held;
    let fence = first.fencing_token().max(second.fencing_token());
    first.release().await.unwrap();
    let permit = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiter got a permit long before its next scheduled retry (20 s)")
        .unwrap()
        .expect("acquired");
    assert!(permit.fencing_token() > fence);
    permit.release().await.unwrap();
    second.release().await.unwrap();
}

async fn a_release_in_the_same_runtime_wakes_a_waiter(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, _) = one(&deployment, "sem_wake_local").await;
    woken_by_a_release(&deployment, &rx, &rx, false).await;
    rx.shutdown().await;
}

async fn a_release_by_another_runtime_wakes_a_waiter(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = pair(&deployment, "sem_wake_remote").await;
    woken_by_a_release(&deployment, &b, &a, true).await;
    a.shutdown().await;
    b.shutdown().await;
}

async fn a_lease_removed_from_outside_is_lost(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, prefix) = one(&deployment, "sem_lost").await;
    let mut raw = deployment.raw_connection().await;
    let set = sem_set(&prefix, "pool");
    let sem = rx.locks().semaphore("pool", 2);
    // Short leases, renewed every 200 ms: a renewal soon finds the removal.
    let short = LockOptions::new().ttl(MS(600));
    let permit = sem.acquire(&short).await.unwrap();
    let other = sem.acquire(&short).await.unwrap();
    let kind: String = redis::cmd("TYPE")
        .arg(&set)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(kind, "zset", "the semaphore is the sorted set {set}");

    // One owner's lease removed: that permit is lost, the other one is not.
    let removed: i64 = redis::cmd("ZREM")
        .arg(&set)
        .arg(permit.owner_token())
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(removed, 1, "the owner token is a member of the set");
    tokio::time::timeout(Duration::from_secs(3), permit.lost())
        .await
        .expect("the next renewal finds the lease gone");
    assert!(!permit.is_held());
    assert!(other.is_held(), "the other lease is untouched");
    let err = error_of(permit.release().await);
    assert_eq!(err.code(), ErrorCode::LockNotOwned, "{err}");
    let fence = other.fencing_token();
    other.release().await.unwrap();

    // A body holding a permit (OnLost::Cancel by default) whose lease is deleted is stopped.
    let (started, body_started) = tokio::sync::oneshot::channel();
    let call = LockCall::new().options(short);
    let running = tokio::spawn(async move {
        sem.with_permit(&call, async move {
            let _ = started.send(fencing_token());
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, Error>("finished")
        })
        .await
    });
    let inside = body_started.await.expect("the body ran");
    assert!(
        inside.is_some_and(|t| t > fence),
        "the body reads its permit's fencing token: {inside:?}"
    );
    let _: i64 = redis::cmd("DEL")
        .arg(&set)
        .query_async(&mut raw)
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the body is stopped at the loss, not run for 30 s")
        .unwrap();
    let err = error_of(out);
    assert_eq!(err.code(), ErrorCode::LockExpired, "{err}");
    rx.shutdown().await;
}

async fn bad_arguments_are_refused_before_redis(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, _) = one(&deployment, "sem_bad_args").await;
    let locks = rx.locks();
    let opts = LockOptions::new();
    let sent = scripts_sent(&rx);

    let none = locks.semaphore("k", 0);
    let err = error_of(none.acquire(&opts).await);
    assert_eq!(err.code(), ErrorCode::ConfigInvalid, "{err}");
    let err = error_of(none.try_acquire(&opts).await);
    assert_eq!(err.code(), ErrorCode::ConfigInvalid, "{err}");
    let tiny = LockOptions::new().ttl(MIN_TTL / 2);
    let err = error_of(locks.semaphore("k", 2).acquire(&tiny).await);
    assert_eq!(err.code(), ErrorCode::ConfigInvalid, "{err}");
    // An empty key, and a brace that breaks the hash tag (the fence counter would land in
    // another cluster slot).
    for key in ["", "}x"] {
        let err = error_of(locks.semaphore(key, 2).acquire(&opts).await);
        assert_eq!(err.code(), ErrorCode::LockKeyInvalid, "{key:?}: {err}");
        let err = error_of(locks.semaphore(key, 2).try_acquire(&opts).await);
        assert_eq!(err.code(), ErrorCode::LockKeyInvalid, "{key:?}: {err}");
    }
    assert_eq!(scripts_sent(&rx), sent, "nothing was sent to Redis");

    // Braces that keep the tag whole are fine.
    let permit = locks.semaphore("a{b}c", 2).acquire(&opts).await.unwrap();
    assert_eq!(permit.key(), "a{b}c");
    permit.release().await.unwrap();
    rx.shutdown().await;
}

async fn a_dropped_permit_frees_its_slot(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, _) = one(&deployment, "sem_drop").await;
    let sem = rx.locks().semaphore("pool", 2);
    // The default 30 s ttl: only the release of the drop can free a slot soon.
    let first = sem.acquire(&LockOptions::new()).await.unwrap();
    let second = sem.acquire(&LockOptions::new()).await.unwrap();
    assert_eq!(sem.holders().await.unwrap(), 2);
    drop(first);
    let freed = eventually(Duration::from_secs(2), MS(10), || {
        let sem = sem.clone();
        async move { sem.holders().await.unwrap() == 1 }
    })
    .await;
    assert!(freed, "the dropped permit was released in the background");
    let third = sem.try_acquire(&LockOptions::new()).await.unwrap();
    assert!(third.is_some(), "its slot is free for the next caller");
    assert_eq!(sem.holders().await.unwrap(), 2);
    drop((second, third));
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    never_more_than_n_holders_and_n_are_reached,
    expired_leases_are_reclaimed,
    try_acquire_makes_one_attempt_and_acquire_counts_its_retries,
    fencing_tokens_strictly_increase_across_holders,
    a_release_in_the_same_runtime_wakes_a_waiter,
    a_release_by_another_runtime_wakes_a_waiter,
    a_lease_removed_from_outside_is_lost,
    bad_arguments_are_refused_before_redis,
    a_dropped_permit_frees_its_slot,
);
