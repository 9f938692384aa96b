//! The attributes' expansions are lint-clean: one expansion of every attribute, in the shapes
//! users write, compiled under `deny(warnings, clippy::pedantic)` (in the spirit of thiserror's
//! `tests/test_lints.rs`). `cargo clippy --all-targets` lints this target, so a warning that an
//! expansion would push into users' code fails CI here (trybuild's UI tests run no clippy). The
//! test at the end calls every function once, so the expansions also run.

#![deny(warnings, clippy::pedantic)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use redisx::{CacheConfig, RedisX, cache_evict, cache_put, cached};
use redisx_tests::{RedisServer, runtime, unique_prefix};

/// The runtime every function below uses (`runtime = ..`), set by the test.
static RT: OnceLock<RedisX> = OnceLock::new();

/// How many times the bodies of the cached functions ran.
static LOADS: AtomicUsize = AtomicUsize::new(0);

fn rt() -> &'static RedisX {
    RT.get().expect("set by the test")
}

fn loaded() -> usize {
    LOADS.fetch_add(1, Ordering::SeqCst) + 1
}

fn is_blank(name: &str) -> bool {
    name.trim().is_empty()
}

/// A key template, tags, `unless` (a path) and `condition` (a closure), on a `Result`.
#[cached(
    key = "user:{id}",
    ttl = "1m",
    tags = ["users", "user:{id}"],
    unless = is_blank,
    condition = |id: &u64| *id != 0,
    runtime = rt()
)]
async fn user(id: u64) -> Result<String, String> {
    loaded();
    if id == 13 {
        return Err(format!("user {id} is unlucky"));
    }
    Ok(format!("user-{id}"))
}

/// No key: the automatic key hashes the arguments; a plain return type; `unless` a closure.
#[cached(ttl = "1m", unless = |v: &Vec<String>| v.is_empty(), runtime = rt())]
async fn search(query: String, page: u32) -> Vec<String> {
    loaded();
    vec![format!("{query}#{page}")]
}

/// Stale-while-revalidate with stale-if-error, `l1_ttl`, a mode and a codec, on a `Result`.
#[cached(
    key = "quote:{symbol}",
    ttl = "5m",
    l1_ttl = "30s",
    swr = "30s",
    stale_if_error = "1h",
    mode = "l1_l2",
    codec = Json,
    runtime = rt()
)]
async fn quote(symbol: String) -> Result<u64, String> {
    loaded();
    u64::try_from(symbol.len()).map_err(|e| e.to_string())
}

/// Stale-while-revalidate on a plain return type, L1 only.
#[cached(key = "flag:{name}", ttl = "1m", swr = "10s", mode = "l1_only", runtime = rt())]
async fn flag(name: String) -> bool {
    loaded();
    name.starts_with("on")
}

/// A predicate on exactly the value's type.
fn is_empty_page(page: &Page) -> bool {
    page.items.is_empty()
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Page {
    items: Vec<u64>,
}

/// The documented `unless` example: a method path.
#[cached(key = "ids:{n}", ttl = "1m", unless = Vec::is_empty, runtime = rt())]
async fn ids(n: u64) -> Vec<u64> {
    loaded();
    (0..n).collect()
}

/// `unless` a function path taking exactly `&T`, on a `Result`.
#[cached(key = "page:{n}", ttl = "1m", unless = is_empty_page, runtime = rt())]
async fn page(n: u64) -> Result<Page, String> {
    loaded();
    Ok(Page {
        items: (0..n).collect(),
    })
}

/// Methods: a key template naming a field of the receiver, and the automatic key.
struct Orders {
    tenant: String,
    rx: RedisX,
}

impl Orders {
    #[cached(key = "{self.tenant}:order:{id}", ttl = "1m", runtime = &self.rx)]
    async fn order(&self, id: u64) -> Option<u64> {
        loaded();
        id.checked_mul(10)
    }

    #[cached(ttl = "1m", tags = ["orders:{self.tenant}"], runtime = &self.rx)]
    async fn count(&self, status: &str) -> Result<usize, String> {
        loaded();
        Ok(self.tenant.len() + status.len())
    }

    #[cache_evict(tags = ["orders:{self.tenant}"], runtime = &self.rx)]
    async fn reset(&self) {}
}

/// Evicts a key and a tag after a successful `Result`.
#[cache_evict(keys = ["user:{id}"], tags = ["user:{id}"], runtime = rt())]
async fn delete_user(id: u64) -> Result<(), String> {
    if id == 0 {
        return Err("no user 0".to_owned());
    }
    Ok(())
}

/// Evicts before the body runs, on a plain return type.
#[cache_evict(tags = ["users"], when = "before", runtime = rt())]
async fn reset_users() -> usize {
    0
}

/// Writes the returned value under the key.
#[cache_put(key = "user:{id}", ttl = "1m", tags = ["users"], runtime = rt())]
async fn rename(id: u64, name: String) -> String {
    format!("{name}-{id}")
}

/// Writes the `Ok` value under the key; an `Err` writes nothing.
#[cache_put(key = "user:{id}", ttl = "1m", runtime = rt())]
async fn try_rename(id: u64, name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("an empty name".to_owned());
    }
    Ok(format!("{name}-{id}"))
}

#[tokio::test]
async fn every_expansion_runs() {
    let server = RedisServer::start();
    let rx = runtime(
        &server.url(),
        &unique_prefix("lints"),
        CacheConfig::default(),
    )
    .await;
    assert!(RT.set(rx.clone()).is_ok(), "the runtime is set once");

    assert_eq!(user(1).await.as_deref(), Ok("user-1"));
    assert_eq!(user(1).await.as_deref(), Ok("user-1"));
    assert!(user(13).await.is_err());
    assert_eq!(search("redis".to_owned(), 2).await, ["redis#2"]);
    assert_eq!(search("redis".to_owned(), 2).await, ["redis#2"]);
    assert_eq!(quote("ABC".to_owned()).await, Ok(3));
    assert!(flag("on:beta".to_owned()).await);
    let orders = Orders {
        tenant: "acme".to_owned(),
        rx,
    };
    assert_eq!(orders.order(4).await, Some(40));
    assert_eq!(orders.count("open").await, Ok(8));
    orders.reset().await;
    assert_eq!(
        LOADS.load(Ordering::SeqCst),
        7,
        "user 1, user 13, search, quote, flag, order and count loaded once each (the repeated \
         calls were hits)"
    );
    assert_eq!(delete_user(1).await, Ok(()));
    assert!(delete_user(0).await.is_err());
    assert_eq!(reset_users().await, 0);
    assert_eq!(rename(1, "ada".to_owned()).await, "ada-1");
    assert_eq!(user(1).await.as_deref(), Ok("ada-1"), "cache_put wrote it");
    assert_eq!(try_rename(1, "grace").await.as_deref(), Ok("grace-1"));
    assert!(try_rename(1, "").await.is_err());
    assert_eq!(user(1).await.as_deref(), Ok("grace-1"));

    let before = LOADS.load(Ordering::SeqCst);
    assert_eq!(ids(0).await, Vec::<u64>::new());
    assert_eq!(ids(0).await, Vec::<u64>::new());
    assert_eq!(ids(2).await, [0, 1]);
    assert_eq!(ids(2).await, [0, 1]);
    assert_eq!(page(0).await, Ok(Page { items: vec![] }));
    assert_eq!(page(0).await, Ok(Page { items: vec![] }));
    assert_eq!(
        LOADS.load(Ordering::SeqCst) - before,
        5,
        "empty lists and pages are not cached (`unless`), a list is"
    );
}
