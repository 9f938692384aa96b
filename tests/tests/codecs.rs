//! Codecs against real Redis: bincode (default) and JSON, chosen in `CacheConfig::codec` or per
//! entry with `EntryOptions::codec`; the stored form (a 17-byte header, then the codec's bytes;
//! JSON readable by anyone); and entries that cannot be read (unknown header, truncated, another
//! codec than the reader's, another type) being misses that the loader's value replaces. Each
//! test runs on a standalone server and on the cluster.

use std::sync::atomic::{AtomicUsize, Ordering};

use redisx::cache::EntryOptions;
use redisx::testing::{Deployment, Topology};
use redisx::{Bincode, CacheConfig, Codec as _, CodecKind, Error, RedisX};

use redisx_tests::{runtime, unique_prefix};
use serde::{Deserialize, Serialize};

/// The envelope header: format byte, `stale_at` and `expires_at` (unix ms, little endian).
const HEADER_LEN: usize = 17;
/// Set in the format byte: a tag section (a count byte, then the tags) follows the header.
const TAGGED: u8 = 0x40;
/// Where the value starts in an untagged entry: after the header and a tag count of 0.
const BODY: usize = HEADER_LEN + 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    roles: Vec<String>,
    score: Option<f64>,
}

fn ada() -> Profile {
    Profile {
        id: 7,
        name: "Ada".to_owned(),
        roles: vec!["admin".to_owned(), "dev".to_owned()],
        score: Some(2.5),
    }
}

fn grace() -> Profile {
    Profile {
        id: 8,
        name: "Grace".to_owned(),
        roles: vec![],
        score: None,
    }
}

async fn stored(deployment: &Deployment, full_key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET")
        .arg(full_key)
        .query_async(&mut deployment.raw_connection().await)
        .await
        .unwrap()
}

async fn store(deployment: &Deployment, full_key: &str, bytes: &[u8]) {
    let () = redis::cmd("SET")
        .arg(full_key)
        .arg(bytes)
        .query_async(&mut deployment.raw_connection().await)
        .await
        .unwrap();
}

async fn json_config_stores_json_that_anyone_can_read(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(
        &deployment.url(),
        &unique_prefix("json_cfg"),
        CacheConfig::default().codec(CodecKind::Json),
    )
    .await;
    let cache = rx.cache();
    cache.set("p", &ada(), None).await.unwrap();
    let bytes = stored(&deployment, &cache.full_key("p"))
        .await
        .expect("stored");
    assert_eq!(
        bytes[0],
        CodecKind::Json.format() | TAGGED,
        "the JSON format byte"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&bytes[BODY..]).expect("the body after the header is JSON");
    assert_eq!(json, serde_json::to_value(ada()).unwrap());
    assert_eq!(json["name"], "Ada");
    cache.clear_l1();
    assert_eq!(cache.get::<Profile>("p").await.unwrap(), Some(ada()));
}

redisx_tests::on_topologies!(json_config_stores_json_that_anyone_can_read);

async fn bincode_is_the_default_and_stores_bincode(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(
        &deployment.url(),
        &unique_prefix("bincode_cfg"),
        CacheConfig::default(),
    )
    .await;
    let cache = rx.cache();
    cache.set("p", &ada(), None).await.unwrap();
    let bytes = stored(&deployment, &cache.full_key("p"))
        .await
        .expect("stored");
    assert_eq!(
        bytes[0],
        CodecKind::Bincode.format() | TAGGED,
        "the bincode format byte"
    );
    assert_eq!(Bincode::decode::<Profile>(&bytes[BODY..]).unwrap(), ada());
    assert!(serde_json::from_slice::<serde_json::Value>(&bytes[BODY..]).is_err());
    cache.clear_l1();
    assert_eq!(cache.get::<Profile>("p").await.unwrap(), Some(ada()));
}

redisx_tests::on_topologies!(bincode_is_the_default_and_stores_bincode);

async fn a_per_entry_codec_overrides_the_config(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(
        &deployment.url(),
        &unique_prefix("entry_codec"),
        CacheConfig::default(),
    )
    .await;
    let cache = rx.cache();
    let json = EntryOptions::new().codec(CodecKind::Json);
    cache.set_with("j", &ada(), &json).await.unwrap();
    cache.set("b", &grace(), None).await.unwrap();
    let j = stored(&deployment, &cache.full_key("j")).await.unwrap();
    let b = stored(&deployment, &cache.full_key("b")).await.unwrap();
    assert_eq!(j[0], CodecKind::Json.format() | TAGGED);
    assert_eq!(b[0], CodecKind::Bincode.format() | TAGGED);
    assert_eq!(
        serde_json::from_slice::<Profile>(&j[BODY..]).unwrap(),
        ada()
    );

    // Read back through the same options: an L2 hit, the loader does not run.
    cache.clear_l1();
    let v = cache
        .get_or_load_with("j", &json, || async {
            panic!("the JSON entry must be a hit");
            #[allow(unreachable_code)]
            Ok::<Profile, Error>(grace())
        })
        .await
        .unwrap();
    assert_eq!(v, ada());

    // A loaded value is written with the entry's codec.
    let loaded = cache
        .get_or_load_with("loaded", &json, || async { Ok::<_, Error>(grace()) })
        .await
        .unwrap();
    assert_eq!(loaded, grace());
    let bytes = stored(&deployment, &cache.full_key("loaded"))
        .await
        .unwrap();
    assert_eq!(bytes[0], CodecKind::Json.format() | TAGGED);
    assert_eq!(
        serde_json::from_slice::<Profile>(&bytes[BODY..]).unwrap(),
        grace()
    );
}

