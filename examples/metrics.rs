//! Metrics: an axum shop service whose `GET /metrics` serves the redisx metrics together with
//! the application's own, registered on the same registry; traffic that gives every redisx
//! metric family samples, so the Grafana dashboard (`dashboards/redisx.json`) and the alert
//! rules (`dashboards/alerts.yml`) have something to show.
//!
//! ```text
//! cargo run --example metrics
//! ```
//!
//! Uses the server in `REDIS_URL` when it is set, else one listening on `127.0.0.1:6379`, else
//! starts a throwaway `redis-server` from `PATH` (stopped at exit). It serves the app on a free
//! loopback port, plays a client (orders placed, retried, duplicated while running, rate
//! limited, one the warehouse refuses), drives what traffic alone does not show (an L2 hit, a
//! stampede, lock contention, a lost lock, a command error, an entry lost by a crashed
//! consumer), then scrapes its own `/metrics` and prints what it found.
//!
//! The pieces: [`ShopMetrics`] registers a counter family and a histogram on
//! [`RedisX::registry`] (under `shop_`), so `rx.metrics_text()` renders them beside the
//! `redisx_` families; `POST /orders` ([`app`]) checks a per-customer rate limit, runs the
//! order once per `Idempotency-Key` (`rx.idempotency().run`), under the customer's lock, with
//! the price from the cache, and publishes it to the `orders` stream; [`start_fulfilment`]
//! consumes it (one retry, then the DLQ). `GET /metrics` reads the group's lag first:
//! `redisx_stream_lag` holds the lag as last read (by each running consumer every 10 s, or by
//! `lag`, `groups`, `info`), and a scrape wants it current.

#[path = "support/client.rs"]
mod client;
#[path = "support/server.rs"]
mod server;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use redisx::idempotency::{Fingerprint, IdempotencyOptions, Status};
use redisx::lock::{LockOptions, RetryStrategy};
use redisx::metrics::SharedRegistry;
use redisx::prometheus_client::metrics::counter::Counter;
use redisx::prometheus_client::metrics::family::Family;
use redisx::prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use redisx::rate_limit::Limit;
use redisx::streams::{Backoff, ConsumerHandle, ConsumerOptions, Message, StreamsConfig};
use redisx::{ConnectionConfig, RedisX, redis};
use serde::{Deserialize, Serialize};

/// The stream orders are published to.
pub const STREAM: &str = "orders";

/// The consumer group that ships them.
pub const GROUP: &str = "fulfilment";

/// Order requests a customer may send per minute (sliding window).
pub const ORDERS_PER_MINUTE: u64 = 4;

/// The SKU the warehouse no longer stocks: its orders fail to ship and end in the DLQ.
pub const DISCONTINUED: &str = "lamp";

/// The SKUs of the catalog, with their prices in cents.
const CATALOG: [(&str, u64); 3] = [("mug", 1200), ("kettle", 3900), (DISCONTINUED, 2500)];

/// How long the (simulated) pricing service takes to answer: a cache miss pays it.
const PRICING_LATENCY: Duration = Duration::from_millis(100);

/// The `Content-Type` of `GET /metrics`: prometheus-client renders `OpenMetrics` text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The body of `POST /orders`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderRequest {
    /// Who orders (the rate limit and the lock are per customer).
    pub customer: String,
    /// What, one of the catalog's SKUs.
    pub sku: String,
    /// How many.
    pub quantity: u64,
}

/// The answer to an order (201), replayed to every retry with the same key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The order's id: its entry in the `orders` stream.
    pub order: String,
    /// The amount charged, in cents.
    pub total: u64,
}

/// What the warehouse receives through the stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Shipment {
    /// The customer to ship to.
    pub customer: String,
    /// The SKU to ship.
    pub sku: String,
    /// How many.
    pub quantity: u64,
}

