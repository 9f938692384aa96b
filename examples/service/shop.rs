//! The shop behind the service: a product catalog read through `#[cached]`, orders placed under
//! the account's lock (`#[with_lock]`) and published to a stream, and the warehouse whose
//! consumer ships them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use redisx::streams::{ConsumerHandle, ConsumerOptions, Message};
use redisx::{RedisX, cached, redis, with_lock};
use serde::{Deserialize, Serialize};

/// The stream orders are published to.
pub const STREAM: &str = "orders";

/// The consumer group of the warehouse.
pub const GROUP: &str = "fulfilment";

/// The products in the (simulated) database: id, name, price in cents.
const PRODUCTS: [(u64, &str, u64); 3] =
    [(1, "mug", 1200), (2, "kettle", 3900), (3, "teapot", 2500)];

/// A product, as `GET /api/products/{id}` answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its price, in cents.
    pub price: u64,
}

/// The product catalog: a slow database behind `#[cached]` (L1 and Redis, one minute).
pub struct Catalog {
    rx: RedisX,
    latency: Duration,
    queries: AtomicUsize,
}

impl Catalog {
    /// A catalog whose database answers after `latency`, cached on `rx`.
    pub fn new(rx: RedisX, latency: Duration) -> Self {
        Self {
            rx,
            latency,
            queries: AtomicUsize::new(0),
        }
    }

    /// The product `id`, from the cache or else the database (once for all the instances
    /// asking at that moment). An unknown id is not cached, so a product added later shows.
    #[cached(key = "product:{id}", ttl = "1m", unless = Option::is_none, runtime = &self.rx)]
    pub async fn product(&self, id: u64) -> Option<Product> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
        PRODUCTS
            .iter()
            .find(|(pid, _, _)| *pid == id)
            .map(|&(id, name, price)| Product {
                id,
                name: name.to_owned(),
                price,
            })
    }

    /// How many times the database was queried (started): the misses.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

/// The body of `POST /api/orders`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderRequest {
    /// The account ordering (letters, digits, `-` and `_`, up to 64).
    pub account: String,
    /// The product's id.
    pub product: u64,
    /// How many (1 to 100).
    pub quantity: u64,
}

/// An order as it travels on the stream to the warehouse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order's id: the request's `Idempotency-Key`.
    pub id: String,
    /// The account.
    pub account: String,
    /// The product's id.
    pub product: u64,
    /// How many.
    pub quantity: u64,
    /// The amount, in cents.
    pub total: u64,
}

/// The answer to an accepted order (202: the warehouse ships it later), replayed to retries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The order's id (the `Idempotency-Key`).
    pub order: String,
    /// The stream entry holding it.
    pub message: String,
    /// The amount, in cents.
    pub total: u64,
    /// What the account has spent so far, this order included, in cents.
    pub spent: u64,
}

/// Why an order was refused.
#[derive(Debug)]
pub enum OrderError {
    /// A malformed order (400).
    Invalid(String),
    /// No such product (422).
    UnknownProduct(u64),
    /// Over the account's budget (409); nothing was spent.
    OverBudget {
        /// Spent before this order, in cents.
        spent: u64,
        /// This order's amount, in cents.
        total: u64,
        /// The budget, in cents.
        budget: u64,
    },
    /// Redis, the lock or the stream: answered as redisx answers it (problem+json).
    Redis(redisx::Error),
}

impl From<redisx::Error> for OrderError {
    fn from(e: redisx::Error) -> Self {
        Self::Redis(e)
    }
}

impl IntoResponse for OrderError {
    fn into_response(self) -> Response {
        match self {
            Self::Invalid(why) => (StatusCode::BAD_REQUEST, why).into_response(),
            Self::UnknownProduct(id) => {
                (StatusCode::UNPROCESSABLE_ENTITY, format!("no product {id}")).into_response()
            }
            Self::OverBudget {
                spent,
                total,
                budget,
            } => (
                StatusCode::CONFLICT,
                format!("over budget: spent {spent} + {total} > {budget}"),
            )
                .into_response(),
            Self::Redis(e) => e.into_response(),
        }
    }
}

/// Places orders: checks each against its account's budget and hands it to the warehouse.
pub struct Orders {
    rx: RedisX,
    budget: u64,
}

impl Orders {
    /// Orders on `rx`, each account allowed to spend `budget` cents in all.
    pub fn new(rx: RedisX, budget: u64) -> Self {
        Self { rx, budget }
    }

    /// The key of what `account` has spent (a raw key: the app prefix is added here).
    fn spent_key(&self, account: &str) -> String {
        format!("{}spent:{account}", self.rx.key_prefix())
    }

