//! Payment processing: a `POST /charges` endpoint that charges an account once per
//! `Idempotency-Key`, one charge per account at a time, and a ledger that refuses a writer
//! whose lock was taken over.
//!
//! ```text
//! cargo run --example payment
//! ```
//!
//! Uses the server in `REDIS_URL` when it is set, else one listening on `127.0.0.1:6379`, else
//! starts a throwaway `redis-server` from `PATH` (stopped at exit). It serves the app on a free
//! loopback port and, as a client, sends a first charge, a retry with the same key (replayed:
//! same body, `Idempotency-Replayed: true`, charged once), two concurrent duplicates (one runs,
//! the other waits and replays), then shows the ledger refusing the fencing token of a holder
//! whose lock expired and was taken over.
//!
//! The pieces: [`redisx::http::IdempotencyLayer`] records each response and replays it to
//! duplicates; the charge itself is `#[idempotent]` on the same key (under the layer it runs
//! under the layer's claim; called from elsewhere, e.g. a job, it protects itself) and
//! `#[with_lock]` on the account; the body passes `redisx::lock::fencing_token()` to the
//! [`Ledger`], which accepts a write only with a larger token than the last one it accepted
//! for that account.

#[path = "support/client.rs"]
mod client;
#[path = "support/server.rs"]
mod server;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use redisx::http::{IdempotencyKey, IdempotencyLayer};
use redisx::lock::LockOptions;
use redisx::{ConnectionConfig, RedisX, idempotent, with_lock};
use serde::{Deserialize, Serialize};

/// The body of `POST /charges`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChargeRequest {
    /// The account charged.
    pub account: String,
    /// The amount, in cents.
    pub amount: u64,
}

/// The answer to a charge (201), replayed as it is to every duplicate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The account charged.
    pub account: String,
    /// The amount charged, in cents.
    pub amount: u64,
    /// The entry's number in the account's ledger (from 1).
    pub entry: usize,
    /// The fencing token the write carried.
    pub fence: u64,
}

/// A write the ledger refused: its fencing token is not larger than the last accepted one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleWriter {
    /// The token of the refused write.
    pub fence: u64,
    /// The last token the account accepted.
    pub last: u64,
}

impl std::fmt::Display for StaleWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stale writer: fencing token {} is not above {}",
            self.fence, self.last
        )
    }
}

impl std::error::Error for StaleWriter {}

/// The accepted writes of one account.
#[derive(Default)]
struct Account {
    last_fence: u64,
    amounts: Vec<u64>,
}

/// A simulated ledger (the resource the lock protects), in process: per account, the amounts
/// charged and the last fencing token accepted. Cheap to clone; clones share the accounts.
#[derive(Clone, Default)]
pub struct Ledger {
    accounts: Arc<Mutex<HashMap<String, Account>>>,
    latency: Duration,
}

impl Ledger {
    /// An empty ledger whose writes answer at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty ledger whose writes take `latency` first (a slow core-banking call), so that
    /// duplicates arrive while a charge runs.
    pub fn with_latency(latency: Duration) -> Self {
        Self {
            latency,
            ..Self::default()
        }
    }

    /// Charges `amount` to `account` with the writer's fencing token `fence`: refused unless
    /// `fence` is larger than the last token the account accepted.
    pub async fn post(
        &self,
        account: &str,
        amount: u64,
        fence: u64,
    ) -> Result<Receipt, StaleWriter> {
        tokio::time::sleep(self.latency).await;
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let acc = accounts.entry(account.to_owned()).or_default();
        if fence <= acc.last_fence {
            return Err(StaleWriter {
                fence,
                last: acc.last_fence,
            });
        }
        acc.last_fence = fence;
        acc.amounts.push(amount);
        Ok(Receipt {
            account: account.to_owned(),
            amount,
            entry: acc.amounts.len(),
            fence,
        })
    }

    /// The amounts charged to `account`, in order.
    pub fn charges(&self, account: &str) -> Vec<u64> {
        let accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        accounts
            .get(account)
            .map(|a| a.amounts.clone())
            .unwrap_or_default()
    }
}

/// Why a charge failed.
#[derive(Debug)]
pub enum ChargeError {
    /// Redis, the lock or the idempotency record: answered as redisx answers it
    /// (problem+json).
    Redis(redisx::Error),
    /// The ledger refused the write: the lock was lost and taken over meanwhile.
    Stale(StaleWriter),
}

impl From<redisx::Error> for ChargeError {
    fn from(e: redisx::Error) -> Self {
        Self::Redis(e)
    }
}

impl IntoResponse for ChargeError {
    fn into_response(self) -> Response {
        match self {
            Self::Redis(e) => e.into_response(),
            // A 5xx is not recorded: the key is marked failed, and a retry after the lock ttl
            // runs again (nothing was charged).
            Self::Stale(s) => (StatusCode::SERVICE_UNAVAILABLE, s.to_string()).into_response(),
        }
    }
}

/// What the handler needs.
#[derive(Clone)]
struct AppState {
    rx: RedisX,
    ledger: Ledger,
}