/// How an order request ends, the `outcome` label of `shop_order_requests_total`: placed
/// (201, the order ran), replayed (201, a retry or duplicate got the recorded receipt),
/// `rate_limited` (429), rejected (400), failed (redisx's problem+json). Each is a series from
/// the start: a rate over a series that appears with its first increment misses it.
pub const OUTCOMES: [&str; 5] = ["placed", "replayed", "rate_limited", "rejected", "failed"];

/// The label set of `shop_order_requests_total`.
type OutcomeLabels = [(&'static str, &'static str); 1];

/// The application's own metrics, registered on the runtime's registry under `shop_`:
/// `shop_order_requests_total{outcome}` and `shop_order_duration_seconds`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ShopMetrics {
    requests: Family<OutcomeLabels, Counter>,
    duration: Histogram,
}

impl ShopMetrics {
    /// Registers the shop's metrics on `registry` (`rx.registry()`, or the registry given to
    /// `RedisXBuilder::registry`), under the prefix `shop`.
    pub fn register(registry: &SharedRegistry) -> Self {
        let m = Self {
            requests: Family::default(),
            // 10 ms to ~10 s.
            duration: Histogram::new(exponential_buckets(0.01, 2.0, 11)),
        };
        for outcome in OUTCOMES {
            let _ = m.requests.get_or_create(&[("outcome", outcome)]);
        }
        // A poisoned lock only means a panic elsewhere while registering: the registry is
        // still whole.
        let mut registry = registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let shop = registry.sub_registry_with_prefix("shop");
        shop.register(
            "order_requests",
            "Order requests, by outcome",
            m.requests.clone(),
        );
        shop.register(
            "order_duration_seconds",
            "Time to answer an order request",
            m.duration.clone(),
        );
        m
    }

    /// Counts one request (`outcome`: one of [`OUTCOMES`]) and its duration.
    pub fn record(&self, outcome: &'static str, took: Duration) {
        self.requests.get_or_create(&[("outcome", outcome)]).inc();
        self.duration.observe(took.as_secs_f64());
    }
}

/// A runtime for the shop on `url` under `prefix`: a `default` client, and a `streams` client
/// for the streams plugin (so the per-client panels show two clients); retries of failed
/// shipments 50 ms doubling to 1 s (the default, 1 s to 30 s, suits production).
pub async fn runtime(url: &str, prefix: &str) -> redisx::Result<RedisX> {
    let streams = StreamsConfig::default().client("streams").backoff(Backoff {
        initial: Duration::from_millis(50),
        multiplier: 2.0,
        max: Duration::from_secs(1),
    });
    RedisX::builder()
        .client("default", ConnectionConfig::from_url(url)?)
        .client("streams", ConnectionConfig::from_url(url)?)
        .key_prefix(prefix)
        .streams(streams)
        .build()
        .await
}

/// What the handlers need.
#[derive(Clone)]
struct AppState {
    rx: RedisX,
    metrics: ShopMetrics,
    payment_latency: Duration,
}

/// The service: `GET /metrics` (`OpenMetrics` text: the redisx families and the shop's) and
/// `POST /orders` (a JSON [`OrderRequest`], a required `Idempotency-Key` header; 201 with a
/// JSON [`Receipt`], 429 over [`ORDERS_PER_MINUTE`], 400 for a bad request). Charging takes
/// `payment_latency` (a slow payment provider).
pub fn app(rx: RedisX, metrics: ShopMetrics, payment_latency: Duration) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/orders", post(order))
        .with_state(AppState {
            rx,
            metrics,
            payment_latency,
        })
}

/// `GET /metrics`.
async fn scrape(State(app): State<AppState>) -> Response {
    // `redisx_stream_lag` is set when something reads the group's lag (each running consumer,
    // every 10 s; `lag`, `groups`, `info`): read it now, so the scrape is current. A failure
    // (Redis down, no group yet) leaves the last value: a scrape must not fail for it.
    let _ = app.rx.streams().lag(STREAM, GROUP).await;
    ([(CONTENT_TYPE, OPENMETRICS)], app.rx.metrics_text()).into_response()
}

