//! Waiters are woken by a release instead of sleeping through their backoff: released in the
//! same runtime (the local queue) or by another runtime (the release message over pub/sub).
//! Each waiter's next scheduled retry is 20 s away; acquiring within a few seconds shows the
//! release woke it (the bound is generous, not a latency).

use std::time::Duration;

use redisx::RedisX;
use redisx::lock::{LockConfig, LockOptions, RetryStrategy};
use redisx_tests::lock::{lock_runtime, scripts_sent, wait_for_release_listener};
use redisx_tests::{RedisServer, unique_prefix};

/// A waiter whose only retry comes 20 s after its first attempt.
fn patient() -> LockOptions {
    LockOptions::new()
        .retry(RetryStrategy::Fixed(Duration::from_secs(20)))
        .jitter(false)
        .retries(1)
}

/// Waits (generously) for `waiter` to get the lock `key` that `holder` holds now, after
/// `holder` releases it. Returns the waiter's fencing token.
async fn handed_over(server: &RedisServer, holder: &RedisX, waiter: &RedisX, key: &str) -> u64 {
    let held = holder
        .locks()
        .acquire(key, &LockOptions::new())
        .await
        .unwrap();
    let locks = waiter.locks().clone();
    let owned = key.to_owned();
    let waiting = tokio::spawn(async move { locks.acquire(&owned, &patient()).await });
    // The waiter's first attempt failed and its release listener is subscribed.
    wait_for_release_listener(&server.url()).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_in_the_same_runtime_wakes_a_waiter() {
    let server = RedisServer::start();
    let rx = lock_runtime(
        &server.url(),
        &unique_prefix("wake_local"),
        LockConfig::default(),
    )
    .await;
    handed_over(&server, &rx, &rx, "job").await;
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_by_another_instance_wakes_a_waiter_through_pub_sub() {
    let server = RedisServer::start();
    let prefix = unique_prefix("wake_remote");
    let a = lock_runtime(&server.url(), &prefix, LockConfig::default()).await;
    let b = lock_runtime(&server.url(), &prefix, LockConfig::default()).await;
    handed_over(&server, &b, &a, "job").await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_expires_without_a_release_is_taken_on_the_backoff() {
    let server = RedisServer::start();
    let rx = lock_runtime(
        &server.url(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_skips_its_own_release_messages() {
    let server = RedisServer::start();
    let rx = lock_runtime(
        &server.url(),
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
    wait_for_release_listener(&server.url()).await;
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

/// Messages on the lock channels of `prefix`, in order, from a raw pattern subscription.
async fn release_messages(
    server: &RedisServer,
    prefix: &str,
) -> impl futures_util::Stream<Item = String> + Unpin + use<> {
    let client = redis::Client::open(server.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.psubscribe(format!("{prefix}*")).await.unwrap();
    Box::pin(futures_util::StreamExt::map(
        pubsub.into_on_message(),
        |m| m.get_payload::<String>().unwrap(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_release_someone_waited_for_is_published() {
    use futures_util::StreamExt as _;

    let server = RedisServer::start();
    let prefix = unique_prefix("lock_quiet_release");
    let a = lock_runtime(&server.url(), &prefix, LockConfig::default()).await;
    let b = lock_runtime(&server.url(), &prefix, LockConfig::default()).await;
    let mut messages = release_messages(&server, &prefix).await;
    let raw = redisx_tests::raw_connection(&server.url()).await;
    // The marker, published after each step: whatever arrives before it came from the step.
    let channel = format!("{prefix}marker");
    let mut publisher = raw.clone();
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
            before.push(m);
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
    wait_for_release_listener(&server.url()).await;
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
