//! The service recipe (`examples/service/`: its `app`, `run`, `Service`, command line and OTLP
//! module as they are) through a real HTTP server and client on loopback and Redis servers of
//! its own: `/health` reports each client's `PING` round trip and answers 503 while one
//! client's server is down; `/metrics` holds the redisx families after traffic, and only
//! `/api/*` is rate limited; an order runs once per key and the account's lock keeps two
//! instances within its budget; a graceful shutdown finishes the request in flight and refuses
//! new connections, lets the consumer finish the order it holds (acknowledged, nothing
//! pending) and releases a lock still held; with `--otlp` pointed at a receiver in this test,
//! a request's spans arrive as one trace, from the server span to the consumer's processing.

// The example's `pub` items are public to its readers, not from this crate, and some are only
// used by its `main`.
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/service/app.rs"]
mod app;
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/service/cli.rs"]
mod cli;
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/service/otlp.rs"]
mod otlp;
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/service/shop.rs"]
mod shop;

use std::net::SocketAddr;
use std::time::Duration;

use app::{CLIENTS, Config, DOWN, Health, Service, UP};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest as Export, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use redisx::lock::LockOptions;
use redisx::rate_limit::Limit;
use redisx::streams::StreamsConfig;
use redisx::testing::{ChildProcess, in_scenario};
use redisx::{ConnectionConfig, RedisX, redis};
use redisx_tests::http::client;
use redisx_tests::otlp::{Received, attr, kind, print_tree, spans};
use redisx_tests::{RedisServer, eventually, quick_connection, unique_prefix};
use shop::{Accepted, GROUP, OrderRequest, Product, STREAM};
use tokio::sync::oneshot;

/// The recipe's settings with a quick database and warehouse.
fn quick() -> Config {
    Config {
        product_latency: Duration::from_millis(20),
        ship_latency: Duration::from_millis(10),
        ..Config::default()
    }
}

/// A service served by `app::run` on a loopback port, with its stop trigger.
struct Running {
    service: Service,
    base: String,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Starts the service on `rx` and serves `app(&service)` passed through `wrap`.
    async fn start(
        rx: RedisX,
        config: Config,
        wrap: impl FnOnce(axum::Router) -> axum::Router,
    ) -> Self {
        let service = Service::start(rx, config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let trigger = async {
            let _ = stopped.await;
        };
        let (router, stop) = (wrap(app::app(&service)), Some(stop));
        let server = tokio::spawn(app::run(listener, router, service.clone(), trigger));
        Self {
            service,
            base,
            stop,
            server,
        }
    }

    /// Triggers the graceful shutdown.
    fn trigger(&mut self) {
        let _ = self.stop.take().expect("triggered once").send(());
    }

    /// Waits (5 s at most) for `run` to return.
    async fn ended(self) {
        let ended = tokio::time::timeout(Duration::from_secs(5), self.server).await;
        ended.expect("run returns").unwrap().unwrap();
    }

    /// Triggers the shutdown and waits for `run` to return.
    async fn shut_down(mut self) {
        self.trigger();
        self.ended().await;
    }
}

/// A runtime of the recipe on `url` under `prefix`.
async fn runtime(url: &str, prefix: &str) -> RedisX {
    app::runtime(url, url, prefix).await.unwrap()
}

/// A runtime on `url` under `prefix` with the `default` client: what another instance sees.
async fn probe(url: &str, prefix: &str) -> RedisX {
    let url = ConnectionConfig::from_url(url).unwrap();
    let builder = RedisX::builder().client("default", url).key_prefix(prefix);
    builder.build().await.unwrap()
}

/// Waits up to 5 s for `check`; panics with `what` when it never holds.
async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let (within, every) = (Duration::from_secs(5), Duration::from_millis(5));
    let held = eventually(within, every, || std::future::ready(check())).await;
    assert!(held, "{what}");
}

/// POSTs the order `key`: `quantity` of `product` for `account`.
async fn post_order(base: &str, key: &str, order: (&str, u64, u64)) -> reqwest::Response {
    let (account, product, quantity) = (order.0.to_owned(), order.1, order.2);
    let body = serde_json::to_string(&OrderRequest {
        account,
        product,
        quantity,
    })
    .unwrap();
    let req = client().post(format!("{base}/api/orders")).body(body);
    req.header("idempotency-key", key).send().await.unwrap()
}

