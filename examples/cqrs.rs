//! CQRS invalidation: a write side that publishes an event per change on a stream, a read side
//! of cached queries whose stream consumer invalidates the cache tags each event names, and two
//! instances of the service that both serve the new value once the event is handled.
//!
//! ```text
//! cargo run --example cqrs
//! ```
//!
//! Uses the server in `REDIS_URL` when it is set, else one listening on `127.0.0.1:6379`, else
//! starts a throwaway `redis-server` from `PATH` (stopped at exit). It runs two instances of
//! the service in one process, as two processes would run: two runtimes on one Redis under one
//! key prefix, each with its own L1, each serving the axum app on a loopback port, both over one
//! simulated database (the [`Store`]). As a client it reads a product on both instances (one
//! load, then Redis, then L1 hits), changes its price on instance a, waits for the event to be
//! handled (once, by one instance) and reads the new price on both; then a 404 that was cached
//! becomes a 200 once the product is created; then a read that started before a change answers
//! the old price without caching it.
//!
//! The pieces: [`change_product`] (the command) writes the store and publishes a
//! [`ProductChanged`] on [`EVENTS`]; it touches no cache. [`product`] and [`products`] (the
//! queries) are `#[cached]`, two-tier, tagged `product:{id}` and `products`. Each instance
//! runs a consumer of [`EVENTS`] in the one group [`GROUP`] (so each event is handled by one
//! instance) whose handler, [`invalidate`], drops the event's tags: Redis loses the entries,
//! redisx tells every instance to drop its L1 copy, and a load in flight under those tags
//! (started before the change) loses its lock and does not write back what it read. An event
//! says *what* changed, not the new value: handling one twice or out of order is harmless, and
//! so is an event for a product the read side never saw (its tags are invalidated like any
//! other's, which also drops a cached 404).
//!
//! The consumer is started with `rx.streams().consumer(..)`, not `#[stream_consumer]`, to name
//! each instance's consumer after the instance (the attribute's `consumer` is a literal fixed
//! at compile time; its default, `{hostname}-{pid}` with `-2` for the second runtime of a
//! process, would keep the two apart as well, under less telling names). The handler runs in
//! the consuming runtime's scope, so `RedisX::current()` there reaches that instance's cache.

#[path = "support/server.rs"]
mod server;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, HeaderName};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use redisx::streams::{ConsumerHandle, ConsumerOptions, Message};
use redisx::{ConnectionConfig, RedisX, cached};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedRwLockWriteGuard, RwLock, watch};

/// The stream the write side publishes its events on.
pub const EVENTS: &str = "product-events";

/// The consumer group of the read side: one group for every instance, so each event is
/// delivered to one of them.
pub const GROUP: &str = "read-model";

/// The tag of every cached list of products.
pub const LIST_TAG: &str = "products";

/// The header of `PUT /products/{id}` that carries the id of the event the write published.
pub const EVENT_ID: &str = "x-event-id";

/// A product, as the write model stores it and the read model serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its price, in cents.
    pub price_cents: u64,
}

impl Product {
    /// Product `id`, `name`, at `price_cents`.
    pub fn new(id: u64, name: &str, price_cents: u64) -> Self {
        Self {
            id,
            name: name.to_owned(),
            price_cents,
        }
    }
}

/// The body of `PUT /products/{id}`: the product's new state (the product is created when
/// missing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductUpdate {
    /// The name.
    pub name: String,
    /// The price, in cents.
    pub price_cents: u64,
}

impl ProductUpdate {
    /// `name` at `price_cents`.
    pub fn new(name: &str, price_cents: u64) -> Self {
        Self {
            name: name.to_owned(),
            price_cents,
        }
    }
}

/// The event of every write: which product changed (and its new price, for other readers of
/// the stream; the read side only needs the id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductChanged {
    /// The product that changed.
    pub id: u64,
    /// Its new price, in cents.
    pub price_cents: u64,
}

impl ProductChanged {
    /// The cache tags the change makes stale: the product's own (`product:{id}`, as in
    /// [`product`]) and that of every list.
    pub fn tags(&self) -> [String; 2] {
        [format!("product:{}", self.id), LIST_TAG.to_owned()]
    }
}

