//! Waiters are woken by a release instead of sleeping through their backoff: released in the
//! same runtime (the local queue) or by another runtime (the release message over pub/sub).
//! Each waiter's next scheduled retry is 20 s away; acquiring within a few seconds shows the
//! release woke it (the bound is generous, not a latency). Each test runs on a standalone
//! server and on the shared 3-master cluster.

use std::time::Duration;

use redisx::RedisX;
use redisx::lock::{LockConfig, LockOptions, RetryStrategy};
use redisx::testing::{Deployment, Topology};
use redisx_tests::lock::{
    LISTENER_PROBE, lock_runtime, scripts_sent, wait_for_release_listener_of,
};
use redisx_tests::unique_prefix;

/// A waiter whose only retry comes 20 s after its first attempt.
fn patient() -> LockOptions {
    LockOptions::new()
        .retry(RetryStrategy::Fixed(Duration::from_secs(20)))
        .jitter(false)
        .retries(1)
}

/// Waits (generously) for `waiter` to get the lock `key` that `holder` holds now, after
/// `holder` releases it. Returns the waiter's fencing token.
async fn handed_over(deployment: &Deployment, holder: &RedisX, waiter: &RedisX, key: &str) -> u64 {
    let held = holder
        .locks()
        .acquire(key, &LockOptions::new())
        .await
        .unwrap();
    let locks = waiter.locks().clone();
    let owned = key.to_owned();
    let waiting = tokio::spawn(async move { locks.acquire(&owned, &patient()).await });
    // The waiter's first attempt failed and its release listener is subscribed.
    wait_for_release_listener_of(deployment, waiter).await;
    let fence = held.fencing_token();
    held.release().await.unwrap();
    let guard = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiter got the lock long before its next scheduled retry (20 s)")
        .unwrap()
        .expect("acquired");
    assert!(guard.fencing_token() > fence);
    let token = guard.fencing_token();
    guard.release().await.unwrap();
    token
}

async fn a_release_in_the_same_runtime_wakes_a_waiter(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = lock_runtime(
        &deployment.url(),
        &unique_prefix("wake_local"),
        LockConfig::default(),
    )
    .await;
    handed_over(&deployment, &rx, &rx, "job").await;
    rx.shutdown().await;
}

async fn a_release_by_another_instance_wakes_a_waiter_through_pub_sub(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("wake_remote");
    let a = lock_runtime(&deployment.url(), &prefix, LockConfig::default()).await;
    let b = lock_runtime(&deployment.url(), &prefix, LockConfig::default()).await;
    handed_over(&deployment, &b, &a, "job").await;
    a.shutdown().await;
    b.shutdown().await;
}

async fn a_lock_that_expires_without_a_release_is_taken_on_the_backoff(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = lock_runtime(
        &deployment.url(),
        &unique_prefix("wake_expiry"),
        LockConfig::default(),
    )
    .await;
    // Held without renewal: it lapses after 300 ms and nobody publishes a release.
    let held = rx
        .locks()
        .acquire(
            "job",
            &LockOptions::new()
                .ttl(Duration::from_millis(300))
                .auto_renew(false),
        )
        .await
        .unwrap();
    let opts = LockOptions::new()
        .retry(RetryStrategy::Fixed(Duration::from_millis(100)))
        .jitter(false)
        .wait(Duration::from_secs(5));
    let guard = rx.locks().acquire("job", &opts).await.unwrap();
    assert!(guard.fencing_token() > held.fencing_token());
    guard.release().await.unwrap();
    drop(held);
    rx.shutdown().await;
}

async fn a_runtime_skips_its_own_release_messages(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = lock_runtime(
        &deployment.url(),
        &unique_prefix("wake_own"),
        LockConfig::default(),
    )
    .await;
    let held = rx
        .locks()
        .acquire("job", &LockOptions::new())
        .await
        .unwrap();
    // Two patient waiters in line: the first is the head, the second waits for its turn.
    let spawn_waiter = || {
        let locks = rx.locks().clone();
        tokio::spawn(async move { locks.acquire("job", &patient()).await })
    };
    let first = spawn_waiter();
    wait_for_release_listener_of(&deployment, &rx).await;
    let second = spawn_waiter();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = scripts_sent(&rx);
    held.release().await.unwrap();
    let guard = tokio::time::timeout(Duration::from_secs(5), first)
        .await
        .expect("the head got the lock long before its next scheduled retry (20 s)")
        .unwrap()
        .expect("acquired");
    // Time for the release message to come back to this runtime's own subscription.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The release and the head's one try. Acting on its own message, the runtime would have
    // sent the new head (the second waiter) a wasted try at a lock it had just taken.
    assert_eq!(scripts_sent(&rx) - before, 2);
    assert!(!second.is_finished());
    guard.release().await.unwrap();
    let last = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second waiter got the lock after the first released it")
        .unwrap()
        .expect("acquired");
    last.release().await.unwrap();
    rx.shutdown().await;
}

