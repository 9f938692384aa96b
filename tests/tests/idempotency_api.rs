//! The idempotency API against a real Redis: the first call runs and stores, a duplicate
//! replays the same bytes without running; the record as `get` reads it and its key and ttl
//! in Redis; fingerprint mismatches; `delete`; keys and durations refused before Redis; and
//! records that redisx cannot read (an undecodable result, a hash without a state or with an
//! unknown one) refused without running the body. Each test that needs a server runs on a
//! standalone server and on the cluster; the run/replay, claim/complete, mismatch and delete
//! tests run on the sentinel set too. Refusals before Redis that kill the server to prove it
//! stay on a standalone server.

use std::time::{Duration, SystemTime};

use redisx::idempotency::{Check, Idempotency, IdempotencyConfig, IdempotencyOptions, Status};
use redisx::testing::free_port;
use redisx::testing::{Deployment, Topology};
use redisx::{ConnectionConfig, Error, ErrorCode, RedisX};
use redisx_tests::idempotency::{Runs, assert_code, idem_runtime, pttl, requests, write_record};
use redisx_tests::{RedisServer, unique_prefix};
use serde::Serialize;
use serde::de::DeserializeOwned;

const FP: &str = "3f1a-fingerprint-of-the-request";
/// A body that returns at once.
const NO_DELAY: Duration = Duration::ZERO;
const CFG: ErrorCode = ErrorCode::ConfigInvalid;
const INVALID: ErrorCode = ErrorCode::IdempotencyRecordInvalid;

/// `key` run through `idem` with a body that counts itself in `runs` and returns `value`.
async fn call<T>(
    idem: &Idempotency,
    runs: &Runs,
    key: &str,
    fp: &str,
    opts: &IdempotencyOptions,
    value: T,
) -> Result<T, Error>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    idem.run(key, fp, opts, runs.body(NO_DELAY, value)).await
}

async fn start(url: &str, test: &str) -> RedisX {
    let cfg = IdempotencyConfig::default();
    idem_runtime(url, &unique_prefix(test), cfg).await
}

async fn the_first_call_runs_and_duplicates_replay_its_value_on(topology: Topology) {
    eprintln!("on {topology}");
    let deployment = Deployment::start(topology);
    let rx = start(&deployment.url(), "idem_first_call").await;
    let idem = rx.idempotency();
    let opts = IdempotencyOptions::new();
    let runs = Runs::new();
    let receipt = vec!["charged".to_owned(), "4200 EUR".to_owned()];

    let first: Vec<String> = call(idem, &runs, "payment:1", FP, &opts, receipt.clone())
        .await
        .unwrap();
    assert_eq!(first, receipt);
    for _ in 0..3 {
        let other = vec!["a second charge".to_owned()];
        let again: Vec<String> = call(idem, &runs, "payment:1", FP, &opts, other)
            .await
            .unwrap();
        assert_eq!(
            again, receipt,
            "the first call's value, not the duplicate's"
        );
    }
    assert_eq!(runs.count(), 1, "the body ran once");

    // The raw API replays the very bytes stored.
    let Check::Replay(replay) = idem.check_and_lock("payment:1", FP, &opts).await.unwrap() else {
        panic!("a completed key is replayed");
    };
    assert!(!replay.is_recorded_error());
    assert_eq!(replay.result(), serde_json::to_vec(&receipt).unwrap());

    let s = idem.stats();
    assert_eq!((s.new, s.replayed, s.takeovers), (1, 4, 0), "{s:?}");
    assert_eq!((requests(&rx, "new"), requests(&rx, "replay")), (1, 4));
    rx.shutdown().await;
}

