//! The service recipe's shutdown on SIGTERM (`examples/service/`: `app::shutdown_signal` and
//! `app::run`, as `--serve` uses them), in a real child process sent a real SIGTERM: it exits
//! by itself with status 0 after draining, having released the lock it still held (at once,
//! not at the lock's ttl), and accepts no more connections.

// The example's `pub` items are public to its readers, not from this crate, and some are only
// used by its `main`.
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/service/app.rs"]
mod app;
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/service/shop.rs"]
mod shop;

use std::time::Duration;

use redisx::lock::LockOptions;
use redisx::testing::{ChildProcess, in_scenario};
use redisx_tests::http::client;
use redisx_tests::{RedisServer, unique_prefix};

const REDIS_URL_ENV: &str = "RECIPE_SERVICE_SIGNAL_REDIS_URL";
const PREFIX_ENV: &str = "RECIPE_SERVICE_SIGNAL_PREFIX";
/// The lock the child holds while it serves.
const HELD: &str = "report:nightly";

/// The service as `--serve` runs it, holding a lock, until SIGTERM.
#[test]
#[ignore = "scenario: run in a child process by sigterm_drains_releases_the_lock_and_exits_0"]
fn service_until_sigterm() {
    if !in_scenario("service_until_sigterm") {
        return;
    }
    redisx_tests::scenario_runtime().block_on(async {
        let url = std::env::var(REDIS_URL_ENV).unwrap();
        let prefix = std::env::var(PREFIX_ENV).unwrap();
        let rx = app::runtime(&url, &url, &prefix).await.unwrap();
        let service = app::Service::start(rx.clone(), app::Config::default())
            .await
            .unwrap();
        let held = rx
            .locks()
            .acquire(HELD, &LockOptions::new().ttl(Duration::from_secs(60)))
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = app::shutdown_signal().unwrap();
        println!("ready http://{addr}");
        app::run(listener, app::app(&service), service, stop)
            .await
            .unwrap();
        println!("drained");
        drop(held); // released by the shutdown already
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_releases_the_lock_and_exits_0() {
    let server = RedisServer::start();
    let prefix = unique_prefix("recipe_service_signal");
    let mut child = ChildProcess::scenario("service_until_sigterm")
        .env(REDIS_URL_ENV, server.url())
        .env(PREFIX_ENV, &prefix)
        .ready_line("ready ")
        .start();
    let ready = child
        .wait_for_line("ready http://", Duration::from_secs(10))
        .unwrap();
    let base = ready
        .split_once("ready ")
        .map(|(_, addr)| addr.trim().to_owned())
        .expect("the ready line names the address");
    let rx = redisx_tests::runtime(&server.url(), &prefix, redisx::CacheConfig::default()).await;
    assert!(
        rx.locks().is_locked(HELD).await.unwrap(),
        "the child holds it"
    );
    let c = client();
    let health = c.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let pid = child.pid().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -TERM {pid}");
    let status = child.wait_exit(Duration::from_secs(15)).unwrap();
    assert!(
        status.success(),
        "the child exits by itself, status 0: {status}\n{}",
        child.output()
    );
    assert!(child.output().contains("drained"), "{}", child.output());
    assert!(
        !rx.locks().is_locked(HELD).await.unwrap(),
        "the shutdown released the lock (its ttl is 60 s)"
    );
    assert!(
        c.get(format!("{base}/health")).send().await.is_err(),
        "no more connections"
    );
    rx.shutdown().await;
}
