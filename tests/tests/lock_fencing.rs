//! Fencing tokens: strictly increasing per key across holders (in one runtime and across two,
//! on every topology), larger for a new holder than for one that held past its ttl (on a
//! standalone server and on the shared 3-master cluster), and still increasing after a restart
//! of the server that lost the counter (a standalone server of its own); a counter ahead of the
//! server clock moves on by one.

use std::time::Duration;

use redisx::ErrorCode;
use redisx::lock::{LockConfig, LockOptions};
use redisx::testing::{Deployment, Topology};
use redisx_tests::lock::{exists, get, lock_runtime};
use redisx_tests::{RedisServer, eventually, raw_connection, raw_query, unique_prefix};

async fn tokens_increase(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix(&format!("lock_fence_{topology}"));
    let a = lock_runtime(&deployment.url(), &prefix, LockConfig::default()).await;
    let b = lock_runtime(&deployment.url(), &prefix, LockConfig::default()).await;
    let mut tokens = Vec::new();
    for i in 0..20 {
        let rx = if i % 2 == 0 { &a } else { &b };
        let guard = rx
            .locks()
            .acquire("account:1", &LockOptions::new())
            .await
            .unwrap();
        tokens.push(guard.fencing_token());
        guard.release().await.unwrap();
    }
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "on {topology}: strictly increasing: {tokens:?}"
    );
    // Another key has a sequence of its own, also past the server clock's microseconds.
    let other = a
        .locks()
        .acquire("account:2", &LockOptions::new())
        .await
        .unwrap();
    assert!(
        other.fencing_token() > 1_000_000_000_000_000,
        "on {topology}: {}",
        other.fencing_token()
    );

    // The counter outlives the lock.
    let lock_key = a.locks().full_key("account:2");
    let fence_key = format!("{lock_key}:fence");
    let lock_ttl: i64 = raw_query(&deployment, redis::cmd("PTTL").arg(&lock_key)).await;
    let fence_ttl: i64 = raw_query(&deployment, redis::cmd("PTTL").arg(&fence_key)).await;
    assert!(
        fence_ttl > lock_ttl + 3_000_000,
        "on {topology}: {fence_ttl} vs {lock_ttl}"
    );
    let counter: Option<String> = raw_query(&deployment, redis::cmd("GET").arg(&fence_key)).await;
    assert_eq!(
        counter,
        Some(other.fencing_token().to_string()),
        "on {topology}"
    );
    other.release().await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_strictly_increase_across_holders() {
    for &topology in Topology::ALL {
        tokens_increase(topology).await;
    }
}

async fn a_holder_past_its_ttl_carries_a_smaller_token_and_cannot_release_the_new_owners_lock(
    topology: Topology,
) {
    let deployment = Deployment::start(topology);
    let rx = lock_runtime(
        &deployment.url(),
        &unique_prefix("lock_paused"),
        LockConfig::default(),
    )
    .await;
    let mut raw = deployment.raw_connection().await;
    let key = rx.locks().full_key("invoice:9");
    // A holder that stops renewing (as if paused) and outlives its ttl.
    let old = rx
        .locks()
        .acquire(
            "invoice:9",
            &LockOptions::new()
                .ttl(Duration::from_millis(100))
                .auto_renew(false),
        )
        .await
        .unwrap();
    let expired = eventually(Duration::from_secs(2), Duration::from_millis(10), || {
        let mut raw = raw.clone();
        let key = key.clone();
        async move { !exists(&mut raw, &key).await }
    })
    .await;
    assert!(expired, "the unrenewed lock expires");

    let new = rx
        .locks()
        .acquire("invoice:9", &LockOptions::new())
        .await
        .unwrap();
    assert!(new.fencing_token() > old.fencing_token());
    let err = old.release().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::LockNotOwned, "{err}");
    assert_eq!(
        get(&mut raw, &key).await.as_deref(),
        Some(new.owner_token()),
        "the new owner's key is left in place"
    );
    assert!(new.is_held());
    new.release().await.unwrap();
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_holder_past_its_ttl_carries_a_smaller_token_and_cannot_release_the_new_owners_lock
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_still_increase_after_a_restart_that_lost_the_counter() {
    let mut server = RedisServer::start_owned();
    let rx = lock_runtime(
        &server.url(),
        &unique_prefix("lock_restart"),
        LockConfig::default(),
    )
    .await;
    let fence_key = format!("{}:fence", rx.locks().full_key("ledger"));
    let mut before = Vec::new();
    for _ in 0..5 {
        let guard = rx
            .locks()
            .acquire("ledger", &LockOptions::new())
            .await
            .unwrap();
        before.push(guard.fencing_token());
        guard.release().await.unwrap();
    }

    server.restart();
    let mut raw = raw_connection(&server.url()).await;
    assert!(
        !exists(&mut raw, &fence_key).await,
        "the restart lost the counter"
    );
    // The runtime reconnects on its own; until it has, an acquire fails (closed).
    let mut after = None;
    for _ in 0..100 {
        match rx.locks().acquire("ledger", &LockOptions::new()).await {
            Ok(guard) => {
                after = Some(guard.fencing_token());
                guard.release().await.unwrap();
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let after = after.expect("the runtime reconnects to the restarted server");
    let last = *before.last().unwrap();
    assert!(after > last, "{after} after the restart, {last} before");
    rx.shutdown().await;
}

/// A counter ahead of the server clock (a clock stepped back, or a counter restored from a
/// server whose clock ran ahead) moves on by one per acquire instead of following the clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_ahead_of_the_clock_moves_on_by_one() {
    let deployment = Deployment::start(Topology::Standalone);
    let rx = lock_runtime(
        &deployment.url(),
        &unique_prefix("lock_ahead"),
        LockConfig::default(),
    )
    .await;
    let lock_fence = format!("{}:fence", rx.locks().full_key("ledger"));
    let sem_fence = format!(
        "{}:fence",
        rx.locks()
            .full_key("exports")
            .replacen("lock:{", "lock:sem:{", 1)
    );
    // About 11.6 days of microseconds ahead of now.
    let ahead: u64 = 4_000_000_000_000_000;
    for fence_key in [&lock_fence, &sem_fence] {
        let _: () = raw_query(
            &deployment,
            redis::cmd("SET")
                .arg(fence_key)
                .arg(ahead)
                .arg("PX")
                .arg(600_000),
        )
        .await;
    }

    let mut tokens = Vec::new();
    for _ in 0..3 {
        let guard = rx
            .locks()
            .acquire("ledger", &LockOptions::new())
            .await
            .unwrap();
        tokens.push(guard.fencing_token());
        guard.release().await.unwrap();
    }
    assert_eq!(tokens, [ahead + 1, ahead + 2, ahead + 3]);
    let stored: Option<String> = raw_query(&deployment, redis::cmd("GET").arg(&lock_fence)).await;
    assert_eq!(stored, Some((ahead + 3).to_string()));

    let sem = rx.locks().semaphore("exports", 2);
    let first = sem.acquire(&LockOptions::new()).await.unwrap();
    let second = sem.acquire(&LockOptions::new()).await.unwrap();
    assert_eq!(
        (first.fencing_token(), second.fencing_token()),
        (ahead + 1, ahead + 2)
    );
    let stored: Option<String> = raw_query(&deployment, redis::cmd("GET").arg(&sem_fence)).await;
    assert_eq!(stored, Some((ahead + 2).to_string()));
    first.release().await.unwrap();
    second.release().await.unwrap();
    rx.shutdown().await;
}
