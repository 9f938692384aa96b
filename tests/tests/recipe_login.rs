//! The login recipe (`examples/login.rs`, its `app` as it is) through a real axum server on a
//! loopback socket, a real HTTP client and a Redis server of its own. The client plays a
//! trusted proxy on loopback and names the client address in `X-Forwarded-For`: failures from
//! one address across accounts spend the address (429, the account untouched); failures on one
//! account from many addresses lock the account (423); a success gives the account its
//! attempts back (not the address its failures); a locked account stays locked with the right
//! password until its window passes.

// The example's `main` (and what only it uses) is not called here, and its `pub` items are
// public to the example's readers, not from this crate.
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/login.rs"]
mod login;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use login::{Credentials, Throttle, Users, Welcome, account_key, app, ip_key};
use redisx::rate_limit::Limit;
use redisx::{CacheConfig, RedisX};
use redisx_tests::http::{client, serve};
use redisx_tests::idempotency_http::{header, problem};
use redisx_tests::{RedisServer, eventually, unique_prefix};

/// A runtime on `server` under a prefix of the test's own.
async fn runtime(server: &RedisServer, test: &str) -> RedisX {
    redisx_tests::runtime(&server.url(), &unique_prefix(test), CacheConfig::default()).await
}

/// The rules under test; the test client on loopback is the trusted proxy.
fn throttle(per_ip: Limit, per_account: Limit) -> Throttle {
    Throttle {
        per_ip,
        per_account,
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
    }
}

/// The app served on loopback: its `/login` URL.
async fn serve_login(rx: &RedisX, users: Users, throttle: Throttle) -> String {
    format!("{}/login", serve(app(rx.clone(), users, throttle)).await)
}

/// POSTs a login for `user` from the client `ip` (forwarded by the loopback proxy).
async fn attempt(
    c: &reqwest::Client,
    url: &str,
    ip: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    let creds = Credentials {
        user: user.to_owned(),
        password: password.to_owned(),
    };
    c.post(url)
        .header("x-forwarded-for", ip)
        .body(serde_json::to_string(&creds).unwrap())
        .send()
        .await
        .unwrap()
}

/// The `Retry-After` of `res`, in seconds.
fn retry_after(res: &reqwest::Response) -> u64 {
    header(res, "retry-after")
        .expect("a Retry-After header")
        .parse()
        .unwrap()
}

/// Asserts that `res` is a wrong-password 401 with `left` attempts left on the account.
async fn assert_failed(res: reqwest::Response, left: u64) {
    assert_eq!(res.status(), 401);
    let body = problem(res).await;
    assert_eq!(body["code"], "LOGIN_FAILED");
    assert_eq!(body["attempts_left"].as_u64(), Some(left), "{body}");
}

/// Asserts that `res` is the 200 of `user` signing in.
async fn assert_welcome(res: reqwest::Response, user: &str) {
    assert_eq!(res.status(), 200);
    let welcome: Welcome = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(welcome.user, user);
}

