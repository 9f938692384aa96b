//! Durable publishes against a real primary and replica (`redisx::testing::ReplicaSet`): the
//! replica's acknowledgement is reported; with the replica down the publish reports 0 within its
//! timeout (or fails with `require_replicas`), without holding up the shared connection. These
//! kill a replica, so they run on a primary and replica of their own; on the 3-master cluster,
//! a durable publish is acknowledged by the replica of the master of its stream's slot.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redisx::streams::{PublishOptions, StreamsConfig};
use redisx::testing::{Deployment, Member, RedisServer, Topology};
use redisx::{ErrorCode, RedisX};
use redisx_tests::streams::{Entry, stream_runtime_on, xrange};
use redisx_tests::{quick_connection, raw_connection, unique_prefix};

async fn start(url: &str, test: &str) -> RedisX {
    stream_runtime_on(
        quick_connection(url),
        &unique_prefix(test),
        StreamsConfig::default(),
    )
    .await
}

async fn ids_on(raw: &mut MultiplexedConnection, key: &str) -> Vec<String> {
    xrange(raw, key)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_publish_reports_the_replicas_that_acknowledged_it() {
    let mut set = RedisServer::with_replicas(1);
    let rx = start(&set.primary_url(), "stream_durable").await;
    let streams = rx.streams();
    let key = streams.keys("payments", false).unwrap().stream;
    let mut replica = raw_connection(&set.replica_urls()[0]).await;

    let durable = streams.durable(1, Duration::from_secs(5));
    let p = durable.publish("payments", &"first").await.unwrap();
    assert_eq!(p.replicas, 1, "{p:?}");
    assert_eq!(
        ids_on(&mut replica, &key).await,
        std::slice::from_ref(&p.id),
        "on the replica"
    );
    let strict = durable.clone().require_replicas(1);
    let p2 = strict.publish("payments", &"second").await.unwrap();
    assert_eq!(p2.replicas, 1);
    assert!(p2.id > p.id);
    // NOMKSTREAM on a missing stream: nothing published, nothing waited for.
    let opts = PublishOptions::new().nomkstream(true);
    assert_eq!(
        strict.publish_with("nowhere", &1, &opts).await.unwrap(),
        None
    );

    // The replica down: 0 acknowledgements, within the timeout.
    set.kill(Member::Replica(0));
    let short = streams.durable(1, Duration::from_millis(300));
    let began = Instant::now();
    let p3 = short.publish("payments", &"third").await.unwrap();
    let took = began.elapsed();
    assert_eq!(p3.replicas, 0, "{p3:?}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "WAIT waited its timeout: {took:?}"
    );

    let e = short
        .clone()
        .require_replicas(1)
        .publish("payments", &"fourth")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::StreamPublishFailed, "{e:#}");
    assert_eq!(e.context_value("stream"), Some("payments"), "{e:#}");
    assert!(e.message().contains("0 of the 1 replica"), "{e:#}");
    // Published all the same, on the primary.
    let mut primary = raw_connection(&set.primary_url()).await;
    let on_primary = ids_on(&mut primary, &key).await;
    assert_eq!(on_primary.len(), 4);
    assert_eq!(e.context_value("id"), on_primary.last().map(String::as_str));
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_publish_does_not_hold_up_the_shared_connection() {
    let mut set = RedisServer::with_replicas(1);
    set.kill(Member::Replica(0));
    let rx = start(&set.primary_url(), "stream_durable_shared").await;
    let streams = rx.streams().clone();

    let waiting = {
        let streams = streams.clone();
        tokio::spawn(async move {
            streams
                .durable(1, Duration::from_secs(2))
                .publish("slow", &1)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let began = Instant::now();
    streams.publish("fast", &2).await.unwrap();
    assert_eq!(streams.len("fast").await.unwrap(), 1);
    assert!(
        began.elapsed() < Duration::from_millis(500),
        "the shared connection was free: {:?}",
        began.elapsed()
    );
    assert!(
        !waiting.is_finished(),
        "the durable publish is still waiting"
    );
    let p = waiting.await.unwrap().unwrap();
    assert_eq!(p.replicas, 0);
    rx.shutdown().await;
}

/// On a cluster the `XADD` and its `WAIT` go to the master of the stream's slot: streams spread
/// over the masters are each acknowledged by their master's replica, which holds the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_publish_on_the_cluster_is_acknowledged_by_its_masters_replica() {
    /// Streams of as many hash tags, so that every master serves some (none lands on a given
    /// master with a chance of (2/3)^30, about 5e-6).
    const STREAMS: u64 = 30;
    let deployment = Deployment::start(Topology::Cluster);
    let cluster = deployment.cluster().expect("a cluster deployment");
    let replicas: Vec<String> = cluster
        .replicas()
        .into_iter()
        .map(|i| cluster.node(i).url())
        .collect();
    assert_eq!(replicas.len(), 3, "a replica per master");
    let rx = start(&deployment.url(), "stream_durable_cluster").await;
    let streams = rx.streams();
    let durable = streams
        .durable(1, Duration::from_secs(5))
        .require_replicas(1);
    for n in 0..STREAMS {
        let name = format!("payments-{n}");
        let p = durable.publish(&name, &n).await.unwrap();
        assert_eq!(p.replicas, 1, "{name}: {p:?}");
        // Read on every replica (`READONLY`): the one of the slot's master has the entry, the
        // others redirect.
        let key = streams.keys(&name, false).unwrap().stream;
        let mut holders = Vec::new();
        for url in &replicas {
            let mut conn = raw_connection(url).await;
            let () = redis::cmd("READONLY").query_async(&mut conn).await.unwrap();
            let read: redis::RedisResult<Vec<Entry>> = redis::cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await;
            if let Ok(entries) = read {
                let ids: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
                holders.push((url.clone(), ids.join(",")));
            }
        }
        assert_eq!(
            holders
                .iter()
                .map(|(_, ids)| ids.as_str())
                .collect::<Vec<_>>(),
            [p.id.as_str()],
            "{name}: on the replica of its slot's master only: {holders:?}"
        );
    }
    rx.shutdown().await;
}