/// The status of `post_order`.
async fn order_status(base: &str, key: &str, order: (&str, u64, u64)) -> u16 {
    post_order(base, key, order).await.status().as_u16()
}

/// GETs `path` on a new connection.
async fn fetch(base: &str, path: &str) -> reqwest::Response {
    client().get(format!("{base}{path}")).send().await.unwrap()
}

/// GETs `path`; the status and the body.
async fn get(base: &str, path: &str) -> (u16, String) {
    let res = fetch(base, path).await;
    (res.status().as_u16(), res.text().await.unwrap())
}

/// GETs `/health`: the status and the report.
async fn health(base: &str) -> (u16, Health) {
    let (status, body) = get(base, "/health").await;
    (status, serde_json::from_str(&body).unwrap())
}

/// The sum of the samples of `name label=".." ..` in an `OpenMetrics` body (the whole-number
/// samples of `name` with each of those labels); `None` when there is no such sample.
fn sample(body: &str, selector: &str) -> Option<u64> {
    let mut parts = selector.split(' ');
    let head = format!("{}{{", parts.next().unwrap_or_default());
    let labels: Vec<&str> = parts.collect();
    let values: Vec<u64> = body
        .lines()
        .filter(|l| l.starts_with(&head) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_each_clients_ping_and_is_503_while_one_is_down() {
    let main = RedisServer::start();
    let mut streams = RedisServer::start_owned();
    // The recipe's runtime, with the quick reconnect of the tests that stop their server.
    let rx = RedisX::builder()
        .client(CLIENTS[0], quick_connection(&main.url()))
        .client(CLIENTS[1], quick_connection(&streams.url()))
        .key_prefix(unique_prefix("recipe_service_health"))
        .streams(StreamsConfig::default().client(CLIENTS[1]))
        .build()
        .await
        .unwrap();
    let running = Running::start(rx, quick(), |r| r).await;
    let base = running.base.clone();
    let status_becomes = |want: u16| {
        let (base, every) = (base.clone(), Duration::from_millis(50));
        eventually(Duration::from_secs(5), every, move || {
            let base = base.clone();
            async move { health(&base).await.0 == want }
        })
    };

    let (status, report) = health(&base).await;
    assert_eq!((status, report.status.as_str()), (200, UP), "{report:?}");
    assert_eq!(report.clients.keys().collect::<Vec<_>>(), CLIENTS);
    for (name, client) in &report.clients {
        assert_eq!((client.status.as_str(), &client.error), (UP, &None));
        let ms = client.latency_ms.expect("a round trip");
        assert!(ms > 0.0 && ms.is_finite(), "{name}: {ms}");
    }

    streams.kill();
    assert!(status_becomes(503).await, "200 with a server killed");
    let (_, report) = health(&base).await;
    assert_eq!(report.status, DOWN);
    let (default, dead) = (&report.clients["default"], &report.clients["streams"]);
    assert_eq!(default.status, UP, "the default client's server still runs");
    assert!(default.latency_ms.is_some());
    assert_eq!((dead.status.as_str(), dead.latency_ms), (DOWN, None));
    assert!(dead.error.as_ref().is_some_and(|e| !e.is_empty()));

    streams.start_again();
    assert!(status_becomes(200).await, "503 once the server is back");
    running.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_hold_the_redisx_families_and_only_the_api_is_rate_limited() {
    let server = RedisServer::start();
    let rx = runtime(&server.url(), &unique_prefix("recipe_service_metrics")).await;
    let api_limit = Limit::fixed_window(4, Duration::from_secs(60));
    let running = Running::start(
        rx,
        Config {
            api_limit,
            ..quick()
        },
        |r| r,
    )
    .await;
    let base = running.base.clone();

    assert_eq!(health(&base).await.0, 200);
    for left in ["3", "2"] {
        let res = fetch(&base, "/api/products/1").await;
        assert_eq!(res.headers()["x-ratelimit-remaining"], left);
        let product: Product = serde_json::from_str(&res.text().await.unwrap()).unwrap();
        assert_eq!((product.id, product.name.as_str()), (1, "mug"));
    }
    let queries = running.service.catalog().queries();
    assert_eq!(queries, 1, "the second read is a hit");
    assert_eq!(get(&base, "/api/products/99").await.0, 404);
    assert_eq!(order_status(&base, "m-1", ("acct-m", 1, 2)).await, 202);
    let warehouse = running.service.warehouse().clone();
    wait_until("the order is shipped", || warehouse.shipped().len() == 1).await;
    // The limit (4 a minute per address) is spent: /api refuses, probes and scrapes do not.
    let refused = fetch(&base, "/api/products/1").await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(order_status(&base, "m-2", ("acct-m", 1, 1)).await, 429);
    for _ in 0..5 {
        assert_eq!(health(&base).await.0, 200, "probes are never limited");
    }

    let res = fetch(&base, "/metrics").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], app::OPENMETRICS);
    let body = res.text().await.unwrap();
    // `value name label=".." ..`: the sum of the samples of `name` with those labels.
    let expected = [
        // The pings of the 6 health checks, on each client; the publish on `streams`.
        r#"6 redisx_commands_total command="PING" client="default""#,
        r#"6 redisx_commands_total command="PING" client="streams""#,
        r#"1 redisx_commands_total command="XADD" client="streams""#,
        // Product 1 missed once, then hit L1 for the second read and for the order; 99 missed.
        r#"2 redisx_cache_hits_total layer="l1""#,
        r#"2 redisx_cache_misses_total layer="l2""#,
        r#"1 redisx_lock_acquisitions_total status="acquired""#,
        r#"4 redisx_ratelimit_requests_total status="allowed""#,
        r#"1 redisx_idempotency_requests_total status="new""#,
        r#"1 redisx_stream_messages_published_total stream="orders""#,
        r#"1 redisx_stream_messages_consumed_total status="success""#,
        // Read at the scrape: the consumer is up to date.
        r#"0 redisx_stream_lag stream="orders" group="fulfilment""#,
    ];
    for line in expected {
        let (value, selector) = line.split_once(' ').unwrap();
        assert_eq!(sample(&body, selector), value.parse().ok(), "{selector}");
    }
    // The second refusal may be answered in process, without Redis (`local_deny`).
    let refusals = ["denied", "local_deny"].map(|status| {
        let selector = format!(r#"redisx_ratelimit_requests_total status="{status}""#);
        sample(&body, &selector).unwrap_or(0)
    });
    assert_eq!(refusals.iter().sum::<u64>(), 2);
    for family in [
        "command_duration_seconds",
        "stream_processing_duration_seconds",
    ] {
        assert!(body.contains(&format!("# TYPE redisx_{family} histogram")));
    }
    running.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_runs_once_per_key_and_two_instances_keep_the_budget() {
    let server = RedisServer::start();
    let prefix = unique_prefix("recipe_service_orders");
    // A slow database widens the window between reading what an account spent and writing it.
    let config = Config {
        product_latency: Duration::from_millis(300),
        ..quick()
    };
    let (one, two) = (
        runtime(&server.url(), &prefix).await,
        runtime(&server.url(), &prefix).await,
    );
    let a = Running::start(one, config.clone(), |r| r).await;
    let b = Running::start(two, config, |r| r).await;

    // 78.00 of kettles and 50.00 of teapots on a budget of 100.00, one order to each instance
    // at once: the account's lock lets one in, and the other sees what it spent.
    let (kettles, teapots) = (("acct-o", 2, 2), ("acct-o", 3, 2));
    let (x, y) = tokio::join!(
        post_order(&a.base, "o-1", kettles),
        post_order(&b.base, "o-2", teapots)
    );
    let mut statuses = [x.status().as_u16(), y.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [202, 409], "exactly one order fits the budget");
    let (first, key, order, other) = match x.status().as_u16() {
        202 => (x, "o-1", kettles, &b.base),
        _ => (y, "o-2", teapots, &a.base),
    };
    let first = first.text().await.unwrap();
    let accepted: Accepted = serde_json::from_str(&first).unwrap();
    assert_eq!(
        (accepted.order.as_str(), accepted.spent),
        (key, accepted.total)
    );

    // A retry on the other instance replays the same answer and publishes nothing.
    let retry = post_order(other, key, order).await;
    assert_eq!(retry.status(), 202);
    assert_eq!(retry.headers()["idempotency-replayed"], "true");
    assert_eq!(retry.text().await.unwrap(), first);
    let probe = probe(&server.url(), &prefix).await;
    let (wa, wb) = (a.service.warehouse().clone(), b.service.warehouse().clone());
    let shipped = || wa.shipped().len() + wb.shipped().len();
    wait_until("the order is shipped", || shipped() == 1).await;

    // Refusals: an unknown product, a malformed account or quantity, no key.
    assert_eq!(order_status(&a.base, "o-3", ("acct-o", 99, 1)).await, 422);
    assert_eq!(order_status(&a.base, "o-4", ("acct o", 1, 1)).await, 400);
    assert_eq!(order_status(&a.base, "o-5", ("acct-o", 1, 0)).await, 400);
    let no_key = client().post(format!("{}/api/orders", a.base)).body("{}");
    assert_eq!(no_key.send().await.unwrap().status(), 400);
    let published = probe.streams().len(STREAM).await.unwrap();
    assert_eq!(published, 1, "one order published in all");
    a.shut_down().await;
    b.shut_down().await;
    probe.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_finishes_the_work_in_flight_and_releases_held_locks() {
    let server = RedisServer::start();
    let prefix = unique_prefix("recipe_service_shutdown");
    let config = Config {
        product_latency: Duration::from_secs(1),
        ..quick()
    };
    let mut running = Running::start(runtime(&server.url(), &prefix).await, config, |r| r).await;
    let (base, probe) = (running.base.clone(), probe(&server.url(), &prefix).await);
    let (service, warehouse) = (running.service.clone(), running.service.warehouse().clone());

    // A background job holds a lock; the warehouse holds the next order until it resumes; a
    // product read waits for the database.
    let ttl = LockOptions::new().ttl(Duration::from_secs(30));
    let job = service.rx().locks().acquire("report:nightly", &ttl);
    let job = job.await.unwrap();
    warehouse.pause();
    let res = post_order(&base, "d-1", ("acct-d", 1, 1)).await;
    assert_eq!(res.status(), 202);
    let accepted: Accepted = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    wait_until("the order reaches the warehouse", || {
        warehouse.working() == 1
    })
    .await;
    let url = base.clone();
    let in_flight = tokio::spawn(async move { get(&url, "/api/products/2").await });
    let queries = || service.catalog().queries();
    wait_until("the read reaches the database", || queries() == 2).await;

    running.trigger();
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "the request in flight is answered: {body}");
    let product: Product = serde_json::from_str(&body).unwrap();
    assert_eq!(product.name, "kettle");
    let refused = eventually(Duration::from_secs(5), Duration::from_millis(20), || {
        // A fresh client: a new connection, not one kept alive.
        let health = client().get(format!("{base}/health")).send();
        async move { health.await.is_err_and(|e| e.is_connect()) }
    });
    assert!(refused.await, "a new connection is still accepted");
    let rx = service.rx().clone();
    wait_until("the runtime's shutdown begins", || rx.is_shut_down()).await;
    // The shutdown waits for the order: nothing shipped yet, the job's lock still held.
    assert!(
        !running.server.is_finished(),
        "run returned with an order in the handler"
    );
    assert_eq!((warehouse.shipped().len(), warehouse.working()), (0, 1));
    assert!(probe.locks().is_locked("report:nightly").await.unwrap());

    warehouse.resume();
    running.ended().await;
    let shipped = warehouse.shipped();
    assert_eq!(shipped.len(), 1, "{shipped:?}");
    assert_eq!(
        (shipped[0].order.id.as_str(), &shipped[0].message),
        ("d-1", &accepted.message)
    );
    assert!(
        shipped[0].during_shutdown,
        "the order finished during the shutdown"
    );
    let pending = probe.streams().pending(STREAM, GROUP).await.unwrap();
    assert_eq!(pending.count, 0, "the order was acknowledged: {pending:?}");
    assert_eq!(probe.streams().lag(STREAM, GROUP).await.unwrap(), Some(0));
    assert!(!service.consuming());
    // Released by the shutdown, though the job never released it.
    assert!(!probe.locks().is_locked("report:nightly").await.unwrap());
    let exists = redis::cmd("EXISTS")
        .arg(format!("{prefix}lock:report:nightly"))
        .clone();
    let exists: bool = probe.client().query(&exists).await.unwrap();
    assert!(!exists, "the lock's key is gone");
    drop(job);
    probe.shutdown().await;
}

#[test]
fn the_command_line_takes_otlp_from_the_flag_or_the_environment() {
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let env = |var: &str| (var == cli::OTLP_ENV[1]).then(|| "http://c:4318".to_owned());
    let with_env = |a: &[&str]| cli::parse(args(a), env).unwrap();
    let parse = |a: &[&str]| cli::parse(args(a), |_| None);

    let opts = parse(&[]).unwrap();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    assert_eq!(
        (opts.otlp, opts.listen, opts.serve),
        (cli::Otlp::Off, loopback, false)
    );
    assert_eq!(with_env(&[]).otlp, cli::Otlp::Environment);
    let flag = cli::Otlp::Endpoint("http://127.0.0.1:4318".to_owned());
    assert_eq!(
        with_env(&["--otlp", "http://127.0.0.1:4318"]).otlp,
        flag,
        "the flag wins"
    );
    assert_eq!(parse(&["--otlp=http://127.0.0.1:4318"]).unwrap().otlp, flag);
    let serve = parse(&["--serve"]).unwrap();
    assert_eq!((serve.serve, serve.listen.port()), (true, 8080));
    let listen = parse(&["--serve", "--listen", "0.0.0.0:9000"]).unwrap();
    assert_eq!(listen.listen, SocketAddr::from(([0, 0, 0, 0], 9000)));
    assert!(parse(&["--help"]).unwrap().help);
    let bad: [&[&str]; 4] = [
        &["--otlp"],
        &["--otlp", "ftp://x"],
        &["--listen", "x"],
        &["-v"],
    ];
    for args in bad {
        assert!(parse(args).is_err(), "{args:?}");
    }
    assert_eq!(app::route_of("/api/products/7"), Some(app::PRODUCT_ROUTE));
    assert_eq!(app::route_of("/api/orders"), Some(app::ORDERS_ROUTE));
    for unrouted in ["/api/products/", "/api/products/7/x", "/api", "/nope"] {
        assert_eq!(app::route_of(unrouted), None, "{unrouted}");
    }
}

/// An OTLP/HTTP trace receiver on a free loopback port, on a thread and Tokio runtime of its
/// own (as in `tests/otlp.rs`): decodes every export request.
fn receiver() -> (String, Received) {
    type Reply = hyper::Response<Full<Bytes>>;
    async fn export(req: hyper::Request<Incoming>, store: Received) -> Reply {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        store.lock().unwrap().push(Export::decode(body).unwrap());
        let answer = ExportTraceServiceResponse::default().encode_to_vec();
        hyper::Response::new(Full::new(Bytes::from(answer)))
    }
    let received = Received::default();
    let (store, (tx, rx)) = (received.clone(), std::sync::mpsc::channel());
    std::thread::spawn(move || {
        redisx_tests::scenario_runtime().block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let io = hyper_util::rt::TokioIo::new(listener.accept().await.unwrap().0);
                let store = store.clone();
                let service = hyper::service::service_fn(move |req| {
                    let reply = export(req, store.clone());
                    async move { Ok::<_, hyper::Error>(reply.await) }
                });
                let http = hyper::server::conn::http1::Builder::new();
                tokio::spawn(http.serve_connection(io, service));
            }
        });
    });
    (format!("http://{}", rx.recv().unwrap()), received)
}

