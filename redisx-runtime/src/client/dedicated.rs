//! Connections of their own, for what the shared connection refuses: blocking reads and
//! connection-state commands ([`DedicatedConnection`]) and `MONITOR` ([`Client::monitor`]);
//! subscriptions are in `pubsub.rs`.

use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, Pipeline, Value};

use super::driver::{connecting, connection_config};
use super::{Client, Conn, command_name, guard};
use crate::error::{Error, ErrorCode, Result};
use crate::runtime::RedisX;

/// What `CLIENT SETNAME` appends to the client name on a dedicated connection.
const DEDICATED_ROLE: &str = "dedicated";

/// A Redis connection of its own, opened with the client's configuration and instrumented
/// like the client (the same `redis.command` span, the same `redisx_commands_total` and
/// `redisx_command_duration_seconds` series under the client's name), on which blocking and
/// connection-state commands are allowed: `BLPOP` and the other blocking pops, `XREAD ..
/// BLOCK`, `WAIT`, `SELECT`, `MULTI`/`EXEC`/`WATCH` sent one by one.
///
/// It has **no response timeout**: a blocking read waits as long as its own timeout argument
/// says (give it one). Its state (selected database, open transaction) is its own; nothing else
/// uses it, and it is closed when dropped. It does not reconnect, since a new connection would
/// silently lack that state: once the connection is lost (a command in flight included), every
/// call fails with [`ErrorCode::ConnectionClosed`] saying so; open a new one. Subscriptions and `MONITOR` need connections of another kind:
/// [`Client::pubsub`] and [`Client::monitor`]. `CLIENT REPLY` is refused here too (the
/// connection would wait for replies that never come).
///
/// On a cluster config it is a cluster connection of its own: each command goes to the master
/// of its key's slot (a pipeline to the slot of its keys), so state kept per server connection
/// (`SELECT`, `WATCH`/`MULTI`/`EXEC` sent one by one) does not apply there; `WAIT` sent in a
/// pipeline after a write goes with it. On a sentinel config it is opened on the current master
/// and counts as lost once the sentinels switch the master.
///
/// It implements `redis::aio::ConnectionLike`, so `redis::AsyncCommands` work on it as well.
///
/// ```no_run
/// use redisx_runtime::redis::AsyncCommands;
///
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// let mut conn = rx.dedicated_connection().await?;
/// // Waits up to 5 s for a job, without holding up any other Redis call of the process.
/// let job: Option<(String, String)> = conn.blpop("jobs", 5.0).await?;
/// # let _ = job;
/// # Ok(()) }
/// ```
///
/// A worker that outlives a Redis restart opens a new connection when its own is lost:
///
/// ```no_run
/// use redisx_runtime::{ErrorCode, redis};
///
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// let mut conn = rx.dedicated_connection().await?;
/// loop {
///     match conn.query::<Option<(String, String)>>(redis::cmd("BLPOP").arg("jobs").arg(5)).await {
///         Ok(Some((_, job))) => println!("{job}"),
///         Ok(None) => {}
///         Err(e) if e.code() == ErrorCode::ConnectionClosed => {
///             // Fails (and the loop ends) while Redis is still down; retry as suits you.
///             conn = rx.dedicated_connection().await?;
///         }
///         Err(e) => return Err(e),
///     }
/// }
/// # }
/// ```
pub struct DedicatedConnection {
    client: Client,
    conn: Conn,
    /// Why the connection was lost, once it was: every later call fails with it.
    lost: Option<String>,
    /// On a sentinel config, the master switches: after one, the connection counts as lost
    /// (it is on the old master).
    switches: Option<tokio::sync::watch::Receiver<u64>>,
}

impl std::fmt::Debug for DedicatedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DedicatedConnection")
            .field("client", &self.client.name())
            .finish_non_exhaustive()
    }
}

impl DedicatedConnection {
    /// The client this connection was opened for (its name labels the metrics).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs one command and converts its reply. Any command but subscriptions, `MONITOR` and
    /// `CLIENT REPLY` is allowed; there is no response timeout.
    ///
    /// ```no_run
    /// use redisx_runtime::redis;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let mut conn = rx.dedicated_connection().await?;
    /// let _: () = conn.query(redis::cmd("WATCH").arg("balance")).await?;
    /// let balance: i64 = conn.query(redis::cmd("GET").arg("balance")).await?;
    /// let _: () = conn.query(&redis::cmd("MULTI")).await?;
    /// let _: () = conn.query(redis::cmd("SET").arg("balance").arg(balance + 1)).await?;
    /// // `None` when another client changed `balance` since the WATCH.
    /// let done: Option<Vec<String>> = conn.query(&redis::cmd("EXEC")).await?;
    /// # let _ = done;
    /// # Ok(()) }
    /// ```
    pub async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> Result<T> {
        let value = self.query_value(cmd).await?;
        redis::from_redis_value(value).map_err(|e| Error::from_redis(e.into()))
    }

    /// Runs a pipeline (one round trip) and converts its replies.
    pub async fn query_pipeline<T: FromRedisValue>(&mut self, pipeline: &Pipeline) -> Result<T> {
        for cmd in pipeline.cmd_iter() {
            guard::check_dedicated(cmd)?;
        }
        self.check_open()?;
        let Self {
            client, conn, lost, ..
        } = self;
        client
            .instrumented("PIPELINE", async {
                pipeline
                    .query_async(conn)
                    .await
                    .map_err(|e| command_error(client, lost, e))
            })
            .await
    }

