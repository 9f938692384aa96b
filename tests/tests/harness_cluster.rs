//! `redisx::testing::RedisCluster` against real processes: a 3 masters × 1 replica cluster is
//! whole when handed out and serves keys of every slot range through redis-rs's cluster client,
//! a manual failover swaps roles, a killed master's replica is promoted and the killed node
//! rejoins, and nothing is left behind. How long each step took is printed (`--nocapture`),
//! never asserted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redisx::testing::{
    RedisCluster, RedisServer, eventually, process_alive, raw_connection, unique_prefix,
};

/// Starts a cluster of 3 masters with a replica each, printing how long it took.
fn start_cluster(test: &str) -> RedisCluster {
    let started = Instant::now();
    let cluster = RedisCluster::start(3, 1);
    println!(
        "{test}: RedisCluster::start(3, 1) took {:?}",
        started.elapsed()
    );
    cluster
}

/// A redis-rs cluster connection seeded with every running node, with short timeouts so that a
/// request to a dead node fails fast (the tests retry with `eventually`).
async fn connect(cluster: &RedisCluster) -> ClusterConnection {
    ClusterClient::builder(cluster.seed_urls())
        .retries(2)
        .connection_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

/// One key of the test's own per third of the slot space (redis-cli gives each of 3 masters a
/// third), found with `CLUSTER KEYSLOT`.
async fn key_per_master(cluster: &RedisCluster, test: &str) -> Vec<String> {
    let prefix = unique_prefix(test);
    let mut node = raw_connection(&cluster.seed_urls()[0]).await;
    let mut keys = BTreeMap::new();
    for i in 0.. {
        let key = format!("{prefix}{i}");
        let slot: usize = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query_async(&mut node)
            .await
            .unwrap();
        let third = match slot {
            0..=5460 => 0,
            5461..=10922 => 1,
            _ => 2,
        };
        keys.entry(third).or_insert(key);
        if keys.len() == 3 {
            break;
        }
    }
    keys.into_values().collect()
}

/// `SET` then `GET` of every key through the cluster connection, bounded so that a stuck
/// request counts as a failure.
async fn set_get(conn: &mut ClusterConnection, keys: &[String], value: &str) -> Result<(), String> {
    let round = async {
        for key in keys {
            let () = redis::cmd("SET")
                .arg(key)
                .arg(value)
                .query_async(conn)
                .await
                .map_err(|e| format!("SET {key}: {e}"))?;
            let got: Option<String> = redis::cmd("GET")
                .arg(key)
                .query_async(conn)
                .await
                .map_err(|e| format!("GET {key}: {e}"))?;
            if got.as_deref() != Some(value) {
                return Err(format!("GET {key} = {got:?}, not {value}"));
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(3), round)
        .await
        .unwrap_or_else(|_| Err("no answer within 3 s".to_owned()))
}

/// Retries [`set_get`] until it succeeds (at most `within`); prints how long that took.
async fn answers_again(
    conn: &mut ClusterConnection,
    keys: &[String],
    value: &str,
    within: Duration,
    what: &str,
) {
    let started = Instant::now();
    let mut last = String::new();
    let deadline = started + within;
    while Instant::now() < deadline {
        match set_get(conn, keys, value).await {
            Ok(()) => {
                println!(
                    "{what}: the cluster client answered again after {:?}",
                    started.elapsed()
                );
                return;
            }
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: the cluster client did not answer within {within:?}: {last}");
}

async fn dbsize(url: &str) -> i64 {
    let mut conn = raw_connection(url).await;
    redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_whole_serves_every_slot_range_and_cleans_up() {
    let cluster = start_cluster("start");
    assert_eq!(cluster.nodes().len(), 6);
    assert_eq!(cluster.seed_urls().len(), 6);
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "{masters:?}");
    assert_eq!(cluster.replicas().len(), 3);
    for &master in &masters {
        let replicas = cluster.replicas_of(master);
        assert_eq!(replicas.len(), 1, "master {master}: {replicas:?}");
        assert!(!masters.contains(&replicas[0]));
    }
    cluster.health().unwrap();
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert_ne!(node.port(), 6379);
        assert_eq!(cluster.node_id(i).len(), 40, "node {i}");
    }

    let keys = key_per_master(&cluster, "cluster_start").await;
    let mut conn = connect(&cluster).await;
    set_get(&mut conn, &keys, "v").await.unwrap();
    // One key on each master: the keys were routed by slot.
    for &master in &masters {
        assert_eq!(
            dbsize(&cluster.node(master).url()).await,
            1,
            "master {master}"
        );
    }

    let dir = cluster.dir().to_owned();
    assert!(dir.join("nodes-0.conf").is_file());
    let pids: Vec<u32> = cluster
        .nodes()
        .iter()
        .filter_map(RedisServer::pid)
        .collect();
    assert_eq!(pids.len(), 6);
    drop(conn);
    drop(cluster);
    assert!(!dir.exists(), "{} is left behind", dir.display());
    for pid in pids {
        assert!(!process_alive(pid), "node process {pid} survived the drop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_swaps_roles_and_the_cluster_answers_again() {
    let mut cluster = start_cluster("failover");
    let keys = key_per_master(&cluster, "cluster_failover").await;
    let mut conn = connect(&cluster).await;
    set_get(&mut conn, &keys, "before").await.unwrap();

    let old = cluster.masters()[0];
    let new = cluster.replicas_of(old)[0];
    let started = Instant::now();
    cluster.failover(0);
    println!("failover: failover(0) took {:?}", started.elapsed());

    let masters = cluster.masters();
    assert!(
        masters.contains(&new) && !masters.contains(&old),
        "{masters:?}"
    );
    assert_eq!(cluster.replicas_of(new), [old]);
    assert_eq!(cluster.replicas().len(), 3);
    cluster.health().unwrap();
    answers_again(
        &mut conn,
        &keys,
        "after",
        Duration::from_secs(10),
        "failover",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_replaced_by_its_replica_and_rejoins() {
    let mut cluster = start_cluster("kill");
    let keys = key_per_master(&cluster, "cluster_kill").await;
    let mut conn = connect(&cluster).await;
    set_get(&mut conn, &keys, "before").await.unwrap();

    let old = cluster.masters()[0];
    let new = cluster.replicas_of(old)[0];
    let pid = cluster.node(old).pid().unwrap();
    let killed = Instant::now();
    cluster.kill(old);
    assert!(!process_alive(pid));
    assert_eq!(cluster.node(old).pid(), None);
    let report = cluster.health().unwrap_err();
    assert!(report.contains("serve 10923 slots"), "{report}");

    let promoted = eventually(Duration::from_secs(20), Duration::from_millis(50), || {
        let whole = cluster.health().is_ok();
        async move { whole }
    })
    .await;
    assert!(promoted, "no promotion: {:?}", cluster.health());
    println!(
        "kill: the replica was promoted (cluster_state:ok again) {:?} after the kill",
        killed.elapsed()
    );
    assert!(cluster.masters().contains(&new));
    assert_eq!(cluster.masters().len(), 3);
    assert_eq!(cluster.seed_urls().len(), 5);
    answers_again(&mut conn, &keys, "after", Duration::from_secs(10), "kill").await;

    let started = Instant::now();
    cluster.start_again(old);
    println!("kill: start_again took {:?}", started.elapsed());
    assert_eq!(cluster.replicas_of(new), [old]);
    assert_eq!(cluster.masters().len(), 3);
    assert_eq!(cluster.replicas().len(), 3);
    answers_again(&mut conn, &keys, "again", Duration::from_secs(10), "rejoin").await;
}