/// Whether `span` descends from `ancestor` among `all`.
fn descends(span: &Span, ancestor: &Span, all: &[Span]) -> bool {
    let mut parent = span.parent_span_id.clone();
    while !parent.is_empty() && parent != ancestor.span_id {
        let up = all.iter().find(|s| s.span_id == parent);
        parent = up.map(|s| s.parent_span_id.clone()).unwrap_or_default();
    }
    !parent.is_empty()
}

const OTLP_URL_ENV: &str = "RECIPE_SERVICE_OTLP_URL";
const REDIS_URL_ENV: &str = "RECIPE_SERVICE_REDIS_URL";

/// What `main` does with `--otlp URL` (the exporter, the global subscriber, the traced app),
/// in a child process of its own: a global subscriber is per process, and `tracing` caches
/// what each call site's first caller saw, so the other tests of this binary must not run
/// beside it.
#[test]
#[ignore = "scenario: run in a child process by the_otlp_flag_exports_a_requests_spans_as_one_trace"]
fn otlp_service() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    if !in_scenario("otlp_service") {
        return;
    }
    let url = std::env::var(OTLP_URL_ENV).unwrap();
    let opts = cli::parse(["--otlp".to_owned(), url], |_| None).unwrap();
    let cli::Otlp::Endpoint(endpoint) = opts.otlp else {
        panic!("{:?}", opts.otlp)
    };
    let (layer, telemetry) = otlp::Telemetry::build(Some(&endpoint)).unwrap();
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .unwrap();
    redisx_tests::scenario_runtime().block_on(async {
        let redis = std::env::var(REDIS_URL_ENV).unwrap();
        let rx = runtime(&redis, &unique_prefix("recipe_service_otlp")).await;
        let running = Running::start(rx, quick(), |r| telemetry.traced(r)).await;
        assert_eq!(get(&running.base, "/api/products/3").await.0, 200);
        assert_eq!(
            order_status(&running.base, "t-1", ("acct-t", 3, 1)).await,
            202
        );
        let warehouse = running.service.warehouse().clone();
        wait_until("the order is shipped", || warehouse.shipped().len() == 1).await;
        // `rx.shutdown()` sends the spans of the last calls.
        running.shut_down().await;
    });
    telemetry.shutdown().unwrap();
}

