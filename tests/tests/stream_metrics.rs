//! The gauges a running consumer keeps current by itself, in a runtime that only consumes (it
//! never reads `lag`, `groups` or `info`): `redisx_stream_lag` of its group and
//! `redisx_stream_dlq_length` of its stream, refreshed soon after a message is dead-lettered.
//! Each test runs on a standalone server and on the 3-master cluster.

use std::time::Duration;

use redisx::streams::{Message, StreamsConfig};
use redisx::testing::{Deployment, Topology};
use redisx::{Error, ErrorCode};
use redisx_tests::streams::{Job, add, keys, quick_options, stream_runtime};
use redisx_tests::{eventually, unique_prefix};

const STREAM: &str = "jobs";
const GROUP: &str = "g";

async fn a_consumer_alone_exports_its_lag_and_dlq_length(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("stream_gauges");
    let rx = stream_runtime(&deployment.url(), &prefix, StreamsConfig::default()).await;
    let k = keys(&rx, STREAM);
    // Written by another program: this runtime never publishes.
    let mut raw = deployment.raw_connection().await;
    for n in 0..4 {
        add(&mut raw, &k.stream, &Job { n }).await;
    }
    let (release, released) = tokio::sync::watch::channel(false);
    let options = quick_options(GROUP, "c").concurrency(1).max_retries(0);
    let handle = rx
        .streams()
        .consumer(STREAM, options, move |m: Message<Job>| {
            let mut released = released.clone();
            async move {
                match m.payload().n {
                    0 => Err(Error::new(ErrorCode::Internal, "boom")),
                    1 => {
                        let _ = released.wait_for(|r| *r).await;
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
        })
        .start()
        .await
        .unwrap();

    // 0 goes to the DLQ; 1 then holds the only handler slot, so 2 and 3 stay undelivered.
    let want = [
        format!("redisx_stream_lag{{stream=\"{STREAM}\",group=\"{GROUP}\"}} 2"),
        format!("redisx_stream_dlq_length{{stream=\"{STREAM}\"}} 1"),
    ];
    let shown = eventually(Duration::from_secs(5), Duration::from_millis(20), || {
        let text = rx.metrics_text();
        let all = want.iter().all(|w| text.lines().any(|l| l == w));
        async move { all }
    })
    .await;
    assert!(shown, "{want:?} in:\n{}", rx.metrics_text());
    release.send(true).unwrap();
    handle.stop().await;
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_consumer_alone_exports_its_lag_and_dlq_length
);