redisx_tests::on_topologies!(a_per_entry_codec_overrides_the_config);

/// Writes `bytes` under `key`, then checks that a read is a miss, that `get_or_load` runs its
/// loader (once) and that the loader's value replaced the bad entry in Redis.
async fn assert_miss_and_replaced(deployment: &Deployment, rx: &RedisX, key: &str, bytes: &[u8]) {
    let cache = rx.cache();
    let full = cache.full_key(key);
    store(deployment, &full, bytes).await;
    cache.clear_l1();
    assert_eq!(
        cache.get::<Profile>(key).await.unwrap(),
        None,
        "{key}: an unreadable entry is a miss"
    );
    store(deployment, &full, bytes).await; // a miss may have removed it
    cache.clear_l1();
    let calls = AtomicUsize::new(0);
    let v = cache
        .get_or_load(key, None, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(grace())
        })
        .await
        .unwrap();
    assert_eq!(v, grace(), "{key}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "{key}: the loader runs once"
    );
    let now = stored(deployment, &full)
        .await
        .expect("the loader's value is stored");
    assert_ne!(now, bytes, "{key}: the bad entry is still there");
    cache.clear_l1();
    assert_eq!(
        cache.get::<Profile>(key).await.unwrap(),
        Some(grace()),
        "{key}: the replacement is readable"
    );
}

async fn an_unknown_header_byte_is_a_miss_and_is_replaced(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(
        &deployment.url(),
        &unique_prefix("bad_header"),
        CacheConfig::default(),
    )
    .await;
    // A well-formed bincode entry whose header byte names no codec.
    rx.cache().set("src", &ada(), None).await.unwrap();
    let mut bytes = stored(&deployment, &rx.cache().full_key("src"))
        .await
        .unwrap();
    for header in [0x00, 0x03, 0x7f, 0xff] {
        bytes[0] = header;
        assert_miss_and_replaced(&deployment, &rx, &format!("h{header:02x}"), &bytes).await;
    }
    assert!(rx.cache().stats().corrupt_entries >= 4);
}

redisx_tests::on_topologies!(an_unknown_header_byte_is_a_miss_and_is_replaced);

async fn a_truncated_entry_is_a_miss_and_is_replaced(topology: Topology) {
    let deployment = Deployment::start(topology);
    for codec in [CodecKind::Bincode, CodecKind::Json] {
        let rx = runtime(
            &deployment.url(),
            &unique_prefix("truncated"),
            CacheConfig::default().codec(codec),
        )
        .await;
        rx.cache().set("src", &ada(), None).await.unwrap();
        let bytes = stored(&deployment, &rx.cache().full_key("src"))
            .await
            .unwrap();
        // Inside the header, right after it, and one byte short of the value.
        for len in [1, HEADER_LEN - 1, HEADER_LEN, bytes.len() - 1] {
            let key = format!("{}-{len}", codec.name());
            assert_miss_and_replaced(&deployment, &rx, &key, &bytes[..len]).await;
        }
    }
}

redisx_tests::on_topologies!(a_truncated_entry_is_a_miss_and_is_replaced);

async fn an_entry_of_another_type_is_a_miss_and_is_replaced(topology: Topology) {
    let deployment = Deployment::start(topology);
    for codec in [CodecKind::Bincode, CodecKind::Json] {
        let rx = runtime(
            &deployment.url(),
            &unique_prefix("other_type"),
            CacheConfig::default().codec(codec),
        )
        .await;
        // A list of numbers where a Profile is expected.
        rx.cache().set("src", &vec![1u8, 2, 3], None).await.unwrap();
        let bytes = stored(&deployment, &rx.cache().full_key("src"))
            .await
            .unwrap();
        assert_miss_and_replaced(&deployment, &rx, &format!("t-{}", codec.name()), &bytes).await;
    }
}

redisx_tests::on_topologies!(an_entry_of_another_type_is_a_miss_and_is_replaced);

/// Every entry names its codec in its header, so a reader configured for another codec still
/// reads it: switching a service from JSON to bincode (or back) needs no flush, and entries
/// written with a per-entry codec are readable through every API. New writes use the reader's
/// codec.
async fn a_json_entry_is_read_by_its_header_under_a_bincode_config(topology: Topology) {
    let deployment = Deployment::start(topology);
    let prefix = unique_prefix("cross_codec");
    let writer = runtime(
        &deployment.url(),
        &prefix,
        CacheConfig::default().codec(CodecKind::Json),
    )
    .await;
    let reader = runtime(&deployment.url(), &prefix, CacheConfig::default()).await;
    writer.cache().set("p", &ada(), None).await.unwrap();
    let full = reader.cache().full_key("p");
    let json_entry = stored(&deployment, &full).await.unwrap();
    assert_eq!(json_entry[0], CodecKind::Json.format() | TAGGED);

    let calls = AtomicUsize::new(0);
    let v = reader
        .cache()
        .get_or_load("p", None, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(grace())
        })
        .await
        .unwrap();
    assert_eq!(
        (v, calls.load(Ordering::SeqCst)),
        (ada(), 0),
        "the JSON entry is a hit for a bincode-configured reader"
    );
    reader.cache().set("p", &grace(), None).await.unwrap();
    let now = stored(&deployment, &full).await.unwrap();
    assert_eq!(
        now[0],
        CodecKind::Bincode.format() | TAGGED,
        "new writes use the reader's codec"
    );
    writer.cache().clear_l1();
    assert_eq!(writer.cache().get("p").await.unwrap(), Some(grace()));
}

redisx_tests::on_topologies!(a_json_entry_is_read_by_its_header_under_a_bincode_config);
