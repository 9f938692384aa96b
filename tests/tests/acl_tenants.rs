//! Tenant isolation: two tenants on one server, `a:` and `b:`, each a user made from the
//! README's documented `ACL SETUSER` line for its prefix. Tenant `b` writes through every
//! plugin; then tenant `a` calls every plugin (and every attribute) with keys, patterns, tags,
//! stream names and template values built to escape its prefix (`../`, `}{`, `{`, `*`, `?`,
//! `[`, `:`, newlines, `b:` itself). No call of `a` returns or reveals `b`'s data, the server
//! denied `a` nothing (so redisx never even composed a key or channel outside `a:`: the ACL
//! only confirms it), and `b`'s keys are byte for byte what they were, read as the admin.
//! Only an explicit escape hatch (a stream's `raw_name`) names a key outside the prefix, and
//! the ACL refuses it.

use std::collections::BTreeMap;
use std::time::Duration;

use redisx::cache::EntryOptions;
use redisx::idempotency::IdempotencyOptions;
use redisx::lock::LockOptions;
use redisx::rate_limit::Limit;
use redisx::streams::PublishOptions;
use redisx::{Error, RedisX, cached, idempotent, rate_limit, with_lock};
use redisx_tests::acl::{AclServer, documented_line};
use redisx_tests::streams::Job;

/// What `b` stores: no answer of `a` may contain it.
const SECRET: &str = "secret-of-b";

/// Keys, patterns and template values meant to reach `b:`'s keys from `a:`.
const HOSTILE: &[&str] = &[
    "user:1",
    "b:cache:user:1",
    "../b:cache:user:1",
    "}{b:cache:user:1",
    "{b:cache:user:1}",
    "}b:lock:{order:1}",
    "*",
    "b:*",
    "*b:*",
    "?",
    "[ab]:*",
    ":b:cache:user:1",
    "\nb:cache:user:1",
    "x\r\nb:*",
    "\\*",
    "order:1",
    "pay:1",
    "login:1",
];

#[cached(key = "user:{id}", ttl = "1m", runtime = rx)]
async fn cached_user(rx: &RedisX, id: String) -> String {
    format!("a's {id}")
}

#[with_lock(key = "order:{id}", ttl = "5s", runtime = rx)]
async fn locked(rx: &RedisX, id: String) -> Result<String, Error> {
    Ok(format!("a locked {id}"))
}

#[rate_limit(key = "login:{id}", runtime = rx, limit = 100, window = "1m")]
async fn limited(rx: &RedisX, id: String) -> Result<String, Error> {
    Ok(format!("a admitted {id}"))
}

#[idempotent(key = "pay:{id}", runtime = rx, fingerprint = [])]
async fn paid(rx: &RedisX, id: String) -> Result<String, Error> {
    Ok(format!("a paid {id}"))
}

/// Every key of the server under `prefix` with its value (`DUMP`), read as the admin.
async fn snapshot(server: &AclServer, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let mut admin = server.admin().await;
    let mut out = BTreeMap::new();
    for key in server.keys().await {
        if key.starts_with(prefix) {
            let dump: Vec<u8> = redis::cmd("DUMP")
                .arg(&key)
                .query_async(&mut admin)
                .await
                .expect("DUMP");
            out.insert(key, dump);
        }
    }
    out
}

/// Panics when `what` (an answer or an error of `a`, as text) shows `b`'s data.
fn no_leak(what: &str, shown: &str) {
    assert!(
        !shown.contains(SECRET) && !shown.contains("b paid"),
        "{what} revealed b's data: {shown}"
    );
}

