//! An axum service combining the plugins, with what operating it needs: `GET /health` (the
//! `PING` round trip of each Redis client, 503 when one fails), `GET /metrics` (the runtime's
//! Prometheus metrics), a graceful shutdown that drains the stream consumer and releases the
//! locks still held, and trace export over OTLP by flag.
//!
//! ```text
//! cargo run --example service                                   # the demo, then exit
//! cargo run --example service -- --serve                        # serve on 127.0.0.1:8080
//! cargo run --example service --features otlp -- --otlp http://127.0.0.1:4318
//! ```
//!
//! Uses the server in `REDIS_URL` when it is set, else one listening on `127.0.0.1:6379`, else
//! starts a throwaway `redis-server` from `PATH` (stopped at exit); the `streams` client uses
//! `REDIS_STREAMS_URL` when set, else the same server. Without `--serve` it serves on a free
//! loopback port and plays a client: health, a product read twice (a database query, then the
//! cache), an order and its retry (replayed), an order over the account's budget, the
//! warehouse shipping the order, a few lines of `/metrics`; then it shuts down while the
//! warehouse is still shipping an order and a background job holds a lock, and shows the
//! order finished and acknowledged, the lock released and new connections refused.
//!
//! The pieces ([`app`]): `GET /api/products/{id}` reads [`Catalog::product`], a `#[cached]`
//! method; `POST /api/orders` runs under [`redisx::http::IdempotencyLayer`] (a required
//! `Idempotency-Key`, the order's id) and [`Orders::place`], `#[with_lock]` on the account,
//! checks the account's budget and publishes the order to a stream, which the warehouse's
//! consumer ([`shop::start_warehouse`]) ships; `/api/*` is behind [`redisx::http::RateLimitLayer`]
//! (per client address). Two named clients: `default` for the cache, locks, rate limits and
//! idempotency, `streams` for the streams plugin. [`app::run`] serves until told to stop,
//! then stops accepting, finishes the requests in flight, and calls `rx.shutdown()`.
//!
//! With `--serve` it serves until SIGTERM or ctrl-c ([`app::shutdown_signal`]), or a line on
//! stdin, then shuts down gracefully as [`app::run`] says.

#[path = "../support/client.rs"]
mod client;
#[path = "../support/server.rs"]
mod server;

pub mod app;
pub mod cli;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod shop;

use std::error::Error;

use redisx::RedisX;
use redisx::lock::LockOptions;

use app::{Config, Service};
use shop::OrderRequest;

/// The key prefix of the example's keys.
const PREFIX: &str = "service-example:";

/// The orders the demo places (deleted first, so that a second run starts fresh).
const DEMO_ORDERS: [&str; 3] = ["demo-order-1", "demo-order-2", "demo-order-3"];

/// The accounts the demo orders for.
const DEMO_ACCOUNTS: [&str; 2] = ["acct-1", "acct-2"];

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let opts = match cli::parse(std::env::args().skip(1), |var| std::env::var(var).ok()) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("{e}\n\n{}", cli::USAGE);
            std::process::exit(2);
        }
    };
    if opts.help {
        println!("{}", cli::USAGE);
        return Ok(());
    }
    let telemetry = Telemetry::start(&opts.otlp)?;
    let (url, _server) = server::find_or_start_redis()?; // `_server` stops a throwaway server
    let streams_url = std::env::var("REDIS_STREAMS_URL").unwrap_or_else(|_| url.clone());
    let rx = app::runtime(&url, &streams_url, PREFIX).await?;
    start_fresh(&rx).await?;
    let service = Service::start(rx, Config::default()).await?;

    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = telemetry.traced(app::app(&service));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let trigger = async {
        let _ = stopped.await;
    };
    let server = tokio::spawn(app::run(listener, router, service.clone(), trigger));
    println!(
        "--> serving {base}/api/products/{{id}}, {base}/api/orders, {base}/health, {base}/metrics"
    );

    if opts.serve {
        println!("--> SIGTERM, ctrl-c or Enter shuts down gracefully");
        let signal = app::shutdown_signal()?;
        tokio::select! {
            () = signal => {}
            () = enter_pressed() => {}
        }
        let _ = stop.send(());
        server.await??;
        println!("--> shut down: consumers drained, locks released");
    } else {
        demo(&base, &service).await?;
        shutdown_demo(&base, &service, &url, stop, server).await?;
    }
    telemetry.shutdown()?;
    Ok(())
}

