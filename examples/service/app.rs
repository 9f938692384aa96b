//! The service's HTTP side: the runtime with its two clients, the router (`/api/*` behind the
//! rate limit, `/health`, `/metrics`), and [`run`], which serves until told to stop and then
//! shuts down in order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use redisx::http::{HeaderStyle, IdempotencyKey, IdempotencyLayer, RateLimitLayer};
use redisx::rate_limit::Limit;
use redisx::streams::{ConsumerHandle, StreamsConfig};
use redisx::{ConnectionConfig, RedisX};
use serde::{Deserialize, Serialize};

use crate::shop::{self, Catalog, OrderError, OrderRequest, Orders, Warehouse};

/// The runtime's clients: `default` (cache, locks, rate limits, idempotency) and `streams`
/// (the streams plugin: the order stream and the warehouse's consumer).
pub const CLIENTS: [&str; 2] = ["default", "streams"];

/// The route of a product.
pub const PRODUCT_ROUTE: &str = "/api/products/{id}";

/// The route of orders.
pub const ORDERS_ROUTE: &str = "/api/orders";

/// The route of the health check.
pub const HEALTH_ROUTE: &str = "/health";

/// The route of the metrics.
pub const METRICS_ROUTE: &str = "/metrics";

/// Every route of [`app`].
pub const ROUTES: [&str; 4] = [PRODUCT_ROUTE, ORDERS_ROUTE, HEALTH_ROUTE, METRICS_ROUTE];

/// The route `path` matches (`/api/products/7`: `/api/products/{id}`), for span names (axum's
/// `MatchedPath` is behind its `matched-path` feature, off in this build); `None` for a path
/// no route serves.
pub fn route_of(path: &str) -> Option<&'static str> {
    ROUTES.into_iter().find(|route| {
        let (mut r, mut p) = (route.split('/'), path.split('/'));
        loop {
            match (r.next(), p.next()) {
                (None, None) => return true,
                (Some(r), Some(p)) if r == p || (r.starts_with('{') && !p.is_empty()) => {}
                _ => return false,
            }
        }
    })
}

/// The `Content-Type` of `GET /metrics`: prometheus-client renders `OpenMetrics` text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The service's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The limit of `/api/*` requests per client address (the peer's; behind a proxy, key
    /// the layer with `KeyExtractor::client_ip` and the proxy's range instead).
    pub api_limit: Limit,
    /// How long the product database takes to answer (a cache miss pays it).
    pub product_latency: Duration,
    /// How long the warehouse takes to ship an order.
    pub ship_latency: Duration,
    /// What an account may spend in all, in cents.
    pub budget: u64,
    /// How long `/health` waits for a client's `PING`.
    pub health_timeout: Duration,
}

impl Default for Config {
    /// 100 API requests per second per address, a 200 ms database, 300 ms per shipment, a
    /// budget of 100.00 per account, and 1 s for a `PING`.
    fn default() -> Self {
        Self {
            api_limit: Limit::sliding_window(100, Duration::from_secs(1)),
            product_latency: Duration::from_millis(200),
            ship_latency: Duration::from_millis(300),
            budget: 10_000,
            health_timeout: Duration::from_secs(1),
        }
    }
}

/// A runtime for the service under `prefix`: the `default` client on `url`, the `streams`
/// client on `streams_url` (the same server or another). `rx.shutdown()` gets 5 s for the
/// consumers to finish their messages and for the locks to be released, inside the 30 s a
/// container platform usually grants between SIGTERM and SIGKILL.
pub async fn runtime(url: &str, streams_url: &str, prefix: &str) -> redisx::Result<RedisX> {
    let [default, streams] = CLIENTS;
    RedisX::builder()
        .client(default, ConnectionConfig::from_url(url)?)
        .client(streams, ConnectionConfig::from_url(streams_url)?)
        .key_prefix(prefix)
        .streams(StreamsConfig::default().client(streams))
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .await
}