/// The URL of the master that holds `key`: the one master that answers a read of it (the
/// others of a cluster redirect it).
async fn owner_of(deployment: &Deployment, key: &str) -> String {
    let mut owners = Vec::new();
    for url in deployment.master_urls() {
        let mut conn = redisx_tests::raw_connection(&url).await;
        let read: redis::RedisResult<String> =
            redis::cmd("TYPE").arg(key).query_async(&mut conn).await;
        if read.is_ok() {
            owners.push(url);
        }
    }
    assert_eq!(owners.len(), 1, "one master holds {key}: {owners:?}");
    owners.pop().unwrap()
}

/// Messages on the lock channels of `prefix`, in order, from a raw pattern subscription on the
/// server at `url`.
async fn release_messages(
    url: &str,
    prefix: &str,
) -> impl futures_util::Stream<Item = String> + Unpin + use<> {
    let client = redis::Client::open(url).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.psubscribe(format!("{prefix}*")).await.unwrap();
    Box::pin(futures_util::StreamExt::map(
        pubsub.into_on_message(),
        |m| m.get_payload::<String>().unwrap(),
    ))
}

async fn only_a_release_someone_waited_for_is_published(topology: Topology) {
    use futures_util::StreamExt as _;

    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("lock_quiet_release");
    let a = lock_runtime(&deployment.url(), &prefix, LockConfig::default()).await;
    let b = lock_runtime(&deployment.url(), &prefix, LockConfig::default()).await;
    // Subscribed and marked on the master of the lock (where its scripts publish): a cluster
    // node forwards the messages of each other node in order, but not in order with its own.
    let owner = owner_of(&deployment, &a.locks().full_key("quiet")).await;
    let mut messages = release_messages(&owner, &prefix).await;
    let raw = deployment.raw_connection().await;
    // The marker, published after each step: whatever arrives before it came from the step
    // (except the probes of the wait for the release listener, the test's own messages).
    let channel = format!("{prefix}marker");
    let mut publisher = redisx_tests::raw_connection(&owner).await;
    let mut marker = async |n: u32| -> Vec<String> {
        let () = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(format!("marker-{n}"))
            .query_async(&mut publisher)
            .await
            .unwrap();
        let mut before = Vec::new();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(2), messages.next())
                .await
                .expect("the marker arrives")
                .expect("the subscription is open");
            if m == format!("marker-{n}") {
                return before;
            }
            if m != LISTENER_PROBE {
                before.push(m);
            }
        }
    };

    // Uncontended: acquire and release publish nothing.
    let guard = a
        .locks()
        .acquire("quiet", &LockOptions::new())
        .await
        .unwrap();
    guard.release().await.unwrap();
    assert_eq!(
        marker(1).await,
        Vec::<String>::new(),
        "an uncontended release"
    );

    // A single try that found the lock held does not wait: still nothing.
    let guard = a
        .locks()
        .acquire("quiet", &LockOptions::new())
        .await
        .unwrap();
    assert!(
        b.locks()
            .try_acquire("quiet", &LockOptions::new())
            .await
            .unwrap()
            .is_none()
    );
    guard.release().await.unwrap();
    assert_eq!(marker(2).await, Vec::<String>::new(), "after a single try");

    // A caller that waits flags itself: the release tells it, once.
    let guard = a
        .locks()
        .acquire("quiet", &LockOptions::new())
        .await
        .unwrap();
    let fence = guard.fencing_token();
    let waiter = {
        let locks = b.locks().clone();
        tokio::spawn(async move { locks.acquire("quiet", &patient()).await })
    };
    wait_for_release_listener_of(&deployment, &b).await;
    let flagged =
        redisx_tests::eventually(Duration::from_secs(2), Duration::from_millis(5), || {
            let mut raw = raw.clone();
            let key = format!("{}:waiters", a.locks().full_key("quiet"));
            async move { redisx_tests::lock::exists(&mut raw, &key).await }
        })
        .await;
    assert!(flagged, "the waiting caller flagged itself");
    guard.release().await.unwrap();
    let taken = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the release woke the waiter")
        .unwrap()
        .unwrap();
    assert!(taken.fencing_token() > fence);
    let told = marker(3).await;
    assert_eq!(
        told.len(),
        1,
        "one message for the waited-for release: {told:?}"
    );
    assert!(told[0].ends_with(&format!(":{fence}")), "{told:?}");
    taken.release().await.unwrap();
    assert_eq!(
        marker(4).await,
        Vec::<String>::new(),
        "nobody waits any more"
    );
    a.shutdown().await;
    b.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_release_in_the_same_runtime_wakes_a_waiter,
    a_release_by_another_instance_wakes_a_waiter_through_pub_sub,
    a_lock_that_expires_without_a_release_is_taken_on_the_backoff,
    a_runtime_skips_its_own_release_messages,
    only_a_release_someone_waited_for_is_published,
);
