//! Session management: sessions kept in the cache with sliding expiry, served by every
//! instance of a service, and ended one at a time (logout) or all of a user's at once
//! (logout everywhere) by tag.
//!
//! ```text
//! cargo run --example sessions
//! ```
//!
//! Uses the server in `REDIS_URL` when it is set, else one listening on `127.0.0.1:6379`, else
//! starts a throwaway `redis-server` from `PATH` (stopped at exit). It runs two instances of
//! the app (two runtimes with one key prefix, each with its own L1, each behind its own axum
//! server) with a 2 s idle timeout, and as a client shows a session created on A served by B,
//! a logout ending one session only, a logout everywhere on A ending the user's other sessions
//! on B too while another user's stays, forged and malformed cookies refused, and a session
//! kept alive past its idle timeout by requests, then ending once they stop.
//!
//! The pieces, all in [`redisx::cache`]:
//! - a session is an entry `session:{id}` ([`session_key`]) holding a small [`Session`],
//!   written with `set_with` for the idle timeout and tagged `user:{name}` ([`user_tag`]);
//! - each request reads it with `get_and_touch` (Redis's `GETEX`): one round trip that reads
//!   the session and moves its expiry to a full idle timeout from now, so a session ends after
//!   that long *without requests*, on whichever instance they came to. The read always goes to
//!   Redis (the expiry must move), so an ended session is refused by the next request on every
//!   instance; a Redis error is a 503, never read as "signed out";
//! - logout deletes the entry; logout everywhere invalidates the tag `user:{name}`
//!   ([`end_sessions_of`]): every session of the user ends, in Redis and in every instance's
//!   L1 (the cache publishes the invalidation), so [`peek_session`], which reads L1 first
//!   and does not extend, does not see it either.
//!
//! The session id comes from the client and becomes part of a cache key: anything but 64
//! lowercase hex digits is refused (401) before the cache is asked.

#[path = "support/server.rs"]
mod server;

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use redisx::cache::EntryOptions;
use redisx::{ConnectionConfig, RedisX};
use serde::{Deserialize, Serialize};

/// The name of the cookie that carries the session id.
pub const COOKIE_NAME: &str = "sid";

/// Random bytes in a session id (256 bits), written as twice as many hex digits.
const ID_BYTES: usize = 32;

/// What a session holds: kept small, it is read on every request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The user signed in.
    pub user: String,
    /// When the session was created (Unix time, milliseconds).
    pub created_ms: u64,
}

/// The body of `POST /login`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Login {
    /// The user to sign in (1 to 64 of `a-z A-Z 0-9 - _ . @`).
    pub user: String,
}

/// The answer to `POST /users/{id}/logout-everywhere`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    /// How many sessions ended (the caller's included).
    pub ended: u64,
}

/// The cache key of the session `id`.
pub fn session_key(id: &str) -> String {
    format!("session:{id}")
}

/// The tag every session of `user` carries.
pub fn user_tag(user: &str) -> String {
    format!("user:{user}")
}

/// Whether `id` has the shape of a session id: 64 lowercase hex digits. Checked before an id
/// from a cookie goes into a cache key, so that a client cannot name any other key.
pub fn is_session_id(id: &str) -> bool {
    id.len() == 2 * ID_BYTES && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `user` is an acceptable user name (it goes into a tag).
fn is_user_name(user: &str) -> bool {
    (1..=64).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

/// The session id in the request's `sid` cookie, when there is one of the right shape (the
/// first `sid` cookie counts); `None` for a missing, malformed or non-ASCII one.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(name, value)| (name == COOKIE_NAME).then_some(value))?;
    is_session_id(value).then_some(value)
}

/// A new session id: 32 bytes from a cryptographically secure generator (ring's, through
/// rustls, which the service has for TLS anyway; `getrandom` or `rand` would do as well).
fn new_session_id() -> Result<String, SessionError> {
    let mut bytes = [0u8; ID_BYTES];
    tokio_rustls::rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| SessionError::Unavailable("no random bytes for a session id"))?;
    let mut id = String::with_capacity(2 * ID_BYTES);
    for b in bytes {
        let _ = write!(id, "{b:02x}");
    }
    Ok(id)
}

