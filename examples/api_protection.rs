//! API protection: every request to the API is counted per API key under two tiers at once,
//! 10 per second and 1,000 per hour, all or nothing, and answered with the standard rate-limit
//! headers.
//!
//! ```text
//! cargo run --example api_protection
//! ```
//!
//! Uses the server in `REDIS_URL` when it is set, else one listening on `127.0.0.1:6379`, else
//! starts a throwaway `redis-server` from `PATH` (stopped at exit). It serves the app on a free
//! loopback port and, as a client, sends 11 requests at once with one key (10 admitted, the
//! 11th refused with 429 and `Retry-After`), one with another key (its own quota), one without
//! a key (401), and one more with the first key once the second has passed.
//!
//! The pieces: the tiers are a named policy of the runtime's rate limiter ([`rate_limits`]),
//! checked in one round trip and all or nothing: a request the second tier refuses consumes
//! nothing of the hour tier, so a client hammering the per-second limit does not burn its hourly
//! quota. [`redisx::http::RateLimitLayer`] keys each request by its `X-Api-Key` header
//! ([`KeyExtractor::api_key`], which falls back to `Authorization`), refuses a request without
//! one (401, never a shared bucket), answers a denial with 429 problem+json and `Retry-After`,
//! and puts both header styles on every checked response: `X-RateLimit-Limit`, `-Remaining`,
//! `-Reset` and the IETF draft's `RateLimit-Policy` and `RateLimit`. They describe the tier
//! that decided: the one that refused, else the one with the fewest points left.

#[path = "support/server.rs"]
mod server;

use std::fmt::Write as _;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use redisx::http::{HeaderStyle, KeyExtractor, RateLimitLayer};
use redisx::rate_limit::{Limit, RateLimitConfig};
use redisx::{ConnectionConfig, Error, ErrorCode, RedisX};

/// The name of the rate-limit policy holding the API's tiers.
pub const POLICY: &str = "api";

/// The tiers of the recipe: 10 per second, a sliding window log (exact: never 11 in any
/// second), and 1,000 per hour, a sliding window counter (constant memory per key; a log would
/// keep up to 1,000 entries per key).
pub fn standard_tiers() -> [Limit; 2] {
    [
        Limit::sliding_window(10, Duration::from_secs(1)),
        Limit::sliding_counter(1000, Duration::from_secs(3600)),
    ]
}

/// The rate-limit settings to build the runtime with: `tiers` as the [`POLICY`] policy, checked
/// together, all or nothing.
pub fn rate_limits(tiers: impl IntoIterator<Item = Limit>) -> RateLimitConfig {
    RateLimitConfig::default().policy(POLICY, tiers)
}

/// The rate-limit key of requests with the API key `api_key` (as [`KeyExtractor::api_key`]
/// names it): for the runtime's `state_policy`, `reset_policy` and friends.
pub fn quota_key(api_key: &str) -> String {
    format!("apikey:{api_key}")
}

/// The API: `GET /v1/quote` answers 200 with a JSON quote, behind the rate-limit layer.
/// Refuses to build ([`ErrorCode::ConfigInvalid`]) unless `rx` was built with
/// [`rate_limits`], so that a missing policy is found at startup, not on the first request.
pub fn app(rx: RedisX) -> Result<Router, Error> {
    if rx.rate_limiter().config().policy_value(POLICY).is_none() {
        return Err(Error::new(
            ErrorCode::ConfigInvalid,
            format!(
                "the runtime has no `{POLICY}` rate limit policy: build it with `.rate_limit(rate_limits(tiers))`"
            ),
        ));
    }
    let limits = RateLimitLayer::policy(POLICY)
        .runtime(rx)
        .key(KeyExtractor::api_key())
        // The default, spelled out: no key is the client's fault (401), never a shared bucket.
        .missing_key_status(StatusCode::UNAUTHORIZED)
        .headers(HeaderStyle::Both);
    Ok(Router::new()
        .route("/v1/quote", get(quote))
        .route_layer(limits))
}

/// `GET /v1/quote`: what the API serves (a fixed quote: the recipe is about what is in front).
async fn quote() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    (
        [(CONTENT_TYPE, "application/json")],
        r#"{"symbol":"ACME","price":"42.00"}"#,
    )
}

/// One response as the demo prints it: the status and the rate-limit headers.
fn summary(res: &reqwest::Response) -> String {
    let mut out = res.status().as_u16().to_string();
    for name in [
        "retry-after",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "ratelimit-policy",
        "ratelimit",
    ] {
        if let Some(v) = res.headers().get(name).and_then(|v| v.to_str().ok()) {
            let _ = write!(out, " {name}: {v};");
        }
    }
    out
}

/// GETs `url` with `api_key` (none: no header).
async fn get_with(
    c: &reqwest::Client,
    url: &str,
    api_key: Option<&str>,
) -> reqwest::Result<reqwest::Response> {
    let mut req = c.get(url);
    if let Some(k) = api_key {
        req = req.header("x-api-key", k);
    }
    req.send().await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _server) = server::find_or_start_redis()?; // `_server` stops a throwaway server
    let rx = RedisX::builder()
        .client("default", ConnectionConfig::from_url(&url)?)
        .key_prefix("api-example:")
        .rate_limit(rate_limits(standard_tiers()))
        .build()
        .await?;
    for key in ["demo-1", "demo-2"] {
        // Start fresh when run again on the same server.
        rx.rate_limiter()
            .reset_policy(POLICY, &quota_key(key))
            .await?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/v1/quote", listener.local_addr()?);
    let service = app(rx.clone())?;
    tokio::spawn(async move { axum::serve(listener, service).await });
    println!("--> serving GET {base} (10 per second and 1000 per hour per X-Api-Key)");

    // reqwest is built without a TLS provider of its own; plain HTTP needs one all the same.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::builder().no_proxy().build()?;

    let mut responses = Vec::new();
    for _ in 0..11 {
        responses.push(get_with(&c, &base, Some("demo-1")).await?);
    }
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    println!("--> demo-1, 11 requests in a row: {statuses:?}");
    println!("-->   the 1st:  {}", summary(&responses[0]));
    println!("-->   the 10th: {}", summary(&responses[9]));
    let refused = responses.pop().ok_or("no response")?;
    println!("-->   the 11th: {}", summary(&refused));
    println!("-->   its body: {}", refused.text().await?);

    let other = get_with(&c, &base, Some("demo-2")).await?;
    println!("--> demo-2: {} (a quota of its own)", summary(&other));
    let anonymous = get_with(&c, &base, None).await?;
    println!(
        "--> no key: {} {}",
        anonymous.status().as_u16(),
        anonymous.text().await?
    );

    // Once the second has passed, demo-1 has its 10 per second again (the refused request
    // cost neither tier anything: tests/tests/recipe_api_protection.rs reads the hour tier).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = get_with(&c, &base, Some("demo-1")).await?;
    println!("--> demo-1, a second later: {}", summary(&again));
    rx.shutdown().await;
    Ok(())
}
