//! The two connection drivers behind one internal interface.
//!
//! [`Driver::conn`] hands out a [`Conn`], which implements `redis::aio::ConnectionLike`, so
//! commands, pipelines and `redis::Script` invocations run the same way over both.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::Notify;

use super::config::{ConnectionConfig, DriverKind};
use crate::error::{Error, ErrorCode, Result};
use crate::life::{Life, watched};
use tls::{
    TlsFailure, chain_text, closed_by_peer, closed_during_tls_setup, tls_failure, tls_timeout_hint,
};

mod tls;

/// A connection handed out by a [`Driver`]; cheap to create, used for one operation.
pub(crate) enum Conn {
    Multiplexed(MultiplexedConnection, u64),
    Cluster(redis::cluster_async::ClusterConnection),
    #[cfg(feature = "pool")]
    Pooled(deadpool_redis::Connection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Multiplexed(c, _) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            #[cfg(feature = "pool")]
            Self::Pooled(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Multiplexed(c, _) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => super::cluster::pipeline(c, pipeline, offset, count),
            #[cfg(feature = "pool")]
            Self::Pooled(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Multiplexed(c, _) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            #[cfg(feature = "pool")]
            Self::Pooled(c) => c.get_db(),
        }
    }
}

/// One of the drivers: one multiplexed connection (to one server, or to the master the
/// sentinels name), a pool, or a cluster connection.
pub(crate) enum Driver {
    Multiplexed(Arc<Multiplexed>),
    Cluster(Box<super::cluster::Cluster>),
    #[cfg(feature = "pool")]
    Pool(deadpool_redis::Pool),
}

impl Driver {
    pub(crate) async fn connect(
        name: &str,
        cfg: &ConnectionConfig,
        life: &Arc<Life>,
    ) -> Result<Self> {
        if cfg.is_cluster() {
            let cluster = super::cluster::Cluster::start(name, cfg).await?;
            return Ok(Self::Cluster(Box::new(cluster)));
        }
        match cfg.driver {
            DriverKind::Multiplexed => Ok(Self::Multiplexed(
                Multiplexed::start(name, cfg, life).await?,
            )),
            #[cfg(feature = "pool")]
            DriverKind::Pool { max_size } => {
                let manager = deadpool_redis::Manager::new_with_config(
                    cfg.to_connection_info(),
                    connection_config(cfg, Some(cfg.command_timeout)),
                )
                .map_err(|e| connect_error(name, cfg, e))?;
                let pool = deadpool_redis::Pool::builder(manager)
                    .max_size(max_size.max(1))
                    .runtime(deadpool_redis::Runtime::Tokio1)
                    .create_timeout(Some(cfg.pool_create_timeout_value()))
                    .wait_timeout(Some(cfg.pool_wait_timeout_value()))
                    .recycle_timeout(Some(cfg.pool_recycle_timeout_value()))
                    .post_create(init_hook(cfg))
                    .build()
                    .map_err(|e| {
                        Error::new(
                            ErrorCode::ConfigInvalid,
                            format!("cannot build the pool: {e}"),
                        )
                        .with_context("client", name)
                    })?;
                if !cfg.lazy {
                    // Fail fast with a clear error when the server is unreachable.
                    let mut conn = pool.get().await.map_err(|e| pool_error(name, cfg, e))?;
                    redis::cmd("PING")
                        .query_async::<()>(&mut *conn)
                        .await
                        .map_err(|e| connect_error(name, cfg, e))?;
                }
                Ok(Self::Pool(pool))
            }
        }
    }

    /// A connection for one operation. With the multiplexed driver this fails at once with
    /// [`ErrorCode::ConnectionClosed`] while the connection is being re-established.
    // Without the pool, nothing here awaits; the signature stays the same for the callers.
    #[cfg_attr(not(feature = "pool"), allow(unused_variables, clippy::unused_async))]
    pub(crate) async fn conn(&self, name: &str, cfg: &ConnectionConfig) -> Result<Conn> {
        match self {
            Self::Multiplexed(m) => m
                .get()
                .map(|(c, generation)| Conn::Multiplexed(c, generation)),
            Self::Cluster(c) => c.get().map(Conn::Cluster),
            // Boxed: the pool's checkout future is several kilobytes, and every command's
            // future would otherwise carry (and move) it, even on the multiplexed driver.
            #[cfg(feature = "pool")]
            Self::Pool(pool) => Box::pin(pool.get())
                .await
                .map(Conn::Pooled)
                .map_err(|e| pool_error(name, cfg, e)),
        }
    }

