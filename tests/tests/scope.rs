//! `rx.scope(..)`: the attributes use the runtime of their task's scope, before the installed
//! one, also in work redisx spawns for the caller (stale-while-revalidate refreshes) and in
//! tasks started with `redisx::spawn`. Nothing is installed in this binary.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redisx::{CacheConfig, ConnectionConfig, RedisX, cached};
use redisx_tests::{RedisServer, eventually, raw_connection, unique_prefix};

async fn build(server: &RedisServer, test: &str) -> RedisX {
    RedisX::builder()
        .client(
            "default",
            ConnectionConfig::from_url(&server.url()).unwrap(),
        )
        .key_prefix(unique_prefix(test))
        .cache(CacheConfig::default())
        .build()
        .await
        .unwrap()
}

/// The keys under `prefix`, sorted.
async fn keys_under(server: &RedisServer, prefix: &str) -> Vec<String> {
    let mut conn = raw_connection(&server.url()).await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    keys
}

static LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "user:{id}", ttl = "1m")]
async fn user(id: u64) -> String {
    LOADS.fetch_add(1, Ordering::SeqCst);
    format!("user-{id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_in_one_process_each_serve_their_own_scope() {
    let server = RedisServer::start();
    let a = build(&server, "scope_a").await;
    let b = build(&server, "scope_b").await;
    assert!(RedisX::current().is_none(), "nothing is installed here");

    // Both scopes run at once, on a multi-thread runtime, across awaits.
    let (ra, rb) = tokio::join!(
        a.scope(async {
            let first = user(1).await;
            tokio::task::yield_now().await;
            (
                first,
                user(1).await,
                RedisX::current().unwrap().key_prefix().to_owned(),
            )
        }),
        b.scope(async {
            let first = user(2).await;
            tokio::task::yield_now().await;
            (
                first,
                user(2).await,
                RedisX::current().unwrap().key_prefix().to_owned(),
            )
        }),
    );
    assert_eq!((ra.0.as_str(), ra.1.as_str()), ("user-1", "user-1"));
    assert_eq!((rb.0.as_str(), rb.1.as_str()), ("user-2", "user-2"));
    assert_eq!(ra.2, a.key_prefix());
    assert_eq!(rb.2, b.key_prefix());
    assert_eq!(
        LOADS.load(Ordering::SeqCst),
        2,
        "the second call of each scope hits"
    );
    assert_eq!(a.cache().stats().l1_hits, 1);
    assert_eq!(b.cache().stats().l1_hits, 1);

    let in_a = keys_under(&server, a.key_prefix()).await;
    let in_b = keys_under(&server, b.key_prefix()).await;
    assert!(in_a.iter().any(|k| k.ends_with("user:1")), "{in_a:?}");
    assert!(!in_a.iter().any(|k| k.ends_with("user:2")), "{in_a:?}");
    assert!(in_b.iter().any(|k| k.ends_with("user:2")), "{in_b:?}");
    assert!(!in_b.iter().any(|k| k.ends_with("user:1")), "{in_b:?}");

    // Outside any scope (and with nothing installed) the function runs uncached.
    let before = LOADS.load(Ordering::SeqCst);
    assert_eq!(user(1).await, "user-1");
    assert_eq!(LOADS.load(Ordering::SeqCst), before + 1);

    // Nested scopes: the innermost wins, and the outer one is back afterwards.
    a.scope(async {
        b.scope(async { assert_eq!(RedisX::current().unwrap().key_prefix(), b.key_prefix()) })
            .await;
        assert_eq!(RedisX::current().unwrap().key_prefix(), a.key_prefix());
    })
    .await;

    // The closure form, for synchronous code.
    let prefix = b.in_scope(|| RedisX::current().unwrap().key_prefix().to_owned());
    assert_eq!(prefix, b.key_prefix());
    assert!(RedisX::current().is_none());
}

#[tokio::test]
async fn redisx_spawn_carries_the_scope_and_tokio_spawn_does_not() {
    let server = RedisServer::start();
    let a = build(&server, "scope_spawn").await;
    let (carried, plain) = a
        .scope(async {
            let carried =
                redisx::spawn(async { RedisX::current().map(|rx| rx.key_prefix().to_owned()) });
            let plain =
                tokio::spawn(async { RedisX::current().map(|rx| rx.key_prefix().to_owned()) });
            (carried.await.unwrap(), plain.await.unwrap())
        })
        .await;
    assert_eq!(carried.as_deref(), Some(a.key_prefix()));
    assert_eq!(plain, None);
    // Outside a scope, `redisx::spawn` is `tokio::spawn`.
    let outside = redisx::spawn(async { RedisX::current().is_none() })
        .await
        .unwrap();
    assert!(outside);
}

static INNER_LOADS: AtomicUsize = AtomicUsize::new(0);
static OUTER_LOADS: AtomicUsize = AtomicUsize::new(0);

/// Cached in the caller's scope: its key names the outer load that called it.
#[cached(key = "inner:{n}", ttl = "1m")]
async fn inner(n: usize) -> usize {
    INNER_LOADS.fetch_add(1, Ordering::SeqCst);
    n
}

/// Goes stale after 300 ms and is then refreshed in the background (SWR); each load calls
/// `inner` with a new number.
#[cached(key = "outer", ttl = "300ms", swr = "30s")]
async fn outer() -> usize {
    let n = OUTER_LOADS.fetch_add(1, Ordering::SeqCst);
    inner(n).await
}

#[tokio::test]
async fn an_swr_refresh_runs_in_the_scope_of_the_call_that_started_it() {
    let server = RedisServer::start();
    let a = build(&server, "scope_swr").await;
    assert_eq!(a.scope(outer()).await, 0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Stale: served at once, refreshed in the background, whose load calls `inner(1)`.
    assert_eq!(a.scope(outer()).await, 0);
    let refreshed = eventually(
        Duration::from_secs(2),
        Duration::from_millis(20),
        || async {
            OUTER_LOADS.load(Ordering::SeqCst) == 2 && INNER_LOADS.load(Ordering::SeqCst) == 2
        },
    )
    .await;
    assert!(refreshed, "the background refresh ran");
    let keys = eventually(
        Duration::from_secs(2),
        Duration::from_millis(20),
        || async {
            keys_under(&server, a.key_prefix())
                .await
                .iter()
                .any(|k| k.ends_with("inner:1"))
        },
    )
    .await;
    assert!(
        keys,
        "the refresh's own cached call stored under the scope's prefix: {:?}",
        keys_under(&server, a.key_prefix()).await
    );
}

static WARM_LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "warm:{n}", ttl = "1m")]
async fn warm(n: u64) -> u64 {
    WARM_LOADS.fetch_add(1, Ordering::SeqCst);
    n
}

#[tokio::test]
async fn warmup_loaders_run_in_the_scope_of_the_caller() {
    let server = RedisServer::start();
    let a = build(&server, "scope_warmup").await;
    let entries = (0..4u64).map(|n| {
        // Each loader calls a cached function, which must find `a` through the scope.
        (format!("outer:{n}"), move || async move {
            Ok::<_, redisx::Error>(warm(n).await)
        })
    });
    let report = a
        .scope(
            a.cache()
                .warmup(entries, &redisx::cache::EntryOptions::new(), 2),
        )
        .await;
    assert_eq!(report.warmed, 4);
    let keys = keys_under(&server, a.key_prefix()).await;
    for n in 0..4 {
        assert!(
            keys.contains(&a.cache().full_key(&format!("warm:{n}"))),
            "warm:{n} under the scope's prefix: {keys:?}"
        );
    }
}