/// The points `key` has used of `limit`, read with the runtime's state API.
async fn used(rx: &RedisX, key: &str, limit: &Limit) -> u64 {
    rx.rate_limiter().state(key, limit).await.unwrap().current
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_from_one_address_across_accounts_spend_the_address() {
    let server = RedisServer::start();
    let rx = runtime(&server, "recipe_login_ip").await;
    let minute = Duration::from_secs(60);
    let t = throttle(
        Limit::sliding_window(3, minute),
        Limit::sliding_window(5, minute),
    );
    let (per_ip, per_account) = (t.per_ip.clone(), t.per_account.clone());
    let url = serve_login(&rx, Users::new([("dave", "pw-dave")]), t).await;
    let c = client();

    // One wrong password on each of three accounts: no account is near its limit.
    for user in ["acct-1", "acct-2", "acct-3"] {
        assert_failed(attempt(&c, &url, "203.0.113.7", user, "guess").await, 4).await;
    }
    // The address is spent: refused before any account is looked at, right password or not.
    let refused = attempt(&c, &url, "203.0.113.7", "dave", "pw-dave").await;
    assert_eq!(refused.status(), 429);
    assert!((1..=60).contains(&retry_after(&refused)));
    let body = problem(refused).await;
    assert_eq!(body["code"], "RATE_LIMIT_EXCEEDED");
    assert_eq!(body["limit"].as_u64(), Some(3));
    assert_eq!(used(&rx, &account_key("dave"), &per_account).await, 0);
    assert_eq!(used(&rx, &ip_key(ip("203.0.113.7")), &per_ip).await, 3);

    // The account itself is fine: from another address it signs in, and a success is not
    // counted against that address.
    assert_welcome(
        attempt(&c, &url, "203.0.113.8", "dave", "pw-dave").await,
        "dave",
    )
    .await;
    assert_eq!(used(&rx, &ip_key(ip("203.0.113.8")), &per_ip).await, 0);
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_on_one_account_from_many_addresses_lock_the_account() {
    let server = RedisServer::start();
    let rx = runtime(&server, "recipe_login_account").await;
    let minute = Duration::from_secs(60);
    let t = throttle(
        Limit::sliding_window(10, minute),
        Limit::sliding_window(3, minute),
    );
    let per_ip = t.per_ip.clone();
    let users = Users::new([("erin", "pw-erin"), ("frank", "pw-frank")]);
    let url = serve_login(&rx, users, t).await;
    let c = client();

    let addresses = ["198.51.100.1", "198.51.100.2", "198.51.100.3"];
    for (left, from) in [2, 1, 0].into_iter().zip(addresses) {
        assert_failed(attempt(&c, &url, from, "erin", "guess").await, left).await;
    }
    // Locked, whatever the address and the password (`Erin` is the same account).
    let locked = attempt(&c, &url, "198.51.100.4", "Erin", "pw-erin").await;
    assert_eq!(locked.status(), 423);
    let retry = retry_after(&locked);
    assert!((1..=60).contains(&retry));
    let body = problem(locked).await;
    assert_eq!(body["code"], "ACCOUNT_LOCKED");
    assert_eq!(body["retry_after"].as_u64(), Some(retry));

    // The addresses are not throttled: each has one failure, and signs another account in.
    for from in addresses {
        assert_eq!(used(&rx, &ip_key(ip(from)), &per_ip).await, 1);
    }
    assert_welcome(
        attempt(&c, &url, "198.51.100.1", "frank", "pw-frank").await,
        "frank",
    )
    .await;
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_gives_the_account_its_attempts_back() {
    let server = RedisServer::start();
    let rx = runtime(&server, "recipe_login_reset").await;
    let minute = Duration::from_secs(60);
    let t = throttle(
        Limit::sliding_window(10, minute),
        Limit::sliding_window(3, minute),
    );
    let (per_ip, per_account) = (t.per_ip.clone(), t.per_account.clone());
    let url = serve_login(&rx, Users::new([("grace", "pw-grace")]), t).await;
    let c = client();
    let from = "192.0.2.10";

    // Three attempts a round, the limit: without the first round's reset, the second round
    // would be refused from its first attempt (the fourth of the window).
    for round in 0..2 {
        assert_failed(attempt(&c, &url, from, "grace", "guess").await, 2).await;
        assert_failed(attempt(&c, &url, from, "grace", "guess").await, 1).await;
        assert_welcome(attempt(&c, &url, from, "grace", "pw-grace").await, "grace").await;
        assert_eq!(
            used(&rx, &account_key("grace"), &per_account).await,
            0,
            "round {round}: the account's attempts are given back"
        );
    }
    // The address keeps its failures: a success on one account is no pass for the next guess.
    assert_eq!(used(&rx, &ip_key(ip(from)), &per_ip).await, 4);
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_account_stays_locked_with_the_right_password_until_its_window_passes() {
    let server = RedisServer::start();
    let rx = runtime(&server, "recipe_login_window").await;
    let window = Duration::from_secs(2);
    let t = throttle(
        Limit::sliding_window(10, Duration::from_secs(60)),
        Limit::sliding_window(2, window),
    );
    let per_account = t.per_account.clone();
    let users = Users::new([("heidi0", "pw"), ("heidi1", "pw"), ("heidi2", "pw")]);
    let url = serve_login(&rx, users, t).await;
    let c = client();
    let from = "192.0.2.20";

    // Lock an account; a run slower than the window cannot tell, and tries the next account.
    let mut locked = None;
    for user in ["heidi0", "heidi1", "heidi2"] {
        let started = Instant::now();
        assert_failed(attempt(&c, &url, from, user, "guess").await, 1).await;
        assert_failed(attempt(&c, &url, from, user, "guess").await, 0).await;
        let res = attempt(&c, &url, from, user, "pw").await;
        if started.elapsed() >= window {
            continue;
        }
        assert_eq!(res.status(), 423, "the right password does not open it");
        assert!((1..=2).contains(&retry_after(&res)));
        locked = Some(user);
        break;
    }
    let user = locked.expect("three runs each took longer than the 2 s window");

    // Retried with the right password: 423 until the window passes, then signed in.
    let (c2, url2) = (c.clone(), url.clone());
    let signed_in = eventually(Duration::from_secs(5), Duration::from_millis(50), || {
        let (c, url) = (c2.clone(), url2.clone());
        async move {
            let res = attempt(&c, &url, from, user, "pw").await;
            match res.status().as_u16() {
                200 => true,
                423 => false,
                other => panic!("a locked account answers 423, not {other}"),
            }
        }
    })
    .await;
    assert!(signed_in, "the lock ends with the window");
    assert_eq!(used(&rx, &account_key(user), &per_account).await, 0);
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_login_is_a_400_and_counts_nothing() {
    let server = RedisServer::start();
    let rx = runtime(&server, "recipe_login_bad").await;
    let minute = Duration::from_secs(60);
    let t = throttle(
        Limit::sliding_window(3, minute),
        Limit::sliding_window(3, minute),
    );
    let per_ip = t.per_ip.clone();
    let url = serve_login(&rx, Users::new([("ivan", "pw")]), t).await;
    let c = client();
    let from = "192.0.2.30";

    let not_json = c
        .post(&url)
        .header("x-forwarded-for", from)
        .body("{")
        .send();
    assert_eq!(not_json.await.unwrap().status(), 400);
    assert_eq!(attempt(&c, &url, from, "  ", "pw").await.status(), 400);
    // A name the limiter refuses as a key: 400 problem+json, not a panic nor a 500.
    let control = attempt(&c, &url, from, "iv\u{7}an", "pw").await;
    assert_eq!(control.status(), 400);
    assert_eq!(problem(control).await["code"], "RATE_LIMIT_KEY_INVALID");
    assert_eq!(used(&rx, &ip_key(ip(from)), &per_ip).await, 0);
    assert_welcome(attempt(&c, &url, from, "ivan", "pw").await, "ivan").await;
    rx.shutdown().await;
}