    /// Tells the driver that an operation failed, so it can notice a dropped connection.
    ///
    /// A connection that stays open but stops answering (a network partition, a stopped
    /// server) never reports an I/O error; after [`TIMEOUTS_BEFORE_RECONNECT`] timeouts in a
    /// row it is treated as dropped and re-established.
    #[cfg_attr(not(feature = "pool"), allow(irrefutable_let_patterns))]
    pub(crate) fn observe_error(&self, conn: &Conn, err: &redis::RedisError) {
        if let (Self::Multiplexed(m), Conn::Multiplexed(_, generation)) = (self, conn) {
            if err.is_unrecoverable_error() || err.is_connection_dropped() || err.is_io_error() {
                m.mark_down(*generation, &err.to_string());
            } else if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) {
                // The server was demoted to a replica (a failover): find the master again.
                m.mark_down(*generation, "the server is now a read-only replica");
            } else if err.is_timeout() {
                let n = m.timeouts.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= TIMEOUTS_BEFORE_RECONNECT {
                    m.timeouts.store(0, Ordering::Relaxed);
                    m.mark_down(*generation, &format!("{n} commands in a row timed out"));
                }
            }
        }
    }

    /// Tells the driver that an operation succeeded (resets the timeout count).
    #[inline]
    pub(crate) fn observe_ok(&self) {
        if let Self::Multiplexed(m) = self
            && m.timeouts.load(Ordering::Relaxed) != 0
        {
            m.timeouts.store(0, Ordering::Relaxed);
        }
    }

    /// Master switches seen by the sentinels (a sentinel config only).
    pub(crate) fn switches(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        match self {
            Self::Multiplexed(m) if m.cfg.sentinel_master_value().is_some() => {
                Some(m.switches.subscribe())
            }
            _ => None,
        }
    }

    pub(crate) fn is_connected(&self) -> bool {
        match self {
            Self::Multiplexed(m) => m.is_connected(),
            // The cluster connection reconnects each node by itself, per command.
            Self::Cluster(_) => true,
            #[cfg(feature = "pool")]
            Self::Pool(_) => true,
        }
    }

    pub(crate) fn shutdown(&self) {
        match self {
            Self::Multiplexed(m) => m.shutdown(),
            Self::Cluster(c) => c.shutdown(),
            #[cfg(feature = "pool")]
            Self::Pool(pool) => pool.close(),
        }
    }
}

/// The pool's `post_create` hook: [`ConnectionConfig::init_connection`] on every new connection.
#[cfg(feature = "pool")]
fn init_hook(cfg: &ConnectionConfig) -> deadpool_redis::Hook {
    let cfg = Arc::new(cfg.clone());
    deadpool_redis::Hook::async_fn(move |conn, _| {
        let cfg = cfg.clone();
        Box::pin(async move {
            cfg.init_connection(conn, None)
                .await
                .map_err(deadpool_redis::HookError::Backend)
        })
    })
}

pub(crate) fn connection_config(
    cfg: &ConnectionConfig,
    response_timeout: Option<Duration>,
) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cfg.connect_timeout))
        .set_response_timeout(response_timeout)
}

/// Awaits a connection attempt within `cfg`'s connect timeout: a failure is a connect error
/// ([`connect_error`]), running out of time [`ErrorCode::ConnectionTimeout`].
pub(crate) async fn connecting<C>(
    name: &str,
    cfg: &ConnectionConfig,
    opened: impl Future<Output = redis::RedisResult<C>>,
) -> Result<C> {
    match tokio::time::timeout(cfg.connect_timeout, opened).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(connect_error(name, cfg, e)),
        Err(_) => Err(Error::new(
            ErrorCode::ConnectionTimeout,
            format!(
                "connecting timed out after {:?}{}",
                cfg.connect_timeout,
                tls_timeout_hint(cfg)
            ),
        )
        .with_context("client", name.to_owned())
        .with_context("server", cfg.to_string())),
    }
}

