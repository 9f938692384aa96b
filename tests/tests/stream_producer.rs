//! The streams producer against a real Redis: what a publish writes (the documented field
//! layout, read back with raw `XRANGE`), `NOMKSTREAM`, explicit ids, raw names and the
//! `MAXLEN ~` cap, `publish_batch` in one round trip, the bincode codec, errors that name their
//! stream, delayed publishes in the delayed set with a due score, and the trim that keeps every
//! entry a group still needs. Each test runs on a standalone server and on the 3-master
//! cluster.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionLike;
use redisx::codec::{Bincode, Codec, CodecKind};
use redisx::streams::{PublishOptions, StreamsConfig};
use redisx::testing::{Deployment, Topology};
use redisx::{ErrorCode, RedisX};
use redisx_tests::streams::{Entry, exists, stream_runtime_on, xrange};
use redisx_tests::{Nodes, eventually, metric_sum, quick_connection, unique_prefix};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    item: String,
}

fn order(id: u64) -> Order {
    Order {
        id,
        item: format!("item-{id}"),
    }
}

async fn start(deployment: &Deployment, test: &str) -> (RedisX, String) {
    let prefix = unique_prefix(test);
    (
        stream_runtime_on(
            quick_connection(&deployment.url()),
            &prefix,
            StreamsConfig::default(),
        )
        .await,
        prefix,
    )
}

/// The server's clock, ms since the epoch.
async fn server_ms(raw: &mut impl ConnectionLike) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(raw).await.expect("TIME");
    secs * 1000 + micros / 1000
}

fn names(fields: &[(String, Vec<u8>)]) -> Vec<&str> {
    fields.iter().map(|(n, _)| n.as_str()).collect()
}

async fn publish_returns_ids_and_writes_the_documented_field_layout(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, prefix) = start(&deployment, "stream_publish_layout").await;
    let mut raw = deployment.raw_connection().await;
    let streams = rx.streams();
    let key = format!("{prefix}stream:{{orders}}");
    assert_eq!(streams.keys("orders", false).unwrap().stream, key);

    let first = streams.publish("orders", &order(1)).await.unwrap();
    let second = streams.publish("orders", &order(2)).await.unwrap();
    let entries = xrange(&mut raw, &key).await;
    let ids: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
    for (i, (_, fields)) in entries.iter().enumerate() {
        // JSON by default: `data` only (no `codec`, no `attempt`: a first attempt), readable by
        // any language.
        assert_eq!(names(fields), ["data"], "{fields:?}");
        let back: Order = serde_json::from_slice(&fields[0].1).unwrap();
        assert_eq!(back, order(i as u64 + 1));
    }
    assert_eq!(streams.len("orders").await.unwrap(), 2);
    assert_eq!(
        metric_sum(
            &rx,
            "redisx_stream_messages_published_total",
            &["stream=\"orders\""]
        ),
        2
    );
    assert!(
        rx.metrics_text()
            .contains("redisx_stream_publish_duration_seconds_count{stream=\"orders\"} 2"),
        "{}",
        rx.metrics_text()
    );
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    publish_returns_ids_and_writes_the_documented_field_layout
);

async fn nomkstream_on_a_missing_stream_answers_none_and_creates_nothing(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, prefix) = start(&deployment, "stream_nomkstream").await;
    let mut raw = deployment.raw_connection().await;
    let streams = rx.streams();
    let key = format!("{prefix}stream:{{audit}}");
    let opts = PublishOptions::new().nomkstream(true);

    assert_eq!(
        streams
            .publish_with("audit", &"login", &opts)
            .await
            .unwrap(),
        None
    );
    assert!(!exists(&mut raw, &key).await, "nothing was created");
    assert_eq!(streams.len("audit").await.unwrap(), 0);

    let id = streams.publish("audit", &"created").await.unwrap();
    let again = streams
        .publish_with("audit", &"login", &opts)
        .await
        .unwrap();
    assert!(again.is_some_and(|a| a > id), "an existing stream takes it");
    assert_eq!(streams.len("audit").await.unwrap(), 2);
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    nomkstream_on_a_missing_stream_answers_none_and_creates_nothing
);

