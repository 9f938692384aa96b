//! The rate limiter when Redis fails: with the server stopped it fails closed by default (the
//! connection or operation error, never a denial) and, with `ErrorPolicy::FailOpen`, admits
//! with a whole quota; it works again once the server is back; and a flushed script cache
//! (`NOSCRIPT`) is reloaded without the caller noticing.
//!
//! The tests that stop the server run on a standalone server of their own; the flushed script
//! cache runs on a standalone server and on the cluster.

use std::time::Duration;

use redisx::rate_limit::{Algorithm, Decision, ErrorPolicy, Limit, RateLimitConfig};
use redisx::testing::{Deployment, Topology};
use redisx::{Error, ErrorCode};
use redisx_tests::rate_limit::{requests, rl_runtime};
use redisx_tests::{RedisServer, eventually, raw_connection, unique_prefix};

const HOUR: Duration = Duration::from_secs(3600);

/// Bounds a call to a stopped server: the command timeout is 500 ms, so 5 s is generous.
async fn bounded<T>(call: impl Future<Output = redisx::Result<T>>) -> redisx::Result<T> {
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("answers within the command timeout")
}

/// Asserts that `r` failed with Redis's own error, not a rate-limit code.
fn assert_redis_error<T: std::fmt::Debug>(r: redisx::Result<T>, what: &str) -> Error {
    let err = r.expect_err(what);
    assert!(
        matches!(err.code().family(), "connection" | "operation"),
        "{what}: the connection or operation error, not a denial: {err}"
    );
    assert_ne!(err.code(), ErrorCode::RateLimitExceeded, "{what}: {err}");
    err
}