    pub(super) async fn query_value(&mut self, cmd: &Cmd) -> Result<Value> {
        guard::check_dedicated(cmd)?;
        self.check_open()?;
        let Self {
            client, conn, lost, ..
        } = self;
        client
            .instrumented(command_name(cmd), async {
                conn.req_packed_command(cmd)
                    .await
                    .and_then(Value::extract_error)
                    .map_err(|e| command_error(client, lost, e))
            })
            .await
    }

    pub(super) async fn pipeline_values(
        &mut self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> Result<Vec<Value>> {
        for cmd in pipeline.cmd_iter() {
            guard::check_dedicated(cmd)?;
        }
        self.check_open()?;
        let Self {
            client, conn, lost, ..
        } = self;
        client
            .instrumented("PIPELINE", async {
                conn.req_packed_commands(pipeline, offset, count)
                    .await
                    .map_err(|e| command_error(client, lost, e))
            })
            .await
    }

    pub(super) fn db(&self) -> i64 {
        self.conn.get_db()
    }

    /// Fails once the connection was lost, without sending anything.
    fn check_open(&mut self) -> Result<()> {
        if self.lost.is_none()
            && let Some(switches) = &self.switches
            && switches.has_changed().unwrap_or(false)
        {
            self.lost = Some("the sentinels switched the master".to_owned());
        }
        match &self.lost {
            Some(why) => Err(lost_error()
                .with_context("client", self.client.name())
                .with_context("lost_because", why.clone())),
            None => Ok(()),
        }
    }
}

/// What `CONN_CLOSED` says on a lost dedicated connection.
const LOST: &str = "the dedicated connection was lost and does not reconnect (its selected \
     database, WATCH or transaction went with it): open a new one with \
     `rx.dedicated_connection()` (or `Client::dedicated_connection`)";

fn lost_error() -> Error {
    Error::new(ErrorCode::ConnectionClosed, LOST)
}

/// A command's error (the command span adds the client and command to it); one that says
/// the connection is gone marks it lost, for good.
fn command_error(client: &Client, lost: &mut Option<String>, e: redis::RedisError) -> Error {
    if !e.is_timeout() && (e.is_connection_dropped() || e.is_unrecoverable_error()) {
        *lost = Some(e.to_string());
        return lost_error().with_redis_source(e);
    }
    client.command_error(e)
}

impl Client {
    /// Opens a [`DedicatedConnection`]: a connection of its own with this client's
    /// configuration (server, TLS, user, database, connect timeout) and instrumentation, no
    /// response timeout, for blocking and connection-state commands.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let mut conn = rx.named_client("queues")?.dedicated_connection().await?;
    /// let popped: Option<(String, String)> =
    ///     conn.query(redis::cmd("BRPOP").arg("jobs").arg(1)).await?;
    /// # let _ = popped;
    /// # Ok(()) }
    /// ```
    pub async fn dedicated_connection(&self) -> Result<DedicatedConnection> {
        let cfg = self.config();
        let switches = self.switches();
        let conn = if cfg.is_cluster() {
            // A cluster connection of its own: each command still goes to its key's master.
            Conn::Cluster(super::cluster::connect(self.name(), cfg, None, None).await?)
        } else {
            let client = super::sentinel::node_client(self.name(), cfg).await?;
            let config = connection_config(cfg, None);
            let conn = self
                .connecting(async {
                    let mut conn = client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?;
                    cfg.init_connection(&mut conn, Some(DEDICATED_ROLE)).await?;
                    Ok::<_, redis::RedisError>(conn)
                })
                .await?;
            Conn::Multiplexed(conn, 0)
        };
        Ok(DedicatedConnection {
            client: self.clone(),
            conn,
            lost: None,
            switches,
        })
    }

    /// Opens a connection of its own in `MONITOR` mode (`redis::aio::Monitor`) with this
    /// client's configuration: to the server, the current master of a sentinel config, or the
    /// first seed node of a cluster (a monitor sees one node's commands). Not instrumented, and without the client name: redis-rs's
    /// monitor sends no command of ours before `MONITOR`.
    ///
    /// ```no_run
    /// use futures_util::StreamExt;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let mut monitor = rx.client().monitor().await?;
    /// let mut lines = monitor.on_message::<String>();
    /// if let Some(line) = lines.next().await {
    ///     println!("{line}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn monitor(&self) -> Result<redis::aio::Monitor> {
        let client = super::sentinel::node_client(self.name(), self.config()).await?;
        self.connecting(client.get_async_monitor()).await
    }

    /// Awaits a connection attempt within the connect timeout, with the errors of the
    /// shared connection's ([`connecting`]).
    pub(super) async fn connecting<C>(
        &self,
        opened: impl Future<Output = redis::RedisResult<C>>,
    ) -> Result<C> {
        connecting(self.name(), self.config(), opened).await
    }
}

impl RedisX {
    /// Opens a [`DedicatedConnection`] to the default client's server: a connection of its
    /// own, same configuration and instrumentation, no response timeout, for the blocking and
    /// connection-state commands the shared connection refuses
    /// ([`ErrorCode::OperationNeedsDedicatedConnection`]).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let mut conn = rx.dedicated_connection().await?;
    /// let _: () = conn.query(redis::cmd("SELECT").arg(2)).await?;
    /// let keys: i64 = conn.query(&redis::cmd("DBSIZE")).await?;
    /// # let _ = keys;
    /// # Ok(()) }
    /// ```
    pub async fn dedicated_connection(&self) -> Result<DedicatedConnection> {
        self.try_client()?.dedicated_connection().await
    }
}
