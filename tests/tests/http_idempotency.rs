//! The idempotency layer through a real axum server on a loopback socket and a real HTTP
//! client: missing, repeated and malformed keys, replays with their status, allow-listed
//! headers and body, fingerprints (mismatch, off, custom, query), a duplicate of a running
//! request, a 5xx then a retry after the lock ttl, tenants. The body limits, methods not
//! covered, Redis stopped and a run inside the handler are in `http_idempotency_limits.rs`.
//!
//! The tests run on a standalone server and on the cluster (what `#[redisx::test]` gives a
//! test, on either: `scoped`).

use std::time::Duration;

use redisx::http::{IdempotencyLayer, KeyExtractor};
use redisx::idempotency::{IdempotencyOptions, Status};
use redisx::testing::Topology;
use redisx_tests::http::{client, serve};
use redisx_tests::idempotency_http::{KEY, Runs, app, header, post_key, problem, replayed};
use redisx_tests::scoped;

async fn a_required_key_must_be_sent_once_and_well_formed(topology: Topology) {
    scoped(
        topology,
        "a_required_key_must_be_sent_once_and_well_formed",
        |rx| async move {
            let runs = Runs::default();
            let layer = IdempotencyLayer::new().runtime(rx.clone()).required(true);
            let url = format!("{}/orders", serve(app(&runs, &rx, layer)).await);
            let c = client();
            let missing = c.post(&url).body("{}").send().await.unwrap();
            assert_eq!(missing.status(), 400);
            let body = problem(missing).await;
            assert_eq!(body["code"], "IDEMPOTENCY_KEY_MISSING");
            assert_eq!(body["status"], 400);
            let twice = c
                .post(&url)
                .header(KEY, "a")
                .header(KEY, "b")
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(twice.status(), 400);
            assert_eq!(problem(twice).await["code"], "IDEMPOTENCY_KEY_INVALID");
            let too_long = "k".repeat(256);
            for bad in ["has space", "tab\there", too_long.as_str()] {
                let res = post_key(&c, &url, bad, "{}").await;
                assert_eq!(res.status(), 400, "{bad:?}");
                assert_eq!(problem(res).await["code"], "IDEMPOTENCY_KEY_INVALID");
            }
            assert_eq!(runs.get(), 0, "no refused request ran");
            let longest = "k".repeat(255);
            assert_eq!(post_key(&c, &url, &longest, "{}").await.status(), 201);
            assert_eq!(runs.get(), 1);
        },
    )
    .await;
}

async fn without_a_key_an_optional_layer_lets_the_request_through(topology: Topology) {
    scoped(
        topology,
        "without_a_key_an_optional_layer_lets_the_request_through",
        |rx| async move {
            let runs = Runs::default();
            let url = format!(
                "{}/orders",
                serve(app(&runs, &rx, IdempotencyLayer::new().runtime(rx.clone()))).await
            );
            let c = client();
            for _ in 0..2 {
                let res = c.post(&url).body("{}").send().await.unwrap();
                assert_eq!(res.status(), 201);
                assert!(!replayed(&res));
            }
            assert_eq!(
                runs.get(),
                2,
                "the original's default: no key, no protection"
            );
        },
    )
    .await;
}