/// `POST /orders`: answers, and counts the answer in the shop's metrics.
async fn order(State(app): State<AppState>, headers: HeaderMap, body: String) -> Response {
    let started = Instant::now();
    // Boxed: the idempotency run, the lock and the cache load nest deep futures.
    let (outcome, response) = Box::pin(place(&app, &headers, &body)).await;
    app.metrics.record(outcome, started.elapsed());
    response
}

/// Places the order of `body` once per `Idempotency-Key`.
async fn place(app: &AppState, headers: &HeaderMap, body: &str) -> (&'static str, Response) {
    let bad = |why: String| ("rejected", (StatusCode::BAD_REQUEST, why).into_response());
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) else {
        return bad("an Idempotency-Key header is required".to_owned());
    };
    let req: OrderRequest = match serde_json::from_str(body) {
        Ok(req) => req,
        Err(e) => return bad(format!("bad order: {e}")),
    };
    if !CATALOG.iter().any(|(sku, _)| *sku == req.sku) || req.quantity == 0 {
        return bad(format!("no such item: {} x {}", req.quantity, req.sku));
    }
    let rx = &app.rx;

    // Retries count too: a client retrying in a loop is throttled like any other.
    let limit = Limit::sliding_window(ORDERS_PER_MINUTE, Duration::from_secs(60));
    match rx
        .rate_limiter()
        .check(&format!("orders:{}", req.customer), &limit)
        .await
    {
        Ok(d) if d.allowed => {}
        Ok(d) => {
            let secs = d.retry_after.as_secs() + u64::from(d.retry_after.subsec_nanos() > 0);
            let res = (
                StatusCode::TOO_MANY_REQUESTS,
                [(RETRY_AFTER, secs.to_string())],
                "too many orders",
            );
            return ("rate_limited", res.into_response());
        }
        Err(e) => return ("failed", e.into_response()),
    }

    let mut fp = Fingerprint::new();
    fp.arg("order", &req);
    let fingerprint = match fp.finish() {
        Ok(f) => f,
        Err(e) => return ("failed", e.into_response()),
    };
    // Set by the body: a replay answers without running it.
    let ran = AtomicBool::new(false);
    let key = format!("order:{key}");
    let lock = LockOptions::new().wait(Duration::from_secs(5));
    let customer = format!("customer:{}", req.customer);
    // Boxed: the lock and the cache load nest deep futures (clippy's `large_futures`).
    let charged = async {
        ran.store(true, Ordering::Relaxed);
        let locked = rx.locks().with_lock(&customer, &lock, charge(app, &req));
        Box::pin(locked).await
    };
    let opts = IdempotencyOptions::new();
    let run = rx.idempotency().run(&key, &fingerprint, &opts, charged);
    let result: redisx::Result<Receipt> = Box::pin(run).await;
    match result {
        Ok(receipt) => {
            let outcome = if ran.load(Ordering::Relaxed) {
                "placed"
            } else {
                "replayed"
            };
            let json = serde_json::to_string(&receipt).unwrap_or_default();
            let res = (
                StatusCode::CREATED,
                [(CONTENT_TYPE, "application/json")],
                json,
            );
            (outcome, res.into_response())
        }
        Err(e) => ("failed", e.into_response()),
    }
}

/// Prices the order (through the cache), charges it (the payment latency) and hands it to
/// the warehouse through the stream.
async fn charge(app: &AppState, req: &OrderRequest) -> redisx::Result<Receipt> {
    let unit = price(&app.rx, &req.sku).await?;
    tokio::time::sleep(app.payment_latency).await;
    let shipment = Shipment {
        customer: req.customer.clone(),
        sku: req.sku.clone(),
        quantity: req.quantity,
    };
    let order = app.rx.streams().publish(STREAM, &shipment).await?;
    Ok(Receipt {
        order,
        total: unit * req.quantity,
    })
}

