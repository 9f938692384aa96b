//! Looking into streams against a real Redis: `len`, `info`, `groups` and `delayed_len` of a
//! missing stream and of a live one, `create_group` (twice is fine, and counts no failed
//! command), the dead-letter calls on entries written by raw `XADD` (`dlq_list`, `requeue`,
//! `requeue_all`, `purge_dlq`), and a group's `pending` summary and `lag`. Each test runs on a standalone server and on the
//! 3-master cluster.

use std::time::{Duration, UNIX_EPOCH};

use redis::aio::ConnectionLike;
use redisx::streams::StreamsConfig;
use redisx::testing::{Deployment, Topology};
use redisx::{ErrorCode, RedisX};
use redisx_tests::streams::{exists, stream_runtime_on, xrange};
use redisx_tests::{metric_sum, quick_connection, unique_prefix};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    n: u64,
}

async fn start(deployment: &Deployment, test: &str) -> (RedisX, String) {
    let prefix = unique_prefix(test);
    let rx = stream_runtime_on(
        quick_connection(&deployment.url()),
        &prefix,
        StreamsConfig::default(),
    )
    .await;
    (rx, prefix)
}

async fn a_missing_stream_answers_empty_and_stays_missing(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, prefix) = start(&deployment, "stream_ops_missing").await;
    let mut raw = deployment.raw_connection().await;
    let streams = rx.streams();

    assert_eq!(streams.len("nothing").await.unwrap(), 0);
    assert_eq!(streams.info("nothing").await.unwrap(), None);
    assert!(streams.groups("nothing").await.unwrap().is_empty());
    assert_eq!(streams.delayed_len("nothing").await.unwrap(), 0);
    assert_eq!(streams.dlq_len("nothing").await.unwrap(), 0);
    assert!(streams.dlq_list("nothing", 10).await.unwrap().is_empty());
    assert_eq!(streams.requeue("nothing", "1-0").await.unwrap(), None);
    assert_eq!(streams.requeue_all("nothing").await.unwrap(), 0);
    assert_eq!(streams.purge_dlq("nothing").await.unwrap(), 0);
    assert_eq!(streams.trim("nothing").await.unwrap(), 0);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(keys.is_empty(), "reading wrote nothing: {keys:?}");
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_missing_stream_answers_empty_and_stays_missing
);

async fn info_reports_the_stream_its_groups_dlq_and_delayed_set(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, _) = start(&deployment, "stream_ops_info").await;
    let streams = rx.streams();
    let ids = streams
        .publish_batch("orders", &[Job { n: 1 }, Job { n: 2 }, Job { n: 3 }])
        .await
        .unwrap();
    assert!(
        streams
            .create_group("orders", "billing", "0")
            .await
            .unwrap()
    );
    streams
        .publish_in("orders", &Job { n: 4 }, Duration::from_secs(60))
        .await
        .unwrap();

    let info = streams
        .info("orders")
        .await
        .unwrap()
        .expect("the stream exists");
    assert_eq!(info.length, 3);
    assert_eq!(info.first_id.as_deref(), Some(ids[0].as_str()));
    assert_eq!(info.last_id.as_deref(), Some(ids[2].as_str()));
    assert_eq!(info.last_generated_id, ids[2]);
    assert_eq!(info.entries_added, 3);
    assert_eq!((info.dlq_length, info.delayed), (0, 1));
    assert_eq!(info.groups.len(), 1);
    let g = &info.groups[0];
    assert_eq!(
        (
            g.name.as_str(),
            g.consumers,
            g.pending,
            g.last_delivered_id.as_str(),
            g.lag
        ),
        ("billing", 0, 0, "0-0", Some(3))
    );
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    info_reports_the_stream_its_groups_dlq_and_delayed_set
);

