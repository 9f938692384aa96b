//! Login throttling: a `POST /login` endpoint that counts failed logins per client address and
//! locks an account out after a few attempts, until its window passes or a success gives the
//! attempts back.
//!
//! ```text
//! cargo run --example login
//! ```
//!
//! Uses the server in `REDIS_URL` when it is set, else one listening on `127.0.0.1:6379`, else
//! starts a throwaway `redis-server` from `PATH` (stopped at exit). It serves the app on a free
//! loopback port and, as a client that plays a trusted proxy (`X-Forwarded-For`), shows a
//! success giving an account its attempts back, an account locked out after 5 failures from 5
//! addresses (423 even with the right password), and an address throttled after 10 failures
//! across 10 accounts (429, while the same account still signs in from elsewhere).
//!
//! The pieces, two sliding-window limits on two keys of [`redisx::rate_limit`]:
//! - `login:user:{name}` ([`Throttle::per_account`]) is checked, consuming an attempt, *before*
//!   the password is verified, so no account gets more than its limit of tries per window
//!   however many requests race; a success [`reset`](redisx::rate_limit::RateLimiter::reset)s
//!   it, so in effect it counts the failures since the last success. A locked account answers
//!   423 with `Retry-After` whatever the password.
//! - `login:ip:{address}` ([`Throttle::per_ip`]) counts failures only (a busy office behind one
//!   address is not throttled for its successes): peeked before anything else (429 with
//!   `Retry-After` when it is spent), consumed after a failure. It is checked first so that a
//!   throttled address consumes no account's attempts.
//!
//! The two keys are two calls, one after the other: on a cluster they sit in different slots
//! and cannot be atomic together (see the README's "How rate limiting works"). Each key is
//! exact on its own, and that is all the scheme needs.

#[path = "support/server.rs"]
mod server;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use redisx::http::Cidr;
use redisx::rate_limit::{Decision, Limit};
use redisx::{ConnectionConfig, Error, RedisX};
use serde::{Deserialize, Serialize};

/// The body of `POST /login`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Credentials {
    /// The account (trimmed and lowercased: `Alice` and `alice` are one account).
    pub user: String,
    /// The password.
    pub password: String,
}

/// The answer to a successful login (200).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The account signed in.
    pub user: String,
}

/// The accounts, by name, with their passwords. In memory and in plain text to keep the recipe
/// short: a real service stores a password hash (argon2) and verifies that. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Users(Arc<HashMap<String, String>>);

impl Users {
    /// The accounts `(name, password)`.
    pub fn new<'a>(accounts: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let map = accounts
            .into_iter()
            .map(|(user, password)| (normalize(user), password.to_owned()))
            .collect();
        Self(Arc::new(map))
    }

    /// Whether `user` exists and `password` is its password.
    fn verify(&self, user: &str, password: &str) -> bool {
        self.0.get(user).is_some_and(|p| p == password)
    }
}

/// The throttling rules of [`app`].
#[derive(Clone, Debug)]
pub struct Throttle {
    /// Failed logins per client address, across accounts; once spent, the address gets 429
    /// until the oldest failure leaves the window.
    pub per_ip: Limit,
    /// Attempts per account since its last success (the lockout); once spent, the account
    /// gets 423 until the oldest attempt leaves the window.
    pub per_account: Limit,
    /// The proxies whose `X-Forwarded-For` names the client (none: the peer is the client).
    pub trusted_proxies: Vec<Cidr>,
}

impl Throttle {
    /// 10 failures per address and 5 attempts per account per 15 minutes, sliding windows
    /// (exact: never more in any 15 minutes); no trusted proxy.
    pub fn standard() -> Self {
        let window = Duration::from_secs(15 * 60);
        Self {
            per_ip: Limit::sliding_window(10, window),
            per_account: Limit::sliding_window(5, window),
            trusted_proxies: Vec::new(),
        }
    }
}

/// The rate-limit key of a client address's failures.
pub fn ip_key(ip: IpAddr) -> String {
    format!("login:ip:{}", ip.to_canonical())
}

/// The rate-limit key of an account's attempts.
pub fn account_key(user: &str) -> String {
    format!("login:user:{}", normalize(user))
}

/// An account name as it is counted and looked up.
fn normalize(user: &str) -> String {
    user.trim().to_lowercase()
}

