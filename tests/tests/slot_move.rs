//! A hash slot moved to another master mid-run (`RedisCluster::move_slot`: `ASK` while its keys
//! move, `MOVED` afterwards), on a cluster of its own: the cache keeps answering and reads the
//! moved entries, another runtime's L1 still hears invalidations, a lock on the slot still
//! excludes and its fencing tokens keep increasing, and a stream consumer blocked on the slot's
//! stream goes on receiving what is published after the move.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redisx::lock::{LockConfig, LockOptions};
use redisx::streams::{ConsumerOptions, Message, StreamsConfig};
use redisx::testing::{Deployment, Topology, unique_prefix};
use redisx::{RedisX, redis};
use redisx_tests::{eventually, raw_query};

async fn runtime(deployment: &Deployment, prefix: &str) -> RedisX {
    deployment
        .redisx_builder()
        .key_prefix(prefix)
        .locks(LockConfig::default())
        .streams(StreamsConfig::default())
        .build()
        .await
        .unwrap()
}

/// The port of the master that owns `slot` now (`CLUSTER SLOTS`).
async fn owner_port(deployment: &Deployment, slot: u16) -> u16 {
    let ranges: Vec<Vec<redis::Value>> =
        raw_query(deployment, redis::cmd("CLUSTER").arg("SLOTS")).await;
    let num = |v: &redis::Value| redis::from_redis_value::<u16>(v.clone()).unwrap();
    ranges
        .iter()
        .find(|r| (num(&r[0])..=num(&r[1])).contains(&slot))
        .map(|r| {
            let node: Vec<redis::Value> = redis::from_redis_value(r[2].clone()).unwrap();
            num(&node[1])
        })
        .expect("the slot is served")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_plugin_follows_a_slot_moved_to_another_master() {
    let mut deployment = Deployment::start_owned(Topology::Cluster);
    let prefix = unique_prefix("slot_move");
    let (a, b) = (
        runtime(&deployment, &prefix).await,
        runtime(&deployment, &prefix).await,
    );
    // Everything of this test under one hash tag, `moving`: one slot to move. A lock's and a
    // stream's keys wrap their name in braces themselves.
    let (entry, tag, stream) = ("user:{moving}", "moving", "moving");
    let slot = redisx::key::slot(&a.cache().full_key(entry));
    assert_eq!(slot, redisx::key::slot(&a.locks().full_key(tag)));
    assert_eq!(slot, redisx::key::slot("{moving}"));

    a.cache().set(entry, &1u64, None).await.unwrap();
    assert_eq!(b.cache().get::<u64>(entry).await.unwrap(), Some(1));
    let before = a.locks().acquire(tag, &LockOptions::new()).await.unwrap();
    let fence = before.fencing_token();
    before.release().await.unwrap();
    let got = Arc::new(Mutex::new(Vec::<u64>::new()));
    let consumer = {
        let got = got.clone();
        a.streams()
            .consumer(
                stream,
                ConsumerOptions::new("workers").block(Duration::from_millis(200)),
                move |m: Message<u64>| {
                    got.lock().unwrap().push(*m.payload());
                    std::future::ready(Ok::<_, std::convert::Infallible>(()))
                },
            )
            .start()
            .await
            .unwrap()
    };
    a.streams().publish(stream, &1u64).await.unwrap();
    let first = eventually(
        Duration::from_secs(2),
        Duration::from_millis(10),
        || async { got.lock().unwrap().len() == 1 },
    )
    .await;
    assert!(first, "the consumer runs before the move");

    let cluster = deployment.cluster().expect("a cluster");
    let owner = owner_port(&deployment, slot).await;
    let to = cluster
        .masters()
        .iter()
        .position(|&m| cluster.node(m).port() != owner)
        .expect("another master");
    let to_port = cluster.node(cluster.masters()[to]).port();
    tokio::task::block_in_place(|| {
        deployment
            .cluster_mut()
            .expect("an owned cluster")
            .move_slot(slot, to);
    });
    assert_eq!(
        owner_port(&deployment, slot).await,
        to_port,
        "the slot moved"
    );

    // The cache reads the moved entry, and B's L1 still hears A's invalidations.
    assert_eq!(a.cache().get::<u64>(entry).await.unwrap(), Some(1));
    a.cache().set(entry, &2u64, None).await.unwrap();
    let invalidated = eventually(Duration::from_secs(2), Duration::from_millis(5), || async {
        b.cache().get::<u64>(entry).await.unwrap() == Some(2)
    })
    .await;
    assert!(invalidated, "B's L1 heard the update after the move");

    // The lock still excludes, and its token still grows (the counter moved with the slot).
    let held = a.locks().acquire(tag, &LockOptions::new()).await.unwrap();
    assert!(held.fencing_token() > fence);
    assert!(
        b.locks()
            .try_acquire(tag, &LockOptions::new())
            .await
            .unwrap()
            .is_none()
    );
    held.release().await.unwrap();

    // The consumer goes on with what is published after the move.
    for n in 2..=5u64 {
        b.streams().publish(stream, &n).await.unwrap();
    }
    let all = eventually(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || async { got.lock().unwrap().len() == 5 },
    )
    .await;
    assert!(all, "the consumer received {:?}", got.lock().unwrap());
    consumer.stop().await;
    a.shutdown().await;
    b.shutdown().await;
}