/// The running service: the runtime, the shop and the warehouse's consumer. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    rx: RedisX,
    config: Config,
    catalog: Catalog,
    orders: Orders,
    warehouse: Warehouse,
    // Stopped by `rx.shutdown()`; kept to show it is running.
    consumer: ConsumerHandle,
}

impl Service {
    /// Starts the service on `rx` (built by [`runtime`]): the warehouse's consumer runs from
    /// here on.
    pub async fn start(rx: RedisX, config: Config) -> redisx::Result<Self> {
        let warehouse = Warehouse::new(config.ship_latency);
        let consumer = shop::start_warehouse(&rx, &warehouse).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                catalog: Catalog::new(rx.clone(), config.product_latency),
                orders: Orders::new(rx.clone(), config.budget),
                rx,
                config,
                warehouse,
                consumer,
            }),
        })
    }

    /// The runtime.
    pub fn rx(&self) -> &RedisX {
        &self.inner.rx
    }

    /// The product catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The warehouse.
    pub fn warehouse(&self) -> &Warehouse {
        &self.inner.warehouse
    }

    /// Whether the warehouse's consumer still runs.
    pub fn consuming(&self) -> bool {
        self.inner.consumer.is_running()
    }

    /// `PING`s every client at once, each within the health timeout.
    pub async fn health(&self) -> Health {
        let timeout = self.inner.config.health_timeout;
        let checks = CLIENTS.map(|name| async move {
            let health = match self.inner.rx.named_client(name) {
                Ok(client) => match tokio::time::timeout(timeout, client.ping()).await {
                    Ok(Ok(rtt)) => ClientHealth::up(rtt),
                    Ok(Err(e)) => ClientHealth::down(e.to_string()),
                    Err(_) => ClientHealth::down(format!("no answer within {timeout:?}")),
                },
                Err(e) => ClientHealth::down(e.to_string()),
            };
            (name.to_owned(), health)
        });
        let clients: BTreeMap<String, ClientHealth> = futures_util::future::join_all(checks)
            .await
            .into_iter()
            .collect();
        let up = clients.values().all(|c| c.status == UP);
        Health {
            status: if up { UP } else { DOWN }.to_owned(),
            clients,
        }
    }
}

/// A status of `/health`: all clients answer.
pub const UP: &str = "up";

/// A status of `/health`: a client does not answer.
pub const DOWN: &str = "down";

/// The body of `GET /health`: `{"status":"up","clients":{"default":{"status":"up",
/// "latency_ms":0.31},...}}`; 200 when every client is up, else 503.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// [`UP`] when every client answered, else [`DOWN`].
    pub status: String,
    /// Each client, by name.
    pub clients: BTreeMap<String, ClientHealth>,
}

/// One client in `/health`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientHealth {
    /// [`UP`] or [`DOWN`].
    pub status: String,
    /// The `PING` round trip in milliseconds, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Why it is down (an error code and message, or the timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ClientHealth {
    fn up(rtt: Duration) -> Self {
        Self {
            status: UP.to_owned(),
            // Milliseconds to the microsecond.
            latency_ms: Some((rtt.as_secs_f64() * 1e6).round() / 1e3),
            error: None,
        }
    }

    fn down(error: String) -> Self {
        Self {
            status: DOWN.to_owned(),
            latency_ms: None,
            error: Some(error),
        }
    }
}

