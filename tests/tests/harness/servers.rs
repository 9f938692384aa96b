//! Servers start, answer, restart on the same port, and never outlive their handle or the test
//! process.

use std::time::Duration;

use redisx::testing::{
    ChildProcess, NOT_FOUND_MESSAGE, RedisServer, TEST_URL_ENV, in_scenario, process_alive,
    raw_connection, signal_ready, unique_prefix,
};

use crate::{ping, wait_dead};

#[tokio::test]
async fn starts_and_answers_ping() {
    let server = RedisServer::start_owned();
    assert!(server.is_owned());
    assert!(server.url().starts_with("redis://127.0.0.1:"));
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
    assert_ne!(server.port(), 6379);
    assert_eq!(ping(&server.url()).await.unwrap(), "PONG");
}

#[tokio::test]
async fn start_uses_redisx_test_url_when_set_else_owns_a_server() {
    let server = RedisServer::start();
    match std::env::var(TEST_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => {
            assert!(!server.is_owned());
            assert_eq!(server.url(), url.trim());
        }
        _ => assert!(server.is_owned()),
    }
    assert_eq!(ping(&server.url()).await.unwrap(), "PONG");
}

#[tokio::test]
async fn restart_keeps_the_port_and_empties_the_server() {
    let mut server = RedisServer::start_owned();
    let port = server.port();
    let first_pid = server.pid().unwrap();
    let mut conn = raw_connection(&server.url()).await;
    let key = format!("{}k", unique_prefix("restart"));
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();

    server.restart();
    assert_eq!(server.port(), port);
    let second_pid = server.pid().unwrap();
    assert_ne!(first_pid, second_pid);
    assert!(wait_dead(first_pid, Duration::from_secs(1)));
    assert_eq!(ping(&server.url()).await.unwrap(), "PONG");
    let mut conn = raw_connection(&server.url()).await;
    let value: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value, None, "no persistence: a restarted server is empty");
}

#[tokio::test]
async fn kill_then_start_again() {
    let mut server = RedisServer::start_owned();
    let pid = server.pid().unwrap();
    server.kill();
    assert!(!server.is_running());
    assert_eq!(server.pid(), None);
    assert!(!process_alive(pid));
    assert!(ping(&server.url()).await.is_err());
    server.start_again();
    assert!(server.is_running());
    assert_eq!(ping(&server.url()).await.unwrap(), "PONG");
}

#[test]
fn drop_kills_the_process() {
    let server = RedisServer::start_owned();
    let pid = server.pid().unwrap();
    assert!(process_alive(pid));
    drop(server);
    assert!(
        !process_alive(pid),
        "redis-server {pid} survived its handle"
    );
}

#[test]
fn a_panicking_test_still_stops_its_server() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let server = RedisServer::start_owned();
        tx.send(server.pid().unwrap()).unwrap();
        panic!("test failure while the server runs");
    })
    .join();
    assert!(result.is_err());
    let pid = rx.recv().unwrap();
    assert!(
        !process_alive(pid),
        "redis-server {pid} survived a panicking test"
    );
}

#[tokio::test]
async fn password_and_acl_users() {
    let server = RedisServer::builder()
        .password("s3cret pass")
        .acl_user("alice", "alice-pw", ["~*", "&*", "+@all"])
        .acl_user("reader", "reader-pw", ["~*", "+get", "+ping"])
        .start();
    let err = ping(&server.url()).await.unwrap_err();
    assert!(
        err.to_string().contains("NOAUTH") || err.to_string().contains("uthentication"),
        "{err}"
    );
    assert_eq!(
        ping(&server.url_with_auth("", "s3cret pass"))
            .await
            .unwrap(),
        "PONG"
    );
    assert_eq!(
        ping(&server.url_with_auth("alice", "alice-pw"))
            .await
            .unwrap(),
        "PONG"
    );
    assert!(ping(&server.url_with_auth("alice", "wrong")).await.is_err());

    let client = redis::Client::open(server.url_with_auth("reader", "reader-pw")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let denied: redis::RedisResult<()> = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut conn)
        .await;
    let denied = denied.unwrap_err().to_string();
    assert!(
        denied.contains("NOPERM") || denied.contains("permission"),
        "{denied}"
    );
}

#[tokio::test]
async fn acl_users_survive_restart() {
    let mut server = RedisServer::builder()
        .acl_user("bob", "bob-pw", ["~*", "+@all"])
        .start();
    server.restart();
    assert_eq!(
        ping(&server.url_with_auth("bob", "bob-pw")).await.unwrap(),
        "PONG"
    );
}

#[test]
fn extra_args_reach_the_server() {
    let server = RedisServer::builder().arg("--maxmemory").arg("7mb").start();
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let reply: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query(&mut conn)
        .unwrap();
    assert_eq!(reply, ["maxmemory", &(7 * 1024 * 1024).to_string()]);
}