/// The simulated database every instance uses: products by id, and how many times each was
/// read (so a caller can tell a cache hit from a load). Cheap to clone; clones share it.
#[derive(Clone, Default)]
pub struct Store {
    rows: Arc<Mutex<Rows>>,
    /// Reads take their snapshot, then pass this gate; [`Store::hold_reads`] closes it.
    gate: Arc<RwLock<()>>,
}

#[derive(Default)]
struct Rows {
    products: BTreeMap<u64, Product>,
    item_reads: HashMap<u64, u64>,
    list_reads: u64,
}

/// Holds the store's reads at the gate while alive; see [`Store::hold_reads`].
pub struct ReadHold {
    _guard: OwnedRwLockWriteGuard<()>,
}

impl Store {
    /// A store holding `products`.
    pub fn new(products: impl IntoIterator<Item = Product>) -> Self {
        let store = Self::default();
        let rows = products.into_iter().map(|p| (p.id, p));
        store.rows().products.extend(rows);
        store
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, Rows> {
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads product `id` (`None` when there is none).
    pub async fn get(&self, id: u64) -> Option<Product> {
        let found = {
            let mut rows = self.rows();
            *rows.item_reads.entry(id).or_default() += 1;
            rows.products.get(&id).cloned()
        };
        let _open = self.gate.read().await;
        found
    }

    /// Reads every product, by id.
    pub async fn list(&self) -> Vec<Product> {
        let found = {
            let mut rows = self.rows();
            rows.list_reads += 1;
            rows.products.values().cloned().collect()
        };
        let _open = self.gate.read().await;
        found
    }

    /// Writes product `id` (creates it when missing); returns it.
    pub fn upsert(&self, id: u64, update: &ProductUpdate) -> Product {
        let product = Product::new(id, &update.name, update.price_cents);
        self.rows().products.insert(id, product.clone());
        product
    }

    /// How many times product `id` was read.
    pub fn reads_of(&self, id: u64) -> u64 {
        self.rows().item_reads.get(&id).copied().unwrap_or(0)
    }

    /// How many times the list was read.
    pub fn list_reads(&self) -> u64 {
        self.rows().list_reads
    }

    /// Holds every read after it took its snapshot, until the returned hold is dropped: a
    /// slow query, so that a change can land while a read of the old state is in flight.
    pub async fn hold_reads(&self) -> ReadHold {
        ReadHold {
            _guard: self.gate.clone().write_owned().await,
        }
    }
}

/// The read model of one product: two-tier (L1, then Redis), under `product:{id}`, tagged
/// `product:{id}`. A missing product (`None`, a 404) is cached too, until an event for it.
#[cached(key = "product:{id}", ttl = "10m", tags = ["product:{id}"], runtime = rx)]
pub async fn product(rx: &RedisX, store: &Store, id: u64) -> Option<Product> {
    store.get(id).await
}

/// The read model of the product list: two-tier, under `products:all`, tagged [`LIST_TAG`].
/// Products are not tagged `products` themselves: every change would then drop them all.
#[cached(key = "products:all", ttl = "10m", tags = ["products"], runtime = rx)]
pub async fn products(rx: &RedisX, store: &Store) -> Vec<Product> {
    store.list().await
}

/// The command: writes product `id` to the store, then publishes a [`ProductChanged`] on
/// [`EVENTS`]; returns the product and the event's id. No cache is touched here: the read side
/// invalidates on the event, in whichever instance handles it.
///
/// Should the publish fail, the store was written without an event: a real service writes the
/// event in the same transaction as the row (an outbox) and publishes from there; the cached
/// reads stay stale until their ttl (10 minutes) at worst.
pub async fn change_product(
    rx: &RedisX,
    store: &Store,
    id: u64,
    update: ProductUpdate,
) -> redisx::Result<(Product, String)> {
    let product = store.upsert(id, &update);
    let event = ProductChanged {
        id,
        price_cents: product.price_cents,
    };
    let event_id = rx.streams().publish(EVENTS, &event).await?;
    Ok((product, event_id))
}

/// The read side's handling of an event: drops what it made stale (every entry tagged with the
/// event's tags: the product's, every list), in Redis and in every instance's L1, and the lock
/// of a load of theirs in flight, whose value is then not written back; returns how many
/// entries Redis held.
pub async fn invalidate(rx: &RedisX, event: &ProductChanged) -> redisx::Result<u64> {
    rx.cache().invalidate_tags(&event.tags()).await
}

/// An event handled by the read side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handled {
    /// The instance that handled it.
    pub instance: String,
    /// The event's stream entry id.
    pub event_id: String,
    /// The product it named.
    pub product: u64,
    /// The entries its invalidation removed from Redis.
    pub removed: u64,
}

/// The events the instances of this process handled, in order, and a way to wait for one (in
/// production: a log line or a metric per instance). Empty by default; cheap to clone, clones
/// share it.
#[derive(Clone, Default)]
pub struct EventLog(Arc<watch::Sender<Vec<Handled>>>);

impl EventLog {
    fn record(&self, handled: Handled) {
        self.0.send_modify(|all| all.push(handled));
    }