/// The price of `sku` in cents, cached for 10 minutes (L1 and L2); a miss asks the slow
/// pricing service, once for all the callers of the moment.
pub async fn price(rx: &RedisX, sku: &str) -> redisx::Result<u64> {
    let ttl = Some(Duration::from_secs(600));
    let key = format!("price:{sku}");
    let load = rx.cache().get_or_load(&key, ttl, || async {
        tokio::time::sleep(PRICING_LATENCY).await;
        let price = CATALOG.iter().find(|(s, _)| *s == sku).map(|(_, p)| *p);
        Ok::<_, redisx::Error>(price.unwrap_or(0))
    });
    // Boxed: the cache's miss path is a deep future (clippy's `large_futures`).
    Box::pin(load).await
}

/// Starts the warehouse: a consumer of [`STREAM`] in [`GROUP`] that ships each order; the
/// [`DISCONTINUED`] SKU fails, is retried once, then goes to the DLQ. Messages a stopped
/// consumer left pending are reclaimed after 500 ms idle (30 s by default; short here so the
/// demo sees it).
pub async fn start_fulfilment(rx: &RedisX) -> redisx::Result<ConsumerHandle> {
    let opts = ConsumerOptions::new(GROUP)
        .concurrency(2)
        .max_retries(1)
        .block(Duration::from_secs(1))
        .claim_idle(Duration::from_millis(500))
        .start_id("0");
    rx.streams()
        .consumer(STREAM, opts, |msg: Message<Shipment>| async move {
            let s = msg.payload();
            if s.sku == DISCONTINUED {
                return Err(format!("the warehouse no longer stocks {}", s.sku));
            }
            Ok(())
        })
        .start()
        .await
}

/// What a consumer that crashed before this process started left behind: an order it read
/// and never acknowledged, which the stream's cap then removed (simulated: a plain
/// `XREADGROUP` as consumer `crashed`, then `XDEL`, what `MAXLEN ~` does to a group far
/// behind). The fulfilment consumer reclaims it after its idle time, finds it gone and
/// records it in the DLQ as lost (`redisx_stream_trimmed_pending_total`). Call it before
/// [`start_fulfilment`], which would otherwise read the order first.
pub async fn simulate_crashed_consumer(rx: &RedisX) -> redisx::Result<()> {
    rx.streams().create_group(STREAM, GROUP, "0").await?;
    let shipment = Shipment {
        customer: "zoe".to_owned(),
        sku: "mug".to_owned(),
        quantity: 1,
    };
    let id = rx.streams().publish(STREAM, &shipment).await?;
    let key = rx.streams().keys(STREAM, false)?.stream;
    let read = [
        "GROUP", GROUP, "crashed", "COUNT", "1", "STREAMS", &key, ">",
    ];
    let _: redis::Value = rx
        .client()
        .query(redis::cmd("XREADGROUP").arg(&read))
        .await?;
    let _: u64 = rx
        .client()
        .query(redis::cmd("XDEL").arg(&key).arg(&id))
        .await?;
    Ok(())
}

