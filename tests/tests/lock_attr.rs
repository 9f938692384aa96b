//! `#[with_lock]` end to end against real Redis: exclusion, `on_busy`, `on_lost`, the
//! fencing token in the body, errors passing through, methods, and failing closed. Each test
//! with Redis runs on a standalone server and on the shared 3-master cluster, its body in the
//! scope of a runtime of its own ([`redisx_tests::scoped`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redisx::lock::fencing_token;
use redisx::testing::Topology;
use redisx::{Error, ErrorCode, RedisX, redis, with_lock};
use redisx_tests::{Turn, scoped};

/// A non-atomic read-then-write of `key`: concurrent calls lose updates unless serialised.
async fn increment(rx: &RedisX, key: &str) -> Result<(), Error> {
    let client = rx.client();
    let n: Option<u64> = client.query(redis::cmd("GET").arg(key)).await?;
    tokio::time::sleep(Duration::from_millis(1)).await;
    client
        .query::<()>(redis::cmd("SET").arg(key).arg(n.unwrap_or(0) + 1))
        .await
}

#[with_lock(
    key = "counter:{name}",
    wait = "20s",
    retry = "fixed",
    retry_delay = "2ms"
)]
async fn locked_increment(rx: RedisX, name: String) -> Result<(), Error> {
    increment(&rx, &rx.cache().full_key(&name)).await
}

async fn concurrent_calls_are_serialised(topology: Topology) {
    scoped(topology, "concurrent_calls_are_serialised", serialised).await;
}

