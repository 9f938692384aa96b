//! How to reach one Redis server: address, credentials, TLS, timeouts, reconnect, driver.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, ErrorCode, Result};

/// The connection driver of a client.
///
/// Both drivers pass the same integration tests; they differ in cost:
///
/// * [`DriverKind::Multiplexed`] (the default): one shared, pipelined connection per client,
///   re-established in the background with exponential backoff when it drops. While it is down,
///   commands fail at once with [`ErrorCode::ConnectionClosed`] instead of queueing.
/// * [`DriverKind::Pool`]: a `deadpool-redis` pool. Every checkout sends `UNWATCH` + `PING`
///   (a second round trip per call, about 7× lower throughput on loopback), so use it only when
///   you need connection-level isolation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriverKind {
    /// One multiplexed auto-reconnecting connection (default).
    Multiplexed,
    /// A deadpool-redis pool of up to `max_size` connections.
    Pool {
        /// The largest number of connections the pool opens.
        max_size: usize,
    },
}

/// Reconnect backoff: `initial`, multiplied by `factor` after every failed attempt, capped at
/// `max`, with up to 50 % random jitter subtracted so instances do not reconnect in lockstep.
///
/// The default is 1 s doubling to 30 s, with jitter, forever. Each option is set by a method
/// of its name and read back with `_value`.
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::ReconnectPolicy;
/// let p = ReconnectPolicy::default();
/// assert_eq!(p.initial_value(), Duration::from_secs(1));
/// assert_eq!(p.delay(0, 1.0), Duration::from_secs(1));
/// assert_eq!(p.delay(3, 1.0), Duration::from_secs(8));
/// assert_eq!(p.delay(10, 1.0), Duration::from_secs(30));
///
/// let fast = ReconnectPolicy::default()
///     .initial(Duration::from_millis(50))
///     .max(Duration::from_millis(200));
/// assert_eq!(fast.delay(5, 1.0), Duration::from_millis(200));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ReconnectPolicy {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
    pub(crate) factor: f64,
    pub(crate) jitter: bool,
}

impl ReconnectPolicy {
    /// The delay before the first reconnect attempt (default 1 s).
    #[must_use]
    pub fn initial(mut self, delay: Duration) -> Self {
        self.initial = delay;
        self
    }

    /// The longest delay between attempts (default 30 s).
    #[must_use]
    pub fn max(mut self, delay: Duration) -> Self {
        self.max = delay;
        self
    }

    /// The factor applied after every failed attempt (default 2; below 1 counts as 1).
    #[must_use]
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// Whether to randomise each delay, between 50 % and 100 % of it (default on).
    #[must_use]
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// The delay before the first reconnect attempt.
    pub fn initial_value(&self) -> Duration {
        self.initial
    }

    /// The longest delay between attempts.
    pub fn max_value(&self) -> Duration {
        self.max
    }

    /// The factor applied after every failed attempt.
    pub fn factor_value(&self) -> f64 {
        self.factor
    }

    /// Whether each delay is randomised.
    pub fn jitter_value(&self) -> bool {
        self.jitter
    }
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: true,
        }
    }
}

impl ReconnectPolicy {
    /// The delay before attempt number `attempt` (0-based), given a jitter sample in `[0, 1]`
    /// (`1.0` = no reduction). Without `jitter` the sample is ignored.
    pub fn delay(&self, attempt: u32, jitter_sample: f64) -> Duration {
        let exp = i32::try_from(attempt.min(64)).unwrap_or(64);
        let base = self.initial.as_secs_f64() * self.factor.max(1.0).powi(exp);
        let capped = base.min(self.max.as_secs_f64());
        let factor = if self.jitter {
            0.5 + 0.5 * jitter_sample.clamp(0.0, 1.0)
        } else {
            1.0
        };
        Duration::from_secs_f64(capped * factor)
    }
}

/// How to connect to one Redis server.
///
/// Build it from a URL (`redis://`, `rediss://` for TLS, `user:password@`, `/db`; with
/// [`from_url`](Self::from_url) or `str::parse`) or from fields. Each option is set by a
/// method of its name and read back by the same name with `_value` (`db(2)`, `db_value()`). The password never appears in `Debug`, `Display`, logs or spans.
///
/// ```
/// use std::time::Duration;
/// use redisx_runtime::{ConnectionConfig, DriverKind};
///
/// let cfg = ConnectionConfig::from_url("redis://app:s3cret@10.0.0.5:6380/2")?
///     .command_timeout(Duration::from_millis(500))
///     .driver(DriverKind::Pool { max_size: 16 });
/// assert_eq!(cfg.host(), "10.0.0.5");
/// assert_eq!(cfg.port(), 6380);
/// assert_eq!(cfg.db_value(), 2);
/// assert!(!format!("{cfg:?}").contains("s3cret"));
/// assert_eq!(cfg.to_string(), "redis://app:***@10.0.0.5:6380/2");
/// # Ok::<(), redisx_runtime::Error>(())
/// ```
#[derive(Clone)]
pub struct ConnectionConfig {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: i64,
    pub(crate) tls: bool,
    pub(crate) tls_insecure: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) reconnect: ReconnectPolicy,
    pub(crate) driver: DriverKind,
    pub(crate) lazy: bool,
}