/// Deletes every key under `prefix` (`SCAN` + `UNLINK`), so a second run starts fresh.
pub async fn clear_prefix(rx: &RedisX, prefix: &str) -> redisx::Result<()> {
    let pattern = format!("{prefix}*");
    let mut cursor = 0_u64;
    loop {
        let scan = redis::cmd("SCAN")
            .arg(cursor)
            .arg(&["MATCH", &pattern, "COUNT", "500"])
            .clone();
        let (next, keys): (u64, Vec<String>) = rx.client().query(&scan).await?;
        if !keys.is_empty() {
            let _: u64 = rx.client().query(redis::cmd("UNLINK").arg(&keys)).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// An error of the demo traffic.
type DemoError = Box<dyn std::error::Error + Send + Sync>;

/// POSTs an order of one `sku` for `customer` with `key`; returns the status and the body.
async fn post_order(
    c: &reqwest::Client,
    base: &str,
    key: &str,
    customer: &str,
    sku: &str,
) -> Result<(u16, String), DemoError> {
    let req = OrderRequest {
        customer: customer.to_owned(),
        sku: sku.to_owned(),
        quantity: 1,
    };
    let res = c
        .post(format!("{base}/orders"))
        .header("idempotency-key", key)
        .body(serde_json::to_string(&req)?)
        .send()
        .await?;
    Ok((res.status().as_u16(), res.text().await?))
}

/// Plays the demo's traffic against the app at `base` (served with `rx`, whose fulfilment
/// consumer runs), drives what traffic alone does not show, and waits for the warehouse to
/// finish; returns one line per thing observed. Afterwards every redisx metric family has
/// samples.
pub async fn exercise(
    rx: &RedisX,
    http: &reqwest::Client,
    base: &str,
) -> Result<Vec<String>, DemoError> {
    let mut seen = Vec::new();
    play_orders(rx, http, base, &mut seen).await?;
    drive_plugins(rx, &mut seen).await?;

    // The stream: every order shipped or dead-lettered (the lamp after its retry, the
    // crashed consumer's order as lost), nothing pending or delayed.
    client::wait_for("the warehouse to finish", || async {
        let info = rx.streams().info(STREAM).await?.unwrap_or_default();
        let idle = info
            .groups
            .iter()
            .all(|g| g.pending == 0 && g.lag == Some(0));
        Ok(info.dlq_length >= 2 && info.delayed == 0 && idle)
    })
    .await?;
    for dead in rx.streams().dlq_list(STREAM, 10).await? {
        let (id, error) = (dead.original_id, dead.error);
        let (id, error) = (id.unwrap_or_default(), error.unwrap_or_default());
        seen.push(format!(
            "DLQ: {id} after {} attempt(s): {error}",
            dead.attempts
        ));
    }
    Ok(seen)
}

/// Orders over HTTP: placed (a cache miss), retried (a replay), duplicated while the first
/// still runs (the duplicate waits, then replays; the price is an L1 hit), rate limited,
/// and one the warehouse will refuse.
async fn play_orders(
    rx: &RedisX,
    http: &reqwest::Client,
    base: &str,
    seen: &mut Vec<String>,
) -> Result<(), DemoError> {
    let (status, body) = post_order(http, base, "a-1", "alice", "mug").await?;
    seen.push(format!("order a-1:             {status} {body}"));
    let (status, body) = post_order(http, base, "a-1", "alice", "mug").await?;
    seen.push(format!("retry of a-1:          {status} {body} (replayed)"));
    let first = tokio::spawn({
        let (http, base) = (http.clone(), base.to_owned());
        async move { post_order(&http, &base, "a-2", "alice", "mug").await }
    });
    client::wait_for("order a-2 to run", || async {
        let record = rx.idempotency().get("order:a-2").await?;
        Ok(record.is_some_and(|r| r.status() == Status::Processing))
    })
    .await?;
    let (status, body) = post_order(http, base, "a-2", "alice", "mug").await?;
    let (first_status, _) = first.await??;
    seen.push(format!(
        "a-2 and its duplicate: {first_status}, {status} {body} (waited, replayed)"
    ));
    for key in ["a-3", "a-4"] {
        let (status, body) = post_order(http, base, key, "alice", "mug").await?;
        seen.push(format!("order {key}:             {status} {body}"));
    }
    let (status, body) = post_order(http, base, "b-1", "bob", DISCONTINUED).await?;
    seen.push(format!("order b-1 ({DISCONTINUED}):      {status} {body}"));
    Ok(())
}

/// The cache, the locks and the client through their APIs: an L2 hit, a stampede, lock
/// contention, a lost lock, a command error.
async fn drive_plugins(rx: &RedisX, seen: &mut Vec<String>) -> Result<(), DemoError> {
    // An L2 hit after L1 is emptied (as in a fresh instance); four callers of a cold key
    // sharing one load.
    rx.cache().clear_l1();
    price(rx, "mug").await?;
    let kettles = tokio::join!(
        price(rx, "kettle"),
        price(rx, "kettle"),
        price(rx, "kettle"),
        price(rx, "kettle")
    );
    for price in <[_; 4]>::from(kettles) {
        price?;
    }
    let stats = rx.cache().stats();
    seen.push(format!(
        "cache: L1 hits {}, L2 hits {}, loads {}, stampedes prevented {}",
        stats.l1_hits, stats.l2_hits, stats.loads, stats.stampedes_prevented
    ));

    // Carol's lock held elsewhere: `try_acquire` finds it busy, `acquire` gives up. Then a
    // lock whose holder stopped renewing it is lost at its ttl.
    let locks = rx.locks();
    let held = locks.acquire("customer:carol", &LockOptions::new()).await?;
    let busy = locks
        .try_acquire("customer:carol", &LockOptions::new())
        .await?;
    let patient = LockOptions::new()
        .retries(2)
        .retry(RetryStrategy::Fixed(Duration::from_millis(20)));
    let gave_up = locks.acquire("customer:carol", &patient).await.err();
    held.release().await?;
    let paused = LockOptions::new()
        .ttl(Duration::from_millis(100))
        .auto_renew(false);
    let guard = locks.acquire("report:daily", &paused).await?;
    tokio::time::timeout(Duration::from_secs(2), guard.lost()).await?;
    drop(guard);
    let stats = locks.stats();
    seen.push(format!(
        "locks: try_acquire of a held lock: {}; acquire: {}; lost at its ttl: {}",
        if busy.is_some() { "acquired?" } else { "busy" },
        gave_up.map_or_else(|| "acquired?".to_owned(), |e| e.code().to_string()),
        stats.lost
    ));

    // A command error: INCR on a value that is not a number.
    let key = format!("{}greeting", rx.key_prefix());
    let () = rx
        .client()
        .query(redis::cmd("SET").arg(&key).arg("hello"))
        .await?;
    let incr: redisx::Result<i64> = rx.client().query(redis::cmd("INCR").arg(&key)).await;
    let outcome = incr.map_or_else(|e| e.code().to_string(), |n| n.to_string());
    seen.push(format!("INCR on a string:      {outcome}"));
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), DemoError> {
    // `_server` stops a throwaway server.
    let (url, _server) = server::find_or_start_redis().map_err(|e| e.to_string())?;
    let prefix = "metrics-example:";
    let rx = runtime(&url, prefix).await?;
    clear_prefix(&rx, prefix).await?; // start fresh when run again on the same server
    let metrics = ShopMetrics::register(&rx.registry());
    simulate_crashed_consumer(&rx).await?;
    let consumer = start_fulfilment(&rx).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let service = app(rx.clone(), metrics, Duration::from_millis(300));
    tokio::spawn(async move { axum::serve(listener, service).await });
    println!("--> serving POST {base}/orders and GET {base}/metrics");

    // reqwest is built without a TLS provider of its own; plain HTTP needs one all the same.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::builder().no_proxy().build()?;
    for line in Box::pin(exercise(&rx, &c, &base)).await? {
        println!("--> {line}");
    }

    // What Prometheus would scrape: every redisx family, and the shop's own.
    let text = c
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let families = |p: &str| {
        let head = format!("# TYPE {p}");
        text.lines().filter(|l| l.starts_with(&head)).count()
    };
    let (redisx, shop) = (families("redisx_"), families("shop_"));
    println!("--> GET /metrics: {redisx} redisx_ families, {shop} shop_ families");
    for line in text
        .lines()
        .filter(|l| l.starts_with("shop_order_requests_total"))
    {
        println!("-->   {line}");
    }
    consumer.stop().await;
    rx.shutdown().await;
    Ok(())
}