async fn check_and_lock_claims_and_complete_stores_the_bytes_on(topology: Topology) {
    eprintln!("on {topology}");
    let deployment = Deployment::start(topology);
    let rx = start(&deployment.url(), "idem_claim").await;
    let idem = rx.idempotency();
    let opts = IdempotencyOptions::new().lock_ttl(Duration::from_secs(20));
    let before = SystemTime::now() - Duration::from_secs(60);

    let Check::New(claim) = idem.check_and_lock("refund:7", FP, &opts).await.unwrap() else {
        panic!("a fresh key is claimed");
    };
    assert_eq!(claim.key(), "refund:7");
    assert!(!claim.is_takeover() && !claim.is_lost());
    let rec = idem.get("refund:7").await.unwrap().expect("a record");
    assert_eq!(rec.status(), Status::Processing);
    assert_eq!(rec.fingerprint(), FP);
    assert_eq!(rec.owner(), claim.owner_token());
    let started = rec.started_at().expect("started_at");
    let lease = rec.lease_until().expect("lease_until");
    let leased = lease.duration_since(started).unwrap();
    assert!(
        leased <= Duration::from_secs(20) && leased > Duration::from_secs(15),
        "{leased:?}"
    );
    assert!(rec.completed_at().is_none() && rec.result().is_empty());
    // Another fingerprint is refused even while the first call runs.
    let out = idem.check_and_lock("refund:7", "other", &opts).await;
    assert_code(out, ErrorCode::IdempotencyFingerprintMismatch, "check");

    tokio::time::sleep(Duration::from_millis(50)).await;
    let body = b"{\"refunded\":true,\"bytes\":\"\xff\x00\"}";
    assert!(
        idem.complete(claim, body).await.unwrap(),
        "the claim was ours"
    );

    let rec = idem.get("refund:7").await.unwrap().expect("a record");
    assert_eq!(rec.status(), Status::Completed);
    assert_eq!((rec.fingerprint(), rec.result()), (FP, &body[..]));
    assert!(!rec.is_recorded_error());
    assert_eq!((rec.reason(), rec.takeovers()), ("", 0));
    assert_eq!(rec.started_at(), Some(started));
    let completed = rec.completed_at().expect("completed_at");
    assert!(
        completed >= started + Duration::from_millis(40),
        "{started:?} {completed:?}"
    );
    let after = SystemTime::now() + Duration::from_secs(60);
    assert!(
        before < started && completed < after,
        "server times near now"
    );

    let Check::Replay(replay) = idem.check_and_lock("refund:7", FP, &opts).await.unwrap() else {
        panic!("replayed");
    };
    assert_eq!(replay.into_result(), body.to_vec(), "the identical bytes");
    rx.shutdown().await;
}

async fn another_fingerprint_is_a_mismatch_and_does_not_run_on(topology: Topology) {
    eprintln!("on {topology}");
    let deployment = Deployment::start(topology);
    let rx = start(&deployment.url(), "idem_mismatch").await;
    let idem = rx.idempotency();
    let opts = IdempotencyOptions::new();
    let runs = Runs::new();
    let v: u32 = call(idem, &runs, "order:1", FP, &opts, 1).await.unwrap();
    assert_eq!(v, 1);
    let out = call::<u32>(idem, &runs, "order:1", "another-request", &opts, 2).await;
    assert_code(out, ErrorCode::IdempotencyFingerprintMismatch, "run");
    assert_eq!(runs.count(), 1);
    assert_eq!(idem.stats().mismatches, 1);
    assert_eq!(requests(&rx, "mismatch"), 1);
    // The record is the first call's still.
    let rec = idem.get("order:1").await.unwrap().unwrap();
    assert_eq!((rec.fingerprint(), rec.result()), (FP, &b"1"[..]));
    rx.shutdown().await;
}

async fn delete_lets_the_key_run_again_on(topology: Topology) {
    eprintln!("on {topology}");
    let deployment = Deployment::start(topology);
    let rx = start(&deployment.url(), "idem_delete").await;
    let idem = rx.idempotency();
    let opts = IdempotencyOptions::new();
    let runs = Runs::new();
    let v: u32 = call(idem, &runs, "job:1", FP, &opts, 1).await.unwrap();
    assert_eq!(v, 1);
    assert!(idem.delete("job:1").await.unwrap(), "there was a record");
    assert!(idem.get("job:1").await.unwrap().is_none());
    assert!(
        !idem.delete("job:1").await.unwrap(),
        "nothing left to delete"
    );
    let v: u32 = call(idem, &runs, "job:1", "new-fp", &opts, 2)
        .await
        .unwrap();
    assert_eq!((v, runs.count()), (2, 2), "ran again, any fingerprint");

    // Deleted under a running call: the claim is lost and its completion stores nothing.
    let Check::New(claim) = idem.check_and_lock("job:2", FP, &opts).await.unwrap() else {
        panic!("claimed");
    };
    assert!(idem.delete("job:2").await.unwrap());
    assert!(
        !idem.complete(claim, b"3").await.unwrap(),
        "the claim was lost"
    );
    assert!(idem.get("job:2").await.unwrap().is_none());
    rx.shutdown().await;
}