async fn explicit_ids_raw_names_and_the_maxlen_cap(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("stream_ids_caps");
    let rx = stream_runtime_on(
        quick_connection(&deployment.url()),
        &prefix,
        StreamsConfig::default().max_len(10),
    )
    .await;
    let mut raw = deployment.raw_connection().await;
    let streams = rx.streams();

    let opts = PublishOptions::new().id("5-1");
    assert_eq!(
        streams
            .publish_with("ids", &1, &opts)
            .await
            .unwrap()
            .as_deref(),
        Some("5-1")
    );
    // An id not above the last one is Redis's error, naming the stream.
    let e = streams
        .publish_with("ids", &2, &PublishOptions::new().id("5-0"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::StreamPublishFailed, "{e:#}");
    assert_eq!(e.context_value("stream"), Some("ids"), "{e:#}");

    // A raw name is the key itself.
    let raw_key = format!("{prefix}legacy-events");
    let opts = PublishOptions::new().raw_name(true);
    let id = streams
        .publish_with(&raw_key, &"x", &opts)
        .await
        .unwrap()
        .unwrap();
    let entries = xrange(&mut raw, &raw_key).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, id);

    // `MAXLEN ~ 10` keeps the stream near 10 entries (whole nodes of up to 100 go).
    let batch: Vec<u64> = (0..500).collect();
    streams.publish_batch("capped", &batch).await.unwrap();
    let len = streams.len("capped").await.unwrap();
    assert!((10..=200).contains(&len), "capped near 10: {len}");
    // The per-publish cap overrides the config's.
    for i in 0..300 {
        let opts = PublishOptions::new().max_len(1_000);
        streams.publish_with("wide", &i, &opts).await.unwrap();
    }
    assert_eq!(streams.len("wide").await.unwrap(), 300);
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    explicit_ids_raw_names_and_the_maxlen_cap
);

async fn publish_batch_is_one_round_trip(topology: Topology) {
    // Servers of its own: their command counts are this test's alone.
    let deployment = Deployment::start_owned(topology);
    let (rx, prefix) = start(&deployment, "stream_batch").await;
    let mut raw = deployment.raw_connection().await;
    let streams = rx.streams();
    let key = format!("{prefix}stream:{{batch}}");
    let msgs: Vec<Order> = (0..100).map(order).collect();

    let pipelines = || metric_sum(&rx, "redisx_commands_total", &["command=\"PIPELINE\""]);
    let xadds = || metric_sum(&rx, "redisx_commands_total", &["command=\"XADD\""]);
    let (pipelines_before, xadds_before) = (pipelines(), xadds());
    // The masters (a replica's copies of the writes are not counted), connected to before the
    // count: finding them and connecting run commands of their own.
    let mut masters = Nodes::masters(&deployment).await;
    let calls_before = masters.command_calls().await;
    let ids = streams.publish_batch("batch", &msgs).await.unwrap();
    let calls_after = masters.command_calls().await;

    assert_eq!(pipelines() - pipelines_before, 1, "one round trip");
    assert_eq!(xadds() - xadds_before, 0, "no XADD of its own");
    let ran: HashMap<&str, u64> = calls_after
        .iter()
        .map(|(c, n)| (c.as_str(), n - calls_before.get(c).copied().unwrap_or(0)))
        .filter(|(c, n)| *n > 0 && *c != "info")
        .collect();
    assert_eq!(
        ran,
        HashMap::from([("xadd", 100)]),
        "the servers ran 100 XADDs and nothing else on {topology}"
    );

    assert_eq!(ids.len(), 100);
    let entries = xrange(&mut raw, &key).await;
    let stored: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        stored,
        ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "in order"
    );
    for ((_, fields), want) in entries.iter().zip(&msgs) {
        let back: Order = serde_json::from_slice(&fields[0].1).unwrap();
        assert_eq!(&back, want);
    }
    assert_eq!(
        metric_sum(
            &rx,
            "redisx_stream_messages_published_total",
            &["stream=\"batch\""]
        ),
        100
    );
    assert!(
        streams
            .publish_batch::<Order>("batch", &[])
            .await
            .unwrap()
            .is_empty()
    );
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    publish_batch_is_one_round_trip
);

