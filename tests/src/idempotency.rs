//! Fixtures of the idempotency tests (`tests/tests/idempotency_*.rs`): runtimes with an
//! idempotency config, a body that counts its runs, raw writes and reads of the records, and
//! the completion listeners as the servers see them (summed over a cluster's nodes).

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::ConnectionLike;
use redisx::idempotency::IdempotencyConfig;
use redisx::testing::Deployment;
use redisx::{ConnectionConfig, Error, ErrorCode, RedisX};

/// A runtime on `url` with the key prefix `prefix` and `idempotency`, a short command timeout
/// and a quick reconnect (for the tests that stop the server).
///
/// # Panics
/// When the runtime does not build.
pub async fn idem_runtime(url: &str, prefix: &str, idempotency: IdempotencyConfig) -> RedisX {
    idem_runtime_on(crate::quick_connection(url), prefix, idempotency).await
}

/// A runtime on the connection `config` with the key prefix `prefix` and `idempotency`: for
/// the tests that put many calls in flight at once, with the default command timeout (5 s).
///
/// # Panics
/// When the runtime does not build.
pub async fn idem_runtime_on(
    config: ConnectionConfig,
    prefix: &str,
    idempotency: IdempotencyConfig,
) -> RedisX {
    RedisX::builder()
        .client("default", config)
        .key_prefix(prefix)
        .idempotency(idempotency)
        .build()
        .await
        .expect("the runtime builds")
}

/// Counts the runs of idempotent bodies: every body made by [`Runs::body`] counts itself when
/// it starts.
#[derive(Clone, Debug, Default)]
pub struct Runs(Arc<AtomicUsize>);

impl Runs {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many bodies started so far.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// A body that counts its start, sleeps `delay`, then returns `Ok(value)`.
    pub fn body<T: Send + 'static>(
        &self,
        delay: Duration,
        value: T,
    ) -> impl Future<Output = Result<T, Error>> + Send + 'static {
        let runs = self.0.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(value)
        }
    }
}

/// The completion channel of the runtimes with the app prefix `prefix` and the default
/// idempotency prefix: `{prefix}idem:@done`.
pub fn done_channel(prefix: &str) -> String {
    format!("{prefix}idem:@done")
}

/// How many connections are subscribed to `channel` (`PUBSUB NUMSUB`) on the one server `conn`
/// reaches; [`Nodes::subscribers`](crate::Nodes::subscribers) sums over a cluster's nodes.
///
/// # Panics
/// When the read fails.
pub async fn subscribers(conn: &mut impl ConnectionLike, channel: &str) -> u64 {
    let reply: (String, u64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(conn)
        .await
        .expect("PUBSUB NUMSUB");
    reply.1
}

/// Waits (up to 5 s) until at least `n` completion listeners are subscribed to `channel`,
/// summed over the data nodes of `deployment` (on a cluster a subscription lives on one node):
/// a runtime subscribes when one of its callers first waits for a key.
///
/// # Panics
/// When fewer than `n` are subscribed in time, or a node cannot be asked.
pub async fn wait_for_listeners(deployment: &Deployment, channel: &str, n: u64) {
    let nodes = crate::Nodes::of(deployment).await;
    let ready = crate::eventually(Duration::from_secs(5), Duration::from_millis(5), || {
        let mut nodes = nodes.clone();
        async move { nodes.subscribers(channel).await >= n }
    })
    .await;
    assert!(
        ready,
        "{n} completion listeners subscribed to {channel} on {}",
        deployment.topology()
    );
}

/// Writes the hash `key` with `fields` (`HSET`), without redisx: a record made by hand.
///
/// # Panics
/// When the write fails.
pub async fn write_record(conn: &mut impl ConnectionLike, key: &str, fields: &[(&str, &str)]) {
    let mut cmd = redis::cmd("HSET");
    cmd.arg(key);
    for (name, value) in fields {
        cmd.arg(*name).arg(*value);
    }
    let _: i64 = cmd.query_async(conn).await.expect("HSET");
}

/// The remaining time to live of `key` in ms (`PTTL`: -1 without one, -2 when absent).
///
/// # Panics
/// When the read fails.
pub async fn pttl(conn: &mut impl ConnectionLike, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(conn)
        .await
        .expect("PTTL")
}

/// The value of `redisx_idempotency_requests_total{status}` in `rx`'s metrics (`new`,
/// `replay`, `takeover`, `mismatch`, `in_progress`, `previous_failed`, `error`, `fail_open`).
pub fn requests(rx: &RedisX, status: &str) -> u64 {
    let status = format!("status=\"{status}\"");
    crate::metric_sum(rx, "redisx_idempotency_requests_total", &[&status])
}

/// Asserts that `out` is an error with `code` (the message names `what`), and returns it.
///
/// # Panics
/// When `out` is a value or another error.
#[track_caller]
pub fn assert_code<T: Debug>(out: Result<T, Error>, code: ErrorCode, what: &str) -> Error {
    match out {
        Err(e) if e.code() == code => e,
        Err(e) => panic!(
            "{what}: {} instead of {}: {e}",
            e.code().as_str(),
            code.as_str()
        ),
        Ok(v) => panic!("{what}: {v:?} instead of {}", code.as_str()),
    }
}