/// Unix time in milliseconds.
fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Why a session call failed.
#[derive(Debug)]
pub enum SessionError {
    /// Redis (or the cache) failed: answered as redisx answers it (problem+json, 503 for a
    /// connection error).
    Redis(redisx::Error),
    /// The session could not be stored or created: 503.
    Unavailable(&'static str),
}

impl From<redisx::Error> for SessionError {
    fn from(e: redisx::Error) -> Self {
        Self::Redis(e)
    }
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Redis(e) => write!(f, "{e}"),
            Self::Unavailable(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for SessionError {}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        match self {
            Self::Redis(e) => e.into_response(),
            Self::Unavailable(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
        }
    }
}

/// Creates a session of `user` that ends after `idle` without requests; returns its id and
/// the session.
///
/// # Errors
/// A Redis error, or a session that Redis did not store.
pub async fn create_session(
    rx: &RedisX,
    user: &str,
    idle: Duration,
) -> Result<(String, Session), SessionError> {
    let id = new_session_id()?;
    let session = Session {
        user: user.to_owned(),
        created_ms: now_ms(),
    };
    let key = session_key(&id);
    let opts = EntryOptions::new().ttl(idle).tags([user_tag(user)]);
    rx.cache().set_with(&key, &session, &opts).await?;
    // `set_with` does not fail its caller when Redis does (a cache write fails open): the
    // touch reports a Redis error, and `false` when the entry is not there, so a login never
    // hands out a cookie for a session the other instances cannot see.
    if !rx.cache().touch(&key, Some(idle)).await? {
        return Err(SessionError::Unavailable("the session was not stored"));
    }
    Ok((id, session))
}

/// The session `id`, its expiry moved to `idle` from now; `None` when it ended or never
/// existed.
///
/// # Errors
/// A Redis error (reported, not read as "no session").
pub async fn touch_session(
    rx: &RedisX,
    id: &str,
    idle: Duration,
) -> Result<Option<Session>, SessionError> {
    Ok(rx
        .cache()
        .get_and_touch(&session_key(id), Some(idle))
        .await?)
}

/// The session `id` without extending it: from this instance's L1 when it holds a copy (no
/// round trip), else from Redis. For work that must not count as activity, such as a
/// background check whether a user is still signed in. Fails open: a Redis error reads as
/// `None` (signed out).
///
/// # Errors
/// Only for an id that is not a valid cache key.
pub async fn peek_session(rx: &RedisX, id: &str) -> redisx::Result<Option<Session>> {
    rx.cache().get(&session_key(id)).await
}

/// Ends every session of `user`, on every instance (a password change, a disabled account,
/// "log out everywhere"); returns how many ended.
///
/// # Errors
/// A Redis error (the sessions may not have ended).
pub async fn end_sessions_of(rx: &RedisX, user: &str) -> redisx::Result<u64> {
    rx.cache().invalidate_tags(&[user_tag(user)]).await
}

/// What the handlers need.
#[derive(Clone)]
struct AppState {
    rx: RedisX,
    idle: Duration,
}

/// The service. Sessions end after `idle` without requests.
///
/// - `POST /login` (a JSON [`Login`]): 201 with the JSON [`Session`] and a `sid` cookie
///   (`HttpOnly; Secure; SameSite=Lax`); 400 for a malformed body or user name.
/// - `GET /me`: 200 with the JSON [`Session`], its idle timeout restarted; 401 without a live
///   session.
/// - `POST /logout`: ends this session; 204 (also without one) and a cookie that clears `sid`.
/// - `POST /users/{id}/logout-everywhere`: ends every session of user `id` on every instance
///   (the caller's session must be one of them); 200 with the JSON [`Ended`]; 401 without a
///   session, 403 with another user's.
///
/// A Redis error is a problem+json answer (503 when Redis cannot be reached).
pub fn app(rx: RedisX, idle: Duration) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/users/{id}/logout-everywhere", post(logout_everywhere))
        .with_state(AppState { rx, idle })
}

/// A JSON answer.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (status, [(CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The `Set-Cookie` value that clears the session cookie.
fn cleared_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0")
}

/// 401: no live session.
fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, "no session").into_response()
}

/// The request's live session, its idle timeout restarted.
async fn current(app: &AppState, headers: &HeaderMap) -> Result<Option<Session>, SessionError> {
    match session_id(headers) {
        Some(id) => touch_session(&app.rx, id, app.idle).await,
        None => Ok(None), // malformed or missing: never reaches the cache
    }
}

