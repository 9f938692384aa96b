//! A primary with replicas: in sync when handed out, writes reach every replica, `WAIT` through
//! redisx confirms them, and any member can be killed and restarted.

use std::time::Duration;

use redisx::CacheConfig;
use redisx::redis;
use redisx::testing::{
    Member, RedisServer, ReplicaSet, eventually, raw_connection, runtime, unique_prefix,
};

use crate::wait_dead;

/// `GET key` on `url` over a fresh raw connection.
async fn get(url: &str, key: &str) -> Option<String> {
    let mut conn = raw_connection(url).await;
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// `SET key value` on the primary, then `WAIT` for every replica through a dedicated redisx
/// connection; returns how many replicas acknowledged.
async fn set_and_wait(set: &ReplicaSet, key: &str, value: &str) -> i64 {
    let rx = runtime(
        &set.primary_url(),
        &unique_prefix("replicas"),
        CacheConfig::default(),
    )
    .await;
    let mut conn = rx.dedicated_connection().await.unwrap();
    let () = conn
        .query(redis::cmd("SET").arg(key).arg(value))
        .await
        .unwrap();
    let replicas = set.replica_count();
    conn.query(redis::cmd("WAIT").arg(replicas).arg(2000))
        .await
        .unwrap()
}

#[tokio::test]
async fn writes_on_the_primary_reach_every_replica() {
    let set = RedisServer::with_replicas(2);
    assert_eq!(set.replica_count(), 2);
    let urls = set.replica_urls();
    assert_eq!(urls.len(), 2);
    assert!(!urls.contains(&set.primary_url()));

    let key = format!("{}k", unique_prefix("replicas_read"));
    let mut primary = raw_connection(&set.primary_url()).await;
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("v")
        .query_async(&mut primary)
        .await
        .unwrap();
    for url in &urls {
        let arrived = eventually(Duration::from_secs(2), Duration::from_millis(5), || async {
            get(url, &key).await.as_deref() == Some("v")
        })
        .await;
        assert!(arrived, "the write never reached the replica at {url}");

        let mut replica = raw_connection(url).await;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut replica).await.unwrap();
        assert_eq!(
            role.first(),
            Some(&redis::Value::BulkString(b"slave".to_vec()))
        );
        let refused: redis::RedisResult<()> = redis::cmd("SET")
            .arg(&key)
            .arg("w")
            .query_async(&mut replica)
            .await;
        let refused = refused.unwrap_err().to_string();
        assert!(refused.contains("read only"), "{refused}");
    }
}

#[tokio::test]
async fn wait_through_a_dedicated_connection_confirms_replication() {
    let set = RedisServer::with_replicas(2);
    let key = format!("{}k", unique_prefix("replicas_wait"));
    assert_eq!(set_and_wait(&set, &key, "v").await, 2);
    // Acknowledged by WAIT: readable on every replica with no further waiting.
    for url in set.replica_urls() {
        assert_eq!(get(&url, &key).await.as_deref(), Some("v"), "{url}");
    }
}

#[tokio::test]
async fn a_killed_replica_misses_writes_and_catches_up_after_restart() {
    let mut set = RedisServer::with_replicas(2);
    let pid = set.replica(1).pid().unwrap();
    set.kill(Member::Replica(1));
    assert!(wait_dead(pid, Duration::from_secs(1)));
    assert_eq!(set.replica(1).pid(), None);

    let key = format!("{}k", unique_prefix("replicas_kill"));
    // Only the running replica can acknowledge (WAIT returns when its 2 s bound passes).
    assert_eq!(set_and_wait(&set, &key, "v").await, 1);

    set.start_again(Member::Replica(1));
    assert_ne!(set.replica(1).pid(), Some(pid));
    // In sync again: the full sync brought the write it missed.
    assert_eq!(
        get(&set.replica_urls()[1], &key).await.as_deref(),
        Some("v")
    );
    let key2 = format!("{key}2");
    assert_eq!(set_and_wait(&set, &key2, "w").await, 2);
}

#[tokio::test]
async fn a_restarted_primary_comes_back_empty_and_its_replicas_follow() {
    let mut set = RedisServer::with_replicas(1);
    let key = format!("{}k", unique_prefix("replicas_primary"));
    assert_eq!(set_and_wait(&set, &key, "v").await, 1);
    let port = set.primary().port();

    set.restart(Member::Primary);
    assert_eq!(set.primary().port(), port);
    assert_eq!(get(&set.primary_url(), &key).await, None);
    assert_eq!(get(&set.replica_urls()[0], &key).await, None);
    assert_eq!(set_and_wait(&set, &key, "w").await, 1);
    assert_eq!(
        get(&set.replica_urls()[0], &key).await.as_deref(),
        Some("w")
    );
}

#[tokio::test]
async fn replicas_of_a_password_protected_primary_authenticate() {
    let set = RedisServer::builder().password("pw").start_with_replicas(1);
    let key = format!("{}k", unique_prefix("replicas_auth"));
    let mut primary = raw_connection(&set.primary().url_with_auth("", "pw")).await;
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("v")
        .query_async(&mut primary)
        .await
        .unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(2000)
        .query_async(&mut primary)
        .await
        .unwrap();
    assert_eq!(acked, 1);
    let replica_url = set.replica(0).url_with_auth("", "pw");
    assert_eq!(get(&replica_url, &key).await.as_deref(), Some("v"));
}

#[test]
fn wait_in_sync_refuses_a_stopped_member() {
    let mut set = RedisServer::with_replicas(1);
    set.kill(Member::Replica(0));
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| set.wait_in_sync()));
    let message = refused.expect_err("wait_in_sync must refuse a stopped replica");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("replica 0 is stopped"), "{message}");
}
