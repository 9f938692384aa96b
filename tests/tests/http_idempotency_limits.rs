//! The idempotency layer's edges through a real axum server on a loopback socket and a real
//! HTTP client: the request and response body limits, methods not covered, Redis stopped (fail
//! closed and fail open), and an `Idempotency::run` on the same key inside the handler.
//!
//! The tests run on a standalone server and on the cluster (what `#[redisx::test]` gives a
//! test, on either: `scoped`), but for the one that stops Redis (a server of its own, killed),
//! which runs on a standalone server.

use std::time::Duration;

use axum::http::Method;
use redisx::RedisX;
use redisx::http::IdempotencyLayer;
use redisx::idempotency::{ErrorPolicy, IdempotencyConfig, Status};
use redisx::testing::Topology;
use redisx_tests::http::{client, serve};
use redisx_tests::idempotency::idem_runtime;
use redisx_tests::idempotency_http::{KEY, Runs, app, post_key, problem, replayed};
use redisx_tests::scoped;
use redisx_tests::{RedisServer, unique_prefix};

async fn a_request_body_above_the_limit_is_413(topology: Topology) {
    scoped(
        topology,
        "a_request_body_above_the_limit_is_413",
        |rx| async move {
            let runs = Runs::default();
            let layer = IdempotencyLayer::new()
                .runtime(rx.clone())
                .max_request_body(16);
            let url = format!("{}/orders", serve(app(&runs, &rx, layer)).await);
            let c = client();
            let res = post_key(&c, &url, "big-1", &"x".repeat(100)).await;
            assert_eq!(res.status(), 413);
            assert_eq!(problem(res).await["code"], "IDEMPOTENCY_BODY_TOO_LARGE");
            assert_eq!(runs.get(), 0);
            assert!(rx.idempotency().get("big-1").await.unwrap().is_none());
            let res = post_key(&c, &url, "big-1", &"x".repeat(16)).await;
            assert_eq!(res.status(), 201);
            assert_eq!(runs.get(), 1);
        },
    )
    .await;
}

async fn a_response_too_large_or_streamed_is_served_whole_but_not_recorded(topology: Topology) {
    scoped(
        topology,
        "a_response_too_large_or_streamed_is_served_whole_but_not_recorded",
        |rx| async move {
            let runs = Runs::default();
            let layer = IdempotencyLayer::new()
                .runtime(rx.clone())
                .max_response_body(1024);
            let base = serve(app(&runs, &rx, layer)).await;
            let c = client();
            for (route, key, body) in [
                ("big", "big-1", "x".repeat(4096)),
                ("stream", "stream-1", "abcdef".to_owned()),
            ] {
                let url = format!("{base}/{route}");
                let first = post_key(&c, &url, key, "{}").await;
                assert_eq!(first.status(), 200);
                assert_eq!(first.text().await.unwrap(), body, "never cut");
                let dup = post_key(&c, &url, key, "{}").await;
                assert_eq!(dup.status(), 409, "{route}");
                let problem = problem(dup).await;
                assert_eq!(problem["code"], "IDEMPOTENCY_RESPONSE_NOT_RECORDED");
                assert_eq!(problem["state"], "completed");
            }
            assert_eq!(runs.get(), 2, "the duplicates did not run");
        },
    )
    .await;
}

async fn methods_not_covered_pass_through(topology: Topology) {
    scoped(
        topology,
        "methods_not_covered_pass_through",
        |rx| async move {
            let runs = Runs::default();
            let url = format!(
                "{}/orders",
                serve(app(&runs, &rx, IdempotencyLayer::new().runtime(rx.clone()))).await
            );
            let c = client();
            for method in [Method::GET, Method::PUT, Method::GET, Method::PUT] {
                let res = c
                    .request(method, &url)
                    .header(KEY, "same")
                    .body("{}")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
                assert!(!replayed(&res));
            }
            assert_eq!(runs.get(), 4);
            assert!(rx.idempotency().get("same").await.unwrap().is_none());
        },
    )
    .await;
}

/// A runtime on `server` whose idempotency fails as `policy` says (the fixture for tests that stop
/// the server: a short command timeout, a quick reconnect).
async fn runtime(server: &RedisServer, policy: ErrorPolicy) -> RedisX {
    idem_runtime(
        &server.url(),
        &unique_prefix("http_idem"),
        IdempotencyConfig::default().error_policy(policy),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_fails_closed_without_internal_text_or_open_by_choice() {
    let mut server = RedisServer::start();
    let closed = runtime(&server, ErrorPolicy::FailClosed).await;
    let open = runtime(&server, ErrorPolicy::FailOpen).await;
    let (closed_runs, open_runs) = (Runs::default(), Runs::default());
    let layer = |rx: &RedisX| IdempotencyLayer::new().runtime(rx.clone());
    let closed_url = format!(
        "{}/orders",
        serve(app(&closed_runs, &closed, layer(&closed))).await
    );
    let open_url = format!(
        "{}/orders",
        serve(app(&open_runs, &open, layer(&open))).await
    );
    let c = client();
    assert_eq!(
        post_key(&c, &closed_url, "before", "{}").await.status(),
        201
    );
    server.kill();
    let res = post_key(&c, &closed_url, "down-1", "{}").await;
    assert_eq!(res.status(), 503);
    let body = problem(res).await;
    let fields: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, ["code", "status", "title", "type"], "{body}");
    assert!(body["code"].as_str().unwrap().starts_with("CONN_") || body["code"] == "OP_TIMEOUT");
    assert_eq!(closed_runs.get(), 1, "fail closed: the request did not run");
    let res = post_key(&c, &open_url, "down-1", "{}").await;
    assert_eq!(res.status(), 201, "fail open runs the request unprotected");
    assert!(!replayed(&res));
    assert_eq!(open_runs.get(), 1);
    closed.shutdown().await;
    open.shutdown().await;
}

async fn a_run_on_the_same_key_inside_the_handler_runs_once_under_the_layers_claim(
    topology: Topology,
) {
    scoped(
        topology,
        "a_run_on_the_same_key_inside_the_handler_runs_once_under_the_layers_claim",
        |rx| async move {
            let runs = Runs::default();
            let url = format!(
                "{}/nested",
                serve(app(&runs, &rx, IdempotencyLayer::new().runtime(rx.clone()))).await
            );
            let c = client();
            let first = tokio::time::timeout(
                Duration::from_secs(10),
                post_key(&c, &url, "nested-1", "{}"),
            )
            .await
            .expect("no self-deadlock: the run underneath uses the layer's claim");
            assert_eq!(first.status(), 200);
            assert_eq!(first.text().await.unwrap(), "nested-1 1");
            let dup = tokio::time::timeout(
                Duration::from_secs(10),
                post_key(&c, &url, "nested-1", "{}"),
            )
            .await
            .unwrap();
            assert!(replayed(&dup));
            assert_eq!(dup.text().await.unwrap(), "nested-1 1");
            assert_eq!(runs.get(), 1);
            let record = rx.idempotency().get("nested-1").await.unwrap().unwrap();
            assert_eq!(record.status(), Status::Completed);
        },
    )
    .await;
}

redisx_tests::on_topologies!(
    a_request_body_above_the_limit_is_413,
    a_response_too_large_or_streamed_is_served_whole_but_not_recorded,
    methods_not_covered_pass_through,
    a_run_on_the_same_key_inside_the_handler_runs_once_under_the_layers_claim,
);
