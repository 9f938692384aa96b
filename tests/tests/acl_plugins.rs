//! Least privilege: each plugin's main paths run through an ACL user that holds only what the
//! README's "Least privilege (ACL)" section documents, read from the README itself: the
//! table's "every runtime" row plus the plugin's own row (one test per plugin), and the one
//! `ACL SETUSER` line (every plugin in one test). Everything works, the server's `ACL LOG`
//! stays empty (nothing denied, not even where redisx would quietly fall back: a listener
//! that cannot subscribe, a skipped version check) and every key written is under the app
//! prefix. The waits are woken, not polled: each waiter's own retry is far beyond its bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redisx::cache::EntryOptions;
use redisx::idempotency::{IdempotencyConfig, IdempotencyOptions};
use redisx::lock::{LockOptions, RetryStrategy};
use redisx::rate_limit::Limit;
use redisx::streams::{ConsumerOptions, Message};
use redisx::{CacheConfig, Error, ErrorCode, RedisX};
use redisx_tests::acl::{AclServer, DOC_PREFIX, documented_line, plugin_user};
use redisx_tests::eventually;
use redisx_tests::streams::{Job, fixed_backoff};

const POLL: Duration = Duration::from_millis(10);
/// A generous bound for an event (a wake-up, a message): never a latency.
const EVENT: Duration = Duration::from_secs(5);

/// The user the documented line makes.
const APP: &str = "myapp";

async fn runtime(server: &AclServer, user: &str) -> RedisX {
    server.runtime(user, DOC_PREFIX).await
}

/// Waits until the server has at least `n` pattern subscriptions (`PUBSUB NUMPAT`).
async fn wait_for_patterns(server: &AclServer, n: u64) {
    let subscribed = eventually(EVENT, POLL, || async {
        let mut admin = server.admin().await;
        let got: u64 = redis::cmd("PUBSUB")
            .arg("NUMPAT")
            .query_async(&mut admin)
            .await
            .expect("PUBSUB NUMPAT");
        got >= n
    })
    .await;
    assert!(subscribed, "no release listener subscribed its pattern");
}

/// get/set, L1 invalidation between two runtimes, `get_or_load`, tags, `touch`,
/// `invalidate_pattern`, `delete`, `clear`.
async fn cache_paths(server: &AclServer, user: &str) {
    // L1 entries live a minute: only an invalidation message evicts them within the bound.
    let cfg = CacheConfig::default().l1_ttl(Duration::from_secs(60));
    let build = || server.builder(user, DOC_PREFIX).cache(cfg.clone()).build();
    let (a, b) = (build().await.unwrap(), build().await.unwrap());
    let (ca, cb) = (a.cache(), b.cache());

    ca.set("user:1", &"v1".to_owned(), None).await.unwrap();
    let in_l1 = eventually(EVENT, POLL, || async {
        let before = cb.stats().l1_hits;
        cb.get::<String>("user:1").await.unwrap().as_deref() == Some("v1")
            && cb.stats().l1_hits > before
    })
    .await;
    assert!(in_l1, "B never answered from its L1");
    ca.set("user:1", &"v2".to_owned(), None).await.unwrap();
    let seen = eventually(EVENT, POLL, || async {
        cb.get::<String>("user:1").await.unwrap().as_deref() == Some("v2")
    })
    .await;
    assert!(seen, "B's L1 was not invalidated by A's write");
    assert!(ca.has("user:1").await);
    assert!(ca.ttl("user:1").await.is_some());

    let loads = AtomicUsize::new(0);
    for _ in 0..2 {
        let v: u64 = ca
            .get_or_load("score:1", None, || async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(42)
            })
            .await
            .unwrap();
        assert_eq!(v, 42);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1, "the second call was a hit");
    let many: Vec<Option<u64>> = cb.get_many(&["score:1", "score:none"]).await.unwrap();
    assert_eq!(many, [Some(42), None]);

    let tagged = EntryOptions::new().tags(["users"]);
    ca.set_with("user:2", &"t".to_owned(), &tagged)
        .await
        .unwrap();
    assert_eq!(ca.keys_by_tag("users").await.unwrap(), ["user:2"]);
    // Sliding expiry: the script's `PTTL` and the tag re-index.
    assert!(ca.touch("user:2", None).await.unwrap());
    let touched: Option<String> = cb.get_and_touch("user:2", None).await.unwrap();
    assert_eq!(touched.as_deref(), Some("t"));
    assert_eq!(
        cb.get::<String>("user:2").await.unwrap().as_deref(),
        Some("t")
    );
    assert_eq!(ca.invalidate_tags(&["users"]).await.unwrap(), 1);
    let gone = eventually(EVENT, POLL, || async {
        cb.get::<String>("user:2").await.unwrap().is_none()
    })
    .await;
    assert!(gone, "B still serves an entry of an invalidated tag");

    for n in 0..3 {
        ca.set(&format!("page:{n}"), &n, None).await.unwrap();
    }
    assert_eq!(ca.invalidate_pattern("page:*").await.unwrap(), 3);
    assert!(ca.get::<u64>("page:0").await.unwrap().is_none());
    assert!(ca.delete("score:1").await.unwrap());
    assert!(ca.clear().await.unwrap() >= 1, "clear deleted user:1");
    let cleared = eventually(EVENT, POLL, || async {
        cb.get::<String>("user:1").await.unwrap().is_none()
    })
    .await;
    assert!(cleared, "B still serves an entry after clear");
    ca.set("after:clear", &1u8, None).await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
}

