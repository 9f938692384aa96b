//! `ConnectionConfig::read_from_replicas` on a real cluster with a replica per master and on a
//! sentinel set: a cache on such a client reads its hits from the replicas (their `GET` counts
//! grow, the masters' do not) and still writes to the masters; the plugins that need their
//! reads on the master refuse such a client at build time, and a single server config refuses
//! the option.

use std::time::Duration;

use redisx::lock::LockConfig;
use redisx::rate_limit::RateLimitConfig;
use redisx::streams::StreamsConfig;
use redisx::testing::{Deployment, Topology, raw_connection, unique_prefix};
use redisx::{CacheConfig, ConnectionConfig, ErrorCode, RedisX, redis};
use redisx_tests::eventually;

/// The `calls` of `cmdstat_<command>` (lowercase) in `INFO commandstats`, summed over the
/// servers at `urls`.
async fn calls(urls: &[String], command: &str) -> u64 {
    let head = format!("cmdstat_{command}:calls=");
    let mut n = 0;
    for url in urls {
        let mut conn = raw_connection(url).await;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .expect("INFO commandstats");
        n += info
            .lines()
            .find_map(|l| l.strip_prefix(head.as_str()))
            .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
            .unwrap_or(0);
    }
    n
}

/// A runtime with a client that reads from replicas, `"cache-reads"`, for an L2-only cache.
async fn cache_on_replicas(deployment: &Deployment, test: &str) -> RedisX {
    let reads = deployment.connection_config().read_from_replicas(true);
    RedisX::builder()
        .client("default", deployment.connection_config())
        .client("cache-reads", reads)
        .key_prefix(unique_prefix(test))
        .cache(
            CacheConfig::default()
                .client("cache-reads")
                .mode(redisx::CacheMode::L2Only),
        )
        .build()
        .await
        .unwrap()
}

/// Reads back `keys` (holding their index) through `rx`'s cache, one by one and the first
/// five with `get_many`, and asserts the reads were `GET`s and an `MGET` on the `replicas`,
/// none on the `masters`.
async fn read_on_replicas(rx: &RedisX, keys: &[String], masters: &[String], replicas: &[String]) {
    let counts = async || {
        (
            calls(masters, "get").await + calls(masters, "mget").await,
            calls(replicas, "get").await,
            calls(replicas, "mget").await,
        )
    };
    let before = counts().await;
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            rx.cache().get::<u64>(key).await.unwrap(),
            Some(i as u64),
            "{key}"
        );
    }
    let many = rx.cache().get_many::<u64, _>(&keys[..5]).await.unwrap();
    assert_eq!(many, vec![Some(0), Some(1), Some(2), Some(3), Some(4)]);
    let after = counts().await;
    assert!(
        after.1 - before.1 >= keys.len() as u64 && after.2 > before.2,
        "the hits were read on the replicas: {before:?} -> {after:?}"
    );
    assert_eq!(after.0, before.0, "no read reached a master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_on_a_replica_reading_client_reads_from_the_replicas() {
    let deployment = Deployment::start_owned(Topology::Cluster);
    let cluster = deployment.cluster().expect("a cluster");
    let masters = deployment.master_urls();
    let replicas: Vec<String> = cluster
        .replicas()
        .into_iter()
        .map(|i| cluster.node(i).url())
        .collect();
    // `CLUSTER SLOTS` lists a replica only once it has replicated something, and a client
    // learns the replicas from it: write to every shard first.
    for tag in ["a", "b", "c", "d", "e", "f"] {
        let () = redisx_tests::raw_query(
            &deployment,
            redis::cmd("SET").arg(format!("warm:{{{tag}}}")).arg(1),
        )
        .await;
    }
    let listed = eventually(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            for url in deployment.server_urls() {
                let mut conn = raw_connection(&url).await;
                let ranges: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                if !ranges.iter().all(|r| r.len() > 3) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    assert!(listed, "every node lists a replica for every slot range");
    let rx = cache_on_replicas(&deployment, "replica_reads").await;
    // The server version was read on a master of each client (not refused as a multi-node INFO).
    assert_eq!(
        redisx_tests::metric_sum(
            &rx,
            "redisx_commands_total",
            &["command=\"INFO\"", "status=\"ok\""]
        ),
        2
    );
    let keys: Vec<String> = (0..30).map(|i| format!("user:{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        rx.cache().set(key, &(i as u64), None).await.unwrap();
    }
    // The replicas have the writes (they came through the masters).
    let synced = eventually(
        Duration::from_secs(2),
        Duration::from_millis(10),
        || async {
            let mut n = 0;
            for url in &replicas {
                let mut conn = raw_connection(url).await;
                let size: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
                n += size;
            }
            n >= 36 // the 30 entries and the 6 warm-up keys
        },
    )
    .await;
    assert!(synced, "the replicas hold the cache's writes");
    read_on_replicas(&rx, &keys, &masters, &replicas).await;
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_that_need_the_master_refuse_a_replica_reading_client() {
    let deployment = Deployment::start(Topology::Cluster);
    let reads = deployment.connection_config().read_from_replicas(true);
    let builders: Vec<(&str, redisx::RedisXBuilder)> = vec![
        ("locks", RedisX::builder().locks(LockConfig::default())),
        (
            "rate limit",
            RedisX::builder().rate_limit(RateLimitConfig::default()),
        ),
        (
            "streams",
            RedisX::builder().streams(StreamsConfig::default()),
        ),
        (
            "idempotency",
            RedisX::builder().idempotency(redisx::idempotency::IdempotencyConfig::default()),
        ),
    ];
    for (plugin, builder) in builders {
        let err = builder
            .client("default", reads.clone())
            .key_prefix(unique_prefix("replica_reads_refused"))
            .build()
            .await
            .map(drop)
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConfigInvalid, "{plugin}: {err:#}");
        assert!(
            err.message().contains("reads from replicas"),
            "{plugin}: {err:#}"
        );
    }
}

#[test]
fn a_single_server_config_does_not_read_from_replicas() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(
            RedisX::builder()
                .client(
                    "default",
                    ConnectionConfig::new("127.0.0.1", 1).read_from_replicas(true),
                )
                .build(),
        )
        .map(drop)
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigInvalid, "{err:#}");
    assert!(err.message().contains("cluster"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_on_a_sentinel_replica_reading_client_reads_from_a_replica() {
    let deployment = Deployment::start(Topology::Sentinel);
    let set = deployment.sentinel().expect("a sentinel set");
    let (master, replicas) = (set.master_url(), set.servers().replica_urls());
    let rx = cache_on_replicas(&deployment, "sentinel_replica_reads").await;
    let keys: Vec<String> = (0..30).map(|i| format!("user:{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        rx.cache().set(key, &(i as u64), None).await.unwrap();
    }
    // Every replica has the writes before they are read.
    let last = rx.cache().full_key(&keys[29]);
    let synced = eventually(
        Duration::from_secs(2),
        Duration::from_millis(10),
        || async {
            for url in &replicas {
                let mut conn = raw_connection(url).await;
                let n: u64 = redis::cmd("EXISTS")
                    .arg(&last)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                if n == 0 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    assert!(synced, "the replicas hold the cache's writes");
    read_on_replicas(&rx, &keys, std::slice::from_ref(&master), &replicas).await;
    rx.shutdown().await;
}