/// A fail-open decision: admitted, with the whole quota, from no Redis state.
fn assert_whole_quota(d: &Decision, limit: u64, what: &str) {
    assert!(d.allowed, "{what}: fail-open admits: {d:?}");
    assert_eq!((d.limit, d.remaining), (limit, limit), "{what}: {d:?}");
    assert_eq!(d.retry_after, Duration::ZERO, "{what}: {d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_with_the_connection_error() {
    let mut server = RedisServer::start_owned();
    let rx = rl_runtime(
        &server.url(),
        &unique_prefix("rl_down_closed"),
        RateLimitConfig::default(),
    )
    .await;
    let rl = rx.rate_limiter();
    let limit = Limit::fixed_window(5, HOUR);
    assert!(rl.check("user:1", &limit).await.unwrap().allowed, "up");
    server.kill();

    for alg in Algorithm::ALL {
        let limit = Limit::new(alg, 5, HOUR);
        let what = format!("{alg:?}");
        assert_redis_error(bounded(rl.check("user:1", &limit)).await, &what);
        assert_redis_error(bounded(rl.check_cost("user:1", &limit, 2)).await, &what);
        assert_redis_error(bounded(rl.peek("user:1", &limit, 1)).await, &what);
        assert_redis_error(bounded(rl.state("user:1", &limit)).await, &what);
        assert_redis_error(bounded(rl.reset("user:1", &limit)).await, &what);
        assert!(
            requests(&rx, alg, "error") >= 2,
            "{alg:?}: counted as errors"
        );
    }
    let both = [Limit::fixed_window(2, HOUR), Limit::sliding_window(5, HOUR)];
    assert_redis_error(bounded(rl.check_all("user:1", &both, 1)).await, "check_all");
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_open_when_configured() {
    let mut server = RedisServer::start_owned();
    let config = RateLimitConfig::default().error_policy(ErrorPolicy::FailOpen);
    let rx = rl_runtime(&server.url(), &unique_prefix("rl_down_open"), config).await;
    let rl = rx.rate_limiter();
    assert!(
        rl.check("user:1", &Limit::gcra(5, HOUR))
            .await
            .unwrap()
            .allowed,
        "up"
    );
    server.kill();

    for alg in Algorithm::ALL {
        let limit = Limit::new(alg, 5, HOUR);
        let what = format!("{alg:?}");
        // Several checks in a row: each admitted with the whole quota (nothing is counted).
        for _ in 0..3 {
            let d = bounded(rl.check("user:1", &limit)).await.unwrap();
            assert_whole_quota(&d, 5, &what);
            assert!(!d.local, "{what}: {d:?}");
        }
        let d = bounded(rl.check_cost("user:1", &limit, 4)).await.unwrap();
        assert_whole_quota(&d, 5, &what);
        let d = bounded(rl.peek("user:1", &limit, 1)).await.unwrap();
        assert_whole_quota(&d, 5, &what);
        let both = [limit.clone(), Limit::fixed_window(3, HOUR)];
        let d = bounded(rl.check_all("user:1", &both, 1)).await.unwrap();
        assert_whole_quota(&d, 3, &format!("{what} check_all: the smallest limit"));
        assert!(
            requests(&rx, alg, "error") >= 5,
            "{what}: still counted as errors"
        );
    }
    // A reset cannot pretend: it still reports the failure.
    assert_redis_error(
        bounded(rl.reset("user:1", &Limit::fixed_window(5, HOUR))).await,
        "reset",
    );
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_work_again_once_the_server_is_back() {
    let mut server = RedisServer::start_owned();
    let rx = rl_runtime(
        &server.url(),
        &unique_prefix("rl_restart"),
        RateLimitConfig::default(),
    )
    .await;
    let rl = rx.rate_limiter();
    let limit = Limit::sliding_window(5, HOUR);
    assert!(rl.check("user:1", &limit).await.unwrap().allowed);
    server.kill();
    assert_redis_error(bounded(rl.check("user:1", &limit)).await, "down");

    // The restarted server is empty (and has no scripts loaded): a fresh quota.
    server.start_again();
    let back = eventually(Duration::from_secs(5), Duration::from_millis(50), || {
        let (rx, limit) = (rx.clone(), limit.clone());
        async move { rx.rate_limiter().check("probe", &limit).await.is_ok() }
    })
    .await;
    assert!(back, "the limiter reconnects");
    let d = rl.check("user:1", &limit).await.unwrap();
    assert!(d.allowed && d.remaining == 4, "{d:?}");
    rx.shutdown().await;
}

/// `SCRIPT FLUSH` on every server of `deployment`: every loaded script is gone, the next
/// `EVALSHA` is `NOSCRIPT`.
async fn flush_scripts(deployment: &Deployment) {
    for url in deployment.server_urls() {
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut raw_connection(&url).await)
            .await
            .expect("SCRIPT FLUSH");
    }
}

async fn a_flushed_script_cache_is_reloaded_transparently(topology: Topology) {
    // A server of its own: the flush would hit other tests' scripts too. The cluster is this
    // binary's, and no other test here runs on it.
    let deployment = if topology == Topology::Standalone {
        Deployment::start_owned(topology)
    } else {
        Deployment::start(topology)
    };
    let rx = rl_runtime(
        &deployment.url(),
        &unique_prefix("rl_noscript"),
        RateLimitConfig::default(),
    )
    .await;
    let rl = rx.rate_limiter();
    for alg in Algorithm::ALL {
        let limit = Limit::new(alg, 5, HOUR);
        assert!(rl.check("user:1", &limit).await.unwrap().allowed, "{alg:?}");
        // Each call after a flush: the check, the peek and state scripts, the multi-limit one.
        flush_scripts(&deployment).await;
        let d = rl.check("user:1", &limit).await.unwrap();
        assert_eq!((d.allowed, d.remaining), (true, 3), "{alg:?}: {d:?}");
        flush_scripts(&deployment).await;
        let p = rl.peek("user:1", &limit, 1).await.unwrap();
        assert_eq!((p.allowed, p.remaining), (true, 3), "{alg:?}: {p:?}");
        flush_scripts(&deployment).await;
        let s = rl.state("user:1", &limit).await.unwrap();
        assert_eq!(s.current, 2, "{alg:?}: {s:?}");
        flush_scripts(&deployment).await;
        let both = [limit.clone(), Limit::fixed_window(10, HOUR)];
        let d = rl.check_all("user:1", &both, 1).await.unwrap();
        assert_eq!((d.allowed, d.remaining), (true, 2), "{alg:?}: {d:?}");
        assert_eq!(
            requests(&rx, alg, "error"),
            0,
            "{alg:?}: NOSCRIPT is no error"
        );
    }
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_flushed_script_cache_is_reloaded_transparently
);
