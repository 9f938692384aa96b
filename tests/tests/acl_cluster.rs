//! Least privilege on a Redis Cluster (3 masters, a replica each): a user made from the
//! README's documented `ACL SETUSER` line plus its "Cluster" bullet, created on every node,
//! runs each plugin's main paths from two runtimes, with a cache client that reads from the
//! replicas. Everything works, no node denied anything (`ACL LOG` of every node, masters and
//! replicas, stays empty) and every key is under the app prefix. The waits are woken, not
//! polled: each waiter's own retry is far beyond its bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redisx::cache::EntryOptions;
use redisx::idempotency::{IdempotencyConfig, IdempotencyOptions};
use redisx::lock::{LockOptions, RetryStrategy};
use redisx::rate_limit::Limit;
use redisx::streams::{ConsumerOptions, Message};
use redisx::testing::{Deployment, Topology, raw_connection};
use redisx::{CacheConfig, Error, ErrorCode, RedisX};
use redisx_tests::acl::{DOC_PREFIX, PASSWORD, bullet_rules, documented_line, scan_keys};
use redisx_tests::eventually;
use redisx_tests::streams::{Job, fixed_backoff};

const USER: &str = "myapp";
const POLL: Duration = Duration::from_millis(10);
/// A generous bound for an event (a wake-up, a message): never a latency.
const EVENT: Duration = Duration::from_secs(5);

/// Creates the documented user on every node at `urls` and empties their `ACL LOG`.
async fn create_user(urls: &[String]) {
    let mut rules = documented_line(DOC_PREFIX);
    rules.extend(bullet_rules("Cluster"));
    for url in urls {
        let mut conn = raw_connection(url).await;
        let () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(USER)
            .arg("reset")
            .arg("on")
            .arg(format!(">{PASSWORD}"))
            .arg(&rules)
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("ACL SETUSER on {url}: {e}"));
        let () = redis::cmd("ACL")
            .arg("LOG")
            .arg("RESET")
            .query_async(&mut conn)
            .await
            .expect("ACL LOG RESET");
    }
}

/// What the nodes at `urls` denied so far (`ACL LOG`), as text, one entry per item.
async fn denials(urls: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for url in urls {
        let mut conn = raw_connection(url).await;
        let entries: Vec<redis::Value> = redis::cmd("ACL")
            .arg("LOG")
            .query_async(&mut conn)
            .await
            .expect("ACL LOG");
        out.extend(entries.iter().map(|e| format!("{url}: {e:?}")));
    }
    out
}

/// Every key of the masters at `urls` (`SCAN`).
async fn keys(urls: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for url in urls {
        out.extend(scan_keys(&mut raw_connection(url).await).await);
    }
    out
}

/// The pattern subscriptions over the nodes (`PUBSUB NUMPAT` counts a node's own).
async fn patterns(urls: &[String]) -> u64 {
    let mut n = 0;
    for url in urls {
        let mut conn = raw_connection(url).await;
        let got: u64 = redis::cmd("PUBSUB")
            .arg("NUMPAT")
            .query_async(&mut conn)
            .await
            .expect("PUBSUB NUMPAT");
        n += got;
    }
    n
}

async fn cache_paths(a: &RedisX, b: &RedisX) {
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
    // Tagged entries over several slots, invalidated as one.
    let tagged = EntryOptions::new().tags(["users"]);
    for n in 0..6 {
        ca.set_with(&format!("member:{n}"), &n, &tagged)
            .await
            .unwrap();
    }
    assert_eq!(ca.keys_by_tag("users").await.unwrap().len(), 6);
    assert_eq!(ca.invalidate_tags(&["users"]).await.unwrap(), 6);
    for n in 0..6 {
        ca.set(&format!("page:{n}"), &n, None).await.unwrap();
    }
    assert_eq!(ca.invalidate_pattern("page:*").await.unwrap(), 6);
    assert!(ca.clear().await.unwrap() >= 1);
    let cleared = eventually(EVENT, POLL, || async {
        cb.get::<String>("user:1").await.unwrap().is_none()
    })
    .await;
    assert!(cleared, "B still serves an entry after clear");
    let loaded: u64 = ca
        .get_or_load("score:1", None, || async { Ok::<_, Error>(42) })
        .await
        .unwrap();
    assert_eq!(loaded, 42);
}

async fn lock_paths(a: &RedisX, b: &RedisX, urls: &[String]) {
    let opts = LockOptions::new().ttl(Duration::from_secs(10));
    let held = a.locks().acquire("order:1", &opts).await.unwrap();
    held.extend(Duration::from_secs(20)).await.unwrap();
    assert!(
        b.locks()
            .try_acquire("order:1", &opts)
            .await
            .unwrap()
            .is_none()
    );
    let patient = LockOptions::new()
        .ttl(Duration::from_secs(10))
        .retry(RetryStrategy::Fixed(Duration::from_secs(30)))
        .jitter(false)
        .retries(1);
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.locks().acquire("order:1", &patient).await })
    };
    let listening = eventually(EVENT, POLL, || async { patterns(urls).await >= 1 }).await;
    assert!(listening, "no release listener subscribed its pattern");
    let first = held.fencing_token();
    held.release().await.unwrap();
    let woken = tokio::time::timeout(EVENT, waiter)
        .await
        .expect("the release woke the waiter")
        .unwrap()
        .unwrap();
    assert!(woken.fencing_token() > first);
    woken.release().await.unwrap();
    let sem = a.locks().semaphore("pool", 1);
    let permit = sem.acquire(&opts).await.unwrap();
    assert_eq!(sem.holders().await.unwrap(), 1);
    permit.release().await.unwrap();
}