async fn serialised(rx: RedisX) {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let rx = rx.clone();
            redisx::spawn(async move {
                for _ in 0..10 {
                    locked_increment(rx.clone(), "a".to_owned()).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let total: u64 = rx
        .client()
        .query(redis::cmd("GET").arg(rx.cache().full_key("a")))
        .await
        .unwrap();
    assert_eq!(total, 80, "every increment under the lock counted");
}

static SKIPPED_RAN: AtomicUsize = AtomicUsize::new(0);
/// The topologies' tests take turns with `SKIPPED_RAN`.
static SKIPPED_TURN: Turn = Turn::new();

#[with_lock(key = "job", on_busy = "skip")]
async fn job() -> Result<(), Error> {
    SKIPPED_RAN.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[with_lock(key = "job", on_busy = "skip")]
async fn job_value() -> Result<Option<u8>, Error> {
    SKIPPED_RAN.fetch_add(1, Ordering::SeqCst);
    Ok(Some(7))
}

#[with_lock(key = "job", retries = 1, retry = "fixed", retry_delay = "5ms")]
async fn job_waiting() -> Result<u8, Error> {
    SKIPPED_RAN.fetch_add(1, Ordering::SeqCst);
    Ok(1)
}

async fn a_held_lock_skips_or_fails_without_running_the_body(topology: Topology) {
    let _turn = SKIPPED_TURN.take(&[&SKIPPED_RAN]).await;
    scoped(topology, "a_held_lock_skips", held_lock_skips).await;
}

async fn held_lock_skips(rx: RedisX) {
    let held = rx
        .locks()
        .acquire("job", &redisx::lock::LockOptions::default())
        .await
        .unwrap();
    assert_eq!(job().await.unwrap(), ());
    assert_eq!(job_value().await.unwrap(), None);
    let e = job_waiting().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::LockAcquisitionTimeout, "{e:#}");
    assert_eq!(SKIPPED_RAN.load(Ordering::SeqCst), 0, "no body ran");
    held.release().await.unwrap();
    job().await.unwrap();
    assert_eq!(job_value().await.unwrap(), Some(7));
    assert_eq!(job_waiting().await.unwrap(), 1);
    assert_eq!(SKIPPED_RAN.load(Ordering::SeqCst), 3);
}

static PAST_THE_SLEEP: AtomicUsize = AtomicUsize::new(0);
/// The topologies' tests take turns with `PAST_THE_SLEEP`.
static SLEEP_TURN: Turn = Turn::new();

/// Without renewal a 300 ms lock is lost while the body sleeps.
#[with_lock(key = "slow", ttl = "300ms", auto_renew = false)]
async fn cancelled() -> Result<(), Error> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    PAST_THE_SLEEP.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[with_lock(key = "slow", ttl = "300ms", auto_renew = false, on_lost = "continue")]
async fn continued() -> Result<u8, Error> {
    tokio::time::sleep(Duration::from_millis(600)).await;
    PAST_THE_SLEEP.fetch_add(1, Ordering::SeqCst);
    Ok(5)
}

async fn a_lost_lock_cancels_the_body_unless_told_to_continue(topology: Topology) {
    let _turn = SLEEP_TURN.take(&[&PAST_THE_SLEEP]).await;
    scoped(topology, "a_lost_lock_cancels", lost_lock_cancels).await;
}

async fn lost_lock_cancels(_: RedisX) {
    let e = cancelled().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::LockExpired, "{e:#}");
    assert_eq!(
        PAST_THE_SLEEP.load(Ordering::SeqCst),
        0,
        "the body was stopped"
    );
    assert_eq!(continued().await.unwrap(), 5);
    assert_eq!(PAST_THE_SLEEP.load(Ordering::SeqCst), 1);
}

#[with_lock(key = "fenced")]
async fn fenced() -> Result<u64, Error> {
    Ok(fencing_token().expect("inside the lock"))
}

async fn the_body_reads_the_fencing_token(topology: Topology) {
    scoped(
        topology,
        "the_body_reads_the_fencing_token",
        reads_the_token,
    )
    .await;
}

async fn reads_the_token(rx: RedisX) {
    assert_eq!(fencing_token(), None, "outside any lock");
    let first = fenced().await.unwrap();
    let second = fenced().await.unwrap();
    assert!(second > first, "{first} then {second}");
    assert!(
        !rx.locks().is_locked("fenced").await.unwrap(),
        "released after each call"
    );
}

#[derive(Debug)]
enum AppError {
    Lock(#[expect(dead_code, reason = "only the variant is matched")] Error),
    Declined(u64),
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        Self::Lock(e)
    }
}

#[with_lock(key = "card:{card}")]
async fn charge(card: u64) -> Result<(), AppError> {
    Err(AppError::Declined(card))
}

async fn the_body_error_passes_through_and_the_lock_is_released(topology: Topology) {
    scoped(
        topology,
        "the_body_error_passes_through",
        error_passes_through,
    )
    .await;
}

async fn error_passes_through(rx: RedisX) {
    assert!(matches!(charge(4).await, Err(AppError::Declined(4))));
    assert!(!rx.locks().is_locked("card:4").await.unwrap());
}

struct Ledger {
    rx: RedisX,
}

impl Ledger {
    #[with_lock(key = "ledger:{id}", runtime = &self.rx)]
    async fn post(&self, id: u64) -> Result<bool, Error> {
        self.rx.locks().is_locked(&format!("ledger:{id}")).await
    }
}

async fn methods_lock_with_their_own_runtime(topology: Topology) {
    scoped(topology, "methods_lock_with_their_own_runtime", own_runtime).await;
}

async fn own_runtime(rx: RedisX) {
    let ledger = Ledger { rx: rx.clone() };
    assert!(ledger.post(9).await.unwrap(), "held while the body runs");
    assert!(!rx.locks().is_locked("ledger:9").await.unwrap());
}

redisx_tests::on_topologies!(
    concurrent_calls_are_serialised,
    a_held_lock_skips_or_fails_without_running_the_body,
    a_lost_lock_cancels_the_body_unless_told_to_continue,
    the_body_reads_the_fencing_token,
    the_body_error_passes_through_and_the_lock_is_released,
    methods_lock_with_their_own_runtime,
);

#[tokio::test]
async fn without_a_runtime_the_call_fails_closed() {
    assert!(RedisX::current().is_none());
    let e = fenced().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ConfigNotInstalled, "{e:#}");
}