/// `POST /login`.
async fn login(State(app): State<AppState>, body: String) -> Response {
    let req: Login = match serde_json::from_str(&body) {
        Ok(req) => req,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad login: {e}")).into_response(),
    };
    if !is_user_name(&req.user) {
        return (StatusCode::BAD_REQUEST, "bad user name").into_response();
    }
    // A real service verifies credentials here (see the login recipe).
    match create_session(&app.rx, &req.user, app.idle).await {
        Ok((id, session)) => {
            let cookie = format!("{COOKIE_NAME}={id}; Path=/; HttpOnly; Secure; SameSite=Lax");
            ([(SET_COOKIE, cookie)], json(StatusCode::CREATED, &session)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /me`.
async fn me(State(app): State<AppState>, headers: HeaderMap) -> Response {
    match current(&app, &headers).await {
        Ok(Some(session)) => json(StatusCode::OK, &session),
        Ok(None) => unauthorized(),
        Err(e) => e.into_response(),
    }
}

/// `POST /logout`.
async fn logout(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers)
        && let Err(e) = app.rx.cache().delete(&session_key(id)).await
    {
        return e.into_response();
    }
    (StatusCode::NO_CONTENT, [(SET_COOKIE, cleared_cookie())]).into_response()
}

/// `POST /users/{id}/logout-everywhere`.
async fn logout_everywhere(
    State(app): State<AppState>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    let session = match current(&app, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return unauthorized(),
        Err(e) => return e.into_response(),
    };
    // Only the user's own session may end the user's sessions (an admin tool would call
    // `end_sessions_of` behind its own authorization).
    if session.user != user {
        return (StatusCode::FORBIDDEN, "not your sessions").into_response();
    }
    match end_sessions_of(&app.rx, &user).await {
        Ok(ended) => {
            let res = json(StatusCode::OK, &Ended { ended });
            ([(SET_COOKIE, cleared_cookie())], res).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// A client of the two instances, for `main`.
struct Client {
    http: reqwest::Client,
}

impl Client {
    /// Logs `user` in at `base`; returns the status and the session id from the cookie.
    async fn login(
        &self,
        base: &str,
        user: &str,
    ) -> Result<(u16, String), Box<dyn std::error::Error>> {
        let body = serde_json::to_string(&Login {
            user: user.to_owned(),
        })?;
        let res = self
            .http
            .post(format!("{base}/login"))
            .body(body)
            .send()
            .await?;
        let sid = res
            .headers()
            .get(SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .and_then(|v| v.strip_prefix("sid="))
            .ok_or("no session cookie")?
            .to_owned();
        Ok((res.status().as_u16(), sid))
    }

    /// Sends `method path` to `base` with the cookie `sid={sid}`; returns status and body.
    async fn call(
        &self,
        method: reqwest::Method,
        base: &str,
        path: &str,
        sid: &str,
    ) -> Result<(u16, String), Box<dyn std::error::Error>> {
        let res = self
            .http
            .request(method, format!("{base}{path}"))
            .header(COOKIE, format!("{COOKIE_NAME}={sid}"))
            .send()
            .await?;
        Ok((res.status().as_u16(), res.text().await?))
    }

    /// `GET /me` at `base` with the session `sid`.
    async fn me(&self, base: &str, sid: &str) -> Result<(u16, String), Box<dyn std::error::Error>> {
        self.call(reqwest::Method::GET, base, "/me", sid).await
    }
}

/// The first 8 digits of a session id, for printing.
fn short(sid: &str) -> &str {
    sid.get(..8).unwrap_or(sid)
}

/// One instance of the service: a runtime of its own (its own L1) on the shared Redis and
/// key prefix, behind its own axum server; returns the runtime and the base URL.
async fn instance(
    url: &str,
    idle: Duration,
) -> Result<(RedisX, String), Box<dyn std::error::Error>> {
    let rx = RedisX::builder()
        .client("default", ConnectionConfig::from_url(url)?)
        .key_prefix("sessions-example:")
        .build()
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let service = app(rx.clone(), idle);
    tokio::spawn(async move { axum::serve(listener, service).await });
    Ok((rx, base))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _server) = server::find_or_start_redis()?; // `_server` stops a throwaway server
    let idle = Duration::from_secs(2); // 30 minutes, say, in production
    let (rx_a, a) = instance(&url, idle).await?;
    let (rx_b, b) = instance(&url, idle).await?;
    // Start fresh when run again on the same server within a session's lifetime.
    end_sessions_of(&rx_a, "alice").await?;
    println!("--> instance A on {a}, instance B on {b}: one Redis, one key prefix, an L1 each");
    println!("--> sessions end after {idle:?} without requests");

    // reqwest is built without a TLS provider of its own; plain HTTP needs one all the same.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let c = Client {
        http: reqwest::Client::builder().no_proxy().build()?,
    };
    let (status, phone) = c.login(&a, "alice").await?;
    println!(
        "--> alice logs in on A (phone):  {status}, cookie sid={}...",
        short(&phone)
    );
    let (status, body) = c.me(&b, &phone).await?;
    println!("--> GET /me on B (phone):        {status} {body}");

    let (_, laptop) = c.login(&b, "alice").await?;
    let (_, tablet) = c.login(&a, "alice").await?;
    let (_, bob) = c.login(&b, "bob").await?;
    println!(
        "--> alice logs in on B (laptop, sid={}...) and A (tablet, sid={}...); bob on B",
        short(&laptop),
        short(&tablet)
    );
    let (status, _) = c.call(reqwest::Method::POST, &a, "/logout", &phone).await?;
    println!("--> POST /logout on A (phone):   {status}");
    let (phone_b, _) = c.me(&b, &phone).await?;
    let (laptop_a, _) = c.me(&a, &laptop).await?;
    println!("--> GET /me: phone on B {phone_b}, laptop on A {laptop_a} (only the phone ended)");

    // B serves the tablet once: B's L1 now holds a copy of that session too.
    let (tablet_b, _) = c.me(&b, &tablet).await?;
    let held = peek_session(&rx_b, &tablet).await?.is_some();
    println!("--> GET /me on B (tablet):       {tablet_b}; B's L1 holds a copy: {held}");

    let path = "/users/alice/logout-everywhere";
    let (status, body) = c.call(reqwest::Method::POST, &a, path, &tablet).await?;
    println!("--> POST {path} on A (tablet): {status} {body}");
    // The invalidation message reaches B, which drops its copy (else it would live on until
    // the idle timeout after B's last read).
    let sent = Instant::now();
    while peek_session(&rx_b, &tablet).await?.is_some() && sent.elapsed() < idle {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let held = peek_session(&rx_b, &tablet).await?.is_some();
    println!(
        "--> B's L1 copy of the tablet session, {:?} later: held {held}",
        sent.elapsed()
    );
    let (laptop_b, _) = c.me(&b, &laptop).await?;
    let (tablet_b, _) = c.me(&b, &tablet).await?;
    let (bob_b, _) = c.me(&b, &bob).await?;
    println!("--> GET /me on B: laptop {laptop_b}, tablet {tablet_b}, bob {bob_b}");

    let forged = "0".repeat(64);
    let (status, _) = c.me(&b, &forged).await?;
    println!("--> GET /me with a forged id:    {status}");
    let (status, _) = c.me(&b, "session:*").await?;
    println!("--> GET /me with sid=session:*:  {status} (refused before the cache is asked)");

    // Sliding expiry: requests every 600 ms, alternating instances, for longer than the idle
    // timeout keep the session alive; once they stop, it ends.
    let (_, carol) = c.login(&a, "carol").await?;
    let start = Instant::now();
    let mut statuses = Vec::new();
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let base = if i % 2 == 0 { &b } else { &a };
        statuses.push(c.me(base, &carol).await?.0);
    }
    println!(
        "--> carol, a request every 600 ms for {:.1?} (idle timeout {idle:?}): {statuses:?}",
        start.elapsed()
    );
    tokio::time::sleep(idle + Duration::from_millis(500)).await;
    let (on_a, _) = c.me(&a, &carol).await?;
    let (on_b, _) = c.me(&b, &carol).await?;
    println!(
        "--> after {:?} without requests: {on_a} on A, {on_b} on B",
        idle + Duration::from_millis(500)
    );

    end_sessions_of(&rx_a, "bob").await?;
    rx_a.shutdown().await;
    rx_b.shutdown().await;
    Ok(())
}