async fn create_group_twice_is_fine_and_creates_the_stream(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, prefix) = start(&deployment, "stream_ops_group").await;
    let mut raw = deployment.raw_connection().await;
    let streams = rx.streams();

    let errors_before = metric_sum(&rx, "redisx_errors_total", &[]);
    assert!(
        streams.create_group("fresh", "g", "$").await.unwrap(),
        "created"
    );
    assert!(
        !streams.create_group("fresh", "g", "0").await.unwrap(),
        "already there"
    );
    // `BUSYGROUP` is an answer, not a failed command.
    let xgroup = |status| {
        metric_sum(
            &rx,
            "redisx_commands_total",
            &["command=\"XGROUP\"", status],
        )
    };
    assert_eq!(
        (xgroup("status=\"ok\""), xgroup("status=\"error\"")),
        (2, 0)
    );
    assert_eq!(
        metric_sum(&rx, "redisx_errors_total", &[]),
        errors_before,
        "{}",
        rx.metrics_text()
    );
    assert!(
        exists(&mut raw, &format!("{prefix}stream:{{fresh}}")).await,
        "MKSTREAM"
    );
    assert_eq!(streams.len("fresh").await.unwrap(), 0);
    let groups = streams.groups("fresh").await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].name, "g");

    let e = streams
        .create_group("fresh", "g2", "not-an-id")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::StreamConsumerGroupError, "{e:#}");
    assert_eq!(
        (e.context_value("stream"), e.context_value("group")),
        (Some("fresh"), Some("g2")),
        "{e:#}"
    );
    let e = streams.create_group("fresh", "", "0").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::StreamConsumerGroupError, "{e:#}");
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    create_group_twice_is_fine_and_creates_the_stream
);

/// Writes a dead-letter entry for `job` with raw `XADD`, as the consumer does.
async fn dead_letter(
    raw: &mut impl ConnectionLike,
    dlq: &str,
    stream_key: &str,
    job: &Job,
    original_id: &str,
) -> String {
    redis::cmd("XADD")
        .arg(dlq)
        .arg("*")
        .arg("data")
        .arg(serde_json::to_vec(job).unwrap())
        .arg("traceparent")
        .arg("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .arg("attempt")
        .arg(4)
        .arg("error")
        .arg("boom")
        .arg("original_id")
        .arg(original_id)
        .arg("original_stream")
        .arg(stream_key)
        .arg("failed_at")
        .arg(1_700_000_000_000_u64)
        .query_async(raw)
        .await
        .expect("XADD to the DLQ")
}

async fn dead_letters_are_listed_requeued_and_purged(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, prefix) = start(&deployment, "stream_ops_dlq").await;
    let mut raw = deployment.raw_connection().await;
    let streams = rx.streams();
    let keys = streams.keys("orders", false).unwrap();
    assert_eq!(keys.dlq, format!("{prefix}stream:{{orders}}:dlq"));
    let mut dead_ids = Vec::new();
    for n in 0..5 {
        let original = format!("{}-0", n + 1);
        dead_ids.push(dead_letter(&mut raw, &keys.dlq, &keys.stream, &Job { n }, &original).await);
    }

    let listed = streams.dlq_list("orders", 3).await.unwrap();
    assert_eq!(listed.len(), 3, "the oldest 3");
    let d = &listed[0];
    assert_eq!(d.id, dead_ids[0]);
    assert_eq!(d.error.as_deref(), Some("boom"));
    assert_eq!(d.original_id.as_deref(), Some("1-0"));
    assert_eq!(d.original_stream.as_deref(), Some(keys.stream.as_str()));
    assert_eq!(
        d.failed_at,
        Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    );
    assert_eq!(d.attempts, 4);
    let names: Vec<&str> = d.fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["data", "traceparent", "attempt"],
        "the message's own fields"
    );
    assert_eq!(d.payload::<Job>().unwrap(), Job { n: 0 });
    assert_eq!(streams.dlq_len("orders").await.unwrap(), 5);

    // One back into the stream, as a first attempt without the failure fields.
    let new_id = streams
        .requeue("orders", &dead_ids[0])
        .await
        .unwrap()
        .expect("requeued");
    let entries = xrange(&mut raw, &keys.stream).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, new_id);
    let fields = &entries[0].1;
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["data", "traceparent", "attempt"]);
    assert_eq!(fields[2].1, b"1");
    assert_eq!(
        serde_json::from_slice::<Job>(&fields[0].1).unwrap(),
        Job { n: 0 }
    );
    assert_eq!(streams.dlq_len("orders").await.unwrap(), 4);
    assert_eq!(
        streams.requeue("orders", &dead_ids[0]).await.unwrap(),
        None,
        "gone from the DLQ"
    );

    // Two more, then purge the rest.
    assert_eq!(streams.requeue_all("orders").await.unwrap(), 4);
    assert_eq!(streams.dlq_len("orders").await.unwrap(), 0);
    let jobs: Vec<u64> = xrange(&mut raw, &keys.stream)
        .await
        .iter()
        .map(|(_, f)| serde_json::from_slice::<Job>(&f[0].1).unwrap().n)
        .collect();
    assert_eq!(jobs, [0, 1, 2, 3, 4], "in their dead-letter order");
    for n in 0..3 {
        dead_letter(&mut raw, &keys.dlq, &keys.stream, &Job { n }, "9-0").await;
    }
    assert_eq!(streams.purge_dlq("orders").await.unwrap(), 3);
    assert!(!exists(&mut raw, &keys.dlq).await);
    assert_eq!(
        streams.len("orders").await.unwrap(),
        5,
        "the stream is untouched"
    );
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    dead_letters_are_listed_requeued_and_purged
);

