//! `cluster.invalidation` (`--cluster` only, in the `cache` suite): what the cache's way of
//! publishing an invalidation costs a write on a Redis Cluster, against sharded pub/sub.
//!
//! The cache publishes its invalidation messages from inside its Lua scripts (`write.lua`,
//! `release.lua`) with a classic `PUBLISH` on one channel per cache prefix. On a cluster, a
//! classic message is broadcast over the cluster bus to every node (each delivers it to its own
//! subscribers), whoever listens; a sharded message (`SPUBLISH`, Redis 7) stays on the shard of
//! its channel's slot. Both sides below write through redis-rs's cluster connection (so the
//! client side is the same; what differs is the Redis side and the round trip):
//!
//! | side | one write | its message reaches |
//! |---|---|---|
//! | ours (what the cache does) | `EVALSHA` of `SET key value PX ttl` + `PUBLISH <prefix>inv:__events <msg>`: one script, one round trip to the key's master | a subscriber on another node (a plain RESP3 redis-rs connection to that node, `SUBSCRIBE`): the message crosses the cluster bus |
//! | baseline | `EVALSHA` of `SET key value PX ttl` alone, then `SPUBLISH <prefix>inv:{inv}:__events <msg>`, the two pipelined into one round trip to the key's master (the channel is in the key's slot) | a subscriber of the shard channel (a RESP3 redis-rs cluster connection, `SSUBSCRIBE`: it subscribes on the key's master) |
//!
//! `ours` and `baseline_value` are µs per write (medians of interleaved rounds), with both
//! subscribers connected and draining. The keys are `<prefix>inv:{inv}:<n>` (10 000 of them in
//! turn, one hash tag, so one slot on one master), the value 100 bytes, the message as the
//! cache's (`k<origin>\n<key>`).
//!
//! The extra fields are the delivery latency medians, in µs, from the write's send to the
//! receipt of its message in the subscriber connection's push callback
//! (`publish_delivery_us`, `spublish_delivery_us`), over `delivery_samples` writes per side,
//! sent one at a time, the two sides alternating. A sharded message passes one more in-process
//! channel on its way (redis-rs's cluster connection forwards every node's pushes through one),
//! which its figure includes. Every process (the bench and the three nodes) runs on CPU 0, so a
//! node woken by the cluster bus takes CPU time that the writer would otherwise have.
//!
//! Not measured: a cache keyed across all slots would need one sharded channel per slot (or per
//! shard, named with a hash tag of a slot the shard serves, and re-subscribed on resharding),
//! and its listeners a subscription per channel; here all keys share one slot and channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::Context;
use crate::floor::{FloorConnection, Target, load_script};
use crate::measure::{Comparison, Side, Unit, compare, median};

/// Keys written in turn.
const KEYS: u64 = 10_000;
/// Their ttl.
const TTL_MS: u64 = 3_600_000;
/// Delivery latency samples per side (`--quick`: a fifth).
const SAMPLES: u64 = 2_000;
/// How long a probe message may take before the bench gives up.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The write with its classic `PUBLISH`, as `write.lua` does it.
const SET_PUBLISH: &str = "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1";
/// The write alone.
const SET_ONLY: &str = "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1";

fn stage(what: &str) {
    eprintln!("cluster: {what}");
}

/// The names and scripts both sides use.
#[derive(Clone)]
struct Writer {
    conn: ClusterConnection,
    set_publish: Arc<str>,
    set_only: Arc<str>,
    /// `<prefix>inv:{inv}:`: the keys, then `<n>`.
    key_prefix: Arc<str>,
    classic: Arc<str>,
    sharded: Arc<str>,
    origin: Arc<str>,
    value: Arc<[u8]>,
}

impl Writer {
    fn key(&self, n: u64) -> String {
        format!("{}{}", self.key_prefix, n % KEYS)
    }

    /// The cache's message for `key` (`probe`: a latency probe `seq`, same length).
    fn message(&self, key: &str, probe: Option<u64>) -> String {
        match probe {
            Some(seq) => format!("p{seq:016}\n{key}"),
            None => format!("k{}\n{key}", self.origin),
        }
    }

    /// Ours: the write and its classic `PUBLISH` in one script.
    async fn write_publish(&mut self, n: u64, probe: Option<u64>) {
        let key = self.key(n);
        let msg = self.message(&key, probe);
        let _: i64 = redis::cmd("EVALSHA")
            .arg(&*self.set_publish)
            .arg(1)
            .arg(&key)
            .arg(&*self.value)
            .arg(TTL_MS)
            .arg(&*self.classic)
            .arg(msg)
            .query_async(&mut self.conn)
            .await
            .expect("EVALSHA of SET + PUBLISH");
    }