/// The service: `POST /charges` (a JSON [`ChargeRequest`], a required `Idempotency-Key`
/// header) answers 201 with a JSON [`Receipt`]. Records are kept under `charge:{key}`.
pub fn app(rx: RedisX, ledger: Ledger) -> Router {
    let layer = IdempotencyLayer::new()
        .runtime(rx.clone())
        .required(true)
        .key_prefix("charge:");
    Router::new()
        .route("/charges", post(create_charge))
        .route_layer(layer)
        .with_state(AppState { rx, ledger })
}

/// `POST /charges`: runs under the layer's claim of the key.
async fn create_charge(
    State(app): State<AppState>,
    Extension(key): Extension<IdempotencyKey>,
    body: String,
) -> Response {
    let req: ChargeRequest = match serde_json::from_str(&body) {
        Ok(req) => req,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad charge: {e}")).into_response(),
    };
    // Boxed: the two attributes nest deep futures, past the compiler's default layout depth.
    match Box::pin(charge(&app.rx, &app.ledger, key.key().to_owned(), req)).await {
        Ok(receipt) => {
            let json = serde_json::to_string(&receipt).expect("a receipt serializes");
            (
                StatusCode::CREATED,
                [(CONTENT_TYPE, "application/json")],
                json,
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Charges `req` once per `idempotency_key`, holding the account's lock, and writes to the
/// ledger with the lock's fencing token. (The lower attribute wraps the upper one: the key is
/// checked first, then the account is locked.)
#[with_lock(key = "account:{req.account}", ttl = "10s", wait = "5s", runtime = rx)]
#[idempotent(key = "{idempotency_key}", fingerprint = [req], runtime = rx)]
async fn charge(
    rx: &RedisX,
    ledger: &Ledger,
    idempotency_key: String,
    req: ChargeRequest,
) -> Result<Receipt, ChargeError> {
    let fence = redisx::lock::fencing_token().expect("inside #[with_lock]");
    ledger
        .post(&req.account, req.amount, fence)
        .await
        .map_err(ChargeError::Stale)
}

/// POSTs `req` to `url` with `key`; returns the status, whether it was a replay, and the body.
async fn send(
    c: &reqwest::Client,
    url: &str,
    key: &str,
    req: &ChargeRequest,
) -> Result<(u16, bool, String), Box<dyn std::error::Error>> {
    let body = serde_json::to_string(req)?;
    Ok(client::post(c, url, ("idempotency-key", key), body).await?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _server) = server::find_or_start_redis()?; // `_server` stops a throwaway server
    let rx = RedisX::builder()
        .client("default", ConnectionConfig::from_url(&url)?)
        .key_prefix("payment-example:")
        .build()
        .await?;
    for key in ["charge:order-1001", "charge:order-1002"] {
        rx.idempotency().delete(key).await?; // start fresh when run again on the same server
    }
    let ledger = Ledger::with_latency(Duration::from_millis(300));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/charges", listener.local_addr()?);
    let service = app(rx.clone(), ledger.clone());
    tokio::spawn(async move { axum::serve(listener, service).await });
    println!("--> serving POST {base}");

    // reqwest is built without a TLS provider of its own; plain HTTP needs one all the same.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::builder().no_proxy().build()?;
    let req = ChargeRequest {
        account: "acct-42".to_owned(),
        amount: 1999,
    };
    let (status, replayed, body) = send(&c, &base, "order-1001", &req).await?;
    println!("--> first charge:         {status} replayed={replayed} {body}");
    let (status, replayed, body) = send(&c, &base, "order-1001", &req).await?;
    println!("--> retry, same key:      {status} replayed={replayed} {body}");

    let req = ChargeRequest {
        account: "acct-42".to_owned(),
        amount: 500,
    };
    let (a, b) = tokio::join!(
        send(&c, &base, "order-1002", &req),
        send(&c, &base, "order-1002", &req)
    );
    for (status, replayed, body) in [a?, b?] {
        println!("--> concurrent duplicate: {status} replayed={replayed} {body}");
    }
    println!(
        "--> ledger of acct-42: {:?} (each key charged once)",
        ledger.charges("acct-42")
    );

    // A stale writer: a holder that stopped renewing (a long pause) outlives its ttl, another
    // takes the lock and writes; the old holder's write then carries the smaller token.
    let paused = LockOptions::new()
        .ttl(Duration::from_millis(200))
        .auto_renew(false);
    let old = rx.locks().acquire("account:acct-7", &paused).await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let new = rx
        .locks()
        .acquire("account:acct-7", &LockOptions::new())
        .await?;
    let accepted = ledger.post("acct-7", 100, new.fencing_token()).await?;
    println!("--> new holder writes:     accepted {accepted:?}");
    match ledger.post("acct-7", 100, old.fencing_token()).await {
        Err(refused) => println!("--> old holder writes:     refused ({refused})"),
        Ok(r) => return Err(format!("the ledger accepted a stale writer: {r:?}").into()),
    }
    new.release().await?;
    drop(old); // its lock is long gone: nothing to release
    rx.shutdown().await;
    Ok(())
}