async fn the_record_lives_at_its_full_key_for_the_ttl(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("idem_full_key");
    let rx = idem_runtime(&deployment.url(), &prefix, IdempotencyConfig::default()).await;
    let mut raw = deployment.raw_connection().await;
    let idem = rx.idempotency();
    let full = idem.full_key("payment:abc");
    assert_eq!(full, format!("{prefix}idem:payment:abc"));

    let runs = Runs::new();
    let opts = IdempotencyOptions::new();
    let _: u8 = call(idem, &runs, "payment:abc", FP, &opts, 1)
        .await
        .unwrap();
    let day = 24 * 3600 * 1000;
    let left = pttl(&mut raw, &full).await;
    assert!((day - 10_000..=day).contains(&left), "24 h: {left} ms");

    // A per-call ttl.
    let ten_min = IdempotencyOptions::new().ttl(Duration::from_secs(600));
    let _: u8 = call(idem, &runs, "payment:def", FP, &ten_min, 1)
        .await
        .unwrap();
    let left = pttl(&mut raw, &idem.full_key("payment:def")).await;
    assert!((590_000..=600_000).contains(&left), "the call's: {left} ms");

    // While the call runs, the record expires after two leases (a dead owner's goes away).
    let Check::New(claim) = idem.check_and_lock("payment:ghi", FP, &opts).await.unwrap() else {
        panic!("claimed");
    };
    let left = pttl(&mut raw, &idem.full_key("payment:ghi")).await;
    assert!((50_000..=60_000).contains(&left), "two leases: {left} ms");
    idem.fail(claim, "test").await.unwrap();
    rx.shutdown().await;

    // Another idempotency prefix.
    let cfg = IdempotencyConfig::default().key_prefix("pay:");
    let rx = idem_runtime(&deployment.url(), &prefix, cfg).await;
    assert_eq!(rx.idempotency().full_key("k"), format!("{prefix}pay:k"));
    let _: u8 = call(rx.idempotency(), &runs, "k", FP, &opts, 1)
        .await
        .unwrap();
    assert!(pttl(&mut raw, &format!("{prefix}pay:k")).await > 0);
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    the_record_lives_at_its_full_key_for_the_ttl,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_and_zero_durations_are_refused_before_redis() {
    let mut server = RedisServer::start_owned();
    let rx = start(&server.url(), "idem_bad_keys").await;
    let idem = rx.idempotency();
    let opts = IdempotencyOptions::new();
    let runs = Runs::new();
    // The longest key is fine.
    let longest = "k".repeat(1024);
    let _: u8 = call(idem, &runs, &longest, FP, &opts, 1).await.unwrap();
    // With the server gone, any call that reached Redis would fail with a connection error.
    server.kill();
    let too_long = "k".repeat(1025);
    for key in [
        "",
        "a\nb",
        "tab\there",
        "del\u{7f}",
        "c1\u{85}",
        too_long.as_str(),
    ] {
        let what = key.escape_debug().to_string();
        let code = ErrorCode::IdempotencyKeyInvalid;
        assert_code(idem.check_and_lock(key, FP, &opts).await, code, &what);
        assert_code(idem.get(key).await, code, &what);
        assert_code(idem.delete(key).await, code, &what);
        let out = call::<u8>(idem, &runs, key, FP, &opts, 2);
        assert_code(out.await, code, &what);
    }
    // A zero duration per call.
    let o = IdempotencyOptions::new;
    for (name, opts) in [
        ("`wait`", o().wait(Duration::ZERO)),
        ("`lock_ttl`", o().lock_ttl(Duration::ZERO)),
        ("`ttl`", o().ttl(Duration::from_micros(500))),
    ] {
        let err = assert_code(idem.check_and_lock("k", FP, &opts).await, CFG, name);
        assert!(err.message().contains(name), "{name}: {err}");
        let out = call::<u8>(idem, &runs, "k", FP, &opts, 2);
        assert_code(out.await, CFG, name);
    }
    assert_eq!(runs.count(), 1, "no refused call ran its body");
    assert_eq!(idem.stats().errors, 0, "nothing reached Redis");
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_with_a_zero_duration_does_not_build() {
    // Nothing listens there: the config is refused before any connection.
    let url = format!("redis://127.0.0.1:{}", free_port());
    let d = IdempotencyConfig::default;
    for (name, cfg) in [
        ("`ttl`", d().ttl(Duration::ZERO)),
        ("`lock_ttl`", d().lock_ttl(Duration::ZERO)),
        ("`wait`", d().wait(Duration::ZERO)),
        ("`recheck`", d().recheck(Duration::ZERO)),
        ("`lock_ttl`", d().lock_ttl(Duration::from_micros(999))),
        ("`store_attempts`", d().store_attempts(0)),
        ("prefix", d().key_prefix("a\nb")),
    ] {
        let built = RedisX::builder()
            .client("default", ConnectionConfig::from_url(&url).unwrap())
            .idempotency(cfg)
            .build()
            .await;
        let err = assert_code(built, CFG, name);
        assert!(err.message().contains(name), "{name}: {err}");
    }
}

async fn an_undecodable_result_is_record_invalid_and_never_runs_again(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = start(&deployment.url(), "idem_undecodable").await;
    let mut raw = deployment.raw_connection().await;
    let idem = rx.idempotency();
    let full = idem.full_key("invoice:9");
    // A completed record whose value is a string, where the call now expects a number (its
    // type changed in a deploy).
    write_record(
        &mut raw,
        &full,
        &[
            ("state", "completed"),
            ("fingerprint", FP),
            ("outcome", "ok"),
            ("result", "\"INV-9\""),
        ],
    )
    .await;
    let runs = Runs::new();
    let opts = IdempotencyOptions::new();
    for _ in 0..2 {
        let out = call::<u64>(idem, &runs, "invoice:9", FP, &opts, 9);
        assert_code(out.await, INVALID, "a number");
    }
    assert_eq!(runs.count(), 0, "never a second execution");
    // The old type still reads it, and the record is untouched.
    let v: String = call(idem, &runs, "invoice:9", FP, &opts, String::new())
        .await
        .unwrap();
    assert_eq!((v.as_str(), runs.count()), ("INV-9", 0));
    let rec = idem.get("invoice:9").await.unwrap().unwrap();
    assert_eq!(
        (rec.status(), rec.result()),
        (Status::Completed, &b"\"INV-9\""[..])
    );
    rx.shutdown().await;
}

async fn a_hash_without_a_state_is_record_invalid(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = start(&deployment.url(), "idem_no_state").await;
    let mut raw = deployment.raw_connection().await;
    let idem = rx.idempotency();
    let full = idem.full_key("odd");
    write_record(&mut raw, &full, &[("fingerprint", FP), ("result", "1")]).await;
    let runs = Runs::new();
    let opts = IdempotencyOptions::new();
    let out = idem.check_and_lock("odd", FP, &opts).await;
    assert_code(out, INVALID, "check");
    let out = call::<u8>(idem, &runs, "odd", FP, &opts, 1);
    assert_code(out.await, INVALID, "run");
    assert_code(idem.get("odd").await, INVALID, "get");
    assert_eq!(runs.count(), 0);
    // Not claimed over: the hash is as it was.
    let state: Option<String> = redis::cmd("HGET")
        .arg(&full)
        .arg("state")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(state, None);
    rx.shutdown().await;
}

async fn a_record_with_an_unknown_state_is_record_invalid(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = start(&deployment.url(), "idem_unknown_state").await;
    let mut raw = deployment.raw_connection().await;
    let idem = rx.idempotency();
    let full = idem.full_key("odd");
    write_record(&mut raw, &full, &[("state", "paused"), ("fingerprint", FP)]).await;
    assert_code(idem.get("odd").await, INVALID, "get");
    let runs = Runs::new();
    let opts = IdempotencyOptions::new();
    let out = call::<u8>(idem, &runs, "odd", FP, &opts, 1);
    assert_code(out.await, INVALID, "refused, not taken over");
    assert_eq!(runs.count(), 0);
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    an_undecodable_result_is_record_invalid_and_never_runs_again,
    a_hash_without_a_state_is_record_invalid,
    a_record_with_an_unknown_state_is_record_invalid,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_call_runs_and_duplicates_replay_its_value() {
    for &topology in Topology::ALL {
        the_first_call_runs_and_duplicates_replay_its_value_on(topology).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_lock_claims_and_complete_stores_the_bytes() {
    for &topology in Topology::ALL {
        check_and_lock_claims_and_complete_stores_the_bytes_on(topology).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_fingerprint_is_a_mismatch_and_does_not_run() {
    for &topology in Topology::ALL {
        another_fingerprint_is_a_mismatch_and_does_not_run_on(topology).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_lets_the_key_run_again() {
    for &topology in Topology::ALL {
        delete_lets_the_key_run_again_on(topology).await;
    }
}