/// The error of a failed connection attempt to `cfg`: its code (`CONN_TIMEOUT`,
/// `CONN_AUTH_FAILED`, `CONN_TLS_ERROR`, `CONN_FAILED`) and a message that says what to check.
pub(crate) fn connect_error(name: &str, cfg: &ConnectionConfig, err: redis::RedisError) -> Error {
    // Over TLS, the causes' text says which TLS failure it is (without TLS: none).
    let text = if cfg.tls {
        chain_text(&err)
    } else {
        String::new()
    };
    let tls = tls_failure(&text);
    // redis-rs wraps a refused `SELECT` without the `NOPERM` code; Redis's text says it.
    let noperm = err.code() == Some("NOPERM") || err.to_string().contains("no permissions to run");
    let code = if err.is_timeout() {
        ErrorCode::ConnectionTimeout
    } else if noperm {
        ErrorCode::ConnectionAuthFailed
    } else {
        match Error::from_redis(err.clone()).code() {
            // `NOPERM` while connecting: the user may not even authenticate or select.
            ErrorCode::ConnectionAuthFailed | ErrorCode::OperationNoPermission => {
                ErrorCode::ConnectionAuthFailed
            }
            _ if tls.is_some() => ErrorCode::ConnectionTls,
            _ => ErrorCode::ConnectionFailed,
        }
    };
    let what: std::borrow::Cow<'static, str> = match code {
        // The user logged in but may not run a command connecting needs.
        ErrorCode::ConnectionAuthFailed if noperm => {
            "the user may not run a command the connection needs (NOPERM): see the ACL rules \
             redisx documents per plugin"
                .into()
        }
        ErrorCode::ConnectionAuthFailed => {
            "authentication failed: check the user name and password".into()
        }
        ErrorCode::ConnectionTimeout => {
            format!("connecting timed out{}", tls_timeout_hint(cfg)).into()
        }
        ErrorCode::ConnectionTls => tls.unwrap_or(TlsFailure::Other).message(cfg).into(),
        _ if closed_by_peer(&text) => closed_during_tls_setup(cfg).into(),
        _ => "cannot connect".into(),
    };
    // The cause's own text stays with the source (`{:#}` shows it).
    Error::new(code, what)
        .with_context("client", name)
        .with_context("server", cfg.to_string())
        .with_redis_source(err)
}

#[cfg(feature = "pool")]
fn pool_error(name: &str, cfg: &ConnectionConfig, err: deadpool_redis::PoolError) -> Error {
    match err {
        deadpool_redis::PoolError::Backend(e) => connect_error(name, cfg, e),
        deadpool_redis::PoolError::Timeout(kind) => Error::new(
            ErrorCode::ConnectionTimeout,
            format!(
                "no pooled connection available in time ({kind:?}){}",
                if matches!(kind, deadpool_redis::TimeoutType::Create) {
                    tls_timeout_hint(cfg)
                } else {
                    ""
                }
            ),
        )
        .with_context("client", name),
        other => Error::new(ErrorCode::ConnectionFailed, format!("pool error: {other}"))
            .with_context("client", name),
    }
}

struct State {
    conn: Option<MultiplexedConnection>,
    generation: u64,
    last_error: Option<String>,
}

/// One shared multiplexed connection, re-established in the background with backoff.
pub(crate) struct Multiplexed {
    name: String,
    cfg: ConnectionConfig,
    state: RwLock<State>,
    down: Arc<Notify>,
    stopped: AtomicBool,
    timeouts: AtomicU32,
    /// Bumped when the sentinels switch the master: connections of their own (pub/sub,
    /// dedicated) opened before it end, so their users reconnect to the new master.
    switches: tokio::sync::watch::Sender<u64>,
}

/// Consecutive command timeouts after which a multiplexed connection is re-established.
pub(crate) const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;

impl Multiplexed {
    async fn start(name: &str, cfg: &ConnectionConfig, life: &Arc<Life>) -> Result<Arc<Self>> {
        let this = Arc::new(Self {
            name: name.to_owned(),
            cfg: cfg.clone(),
            state: RwLock::new(State {
                conn: None,
                generation: 0,
                last_error: Some("not connected yet".to_owned()),
            }),
            down: Arc::new(Notify::new()),
            stopped: AtomicBool::new(false),
            timeouts: AtomicU32::new(0),
            switches: tokio::sync::watch::Sender::new(0),
        });
        if !cfg.lazy {
            let conn = this.open().await?;
            this.install(conn);
        }
        tokio::spawn(watched(
            life.guard("the connection's reconnect loop"),
            Self::reconnect_loop(Arc::downgrade(&this), this.down.clone()),
        ));
        if cfg.sentinel_master_value().is_some() {
            let (alive, switched) = (Arc::downgrade(&this), Arc::downgrade(&this));
            tokio::spawn(watched(
                life.guard("the sentinel switch-master listener"),
                super::sentinel::watch_switch_master(
                    name.to_owned(),
                    cfg.clone(),
                    move || {
                        alive
                            .upgrade()
                            .is_some_and(|m| !m.stopped.load(Ordering::SeqCst))
                    },
                    move |event| {
                        if let Some(m) = switched.upgrade() {
                            m.mark_down_current(&format!(
                                "the sentinels switched the master ({event})"
                            ));
                            m.switches.send_modify(|n| *n += 1);
                        }
                    },
                ),
            ));
        }
        Ok(this)
    }