/// A waiter whose only retry comes 30 s after its first attempt: getting the lock within
/// [`EVENT`] shows that the release woke it.
fn patient() -> LockOptions {
    LockOptions::new()
        .ttl(Duration::from_secs(10))
        .retry(RetryStrategy::Fixed(Duration::from_secs(30)))
        .jitter(false)
        .retries(1)
}

/// acquire, extend, busy, wait-and-wake across runtimes, force release, and a semaphore's
/// acquire, holders, extend, release and wake.
async fn lock_paths(server: &AclServer, user: &str) {
    let (a, b) = (runtime(server, user).await, runtime(server, user).await);
    let opts = LockOptions::new().ttl(Duration::from_secs(10));
    let held = a.locks().acquire("order:1", &opts).await.unwrap();
    assert!(b.locks().is_locked("order:1").await.unwrap());
    held.extend(Duration::from_secs(20)).await.unwrap();
    assert!(
        b.locks()
            .try_acquire("order:1", &opts)
            .await
            .unwrap()
            .is_none()
    );

    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.locks().acquire("order:1", &patient()).await })
    };
    wait_for_patterns(server, 1).await;
    let first = held.fencing_token();
    held.release().await.unwrap();
    let woken = tokio::time::timeout(EVENT, waiter)
        .await
        .expect("the release woke the waiter")
        .unwrap()
        .unwrap();
    assert!(woken.fencing_token() > first);
    assert!(a.locks().force_release("order:1").await.unwrap());
    assert!(!b.locks().is_locked("order:1").await.unwrap());
    drop(woken);

    let sem = a.locks().semaphore("pool", 2);
    let p1 = sem.acquire(&opts).await.unwrap();
    let p2 = sem.acquire(&opts).await.unwrap();
    assert_eq!(sem.holders().await.unwrap(), 2);
    assert!(sem.try_acquire(&opts).await.unwrap().is_none());
    p1.extend(Duration::from_secs(20)).await.unwrap();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.locks().semaphore("pool", 2).acquire(&patient()).await })
    };
    // Two waits (the lock's and the semaphore's) share b's one listener.
    wait_for_patterns(server, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    p1.release().await.unwrap();
    let p3 = tokio::time::timeout(EVENT, waiter)
        .await
        .expect("the release woke the semaphore's waiter")
        .unwrap()
        .unwrap();
    p3.release().await.unwrap();
    p2.release().await.unwrap();
    assert_eq!(sem.holders().await.unwrap(), 0);
    // A lock that stays, for the key check.
    let _kept = a.locks().acquire("kept", &opts).await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
}

/// check, peek, state, reset with every algorithm; several limits at once.
async fn rate_limit_paths(server: &AclServer, user: &str) {
    let rx = runtime(server, user).await;
    let rl = rx.rate_limiter();
    let minute = Duration::from_secs(60);
    let limits = [
        Limit::fixed_window(3, minute),
        Limit::sliding_window(3, minute),
        Limit::sliding_counter(3, minute),
        Limit::token_bucket(3, minute),
        Limit::gcra(3, minute),
    ];
    for limit in &limits {
        let name = limit.algorithm().as_str();
        let key = format!("login:{name}");
        for i in 0..3 {
            let d = rl.check(&key, limit).await.unwrap();
            assert!(d.allowed, "{name}: hit {i} admitted");
        }
        assert!(
            !rl.check(&key, limit).await.unwrap().allowed,
            "{name}: 4th denied"
        );
        assert!(
            !rl.peek(&key, limit, 1).await.unwrap().allowed,
            "{name}: peek"
        );
        assert_eq!(rl.state(&key, limit).await.unwrap().remaining, 0, "{name}");
        rl.reset(&key, limit).await.unwrap();
        assert_eq!(rl.state(&key, limit).await.unwrap().remaining, 3, "{name}");
        assert!(
            rl.check(&key, limit).await.unwrap().allowed,
            "{name}: after reset"
        );
    }
    let d = rl.check_all("api:all", &limits, 2).await.unwrap();
    assert!(d.allowed);
    assert!(!rl.check_all("api:all", &limits, 2).await.unwrap().allowed);
    rx.shutdown().await;
}