/// Deletes what a previous run left: the demo's order records, the accounts' spending and the
/// cached products.
async fn start_fresh(rx: &RedisX) -> redisx::Result<()> {
    for order in DEMO_ORDERS {
        rx.idempotency().delete(&format!("order:{order}")).await?;
    }
    for account in DEMO_ACCOUNTS {
        let key = format!("{}spent:{account}", rx.key_prefix());
        rx.client()
            .query::<()>(redisx::redis::cmd("DEL").arg(key))
            .await?;
    }
    for id in 1..=3 {
        rx.cache().delete(&format!("product:{id}")).await?;
    }
    Ok(())
}

/// Resolves when a line is read from stdin, or stdin closes.
async fn enter_pressed() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_line(&mut String::new());
        let _ = tx.send(());
    });
    let _ = rx.await;
}

/// The client's part: health, products, orders, metrics.
async fn demo(base: &str, service: &Service) -> Result<(), Box<dyn Error>> {
    // reqwest is built without a TLS provider of its own; plain HTTP needs one all the same.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::builder().no_proxy().build()?;

    let res = c.get(format!("{base}/health")).send().await?;
    println!(
        "--> GET /health: {} {}",
        res.status().as_u16(),
        res.text().await?
    );

    for _ in 0..2 {
        let res = c.get(format!("{base}/api/products/1")).send().await?;
        let limit = header(&res, "ratelimit");
        println!(
            "--> GET /api/products/1: {} {} (database queries so far: {}; RateLimit: {limit})",
            res.status().as_u16(),
            res.text().await?,
            service.catalog().queries()
        );
    }
    let res = c.get(format!("{base}/api/products/99")).send().await?;
    println!(
        "--> GET /api/products/99: {} {}",
        res.status().as_u16(),
        res.text().await?
    );

    let kettles = order("acct-1", 2, 2);
    for attempt in ["order", "retry"] {
        let (status, replayed, body) = post_order(&c, base, DEMO_ORDERS[0], &kettles).await?;
        println!("--> POST /api/orders ({attempt}): {status} replayed={replayed} {body}");
    }
    let too_much = order("acct-1", 2, 3);
    let (status, _, body) = post_order(&c, base, DEMO_ORDERS[1], &too_much).await?;
    println!("--> POST /api/orders (3 more kettles): {status} {body}");

    client::wait_for("the warehouse to ship demo-order-1", || {
        std::future::ready(Ok(!service.warehouse().shipped().is_empty()))
    })
    .await?;
    for shipped in service.warehouse().shipped() {
        println!(
            "--> warehouse shipped {} (stream entry {})",
            shipped.order.id, shipped.message
        );
    }

    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let families = metrics
        .lines()
        .filter(|l| l.starts_with("# TYPE redisx_"))
        .count();
    println!("--> GET /metrics: {families} redisx families; some samples (not 0):");
    for wanted in [
        "redisx_commands_total{",
        "redisx_cache_hits_total{",
        "redisx_cache_misses_total{",
        "redisx_lock_acquisitions_total{",
        "redisx_ratelimit_requests_total{",
        "redisx_idempotency_requests_total{",
        "redisx_stream_messages_published_total{",
        "redisx_stream_messages_consumed_total{",
    ] {
        let samples = metrics.lines().filter(|l| {
            let pings = !wanted.starts_with("redisx_commands") || l.contains("PING");
            l.starts_with(wanted) && pings && !l.ends_with(" 0")
        });
        for line in samples {
            println!("      {line}");
        }
    }
    Ok(())
}

/// Shuts the service down while the warehouse ships an order and a job holds a lock, and shows
/// what the shutdown did.
async fn shutdown_demo(
    base: &str,
    service: &Service,
    url: &str,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
) -> Result<(), Box<dyn Error>> {
    let c = reqwest::Client::builder().no_proxy().build()?;
    let rx = service.rx();
    // A background job holds a lock (renewed while it runs) when the shutdown comes.
    let job = rx
        .locks()
        .acquire("report:nightly", &LockOptions::new())
        .await?;
    // The carrier is slow today: the next order stays in the warehouse until it resumes.
    service.warehouse().pause();
    let (status, _, _) = post_order(&c, base, DEMO_ORDERS[2], &order("acct-2", 1, 1)).await?;
    client::wait_for("the warehouse to start on demo-order-3", || {
        std::future::ready(Ok(service.warehouse().working() == 1))
    })
    .await?;
    println!(
        "--> POST /api/orders: {status}; shutting down while demo-order-3 ships and `report:nightly` is held"
    );
    let _ = stop.send(());
    client::wait_for("the shutdown to begin", || {
        std::future::ready(Ok(rx.is_shut_down()))
    })
    .await?;
    let refused = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(format!("{base}/health"))
        .send()
        .await
        .is_err();
    println!(
        "--> HTTP stopped (a new connection refused: {refused}); the consumer drains: {} order in the handler",
        service.warehouse().working()
    );
    service.warehouse().resume();
    server.await??;

    // A second runtime on the same keys looks at what the shutdown left.
    let probe = RedisX::builder()
        .client("default", redisx::ConnectionConfig::from_url(url)?)
        .key_prefix(PREFIX)
        .build()
        .await?;
    if let Some(last) = service.warehouse().shipped().last() {
        println!(
            "--> {} shipped during the shutdown: {}",
            last.order.id, last.during_shutdown
        );
    }
    let pending = probe.streams().pending(shop::STREAM, shop::GROUP).await?;
    let locked = probe.locks().is_locked("report:nightly").await?;
    println!(
        "--> after shutdown: {} pending in `{}`, `report:nightly` locked: {locked}, consumer running: {}",
        pending.count,
        shop::GROUP,
        service.consuming()
    );
    drop(job); // released by the shutdown already
    probe.shutdown().await;
    Ok(())
}

