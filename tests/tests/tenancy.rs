//! Context keys (`redisx::context`, `vary_by`) against real Redis, on a standalone server and
//! on the cluster: each tenant gets its own cached entries (in L1 and Redis), its own lock,
//! quota and idempotency record for the same rendered key; an eviction by tag reaches only the
//! current tenant's entries; a call without the context it varies by does not touch another
//! tenant's data (uncached, or `CFG_CONTEXT_INVALID`); a forged key naming a context is
//! refused; `redisx::spawn` carries the context.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redisx::context::Context;
use redisx::testing::Topology;
use redisx::{
    Error, ErrorCode, RedisX, cache_evict, cached, idempotent, rate_limit, redis, with_lock,
};
use redisx_tests::scoped;

/// A fresh number per load: equal results mean a cached value, different ones a new load.
static LOADS: AtomicU64 = AtomicU64::new(0);

fn tenant(name: &str) -> Context {
    Context::new().with("tenant", name).unwrap()
}

#[cached(key = "user:{id}", ttl = "1m", tags = ["users"], vary_by = ["tenant"])]
async fn user(id: u64) -> (String, u64) {
    let who = Context::current()
        .and_then(|c| c.get("tenant").map(str::to_owned))
        .unwrap_or_default();
    (format!("{who}:{id}"), LOADS.fetch_add(1, Ordering::SeqCst))
}

#[cache_evict(tags = ["users"], vary_by = ["tenant"])]
async fn evict_users() {}

#[cached(key = "{raw}", ttl = "1m")]
async fn by_raw_key(raw: String) -> (String, u64) {
    (raw, LOADS.fetch_add(1, Ordering::SeqCst))
}

async fn exists(rx: &RedisX, key: &str) -> bool {
    rx.client()
        .query(redis::cmd("EXISTS").arg(rx.cache().full_key(key)))
        .await
        .unwrap()
}

async fn cached_entries_are_per_tenant(topology: Topology) {
    scoped(topology, "tenancy_cache", |rx| async move {
        let (a1, a1_again) = tenant("a")
            .scope(async { (user(1).await, user(1).await) })
            .await;
        assert_eq!(a1.0, "a:1");
        assert_eq!(a1, a1_again, "the second call in tenant a is a hit");
        let b1 = tenant("b").scope(user(1)).await;
        assert_eq!(b1.0, "b:1", "tenant b never sees tenant a's entry");
        assert_ne!(b1.1, a1.1, "tenant b loaded its own");
        assert!(exists(&rx, "_ctx:tenant=a:user:1").await);
        assert!(exists(&rx, "_ctx:tenant=b:user:1").await);
        assert!(!exists(&rx, "user:1").await, "no unvaried entry");

        // The tag varies too: evicting `users` in tenant a leaves tenant b's entry.
        tenant("a").scope(evict_users()).await;
        assert!(!exists(&rx, "_ctx:tenant=a:user:1").await);
        assert!(exists(&rx, "_ctx:tenant=b:user:1").await);
        let b1_again = tenant("b").scope(user(1)).await;
        assert_eq!(b1_again, b1, "still cached for tenant b, in L1 and Redis");
        let a1_reloaded = tenant("a").scope(user(1)).await;
        assert_ne!(a1_reloaded.1, a1.1, "tenant a reloads after its eviction");

        // Without the context it varies by, the function runs uncached and writes nothing.
        let (x, y) = (user(1).await, user(1).await);
        assert_eq!(x.0, ":1");
        assert_ne!(x.1, y.1, "each call without a tenant runs the body");
        assert!(!exists(&rx, "user:1").await);

        // A key that does not vary may not name a context's entries.
        let forged = "_ctx:tenant=b:user:1".to_owned();
        let (p, q) = (by_raw_key(forged.clone()).await, by_raw_key(forged).await);
        assert_ne!(p.1, q.1, "a forged key runs uncached");
        assert_ne!(p.1, b1.1);
        let served: Option<(String, u64)> = rx.cache().get("_ctx:tenant=b:user:1").await.unwrap();
        assert_eq!(served, Some(b1), "tenant b's entry is untouched");
    })
    .await;
}

redisx_tests::on_topologies!(cached_entries_are_per_tenant);

#[with_lock(key = "report", ttl = "10s", wait = "50ms", vary_by = ["tenant"])]
async fn report(hold: Duration) -> Result<(), Error> {
    tokio::time::sleep(hold).await;
    Ok(())
}

#[rate_limit(key = "export", limit = 2, window = "1m", vary_by = ["tenant"])]
async fn export() -> Result<(), Error> {
    Ok(())
}

static CHARGES: AtomicU64 = AtomicU64::new(0);

#[idempotent(key = "charge:{id}", vary_by = ["tenant"])]
async fn charge(id: u64) -> Result<u64, Error> {
    let _ = id;
    Ok(CHARGES.fetch_add(1, Ordering::SeqCst))
}

async fn locks_quotas_and_records_are_per_tenant(topology: Topology) {
    scoped(topology, "tenancy_plugins", |rx| async move {
        // Tenant a holds its `report` lock; tenant b's `report` is another lock.
        let held = redisx::spawn(tenant("a").scope(report(Duration::from_millis(800))));
        let mut locked = false;
        for _ in 0..100 {
            if rx.locks().is_locked("_ctx:tenant=a:report").await.unwrap() {
                locked = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(locked, "tenant a holds its lock");
        tenant("b").scope(report(Duration::ZERO)).await.unwrap();
        let busy = tenant("a").scope(report(Duration::ZERO)).await.unwrap_err();
        assert_eq!(busy.code(), ErrorCode::LockAcquisitionTimeout);
        held.await.unwrap().unwrap();
        let e = report(Duration::ZERO).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::ConfigContextInvalid, "{e:#}");

        // Two exports per tenant and minute.
        for t in ["a", "b"] {
            tenant(t)
                .scope(async {
                    export().await.unwrap();
                    export().await.unwrap();
                    let denied = export().await.unwrap_err();
                    assert_eq!(denied.code(), ErrorCode::RateLimitExceeded);
                })
                .await;
        }
        assert_eq!(
            export().await.unwrap_err().code(),
            ErrorCode::ConfigContextInvalid
        );

        // One charge per tenant and id; a retry in the same tenant replays.
        let a = tenant("a").scope(charge(7)).await.unwrap();
        let b = tenant("b").scope(charge(7)).await.unwrap();
        assert_ne!(a, b, "tenant b's charge ran on its own");
        assert_eq!(tenant("a").scope(charge(7)).await.unwrap(), a, "replayed");
        assert_eq!(
            charge(7).await.unwrap_err().code(),
            ErrorCode::ConfigContextInvalid
        );
    })
    .await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    locks_quotas_and_records_are_per_tenant
);

#[tokio::test]
async fn spawn_carries_the_context_and_scopes_merge() {
    let outer = tenant("a");
    let seen = outer
        .scope(async {
            let inner = Context::new().with("locale", "fr").unwrap();
            inner
                .scope(async {
                    redisx::spawn(async {
                        redisx::context::key("k", &["tenant", "locale"]).unwrap()
                    })
                    .await
                    .unwrap()
                })
                .await
        })
        .await;
    assert_eq!(seen, "_ctx:tenant=a,locale=fr:k");
    let plain = tokio::spawn(async { redisx::context::key("k", &["tenant"]) })
        .await
        .unwrap();
    assert_eq!(plain.unwrap_err().code(), ErrorCode::ConfigContextInvalid);
}