async fn the_bincode_codec_writes_its_codec_field(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("stream_bincode");
    let cfg = StreamsConfig::default().codec(CodecKind::Bincode);
    let rx = stream_runtime_on(quick_connection(&deployment.url()), &prefix, cfg).await;
    let mut raw = deployment.raw_connection().await;
    rx.streams().publish("orders", &order(9)).await.unwrap();

    let entries = xrange(&mut raw, &format!("{prefix}stream:{{orders}}")).await;
    let fields = &entries[0].1;
    assert_eq!(names(fields), ["data", "codec"]);
    assert_eq!(fields[1].1, b"bincode");
    let back: Order = Bincode::decode(&fields[0].1).unwrap();
    assert_eq!(back, order(9));
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    the_bincode_codec_writes_its_codec_field
);

async fn every_error_names_its_stream(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, prefix) = start(&deployment, "stream_errors").await;
    let mut raw = deployment.raw_connection().await;
    let streams = rx.streams();
    // Names refused before Redis.
    for bad in ["", "a{b}", "line\nbreak"] {
        let e = streams.publish(bad, &1).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::StreamNameInvalid, "{bad:?}: {e:#}");
        assert!(e.context_value("stream").is_some(), "{bad:?}: {e:#}");
    }
    // Redis refusing: the keys hold strings.
    for k in ["stream:{taken}", "stream:{taken}:delayed"] {
        let () = redis::cmd("SET")
            .arg(format!("{prefix}{k}"))
            .arg("a string")
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    let errors = [
        streams.publish("taken", &1).await.unwrap_err(),
        streams
            .publish_with("taken", &1, &PublishOptions::new())
            .await
            .unwrap_err(),
        streams.publish_batch("taken", &[1, 2]).await.unwrap_err(),
        streams
            .publish_in("taken", &1, Duration::from_secs(1))
            .await
            .unwrap_err(),
        streams
            .publish_at("taken", &1, SystemTime::now())
            .await
            .unwrap_err(),
    ];
    for e in errors {
        assert_eq!(e.code(), ErrorCode::StreamPublishFailed, "{e:#}");
        assert_eq!(e.context_value("stream"), Some("taken"), "{e:#}");
        assert!(
            format!("{e:#}").contains("WRONGTYPE"),
            "the cause is kept: {e:#}"
        );
    }
    let e = streams
        .publish_with("m", &1, &PublishOptions::new().max_len(0))
        .await
        .unwrap_err();
    assert_eq!(e.context_value("stream"), Some("m"), "{e:#}");
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    every_error_names_its_stream
);

async fn delayed_publishes_wait_in_the_delayed_set_scored_by_due_time(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, prefix) = start(&deployment, "stream_delayed").await;
    let mut raw = deployment.raw_connection().await;
    let streams = rx.streams();
    let delayed = format!("{prefix}stream:{{reminders}}:delayed");

    let before = server_ms(&mut raw).await;
    streams
        .publish_in("reminders", &order(1), Duration::from_secs(10))
        .await
        .unwrap();
    let after = server_ms(&mut raw).await;
    let at = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    streams
        .publish_at("reminders", &order(2), at)
        .await
        .unwrap();

    let members: Vec<(Vec<u8>, u64)> = redis::cmd("ZRANGE")
        .arg(&delayed)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(members.len(), 2);
    let due = members[0].1;
    assert!(
        (before + 10_000..=after + 10_000).contains(&due),
        "due at the server's now + 10 s: {before} .. {after} + 10000 vs {due}"
    );
    assert_eq!(members[1].1, 1_900_000_000_000, "publish_at is absolute");
    for (member, _) in &members {
        // A 16-hex nonce, then the fields as netstrings.
        assert!(member[..16].iter().all(u8::is_ascii_hexdigit), "{member:?}");
        assert!(member[16..].starts_with(b"4:data,"), "{member:?}");
    }
    let json = serde_json::to_vec(&order(1)).unwrap();
    let mut netstring = format!("{}:", json.len()).into_bytes();
    netstring.extend_from_slice(&json);
    netstring.push(b',');
    assert!(
        members[0].0.ends_with(&netstring),
        "the payload follows `data`"
    );

    assert_eq!(streams.delayed_len("reminders").await.unwrap(), 2);
    assert_eq!(
        streams.len("reminders").await.unwrap(),
        0,
        "not in the stream yet"
    );
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    delayed_publishes_wait_in_the_delayed_set_scored_by_due_time
);

