//! `#[idempotent]` end to end against real Redis: the body runs once per key and duplicates
//! get its value, the fingerprint covers the listed arguments only, errors mark the key failed
//! or are replayed with `record_errors`, methods, the metrics, failing closed without a
//! runtime, and the attribute under an `IdempotencyLayer` holding the same key (run once, no
//! self-deadlock).
//!
//! Every test with Redis runs on a standalone server and on the cluster, with what
//! `#[redisx::test]` gives a test (`scoped`: a runtime of its own in scope). The bodies count
//! their runs per test runtime (`PerRuntime`), as a test's standalone and cluster runs go on
//! at the same time.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::routing::post;
use axum::{Extension, Router};
use redisx::http::{IdempotencyKey, IdempotencyLayer};
use redisx::testing::Topology;
use redisx::{Error, ErrorCode, RedisX, idempotent};
use redisx_tests::http::{client, serve};
use redisx_tests::scoped;
use serde::{Deserialize, Serialize};

/// Runs of an idempotent body, counted per test runtime (by its key prefix).
struct PerRuntime(Mutex<BTreeMap<String, usize>>);

impl PerRuntime {
    const fn new() -> Self {
        Self(Mutex::new(BTreeMap::new()))
    }

    /// Counts a run for `rx`; returns the count before it.
    fn add(&self, rx: &RedisX) -> usize {
        let mut counts = self.0.lock().unwrap();
        let n = counts.entry(rx.key_prefix().to_owned()).or_default();
        *n += 1;
        *n - 1
    }

    /// Counts a run for the runtime in scope (the test's); returns the count before it.
    fn add_here(&self) -> usize {
        self.add(&RedisX::current().expect("the test's runtime in scope"))
    }

    /// The runs counted for `rx`.
    fn load(&self, rx: &RedisX) -> usize {
        let counts = self.0.lock().unwrap();
        counts.get(rx.key_prefix()).copied().unwrap_or(0)
    }
}

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

static CHARGES: PerRuntime = PerRuntime::new();

/// `attempt` is left out of the fingerprint: a retry with another attempt number is the same
/// request.
#[idempotent(key = "charge:{req.key}", fingerprint = [req])]
async fn charge(req: Charge, attempt: u32) -> Result<Receipt, Error> {
    let _ = attempt;
    let id = CHARGES.add_here() as u64;
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

async fn the_body_runs_once_per_key_and_duplicates_get_its_value(topology: Topology) {
    scoped(topology, "idem_attr_once", |rx| async move {
        let first = charge(req("a", 100), 1).await.unwrap();
        let before = CHARGES.load(&rx);
        let again = charge(req("a", 100), 2).await.unwrap();
        assert_eq!(
            again, first,
            "the recorded value, whatever the attempt number"
        );
        assert_eq!(CHARGES.load(&rx), before, "the body did not run");
        let other = charge(req("b", 100), 1).await.unwrap();
        assert_ne!(other.id, first.id, "another key runs");
    })
    .await;
}

async fn a_duplicate_with_other_listed_arguments_is_a_mismatch(topology: Topology) {
    scoped(topology, "idem_attr_mismatch", |rx| async move {
        charge(req("m", 100), 1).await.unwrap();
        let before = CHARGES.load(&rx);
        let e = charge(req("m", 999), 1).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::IdempotencyFingerprintMismatch, "{e:#}");
        assert_eq!(CHARGES.load(&rx), before);
    })
    .await;
}

async fn concurrent_duplicates_wait_and_replay(topology: Topology) {
    static SLOW: PerRuntime = PerRuntime::new();
    #[idempotent(key = "slow:{n}", fingerprint = [])]
    async fn slow(n: u64) -> Result<u64, Error> {
        SLOW.add_here();
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(n * 10)
    }
    scoped(topology, "idem_attr_concurrent", |rx| async move {
        let calls: Vec<_> = (0..20).map(|_| redisx::spawn(slow(7))).collect();
        for c in calls {
            assert_eq!(c.await.unwrap().unwrap(), 70);
        }
        assert_eq!(SLOW.load(&rx), 1);
    })
    .await;
}

redisx_tests::on_topologies!(
    the_body_runs_once_per_key_and_duplicates_get_its_value,
    a_duplicate_with_other_listed_arguments_is_a_mismatch,
    concurrent_duplicates_wait_and_replay,
);

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

static DECLINES: PerRuntime = PerRuntime::new();

#[idempotent(key = "pay:{id}", record_errors = true)]
async fn pay(id: u64) -> Result<u64, PayError> {
    DECLINES.add_here();
    Err(PayError::Declined(format!("card {id}")))
}

static FAILURES: PerRuntime = PerRuntime::new();

#[idempotent(key = "flaky:{id}", lock_ttl = "300ms")]
async fn flaky(id: u64) -> Result<u64, Error> {
    FAILURES.add_here();
    Err(Error::new(
        ErrorCode::Internal,
        format!("attempt for {id} failed"),
    ))
}

async fn recorded_errors_replay_and_unrecorded_ones_refuse_then_retry(topology: Topology) {
    scoped(topology, "idem_attr_errors", |rx| async move {
        let e = pay(1).await.unwrap_err();
        assert_eq!(e, PayError::Declined("card 1".to_owned()));
        assert_eq!(
            pay(1).await.unwrap_err(),
            e,
            "the recorded error is replayed"
        );
        assert_eq!(DECLINES.load(&rx), 1);

        assert_eq!(flaky(1).await.unwrap_err().code(), ErrorCode::Internal);
        let e = flaky(1).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::IdempotencyPreviousFailed, "{e:#}");
        assert_eq!(FAILURES.load(&rx), 1);
        // The failed record lives for the lock ttl; then a retry runs.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(flaky(1).await.unwrap_err().code(), ErrorCode::Internal);
        assert_eq!(FAILURES.load(&rx), 2);
    })
    .await;
}

redisx_tests::on_topologies!(recorded_errors_replay_and_unrecorded_ones_refuse_then_retry);

struct Ledger {
    writes: AtomicUsize,
}

impl Ledger {
    #[idempotent(key = "ledger:{entry}", ttl = "1h", wait = "5s")]
    async fn post(&self, entry: String) -> Result<usize, Error> {
        Ok(self.writes.fetch_add(1, Ordering::SeqCst) + entry.len())
    }
}

async fn methods_and_metrics(topology: Topology) {
    scoped(topology, "idem_attr_methods", |rx| async move {
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
    })
    .await;
}

redisx_tests::on_topologies!(methods_and_metrics);

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

static NESTED: PerRuntime = PerRuntime::new();

/// The handler's work, keyed like the layer's record.
#[idempotent(key = "{key}", runtime = rx, fingerprint = [])]
async fn record_order(rx: &RedisX, key: String) -> Result<String, Error> {
    let n = NESTED.add(rx) + 1;
    Ok(format!("{key} {n}"))
}

async fn under_a_layer_holding_the_same_key_it_runs_once(topology: Topology) {
    scoped(topology, "idem_attr_layer", |rx| async move {
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
        assert_eq!(NESTED.load(&rx), 1, "the body ran once");
    })
    .await;
}

redisx_tests::on_topologies!(under_a_layer_holding_the_same_key_it_runs_once);