    /// The baseline: the write's script and `SPUBLISH`, pipelined to the key's master.
    async fn write_spublish(&mut self, n: u64, probe: Option<u64>) {
        let key = self.key(n);
        let msg = self.message(&key, probe);
        let mut pipe = redis::pipe();
        pipe.cmd("EVALSHA")
            .arg(&*self.set_only)
            .arg(1)
            .arg(&key)
            .arg(&*self.value)
            .arg(TTL_MS)
            .cmd("SPUBLISH")
            .arg(&*self.sharded)
            .arg(msg);
        let (_, reached): (i64, i64) = pipe
            .query_async(&mut self.conn)
            .await
            .expect("EVALSHA of SET + SPUBLISH");
        debug_assert_eq!(reached, 1, "the shard subscriber is subscribed");
    }
}

/// A subscriber's push callback: counts messages, hands on the receipt time of each probe.
fn on_push(
    kind: PushKind,
    received: Arc<AtomicU64>,
    probes: UnboundedSender<(u64, Instant)>,
) -> impl Fn(PushInfo) -> Result<(), ()> + Send + Sync + 'static {
    move |push: PushInfo| {
        let at = Instant::now();
        if push.kind != kind {
            return Ok(());
        }
        received.fetch_add(1, Ordering::Relaxed);
        if let Some(Value::BulkString(msg)) = push.data.get(1)
            && msg.first() == Some(&b'p')
            && let Some(seq) = msg
                .get(1..17)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.parse().ok())
        {
            let _ = probes.send((seq, at));
        }
        Ok(())
    }
}

/// Waits for probe `seq` and returns the µs from `sent` to its receipt.
async fn delivered(probes: &mut UnboundedReceiver<(u64, Instant)>, seq: u64, sent: Instant) -> f64 {
    loop {
        let (got, at) = tokio::time::timeout(DELIVERY_TIMEOUT, probes.recv())
            .await
            .unwrap_or_else(|_| panic!("probe {seq} not delivered within {DELIVERY_TIMEOUT:?}"))
            .expect("the subscriber is alive");
        if got == seq {
            return at.saturating_duration_since(sent).as_secs_f64() * 1e6;
        }
    }
}

/// The port of the master serving `key`'s slot.
async fn master_port(conn: &mut ClusterConnection, key: &str) -> u16 {
    let route = SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master));
    let reply = conn
        .route_command(
            redis::cmd("CONFIG").arg("GET").arg("port").clone(),
            RoutingInfo::SingleNode(route),
        )
        .await
        .expect("CONFIG GET port on the key's master");
    let pair: Vec<String> = redis::from_redis_value(reply).expect("a CONFIG GET reply");
    pair.get(1)
        .and_then(|p| p.parse().ok())
        .expect("the master's port")
}

