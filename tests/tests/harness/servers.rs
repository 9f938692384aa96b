//! Servers start, answer, restart on the same port, and never outlive their handle or the test
//! process.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use redisx::testing::{RedisServer, TEST_URL_ENV, process_alive, raw_connection, unique_prefix};

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

const ORPHAN_CHILD_ENV: &str = "REDISX_HARNESS_ORPHAN_CHILD";

/// Run by `a_killed_test_process_leaves_no_orphan` in a child process: starts a server, prints
/// its pid, then waits to be killed.
#[test]
#[ignore = "helper: run in a child process by a_killed_test_process_leaves_no_orphan"]
fn orphan_child_helper() {
    if std::env::var_os(ORPHAN_CHILD_ENV).is_none() {
        return;
    }
    let server = RedisServer::start_owned();
    println!("REDIS_PID {}", server.pid().unwrap());
    std::thread::sleep(Duration::from_secs(60));
    drop(server);
}

#[test]
fn a_killed_test_process_leaves_no_orphan() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "servers::orphan_child_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ORPHAN_CHILD_ENV, "1")
        .env_remove(TEST_URL_ENV)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut pid = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        // libtest prints "test orphan_child_helper ... " before the helper's own output.
        if let Some((_, p)) = line.split_once("REDIS_PID ") {
            pid = Some(p.trim().parse::<u32>().unwrap());
            break;
        }
    }
    let pid = pid.expect("the helper did not report a redis-server pid");
    assert!(process_alive(pid));
    child.kill().unwrap(); // SIGKILL: no unwinding, no Drop
    child.wait().unwrap();
    assert!(
        wait_dead(pid, Duration::from_secs(5)),
        "redis-server {pid} outlived the SIGKILLed test process"
    );
}

const URL_CHILD_ENV: &str = "REDISX_HARNESS_URL_CHILD";

/// Run by `a_test_url_handle_points_there_and_refuses_process_control` with `REDISX_TEST_URL`
/// set, and by `redis_url_is_ignored` with only `REDIS_URL` set.
#[test]
#[ignore = "helper: run in a child process by the two tests below"]
fn url_child_helper() {
    let Some(mode) = std::env::var_os(URL_CHILD_ENV) else {
        return;
    };
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

/// Runs `url_child_helper` in a child process with `mode` and the given environment.
fn run_url_child(mode: &str, env: &[(&str, &str)], remove: &[&str]) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "servers::url_child_helper",
        "--ignored",
        "--nocapture",
    ])
    .env(URL_CHILD_ENV, mode);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in remove {
        cmd.env_remove(k);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("URL_CHILD_OK"),
        "helper failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
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
