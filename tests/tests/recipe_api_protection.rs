//! The API protection recipe (`examples/api_protection.rs`, its `app` and `rate_limits` as they
//! are) through a real axum server on a loopback socket, a real HTTP client and a Redis server
//! of its own: the 11th request in a second is refused with 429, `Retry-After` and the limit
//! headers; the hour tier counts only the requests both tiers admitted (all or nothing, read
//! through the headers and the runtime's `state_policy`); each API key has its own quota; a
//! request without a key gets the configured 401; the app refuses a runtime without its policy.

// The example's `main` (and what only it uses) is not called here, and its `pub` items are
// public to the example's readers, not from this crate.
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/api_protection.rs"]
mod api_protection;

use std::time::{Duration, Instant};

use api_protection::{POLICY, app, quota_key, rate_limits, standard_tiers};
use redisx::rate_limit::{Decision, Limit};
use redisx::{ConnectionConfig, ErrorCode, RedisX};
use redisx_tests::http::{client, serve};
use redisx_tests::idempotency_http::{header, problem};
use redisx_tests::{RedisServer, eventually, unique_prefix};

/// A runtime on `server` under a prefix of the test's own, with `tiers` as the API's policy.
async fn runtime(
    server: &RedisServer,
    test: &str,
    tiers: impl IntoIterator<Item = Limit>,
) -> RedisX {
    RedisX::builder()
        .client(
            "default",
            ConnectionConfig::from_url(&server.url()).unwrap(),
        )
        .key_prefix(unique_prefix(test))
        .rate_limit(rate_limits(tiers))
        .build()
        .await
        .unwrap()
}

/// The app served on loopback: its `/v1/quote` URL.
async fn serve_api(rx: &RedisX) -> String {
    format!("{}/v1/quote", serve(app(rx.clone()).unwrap()).await)
}

/// GETs `url` with the API key `key`.
async fn get(c: &reqwest::Client, url: &str, key: &str) -> reqwest::Response {
    c.get(url).header("x-api-key", key).send().await.unwrap()
}

/// The header `name` of `res` as a number.
fn number(res: &reqwest::Response, name: &str) -> u64 {
    header(res, name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .parse()
        .unwrap()
}

/// Sends `n` requests with `key` one after the other: the responses, and whether they all
/// came within `window` (else a window may have passed in between and they prove nothing).
async fn burst(
    c: &reqwest::Client,
    url: &str,
    key: &str,
    n: usize,
    window: Duration,
) -> Option<Vec<reqwest::Response>> {
    let started = Instant::now();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get(c, url, key).await);
    }
    (started.elapsed() < window).then_some(out)
}