/// The service's routes:
/// - `GET /api/products/{id}`: a JSON [`Product`](shop::Product) (404 for an unknown one),
///   through the cache;
/// - `POST /api/orders`: a JSON [`OrderRequest`] with a required `Idempotency-Key` (the
///   order's id); 202 with a JSON [`Accepted`](shop::Accepted), replayed to retries;
/// - `GET /health`: [`Health`], 200 or 503;
/// - `GET /metrics`: the runtime's metrics, `OpenMetrics` text.
///
/// `/api/*` is behind the rate limit of [`Config::api_limit`] per client address (429 with
/// `Retry-After` past it, and the limit headers on every answer); `/health` and `/metrics`
/// are not, so probes and scrapes are never refused. Serve it with the peer address as
/// `ConnectInfo` ([`run`] does).
pub fn app(service: &Service) -> Router {
    let rx = service.rx().clone();
    let idempotency = IdempotencyLayer::new()
        .runtime(rx.clone())
        .required(true)
        .key_prefix("order:");
    let orders = Router::new()
        .route(ORDERS_ROUTE, post(place_order))
        .route_layer(idempotency);
    let limit = RateLimitLayer::new(service.inner.config.api_limit.clone())
        .runtime(rx)
        .headers(HeaderStyle::Both);
    let api = Router::new()
        .route(PRODUCT_ROUTE, get(product))
        .merge(orders)
        .route_layer(limit);
    Router::new()
        .merge(api)
        .route(HEALTH_ROUTE, get(health))
        .route(METRICS_ROUTE, get(metrics))
        .with_state(service.clone())
}

/// A JSON response.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (status, [(CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `GET /api/products/{id}`.
async fn product(State(service): State<Service>, Path(id): Path<u64>) -> Response {
    match Box::pin(service.catalog().product(id)).await {
        Some(product) => json(StatusCode::OK, &product),
        None => (StatusCode::NOT_FOUND, format!("no product {id}")).into_response(),
    }
}

/// `POST /api/orders`: runs once per `Idempotency-Key`, under the layer's claim of it.
async fn place_order(
    State(service): State<Service>,
    Extension(key): Extension<IdempotencyKey>,
    body: String,
) -> Response {
    let req: OrderRequest = match serde_json::from_str(&body) {
        Ok(req) => req,
        Err(e) => return OrderError::Invalid(format!("bad order: {e}")).into_response(),
    };
    if let Err(e) = shop::validate(&req) {
        return e.into_response();
    }
    let inner = &service.inner;
    // Boxed as a trait object: the lock, the cache load and the publish nest futures too deep
    // for the compiler to check axum's `Send` bound through them.
    let placed: std::pin::Pin<Box<dyn Future<Output = _> + Send + '_>> = Box::pin(
        inner
            .orders
            .place(&inner.catalog, key.value().to_owned(), req),
    );
    match placed.await {
        Ok(accepted) => json(StatusCode::ACCEPTED, &accepted),
        Err(e) => e.into_response(),
    }
}

/// `GET /health`.
async fn health(State(service): State<Service>) -> Response {
    let health = service.health().await;
    let status = if health.status == UP {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, &health)
}

/// `GET /metrics`.
async fn metrics(State(service): State<Service>) -> Response {
    // `redisx_stream_lag` holds the lag as last read; read it now so the scrape is current. A
    // failure (Redis down) keeps the last value: a scrape must not fail for it.
    let _ = service.rx().streams().lag(shop::STREAM, shop::GROUP).await;
    ([(CONTENT_TYPE, OPENMETRICS)], service.rx().metrics_text()).into_response()
}

/// A future that resolves when the process is asked to stop: SIGTERM (what an orchestrator
/// sends before it kills) or ctrl-c. The handlers are installed by this call, before the
/// future is first polled, so a signal sent from then on is never lost to the default action
/// (which would end the process without draining). Fails when they cannot be installed.
#[cfg(unix)]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// A future that resolves on ctrl-c (no SIGTERM outside Unix).
#[cfg(not(unix))]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Serves `router` (from [`app`], possibly wrapped) on `listener` until `shutdown` resolves,
/// then shuts down in order: stops accepting connections and lets the requests in flight
/// finish (axum's graceful shutdown), then `rx.shutdown()`: the warehouse's consumer stops
/// reading and its orders in flight finish and are acknowledged (the rest stays pending for
/// another instance), the locks still held are released (another instance need not wait out
/// their ttl), the connections close and, with OTLP on, the last spans are sent.
pub async fn run<F>(
    listener: tokio::net::TcpListener,
    router: Router,
    service: Service,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    service.rx().shutdown().await;
    Ok(())
}
