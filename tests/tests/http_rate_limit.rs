//! The rate-limit layer through a real axum server on a loopback socket and a real HTTP client:
//! limit headers, 429 with `Retry-After` and a problem+json body, draft headers, client
//! addresses behind trusted and untrusted proxies, one charge per request when layered twice,
//! missing keys, skipped routes, `#[rate_limit]` underneath the layer, Redis stopped (fail
//! closed and fail open), and `IntoResponse` for `redisx::Error`.
//!
//! The suite runs on a standalone server and on the cluster; stopping Redis runs on a
//! standalone server.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use redisx::http::{HeaderStyle, KeyExtractor, RateLimitLayer};
use redisx::rate_limit::{ErrorPolicy, Limit, RateLimitConfig};
use redisx::testing::{Deployment, Topology};
use redisx::{Error, ErrorCode, RedisX};
use redisx_tests::http::{client, serve};
use redisx_tests::rate_limit::{rl_runtime, test_runtime};
use redisx_tests::{RedisServer, unique_prefix};
use serde_json::Value;

fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn number(res: &reqwest::Response, name: &str) -> u64 {
    header(res, name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .parse()
        .unwrap()
}

fn app(layer: RateLimitLayer) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/health", get(|| async { "up" }))
        .layer(layer)
}

async fn checked_responses_carry_the_limit_headers_and_a_denial_is_a_problem(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = test_runtime(&deployment, "http_rl", |b| b).await;
    let limit = Limit::fixed_window(2, Duration::from_secs(60));
    let url = serve(app(RateLimitLayer::new(limit).runtime(rx))).await;
    let c = client();
    let first = c.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(number(&first, "x-ratelimit-limit"), 2);
    assert_eq!(number(&first, "x-ratelimit-remaining"), 1);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let reset = number(&first, "x-ratelimit-reset");
    assert!(
        reset > now && reset <= now + 61,
        "reset {reset} is unix seconds"
    );
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    let denied = c.get(&url).send().await.unwrap();
    assert_eq!(denied.status(), 429);
    let retry = number(&denied, "retry-after");
    assert!((1..=60).contains(&retry));
    assert_eq!(number(&denied, "x-ratelimit-remaining"), 0);
    assert_eq!(
        header(&denied, "content-type").as_deref(),
        Some("application/problem+json")
    );
    let body: Value = serde_json::from_str(&denied.text().await.unwrap()).unwrap();
    assert_eq!(body["status"], 429);
    assert_eq!(body["code"], "RATE_LIMIT_EXCEEDED");
    assert_eq!(
        (body["limit"].as_u64(), body["remaining"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(body["retry_after"].as_u64(), Some(retry));
    assert_eq!(
        body["detail"],
        format!("Rate limit exceeded. Try again in {retry} seconds.")
    );
}

async fn draft_headers_replace_the_legacy_ones_on_request(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = test_runtime(&deployment, "http_rl", |b| b).await;
    let limit = Limit::sliding_window(5, Duration::from_secs(60));
    let layer = RateLimitLayer::new(limit)
        .runtime(rx)
        .headers(HeaderStyle::Draft)
        .message(|d| format!("slow down ({} max)", d.limit));
    let url = serve(app(layer)).await;
    let res = client().get(&url).send().await.unwrap();
    assert_eq!(
        header(&res, "ratelimit-policy").as_deref(),
        Some(r#""default";q=5;w=60"#)
    );
    let now = header(&res, "ratelimit").unwrap();
    assert!(now.starts_with(r#""default";r=4;t="#), "{now}");
    assert!(header(&res, "x-ratelimit-limit").is_none());
}

async fn a_forwarded_for_from_an_untrusted_peer_is_ignored(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = test_runtime(&deployment, "http_rl", |b| b).await;
    let limit = Limit::fixed_window(1, Duration::from_secs(60));
    let layer = RateLimitLayer::new(limit)
        .runtime(rx)
        .key(KeyExtractor::client_ip(["10.0.0.0/8".parse().unwrap()]));
    let url = serve(app(layer)).await;
    let c = client();
    let first = c
        .get(&url)
        .header("x-forwarded-for", "1.1.1.1")
        .send()
        .await;
    assert_eq!(first.unwrap().status(), 200);
    // The peer (127.0.0.1) is not a trusted proxy: a new address in the header is no escape.
    let second = c
        .get(&url)
        .header("x-forwarded-for", "2.2.2.2")
        .send()
        .await;
    assert_eq!(second.unwrap().status(), 429);
}

async fn a_trusted_proxy_is_honoured_and_read_from_the_right(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = test_runtime(&deployment, "http_rl", |b| b).await;
    let limit = Limit::fixed_window(1, Duration::from_secs(60));
    let layer = RateLimitLayer::new(limit.clone())
        .runtime(rx.clone())
        .key(KeyExtractor::client_ip(["127.0.0.1/32".parse().unwrap()]));
    let url = serve(app(layer)).await;
    let c = client();
    let get = |xff: &'static str| c.get(&url).header("x-forwarded-for", xff).send();
    assert_eq!(get("198.51.100.1").await.unwrap().status(), 200);
    assert_eq!(
        get("198.51.100.2").await.unwrap().status(),
        200,
        "another client"
    );
    // A made-up leading entry passed through the proxy is not taken as the client.
    assert_eq!(get("6.6.6.6, 198.51.100.1").await.unwrap().status(), 429);
    let state = rx
        .rate_limiter()
        .state("ip:198.51.100.1", &limit)
        .await
        .unwrap();
    assert_eq!(
        state.current, 1,
        "the client's own bucket, namespaced `ip:`"
    );
}

async fn two_layers_with_the_same_limit_charge_a_request_once(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = test_runtime(&deployment, "http_rl", |b| b).await;
    let limit = Limit::fixed_window(4, Duration::from_secs(60));
    let layer = || RateLimitLayer::new(limit.clone()).runtime(rx.clone());
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route_layer(layer())
        .layer(layer());
    let url = serve(app).await;
    let c = client();
    for remaining in [3, 2] {
        let res = c.get(&url).send().await.unwrap();
        assert_eq!(number(&res, "x-ratelimit-remaining"), remaining);
    }
    let state = rx
        .rate_limiter()
        .state("ip:127.0.0.1", &limit)
        .await
        .unwrap();
    assert_eq!(state.current, 2);
}

async fn a_missing_key_is_refused_and_a_skipped_route_is_not_checked(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = test_runtime(&deployment, "http_rl", |b| b).await;
    let layer = RateLimitLayer::new(Limit::fixed_window(1, Duration::from_secs(60)))
        .runtime(rx)
        .key(KeyExtractor::api_key())
        .skip(|r| r.uri.path() == "/health");
    let url = serve(app(layer)).await;
    let c = client();
    let anonymous = c.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "never a shared bucket");
    let with_key = c.get(&url).header("x-api-key", "k1").send().await;
    assert_eq!(with_key.unwrap().status(), 200);
    let other_key = c.get(&url).header("x-api-key", "k2").send().await;
    assert_eq!(other_key.unwrap().status(), 200);
    for _ in 0..3 {
        let health = c.get(format!("{url}/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        assert!(header(&health, "x-ratelimit-limit").is_none());
    }
}

/// A runtime on `server` whose rate limiter fails as `policy` says (the fixture for tests that stop
/// the server: a short command timeout, a quick reconnect).
async fn runtime(server: &RedisServer, policy: ErrorPolicy) -> RedisX {
    rl_runtime(
        &server.url(),
        &unique_prefix("http_rl"),
        RateLimitConfig::default().error_policy(policy),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_fails_closed_without_internal_text_or_open_by_choice() {
    let mut server = RedisServer::start();
    let closed = runtime(&server, ErrorPolicy::FailClosed).await;
    let open = runtime(&server, ErrorPolicy::FailOpen).await;
    let limit = Limit::fixed_window(5, Duration::from_secs(60));
    let closed_url = serve(app(
        RateLimitLayer::new(limit.clone()).runtime(closed.clone())
    ))
    .await;
    let open_url = serve(app(RateLimitLayer::new(limit).runtime(open.clone()))).await;
    let c = client();
    assert_eq!(c.get(&closed_url).send().await.unwrap().status(), 200);
    server.kill();
    let res = c.get(&closed_url).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    let fields: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, ["code", "status", "title", "type"], "{body}");
    assert!(body["code"].as_str().unwrap().starts_with("CONN_") || body["code"] == "OP_TIMEOUT");
    let res = c.get(&open_url).send().await.unwrap();
    assert_eq!(res.status(), 200, "fail open admits");
    assert_eq!(number(&res, "x-ratelimit-remaining"), 5);
    closed.shutdown().await;
    open.shutdown().await;
}

async fn errors_answer_with_their_status_and_no_internal_details(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = test_runtime(&deployment, "http_rl", |b| b).await;
    let limit = Limit::fixed_window(1, Duration::from_secs(60));
    let rx2 = rx.clone();
    let app = Router::new()
        .route(
            "/limited",
            get(move || {
                let (rx, limit) = (rx2.clone(), limit.clone());
                async move {
                    let d = rx.rate_limiter().check("handler", &limit).await?;
                    if d.allowed {
                        Ok("ok")
                    } else {
                        Err(Error::rate_limited(d))
                    }
                }
            }),
        )
        .route(
            "/down",
            get(|| async {
                Err::<&str, _>(Error::new(
                    ErrorCode::ConnectionFailed,
                    "secret: redis at 10.1.2.3:6379 refused",
                ))
            }),
        );
    let url = serve(app).await;
    let c = client();
    assert_eq!(
        c.get(format!("{url}/limited"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let denied = c.get(format!("{url}/limited")).send().await.unwrap();
    assert_eq!(denied.status(), 429);
    assert!(number(&denied, "retry-after") >= 1);
    let down = c.get(format!("{url}/down")).send().await.unwrap();
    assert_eq!(down.status(), 503);
    let text = down.text().await.unwrap();
    assert!(
        !text.contains("secret") && !text.contains("10.1.2.3"),
        "{text}"
    );
    assert!(text.contains("CONN_FAILED"), "{text}");
}

#[redisx::rate_limit(key = "ip:{ip}", limit = 4, window = "1m", algorithm = "fixed_window")]
async fn same_limit(ip: String) -> Result<String, Error> {
    Ok(ip)
}

#[redisx::rate_limit(key = "ip:{ip}", limit = 9, window = "1m", algorithm = "fixed_window")]
async fn other_limit(ip: String) -> Result<String, Error> {
    Ok(ip)
}

async fn the_attribute_under_the_layer_does_not_charge_the_same_limit_again(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = test_runtime(&deployment, "http_rl", |b| b).await;
    let limit = Limit::fixed_window(4, Duration::from_secs(60));
    let handler_rx = rx.clone();
    let app = Router::new()
        .route(
            "/",
            get(
                move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>| {
                    let rx = handler_rx.clone();
                    async move {
                        // The attributes use this runtime (the server's tasks have no scope).
                        rx.scope(async move {
                            let ip = peer.ip().to_string();
                            same_limit(ip.clone()).await?;
                            other_limit(ip).await?;
                            Ok::<_, Error>("ok")
                        })
                        .await
                    }
                },
            ),
        )
        .layer(RateLimitLayer::new(limit.clone()).runtime(rx.clone()));
    let url = serve(app).await;
    let c = client();
    for _ in 0..2 {
        assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    }
    let rl = rx.rate_limiter();
    let same = rl.state("ip:127.0.0.1", &limit).await.unwrap();
    assert_eq!(
        same.current, 2,
        "one charge per request for the same limit and key"
    );
    let other = Limit::fixed_window(9, Duration::from_secs(60));
    let other = rl.state("ip:127.0.0.1", &other).await.unwrap();
    assert_eq!(other.current, 2, "a different limit is still checked");
}

redisx_tests::on_topologies!(
    checked_responses_carry_the_limit_headers_and_a_denial_is_a_problem,
    draft_headers_replace_the_legacy_ones_on_request,
    a_forwarded_for_from_an_untrusted_peer_is_ignored,
    a_trusted_proxy_is_honoured_and_read_from_the_right,
    two_layers_with_the_same_limit_charge_a_request_once,
    a_missing_key_is_refused_and_a_skipped_route_is_not_checked,
    errors_answer_with_their_status_and_no_internal_details,
    the_attribute_under_the_layer_does_not_charge_the_same_limit_again,
);