    /// Places the order `id`: under the account's lock, reads what it spent, refuses an order
    /// over the budget, records the amount and publishes the order. The lock makes the read,
    /// the check and the write one step per account across every instance.
    #[with_lock(key = "account:{req.account}", ttl = "10s", wait = "5s", runtime = &self.rx)]
    pub async fn place(
        &self,
        catalog: &Catalog,
        id: String,
        req: OrderRequest,
    ) -> Result<Accepted, OrderError> {
        let product = Box::pin(catalog.product(req.product))
            .await
            .ok_or(OrderError::UnknownProduct(req.product))?;
        let total = product.price * req.quantity;
        let client = self.rx.client();
        let key = self.spent_key(&req.account);
        let spent: Option<u64> = client.query(redis::cmd("GET").arg(&key)).await?;
        let spent = spent.unwrap_or(0);
        if spent.saturating_add(total) > self.budget {
            return Err(OrderError::OverBudget {
                spent,
                total,
                budget: self.budget,
            });
        }
        // Recorded before the publish: if the publish fails, the amount is given back (and
        // if that fails too, the account is short until repaired, never over its budget).
        let spent: u64 = client
            .query(redis::cmd("INCRBY").arg(&key).arg(total))
            .await?;
        let order = Order {
            id: id.clone(),
            account: req.account,
            product: req.product,
            quantity: req.quantity,
            total,
        };
        match self.rx.streams().publish(STREAM, &order).await {
            Ok(message) => Ok(Accepted {
                order: id,
                message,
                total,
                spent,
            }),
            Err(e) => {
                let _: redisx::Result<u64> = client
                    .query(redis::cmd("DECRBY").arg(&key).arg(total))
                    .await;
                Err(e.into())
            }
        }
    }
}

/// Checks an order's fields.
pub fn validate(req: &OrderRequest) -> Result<(), OrderError> {
    let account_ok = (1..=64).contains(&req.account.len())
        && req
            .account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !account_ok {
        return Err(OrderError::Invalid(
            "account: 1 to 64 letters, digits, `-` or `_`".to_owned(),
        ));
    }
    if !(1..=100).contains(&req.quantity) {
        return Err(OrderError::Invalid("quantity: 1 to 100".to_owned()));
    }
    Ok(())
}

/// An order the warehouse shipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shipped {
    /// The order.
    pub order: Order,
    /// The stream entry it came in.
    pub message: String,
    /// Whether the runtime's shutdown had begun when it was done: a handler the shutdown let
    /// finish.
    pub during_shutdown: bool,
}

/// The (simulated) warehouse: shipping an order takes a while, and dispatch can be paused (a
/// carrier outage), which holds the orders in the handler until it resumes. It ships each
/// order once: a redelivery of a shipped order is acknowledged and ignored. Cheap to clone.
#[derive(Clone)]
pub struct Warehouse {
    inner: Arc<WarehouseInner>,
}

struct WarehouseInner {
    latency: Duration,
    open: tokio::sync::watch::Sender<bool>,
    working: AtomicUsize,
    shipped: Mutex<Vec<Shipped>>,
}

/// Counts an order as being shipped while it lives (also when its handler is dropped midway).
struct Working<'a>(&'a AtomicUsize);

impl<'a> Working<'a> {
    fn start(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Working<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Warehouse {
    /// A warehouse taking `latency` per order.
    pub fn new(latency: Duration) -> Self {
        Self {
            inner: Arc::new(WarehouseInner {
                latency,
                open: tokio::sync::watch::Sender::new(true),
                working: AtomicUsize::new(0),
                shipped: Mutex::default(),
            }),
        }
    }

    /// Holds dispatch: orders being shipped wait until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.inner.open.send_replace(false);
    }

    /// Lets dispatch go on.
    pub fn resume(&self) {
        self.inner.open.send_replace(true);
    }

    /// Orders being shipped now.
    pub fn working(&self) -> usize {
        self.inner.working.load(Ordering::SeqCst)
    }

    /// The orders shipped, in order.
    pub fn shipped(&self) -> Vec<Shipped> {
        self.books().clone()
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Vec<Shipped>> {
        self.inner
            .shipped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Ships the order of `msg` (once per order id); `rx` tells whether its shutdown began.
    async fn ship(&self, rx: &RedisX, msg: &Message<Order>) {
        let order = msg.payload();
        if self.books().iter().any(|s| s.order.id == order.id) {
            return;
        }
        let _working = Working::start(&self.inner.working);
        tokio::time::sleep(self.inner.latency).await;
        let mut open = self.inner.open.subscribe();
        // `Err` only once the sender is gone, and `self` holds it.
        let _ = open.wait_for(|open| *open).await;
        self.books().push(Shipped {
            order: order.clone(),
            message: msg.id().to_owned(),
            during_shutdown: rx.is_shut_down(),
        });
    }
}

/// Starts the warehouse's consumer of [`STREAM`] in [`GROUP`] (4 orders at a time, 3 retries,
/// then the DLQ). The group is created at the start of the stream first, so the orders accepted
/// before any consumer ran are shipped too. `rx.shutdown()` stops it: no more reads, the orders
/// in the handler finish (within the runtime's `shutdown_timeout`) and are acknowledged.
pub async fn start_warehouse(rx: &RedisX, warehouse: &Warehouse) -> redisx::Result<ConsumerHandle> {
    rx.streams().create_group(STREAM, GROUP, "0").await?;
    let (runtime, warehouse) = (rx.clone(), warehouse.clone());
    let opts = ConsumerOptions::new(GROUP)
        .concurrency(4)
        .max_retries(3)
        .block(Duration::from_secs(1));
    rx.streams()
        .consumer(STREAM, opts, move |msg: Message<Order>| {
            let (rx, warehouse) = (runtime.clone(), warehouse.clone());
            async move {
                warehouse.ship(&rx, &msg).await;
                Ok::<_, redisx::Error>(())
            }
        })
        .start()
        .await
}