fn port_of(url: &str) -> Option<u16> {
    url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

/// The two subscribers, connected and draining, and what they received.
struct Subscribers {
    /// Classic: a plain RESP3 connection to a node other than the keys' master.
    _classic: MultiplexedConnection,
    /// Sharded: a RESP3 cluster connection (it subscribes on the keys' master).
    _sharded: ClusterConnection,
    classic_probes: UnboundedReceiver<(u64, Instant)>,
    sharded_probes: UnboundedReceiver<(u64, Instant)>,
    classic_count: Arc<AtomicU64>,
    sharded_count: Arc<AtomicU64>,
}

impl Subscribers {
    async fn connect(seeds: &[String], conn: &mut ClusterConnection, writer: &Writer) -> Self {
        let master = master_port(conn, &writer.key(0)).await;
        let other = seeds
            .iter()
            .find(|url| port_of(url).is_some_and(|p| p != master))
            .expect("a node other than the keys' master");
        stage(&format!(
            "invalidation: keys on the master at port {master}, classic subscriber on {other}"
        ));
        let (classic_tx, classic_probes) = unbounded_channel();
        let classic_count = Arc::new(AtomicU64::new(0));
        let config = redis::AsyncConnectionConfig::new().set_push_sender(on_push(
            PushKind::Message,
            Arc::clone(&classic_count),
            classic_tx,
        ));
        let mut classic = redis::Client::open(format!("{other}/?protocol=resp3"))
            .expect("a node URL")
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("a RESP3 connection to the other node");
        classic
            .subscribe(&*writer.classic)
            .await
            .expect("SUBSCRIBE");
        let (sharded_tx, sharded_probes) = unbounded_channel();
        let sharded_count = Arc::new(AtomicU64::new(0));
        let mut sharded = ClusterClientBuilder::new(seeds.to_vec())
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(on_push(
                PushKind::SMessage,
                Arc::clone(&sharded_count),
                sharded_tx,
            ))
            .build()
            .expect("a RESP3 cluster client")
            .get_async_connection()
            .await
            .expect("a RESP3 cluster connection");
        sharded
            .ssubscribe(&*writer.sharded)
            .await
            .expect("SSUBSCRIBE");
        Self {
            _classic: classic,
            _sharded: sharded,
            classic_probes,
            sharded_probes,
            classic_count,
            sharded_count,
        }
    }

    /// The delivery latency medians (µs) of `samples` writes per side, one at a time, the two
    /// sides alternating: (classic, sharded).
    async fn delivery(&mut self, mut writer: Writer, samples: u64) -> (f64, f64) {
        let (mut classic_us, mut sharded_us) = (Vec::new(), Vec::new());
        for seq in 0..samples {
            let sent = Instant::now();
            writer.write_publish(seq, Some(seq)).await;
            classic_us.push(delivered(&mut self.classic_probes, seq, sent).await);
            let sent = Instant::now();
            writer.write_spublish(seq, Some(seq)).await;
            sharded_us.push(delivered(&mut self.sharded_probes, seq, sent).await);
        }
        let round = |us: &[f64]| (median(us) * 10.0).round() / 10.0;
        (round(&classic_us), round(&sharded_us))
    }
}

pub(crate) async fn invalidation(ctx: &Context) -> Vec<Comparison> {
    let Target::Cluster(seeds) = &ctx.target else {
        return Vec::new();
    };
    let bench = ctx.bench_name("cluster.invalidation");
    let FloorConnection::Cluster(mut conn) = ctx.floor_connection().await else {
        unreachable!("a cluster target gives cluster connections")
    };
    let load = |body: &'static str| {
        let mut conn = conn.clone();
        async move { load_script(&mut conn, body).await }
    };
    let writer = Writer {
        set_publish: load(SET_PUBLISH).await,
        set_only: load(SET_ONLY).await,
        key_prefix: format!("{}inv:{{inv}}:", ctx.prefix).into(),
        classic: format!("{}inv:__events", ctx.prefix).into(),
        sharded: format!("{}inv:{{inv}}:__events", ctx.prefix).into(),
        origin: format!("{:016x}", rand::random::<u64>()).into(),
        value: vec![0x5A_u8; 100].into(),
        conn: conn.clone(),
    };

    let mut subs = Subscribers::connect(seeds, &mut conn, &writer).await;

    stage("invalidation: µs per write, SET + PUBLISH script against script + SPUBLISH");
    let side = |label: &str, sharded: bool| {
        let writer = writer.clone();
        Side::new(label, move |ops| {
            let mut writer = writer.clone();
            async move {
                let start = Instant::now();
                for n in 0..ops {
                    if sharded {
                        writer.write_spublish(n, None).await;
                    } else {
                        writer.write_publish(n, None).await;
                    }
                }
                start.elapsed()
            }
        })
    };
    let ours = side("EVALSHA SET + PUBLISH (in the script)", false);
    let sharded = side("EVALSHA SET, then SPUBLISH (pipelined)", true);
    let result = compare(&bench, Unit::UsPerOp, &ctx.settings, ours, vec![sharded]).await;

    let samples = if ctx.settings.rounds > 5 {
        SAMPLES
    } else {
        SAMPLES / 5
    };
    stage(&format!(
        "invalidation: delivery latency, {samples} writes per side"
    ));
    let (classic_us, sharded_us) = subs.delivery(writer, samples).await;
    eprintln!(
        "  {bench}: delivery median {classic_us} µs (PUBLISH, other node), {sharded_us} µs \
         (SPUBLISH, shard); messages received {} / {}",
        subs.classic_count.load(Ordering::Relaxed),
        subs.sharded_count.load(Ordering::Relaxed)
    );
    result
        .into_iter()
        .map(|c| {
            c.with("publish_delivery_us", classic_us)
                .with("spublish_delivery_us", sharded_us)
                .with("delivery_samples", samples)
        })
        .collect()
}
