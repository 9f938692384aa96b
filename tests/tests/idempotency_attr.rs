//! `#[idempotent]` end to end against real Redis: the body runs once per key and duplicates
//! get its value, the fingerprint covers the listed arguments only, errors mark the key failed
//! or are replayed with `record_errors`, methods, the metrics, failing closed without a
//! runtime, and the attribute under an `IdempotencyLayer` holding the same key (run once, no
//! self-deadlock).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::routing::post;
use axum::{Extension, Router};
use redisx::http::{IdempotencyKey, IdempotencyLayer};
use redisx::{Error, ErrorCode, RedisX, idempotent};
use redisx_tests::http::{client, serve};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Charge {
    key: String,
    amount: u64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Receipt {
    id: u64,
    amount: u64,
}

static CHARGES: AtomicUsize = AtomicUsize::new(0);

/// `attempt` is left out of the fingerprint: a retry with another attempt number is the same
/// request.
#[idempotent(key = "charge:{req.key}", fingerprint = [req])]
async fn charge(req: Charge, attempt: u32) -> Result<Receipt, Error> {
    let _ = attempt;
    let id = CHARGES.fetch_add(1, Ordering::SeqCst) as u64;
    Ok(Receipt {
        id,
        amount: req.amount,
    })
}

fn req(key: &str, amount: u64) -> Charge {
    Charge {
        key: key.to_owned(),
        amount,
    }
}

#[redisx::test]
async fn the_body_runs_once_per_key_and_duplicates_get_its_value(_rx: RedisX) {
    let first = charge(req("a", 100), 1).await.unwrap();
    let before = CHARGES.load(Ordering::SeqCst);
    let again = charge(req("a", 100), 2).await.unwrap();
    assert_eq!(
        again, first,
        "the recorded value, whatever the attempt number"
    );
    assert_eq!(
        CHARGES.load(Ordering::SeqCst),
        before,
        "the body did not run"
    );
    let other = charge(req("b", 100), 1).await.unwrap();
    assert_ne!(other.id, first.id, "another key runs");
}

#[redisx::test]
async fn a_duplicate_with_other_listed_arguments_is_a_mismatch(_rx: RedisX) {
    charge(req("m", 100), 1).await.unwrap();
    let before = CHARGES.load(Ordering::SeqCst);
    let e = charge(req("m", 999), 1).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::IdempotencyFingerprintMismatch, "{e:#}");
    assert_eq!(CHARGES.load(Ordering::SeqCst), before);
}

#[redisx::test]
async fn concurrent_duplicates_wait_and_replay(_rx: RedisX) {
    static SLOW: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(key = "slow:{n}", fingerprint = [])]
    async fn slow(n: u64) -> Result<u64, Error> {
        SLOW.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(n * 10)
    }
    let calls: Vec<_> = (0..20).map(|_| redisx::spawn(slow(7))).collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), 70);
    }
    assert_eq!(SLOW.load(Ordering::SeqCst), 1);
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum PayError {
    Declined(String),
    Redis(String),
}

impl From<Error> for PayError {
    fn from(e: Error) -> Self {
        Self::Redis(e.code().as_str().to_owned())
    }
}

static DECLINES: AtomicUsize = AtomicUsize::new(0);

#[idempotent(key = "pay:{id}", record_errors = true)]
async fn pay(id: u64) -> Result<u64, PayError> {
    DECLINES.fetch_add(1, Ordering::SeqCst);
    Err(PayError::Declined(format!("card {id}")))
}

static FAILURES: AtomicUsize = AtomicUsize::new(0);

#[idempotent(key = "flaky:{id}", lock_ttl = "300ms")]
async fn flaky(id: u64) -> Result<u64, Error> {
    FAILURES.fetch_add(1, Ordering::SeqCst);
    Err(Error::new(
        ErrorCode::Internal,
        format!("attempt for {id} failed"),
    ))
}

