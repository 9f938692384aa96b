//! What the streams tests share (`tests/tests/stream_*.rs`): runtimes with the streams plugin,
//! entries written with raw commands in the documented field layout (`data` = JSON; a delayed
//! message as a member of the delayed set: a 16-character nonce, then the fields as
//! netstrings), what landed where, an idempotent sink, and a seeded random generator.
//!
//! Entries are written with raw commands, as a producer in any other language would, so the
//! layout itself is under test (`tests/stream_producer.rs` covers `rx.streams().publish`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionLike;
use redisx::streams::{Backoff, ConsumerOptions, StreamKeys, StreamsConfig};
use redisx::{ConnectionConfig, RedisX};
use serde::{Deserialize, Serialize};

/// The payload most stream tests send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Which job (its index in the test).
    pub n: u64,
}

/// A fixed backoff of `ms` milliseconds (multiplier 1), so a test knows when a retry is due.
pub fn fixed_backoff(ms: u64) -> StreamsConfig {
    let d = Duration::from_millis(ms);
    StreamsConfig::default().backoff(Backoff {
        initial: d,
        multiplier: 1.0,
        max: d,
    })
}

/// A runtime with one client on `url`, the app prefix `prefix` (shared by the runtimes that
/// stand for instances of one service) and the streams plugin configured with `cfg`.
///
/// # Panics
/// When the runtime does not build.
pub async fn stream_runtime(url: &str, prefix: &str, cfg: StreamsConfig) -> RedisX {
    stream_runtime_on(
        ConnectionConfig::from_url(url).expect("a Redis URL"),
        prefix,
        cfg,
    )
    .await
}

/// [`stream_runtime`] on the connection `connection` (e.g. [`crate::quick_connection`]).
///
/// # Panics
/// When the runtime does not build.
pub async fn stream_runtime_on(
    connection: ConnectionConfig,
    prefix: &str,
    cfg: StreamsConfig,
) -> RedisX {
    RedisX::builder()
        .client("default", connection)
        .key_prefix(prefix)
        .streams(cfg)
        .build()
        .await
        .expect("the runtime builds")
}

/// Options of a consumer `name` in `group` that reads quickly (200 ms blocks) and starts a new
/// group at the beginning of the stream (`0`).
pub fn quick_options(group: &str, name: &str) -> ConsumerOptions {
    ConsumerOptions::new(group)
        .consumer(name)
        .block(Duration::from_millis(200))
        .start_id("0")
}

/// The deliveries `rx` counted with `status` (`success`, `retry`, `dead_letter`,
/// `decode_error`) in `redisx_stream_messages_consumed_total`.
pub fn consumed(rx: &RedisX, status: &str) -> u64 {
    crate::metric_sum(
        rx,
        "redisx_stream_messages_consumed_total",
        &[&format!("status=\"{status}\"")],
    )
}

/// The keys of the stream `name` in `rx`.
///
/// # Panics
/// When the name is refused.
pub fn keys(rx: &RedisX, name: &str) -> StreamKeys {
    rx.streams().keys(name, false).expect("a valid stream name")
}

/// Appends `payload` to the stream `key` with raw `XADD` (`data` = its JSON); returns the id.
///
/// # Panics
/// When Redis refuses it.
pub async fn add<T: Serialize>(conn: &mut impl ConnectionLike, key: &str, payload: &T) -> String {
    add_fields(conn, key, &[("data", &json(payload))]).await
}

/// Appends an entry of `fields` to the stream `key` with raw `XADD`; returns the id.
///
/// # Panics
/// When Redis refuses it.
pub async fn add_fields(
    conn: &mut impl ConnectionLike,
    key: &str,
    fields: &[(&str, &[u8])],
) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key).arg("*");
    for (name, value) in fields {
        cmd.arg(*name).arg(*value);
    }
    cmd.query_async(conn).await.expect("XADD")
}

/// Appends every one of `payloads` to the stream `key` in order, pipelined 500 at a time;
/// returns their ids in order.
///
/// # Panics
/// When Redis refuses them.
pub async fn add_many<T: Serialize>(
    conn: &mut impl ConnectionLike,
    key: &str,
    payloads: &[T],
) -> Vec<String> {
    let mut ids = Vec::with_capacity(payloads.len());
    for chunk in payloads.chunks(500) {
        let mut pipe = redis::pipe();
        for p in chunk {
            pipe.cmd("XADD").arg(key).arg("*").arg("data").arg(json(p));
        }
        let got: Vec<String> = pipe.query_async(conn).await.expect("XADD pipeline");
        ids.extend(got);
    }
    ids
}

