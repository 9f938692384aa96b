//! How to reach one Redis server: address, credentials, TLS, timeouts, reconnect, driver.

mod connect;
#[cfg(feature = "serde")]
mod deserialize;
mod getters;
mod policy;
mod topology;
mod url;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use policy::{DriverKind, ReconnectPolicy};
pub(crate) use topology::{Nodes, SentinelSet};

use crate::error::{Error, Result};

/// How to connect to one Redis server.
///
/// Build it from a URL (`redis://`, `rediss://` for TLS, `user:password@`, `/db`,
/// `redis+unix:///path` for a Unix socket; with [`from_url`](Self::from_url) or `str::parse`)
/// or from fields. Each option is set by a method of its name and read back by the same name
/// with `_value` (`db(2)`, `db_value()`). The password and the TLS client key never appear in
/// `Debug`, `Display`, logs or spans.
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::{ConnectionConfig, DriverKind};
///
/// let cfg = ConnectionConfig::from_url("redis://app:s3cret@10.0.0.5:6380/2")?
///     .command_timeout(Duration::from_millis(500))
///     .client_name("billing-worker")
///     .driver(DriverKind::Multiplexed);
/// assert_eq!(cfg.host(), "10.0.0.5");
/// assert_eq!(cfg.port(), 6380);
/// assert_eq!(cfg.db_value(), 2);
/// assert_eq!(cfg.client_name_value(), Some("billing-worker"));
/// assert!(!format!("{cfg:?}").contains("s3cret"));
/// assert_eq!(cfg.to_string(), "redis://app:***@10.0.0.5:6380/2");
/// # Ok::<(), redisx_runtime::Error>(())
/// ```
#[derive(Clone)]
// Reason: each bool is an independent user option (tls, tls_insecure, resp3, lazy) with its
// own setter; an enum would not read better.
#[allow(clippy::struct_excessive_bools)]
pub struct ConnectionConfig {
    /// The host, or the socket path for a Unix socket (what spans report as the address).
    pub(crate) host: String,
    /// The port; 0 for a Unix socket.
    pub(crate) port: u16,
    pub(crate) socket: Option<PathBuf>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: i64,
    pub(crate) tls: bool,
    pub(crate) tls_insecure: bool,
    pub(crate) tls_ca_cert: Option<Vec<u8>>,
    pub(crate) tls_client_cert: Option<(Vec<u8>, Vec<u8>)>,
    pub(crate) client_name: Option<String>,
    pub(crate) resp3: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) pool_wait_timeout: Option<Duration>,
    pub(crate) pool_create_timeout: Option<Duration>,
    pub(crate) pool_recycle_timeout: Option<Duration>,
    pub(crate) reconnect: ReconnectPolicy,
    pub(crate) driver: DriverKind,
    pub(crate) lazy: bool,
    /// One server, a cluster, or a master found through sentinels.
    pub(crate) nodes: Nodes,
    /// Read-only commands go to replicas (a cluster config only).
    pub(crate) read_from_replicas: bool,
}

impl ConnectionConfig {
    /// The default connect timeout: 10 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default command timeout: 5 s.
    pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