async fn rate_limit_paths(a: &RedisX) {
    let minute = Duration::from_secs(60);
    let limits = [
        Limit::fixed_window(2, minute),
        Limit::sliding_window(2, minute),
        Limit::sliding_counter(2, minute),
        Limit::token_bucket(2, minute),
        Limit::gcra(2, minute),
    ];
    let rl = a.rate_limiter();
    for limit in &limits {
        let key = format!("login:{}", limit.algorithm().as_str());
        assert!(rl.check(&key, limit).await.unwrap().allowed);
        assert!(rl.check(&key, limit).await.unwrap().allowed);
        assert!(!rl.check(&key, limit).await.unwrap().allowed);
        assert!(!rl.peek(&key, limit, 1).await.unwrap().allowed);
        rl.reset(&key, limit).await.unwrap();
        assert_eq!(rl.state(&key, limit).await.unwrap().remaining, 2);
    }
    assert!(rl.check_all("api:all", &limits, 1).await.unwrap().allowed);
}

async fn idempotency_paths(a: &RedisX, b: &RedisX) {
    let runs = Arc::new(AtomicUsize::new(0));
    let opts = IdempotencyOptions::new().wait(Duration::from_secs(20));
    let body = |runs: Arc<AtomicUsize>| async move {
        runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok::<_, Error>("receipt".to_owned())
    };
    let first = {
        let (a, runs) = (a.clone(), runs.clone());
        tokio::spawn(async move { a.idempotency().run("pay:1", "fp", &opts, body(runs)).await })
    };
    assert!(eventually(EVENT, POLL, || async { runs.load(Ordering::SeqCst) == 1 }).await);
    let dup = tokio::time::timeout(
        EVENT,
        b.idempotency()
            .run("pay:1", "fp", &opts, body(runs.clone())),
    )
    .await
    .expect("the completion woke the waiting duplicate");
    assert_eq!(dup.unwrap(), "receipt");
    assert_eq!(first.await.unwrap().unwrap(), "receipt");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once");
    assert!(a.idempotency().get("pay:1").await.unwrap().is_some());
}

async fn stream_paths(a: &RedisX) {
    let streams = a.streams();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let options = ConsumerOptions::new("billing")
        .consumer("c1")
        .block(Duration::from_millis(200))
        .start_id("0")
        .max_retries(1);
    let handle = {
        let seen = seen.clone();
        streams
            .consumer("jobs", options, move |m: Message<Job>| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(m.payload().n);
                    if m.payload().n == 1 {
                        Err(Error::new(ErrorCode::Internal, "poison"))
                    } else {
                        Ok(())
                    }
                }
            })
            .start()
            .await
            .unwrap()
    };
    for n in 0..2 {
        streams.publish("jobs", &Job { n }).await.unwrap();
    }
    streams
        .publish_in("jobs", &Job { n: 2 }, Duration::from_millis(200))
        .await
        .unwrap();
    let settled = eventually(Duration::from_secs(10), POLL, || async {
        streams.dlq_len("jobs").await.unwrap() == 1 && {
            let seen = seen.lock().unwrap();
            seen.contains(&0) && seen.contains(&2)
        }
    })
    .await;
    assert!(settled, "deliveries: {:?}", seen.lock().unwrap());
    assert_eq!(streams.dlq_list("jobs", 10).await.unwrap().len(), 1);
    assert_eq!(streams.purge_dlq("jobs").await.unwrap(), 1);
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_plugin_works_on_the_cluster_with_the_documented_rules() {
    let deployment = Deployment::start(Topology::Cluster);
    let urls = deployment.server_urls();
    create_user(&urls).await;
    let conn = deployment
        .connection_config()
        .username(USER)
        .password(PASSWORD);
    let reads = conn.clone().read_from_replicas(true);
    let build = || {
        RedisX::builder()
            .client("default", conn.clone())
            .client("cache-reads", reads.clone())
            .key_prefix(DOC_PREFIX)
            .cache(
                CacheConfig::default()
                    .client("cache-reads")
                    .l1_ttl(Duration::from_secs(60)),
            )
            .idempotency(IdempotencyConfig::default().recheck(Duration::from_secs(30)))
            .streams(fixed_backoff(100).delayed_poll(Duration::from_millis(50)))
            .build()
    };
    let (a, b) = (build().await.unwrap(), build().await.unwrap());
    cache_paths(&a, &b).await;
    lock_paths(&a, &b, &urls).await;
    rate_limit_paths(&a).await;
    idempotency_paths(&a, &b).await;
    stream_paths(&a).await;
    a.shutdown().await;
    b.shutdown().await;
    let denied = denials(&urls).await;
    assert!(
        denied.is_empty(),
        "the nodes denied:\n{}",
        denied.join("\n")
    );
    let written = keys(&deployment.master_urls()).await;
    assert!(!written.is_empty());
    let outside: Vec<&String> = written
        .iter()
        .filter(|k| !k.starts_with(DOC_PREFIX))
        .collect();
    assert!(outside.is_empty(), "keys outside the prefix: {outside:?}");
}
