//! The payment recipe (`examples/payment.rs`, its `app` and `Ledger` as they are) through a
//! real axum server on a loopback socket, a real HTTP client and a Redis server of its own:
//! a retry with the same `Idempotency-Key` replays and charges once; a duplicate sent while
//! the first still runs waits and replays; the endpoint's fencing token reaches the ledger,
//! which refuses a holder whose lock expired and was taken over; a charge the ledger refuses
//! is not recorded.

// The example's `main` (and what only it uses) is not called here, and its `pub` items are
// public to the example's readers, not from this crate.
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/payment.rs"]
mod payment;

use std::time::Duration;

use payment::{ChargeRequest, Ledger, Receipt, StaleWriter, app};
use redisx::idempotency::Status;
use redisx::lock::LockOptions;
use redisx::{CacheConfig, RedisX};
use redisx_tests::http::{client, serve};
use redisx_tests::idempotency_http::{header, post_key, problem, replayed};
use redisx_tests::{RedisServer, eventually, unique_prefix};

/// A runtime on `server` under a prefix of the test's own.
async fn runtime(server: &RedisServer, test: &str) -> RedisX {
    redisx_tests::runtime(&server.url(), &unique_prefix(test), CacheConfig::default()).await
}

/// The JSON body of a charge.
fn body(account: &str, amount: u64) -> String {
    serde_json::to_string(&ChargeRequest {
        account: account.to_owned(),
        amount,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_key_replays_and_charges_once() {
    let server = RedisServer::start();
    let rx = runtime(&server, "recipe_payment_retry").await;
    let ledger = Ledger::new();
    let url = format!("{}/charges", serve(app(rx.clone(), ledger.clone())).await);
    let c = client();

    let first = post_key(&c, &url, "order-1", &body("acct-1", 1999)).await;
    assert_eq!(first.status(), 201);
    assert!(!replayed(&first));
    assert_eq!(
        header(&first, "content-type").as_deref(),
        Some("application/json")
    );
    let first_body = first.text().await.unwrap();
    let receipt: Receipt = serde_json::from_str(&first_body).unwrap();
    assert_eq!((receipt.account.as_str(), receipt.amount), ("acct-1", 1999));
    assert_eq!(receipt.entry, 1);

    let retry = post_key(&c, &url, "order-1", &body("acct-1", 1999)).await;
    assert_eq!(retry.status(), 201);
    assert!(replayed(&retry), "the retry is a replay");
    assert_eq!(
        header(&retry, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(retry.text().await.unwrap(), first_body, "the same receipt");
    assert_eq!(ledger.charges("acct-1"), [1999], "charged once");
    let record = rx.idempotency().get("charge:order-1").await.unwrap();
    assert_eq!(record.unwrap().status(), Status::Completed);

    // The same key with another charge is refused; another key is another charge.
    let reused = post_key(&c, &url, "order-1", &body("acct-1", 5)).await;
    assert_eq!(reused.status(), 422);
    assert_eq!(
        problem(reused).await["code"],
        "IDEMPOTENCY_FINGERPRINT_MISMATCH"
    );
    let missing = c.post(&url).body(body("acct-1", 5)).send().await.unwrap();
    assert_eq!(missing.status(), 400, "the key is required");
    let other = post_key(&c, &url, "order-2", &body("acct-1", 1999)).await;
    assert_eq!(other.status(), 201);
    assert!(!replayed(&other));
    let other: Receipt = serde_json::from_str(&other.text().await.unwrap()).unwrap();
    assert_eq!(other.entry, 2);
    assert!(
        other.fence > receipt.fence,
        "each charge took the lock anew"
    );
    assert_eq!(ledger.charges("acct-1"), [1999, 1999]);
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_duplicate_waits_for_the_first_and_replays() {
    let server = RedisServer::start();
    let rx = runtime(&server, "recipe_payment_concurrent").await;
    // Each ledger write takes 1 s: the duplicate arrives while the first runs.
    let ledger = Ledger::with_latency(Duration::from_secs(1));
    let url = format!("{}/charges", serve(app(rx.clone(), ledger.clone())).await);
    let c = client();

    let (c1, url1) = (c.clone(), url.clone());
    let first = tokio::spawn(async move {
        let res = post_key(&c1, &url1, "order-9", &body("acct-9", 700)).await;
        (
            res.status().as_u16(),
            replayed(&res),
            res.text().await.unwrap(),
        )
    });
    let idem = rx.idempotency().clone();
    let running = eventually(Duration::from_secs(5), Duration::from_millis(10), || {
        let idem = idem.clone();
        async move {
            let record = idem.get("charge:order-9").await.unwrap();
            record.is_some_and(|r| r.status() == Status::Processing)
        }
    })
    .await;
    assert!(running, "the first charge claims its key");

    let dup = post_key(&c, &url, "order-9", &body("acct-9", 700)).await;
    let dup = (
        dup.status().as_u16(),
        replayed(&dup),
        dup.text().await.unwrap(),
    );
    let first = first.await.unwrap();
    assert_eq!((first.0, first.1), (201, false), "{}", first.2);
    assert_eq!(
        (dup.0, dup.1),
        (201, true),
        "the duplicate replays: {}",
        dup.2
    );
    assert_eq!(dup.2, first.2, "the first's receipt, waited for");
    assert_eq!(ledger.charges("acct-9"), [700], "charged once");
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_refuses_a_holder_whose_lock_was_taken_over() {
    let server = RedisServer::start();
    let rx = runtime(&server, "recipe_payment_stale").await;
    let ledger = Ledger::new();
    let url = format!("{}/charges", serve(app(rx.clone(), ledger.clone())).await);
    let c = client();

    // A holder of the account's lock stops renewing (as if paused) and outlives its ttl.
    let old = rx
        .locks()
        .acquire(
            "account:acct-3",
            &LockOptions::new()
                .ttl(Duration::from_millis(100))
                .auto_renew(false),
        )
        .await
        .unwrap();
    let locks = rx.locks().clone();
    let expired = eventually(Duration::from_secs(3), Duration::from_millis(10), || {
        let locks = locks.clone();
        async move { !locks.is_locked("account:acct-3").await.unwrap() }
    })
    .await;
    assert!(expired, "the unrenewed lock expires");

    // The endpoint takes the lock over and writes with its (larger) token.
    let res = post_key(&c, &url, "order-3", &body("acct-3", 250)).await;
    assert_eq!(res.status(), 201);
    let receipt: Receipt = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert!(receipt.fence > old.fencing_token());

    // The old holder wakes up and writes: refused, nothing charged.
    let refused = ledger
        .post("acct-3", 250, old.fencing_token())
        .await
        .unwrap_err();
    assert_eq!(
        refused,
        StaleWriter {
            fence: old.fencing_token(),
            last: receipt.fence,
        }
    );
    assert_eq!(ledger.charges("acct-3"), [250]);
    drop(old);
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_the_ledger_refuses_is_not_recorded() {
    let server = RedisServer::start();
    let rx = runtime(&server, "recipe_payment_refused").await;
    let ledger = Ledger::new();
    // A writer with a token no lock can beat got there first.
    ledger.post("acct-5", 1, u64::MAX).await.unwrap();
    let url = format!("{}/charges", serve(app(rx.clone(), ledger.clone())).await);
    let c = client();

    let res = post_key(&c, &url, "order-5", &body("acct-5", 40)).await;
    assert_eq!(res.status(), 503);
    assert!(res.text().await.unwrap().starts_with("stale writer"));
    assert_eq!(ledger.charges("acct-5"), [1], "nothing charged");
    let record = rx.idempotency().get("charge:order-5").await.unwrap();
    assert_eq!(record.unwrap().status(), Status::Failed);
    // A retry within the lock ttl is told the attempt failed, not replayed a 503.
    let retry = post_key(&c, &url, "order-5", &body("acct-5", 40)).await;
    assert_eq!(retry.status(), 409);
    assert_eq!(problem(retry).await["code"], "IDEMPOTENCY_PREVIOUS_FAILED");
    assert_eq!(ledger.charges("acct-5"), [1]);
    rx.shutdown().await;
}
