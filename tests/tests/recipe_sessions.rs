//! The sessions recipe (`examples/sessions.rs`, its `app` and functions as they are) as two
//! instances of one service: two runtimes on one Redis server of the test's own with one key
//! prefix, each with its own L1, each behind its own axum server on a loopback socket, called
//! by a real HTTP client. A session is served by both instances; requests keep it alive past
//! its idle timeout and it ends once they stop; a logout ends only its session; a logout
//! everywhere ends all of the user's sessions on both instances (in Redis and in each L1) and
//! no one else's; forged, unknown and malformed cookies get 401 without an error, and the
//! malformed ones never reach the cache; with Redis stopped, requests are 503, not signed out.

// The example's `main` (and what only it uses) is not called here, and its `pub` items are
// public to the example's readers, not from this crate.
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/sessions.rs"]
mod sessions;

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redisx::{CacheConfig, RedisX};
use redisx_tests::http::{client, serve};
use redisx_tests::idempotency_http::header;
use redisx_tests::{
    RedisServer, eventually, quick_connection, raw_connection, runtime, unique_prefix,
};
use reqwest::header::{COOKIE, HeaderValue};
use sessions::{Ended, Login, Session, app, is_session_id, peek_session, session_key};

/// An idle timeout no test outlives: a session ends only when a test ends it.
const LONG: Duration = Duration::from_secs(60);

/// Two instances of the service with the idle timeout `idle`: their runtimes (one key prefix,
/// made unique from `test`) and base URLs.
async fn instances(
    server: &RedisServer,
    test: &str,
    idle: Duration,
) -> ((RedisX, String), (RedisX, String)) {
    let prefix = unique_prefix(test);
    let a = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let b = runtime(&server.url(), &prefix, CacheConfig::default()).await;
    let url_a = serve(app(a.clone(), idle)).await;
    let url_b = serve(app(b.clone(), idle)).await;
    ((a, url_a), (b, url_b))
}