/// The client of a request from `peer`: the peer itself, unless it is a trusted proxy; then the
/// rightmost `X-Forwarded-For` entry that is not a trusted proxy (the leftmost when all are),
/// so that an entry the client made up in front is never believed. An entry that is not an
/// address ends the search at the proxy: that client is counted as the proxy.
fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let chain: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in chain.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => client = ip,
            Ok(ip) => return ip,
            Err(_) => return peer,
        }
    }
    client
}

/// What the handler needs.
#[derive(Clone)]
struct AppState {
    rx: RedisX,
    users: Users,
    throttle: Arc<Throttle>,
}

/// The service: `POST /login` with a JSON [`Credentials`] body answers 200 with a JSON
/// [`Welcome`]; 401 for a wrong user or password (`attempts_left` before the account locks);
/// 423 with `Retry-After` for a locked account; 429 with `Retry-After` for an address with
/// too many failures; 400 for a malformed body or name; 503 when Redis cannot be reached
/// (fail closed). Serve it with `into_make_service_with_connect_info::<SocketAddr>()`: the
/// peer address is the client, or the trusted proxy that names it.
pub fn app(rx: RedisX, users: Users, throttle: Throttle) -> Router {
    Router::new()
        .route("/login", post(login))
        .with_state(AppState {
            rx,
            users,
            throttle: Arc::new(throttle),
        })
}

/// What a login attempt came to.
enum Outcome {
    /// Signed in; the account's attempts were given back.
    Welcome(String),
    /// A wrong user or password; the account's attempts left before it locks.
    Failed { attempts_left: u64 },
    /// The account is locked out: the decision that refused it.
    Locked(Decision),
    /// The address has too many failures: the decision that refused it.
    Throttled(Decision),
}

/// `POST /login`.
async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let creds: Credentials = match serde_json::from_str(&body) {
        Ok(c) => c,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad login: {e}")).into_response(),
    };
    if normalize(&creds.user).is_empty() {
        return (StatusCode::BAD_REQUEST, "bad login: no user").into_response();
    }
    let ip = client_ip(peer.ip(), &headers, &app.throttle.trusted_proxies);
    match attempt(&app, ip, &creds).await {
        Ok(outcome) => outcome.into_response(),
        // Redis down (503), a name the limiter refuses (400): problem+json, no internals.
        Err(e) => e.into_response(),
    }
}

/// One login attempt from `ip`: the address's failures, then the account's attempts, then
/// the password.
async fn attempt(app: &AppState, ip: IpAddr, creds: &Credentials) -> Result<Outcome, Error> {
    let limiter = app.rx.rate_limiter();
    let (ip_key, account_key) = (ip_key(ip), account_key(&creds.user));
    let t = &app.throttle;
    // A peek: an address is charged for failures only, below.
    let by_ip = limiter.peek(&ip_key, &t.per_ip, 1).await?;
    if !by_ip.allowed {
        return Ok(Outcome::Throttled(by_ip));
    }
    // Consumed before the password is looked at: racing requests cannot get more tries.
    let by_account = limiter.check(&account_key, &t.per_account).await?;
    if !by_account.allowed {
        return Ok(Outcome::Locked(by_account));
    }
    let user = normalize(&creds.user);
    if app.users.verify(&user, &creds.password) {
        limiter.reset(&account_key, &t.per_account).await?;
        return Ok(Outcome::Welcome(user));
    }
    // Denied or not, the answer is the failure: a concurrent failure spent the address first.
    limiter.check(&ip_key, &t.per_ip).await?;
    Ok(Outcome::Failed {
        attempts_left: by_account.remaining,
    })
}

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        match self {
            Self::Welcome(user) => {
                let body = serde_json::json!({ "user": user }).to_string();
                (StatusCode::OK, [(CONTENT_TYPE, "application/json")], body).into_response()
            }
            Self::Failed { attempts_left } => {
                let mut body = problem_body(
                    StatusCode::UNAUTHORIZED,
                    "LOGIN_FAILED",
                    "Wrong user or password.",
                );
                body["attempts_left"] = attempts_left.into();
                problem(StatusCode::UNAUTHORIZED, &body, None)
            }
            Self::Locked(d) => {
                let detail = format!(
                    "Too many attempts on this account. Try again in {} seconds.",
                    d.retry_after_secs()
                );
                let mut body = problem_body(StatusCode::LOCKED, "ACCOUNT_LOCKED", &detail);
                body["retry_after"] = d.retry_after_secs().into();
                problem(StatusCode::LOCKED, &body, Some(&d))
            }
            // redisx's own answer to a denial: 429 problem+json with `Retry-After`.
            Self::Throttled(d) => Error::rate_limited(d).into_response(),
        }
    }
}

