//! The lock plugin's main paths on every topology (`Topology::ALL`: standalone, cluster,
//! sentinel), each body written once: acquire and release; `try_acquire` contention between two
//! runtimes; a waiter in another runtime woken by the release (the release message over
//! pub/sub) long before its retry backoff; `with_lock` and `#[with_lock]`; semaphores shared by
//! two runtimes. (Fencing tokens on every topology: `lock_fencing.rs`.)

use std::time::Duration;

use redisx::lock::{LockCall, LockConfig, LockOptions, RetryStrategy, fencing_token};
use redisx::testing::{Deployment, Topology, unique_prefix};
use redisx::{Error, ErrorCode, RedisX, redis, with_lock};
use redisx_tests::{Nodes, eventually, raw_query};

/// The only retry a woken waiter could otherwise make comes this long after its first attempt.
const BACKOFF: Duration = Duration::from_secs(20);
/// How long the test gives a woken waiter: well under [`BACKOFF`], so getting the lock within
/// it shows the release woke the waiter.
const WOKEN_WITHIN: Duration = Duration::from_secs(8);

/// A runtime on `deployment` with the key prefix `prefix` and the default locks.
async fn lock_runtime(deployment: &Deployment, prefix: &str) -> RedisX {
    deployment
        .redisx_builder()
        .key_prefix(prefix)
        .locks(LockConfig::default())
        .build()
        .await
        .unwrap_or_else(|e| panic!("a runtime on {}: {e}", deployment.topology()))
}

/// Two runtimes on one prefix of `test` on `deployment`: two instances of one service.
async fn pair(deployment: &Deployment, test: &str) -> (RedisX, RedisX) {
    let prefix = unique_prefix(&format!("{test}_{}", deployment.topology()));
    let a = lock_runtime(deployment, &prefix).await;
    let b = lock_runtime(deployment, &prefix).await;
    (a, b)
}

/// How many subscriptions (plain or pattern) receive a message on `channel`: a probe is
/// published on every server, and the receiver counts add up (a cluster node counts only its
/// own clients, though it forwards the message to the others).
async fn receivers(deployment: &Deployment, channel: &str) -> u64 {
    Nodes::of(deployment).await.publish(channel, "probe").await
}

/// `eventually` takes a `bool` check: any receiver counts.
async fn any(n: impl Future<Output = u64>) -> bool {
    n.await > 0
}

async fn acquire_and_release(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, _) = pair(&deployment, "topo_lock_basic").await;
    let locks = rx.locks();
    let guard = locks.acquire("order:1", &LockOptions::new()).await.unwrap();
    assert!(guard.is_held(), "on {topology}");
    assert!(locks.is_locked("order:1").await.unwrap(), "on {topology}");
    // The key holds the owner token, as a raw client sees it.
    let full = locks.full_key("order:1");
    let stored: Option<String> = raw_query(&deployment, redis::cmd("GET").arg(&full)).await;
    assert_eq!(
        stored.as_deref(),
        Some(guard.owner_token()),
        "on {topology}"
    );
    assert_eq!(locks.stats().active, 1, "on {topology}");
    guard.release().await.unwrap();
    assert!(!locks.is_locked("order:1").await.unwrap(), "on {topology}");
    let exists: i64 = raw_query(&deployment, redis::cmd("EXISTS").arg(&full)).await;
    assert_eq!(exists, 0, "on {topology}: the release deleted the key");

    // Another key is another lock; an administrator's force release frees a held one.
    let held = locks.acquire("order:2", &LockOptions::new()).await.unwrap();
    let other = locks.acquire("order:3", &LockOptions::new()).await.unwrap();
    assert!(
        locks.force_release("order:2").await.unwrap(),
        "on {topology}"
    );
    assert!(!locks.is_locked("order:2").await.unwrap(), "on {topology}");
    let err = held.release().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::LockNotOwned, "on {topology}: {err}");
    other.release().await.unwrap();
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_and_release_on_every_topology() {
    for &topology in Topology::ALL {
        acquire_and_release(topology).await;
    }
}