async fn a_duplicate_gets_the_recorded_status_headers_and_body(topology: Topology) {
    scoped(
        topology,
        "a_duplicate_gets_the_recorded_status_headers_and_body",
        |rx| async move {
            let runs = Runs::default();
            let url = format!(
                "{}/orders",
                serve(app(&runs, &rx, IdempotencyLayer::new().runtime(rx.clone()))).await
            );
            let c = client();
            let first = post_key(&c, &url, "order-1", r#"{"amount":42}"#).await;
            assert_eq!(first.status(), 201);
            assert!(header(&first, "idempotency-replayed").is_none());
            assert_eq!(header(&first, "x-request-secret").as_deref(), Some("s1"));
            let first_headers = ["content-type", "location", "etag"].map(|h| header(&first, h));
            let first_body = first.text().await.unwrap();
            let second = post_key(&c, &url, "order-1", r#"{"amount":42}"#).await;
            assert_eq!(second.status(), 201);
            assert!(replayed(&second));
            assert_eq!(
                ["content-type", "location", "etag"].map(|h| header(&second, h)),
                first_headers
            );
            assert_eq!(first_headers[1].as_deref(), Some("/orders/1"));
            assert!(
                header(&second, "x-request-secret").is_none(),
                "only allow-listed headers are recorded"
            );
            assert_eq!(second.text().await.unwrap(), first_body);
            assert_eq!(runs.get(), 1);
            let record = rx.idempotency().get("order-1").await.unwrap().unwrap();
            assert_eq!(record.status(), Status::Completed);
            // PATCH is covered too; another key runs.
            let patch = c
                .patch(&url)
                .header(KEY, "order-2")
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(patch.status(), 201);
            let again = c
                .patch(&url)
                .header(KEY, "order-2")
                .body("{}")
                .send()
                .await
                .unwrap();
            assert!(replayed(&again));
            assert_eq!(runs.get(), 2);
        },
    )
    .await;
}

async fn another_body_with_the_same_key_is_422(topology: Topology) {
    scoped(
        topology,
        "another_body_with_the_same_key_is_422",
        |rx| async move {
            let runs = Runs::default();
            let url = format!(
                "{}/orders",
                serve(app(&runs, &rx, IdempotencyLayer::new().runtime(rx.clone()))).await
            );
            let c = client();
            assert_eq!(
                post_key(&c, &url, "pay-1", r#"{"amount":1}"#)
                    .await
                    .status(),
                201
            );
            let other = post_key(&c, &url, "pay-1", r#"{"amount":2}"#).await;
            assert_eq!(other.status(), 422);
            let body = problem(other).await;
            assert_eq!(body["code"], "IDEMPOTENCY_FINGERPRINT_MISMATCH");
            assert!(body["detail"].as_str().is_some());
            // The query is not part of the default fingerprint.
            let query = post_key(&c, &format!("{url}?page=2"), "pay-1", r#"{"amount":1}"#).await;
            assert!(replayed(&query));
            assert_eq!(runs.get(), 1);
        },
    )
    .await;
}

async fn fingerprints_can_be_turned_off_chosen_or_include_the_query(topology: Topology) {
    scoped(
        topology,
        "fingerprints_can_be_turned_off_chosen_or_include_the_query",
        |rx| async move {
            let runs = Runs::default();
            let c = client();
            let off = IdempotencyLayer::new()
                .runtime(rx.clone())
                .validate_fingerprint(false)
                .key_prefix("off:");
            let url = format!("{}/orders", serve(app(&runs, &rx, off)).await);
            assert_eq!(post_key(&c, &url, "k", "one").await.status(), 201);
            assert!(replayed(&post_key(&c, &url, "k", "two").await));
            assert_eq!(runs.get(), 1);

            let custom = IdempotencyLayer::new()
                .runtime(rx.clone())
                .fingerprint_with(|req, _body| req.uri.path().to_owned())
                .key_prefix("custom:");
            let url = format!("{}/orders", serve(app(&runs, &rx, custom)).await);
            assert_eq!(post_key(&c, &url, "k", "one").await.status(), 201);
            assert!(replayed(&post_key(&c, &url, "k", "two").await));
            assert_eq!(runs.get(), 2);

            let query = IdempotencyLayer::new()
                .runtime(rx.clone())
                .fingerprint_query(true)
                .key_prefix("query:");
            let url = format!("{}/orders", serve(app(&runs, &rx, query)).await);
            let first = post_key(&c, &format!("{url}?page=1"), "k", "{}").await;
            assert_eq!(first.status(), 201);
            let other = post_key(&c, &format!("{url}?page=2"), "k", "{}").await;
            assert_eq!(other.status(), 422);
            assert_eq!(runs.get(), 3);
            let record = rx.idempotency().get("query:k").await.unwrap();
            assert!(record.is_some(), "the layer's prefix is part of the key");
        },
    )
    .await;
}

async fn a_duplicate_of_a_running_request_gets_409_past_the_wait(topology: Topology) {
    scoped(
        topology,
        "a_duplicate_of_a_running_request_gets_409_past_the_wait",
        |rx| async move {
            let runs = Runs::default();
            let layer = IdempotencyLayer::new()
                .runtime(rx.clone())
                .options(IdempotencyOptions::new().wait(Duration::from_millis(200)));
            let url = format!("{}/slow", serve(app(&runs, &rx, layer)).await);
            let c = client();
            let first = tokio::spawn({
                let (c, url) = (c.clone(), url.clone());
                async move { post_key(&c, &url, "slow-1", "{}").await }
            });
            tokio::time::sleep(Duration::from_millis(200)).await;
            let dup = post_key(&c, &url, "slow-1", "{}").await;
            assert_eq!(dup.status(), 409);
            let body = problem(dup).await;
            assert_eq!(body["code"], "IDEMPOTENCY_IN_PROGRESS");
            assert_eq!(body["state"], "processing");
            let first = first.await.unwrap();
            assert_eq!(first.status(), 201);
            assert_eq!(first.text().await.unwrap(), "slow 1");
            let after = post_key(&c, &url, "slow-1", "{}").await;
            assert!(replayed(&after));
            assert_eq!(after.text().await.unwrap(), "slow 1");
            assert_eq!(runs.get(), 1);
        },
    )
    .await;
}

async fn a_5xx_marks_the_key_failed_then_a_retry_runs_after_the_lock_ttl(topology: Topology) {
    scoped(
        topology,
        "a_5xx_marks_the_key_failed_then_a_retry_runs_after_the_lock_ttl",
        |rx| async move {
            let runs = Runs::default();
            let layer = IdempotencyLayer::new()
                .runtime(rx.clone())
                .options(IdempotencyOptions::new().lock_ttl(Duration::from_millis(500)));
            let url = format!("{}/flaky", serve(app(&runs, &rx, layer)).await);
            let c = client();
            let first = post_key(&c, &url, "flaky-1", "{}").await;
            assert_eq!(first.status(), 500);
            assert_eq!(first.text().await.unwrap(), "try again");
            let dup = post_key(&c, &url, "flaky-1", "{}").await;
            assert_eq!(dup.status(), 409);
            let body = problem(dup).await;
            assert_eq!(body["code"], "IDEMPOTENCY_PREVIOUS_FAILED");
            assert_eq!(body["state"], "failed");
            assert_eq!(runs.get(), 1);
            let record = rx.idempotency().get("flaky-1").await.unwrap().unwrap();
            assert_eq!(
                (record.status(), record.reason()),
                (Status::Failed, "server_error")
            );
            tokio::time::sleep(Duration::from_millis(700)).await;
            let retry = post_key(&c, &url, "flaky-1", "{}").await;
            assert_eq!(retry.status(), 201);
            assert!(!replayed(&retry));
            assert_eq!(retry.text().await.unwrap(), "flaky 2");
            let dup = post_key(&c, &url, "flaky-1", "{}").await;
            assert!(replayed(&dup));
            assert_eq!(runs.get(), 2);
        },
    )
    .await;
}

async fn tenants_with_the_same_key_run_separately_and_cannot_forge_each_other(topology: Topology) {
    scoped(
        topology,
        "tenants_with_the_same_key_run_separately_and_cannot_forge_each_other",
        |rx| async move {
            let runs = Runs::default();
            let tenant = KeyExtractor::custom(|r| {
                r.headers
                    .get("x-tenant")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            });
            let layer = IdempotencyLayer::new().runtime(rx.clone()).tenant(tenant);
            let url = format!("{}/orders", serve(app(&runs, &rx, layer)).await);
            let c = client();
            let send = |tenant: &str, key: &str| {
                c.post(&url)
                    .header("x-tenant", tenant)
                    .header(KEY, key)
                    .body("{}")
                    .send()
            };
            let a = send("a", "k").await.unwrap();
            assert_eq!(a.status(), 201);
            let b = send("b", "k").await.unwrap();
            assert_eq!(b.status(), 201);
            assert!(!replayed(&b), "another tenant's key is its own");
            assert_eq!(runs.get(), 2);
            assert!(replayed(&send("a", "k").await.unwrap()));
            // Both would be `a:b:c` without the escape.
            assert!(!replayed(&send("a:b", "c").await.unwrap()));
            assert!(!replayed(&send("a", "b:c").await.unwrap()));
            assert_eq!(runs.get(), 4);
            let idem = rx.idempotency();
            assert!(idem.get("a%3Ab:c").await.unwrap().is_some());
            assert!(idem.get("a:b:c").await.unwrap().is_some());
            let anonymous = c
                .post(&url)
                .header(KEY, "k")
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(anonymous.status(), 401);
            assert_eq!(
                problem(anonymous).await["code"],
                "IDEMPOTENCY_TENANT_MISSING"
            );
        },
    )
    .await;
}

redisx_tests::on_topologies!(
    a_required_key_must_be_sent_once_and_well_formed,
    without_a_key_an_optional_layer_lets_the_request_through,
    a_duplicate_gets_the_recorded_status_headers_and_body,
    another_body_with_the_same_key_is_422,
    fingerprints_can_be_turned_off_chosen_or_include_the_query,
    a_duplicate_of_a_running_request_gets_409_past_the_wait,
    a_5xx_marks_the_key_failed_then_a_retry_runs_after_the_lock_ttl,
    tenants_with_the_same_key_run_separately_and_cannot_forge_each_other,
);