/// The members of a problem+json body (RFC 9457).
fn problem_body(status: StatusCode, code: &str, detail: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "code": code,
        "detail": detail,
    })
}

/// A problem+json response, with `Retry-After` from `denied` when given.
fn problem(status: StatusCode, body: &serde_json::Value, denied: Option<&Decision>) -> Response {
    let mut res = (
        status,
        [(CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response();
    if let Some(d) = denied {
        res.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(d.retry_after_secs()));
    }
    res
}

/// POSTs a login for `user` to `url` as a proxy forwarding for `ip`; returns the status, the
/// `Retry-After` header and the body.
async fn send(
    c: &reqwest::Client,
    url: &str,
    ip: &str,
    user: &str,
    password: &str,
) -> Result<(u16, Option<String>, String), Box<dyn std::error::Error>> {
    let creds = Credentials {
        user: user.to_owned(),
        password: password.to_owned(),
    };
    let res = c
        .post(url)
        .header("x-forwarded-for", ip)
        .body(serde_json::to_string(&creds)?)
        .send()
        .await?;
    let retry = res
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((res.status().as_u16(), retry, res.text().await?))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _server) = server::find_or_start_redis()?; // `_server` stops a throwaway server
    let rx = RedisX::builder()
        .client("default", ConnectionConfig::from_url(&url)?)
        .key_prefix("login-example:")
        .build()
        .await?;
    // The demo client sends from loopback as a proxy, naming the client in X-Forwarded-For.
    let throttle = Throttle {
        trusted_proxies: vec!["127.0.0.1/32".parse()?],
        ..Throttle::standard()
    };
    let sprayed: Vec<String> = (1..=10).map(|n| format!("user{n}")).collect();
    // Start fresh when run again on the same server.
    let limiter = rx.rate_limiter();
    for user in ["alice", "bob"]
        .into_iter()
        .chain(sprayed.iter().map(String::as_str))
    {
        limiter
            .reset(&account_key(user), &throttle.per_account)
            .await?;
    }
    for n in 1..=5 {
        let ip: IpAddr = format!("198.51.100.{n}").parse()?;
        limiter.reset(&ip_key(ip), &throttle.per_ip).await?;
    }
    limiter
        .reset(&ip_key("203.0.113.9".parse()?), &throttle.per_ip)
        .await?;
    let per_account = throttle.per_account.clone();

    let users = Users::new([("alice", "correct horse"), ("bob", "battery staple")]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/login", listener.local_addr()?);
    let service =
        app(rx.clone(), users, throttle).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await });
    println!(
        "--> serving POST {base} (5 attempts per account, 10 failures per address, per 15 min)"
    );

    // reqwest is built without a TLS provider of its own; plain HTTP needs one all the same.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::builder().no_proxy().build()?;

    for _ in 0..2 {
        let (status, _, body) = send(&c, &base, "198.51.100.1", "alice", "tr0ub4dor").await?;
        println!("--> alice, wrong password:  {status} {body}");
    }
    let (status, _, body) = send(&c, &base, "198.51.100.1", "alice", "correct horse").await?;
    let used = limiter.state(&account_key("alice"), &per_account).await?;
    println!(
        "--> alice, right password:  {status} {body} (attempts counted now: {})",
        used.current
    );

    let mut statuses = Vec::new();
    for n in 1..=5 {
        let ip = format!("198.51.100.{n}");
        statuses.push(send(&c, &base, &ip, "bob", "guess").await?.0);
    }
    println!("--> bob, 5 wrong passwords from 5 addresses: {statuses:?}");
    let (status, retry, body) = send(&c, &base, "198.51.100.5", "bob", "battery staple").await?;
    let retry = retry.unwrap_or_default();
    println!("--> bob, right password:    {status} retry-after={retry} {body}");

    let mut statuses = Vec::new();
    for user in &sprayed {
        statuses.push(send(&c, &base, "203.0.113.9", user, "123456").await?.0);
    }
    println!("--> 203.0.113.9 sprays 10 accounts: {statuses:?}");
    let (status, retry, body) = send(&c, &base, "203.0.113.9", "alice", "correct horse").await?;
    let retry = retry.unwrap_or_default();
    println!("--> alice from 203.0.113.9: {status} retry-after={retry} {body}");
    let (status, _, body) = send(&c, &base, "198.51.100.2", "alice", "correct horse").await?;
    println!("--> alice from 198.51.100.2: {status} {body} (the address is throttled, not alice)");
    rx.shutdown().await;
    Ok(())
}