async fn try_acquire_contends(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = pair(&deployment, "topo_lock_contention").await;
    let opts = LockOptions::new();
    let held = a.locks().try_acquire("job", &opts).await.unwrap();
    let held = held.unwrap_or_else(|| panic!("on {topology}: a free lock is taken"));
    assert!(
        b.locks().try_acquire("job", &opts).await.unwrap().is_none(),
        "on {topology}: held by the other runtime"
    );
    assert!(b.locks().is_locked("job").await.unwrap(), "on {topology}");
    assert_eq!(b.locks().stats().busy, 1, "on {topology}");
    // A few retries of a short fixed delay are not enough either.
    let short = LockOptions::new()
        .retry(RetryStrategy::Fixed(Duration::from_millis(10)))
        .retries(2);
    let err = b.locks().acquire("job", &short).await.unwrap_err();
    assert_eq!(
        err.code(),
        ErrorCode::LockAcquisitionTimeout,
        "on {topology}: {err}"
    );
    held.release().await.unwrap();
    let taken = b.locks().try_acquire("job", &opts).await.unwrap();
    let taken = taken.unwrap_or_else(|| panic!("on {topology}: free again after the release"));
    assert!(
        a.locks().try_acquire("job", &opts).await.unwrap().is_none(),
        "on {topology}: now the other way round"
    );
    taken.release().await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_acquire_contends_across_runtimes_on_every_topology() {
    for &topology in Topology::ALL {
        try_acquire_contends(topology).await;
    }
}

async fn release_wakes_a_remote_waiter(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (holder, waiter) = pair(&deployment, "topo_lock_wake").await;
    let held = holder
        .locks()
        .acquire("job", &LockOptions::new())
        .await
        .unwrap();
    // One failed attempt, then its next one BACKOFF later (no jitter); the budget lets it wait.
    let patient = LockOptions::new()
        .retry(RetryStrategy::Fixed(BACKOFF))
        .jitter(false)
        .wait(BACKOFF + Duration::from_secs(10));
    let locks = waiter.locks().clone();
    let waiting = tokio::spawn(async move { locks.acquire("job", &patient).await });
    // The waiter's first attempt failed and its release listener (a pattern subscription to
    // the prefix's lock channels) is established: a release cannot be missed any more.
    let probe = format!("{}:released", waiter.locks().full_key("probe"));
    let listening = eventually(Duration::from_secs(5), Duration::from_millis(10), || {
        any(receivers(&deployment, &probe))
    })
    .await;
    assert!(listening, "on {topology}: the waiter's release listener");
    assert!(
        !waiting.is_finished(),
        "on {topology}: the waiter still waits"
    );

    let fence = held.fencing_token();
    held.release().await.unwrap();
    let guard = tokio::time::timeout(WOKEN_WITHIN, waiting)
        .await
        .unwrap_or_else(|_| {
            panic!("on {topology}: the release woke the waiter before its {BACKOFF:?} backoff")
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("on {topology}: the waiter acquired: {e}"));
    assert!(guard.fencing_token() > fence, "on {topology}");
    guard.release().await.unwrap();
    holder.shutdown().await;
    waiter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_a_waiter_in_another_runtime_on_every_topology() {
    for &topology in Topology::ALL {
        release_wakes_a_remote_waiter(topology).await;
    }
}

/// Under the lock `report:{id}` of `rx`: its fencing token, and whether `rx` sees it held.
#[with_lock(key = "report:{id}", runtime = rx)]
async fn locked_report(rx: &RedisX, id: u32) -> Result<(u64, bool), Error> {
    let token = fencing_token().expect("inside the lock");
    let held = rx.locks().is_locked(&format!("report:{id}")).await?;
    Ok((token, held))
}

async fn with_lock_runs_under_the_lock(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = pair(&deployment, "topo_lock_with").await;
    let opts = LockOptions::new();
    let (token, seen) = a
        .locks()
        .with_lock("settle:7", &opts, async {
            let token = fencing_token().expect("inside the lock");
            Ok::<_, Error>((token, b.locks().is_locked("settle:7").await?))
        })
        .await
        .unwrap();
    assert!(seen, "on {topology}: held while the body runs");
    assert!(token > 0, "on {topology}");
    assert!(
        !b.locks().is_locked("settle:7").await.unwrap(),
        "on {topology}"
    );

    // The body's error passes through, and the lock is released all the same.
    let out = b
        .locks()
        .with_lock("settle:7", &opts, async {
            Err::<(), _>(Error::new(ErrorCode::ConfigInvalid, "declined"))
        })
        .await;
    let err = out.unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigInvalid, "on {topology}: {err}");
    assert!(
        !a.locks().is_locked("settle:7").await.unwrap(),
        "on {topology}"
    );

    // A held lock keeps the body from running.
    let held = a.locks().acquire("settle:8", &opts).await.unwrap();
    let quick = LockOptions::new().retries(0);
    let out = b
        .locks()
        .with_lock("settle:8", &quick, async { Ok::<_, Error>(()) })
        .await;
    let err = out.unwrap_err();
    assert_eq!(
        err.code(),
        ErrorCode::LockAcquisitionTimeout,
        "on {topology}: {err}"
    );
    held.release().await.unwrap();

    // The attribute, on either runtime: held inside, released after, tokens increasing.
    let (first, held_inside) = locked_report(&a, 1).await.unwrap();
    assert!(held_inside, "on {topology}: #[with_lock] holds the lock");
    let (second, _) = locked_report(&b, 1).await.unwrap();
    assert!(second > first, "on {topology}: {first} then {second}");
    assert!(
        !a.locks().is_locked("report:1").await.unwrap(),
        "on {topology}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_lock_and_the_attribute_on_every_topology() {
    for &topology in Topology::ALL {
        with_lock_runs_under_the_lock(topology).await;
    }
}

async fn semaphores_share_permits(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (a, b) = pair(&deployment, "topo_lock_sem").await;
    let opts = LockOptions::new();
    let (sa, sb) = (
        a.locks().semaphore("pool", 2),
        b.locks().semaphore("pool", 2),
    );
    let first = sa.acquire(&opts).await.unwrap();
    let second = sb.acquire(&opts).await.unwrap();
    assert!(
        second.fencing_token() > first.fencing_token(),
        "on {topology}"
    );
    assert_eq!(sa.holders().await.unwrap(), 2, "on {topology}");
    assert!(
        sa.try_acquire(&opts).await.unwrap().is_none(),
        "on {topology}: both permits are out"
    );
    assert!(
        sb.try_acquire(&opts).await.unwrap().is_none(),
        "on {topology}"
    );
    first.release().await.unwrap();
    assert_eq!(sb.holders().await.unwrap(), 1, "on {topology}");
    let third = sb.try_acquire(&opts).await.unwrap();
    let third = third.unwrap_or_else(|| panic!("on {topology}: the released permit is free"));
    assert!(
        third.fencing_token() > second.fencing_token(),
        "on {topology}"
    );

    // A permit for a body, through the other runtime's semaphore: none free until one returns.
    let call = LockCall::new().options(LockOptions::new().retries(0));
    let busy = sa.with_permit(&call, async { Ok::<_, Error>(()) }).await;
    let err = busy.unwrap_err();
    assert_eq!(
        err.code(),
        ErrorCode::LockAcquisitionTimeout,
        "on {topology}: {err}"
    );
    let floor = third.fencing_token();
    third.release().await.unwrap();
    let inside = sa
        .with_permit(&call, async { Ok::<_, Error>(fencing_token()) })
        .await
        .unwrap();
    assert!(
        inside.is_some_and(|t| t > floor),
        "on {topology}: the body reads its permit's token: {inside:?}"
    );
    second.release().await.unwrap();
    assert_eq!(sa.holders().await.unwrap(), 0, "on {topology}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semaphores_on_every_topology() {
    for &topology in Topology::ALL {
        semaphores_share_permits(topology).await;
    }
}
