//! The topology parameter: every topology in `Topology::ALL` starts, and a runtime built on its
//! deployment reaches it; a standalone deployment hands out its server.

use redisx::redis;
use redisx::testing::{Deployment, TEST_URL_ENV, Topology, unique_prefix};

use crate::ping;

/// One body for every topology: what a plugin's test looks like.
async fn round_trip(topology: Topology) {
    let deployment = Deployment::start(topology);
    assert_eq!(deployment.topology(), topology);
    let prefix = unique_prefix(&format!("topology_{topology}"));
    let rx = deployment.runtime(&prefix).await;
    assert_eq!(rx.key_prefix(), prefix);
    let () = rx
        .client()
        .query(redis::cmd("SET").arg(format!("{prefix}k")).arg("v"))
        .await
        .unwrap();
    // Seen by a raw connection to the deployment, outside redisx.
    let v: Option<String> =
        redisx_tests::raw_query(&deployment, redis::cmd("GET").arg(format!("{prefix}k"))).await;
    assert_eq!(v.as_deref(), Some("v"), "on {topology}");
    rx.shutdown().await;
}

#[tokio::test]
async fn every_topology_starts_and_serves_a_runtime() {
    assert!(!Topology::ALL.is_empty());
    for &topology in Topology::ALL {
        round_trip(topology).await;
    }
}

#[test]
fn topologies_have_names() {
    assert_eq!(Topology::Standalone.name(), "standalone");
    assert_eq!(Topology::Standalone.to_string(), "standalone");
    assert_eq!(Topology::Cluster.to_string(), "cluster");
    assert_eq!(Topology::Sentinel.name(), "sentinel");
}

#[tokio::test]
async fn a_standalone_deployment_is_the_test_server() {
    let deployment = Topology::Standalone.start();
    let server = deployment.standalone().expect("a standalone deployment");
    assert_eq!(deployment.url(), server.url());
    match std::env::var(TEST_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => assert_eq!(deployment.url(), url.trim()),
        _ => assert!(server.is_owned()),
    }
    assert_eq!(ping(&deployment.url()).await.unwrap(), "PONG");
}

#[tokio::test]
async fn an_owned_standalone_deployment_restarts() {
    let mut deployment = Deployment::start_owned(Topology::Standalone);
    let url = deployment.url();
    let server = deployment
        .standalone_mut()
        .expect("a standalone deployment");
    assert!(server.is_owned());
    server.kill();
    assert!(ping(&url).await.is_err());
    server.start_again();
    assert_eq!(ping(&deployment.url()).await.unwrap(), "PONG");
    assert_eq!(deployment.url(), url);
}

#[tokio::test]
async fn the_builder_connects_to_the_deployment() {
    let deployment = Deployment::start(Topology::Standalone);
    let rx = deployment
        .redisx_builder()
        .key_prefix(unique_prefix("topology_builder"))
        .build()
        .await
        .unwrap();
    let pong: String = rx.client().query(&redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG");
    let config = deployment.connection_config();
    let direct = redisx::RedisX::builder()
        .client("default", config)
        .build()
        .await
        .unwrap();
    let pong: String = direct.client().query(&redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG");
}