    /// A config for `host:port` with every other setting at its default.
    ///
    /// ```
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// let cfg = ConnectionConfig::new("10.0.0.5", 6380);
    /// assert_eq!((cfg.host(), cfg.port()), ("10.0.0.5", 6380));
    /// assert_eq!(cfg.db_value(), 0);
    /// assert_eq!(cfg.command_timeout_value(), ConnectionConfig::DEFAULT_COMMAND_TIMEOUT);
    /// ```
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            socket: None,
            username: None,
            password: None,
            db: 0,
            tls: false,
            tls_insecure: false,
            tls_ca_cert: None,
            tls_client_cert: None,
            client_name: None,
            resp3: false,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            command_timeout: Self::DEFAULT_COMMAND_TIMEOUT,
            pool_wait_timeout: None,
            pool_create_timeout: None,
            pool_recycle_timeout: None,
            reconnect: ReconnectPolicy::default(),
            driver: DriverKind::Multiplexed,
            lazy: false,
            nodes: Nodes::Single,
            read_from_replicas: false,
        }
    }

    /// A config for the Unix domain socket at `path` (redis-server's `unixsocket`), with every
    /// other setting at its default. The URL form is `redis+unix:///path/to/redis.sock`.
    ///
    /// ```
    /// use std::path::Path;
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// let cfg = ConnectionConfig::unix_socket("/run/redis/redis.sock").db(1);
    /// assert_eq!(cfg.socket_path(), Some(Path::new("/run/redis/redis.sock")));
    /// assert_eq!(cfg.to_string(), "redis+unix:///run/redis/redis.sock?db=1");
    /// ```
    pub fn unix_socket(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let mut cfg = Self::new(path.display().to_string(), 0);
        cfg.socket = Some(path);
        cfg
    }

    /// Parses a Redis URL:
    ///
    /// * `redis://[user[:password]@]host[:port][/db]`, or `rediss://...` for TLS
    ///   (`?insecure=true` skips the certificate checks, for tests only);
    /// * `redis+unix:///path/to/socket` (or `unix://`), with `?db=N&user=U&pass=P`;
    /// * both take `?protocol=resp3` ([`resp3`](Self::resp3)) and `?client_name=NAME`
    ///   ([`client_name`](Self::client_name)).
    ///
    /// The error says what is wrong without repeating the password.
    ///
    /// ```
    /// use redisx_runtime::{ConnectionConfig, ErrorCode};
    ///
    /// let url = "rediss://app:s3cret@cache.internal:6380/2?protocol=resp3";
    /// let cfg = ConnectionConfig::from_url(url)?;
    /// assert!(cfg.tls_value());
    /// assert_eq!(cfg.username_value(), Some("app"));
    /// assert_eq!(cfg.db_value(), 2);
    /// assert!(cfg.resp3_value());
    ///
    /// let err = ConnectionConfig::from_url("redis://app:s3cret@cache.internal:port").unwrap_err();
    /// assert_eq!(err.code(), ErrorCode::ConfigInvalid);
    /// assert!(!err.to_string().contains("s3cret"));
    /// # Ok::<(), redisx_runtime::Error>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self> {
        url::parse(url)
    }

    /// Sets the ACL user name.
    ///
    /// ```
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// let cfg = ConnectionConfig::new("cache.internal", 6379)
    ///     .username("billing")
    ///     .password("s3cret");
    /// assert_eq!(cfg.username_value(), Some("billing"));
    /// ```
    #[must_use]
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Sets the password (for `AUTH`).
    ///
    /// ```
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// let cfg = ConnectionConfig::new("cache.internal", 6379).password("s3cret");
    /// assert_eq!(cfg.password_value(), Some("s3cret"));
    /// assert_eq!(cfg.to_string(), "redis://:***@cache.internal:6379");
    /// ```
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Selects the logical database.
    ///
    /// ```
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// let cfg = ConnectionConfig::new("cache.internal", 6379).db(3);
    /// assert_eq!(cfg.db_value(), 3);
    /// assert_eq!(cfg.to_string(), "redis://cache.internal:6379/3");
    /// ```
    #[must_use]
    pub fn db(mut self, db: i64) -> Self {
        self.db = db;
        self
    }

    /// Connects over TLS: rustls with the webpki roots (feature `tls-rustls`, the default) or
    /// native-tls with the system's roots (feature `tls-native`), unless
    /// [`tls_ca_cert`](Self::tls_ca_cert) names the trusted CA. With both features on, rustls
    /// is used.
    ///
    /// ```
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// let cfg = ConnectionConfig::new("cache.internal", 6380).tls(true);
    /// assert!(cfg.tls_value());
    /// assert_eq!(cfg.to_string(), "rediss://cache.internal:6380");
    /// ```
    #[must_use]
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// **Insecure: for tests only.** With TLS, accept any server certificate for any host name:
    /// the connection is encrypted but not authenticated, so anyone on the network path can
    /// impersonate the server, read the password and every key and value, and change replies.
    /// Never enable it in production, nor to get past a certificate error: trust the server's CA
    /// with [`tls_ca_cert`](Self::tls_ca_cert) instead. Also set by `?insecure=true` in a
    /// `rediss://` URL. Default `false`.
    ///
    /// ```
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// // A test server with a self-signed certificate.
    /// let cfg = ConnectionConfig::from_url("rediss://127.0.0.1:6380")?.tls_insecure(true);
    /// assert!(cfg.tls_insecure_value());
    /// # Ok::<(), redisx_runtime::Error>(())
    /// ```
    #[must_use]
    pub fn tls_insecure(mut self, insecure: bool) -> Self {
        self.tls_insecure = insecure;
        self
    }

    /// With TLS, trust the CA certificates in `pem` (PEM text, one or more certificates)
    /// instead of the built-in roots: for a server whose certificate a private CA signed.
    ///
    /// ```no_run
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// # #[allow(dead_code)]
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let cfg = ConnectionConfig::from_url("rediss://cache.internal:6380")?
    ///     .tls_ca_cert(std::fs::read("/etc/redis/ca.crt")?)
    ///     .tls_client_cert(
    ///         std::fs::read("/etc/redis/client.crt")?,
    ///         std::fs::read("/etc/redis/client.key")?,
    ///     );
    /// # let _ = cfg; Ok(()) }
    /// ```
    #[must_use]
    pub fn tls_ca_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca_cert = Some(pem.into());
        self
    }

    /// With TLS, authenticate with this client certificate chain and private key (both PEM
    /// text), for a server that requires client certificates (`tls-auth-clients yes`).
    ///
    /// rustls takes a PKCS#8 (`BEGIN PRIVATE KEY`), PKCS#1 (`BEGIN RSA PRIVATE KEY`) or SEC1
    /// (`BEGIN EC PRIVATE KEY`) key; native-tls (feature `tls-native` without `tls-rustls`)
    /// only PKCS#8, and building the runtime with another form fails with
    /// [`ErrorCode::ConfigInvalid`](crate::ErrorCode::ConfigInvalid) saying how to convert it.
    ///
    /// ```
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// // PEM text, as read from files or a secret store.
    /// let cert = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n";
    /// let key = "-----BEGIN PRIVATE KEY-----\nMC4C...\n-----END PRIVATE KEY-----\n";
    /// let cfg = ConnectionConfig::from_url("rediss://cache.internal:6380")?
    ///     .tls_client_cert(cert, key);
    /// assert_eq!(cfg.tls_client_cert_value(), Some((cert.as_bytes(), key.as_bytes())));
    /// assert!(!format!("{cfg:?}").contains("PRIVATE KEY"));
    /// # Ok::<(), redisx_runtime::Error>(())
    /// ```
    #[must_use]
    pub fn tls_client_cert(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls_client_cert = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// The connection name set with `CLIENT SETNAME` on every connection the client opens,
    /// so that `CLIENT LIST` on the server tells which service a connection belongs to. No
    /// spaces; none by default.
    ///
    /// The shared connection and the pool's carry the name as is; connections of their own
    /// carry it with their role appended: `NAME:pubsub` for [`Client::pubsub`](crate::Client::pubsub)
    /// (and the cache's invalidation listener), `NAME:dedicated` for
    /// [`Client::dedicated_connection`](crate::Client::dedicated_connection). A `MONITOR`
    /// connection has none. A sentinel config names its connections to the master (not those
    /// to the sentinels). A cluster config sends no name: redis-rs opens and reopens the
    /// connections to each node itself, with no hook to name them (building the client logs
    /// a warning).
    ///
    /// ```
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// let cfg = ConnectionConfig::new("cache.internal", 6379).client_name("billing-worker");
    /// assert_eq!(cfg.client_name_value(), Some("billing-worker"));
    /// ```
    #[must_use]
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = Some(name.into());
        self
    }

    /// Speak RESP3 (`HELLO 3`) instead of RESP2 (default `false`). Replies convert to the same
    /// Rust types either way; RESP3 needs Redis 6 or newer.
    ///
    /// ```
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// let cfg = ConnectionConfig::new("cache.internal", 6379).resp3(true);
    /// assert!(cfg.resp3_value());
    /// ```
    #[must_use]
    pub fn resp3(mut self, on: bool) -> Self {
        self.resp3 = on;
        self
    }

    /// How long one connection attempt may take (default 10 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// let cfg = ConnectionConfig::new("cache.internal", 6379)
    ///     .connect_timeout(Duration::from_secs(2));
    /// assert_eq!(cfg.connect_timeout_value(), Duration::from_secs(2));
    /// ```
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long any command may take before it fails with [`ErrorCode::OperationTimeout`](crate::ErrorCode::OperationTimeout)
    /// (default 5 s). Enforced on every command.
    ///
    /// ```
    /// use std::time::Duration;
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// let cfg = ConnectionConfig::new("cache.internal", 6379)
    ///     .command_timeout(Duration::from_millis(500));
    /// assert_eq!(cfg.command_timeout_value(), Duration::from_millis(500));
    /// ```
    #[must_use]
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// [`DriverKind::Pool`]: how long a command waits for a free connection when all
    /// `max_size` are in use, before failing with [`ErrorCode::ConnectionTimeout`](crate::ErrorCode::ConnectionTimeout) (default:
    /// the command timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use redisx_runtime::{ConnectionConfig, DriverKind};
    ///
    /// let cfg = ConnectionConfig::new("cache.internal", 6379)
    ///     .driver(DriverKind::Pool { max_size: 32 })
    ///     .command_timeout(Duration::from_secs(2));
    /// assert_eq!(cfg.pool_wait_timeout_value(), Duration::from_secs(2));
    /// let cfg = cfg.pool_wait_timeout(Duration::from_millis(250));
    /// assert_eq!(cfg.pool_wait_timeout_value(), Duration::from_millis(250));
    /// ```
    #[cfg(feature = "pool")]
    #[must_use]
    pub fn pool_wait_timeout(mut self, timeout: Duration) -> Self {
        self.pool_wait_timeout = Some(timeout);
        self
    }

    /// [`DriverKind::Pool`]: how long opening a new pooled connection may take (default: the
    /// connect timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use redisx_runtime::{ConnectionConfig, DriverKind};
    ///
    /// let cfg = ConnectionConfig::new("cache.internal", 6379)
    ///     .driver(DriverKind::Pool { max_size: 32 })
    ///     .pool_create_timeout(Duration::from_secs(1));
    /// assert_eq!(cfg.pool_create_timeout_value(), Duration::from_secs(1));
    /// ```
    #[cfg(feature = "pool")]
    #[must_use]
    pub fn pool_create_timeout(mut self, timeout: Duration) -> Self {
        self.pool_create_timeout = Some(timeout);
        self
    }

    /// [`DriverKind::Pool`]: how long the health check of a connection taken from the pool
    /// (`UNWATCH` + `PING`) may take before the connection is dropped and another one is
    /// used (default: the command timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// use redisx_runtime::{ConnectionConfig, DriverKind};
    ///
    /// let cfg = ConnectionConfig::new("cache.internal", 6379)
    ///     .driver(DriverKind::Pool { max_size: 32 })
    ///     .pool_recycle_timeout(Duration::from_millis(100));
    /// assert_eq!(cfg.pool_recycle_timeout_value(), Duration::from_millis(100));
    /// ```
    #[cfg(feature = "pool")]
    #[must_use]
    pub fn pool_recycle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_recycle_timeout = Some(timeout);
        self
    }

    /// The reconnect backoff (default 1 s doubling to 30 s, with jitter).
    ///
    /// ```
    /// use std::time::Duration;
    /// use redisx_runtime::{ConnectionConfig, ReconnectPolicy};
    ///
    /// let policy = ReconnectPolicy::default()
    ///     .initial(Duration::from_millis(100))
    ///     .max(Duration::from_secs(5));
    /// let cfg = ConnectionConfig::new("cache.internal", 6379).reconnect(policy);
    /// assert_eq!(cfg.reconnect_value(), policy);
    /// ```
    #[must_use]
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// The connection driver (default [`DriverKind::Multiplexed`]).
    ///
    /// ```
    /// # #[cfg(feature = "pool")] {
    /// use redisx_runtime::{ConnectionConfig, DriverKind};
    ///
    /// let cfg = ConnectionConfig::new("cache.internal", 6379)
    ///     .driver(DriverKind::Pool { max_size: 16 });
    /// assert_eq!(cfg.driver_value(), DriverKind::Pool { max_size: 16 });
    /// # }
    /// ```
    #[must_use]
    pub fn driver(mut self, driver: DriverKind) -> Self {
        self.driver = driver;
        self
    }

    /// When `true`, building the runtime does not fail while the server is unreachable: the
    /// client connects in the background and commands fail with
    /// [`ErrorCode::ConnectionClosed`](crate::ErrorCode::ConnectionClosed) until it is up. Default `false`.
    ///
    /// ```
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// // The service starts even while Redis is still coming up.
    /// let cfg = ConnectionConfig::new("cache.internal", 6379).lazy(true);
    /// assert!(cfg.lazy_value());
    /// ```
    #[must_use]
    pub fn lazy(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }
}