#[test]
fn the_otlp_flag_exports_a_requests_spans_as_one_trace() {
    let (url, received) = receiver();
    let server = RedisServer::start();
    let child = ChildProcess::scenario("otlp_service").env(OTLP_URL_ENV, &url);
    let mut child = child
        .env(REDIS_URL_ENV, server.url())
        .no_ready_line()
        .start();
    let status = child.wait_exit(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "the service failed:\n{}", child.output());
    let (services, all): (Vec<String>, Vec<Span>) = spans(&received).into_iter().unzip();
    print_tree(&spans(&received));
    assert!(
        services.iter().all(|s| s == otlp::SERVICE_NAME),
        "{services:?}"
    );
    let find = |name: &str| all.iter().find(|s| s.name == name).expect(name);
    let under = |parent: &Span, name: &str| {
        let found = all
            .iter()
            .find(|s| s.name == name && descends(s, parent, &all));
        found.unwrap_or_else(|| panic!("no {name} under {}", parent.name))
    };

    // The product read: a server span with the HTTP attributes, over the cache and commands.
    let get = find("GET /api/products/{id}");
    assert_eq!(kind(get), "server");
    let keys = ["http.route", "url.path", "http.response.status_code"];
    let values = keys.map(|k| attr(&get.attributes, k).unwrap_or_default());
    assert_eq!(values, [app::PRODUCT_ROUTE, "/api/products/3", "200"]);
    let cache_get = under(get, "cache.get");
    assert!(
        all.iter()
            .any(|s| descends(s, cache_get, &all) && kind(s) == "client")
    );

    // The order: its checks, the lock and the publish, and through the stream the consumer.
    let post = find("POST /api/orders");
    let status = attr(&post.attributes, "http.response.status_code");
    assert_eq!(status.as_deref(), Some("202"));
    for name in [
        "ratelimit.check",
        "idempotency.check",
        "lock.acquire",
        "XADD",
    ] {
        under(post, name);
    }
    let process = under(under(post, "stream.publish"), "stream.process");
    assert_eq!(kind(process), "consumer");
    assert_eq!(
        process.trace_id, post.trace_id,
        "the consumer continues the trace"
    );
    assert_ne!(get.trace_id, post.trace_id, "one trace per request");
}