    async fn open(&self) -> Result<MultiplexedConnection> {
        let config = connection_config(&self.cfg, Some(self.cfg.command_timeout));
        // A sentinel config asks the sentinels for the master on every (re)connect.
        let client = super::sentinel::node_client(&self.name, &self.cfg).await?;
        let fut = client.get_multiplexed_async_connection_with_config(&config);
        let mut conn = connecting(&self.name, &self.cfg, fut).await?;
        self.cfg
            .init_connection(&mut conn, None)
            .await
            .map_err(|e| connect_error(&self.name, &self.cfg, e))?;
        Ok(conn)
    }

    fn install(&self, conn: MultiplexedConnection) {
        let mut state = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.conn = Some(conn);
        state.generation += 1;
        state.last_error = None;
    }

    fn get(&self) -> Result<(MultiplexedConnection, u64)> {
        let state = self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(conn) = &state.conn {
            Ok((conn.clone(), state.generation))
        } else {
            let why = state.last_error.clone().unwrap_or_default();
            drop(state);
            self.down.notify_one();
            Err(Error::new(
                ErrorCode::ConnectionClosed,
                format!("the connection is down and being re-established (last error: {why})"),
            )
            .with_context("client", self.name.clone())
            .with_context("server", self.cfg.to_string()))
        }
    }

    /// Drops the current connection, whatever its generation, to connect afresh.
    fn mark_down_current(&self, why: &str) {
        let generation = self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .generation;
        self.mark_down(generation, why);
    }

    fn mark_down(&self, generation: u64, why: &str) {
        {
            let mut state = self
                .state
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if state.conn.is_none() || state.generation != generation {
                return;
            }
            state.conn = None;
            state.last_error = Some(why.to_owned());
        }
        tracing::warn!(target: "redisx", client = %self.name, error = %format_args!("{why:#}"), "redis connection lost; reconnecting in the background");
        self.down.notify_one();
    }

    fn shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let mut state = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.conn = None;
        state.last_error = Some("the runtime was shut down".to_owned());
        drop(state);
        self.down.notify_one();
    }

    async fn reconnect_loop(this: std::sync::Weak<Self>, down: Arc<Notify>) {
        loop {
            let connected = match this.upgrade() {
                None => return,
                Some(me) if me.stopped.load(Ordering::SeqCst) => return,
                Some(me) => me.is_connected(),
            };
            if connected {
                // Only a weak reference is held while waiting; `Drop` wakes us to exit.
                down.notified().await;
                continue;
            }
            let mut attempt: u32 = 0;
            loop {
                let Some(me) = this.upgrade() else { return };
                if me.stopped.load(Ordering::SeqCst) {
                    return;
                }
                match me.open().await {
                    Ok(conn) => {
                        me.install(conn);
                        tracing::info!(target: "redisx", client = %me.name, attempts = attempt + 1, "redis connection established");
                        break;
                    }
                    Err(e) => {
                        let delay = me
                            .cfg
                            .reconnect
                            .delay(attempt, rand::Rng::random::<f64>(&mut rand::rng()));
                        let why = format!("{e:#}");
                        tracing::debug!(target: "redisx", client = %me.name, error = %format_args!("{why:#}"), ?delay, "reconnect attempt failed");
                        me.state
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .last_error = Some(why);
                        drop(me);
                        tokio::time::sleep(delay).await;
                        attempt = attempt.saturating_add(1);
                    }
                }
            }
        }
    }

    fn is_connected(&self) -> bool {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .conn
            .is_some()
    }
}

impl Drop for Multiplexed {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.down.notify_one();
    }
}