    /// Every event handled so far.
    pub fn all(&self) -> Vec<Handled> {
        self.0.borrow().clone()
    }

    /// Waits up to `within` until the event `event_id` is handled; `None` if it was not.
    pub async fn wait_for(&self, event_id: &str, within: Duration) -> Option<Handled> {
        let mut seen = self.0.subscribe();
        let found = |all: &Vec<Handled>| all.iter().find(|h| h.event_id == event_id).cloned();
        let all = tokio::time::timeout(within, seen.wait_for(|all| found(all).is_some()))
            .await
            .ok()?
            .ok()?;
        found(&all)
    }

    /// Waits up to `within` until `n` events are handled; whether they were.
    pub async fn wait_len(&self, n: usize, within: Duration) -> bool {
        let mut seen = self.0.subscribe();
        let waited = tokio::time::timeout(within, seen.wait_for(|all| all.len() >= n)).await;
        matches!(waited, Ok(Ok(_)))
    }
}

/// Starts the read side of an instance: a consumer named `instance` in [`GROUP`] on `rx`,
/// which [`invalidate`]s on every event and records it in `log`. A failed invalidation (Redis
/// unreachable) is retried with backoff, then goes to the DLQ; an entry that is not a
/// [`ProductChanged`] goes to the DLQ at once.
pub async fn start_read_side(
    rx: &RedisX,
    instance: &str,
    log: &EventLog,
) -> redisx::Result<ConsumerHandle> {
    let (runtime, log, name) = (rx.clone(), log.clone(), Arc::<str>::from(instance));
    let opts = ConsumerOptions::new(GROUP)
        .consumer(instance)
        .concurrency(4)
        .block(Duration::from_secs(1));
    rx.streams()
        .consumer(EVENTS, opts, move |msg: Message<ProductChanged>| {
            let (rx, log, name) = (runtime.clone(), log.clone(), name.clone());
            async move {
                let removed = invalidate(&rx, msg.payload()).await?;
                log.record(Handled {
                    instance: name.to_string(),
                    event_id: msg.id().to_owned(),
                    product: msg.payload().id,
                    removed,
                });
                Ok::<_, redisx::Error>(())
            }
        })
        .start()
        .await
}

/// One instance of the service, as one process of it would be: its runtime (its own L1; Redis
/// and the key prefix shared with the other instances), the store, and its read side.
#[derive(Clone)]
pub struct Instance {
    name: Arc<str>,
    rx: RedisX,
    store: Store,
}

impl Instance {
    /// Starts the instance `name` on `rx` over `store`: its read side's consumer records the
    /// events it handles in `log`. The runtime's shutdown stops the consumer.
    pub async fn start(
        name: &str,
        rx: RedisX,
        store: Store,
        log: &EventLog,
    ) -> redisx::Result<Self> {
        start_read_side(&rx, name, log).await?;
        Ok(Self {
            name: Arc::from(name),
            rx,
            store,
        })
    }

    /// Its name (its consumer's name in [`GROUP`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its runtime.
    pub fn rx(&self) -> &RedisX {
        &self.rx
    }

    /// [`product`] on this instance.
    pub async fn product(&self, id: u64) -> Option<Product> {
        product(&self.rx, &self.store, id).await
    }

    /// [`products`] on this instance.
    pub async fn products(&self) -> Vec<Product> {
        products(&self.rx, &self.store).await
    }

