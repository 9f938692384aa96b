//! Connections end to end against real `redis-server` processes: `lazy` clients, the command
//! timeout, and reconnecting after a restart.

use std::time::{Duration, Instant};

use redisx::{Error, ErrorCode};
use redisx_tests::connections::{DRIVERS, POLL, build, config, fast_reconnect, raw_get};
use redisx_tests::{RedisServer, eventually};

#[tokio::test]
async fn lazy_builds_while_the_server_is_down_and_works_once_it_is_up() {
    for driver in DRIVERS {
        let mut server = RedisServer::start_owned();
        server.kill();
        let cfg = config(&server.url())
            .lazy(true)
            .connect_timeout(Duration::from_millis(500))
            .command_timeout(Duration::from_millis(500))
            .reconnect(fast_reconnect())
            .driver(driver);
        let started = Instant::now();
        let rx = build(cfg, "lazy").await.unwrap_or_else(|e| {
            panic!("{driver:?}: a lazy client builds while Redis is down: {e}")
        });
        assert!(started.elapsed() < Duration::from_secs(2));
        let err = rx
            .client()
            .query::<String>(&redis::cmd("PING"))
            .await
            .expect_err("the server is down");
        assert!(
            matches!(
                err.code(),
                ErrorCode::ConnectionClosed
                    | ErrorCode::ConnectionFailed
                    | ErrorCode::ConnectionTimeout
            ),
            "{driver:?}: {err}"
        );

        server.start_again();
        let up = eventually(Duration::from_secs(10), POLL, || async {
            rx.client().ping().await.is_ok()
        })
        .await;
        assert!(up, "{driver:?}: the lazy client never connected");
        let () = rx
            .client()
            .query(redis::cmd("SET").arg("lazy").arg("1"))
            .await
            .unwrap();
        assert_eq!(raw_get(&server.url(), "lazy").await.as_deref(), Some("1"));
        // The cache works too (scripts are loaded on demand, NOSCRIPT -> load and retry).
        let v = rx
            .cache()
            .get_or_load("k", None, || async { Ok::<_, Error>(3u8) })
            .await
            .unwrap();
        assert_eq!(v, 3);
        rx.cache().clear_l1();
        assert_eq!(
            rx.cache().get::<u8>("k").await.unwrap(),
            Some(3),
            "{driver:?}: the loaded value was not written to Redis"
        );
    }
}

#[tokio::test]
async fn the_command_timeout_cuts_off_a_slow_command() {
    let server = RedisServer::builder()
        .arg("--enable-debug-command")
        .arg("yes")
        .start();
    let rx = build(
        config(&server.url()).command_timeout(Duration::from_millis(200)),
        "cmd_timeout",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let err = rx
        .client()
        .query::<()>(redis::cmd("DEBUG").arg("SLEEP").arg("1"))
        .await
        .expect_err("DEBUG SLEEP 1 outlives a 200 ms command timeout");
    let took = started.elapsed();
    assert_eq!(err.code(), ErrorCode::OperationTimeout, "{err}");
    assert!(err.is_retryable());
    assert!(
        took < Duration::from_millis(900),
        "the caller waited for the reply ({took:?})"
    );
    // The client recovers once the server is responsive again.
    let back = eventually(Duration::from_secs(5), POLL, || async {
        rx.client().ping().await.is_ok()
    })
    .await;
    assert!(back, "the client did not recover after a timeout");
    let () = rx
        .client()
        .query(redis::cmd("SET").arg("after").arg("ok"))
        .await
        .unwrap();
    let v: Option<String> = rx
        .client()
        .query(redis::cmd("GET").arg("after"))
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reconnects_after_the_server_restarts() {
    let mut server = RedisServer::start_owned();
    let rx = build(
        config(&server.url())
            .command_timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_millis(500))
            .reconnect(fast_reconnect()),
        "reconnect",
    )
    .await
    .unwrap();
    let () = rx
        .client()
        .query(redis::cmd("SET").arg("before").arg("1"))
        .await
        .unwrap();

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut failures = Vec::new();
    loop {
        let started = Instant::now();
        let r: redisx::Result<Option<String>> =
            rx.client().query(redis::cmd("GET").arg("before")).await;
        let took = started.elapsed();
        match r {
            Ok(v) => {
                assert_eq!(
                    v, None,
                    "a restarted server is empty: this is an old connection"
                );
                break;
            }
            Err(e) => {
                assert!(
                    matches!(
                        e.code(),
                        ErrorCode::ConnectionClosed | ErrorCode::ConnectionFailed
                    ),
                    "a call while reconnecting failed with {e}"
                );
                assert!(e.is_retryable(), "{e}");
                assert!(
                    took < Duration::from_secs(1),
                    "a failing call took {took:?}"
                );
                failures.push(e.code());
            }
        }
        assert!(
            Instant::now() < deadline,
            "no successful call within 10 s of the restart; failures: {failures:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rx.client().is_connected());
    let () = rx
        .client()
        .query(redis::cmd("SET").arg("after").arg("2"))
        .await
        .unwrap();
    assert_eq!(raw_get(&server.url(), "after").await.as_deref(), Some("2"));
}

#[tokio::test]
async fn a_lazy_cluster_config_builds_while_its_nodes_are_down() {
    let mut server = RedisServer::start_owned();
    let port = server.port();
    server.kill();
    let cfg = redisx::ConnectionConfig::cluster([("127.0.0.1", port)])
        .lazy(true)
        .connect_timeout(Duration::from_millis(300))
        .command_timeout(Duration::from_millis(300));
    let rx = build(cfg.clone(), "lazy_cluster")
        .await
        .unwrap_or_else(|e| panic!("a lazy cluster client builds while its nodes are down: {e}"));
    let err = rx
        .client()
        .query::<String>(&redis::cmd("PING"))
        .await
        .expect_err("no node is up");
    assert!(
        matches!(
            err.code(),
            ErrorCode::ConnectionClosed
                | ErrorCode::ConnectionFailed
                | ErrorCode::ConnectionTimeout
                | ErrorCode::OperationTimeout
        ),
        "{err:#}"
    );
    // Without `lazy`, building fails at once with the connect error.
    let err = build(cfg.lazy(false), "eager_cluster")
        .await
        .map(drop)
        .expect_err("no node is up");
    assert!(
        matches!(
            err.code(),
            ErrorCode::ConnectionFailed | ErrorCode::ConnectionTimeout
        ),
        "{err:#}"
    );
}