/// The JSON text of `payload`.
///
/// # Panics
/// When it does not serialize.
pub fn json<T: Serialize>(payload: &T) -> Vec<u8> {
    serde_json::to_vec(payload).expect("the payload serializes")
}

/// A member of a delayed set holding `fields`: a 16-character nonce, then every name and value
/// as a netstring (`<len>:<bytes>,`), the layout the runtime's promote script parses.
pub fn delayed_member(fields: &[(&str, &[u8])]) -> Vec<u8> {
    static NONCE: AtomicU64 = AtomicU64::new(0);
    let nonce = NONCE.fetch_add(1, Ordering::Relaxed) ^ (u64::from(std::process::id()) << 40);
    let mut out = format!("{nonce:016x}").into_bytes();
    for part in fields.iter().flat_map(|(n, v)| [n.as_bytes(), *v]) {
        out.extend_from_slice(part.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(part);
        out.push(b',');
    }
    out
}

/// Schedules every `(payload, due)` (due: ms since the epoch) into the delayed set `key` with
/// raw `ZADD`, pipelined 500 at a time.
///
/// # Panics
/// When Redis refuses them.
pub async fn schedule_many<T: Serialize>(
    conn: &mut impl ConnectionLike,
    key: &str,
    items: &[(T, u64)],
) {
    for chunk in items.chunks(500) {
        let mut pipe = redis::pipe();
        for (payload, due) in chunk {
            let data = json(payload);
            pipe.cmd("ZADD")
                .arg(key)
                .arg(*due)
                .arg(delayed_member(&[("data", &data)]))
                .ignore();
        }
        let () = pipe.query_async(conn).await.expect("ZADD pipeline");
    }
}

/// Redis's clock (`TIME`), in ms since the epoch: what the delayed set is scored by.
///
/// # Panics
/// When Redis does not answer.
pub async fn server_time_ms(conn: &mut impl ConnectionLike) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await.expect("TIME");
    secs * 1000 + micros / 1000
}

/// This host's clock, in ms since the epoch (the same clock as a local Redis's `TIME`).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Creates the group `group` of the stream `key` (and the stream) at `start` (`0`, `$`); an
/// existing group is left as it is.
///
/// # Panics
/// When Redis refuses it for another reason.
pub async fn create_group(conn: &mut impl ConnectionLike, key: &str, group: &str, start: &str) {
    let r: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg(group)
        .arg(start)
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    if let Err(e) = r {
        assert!(e.to_string().contains("BUSYGROUP"), "XGROUP CREATE: {e}");
    }
}

/// How many entries of `group` are pending (delivered, not acknowledged).
///
/// # Panics
/// When the group does not exist.
pub async fn pending(conn: &mut impl ConnectionLike, key: &str, group: &str) -> u64 {
    let (n, ..): (u64, Option<String>, Option<String>, redis::Value) = redis::cmd("XPENDING")
        .arg(key)
        .arg(group)
        .query_async(conn)
        .await
        .expect("XPENDING");
    n
}

/// Waits until nothing of `group` is pending (false after `within`).
pub async fn wait_settled(
    conn: &(impl ConnectionLike + Clone),
    key: &str,
    group: &str,
    within: Duration,
) -> bool {
    crate::eventually(within, poll(), || {
        let (mut conn, key, group) = (conn.clone(), key.to_owned(), group.to_owned());
        async move { pending(&mut conn, &key, &group).await == 0 }
    })
    .await
}

/// The pending entries of `group`: `(id, consumer, deliveries)`, oldest first.
///
/// # Panics
/// When the group does not exist.
pub async fn pending_entries(
    conn: &mut impl ConnectionLike,
    key: &str,
    group: &str,
) -> Vec<(String, String, u64)> {
    let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(key)
        .arg(group)
        .arg("-")
        .arg("+")
        .arg(10_000)
        .query_async(conn)
        .await
        .expect("XPENDING range");
    rows.into_iter().map(|(id, c, _, n)| (id, c, n)).collect()
}

/// The length of the stream `key` (0 when missing).
///
/// # Panics
/// When `key` holds another type.
pub async fn xlen(conn: &mut impl ConnectionLike, key: &str) -> u64 {
    redis::cmd("XLEN")
        .arg(key)
        .query_async(conn)
        .await
        .expect("XLEN")
}

/// The members of the sorted set `key` (0 when missing).
///
/// # Panics
/// When `key` holds another type.
pub async fn zcard(conn: &mut impl ConnectionLike, key: &str) -> u64 {
    redis::cmd("ZCARD")
        .arg(key)
        .query_async(conn)
        .await
        .expect("ZCARD")
}