/// run, replay, a waiting duplicate woken by the completion, get, delete.
async fn idempotency_paths(server: &AclServer, user: &str) {
    // Duplicates re-read the record only every 30 s: within the bound, only the completion
    // message wakes them.
    let cfg = IdempotencyConfig::default().recheck(Duration::from_secs(30));
    let build = || {
        server
            .builder(user, DOC_PREFIX)
            .idempotency(cfg.clone())
            .build()
    };
    let (a, b) = (build().await.unwrap(), build().await.unwrap());
    let runs = Arc::new(AtomicUsize::new(0));
    let opts = IdempotencyOptions::new().wait(Duration::from_secs(20));
    let body = |runs: Arc<AtomicUsize>| async move {
        runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok::<_, Error>("receipt-1".to_owned())
    };
    let first = {
        let (a, runs) = (a.clone(), runs.clone());
        tokio::spawn(async move { a.idempotency().run("pay:1", "fp", &opts, body(runs)).await })
    };
    let started = eventually(EVENT, POLL, || async { runs.load(Ordering::SeqCst) == 1 }).await;
    assert!(started);
    let dup = tokio::time::timeout(
        EVENT,
        b.idempotency()
            .run("pay:1", "fp", &opts, body(runs.clone())),
    )
    .await
    .expect("the completion woke the waiting duplicate");
    assert_eq!(dup.unwrap(), "receipt-1");
    assert_eq!(first.await.unwrap().unwrap(), "receipt-1");
    let replay = a
        .idempotency()
        .run("pay:1", "fp", &opts, body(runs.clone()))
        .await;
    assert_eq!(replay.unwrap(), "receipt-1");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once");
    let other = a
        .idempotency()
        .run("pay:1", "other", &opts, body(runs.clone()))
        .await;
    let code = other.unwrap_err().code();
    assert_eq!(code, ErrorCode::IdempotencyFingerprintMismatch);
    assert!(a.idempotency().get("pay:1").await.unwrap().is_some());
    assert!(a.idempotency().delete("pay:1").await.unwrap());
    let again = a
        .idempotency()
        .run("pay:2", "fp", &opts, body(runs.clone()))
        .await;
    assert_eq!(again.unwrap(), "receipt-1");
    a.shutdown().await;
    b.shutdown().await;
}