#[redisx::test]
async fn recorded_errors_replay_and_unrecorded_ones_refuse_then_retry(_rx: RedisX) {
    let e = pay(1).await.unwrap_err();
    assert_eq!(e, PayError::Declined("card 1".to_owned()));
    assert_eq!(
        pay(1).await.unwrap_err(),
        e,
        "the recorded error is replayed"
    );
    assert_eq!(DECLINES.load(Ordering::SeqCst), 1);

    assert_eq!(flaky(1).await.unwrap_err().code(), ErrorCode::Internal);
    let e = flaky(1).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::IdempotencyPreviousFailed, "{e:#}");
    assert_eq!(FAILURES.load(Ordering::SeqCst), 1);
    // The failed record lives for the lock ttl; then a retry runs.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(flaky(1).await.unwrap_err().code(), ErrorCode::Internal);
    assert_eq!(FAILURES.load(Ordering::SeqCst), 2);
}

struct Ledger {
    writes: AtomicUsize,
}

impl Ledger {
    #[idempotent(key = "ledger:{entry}", ttl = "1h", wait = "5s")]
    async fn post(&self, entry: String) -> Result<usize, Error> {
        Ok(self.writes.fetch_add(1, Ordering::SeqCst) + entry.len())
    }
}

#[redisx::test]
async fn methods_and_metrics(rx: RedisX) {
    let ledger = Ledger {
        writes: AtomicUsize::new(0),
    };
    assert_eq!(ledger.post("abc".to_owned()).await.unwrap(), 3);
    assert_eq!(ledger.post("abc".to_owned()).await.unwrap(), 3);
    assert_eq!(ledger.writes.load(Ordering::SeqCst), 1);
    let ttl: i64 = rx
        .client()
        .query(redisx::redis::cmd("PTTL").arg(rx.idempotency().full_key("ledger:abc")))
        .await
        .unwrap();
    assert!(
        ttl > 3_500_000 && ttl <= 3_600_000,
        "the attribute's ttl: {ttl} ms"
    );
    let text = rx.metrics_text();
    for line in [
        "redisx_idempotency_requests_total{status=\"new\"} 1",
        "redisx_idempotency_requests_total{status=\"replay\"} 1",
        "redisx_idempotency_duration_seconds_count 1",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

#[tokio::test]
async fn without_a_runtime_it_fails_closed() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[idempotent(key = "orphan:{n}")]
    async fn orphan(n: u64) -> Result<u64, Error> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(n)
    }
    let e = orphan(1).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ConfigNotInstalled, "{e:#}");
    assert_eq!(RUNS.load(Ordering::SeqCst), 0, "the body did not run");
}

static NESTED: AtomicUsize = AtomicUsize::new(0);

/// The handler's work, keyed like the layer's record.
#[idempotent(key = "{key}", runtime = rx, fingerprint = [])]
async fn record_order(rx: &RedisX, key: String) -> Result<String, Error> {
    let n = NESTED.fetch_add(1, Ordering::SeqCst) + 1;
    Ok(format!("{key} {n}"))
}

#[redisx::test]
async fn under_a_layer_holding_the_same_key_it_runs_once(rx: RedisX) {
    let handler_rx = rx.clone();
    let app = Router::new()
        .route(
            "/orders",
            post(move |Extension(k): Extension<IdempotencyKey>| {
                let rx = handler_rx.clone();
                async move {
                    record_order(&rx, k.key().to_owned())
                        .await
                        .unwrap_or_else(|e| e.code().as_str().to_owned())
                }
            }),
        )
        .layer(IdempotencyLayer::new().runtime(rx.clone()));
    let base = serve(app).await;
    let client = client();
    let post = || {
        client
            .post(format!("{base}/orders"))
            .header("idempotency-key", "order-1")
            .body("{}")
            .send()
    };
    let first = tokio::time::timeout(Duration::from_secs(10), post())
        .await
        .expect("no self-deadlock: the attribute runs under the layer's claim")
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.text().await.unwrap(), "order-1 1");
    let dup = tokio::time::timeout(Duration::from_secs(10), post())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        dup.headers()
            .get("idempotency-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(dup.text().await.unwrap(), "order-1 1");
    assert_eq!(NESTED.load(Ordering::SeqCst), 1, "the body ran once");
}