/// The entries of the stream `key`, each as its id and its fields as text.
///
/// # Panics
/// When `key` holds another type or a field is not UTF-8.
pub async fn entries(
    conn: &mut impl ConnectionLike,
    key: &str,
) -> Vec<(String, std::collections::HashMap<String, String>)> {
    let rows: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("XRANGE");
    rows.into_iter()
        .map(|(id, fields)| (id, fields.into_iter().collect()))
        .collect()
}

/// One stream entry as raw `XRANGE` returns it: its id and its fields in order.
pub type Entry = (String, Vec<(String, Vec<u8>)>);

/// The entries of the stream `key` as raw `XRANGE` returns them.
///
/// # Panics
/// When the read fails.
pub async fn xrange(conn: &mut impl ConnectionLike, key: &str) -> Vec<Entry> {
    redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("XRANGE")
}

/// Whether `key` exists.
///
/// # Panics
/// When the read fails.
pub async fn exists(conn: &mut impl ConnectionLike, key: &str) -> bool {
    let n: u64 = redis::cmd("EXISTS")
        .arg(key)
        .query_async(conn)
        .await
        .expect("EXISTS");
    n == 1
}

/// The integer at `key` (0 when missing).
///
/// # Panics
/// When `key` holds something else.
pub async fn get_u64(conn: &mut impl ConnectionLike, key: &str) -> u64 {
    let n: Option<u64> = redis::cmd("GET")
        .arg(key)
        .query_async(conn)
        .await
        .expect("GET");
    n.unwrap_or(0)
}

/// The idempotent sink: records a message's effect exactly once by recording its id with the
/// effect in one script. `KEYS[1]` the set of handled ids, `KEYS[2]` the effects counter
/// (incremented only when the id is new), `KEYS[3]` the deliveries counter (every call);
/// `ARGV[1]` the message id. Returns 1 for a new id, 0 for a repeat.
pub const SINK_LUA: &str = "redis.call('INCR', KEYS[3])
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('INCR', KEYS[2])
  return 1
end
return 0";

/// The keys of one idempotent sink under `prefix`: `(done set, effects, deliveries)`, with one
/// hash tag (`{sink}`) so that [`SINK_LUA`] runs on a cluster too.
pub fn sink_keys(prefix: &str) -> (String, String, String) {
    (
        format!("{prefix}{{sink}}:done"),
        format!("{prefix}{{sink}}:effects"),
        format!("{prefix}{{sink}}:deliveries"),
    )
}

/// Runs [`SINK_LUA`] for the message `id` on `rx`'s client; whether the id was new.
///
/// # Errors
/// When Redis fails the script.
pub async fn sink(rx: &RedisX, prefix: &str, id: &str) -> redisx::Result<bool> {
    let (done, effects, deliveries) = sink_keys(prefix);
    let script = redis::Script::new(SINK_LUA);
    let mut inv = script.prepare_invoke();
    inv.key(done).key(effects).key(deliveries).arg(id);
    let added: i64 = rx.client().invoke_script(&inv).await?;
    Ok(added == 1)
}

/// What handlers saw, shared between a test and its handlers: a cheap-to-clone list.
#[derive(Debug)]
pub struct Log<T>(Arc<Mutex<Vec<T>>>);

impl<T> Clone for Log<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Log<T> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<T: Clone> Log<T> {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `item`.
    pub fn push(&self, item: T) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(item);
    }

    /// Everything so far, in order.
    pub fn items(&self) -> Vec<T> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many items so far.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until it holds at least `n` items (false after [`within`]).
    pub async fn wait_len(&self, n: usize) -> bool {
        crate::eventually(within(), poll(), || {
            let log = self.clone();
            async move { log.len() >= n }
        })
        .await
    }
}

/// A small seeded generator (`SplitMix64`), so a randomized test prints its seed and can be
/// replayed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded by `env` when set (a number), else by the clock; prints the seed.
    pub fn from_env(env: &str) -> Self {
        let seed = std::env::var(env)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| now_ms() ^ (u64::from(std::process::id()) << 32));
        println!("random seed: {seed} (replay with {env}={seed})");
        Self(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo)
    }
}

/// The bound the stream tests wait for an event within (generous: never a latency check).
pub fn within() -> Duration {
    Duration::from_secs(5)
}

/// How often the stream tests poll for an event.
pub fn poll() -> Duration {
    Duration::from_millis(10)
}
