//! Fixtures of the idempotency layer's HTTP tests (`tests/tests/http_idempotency*.rs`): the
//! routes behind the layer, each counting its runs, and reads of what the client got.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Router};
use redisx::http::{IdempotencyKey, IdempotencyLayer};
use redisx::idempotency::IdempotencyOptions;
use redisx::{Error, RedisX};
use serde_json::Value;

/// The header the layer reads the key from.
pub const KEY: &str = "idempotency-key";

/// The value of the header `name` of `res`.
///
/// # Panics
/// When the value is not visible ASCII.
pub fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// The problem+json body of a refusal.
///
/// # Panics
/// When the response is not `application/problem+json` with a JSON body.
pub async fn problem(res: reqwest::Response) -> Value {
    assert_eq!(
        header(&res, "content-type").as_deref(),
        Some("application/problem+json")
    );
    serde_json::from_str(&res.text().await.unwrap()).unwrap()
}

/// POSTs `body` to `url` with the key `key`.
///
/// # Panics
/// When the request fails.
pub async fn post_key(c: &reqwest::Client, url: &str, key: &str, body: &str) -> reqwest::Response {
    c.post(url)
        .header(KEY, key)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// Whether `res` is a replay (`Idempotency-Replayed: true`).
pub fn replayed(res: &reqwest::Response) -> bool {
    header(res, "idempotency-replayed").as_deref() == Some("true")
}

/// How many times the handlers ran.
#[derive(Clone, Default)]
pub struct Runs(Arc<AtomicUsize>);

impl Runs {
    /// Counts one more run; returns its number (from 1).
    pub fn next(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// How many runs so far.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// The routes behind `layer`, each counting its runs in `runs`: `/orders` (any method: 201 with
/// a location, an `ETag`, a header that is not replayed and a JSON body), `/slow` (1 s),
/// `/flaky` (500 the first time), `/big` (4 KiB), `/stream` (a streamed body) and `/nested`
/// (an `Idempotency::run` on the layer's key).
pub fn app(runs: &Runs, rx: &RedisX, layer: IdempotencyLayer) -> Router {
    let r = runs.clone();
    let order = move |body: String| {
        let r = r.clone();
        async move {
            let n = r.next();
            let headers = [
                ("content-type", "application/json".to_owned()),
                ("location", format!("/orders/{n}")),
                ("etag", format!("\"v{n}\"")),
                ("x-request-secret", format!("s{n}")),
            ];
            let body = format!("{{\"order\":{n},\"len\":{}}}", body.len());
            (StatusCode::CREATED, headers, body)
        }
    };
    let r = runs.clone();
    let slow = move || {
        let r = r.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            (StatusCode::CREATED, format!("slow {}", r.next()))
        }
    };
    let r = runs.clone();
    let flaky = move || {
        let r = r.clone();
        async move {
            let n = r.next();
            if n == 1 {
                (StatusCode::INTERNAL_SERVER_ERROR, "try again".to_owned())
            } else {
                (StatusCode::CREATED, format!("flaky {n}"))
            }
        }
    };
    let r = runs.clone();
    let big = move || {
        let r = r.clone();
        async move {
            r.next();
            "x".repeat(4096)
        }
    };
    let r = runs.clone();
    let stream = move || {
        let r = r.clone();
        async move {
            r.next();
            let chunks = ["ab", "cd", "ef"].map(Ok::<_, std::io::Error>);
            Body::from_stream(futures_util::stream::iter(chunks))
        }
    };
    let (r, nested_rx) = (runs.clone(), rx.clone());
    let nested = move |Extension(k): Extension<IdempotencyKey>| {
        let (r, rx) = (r.clone(), nested_rx.clone());
        async move {
            let opts = IdempotencyOptions::new();
            let n: usize = rx
                .idempotency()
                .run(k.key(), "inner", &opts, async { Ok::<_, Error>(r.next()) })
                .await?;
            Ok::<_, Error>(format!("{} {n}", k.key()))
        }
    };
    Router::new()
        .route(
            "/orders",
            post(order.clone())
                .patch(order.clone())
                .put(order.clone())
                .get(order),
        )
        .route("/slow", post(slow))
        .route("/flaky", post(flaky))
        .route("/big", post(big))
        .route("/stream", post(stream))
        .route("/nested", post(nested))
        .layer(layer)
}
