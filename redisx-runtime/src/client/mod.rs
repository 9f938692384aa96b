//! Named clients and the one instrumented command path every Redis call takes.

mod cluster;
mod config;
mod connection_like;
mod dedicated;
mod driver;
mod eval;
mod guard;
pub(crate) mod listener;
mod nodes;
mod pubsub;
mod sentinel;
mod wait_pool;

use std::sync::Arc;
use std::time::Instant;

use redis::{Cmd, FromRedisValue, Pipeline, Script, ScriptInvocation, ToRedisArgs};

pub use config::{ConnectionConfig, DriverKind, ReconnectPolicy};
pub use dedicated::DedicatedConnection;
pub(crate) use driver::{Conn, Driver};
pub(crate) use eval::script_cmd;
pub use pubsub::PubSub;
pub(crate) use wait_pool::WaitPool;

use crate::error::{Error, ErrorCode, Result};
use crate::life::Life;
use crate::metrics::{CommandLabels, DurationLabels, ErrorLabels, Metrics};

/// One named Redis client: a driver plus the instrumented command path.
///
/// Every call through a `Client` gets a `tracing` span named `redis.command` with the
/// OpenTelemetry database attributes (`db.system.name = "redis"`, `db.operation.name`,
/// `server.address`, `server.port`, `db.namespace`), is cut off after the command timeout,
/// and is counted in `redisx_commands_total`, `redisx_command_duration_seconds` and, on
/// failure, `redisx_errors_total`. Cloning is cheap.
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// let client = rx.client();
/// let _: () = client.query(redis::cmd("SET").arg("greeting").arg("hello")).await?;
/// let v: Option<String> = client.query(redis::cmd("GET").arg("greeting")).await?;
/// assert_eq!(v.as_deref(), Some("hello"));
/// # Ok(()) }
/// ```
///
/// A `Client` is also a `redis::aio::ConnectionLike`, so the typed commands of
/// `redis::AsyncCommands`, pipelines and `redis::Script` take the same instrumented path
/// (the same span, metrics and timeout; failures come back as `redis::RedisError`):
///
/// ```no_run
/// use redisx_runtime::redis::AsyncCommands;
///
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::redis::RedisResult<()> {
/// let mut client = rx.client();
/// let () = client.set_ex("greeting", "hello", 60).await?;
/// let v: String = client.get("greeting").await?;
/// let (a, b): (String, i64) = redis::pipe()
///     .get("greeting")
///     .incr("visits", 1)
///     .query_async(&mut client)
///     .await?;
/// # let _ = (v, a, b);
/// # Ok(()) }
/// ```
///
/// The connection is shared by every plugin (multiplexed, or a pool), so blocking commands
/// (`BLPOP`, `XREAD .. BLOCK`, `WAIT`, ...) and connection-state commands (`SELECT`, `MULTI`
/// and `EXEC` sent one by one, `SUBSCRIBE`, `MONITOR`, `CLIENT REPLY`, `RESET`, `QUIT`, ...)
/// are refused with [`ErrorCode::OperationNeedsDedicatedConnection`]; they run on
/// [`Client::dedicated_connection`] (subscriptions on [`Client::pubsub`]). A transaction built
/// with `redis::pipe().atomic()` is one request and runs here.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    name: Arc<str>,
    cfg: ConnectionConfig,
    driver: Driver,
    /// A sentinel config's connection to a replica, for [`Client::query_read`] when the config
    /// reads from replicas (a cluster's driver routes reads itself).
    reads: Option<Driver>,
    metrics: Arc<Metrics>,
    /// The runtime's state: a command on a gone runtime fails at once.
    life: Arc<Life>,
    cmd_metrics: std::sync::RwLock<Vec<(&'static str, CmdMetrics)>>,
}

/// The metric handles of one command on one client.
struct CmdMetrics {
    ok: prometheus_client::metrics::counter::Counter,
    err: prometheus_client::metrics::counter::Counter,
    duration: prometheus_client::metrics::histogram::Histogram,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.inner.name)
            .field("server", &self.inner.cfg.to_string())
            .field("driver", &self.inner.cfg.driver)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub(crate) async fn connect(
        name: &str,
        cfg: ConnectionConfig,
        metrics: Arc<Metrics>,
        life: Arc<Life>,
    ) -> Result<Self> {
        if cfg.tls && cfg.tls_insecure {
            tracing::warn!(target: "redisx", client = %name, server = %cfg, "tls_insecure is on: the server's certificate and host name are not checked; for tests only");
        }
        let (driver, reads) = if cfg.read_from_replicas && cfg.sentinel_master_value().is_some() {
            // Writes and scripts on the master; reads on a replica the sentinels name.
            let master = cfg.clone().read_from_replicas(false);
            let driver = Driver::connect(name, &master, &life).await?;
            (driver, Some(Driver::connect(name, &cfg, &life).await?))
        } else {
            (Driver::connect(name, &cfg, &life).await?, None)
        };
        Ok(Self {
            inner: Arc::new(ClientInner {
                name: Arc::from(name),
                cfg,
                driver,
                reads,
                metrics,
                life,
                cmd_metrics: std::sync::RwLock::new(Vec::new()),
            }),
        })
    }

    /// The client's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The connection settings (the password stays hidden in `Debug`/`Display`).
    pub fn config(&self) -> &ConnectionConfig {
        &self.inner.cfg
    }

    /// Master switches seen by the sentinels, for a sentinel config.
    pub(crate) fn switches(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.driver.switches()
    }

    /// Whether the client currently holds a live connection (always `true` for the pool driver,
    /// which connects per checkout).
    pub fn is_connected(&self) -> bool {
        self.inner.driver.is_connected()
    }

    /// Runs one command and converts its reply.
    ///
    /// Blocking and connection-state commands are refused
    /// ([`ErrorCode::OperationNeedsDedicatedConnection`]; see [`Client`]).
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        guard::check(cmd)?;
        let name = command_name(cmd);
        self.query_named(name, cmd).await
    }

    /// Runs a pipeline (one round trip) and converts its replies.
    ///
    /// A pipeline that runs redisx scripts by `EVALSHA` and meets `NOSCRIPT` (the server lost
    /// its script cache, e.g. after a restart) reloads them and is sent once more. Blocking
    /// and connection-state commands are refused as in [`query`](Self::query) (an atomic
    /// pipeline may carry a blocking command: inside `MULTI`, Redis does not block).
    pub async fn query_pipeline<T: FromRedisValue>(&self, pipeline: &Pipeline) -> Result<T> {
        guard::check_pipeline(pipeline)?;
        self.run("PIPELINE", async |conn| {
            match pipeline.query_async(conn).await {
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    for s in crate::script::builtin() {
                        s.script.prepare_invoke().load_async(conn).await?;
                    }
                    pipeline.query_async(conn).await
                }
                other => other,
            }
        })
        .await
    }

    /// Sends a pipeline and returns each command's own outcome, so that one failing command
    /// does not hide what the others did (`Pipeline::ignore_errors`). Only a failure of the
    /// whole round trip (connection, timeout) is the outer `Err`. Ignored commands give no
    /// element. Unlike [`query_pipeline`](Self::query_pipeline) it does not resend on
    /// `NOSCRIPT`: the caller decides per command, as a resend would run the others twice.
    pub(crate) async fn query_pipeline_each<T: FromRedisValue>(
        &self,
        pipeline: &Pipeline,
    ) -> Result<Vec<redis::RedisResult<T>>> {
        let mut pipeline = pipeline.clone();
        pipeline.ignore_errors();
        let replies: Vec<redis::RedisResult<redis::Value>> = self
            .run("PIPELINE", async |conn| pipeline.query_async(conn).await)
            .await?;
        Ok(replies
            .into_iter()
            .map(|r| r.and_then(|v| redis::from_redis_value(v).map_err(redis::RedisError::from)))
            .collect())
    }

    /// Sends `PING` and returns the round-trip time.
    pub async fn ping(&self) -> Result<std::time::Duration> {
        let start = Instant::now();
        let _: String = self.query_named("PING", &redis::cmd("PING")).await?;
        Ok(start.elapsed())
    }

    pub(crate) async fn query_named<T: FromRedisValue>(
        &self,
        name: &'static str,
        cmd: &Cmd,
    ) -> Result<T> {
        self.run(name, async |conn| cmd.query_async(conn).await)
            .await
    }

    /// [`query_named`](Self::query_named) for a command whose error reply `code` (e.g.
    /// `BUSYGROUP`) is an expected answer, not a failure: `Ok(None)` then, counted as an ok
    /// command (`status="ok"`, no `redisx_errors_total`, a span without error).
    pub(crate) async fn query_named_or_code<T: FromRedisValue>(
        &self,
        name: &'static str,
        cmd: &Cmd,
        code: &str,
    ) -> Result<Option<T>> {
        self.run(name, async |conn| match cmd.query_async(conn).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code() == Some(code) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    /// Runs your own Lua script by `EVALSHA`, the way the plugins run theirs: when the server
    /// does not know the script (`NOSCRIPT`: first use, a restart, `SCRIPT FLUSH`), it is
    /// loaded and run once more. Instrumented like [`query`](Self::query) (command
    /// `EVALSHA`). For keys or arguments of different types, build the invocation and use
    /// [`invoke_script`](Self::invoke_script).
    ///
    /// ```no_run
    /// use std::sync::LazyLock;
    /// use redisx_runtime::redis::Script;
    ///
    /// // Built once: the SHA1 of the source is computed here.
    /// static INCR_CAPPED: LazyLock<Script> = LazyLock::new(|| {
    ///     Script::new(
    ///         "local n = redis.call('INCR', KEYS[1]) \
    ///          if n > tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) return tonumber(ARGV[1]) end \
    ///          return n",
    ///     )
    /// });
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let n: i64 = rx.client().run_script(&INCR_CAPPED, &["visits"], &[10]).await?;
    /// assert!(n <= 10);
    /// # Ok(()) }
    /// ```
    pub async fn run_script<T, K, A>(&self, script: &Script, keys: &[K], args: &[A]) -> Result<T>
    where
        T: FromRedisValue,
        K: ToRedisArgs,
        A: ToRedisArgs,
    {
        self.eval(script, keys, args).await
    }

    /// Runs a prepared script invocation (`script.key(..).arg(..)`, keys and arguments of any
    /// types) like [`run_script`](Self::run_script): `EVALSHA`, and on `NOSCRIPT` the script
    /// is loaded and run once more.
    ///
    /// ```no_run
    /// use redisx_runtime::redis::Script;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let script = Script::new("return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])");
    /// let ok: String = rx
    ///     .client()
    ///     .invoke_script(script.key("session:7").arg("alive").arg(30_000))
    ///     .await?;
    /// assert_eq!(ok, "OK");
    /// # Ok(()) }
    /// ```
    pub async fn invoke_script<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T> {
        self.invoke(invocation).await
    }

    /// The one command path: connection, span, timeout, metrics, error classification.
    async fn run<T, F>(&self, command: &'static str, op: F) -> Result<T>
    where
        F: AsyncFnOnce(&mut Conn) -> redis::RedisResult<T>,
    {
        self.run_on(&self.inner.driver, command, op).await
    }

    /// [`run`](Self::run) on `driver` (the client's, or its replica reads').
    async fn run_on<T, F>(&self, driver: &Driver, command: &'static str, op: F) -> Result<T>
    where
        F: AsyncFnOnce(&mut Conn) -> redis::RedisResult<T>,
    {
        let inner = &*self.inner;
        // The command timeout is enforced by the connection itself (its response timeout is
        // the command timeout, for both drivers), so no second timer is armed here.
        self.instrumented(command, async {
            inner.life.check()?;
            let mut conn = driver.conn(&inner.name, &inner.cfg).await?;
            op(&mut conn)
                .await
                .inspect(|_| driver.observe_ok())
                .map_err(|e| {
                    driver.observe_error(&conn, &e);
                    self.command_error(e)
                })
        })
        .await
    }

    /// A failed command's error: a timeout names the command timeout, anything else is
    /// classified by [`Error::from_redis`].
    fn command_error(&self, e: redis::RedisError) -> Error {
        if e.is_timeout() {
            Error::new(
                ErrorCode::OperationTimeout,
                format!(
                    "no reply within the command timeout of {:?}",
                    self.inner.cfg.command_timeout
                ),
            )
            .with_redis_source(e)
        } else {
            Error::from_redis(e)
        }
    }

    /// Runs `fut` (one command on some connection of this client) inside the command span,
    /// then records its duration, its outcome and, on failure, the error metrics and the
    /// `client`/`command` context.
    async fn instrumented<T>(
        &self,
        command: &'static str,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let inner = &*self.inner;
        // One span per command, at DEBUG like a cache operation's: `RUST_LOG=redisx=debug`
        // shows an operation with its commands; an L1 hit (no command) is at TRACE. The
        // attributes are OpenTelemetry's semantic conventions for database clients.
        let span = tracing::debug_span!(
            target: "redisx::command",
            "redis.command",
            otel.name = command,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            db.system.name = "redis",
            db.operation.name = command,
            db.namespace = %inner.cfg.db,
            server.address = %inner.cfg.host,
            server.port = inner.cfg.port,
            redisx.client = %inner.name,
            error.type = tracing::field::Empty,
        );
        let start = Instant::now();
        let result = traced!(fut, span);
        let elapsed = start.elapsed().as_secs_f64();
        self.record(command, elapsed, result.is_ok());
        result.map_err(|e| {
            let code = e.code().as_str();
            span.record("error.type", code);
            span.record("otel.status_code", "ERROR");
            inner
                .metrics
                .errors
                .get_or_create(&ErrorLabels {
                    client: inner.name.clone(),
                    error_type: code,
                })
                .inc();
            let e = e.with_context("client", inner.name.to_string());
            if e.context_value("command").is_none() {
                e.with_context("command", command)
            } else {
                e
            }
        })
    }

    /// Counts one command and records its duration, through handles resolved once per
    /// command name (the hot path takes a read lock and compares a few pointers, instead of
    /// hashing label sets).
    fn record(&self, command: &'static str, seconds: f64, ok: bool) {
        let inner = &*self.inner;
        let find = |list: &[(&'static str, CmdMetrics)]| {
            list.iter()
                .find(|(c, _)| std::ptr::eq(*c, command) || *c == command)
                .map(|(_, m)| {
                    m.duration.observe(seconds);
                    if ok {
                        m.ok.inc()
                    } else {
                        m.err.inc()
                    };
                })
        };
        let cached = inner
            .cmd_metrics
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if find(&cached).is_some() {
            return;
        }
        drop(cached);
        let m = &inner.metrics;
        let handles = CmdMetrics {
            ok: m.commands.get_or_create_owned(&CommandLabels {
                command,
                client: inner.name.clone(),
                status: "ok",
            }),
            err: m.commands.get_or_create_owned(&CommandLabels {
                command,
                client: inner.name.clone(),
                status: "error",
            }),
            duration: m.command_duration.get_or_create_owned(&DurationLabels {
                command,
                client: inner.name.clone(),
            }),
        };
        let mut list = inner
            .cmd_metrics
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if find(&list).is_none() {
            handles.duration.observe(seconds);
            if ok {
                handles.ok.inc()
            } else {
                handles.err.inc()
            };
            list.push((command, handles));
        }
    }

    pub(crate) fn shutdown(&self) {
        self.inner.driver.shutdown();
        if let Some(reads) = &self.inner.reads {
            reads.shutdown();
        }
    }
}

/// A `'static` command name for metric labels, taken from the first argument of `cmd`.
fn command_name(cmd: &Cmd) -> &'static str {
    const KNOWN: &[&str] = &[
        "GET",
        "SET",
        "DEL",
        "UNLINK",
        "MGET",
        "MSET",
        "EXISTS",
        "EXPIRE",
        "PEXPIRE",
        "TTL",
        "PTTL",
        "INCR",
        "INCRBY",
        "DECR",
        "DECRBY",
        "HGET",
        "HSET",
        "HDEL",
        "HGETALL",
        "HMGET",
        "SADD",
        "SREM",
        "SMEMBERS",
        "SCARD",
        "ZADD",
        "ZREM",
        "ZRANGE",
        "ZCARD",
        "LPUSH",
        "RPUSH",
        "LPOP",
        "RPOP",
        "LRANGE",
        "PUBLISH",
        "SCAN",
        "PING",
        "INFO",
        "EVAL",
        "EVALSHA",
        "SCRIPT",
        "XADD",
        "XREADGROUP",
        "XACK",
        "XGROUP",
        "XAUTOCLAIM",
        "XPENDING",
        "XRANGE",
        "XDEL",
        "FLUSHDB",
        "FLUSHALL",
        "DBSIZE",
        "TYPE",
        "GETDEL",
        "GETEX",
        "SETNX",
        "SETEX",
        "PSETEX",
        "ACL",
        "AUTH",
        "SELECT",
        "CLIENT",
        "CONFIG",
        "KEYS",
    ];
    let Some(redis::Arg::Simple(first)) = cmd.args_iter().next() else {
        return "OTHER";
    };
    KNOWN
        .iter()
        .find(|k| k.as_bytes().eq_ignore_ascii_case(first))
        .copied()
        .or_else(|| guard::refused_name(cmd))
        .unwrap_or("OTHER")
}