    /// [`change_product`] on this instance.
    pub async fn change(
        &self,
        id: u64,
        update: ProductUpdate,
    ) -> redisx::Result<(Product, String)> {
        change_product(&self.rx, &self.store, id, update).await
    }

    /// The service: `GET /products` (a JSON list), `GET /products/{id}` (a JSON [`Product`],
    /// or 404) and `PUT /products/{id}` (a JSON [`ProductUpdate`]; answers the product, with
    /// the event's id in [`EVENT_ID`]).
    pub fn app(&self) -> Router {
        Router::new()
            .route("/products", get(list_products))
            .route("/products/{id}", get(get_product).put(put_product))
            .with_state(self.clone())
    }
}

/// `GET /products/{id}`.
async fn get_product(State(instance): State<Instance>, Path(id): Path<u64>) -> Response {
    match instance.product(id).await {
        Some(p) => json(&p, None),
        None => (StatusCode::NOT_FOUND, format!("no product {id}")).into_response(),
    }
}

/// `GET /products`.
async fn list_products(State(instance): State<Instance>) -> Response {
    json(&instance.products().await, None)
}

/// `PUT /products/{id}`.
async fn put_product(
    State(instance): State<Instance>,
    Path(id): Path<u64>,
    body: String,
) -> Response {
    let update: ProductUpdate = match serde_json::from_str(&body) {
        Ok(update) => update,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad product: {e}")).into_response(),
    };
    match instance.change(id, update).await {
        Ok((product, event_id)) => json(&product, Some(event_id)),
        // Redis did not take the event: problem+json, as redisx answers its errors.
        Err(e) => e.into_response(),
    }
}

/// A 200 with `value` as JSON, and the event id header when given.
fn json<T: Serialize>(value: &T, event_id: Option<String>) -> Response {
    let body = match serde_json::to_string(value) {
        Ok(body) => body,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let mut res = ([(CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(Ok(id)) = event_id.map(|id| id.parse()) {
        res.headers_mut()
            .insert(HeaderName::from_static(EVENT_ID), id);
    }
    res
}

/// Serves `app` on a free loopback port; returns its base URL.
async fn serve(app: Router) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

/// GETs `url`; returns the status and the body.
async fn fetch(c: &reqwest::Client, url: &str) -> Result<(u16, String), reqwest::Error> {
    let res = c.get(url).send().await?;
    Ok((res.status().as_u16(), res.text().await?))
}

/// PUTs `update` to `{base}/products/{id}`; returns the status, the event id and the body.
async fn put(
    c: &reqwest::Client,
    base: &str,
    id: u64,
    update: &ProductUpdate,
) -> Result<(u16, String, String), Box<dyn std::error::Error>> {
    let res = c
        .put(format!("{base}/products/{id}"))
        .body(serde_json::to_string(update)?)
        .send()
        .await?;
    let event_id = res
        .headers()
        .get(EVENT_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((res.status().as_u16(), event_id, res.text().await?))
}

/// GETs `url` until the body contains `wanted` (at most 5 s); returns the last answer.
async fn fetch_until(
    c: &reqwest::Client,
    url: &str,
    wanted: &str,
) -> Result<(u16, String), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = fetch(c, url).await?;
        if body.contains(wanted) || Instant::now() > deadline {
            return Ok((status, body));
        }
        // Only the other instance's L1 can lag: its eviction arrives over pub/sub.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A runtime on `url` under the example's key prefix: one per instance.
async fn runtime(url: &str) -> redisx::Result<RedisX> {
    let builder = RedisX::builder().client("default", ConnectionConfig::from_url(url)?);
    builder.key_prefix("cqrs-example:").build().await
}

/// Waits (at most 5 s) until the event `event_id` is handled.
async fn wait_handled(log: &EventLog, event_id: &str) -> Result<Handled, String> {
    let handled = log.wait_for(event_id, Duration::from_secs(5)).await;
    handled.ok_or_else(|| format!("the event {event_id} was not handled within 5 s"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _server) = server::find_or_start_redis()?; // `_server` stops a throwaway server
    let (rx_a, rx_b) = (runtime(&url).await?, runtime(&url).await?);
    rx_a.cache().clear().await?; // start fresh when run again on the same server
    let store = Store::new([Product::new(1, "Coffee", 450), Product::new(2, "Tea", 300)]);
    let log = EventLog::default();
    let a = Instance::start("instance-a", rx_a, store.clone(), &log).await?;
    let b = Instance::start("instance-b", rx_b, store.clone(), &log).await?;
    let (url_a, url_b) = (serve(a.app()).await?, serve(b.app()).await?);
    println!("--> instance-a on {url_a}, instance-b on {url_b}: one Redis, one prefix, two L1s");

    // reqwest is built without a TLS provider of its own; plain HTTP needs one all the same.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::builder().no_proxy().build()?;
    for (who, base) in [("a", &url_a), ("b", &url_b), ("a", &url_a), ("b", &url_b)] {
        let (status, body) = fetch(&c, &format!("{base}/products/1")).await?;
        println!("--> GET {who} /products/1: {status} {body}");
    }
    println!(
        "--> store reads of product 1: {} (a loaded it, b read it from Redis, then both from L1)",
        store.reads_of(1)
    );
    let (_, list) = fetch(&c, &format!("{url_b}/products")).await?;
    println!("--> GET b /products: {list}");

    let (status, event_id, body) = put(&c, &url_a, 1, &ProductUpdate::new("Coffee", 500)).await?;
    println!("--> PUT a /products/1: {status} {body}, event {event_id} on `{EVENTS}`");
    let handled = wait_handled(&log, &event_id).await?;
    println!(
        "--> event handled once, by {}: product:1 and the list invalidated ({} entries gone from Redis, and from both L1s)",
        handled.instance, handled.removed
    );
    for (who, base) in [("a", &url_a), ("b", &url_b)] {
        let (status, body) = fetch_until(&c, &format!("{base}/products/1"), "500").await?;
        println!("--> GET {who} /products/1: {status} {body}");
    }
    let (_, list) = fetch_until(&c, &format!("{url_b}/products"), "500").await?;
    println!(
        "--> GET b /products: {list} (store reads: product 1 {}, list {})",
        store.reads_of(1),
        store.list_reads()
    );

    // A 404 is cached too; the event of the product's creation drops it.
    let (status, _) = fetch(&c, &format!("{url_a}/products/3")).await?;
    let (again, _) = fetch(&c, &format!("{url_a}/products/3")).await?;
    println!(
        "--> GET a /products/3: {status}, again {again} (store reads of product 3: {})",
        store.reads_of(3)
    );
    let (status, event_id, _) = put(&c, &url_b, 3, &ProductUpdate::new("Juice", 380)).await?;
    wait_handled(&log, &event_id).await?;
    let (now, body) = fetch_until(&c, &format!("{url_a}/products/3"), "Juice").await?;
    println!("--> PUT b /products/3: {status}; GET a /products/3: {now} {body}");

    // A read of the old state in flight while the change is handled: its value is not cached.
    let hold = store.hold_reads().await;
    let (c2, slow_url) = (c.clone(), format!("{url_b}/products/2"));
    let slow = tokio::spawn(async move { fetch(&c2, &slow_url).await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.reads_of(2) == 0 {
        if Instant::now() > deadline {
            return Err("the read of product 2 did not reach the store within 5 s".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await; // until the read took its snapshot
    }
    let (_, event_id, _) = put(&c, &url_a, 2, &ProductUpdate::new("Tea", 350)).await?;
    wait_handled(&log, &event_id).await?;
    drop(hold);
    let (_, old) = slow.await??;
    let (_, new) = fetch(&c, &format!("{url_b}/products/2")).await?;
    println!("--> GET b /products/2 started before PUT a /products/2 (350): answers {old}");
    println!("--> GET b /products/2 after it: {new} (the old value was not cached)");

    for i in [&a, &b] {
        let s = i.rx().cache().stats();
        let handled = log.all().iter().filter(|h| h.instance == i.name()).count();
        println!(
            "--> {}: {} loads, {} L1 hits, {} L2 hits; events handled: {handled}",
            i.name(),
            s.loads,
            s.l1_hits,
            s.l2_hits
        );
    }
    a.rx().shutdown().await;
    b.rx().shutdown().await;
    Ok(())
}