/// `b` writes through every plugin: a cache entry (tagged), a held lock and semaphore
/// permit, consumed rate limits, a completed idempotency record, stream messages and a
/// dead letter.
async fn seed_b(b: &RedisX) -> Vec<redisx::lock::LockGuard> {
    let tagged = EntryOptions::new().tags(["users", "*"]);
    for key in ["user:1", "page:1", "b:cache:user:1"] {
        b.cache()
            .set_with(key, &SECRET.to_owned(), &tagged)
            .await
            .unwrap();
    }
    let minute = Duration::from_secs(60);
    let lock = LockOptions::new().ttl(minute).auto_renew(false);
    let held = vec![
        b.locks().acquire("order:1", &lock).await.unwrap(),
        b.locks().acquire("*", &lock).await.unwrap(),
    ];
    let permit = b.locks().semaphore("pool", 1).acquire(&lock).await.unwrap();
    std::mem::forget(permit);
    for key in ["login:1", "*"] {
        let d = b
            .rate_limiter()
            .check(key, &Limit::fixed_window(5, minute))
            .await
            .unwrap();
        assert!(d.allowed);
    }
    let opts = IdempotencyOptions::new();
    let r: String = b
        .idempotency()
        .run("pay:1", "", &opts, async {
            Ok::<_, Error>("b paid".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(r, "b paid");
    b.streams().publish("jobs", &Job { n: 7 }).await.unwrap();
    b.streams()
        .publish_in("jobs", &Job { n: 8 }, Duration::from_secs(3600))
        .await
        .unwrap();
    held
}

/// Tenant `a` calls every plugin with `key`; nothing it gets back shows `b`'s data.
async fn probe(a: &RedisX, key: &str) {
    let k = key.escape_debug().to_string();
    let cache = a.cache();
    match cache.get::<String>(key).await {
        Ok(v) => assert!(v.is_none(), "cache.get({k}) found {v:?}"),
        Err(e) => no_leak(&format!("cache.get({k})"), &format!("{e:#} {e:?}")),
    }
    let many = cache.get_many::<String, _>(&[key]).await;
    no_leak(&format!("cache.get_many({k})"), &format!("{many:?}"));
    assert!(!cache.has(key).await, "cache.has({k})");
    assert!(cache.ttl(key).await.is_none(), "cache.ttl({k})");
    let loaded = cache
        .get_or_load(key, None, || async { Ok::<_, Error>("a's".to_owned()) })
        .await;
    if let Ok(v) = &loaded {
        assert_eq!(v, "a's", "cache.get_or_load({k}) loaded a's own value");
    }
    no_leak(&format!("cache.get_or_load({k})"), &format!("{loaded:?}"));
    let tags = cache.keys_by_tag(key).await;
    no_leak(&format!("cache.keys_by_tag({k})"), &format!("{tags:?}"));
    if let Ok(keys) = tags {
        assert!(keys.is_empty(), "cache.keys_by_tag({k}) named {keys:?}");
    }
    let _ = cache.invalidate_tags(&[key]).await;
    let _ = cache.invalidate_pattern(key).await;
    let _ = cache.delete(key).await;
    let _ = cache.delete_many(&[key]).await;
    let set = cache.set(key, &"a-value".to_owned(), None).await;
    no_leak(&format!("cache.set({k})"), &format!("{set:?}"));
    let attr = cached_user(a, key.to_owned()).await;
    assert_eq!(attr, format!("a's {key}"), "#[cached] with {k}");

    let locks = a.locks();
    assert!(
        !locks.is_locked(key).await.unwrap_or(false),
        "is_locked({k})"
    );
    match locks.try_acquire(key, &LockOptions::new()).await {
        Ok(guard) => {
            let guard = guard.unwrap_or_else(|| panic!("try_acquire({k}) busy: b's lock?"));
            guard.release().await.unwrap();
        }
        Err(e) => no_leak(&format!("try_acquire({k})"), &format!("{e:#}")),
    }
    assert!(
        !locks.force_release(key).await.unwrap_or(false),
        "force_release({k})"
    );
    let holders = locks.semaphore(key, 1).holders().await.unwrap_or(0);
    assert_eq!(holders, 0, "semaphore({k}).holders()");
    if let Ok(out) = locked(a, key.to_owned()).await {
        assert_eq!(out, format!("a locked {key}"));
    }

    let rl = a.rate_limiter();
    let limit = Limit::fixed_window(5, Duration::from_secs(60));
    if let Ok(state) = rl.state(key, &limit).await {
        assert_eq!(state.remaining, 5, "rate_limiter.state({k}) saw b's hits");
    }
    let _ = rl.check(key, &limit).await;
    let _ = rl.reset(key, &limit).await;
    if let Ok(out) = limited(a, key.to_owned()).await {
        assert_eq!(out, format!("a admitted {key}"));
    }

    let idem = a.idempotency();
    let record = idem.get(key).await;
    no_leak(&format!("idempotency.get({k})"), &format!("{record:?}"));
    assert!(record.map_or(true, |r| r.is_none()), "idempotency.get({k})");
    let ran = idem
        .run(key, "", &IdempotencyOptions::new(), async {
            Ok::<_, Error>("a ran".to_owned())
        })
        .await;
    no_leak(&format!("idempotency.run({k})"), &format!("{ran:?}"));
    if let Ok(out) = ran {
        assert_eq!(out, "a ran", "idempotency.run({k}) replayed b's record");
    }
    let _ = idem.delete(key).await;
    let _ = idem.delete(key).await;
    let out = paid(a, key.to_owned()).await;
    no_leak(&format!("#[idempotent] with {k}"), &format!("{out:?}"));

    let streams = a.streams();
    let dead = streams.dlq_list(key, 10).await;
    no_leak(&format!("streams.dlq_list({k})"), &format!("{dead:?}"));
    assert!(streams.len(key).await.unwrap_or(0) <= 1, "streams.len({k})");
    let info = streams.info(key).await;
    no_leak(&format!("streams.info({k})"), &format!("{info:?}"));
    let _ = streams.publish(key, &Job { n: 1 }).await;
    let _ = streams.purge_dlq(key).await;
    let _ = streams.requeue_all(key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_a_cannot_read_or_change_tenant_b_through_any_call() {
    let server = AclServer::start(&[("a", documented_line("a:")), ("b", documented_line("b:"))]);
    let b = server.runtime("b", "b:").await;
    let _held = seed_b(&b).await;
    let before = snapshot(&server, "b:").await;
    assert!(
        before.len() >= 8,
        "b wrote through every plugin: {:?}",
        before.keys()
    );

    let a = server.runtime("a", "a:").await;
    for key in HOSTILE {
        probe(&a, key).await;
    }
    // Whole-prefix calls of a.
    assert!(a.cache().clear().await.is_ok());
    assert!(a.cache().invalidate_pattern("*").await.is_ok());
    // redisx composed no key or channel outside `a:`: the server had nothing to deny.
    server.assert_no_denials("tenant a's calls").await;
    assert_eq!(snapshot(&server, "b:").await, before, "b's keys changed");
    let other: Vec<String> = server
        .keys()
        .await
        .into_iter()
        .filter(|k| !k.starts_with("a:") && !k.starts_with("b:"))
        .collect();
    assert!(other.is_empty(), "keys outside both prefixes: {other:?}");
    // b still reads its own.
    let mine = b.cache().get::<String>("user:1").await.unwrap();
    assert_eq!(mine.as_deref(), Some(SECRET));

    // The one escape hatch: a raw stream name outside the prefix is refused by the ACL, and
    // its error shows none of b's data.
    let raw = PublishOptions::new().raw_name(true);
    let b_stream = b.streams().keys("jobs", false).unwrap().stream;
    let out = a
        .streams()
        .publish_with(&b_stream, &Job { n: 9 }, &raw)
        .await;
    let e = out.expect_err("the ACL refuses a raw name outside a:");
    no_leak("a raw stream name", &format!("{e:#} {e:?}"));
    assert!(
        format!("{e:#}").contains("OP_NO_PERMISSION"),
        "refused by the ACL: {e:#}"
    );
    let denied = server.denials().await;
    assert!(
        denied.len() == 1 && denied[0].contains("b:stream:{jobs}"),
        "the ACL LOG names that key alone: {denied:?}"
    );
    assert_eq!(snapshot(&server, "b:").await, before, "b's keys changed");
    a.shutdown().await;
    b.shutdown().await;
}