/// Delivers up to `count` new entries of `key` to `consumer` of `group` with raw `XREADGROUP`,
/// without acknowledging them; their ids.
async fn deliver(
    raw: &mut impl ConnectionLike,
    key: &str,
    group: &str,
    consumer: &str,
    count: usize,
) -> Vec<String> {
    let reply: Vec<(String, Vec<Entry>)> = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(key)
        .arg(">")
        .query_async(raw)
        .await
        .expect("XREADGROUP");
    reply
        .into_iter()
        .flat_map(|(_, entries)| entries.into_iter().map(|(id, _)| id))
        .collect()
}

async fn ack(raw: &mut impl ConnectionLike, key: &str, group: &str, ids: &[String]) {
    let n: usize = redis::cmd("XACK")
        .arg(key)
        .arg(group)
        .arg(ids)
        .query_async(raw)
        .await
        .expect("XACK");
    assert_eq!(n, ids.len());
}

async fn the_trim_keeps_every_entry_a_group_still_needs(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (rx, prefix) = start(&deployment, "stream_trim").await;
    let mut raw = deployment.raw_connection().await;
    let streams = rx.streams();
    let key = format!("{prefix}stream:{{jobs}}");

    // No groups: nobody is known to read it, nothing is trimmed.
    let all: Vec<u64> = (0..600).collect();
    let ids = streams.publish_batch("jobs", &all).await.unwrap();
    assert_eq!(streams.trim("jobs").await.unwrap(), 0);
    assert_eq!(streams.trim("missing").await.unwrap(), 0);

    // `work` reads 500 and acknowledges the first 300: 300..500 stay pending, 500.. are not
    // delivered yet. `late` has read nothing: it holds everything.
    assert!(streams.create_group("jobs", "work", "0").await.unwrap());
    assert!(streams.create_group("jobs", "late", "0").await.unwrap());
    let delivered = deliver(&mut raw, &key, "work", "w1", 500).await;
    assert_eq!(delivered, ids[..500]);
    ack(&mut raw, &key, "work", &ids[..300]).await;
    assert_eq!(
        streams.trim("jobs").await.unwrap(),
        0,
        "`late` needs every entry"
    );
    assert_eq!(streams.len("jobs").await.unwrap(), 600);

    let _: () = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(&key)
        .arg("late")
        .query_async(&mut raw)
        .await
        .unwrap();
    let removed = streams.trim("jobs").await.unwrap();
    let kept: Vec<String> = xrange(&mut raw, &key)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(
        removed > 0,
        "acknowledged entries before the oldest pending one go"
    );
    assert_eq!(kept.len() as u64, 600 - removed);
    assert!(
        kept.ends_with(&ids[300..]),
        "every pending and undelivered entry stays (kept from {:?})",
        kept.first()
    );
    let pending = streams.pending("jobs", "work").await.unwrap();
    assert_eq!(
        (pending.count, pending.min_id.as_deref()),
        (200, Some(ids[300].as_str()))
    );

    // Everything acknowledged: the undelivered entries still stay.
    ack(&mut raw, &key, "work", &ids[300..500]).await;
    streams.trim("jobs").await.unwrap();
    let kept: Vec<String> = xrange(&mut raw, &key)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(kept.ends_with(&ids[500..]), "undelivered entries stay");
    assert!(kept.len() < 300, "{}", kept.len());
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    the_trim_keeps_every_entry_a_group_still_needs
);

async fn a_publishing_runtime_trims_its_streams_in_the_background(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("stream_trim_task");
    let cfg = StreamsConfig::default().trim_every(Duration::from_millis(100));
    let rx = stream_runtime_on(quick_connection(&deployment.url()), &prefix, cfg).await;
    let mut raw = deployment.raw_connection().await;
    let streams = rx.streams().clone();
    let key = format!("{prefix}stream:{{events}}");

    assert!(streams.create_group("events", "g", "0").await.unwrap());
    let all: Vec<u64> = (0..600).collect();
    let ids = streams.publish_batch("events", &all).await.unwrap();
    let delivered = deliver(&mut raw, &key, "g", "c", 600).await;
    ack(&mut raw, &key, "g", &delivered[..550]).await;
    let trimmed = eventually(Duration::from_secs(5), Duration::from_millis(50), || {
        let streams = streams.clone();
        async move { streams.len("events").await.unwrap() < 300 }
    })
    .await;
    assert!(trimmed, "the background trim ran");
    let kept: Vec<String> = xrange(&mut raw, &key)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(kept.ends_with(&ids[550..]), "the pending entries stay");
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_publishing_runtime_trims_its_streams_in_the_background
);