impl FromStr for ConnectionConfig {
    type Err = Error;

    /// The same as [`ConnectionConfig::from_url`].
    fn from_str(url: &str) -> Result<Self> {
        Self::from_url(url)
    }
}

impl fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pem_len = |pem: &Vec<u8>| format!("<{} bytes of PEM>", pem.len());
        f.debug_struct("ConnectionConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("socket", &self.socket)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("tls", &self.tls)
            .field("tls_insecure", &self.tls_insecure)
            .field("tls_ca_cert", &self.tls_ca_cert.as_ref().map(pem_len))
            .field(
                "tls_client_cert",
                &self
                    .tls_client_cert
                    .as_ref()
                    .map(|(c, _)| (pem_len(c), "key: ***")),
            )
            .field("client_name", &self.client_name)
            .field("resp3", &self.resp3)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("pool_wait_timeout", &self.pool_wait_timeout)
            .field("pool_create_timeout", &self.pool_create_timeout)
            .field("pool_recycle_timeout", &self.pool_recycle_timeout)
            .field("reconnect", &self.reconnect)
            .field("driver", &self.driver)
            .field("lazy", &self.lazy)
            .field("nodes", &self.nodes)
            .field("read_from_replicas", &self.read_from_replicas)
            .finish()
    }
}