/// publish (now and delayed), consume, ack, a retry, dead-lettering, the DLQ, the reads.
async fn stream_paths(server: &AclServer, user: &str) {
    let rx = server
        .builder(user, DOC_PREFIX)
        .streams(fixed_backoff(100).delayed_poll(Duration::from_millis(50)))
        .build()
        .await
        .unwrap();
    let streams = rx.streams();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let options = ConsumerOptions::new("billing")
        .consumer("c1")
        .block(Duration::from_millis(200))
        .start_id("0")
        .max_retries(1)
        .claim_idle(Duration::from_millis(500));
    let handle = {
        let seen = seen.clone();
        streams
            .consumer("jobs", options, move |m: Message<Job>| {
                let seen = seen.clone();
                async move {
                    let n = m.payload().n;
                    seen.lock().unwrap().push((n, m.attempt()));
                    match n {
                        // Always fails: dead-lettered after its retry.
                        1 => Err(Error::new(ErrorCode::Internal, "poison")),
                        // Fails once, then succeeds on its retry.
                        2 if m.attempt() == 1 => Err(Error::new(ErrorCode::Internal, "once")),
                        _ => Ok(()),
                    }
                }
            })
            .start()
            .await
            .unwrap()
    };
    for n in 0..3 {
        streams.publish("jobs", &Job { n }).await.unwrap();
    }
    streams
        .publish_in("jobs", &Job { n: 3 }, Duration::from_millis(200))
        .await
        .unwrap();
    let settled = eventually(Duration::from_secs(10), POLL, || async {
        streams.dlq_len("jobs").await.unwrap() == 1 && {
            let seen = seen.lock().unwrap();
            [0, 3].iter().all(|n| seen.iter().any(|s| s.0 == *n)) && seen.contains(&(2, 2))
        }
    })
    .await;
    assert!(settled, "deliveries: {:?}", seen.lock().unwrap());
    let drained = eventually(EVENT, POLL, || async {
        streams.pending("jobs", "billing").await.unwrap().count == 0
    })
    .await;
    assert!(drained, "every delivery was acknowledged");
    assert_eq!(handle.claim().await.unwrap(), 0);
    let dead = streams.dlq_list("jobs", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload::<Job>().unwrap(), Job { n: 1 });
    // The 4 published, and each retry's copy (retries go back through the delayed set).
    assert!(streams.len("jobs").await.unwrap() >= 4);
    assert_eq!(streams.delayed_len("jobs").await.unwrap(), 0);
    assert!(streams.info("jobs").await.unwrap().is_some());
    assert_eq!(streams.groups("jobs").await.unwrap().len(), 1);
    assert_eq!(streams.lag("jobs", "billing").await.unwrap(), Some(0));
    assert!(streams.create_group("jobs", "audit", "0").await.unwrap());
    assert!(
        streams
            .requeue("jobs", &dead[0].id)
            .await
            .unwrap()
            .is_some()
    );
    let again = eventually(Duration::from_secs(10), POLL, || async {
        streams.dlq_len("jobs").await.unwrap() == 1
            && seen.lock().unwrap().iter().filter(|s| s.0 == 1).count() >= 4
    })
    .await;
    assert!(again, "the requeued message was dead-lettered again");
    assert_eq!(streams.purge_dlq("jobs").await.unwrap(), 1);
    handle.stop().await;
    rx.shutdown().await;
}

/// Runs `paths` through a user holding only the table's rows for `part`, then checks that
/// nothing was denied and every key is under the prefix.
macro_rules! with_its_row {
    ($test:ident, $part:literal, $paths:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let server = AclServer::start(&[("app", plugin_user($part, DOC_PREFIX))]);
            $paths(&server, "app").await;
            server.assert_no_denials($part).await;
            server.assert_keys_under(DOC_PREFIX).await;
        }
    };
}

with_its_row!(
    the_cache_works_with_its_documented_rules,
    "cache",
    cache_paths
);
with_its_row!(
    the_locks_work_with_their_documented_rules,
    "locks",
    lock_paths
);
with_its_row!(
    rate_limits_work_with_their_documented_rules,
    "rate limit",
    rate_limit_paths
);
with_its_row!(
    idempotency_works_with_its_documented_rules,
    "idempotency",
    idempotency_paths
);
with_its_row!(
    the_streams_work_with_their_documented_rules,
    "streams",
    stream_paths
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_plugin_works_with_the_documented_acl_line() {
    let server = AclServer::start(&[(APP, documented_line(DOC_PREFIX))]);
    cache_paths(&server, APP).await;
    lock_paths(&server, APP).await;
    rate_limit_paths(&server, APP).await;
    idempotency_paths(&server, APP).await;
    stream_paths(&server, APP).await;
    server.assert_no_denials("every plugin").await;
    server.assert_keys_under(DOC_PREFIX).await;
}

/// The check itself: a user without the documented line's pattern for the lock listener is
/// denied its `PSUBSCRIBE` (so `ACL LOG` does see what redisx swallows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_rule_shows_in_the_acl_log() {
    let rules: Vec<String> = documented_line(DOC_PREFIX)
        .into_iter()
        .filter(|r| !r.ends_with(":released"))
        .collect();
    let server = AclServer::start(&[(APP, rules)]);
    let (a, b) = (runtime(&server, APP).await, runtime(&server, APP).await);
    let held = a
        .locks()
        .acquire("order:1", &LockOptions::new())
        .await
        .unwrap();
    let wait = LockOptions::new()
        .retry(RetryStrategy::Fixed(Duration::from_millis(50)))
        .wait(Duration::from_secs(5));
    let waiter = tokio::spawn(async move { b.locks().acquire("order:1", &wait).await });
    let denied = eventually(EVENT, POLL, || async {
        server
            .denials()
            .await
            .iter()
            .any(|d| d.contains("channel") && d.contains(":released"))
    })
    .await;
    assert!(denied, "ACL LOG: {:?}", server.denials().await);
    held.release().await.unwrap();
    // Without its wake-up, the waiter still gets the lock by its own retries.
    let got = waiter.await.unwrap().unwrap();
    got.release().await.unwrap();
}