#[test]
fn parallel_servers_get_distinct_ports() {
    let servers: Vec<RedisServer> = (0..4).map(|_| RedisServer::start_owned()).collect();
    let mut ports: Vec<u16> = servers.iter().map(RedisServer::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 4);
}

/// Scenario of `a_killed_test_process_leaves_no_orphan`: starts a server, prints its pid, then
/// waits to be killed.
#[test]
#[ignore = "scenario: run in a child process by a_killed_test_process_leaves_no_orphan"]
fn orphan_scenario() {
    if !in_scenario("servers::orphan_scenario") {
        return;
    }
    let server = RedisServer::start_owned();
    println!("REDIS_PID {}", server.pid().unwrap());
    signal_ready();
    std::thread::sleep(Duration::from_secs(60));
    drop(server);
}

#[test]
fn a_killed_test_process_leaves_no_orphan() {
    let mut child = ChildProcess::scenario("servers::orphan_scenario")
        .env_remove(TEST_URL_ENV)
        .start();
    let line = child
        .wait_for_line("REDIS_PID ", Duration::from_secs(1))
        .unwrap();
    let (_, pid) = line.split_once("REDIS_PID ").unwrap();
    let pid: u32 = pid.trim().parse().unwrap();
    assert!(process_alive(pid));
    child.kill(); // SIGKILL: no unwinding, no Drop
    assert!(
        wait_dead(pid, Duration::from_secs(5)),
        "redis-server {pid} outlived the SIGKILLed test process"
    );
}

/// The environment variable that tells `url_scenario` which case it checks.
const URL_MODE_ENV: &str = "REDISX_HARNESS_URL_MODE";

/// Run by `a_test_url_handle_points_there_and_refuses_process_control` with `REDISX_TEST_URL`
/// set, and by `redis_url_is_ignored` with only `REDIS_URL` set.
#[test]
#[ignore = "scenario: run in a child process by the two tests below"]
fn url_scenario() {
    if !in_scenario("servers::url_scenario") {
        return;
    }
    let mode = std::env::var(URL_MODE_ENV).unwrap();
    let mut server = RedisServer::start();
    if mode == "redis_url" {
        // An application's `REDIS_URL` never points the suite at its server.
        assert!(server.is_owned(), "start() followed REDIS_URL");
        assert_ne!(server.port(), 6999);
        println!("URL_CHILD_OK");
        return;
    }
    assert!(!server.is_owned());
    assert_eq!(server.url(), "redis://127.0.0.1:6999/0");
    assert_eq!(server.port(), 6999);
    assert_eq!(server.pid(), None);
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.kill()));
    let message = refused.expect_err("kill must refuse a REDISX_TEST_URL handle");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("start_owned"), "{message}");
    assert!(message.contains("REDISX_TEST_URL"), "{message}");
    // start_owned ignores REDISX_TEST_URL.
    assert!(RedisServer::start_owned().is_owned());
    println!("URL_CHILD_OK");
}

/// Runs `url_scenario` to its end in a child process with `mode` and the given environment.
fn run_url_child(mode: &str, env: &[(&str, &str)], remove: &[&str]) {
    let mut child = ChildProcess::scenario("servers::url_scenario")
        .env(URL_MODE_ENV, mode)
        .no_ready_line();
    for (k, v) in env {
        child = child.env(k, v);
    }
    for k in remove {
        child = child.env_remove(k);
    }
    let mut child = child.start();
    let status = child.wait_exit(Duration::from_secs(30)).unwrap();
    assert!(
        status.success() && child.output().contains("URL_CHILD_OK"),
        "the scenario failed ({status}):\n{}",
        child.output()
    );
}

#[test]
fn a_test_url_handle_points_there_and_refuses_process_control() {
    run_url_child(
        "test_url",
        &[(TEST_URL_ENV, "redis://127.0.0.1:6999/0")],
        &[],
    );
}

#[test]
fn redis_url_is_ignored() {
    run_url_child(
        "redis_url",
        &[("REDIS_URL", "redis://127.0.0.1:6999/0")],
        &[TEST_URL_ENV],
    );
}

/// Starts a server with no `redis-server` on `PATH`.
#[test]
#[ignore = "scenario: run in a child process by a_missing_redis_server_says_how_to_install_it"]
fn missing_server_scenario() {
    if !in_scenario("servers::missing_server_scenario") {
        return;
    }
    let _server = RedisServer::start_owned();
}

#[test]
fn a_missing_redis_server_says_how_to_install_it() {
    let mut child = ChildProcess::scenario("servers::missing_server_scenario")
        .env("PATH", "/nonexistent")
        .env_remove(TEST_URL_ENV)
        .no_ready_line()
        .start();
    let status = child.wait_exit(Duration::from_secs(30)).unwrap();
    let output = child.output();
    assert!(!status.success(), "started without redis-server:\n{output}");
    assert!(output.contains(NOT_FOUND_MESSAGE), "{output}");
    assert!(output.contains("apt-get install redis-server"), "{output}");
}