/// Logs `user` in at `base`; returns the session id of the cookie (checking its attributes)
/// and the session answered.
async fn login(c: &reqwest::Client, base: &str, user: &str) -> (String, Session) {
    let body = serde_json::to_string(&Login {
        user: user.to_owned(),
    })
    .unwrap();
    let res = c
        .post(format!("{base}/login"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let cookie = header(&res, "set-cookie").expect("a session cookie");
    let mut parts = cookie.split("; ");
    let sid = parts
        .next()
        .unwrap()
        .strip_prefix("sid=")
        .unwrap()
        .to_owned();
    let attrs: Vec<&str> = parts.collect();
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(attrs.contains(&attr), "{attr} in {cookie}");
    }
    assert!(is_session_id(&sid), "{sid}");
    let session: Session = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(session.user, user);
    (sid, session)
}

/// Sends `GET /me` to `base` with the `Cookie` header `cookie`; returns status and body.
async fn me_with(c: &reqwest::Client, base: &str, cookie: HeaderValue) -> (u16, String) {
    let res = c
        .get(format!("{base}/me"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// `GET /me` at `base` with the session `sid`: the session, or the status when refused.
async fn me(c: &reqwest::Client, base: &str, sid: &str) -> Result<Session, u16> {
    let cookie = HeaderValue::from_str(&format!("sid={sid}")).unwrap();
    match me_with(c, base, cookie).await {
        (200, body) => Ok(serde_json::from_str(&body).unwrap()),
        (status, _) => Err(status),
    }
}

/// POSTs to `path` at `base` with the session `sid` (no cookie when `None`).
async fn post(c: &reqwest::Client, base: &str, path: &str, sid: Option<&str>) -> reqwest::Response {
    let mut req = c.post(format!("{base}{path}"));
    if let Some(sid) = sid {
        req = req.header(COOKIE, format!("sid={sid}"));
    }
    req.send().await.unwrap()
}

/// Whether Redis holds the session `sid` (a raw `EXISTS`: it does not extend the session).
async fn in_redis(conn: &mut MultiplexedConnection, rx: &RedisX, sid: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(rx.cache().full_key(&session_key(sid)))
        .query_async(conn)
        .await
        .unwrap()
}

/// Waits (up to 2 s) until neither runtime's L1 nor Redis holds any of `sids`: `peek_session`
/// reads L1 first and Redis only when L1 holds nothing.
async fn dropped_everywhere(runtimes: [&RedisX; 2], sids: &[&str]) -> bool {
    eventually(Duration::from_secs(2), Duration::from_millis(5), || async {
        for rx in runtimes {
            for sid in sids {
                if peek_session(rx, sid).await.unwrap().is_some() {
                    return false;
                }
            }
        }
        true
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_served_by_both_instances() {
    let server = RedisServer::start();
    let ((a, url_a), (b, url_b)) = instances(&server, "recipe_sessions_both", LONG).await;
    let c = client();

    let (s1, created) = login(&c, &url_a, "alice").await;
    assert_eq!(me(&c, &url_a, &s1).await, Ok(created.clone()));
    assert_eq!(
        me(&c, &url_b, &s1).await,
        Ok(created),
        "B serves A's session"
    );
    let (s2, created) = login(&c, &url_b, "alice").await;
    assert_ne!(s1, s2, "each login is a session of its own");
    assert_eq!(
        me(&c, &url_a, &s2).await,
        Ok(created),
        "A serves B's session"
    );

    // Both carry the user's tag, which logout everywhere invalidates.
    let mut tagged = a.cache().keys_by_tag("user:alice").await.unwrap();
    tagged.sort();
    let mut expected = vec![session_key(&s1), session_key(&s2)];
    expected.sort();
    assert_eq!(tagged, expected);

    // A malformed login creates nothing.
    for body in [
        "not json",
        r#"{"user":""}"#,
        r#"{"user":"a b"}"#,
        r#"{"user":"x:*"}"#,
    ] {
        let res = c
            .post(format!("{url_a}/login"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{body}");
        assert!(res.headers().get("set-cookie").is_none(), "{body}");
    }
    assert_eq!(a.cache().stats().errors + b.cache().stats().errors, 0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_keep_a_session_alive_until_they_stop() {
    let server = RedisServer::start();
    let idle = Duration::from_secs(1);
    let ((a, url_a), (b, url_b)) = instances(&server, "recipe_sessions_sliding", idle).await;
    let c = client();
    let mut conn = raw_connection(&server.url()).await;

    let (busy, _) = login(&c, &url_a, "alice").await;
    let (quiet, _) = login(&c, &url_b, "bob").await; // never used: ends after 1 s
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let base = if i % 2 == 0 { &url_b } else { &url_a };
        let read = me(&c, base, &busy).await;
        assert!(
            read.is_ok(),
            "{:?} after login: {read:?}",
            started.elapsed()
        );
        i += 1;
    }
    // 2.5 s after both logins, past the 1 s idle timeout: only the busy session is left.
    assert!(
        !in_redis(&mut conn, &a, &quiet).await,
        "the quiet session ended"
    );
    assert_eq!(me(&c, &url_a, &quiet).await, Err(401));
    assert!(in_redis(&mut conn, &a, &busy).await);

    // The requests stop: the session ends (watched without extending it).
    let ended = eventually(Duration::from_secs(5), Duration::from_millis(50), || {
        let (mut conn, a, busy) = (conn.clone(), a.clone(), busy.clone());
        async move { !in_redis(&mut conn, &a, &busy).await }
    })
    .await;
    assert!(ended, "the session ended once the requests stopped");
    assert_eq!(me(&c, &url_a, &busy).await, Err(401));
    assert_eq!(me(&c, &url_b, &busy).await, Err(401));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_only_that_session() {
    let server = RedisServer::start();
    let ((a, url_a), (b, url_b)) = instances(&server, "recipe_sessions_logout", LONG).await;
    let c = client();

    let (phone, _) = login(&c, &url_a, "alice").await;
    let (laptop, _) = login(&c, &url_b, "alice").await;
    // B serves the phone: B's L1 holds a copy, which (idle 60 s) would live a minute.
    assert!(me(&c, &url_b, &phone).await.is_ok());
    assert!(peek_session(&b, &phone).await.unwrap().is_some());

    let res = post(&c, &url_a, "/logout", Some(&phone)).await;
    assert_eq!(res.status(), 204);
    let cleared = header(&res, "set-cookie").unwrap();
    assert!(
        cleared.starts_with("sid=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    // Gone from Redis and from B's L1 (the delete was published), before any read on B.
    assert!(
        dropped_everywhere([&a, &b], &[&phone]).await,
        "B dropped its copy"
    );
    assert_eq!(me(&c, &url_a, &phone).await, Err(401));
    assert_eq!(me(&c, &url_b, &phone).await, Err(401));
    // The user's other session lives on, on both instances.
    assert!(me(&c, &url_a, &laptop).await.is_ok());
    assert!(me(&c, &url_b, &laptop).await.is_ok());

    // Logging out again, or without a session, is a no-op.
    assert_eq!(
        post(&c, &url_b, "/logout", Some(&phone)).await.status(),
        204
    );
    assert_eq!(post(&c, &url_b, "/logout", None).await.status(), 204);
    assert!(me(&c, &url_b, &laptop).await.is_ok());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_everywhere_ends_every_session_of_the_user_on_both_instances() {
    let server = RedisServer::start();
    let ((a, url_a), (b, url_b)) = instances(&server, "recipe_sessions_everywhere", LONG).await;
    let c = client();

    let (s1, _) = login(&c, &url_a, "alice").await;
    let (s2, _) = login(&c, &url_b, "alice").await;
    let (s3, _) = login(&c, &url_a, "alice").await;
    let (bob, _) = login(&c, &url_b, "bob").await;
    // Each instance serves each session once: both L1s hold copies of all four.
    for sid in [&s1, &s2, &s3, &bob] {
        for (rx, url) in [(&a, &url_a), (&b, &url_b)] {
            assert!(me(&c, url, sid).await.is_ok());
            assert!(peek_session(rx, sid).await.unwrap().is_some());
        }
    }

    // Only a session of the user may end the user's sessions.
    let path = "/users/alice/logout-everywhere";
    assert_eq!(post(&c, &url_a, path, None).await.status(), 401);
    let forged = "f".repeat(64);
    assert_eq!(post(&c, &url_a, path, Some(&forged)).await.status(), 401);
    let other = post(&c, &url_a, "/users/bob/logout-everywhere", Some(&s1)).await;
    assert_eq!(other.status(), 403);
    assert!(me(&c, &url_b, &bob).await.is_ok());

    let res = post(&c, &url_a, path, Some(&s1)).await;
    assert_eq!(res.status(), 200);
    assert!(header(&res, "set-cookie").unwrap().contains("Max-Age=0"));
    let ended: Ended = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(ended, Ended { ended: 3 });
    // Gone from Redis and from both L1s (the tag invalidation was published), before any read.
    let gone = dropped_everywhere([&a, &b], &[&s1, &s2, &s3]).await;
    assert!(gone, "both instances dropped their copies");
    for sid in [&s1, &s2, &s3] {
        assert_eq!(me(&c, &url_a, sid).await, Err(401));
        assert_eq!(me(&c, &url_b, sid).await, Err(401));
    }
    // Another user's session stays, in L1 and over HTTP, on both instances.
    for (rx, url) in [(&a, &url_a), (&b, &url_b)] {
        assert!(peek_session(rx, &bob).await.unwrap().is_some());
        assert!(me(&c, url, &bob).await.is_ok());
    }
    // The user can sign in again.
    let (again, _) = login(&c, &url_b, "alice").await;
    assert!(me(&c, &url_a, &again).await.is_ok());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_unknown_and_malformed_cookies_get_401() {
    let server = RedisServer::start();
    let ((a, url_a), (b, _url_b)) = instances(&server, "recipe_sessions_forged", LONG).await;
    let c = client();
    let (sid, _) = login(&c, &url_a, "alice").await;

    // Malformed: refused before the cache is asked (no Redis read is counted).
    let before = a.cache().stats();
    let long = "a".repeat(10_000);
    let upper = sid.to_uppercase();
    let malformed: Vec<Vec<u8>> = [
        "sid=",
        "sid",
        "other=1",
        &format!("sid={}", &sid[..63]),
        &format!("sid={sid}0"),
        &format!("sid={upper}"),
        &format!("sid={}", "*".repeat(64)),
        &format!("sid=session:{}", &sid[..56]),
        &format!("sid=../{}", &sid[..61]),
        &format!("sid=}}{{{}", &sid[..62]),
        &format!("sid= {sid}"),
        &format!("sid={long}"),
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .chain([[b"sid=".as_slice(), &[0xc3, 0xa9].repeat(32)].concat()]) // not ASCII
    .collect();
    for cookie in &malformed {
        let value = HeaderValue::from_bytes(cookie).unwrap();
        let (status, body) = me_with(&c, &url_a, value).await;
        let shown = String::from_utf8_lossy(cookie);
        assert_eq!((status, body.as_str()), (401, "no session"), "{shown}");
    }
    assert_eq!(
        me_with(&c, &url_a, HeaderValue::from_static("")).await.0,
        401
    );
    let no_cookie = c.get(format!("{url_a}/me")).send().await.unwrap();
    assert_eq!(no_cookie.status(), 401);
    let after = a.cache().stats();
    assert_eq!(
        (after.l2_hits, after.l2_misses),
        (before.l2_hits, before.l2_misses),
        "no malformed id reached Redis"
    );

    // Well-formed but unknown (made up, or a real id with one digit changed): a miss, 401.
    let last = if sid.ends_with('0') { "1" } else { "0" };
    let tampered = format!("{}{last}", &sid[..63]);
    for unknown in ["0".repeat(64), tampered] {
        assert_eq!(me(&c, &url_a, &unknown).await, Err(401), "{unknown}");
    }
    assert_eq!(a.cache().stats().l2_misses, before.l2_misses + 2);

    // The real session, among other cookies, is still served; nothing failed.
    let cookie = HeaderValue::from_str(&format!("theme=dark; sid={sid}; lang=en")).unwrap();
    assert_eq!(me_with(&c, &url_a, cookie).await.0, 200);
    assert_eq!(a.cache().stats().errors + b.cache().stats().errors, 0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_a_503_not_a_sign_out() {
    let mut server = RedisServer::start_owned();
    let rx = RedisX::builder()
        .client("default", quick_connection(&server.url()))
        .key_prefix(unique_prefix("recipe_sessions_outage"))
        .build()
        .await
        .unwrap();
    let url = serve(app(rx.clone(), LONG)).await;
    let c = client();
    let (sid, _) = login(&c, &url, "alice").await;
    assert!(me(&c, &url, &sid).await.is_ok());

    server.kill();
    // Reading the session fails: the client is told to retry, not that it was signed out.
    let res = c
        .get(format!("{url}/me"))
        .header(COOKIE, format!("sid={sid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(header(&res, "set-cookie"), None, "the cookie is kept");
    // A login hands out no cookie for a session that was not stored (the cache write itself
    // fails open; the touch after it reports the failure).
    let body = serde_json::to_string(&Login {
        user: "bob".to_owned(),
    })
    .unwrap();
    let res = c
        .post(format!("{url}/login"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(header(&res, "set-cookie"), None);
    // A logout that could not delete the session says so.
    assert_eq!(post(&c, &url, "/logout", Some(&sid)).await.status(), 503);
    rx.shutdown().await;
}