impl fmt::Display for ConnectionConfig {
    /// The URL form of the address, user and database, with the password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.socket {
            write!(f, "redis+unix://{}", path.display())?;
            let mut sep = '?';
            let mut param = |f: &mut fmt::Formatter<'_>, kv: fmt::Arguments<'_>| {
                let r = write!(f, "{sep}{kv}");
                sep = '&';
                r
            };
            if self.db != 0 {
                param(f, format_args!("db={}", self.db))?;
            }
            if let Some(u) = &self.username {
                param(f, format_args!("user={u}"))?;
            }
            if self.password.is_some() {
                param(f, format_args!("pass=***"))?;
            }
            return Ok(());
        }
        if self.fmt_nodes(f)? {
            return Ok(());
        }
        f.write_str(if self.tls { "rediss://" } else { "redis://" })?;
        self.fmt_userinfo(f)?;
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{}:{}", self.host, self.port)?;
        }
        if self.db != 0 {
            write!(f, "/{}", self.db)?;
        }
        Ok(())
    }
}

impl ConnectionConfig {
    /// Writes `user:***@` (or what of it is set).
    fn fmt_userinfo(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.username, &self.password) {
            (Some(u), Some(_)) => write!(f, "{u}:***@"),
            (Some(u), None) => write!(f, "{u}@"),
            (None, Some(_)) => f.write_str(":***@"),
            (None, None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