async fn requeue_all_pages_through_a_long_dlq(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, _) = start(&deployment, "stream_ops_requeue_all").await;
    let mut raw = deployment.raw_connection().await;
    let streams = rx.streams();
    let keys = streams.keys("long", false).unwrap();
    for n in 0..250 {
        dead_letter(&mut raw, &keys.dlq, &keys.stream, &Job { n }, "1-0").await;
    }
    assert_eq!(streams.requeue_all("long").await.unwrap(), 250);
    assert_eq!(streams.len("long").await.unwrap(), 250);
    assert_eq!(streams.dlq_len("long").await.unwrap(), 0);
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    requeue_all_pages_through_a_long_dlq
);

async fn pending_and_lag_of_a_group(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, _) = start(&deployment, "stream_ops_pending").await;
    let mut raw = deployment.raw_connection().await;
    let streams = rx.streams();
    let key = streams.keys("tasks", false).unwrap().stream;
    assert!(streams.create_group("tasks", "workers", "0").await.unwrap());
    let jobs: Vec<Job> = (0..5).map(|n| Job { n }).collect();
    let ids = streams.publish_batch("tasks", &jobs).await.unwrap();

    let empty = streams.pending("tasks", "workers").await.unwrap();
    assert_eq!((empty.count, empty.min_id.as_deref()), (0, None));
    assert!(empty.consumers.is_empty());
    assert_eq!(streams.lag("tasks", "workers").await.unwrap(), Some(5));

    for (consumer, count) in [("c1", 2), ("c2", 1)] {
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("workers")
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(&key)
            .arg(">")
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    let p = streams.pending("tasks", "workers").await.unwrap();
    assert_eq!(p.count, 3);
    assert_eq!(p.min_id.as_deref(), Some(ids[0].as_str()));
    assert_eq!(p.max_id.as_deref(), Some(ids[2].as_str()));
    assert_eq!(p.consumers, [("c1".to_owned(), 2), ("c2".to_owned(), 1)]);
    assert_eq!(streams.lag("tasks", "workers").await.unwrap(), Some(2));
    let gauge = rx
        .metrics_text()
        .lines()
        .find(|l| l.starts_with("redisx_stream_lag{") && l.contains("group=\"workers\""))
        .map(str::to_owned);
    assert_eq!(
        gauge.as_deref(),
        Some("redisx_stream_lag{stream=\"tasks\",group=\"workers\"} 2")
    );

    for e in [
        streams.pending("tasks", "nobody").await.unwrap_err(),
        streams.lag("tasks", "nobody").await.unwrap_err(),
        streams.pending("missing", "workers").await.unwrap_err(),
        streams.lag("missing", "workers").await.unwrap_err(),
    ] {
        assert_eq!(e.code(), ErrorCode::StreamConsumerGroupError, "{e:#}");
        assert!(e.context_value("stream").is_some(), "{e:#}");
        assert!(e.context_value("group").is_some(), "{e:#}");
    }
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    pending_and_lag_of_a_group
);
