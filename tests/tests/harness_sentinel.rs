//! `redisx::testing::RedisSentinel` against real processes: three sentinels watching a master
//! with two replicas resolve the master's address, a manual failover and a killed master move it
//! to a replica, and nothing is left behind. How long each step took is printed
//! (`--nocapture`), never asserted.

use std::time::Instant;

use redisx::testing::{RedisSentinel, RedisServer, process_alive, raw_connection, unique_prefix};

/// Starts the deployment, printing how long it took.
fn start_sentinel(test: &str) -> RedisSentinel {
    let started = Instant::now();
    let sentinel = RedisSentinel::start();
    println!(
        "{test}: RedisSentinel::start() took {:?}",
        started.elapsed()
    );
    sentinel
}

/// The first element of `ROLE` on `url`: `master` or `slave`.
async fn role(url: &str) -> String {
    let mut conn = raw_connection(url).await;
    let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await.unwrap();
    match role.first() {
        Some(redis::Value::BulkString(role)) => String::from_utf8_lossy(role).into_owned(),
        other => panic!("ROLE on {url}: {other:?}"),
    }
}

/// `SET` then `GET` of a fresh key on `url`.
async fn writable(url: &str, test: &str) {
    let key = format!("{}k", unique_prefix(test));
    let mut conn = raw_connection(url).await;
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();
    let got: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(got, "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_resolve_the_master_and_clean_up() {
    let sentinel = start_sentinel("start");
    let master = sentinel.master_url();
    assert_eq!(master, sentinel.servers().primary_url());
    assert_eq!(role(&master).await, "master");
    writable(&master, "sentinel_start").await;

    let urls = sentinel.sentinel_urls();
    assert_eq!(urls.len(), 3);
    for url in &urls {
        assert!(!url.ends_with(":6379"), "{url}");
        let mut conn = raw_connection(url).await;
        let address: (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(sentinel.master_name())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(format!("redis://{}:{}", address.0, address.1), master);
        let state: std::collections::HashMap<String, String> = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(sentinel.master_name())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(state["num-slaves"], "2", "{url}");
        assert_eq!(state["num-other-sentinels"], "2", "{url}");
    }

    let dir = sentinel.dir().to_owned();
    assert!(dir.join("sentinel-0.conf").is_file());
    let servers = sentinel.servers();
    let pids: Vec<u32> = sentinel
        .sentinels()
        .iter()
        .chain([servers.primary()])
        .chain(servers.replicas())
        .filter_map(RedisServer::pid)
        .collect();
    assert_eq!(pids.len(), 6);
    drop(sentinel);
    assert!(!dir.exists(), "{} is left behind", dir.display());
    for pid in pids {
        assert!(!process_alive(pid), "process {pid} survived the drop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_moves_the_master_to_a_replica() {
    let mut sentinel = start_sentinel("failover");
    let before = sentinel.master_url();
    let started = Instant::now();
    sentinel.failover();
    println!("failover: failover() took {:?}", started.elapsed());

    let after = sentinel.master_url();
    assert_ne!(after, before);
    assert!(
        sentinel.servers().replica_urls().contains(&after),
        "{after}"
    );
    assert_eq!(role(&after).await, "master");
    writable(&after, "sentinel_failover").await;

    // Right after a failover (the old master is not yet turned into a replica), the new master
    // can crash too: the sentinels promote another server.
    let started = Instant::now();
    sentinel.kill_master();
    println!(
        "failover: kill_master() after it took {:?}",
        started.elapsed()
    );
    let last = sentinel.master_url();
    assert_ne!(last, after);
    assert_eq!(role(&last).await, "master");
    writable(&last, "sentinel_failover").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_replaced_by_a_replica() {
    let mut sentinel = start_sentinel("kill_master");
    let before = sentinel.master_url();
    let pid = sentinel.servers().primary().pid().unwrap();
    let started = Instant::now();
    sentinel.kill_master();
    println!(
        "kill_master: a replica was promoted {:?} after the kill",
        started.elapsed()
    );

    assert!(!process_alive(pid));
    assert_eq!(sentinel.servers().primary().pid(), None);
    let after = sentinel.master_url();
    assert_ne!(after, before);
    assert!(
        sentinel.servers().replica_urls().contains(&after),
        "{after}"
    );
    assert_eq!(role(&after).await, "master");
    writable(&after, "sentinel_kill").await;
}