/// The state of the API policy for `key`: the tier with the fewest points left.
async fn state(rx: &RedisX, key: &str) -> Decision {
    rx.rate_limiter()
        .state_policy(POLICY, &quota_key(key))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_request_in_a_second_is_refused_with_the_headers() {
    let server = RedisServer::start();
    let rx = runtime(&server, "recipe_api_second", standard_tiers()).await;
    let url = serve_api(&rx).await;
    let c = client();

    // A run slower than the second cannot tell, and tries again with another key.
    let mut runs = ["k-a", "k-b", "k-c"].into_iter();
    let mut responses = loop {
        let key = runs
            .next()
            .expect("three runs of 11 requests each took over a second");
        if let Some(r) = burst(&c, &url, key, 11, Duration::from_secs(1)).await {
            break r;
        }
    };
    let refused = responses.pop().unwrap();
    for (i, res) in responses.iter().enumerate() {
        assert_eq!(res.status(), 200, "request {}", i + 1);
        assert_eq!(number(res, "x-ratelimit-limit"), 10);
        assert_eq!(number(res, "x-ratelimit-remaining"), 9 - i as u64);
        let r = format!(r#""api";r={};t="#, 9 - i);
        assert!(header(res, "ratelimit").unwrap().starts_with(&r));
    }
    assert_eq!(
        responses.swap_remove(0).text().await.unwrap(),
        r#"{"symbol":"ACME","price":"42.00"}"#
    );

    assert_eq!(refused.status(), 429);
    assert_eq!(
        number(&refused, "retry-after"),
        1,
        "the second tier refused"
    );
    assert_eq!(number(&refused, "x-ratelimit-limit"), 10);
    assert_eq!(number(&refused, "x-ratelimit-remaining"), 0);
    assert!(number(&refused, "x-ratelimit-reset") > 0);
    assert_eq!(
        header(&refused, "ratelimit-policy").as_deref(),
        Some(r#""api";q=10"#)
    );
    assert!(
        header(&refused, "ratelimit")
            .unwrap()
            .starts_with(r#""api";r=0;t="#)
    );
    let body = problem(refused).await;
    assert_eq!(body["status"], 429);
    assert_eq!(body["code"], "RATE_LIMIT_EXCEEDED");
    assert_eq!(
        (
            body["limit"].as_u64(),
            body["remaining"].as_u64(),
            body["retry_after"].as_u64()
        ),
        (Some(10), Some(0), Some(1))
    );
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hour_tier_counts_only_admitted_requests() {
    let server = RedisServer::start();
    // The recipe's tiers scaled down: 3 per 2 s, 5 per hour.
    let window = Duration::from_secs(2);
    let tiers = [
        Limit::sliding_window(3, window),
        Limit::sliding_counter(5, Duration::from_secs(3600)),
    ];
    let rx = runtime(&server, "recipe_api_hour", tiers).await;
    let url = serve_api(&rx).await;
    let c = client();

    // 6 requests within the short window: 3 admitted, 3 refused by the short tier.
    let mut runs = ["k-a", "k-b", "k-c"].into_iter();
    let (key, responses) = loop {
        let key = runs
            .next()
            .expect("three runs of 6 requests each took over 2 s");
        if let Some(r) = burst(&c, &url, key, 6, window).await {
            break (key, r);
        }
    };
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    for refused in &responses[3..] {
        assert_eq!(
            number(refused, "x-ratelimit-limit"),
            3,
            "the short tier refused"
        );
        assert!(number(refused, "retry-after") <= 2);
    }

    // Once the short tier is whole again, the hour tier has the fewest points left and is the
    // one the state reads: the 3 refused requests cost it nothing.
    let rx2 = rx.clone();
    let hour_decides = eventually(Duration::from_secs(5), Duration::from_millis(50), || {
        let rx = rx2.clone();
        async move { state(&rx, key).await.limit == 5 }
    })
    .await;
    assert!(hour_decides, "the short tier refills within its 2 s window");
    let hour = state(&rx, key).await;
    assert_eq!((hour.current, hour.remaining), (3, 2));

    // Its last 2 points, seen in the headers (the hour tier now decides), then its refusal.
    for left in [1, 0] {
        let res = get(&c, &url, key).await;
        assert_eq!(res.status(), 200);
        assert_eq!(number(&res, "x-ratelimit-limit"), 5);
        assert_eq!(number(&res, "x-ratelimit-remaining"), left);
    }
    let refused = get(&c, &url, key).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        number(&refused, "x-ratelimit-limit"),
        5,
        "the hour tier refused"
    );
    assert!(
        number(&refused, "retry-after") > 60,
        "not before the hour's points leave"
    );
    let hour = state(&rx, key).await;
    assert_eq!((hour.limit, hour.current), (5, 5));
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_has_its_own_quota_and_a_missing_key_is_refused() {
    let server = RedisServer::start();
    // Tiers no run can outlast: what the test shows does not depend on its speed.
    let tiers = [
        Limit::sliding_window(2, Duration::from_secs(60)),
        Limit::sliding_counter(50, Duration::from_secs(3600)),
    ];
    let rx = runtime(&server, "recipe_api_keys", tiers).await;
    let url = serve_api(&rx).await;
    let c = client();

    for _ in 0..2 {
        assert_eq!(get(&c, &url, "k-1").await.status(), 200);
    }
    assert_eq!(get(&c, &url, "k-1").await.status(), 429);
    let other = get(&c, &url, "k-2").await;
    assert_eq!(other.status(), 200, "another key, another quota");
    assert_eq!(number(&other, "x-ratelimit-remaining"), 1);
    assert_eq!(
        get(&c, &url, "k-1").await.status(),
        429,
        "k-1 is still spent"
    );
    assert_eq!(state(&rx, "k-1").await.current, 2);
    assert_eq!(state(&rx, "k-2").await.current, 1);

    // No key, or a blank one: the configured 401, never a shared bucket.
    for req in [c.get(&url), c.get(&url).header("x-api-key", "  ")] {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401);
        assert!(header(&res, "x-ratelimit-limit").is_none());
        assert_eq!(problem(res).await["code"], "RATE_LIMIT_KEY_MISSING");
    }

    // A runtime built without the tiers is refused when the app is built, not per request.
    let bare = RedisX::builder()
        .client(
            "default",
            ConnectionConfig::from_url(&server.url()).unwrap(),
        )
        .key_prefix(unique_prefix("recipe_api_bare"))
        .build()
        .await
        .unwrap();
    let err = app(bare.clone()).expect_err("no policy, no app");
    assert_eq!(err.code(), ErrorCode::ConfigInvalid);
    bare.shutdown().await;
    rx.shutdown().await;
}