/// An order of `quantity` of product `product` for `account`.
fn order(account: &str, product: u64, quantity: u64) -> OrderRequest {
    OrderRequest {
        account: account.to_owned(),
        product,
        quantity,
    }
}

/// POSTs `req` as the order `key`; returns the status, whether it was a replay, and the body.
async fn post_order(
    c: &reqwest::Client,
    base: &str,
    key: &str,
    req: &OrderRequest,
) -> Result<(u16, bool, String), Box<dyn Error>> {
    let res = c
        .post(format!("{base}/api/orders"))
        .header("idempotency-key", key)
        .body(serde_json::to_string(req)?)
        .send()
        .await?;
    let replayed = header(&res, "idempotency-replayed") == "true";
    Ok((res.status().as_u16(), replayed, res.text().await?))
}

/// The value of header `name`, or `""`.
fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Trace export, when the `otlp` feature is on and `--otlp` or the environment asks for it.
#[cfg(feature = "otlp")]
struct Telemetry(Option<otlp::Telemetry>);

#[cfg(feature = "otlp")]
impl Telemetry {
    /// Starts the exporter and installs the global `tracing` subscriber that feeds it.
    fn start(target: &cli::Otlp) -> Result<Self, Box<dyn Error>> {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;

        let endpoint = match target {
            cli::Otlp::Off => return Ok(Self(None)),
            cli::Otlp::Endpoint(url) => Some(url.as_str()),
            cli::Otlp::Environment => None,
        };
        let (layer, telemetry) = otlp::Telemetry::build(endpoint)?;
        tracing_subscriber::registry().with(layer).try_init()?;
        println!(
            "--> exporting traces over OTLP to {}",
            endpoint.unwrap_or("the OTEL_EXPORTER_OTLP_* collector")
        );
        Ok(Self(Some(telemetry)))
    }

    /// `router` with a server span per request when exporting.
    fn traced(&self, router: axum::Router) -> axum::Router {
        match &self.0 {
            Some(t) => t.traced(router),
            None => router,
        }
    }

    /// Stops the exporter.
    fn shutdown(self) -> redisx::Result<()> {
        self.0.map_or(Ok(()), otlp::Telemetry::shutdown)
    }
}

/// Without the `otlp` feature: no export; `--otlp` is refused, saying how to build it in.
#[cfg(not(feature = "otlp"))]
struct Telemetry;

#[cfg(not(feature = "otlp"))]
impl Telemetry {
    /// Refuses `--otlp`; notes that the `OTEL_EXPORTER_OTLP_*` variables are ignored.
    fn start(target: &cli::Otlp) -> Result<Self, Box<dyn Error>> {
        match target {
            cli::Otlp::Off => Ok(Self),
            cli::Otlp::Endpoint(_) => Err("--otlp needs the `otlp` feature: \
                 cargo run --example service --features otlp -- --otlp URL"
                .into()),
            cli::Otlp::Environment => {
                println!(
                    "--> OTEL_EXPORTER_OTLP_ENDPOINT is set, but this build has no OTLP export \
                     (add --features otlp)"
                );
                Ok(Self)
            }
        }
    }

    /// `router` as it is.
    #[allow(clippy::unused_self)]
    fn traced(&self, router: axum::Router) -> axum::Router {
        router
    }

    /// Nothing to stop.
    #[allow(clippy::unnecessary_wraps, clippy::unused_self)]
    fn shutdown(self) -> redisx::Result<()> {
        Ok(())
    }
}