impl ConnectionConfig {
    /// The default connect timeout: 10 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default command timeout: 5 s.
    pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

    /// A config for `host:port` with every other setting at its default.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            username: None,
            password: None,
            db: 0,
            tls: false,
            tls_insecure: false,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            command_timeout: Self::DEFAULT_COMMAND_TIMEOUT,
            reconnect: ReconnectPolicy::default(),
            driver: DriverKind::Multiplexed,
            lazy: false,
        }
    }

    /// Parses `redis://[user[:password]@]host[:port][/db]` or `rediss://...` (TLS).
    ///
    /// The error says what is wrong without repeating the password.
    pub fn from_url(url: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::new(
                ErrorCode::ConfigInvalid,
                format!("invalid Redis URL: {why}; expected `redis://[user[:password]@]host[:port][/db]` or `rediss://...`"),
            )
            .with_context("url", redact_url(url))
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let tls = match parsed.scheme() {
            "redis" => false,
            "rediss" => true,
            other => return Err(bad(&format!("unsupported scheme `{other}`"))),
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("missing host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let mut cfg = Self::new(host, parsed.port().unwrap_or(6379));
        cfg.tls = tls;
        if !parsed.username().is_empty() {
            cfg.username = Some(percent_decode(parsed.username()));
        }
        if let Some(pw) = parsed.password() {
            cfg.password = Some(percent_decode(pw));
        }
        let path = parsed.path().trim_matches('/');
        if !path.is_empty() {
            cfg.db = path
                .parse::<i64>()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or_else(|| bad(&format!("database `{path}` is not a non-negative number")))?;
        }
        for (k, v) in parsed.query_pairs() {
            match &*k {
                "insecure" => cfg.tls_insecure = v == "true" || v == "1",
                "db" => {
                    cfg.db = v.parse::<i64>().ok().filter(|db| *db >= 0).ok_or_else(|| {
                        bad(&format!("database `{v}` is not a non-negative number"))
                    })?;
                }
                other => {
                    return Err(bad(&format!(
                        "unknown query parameter `{other}`; expected `db` or `insecure`"
                    )));
                }
            }
        }
        Ok(cfg)
    }

    /// Sets the ACL user name.
    #[must_use]
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Sets the password (for `AUTH`).
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Selects the logical database.
    #[must_use]
    pub fn db(mut self, db: i64) -> Self {
        self.db = db;
        self
    }

    /// Connects over TLS (rustls, with the webpki roots).
    #[must_use]
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// With TLS, accept any certificate and host name. For tests only.
    #[must_use]
    pub fn tls_insecure(mut self, insecure: bool) -> Self {
        self.tls_insecure = insecure;
        self
    }

    /// How long one connection attempt may take (default 10 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long any command may take before it fails with [`ErrorCode::OperationTimeout`]
    /// (default 5 s). Enforced on every command.
    #[must_use]
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// The reconnect backoff (default 1 s doubling to 30 s, with jitter).
    #[must_use]
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// The connection driver (default [`DriverKind::Multiplexed`]).
    #[must_use]
    pub fn driver(mut self, driver: DriverKind) -> Self {
        self.driver = driver;
        self
    }

    /// When `true`, building the runtime does not fail while the server is unreachable: the
    /// client connects in the background and commands fail with
    /// [`ErrorCode::ConnectionClosed`] until it is up. Default `false`.
    #[must_use]
    pub fn lazy(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }

    /// The host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The ACL user name, if any.
    pub fn username_value(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The password, if any (it is hidden from `Debug` and `Display`, not from this getter).
    pub fn password_value(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The logical database.
    pub fn db_value(&self) -> i64 {
        self.db
    }

    /// Whether TLS is used.
    pub fn tls_value(&self) -> bool {
        self.tls
    }

    /// Whether certificate and host name checks are off (TLS only).
    pub fn tls_insecure_value(&self) -> bool {
        self.tls_insecure
    }

    /// How long one connection attempt may take.
    pub fn connect_timeout_value(&self) -> Duration {
        self.connect_timeout
    }

    /// How long any command may take.
    pub fn command_timeout_value(&self) -> Duration {
        self.command_timeout
    }

    /// The reconnect backoff.
    pub fn reconnect_value(&self) -> ReconnectPolicy {
        self.reconnect
    }

    /// The configured driver.
    pub fn driver_value(&self) -> DriverKind {
        self.driver
    }

    /// Whether building the runtime tolerates an unreachable server.
    pub fn lazy_value(&self) -> bool {
        self.lazy
    }

    pub(crate) fn to_connection_info(&self) -> redis::ConnectionInfo {
        let addr = if self.tls {
            redis::ConnectionAddr::TcpTls {
                host: self.host.clone(),
                port: self.port,
                insecure: self.tls_insecure,
                tls_params: None,
            }
        } else {
            redis::ConnectionAddr::Tcp(self.host.clone(), self.port)
        };
        let mut redis_info = redis::RedisConnectionInfo::default().set_db(self.db);
        if let Some(user) = &self.username {
            redis_info = redis_info.set_username(user);
        }
        if let Some(pw) = &self.password {
            redis_info = redis_info.set_password(pw);
        }
        redis_info = redis_info.set_lib_name("redisx", env!("CARGO_PKG_VERSION"));
        redis::IntoConnectionInfo::into_connection_info(addr)
            .expect("a ConnectionAddr always converts")
            .set_redis_settings(redis_info)
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
        f.debug_struct("ConnectionConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("tls", &self.tls)
            .field("tls_insecure", &self.tls_insecure)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("reconnect", &self.reconnect)
            .field("driver", &self.driver)
            .field("lazy", &self.lazy)
            .finish()
    }
}

impl fmt::Display for ConnectionConfig {
    /// The URL form, with the password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.tls { "rediss://" } else { "redis://" })?;
        match (&self.username, &self.password) {
            (Some(u), Some(_)) => write!(f, "{u}:***@")?,
            (Some(u), None) => write!(f, "{u}@")?,
            (None, Some(_)) => f.write_str(":***@")?,
            (None, None) => {}
        }
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

/// Replaces the password part of a URL-like string with `***`, even when it does not parse.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let redacted = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None => userinfo.to_owned(),
    };
    format!("{}{}{}", &url[..scheme_end], redacted, &rest[at..])
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_url() {
        let cfg = ConnectionConfig::from_url("rediss://bob:p%40ss@example.com:7000/3").unwrap();
        assert_eq!(cfg.host(), "example.com");
        assert_eq!(cfg.port(), 7000);
        assert_eq!(cfg.db_value(), 3);
        assert!(cfg.tls_value());
        assert_eq!(cfg.username_value(), Some("bob"));
        assert_eq!(cfg.password.as_deref(), Some("p@ss"));
        assert_eq!(cfg.to_string(), "rediss://bob:***@example.com:7000/3");
    }

    #[test]
    fn from_str_is_from_url() {
        let cfg: ConnectionConfig = "redis://u:pw@h:7/1".parse().unwrap();
        assert_eq!((cfg.host(), cfg.port(), cfg.db_value()), ("h", 7, 1));
        assert_eq!(cfg.password_value(), Some("pw"));
        let err = "http://h".parse::<ConnectionConfig>().unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConfigInvalid);
    }

    #[test]
    fn password_only_and_defaults() {
        let cfg = ConnectionConfig::from_url("redis://:hunter2@localhost").unwrap();
        assert_eq!(cfg.port(), 6379);
        assert_eq!(cfg.username_value(), None);
        assert_eq!(cfg.password.as_deref(), Some("hunter2"));
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert!(!cfg.to_string().contains("hunter2"));
    }

    #[test]
    fn rejects_bad_urls_without_leaking_password() {
        for url in [
            "http://u:hunter2@host",
            "redis://u:hunter2@host/notadb",
            "redis://u:hunter2@host/1?bogus=1",
            "not a url",
        ] {
            let err = ConnectionConfig::from_url(url).unwrap_err();
            assert_eq!(err.code(), ErrorCode::ConfigInvalid, "{url}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = ReconnectPolicy::default();
        let delays: Vec<u64> = (0..7).map(|n| p.delay(n, 1.0).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(p.delay(0, 0.0), Duration::from_millis(500));
        let no_jitter = ReconnectPolicy { jitter: false, ..p };
        assert_eq!(no_jitter.delay(1, 0.0), Duration::from_secs(2));
    }
}
