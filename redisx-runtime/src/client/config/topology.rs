//! The three shapes of Redis a [`ConnectionConfig`] reaches: one server, a Redis Cluster
//! (seed nodes), or a master found through Sentinel; their constructors, setters and URLs.

use std::fmt;

use super::ConnectionConfig;
use crate::error::{Error, ErrorCode, Result};

/// Which shape of Redis a [`ConnectionConfig`] connects to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Nodes {
    /// One server at `host:port` (or the Unix socket).
    #[default]
    Single,
    /// A Redis Cluster, discovered from these seed nodes (the first is also `host:port`).
    Cluster(Vec<(String, u16)>),
    /// The master that these sentinels name.
    Sentinel(SentinelSet),
}

/// The sentinels of a [`ConnectionConfig::sentinel`] config, and how to talk to them.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SentinelSet {
    pub(crate) master_name: String,
    pub(crate) nodes: Vec<(String, u16)>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) tls: bool,
}

impl fmt::Debug for SentinelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelSet")
            .field("master_name", &self.master_name)
            .field("nodes", &self.nodes)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .finish()
    }
}

impl ConnectionConfig {
    /// A config for a Redis Cluster, discovered from `seeds` (any reachable subset of its
    /// nodes). Commands go to the master of their key's slot, follow `MOVED`/`ASK` redirects
    /// and failovers (redis-rs's cluster client); the URL form is
    /// `redis+cluster://[user[:password]@]host1:port1,host2:port2` (`rediss+cluster://` for TLS).
    ///
    /// ```
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// let cfg = ConnectionConfig::cluster([("10.0.0.1", 7000), ("10.0.0.2", 7000)]).password("s3cret");
    /// assert!(cfg.is_cluster());
    /// assert_eq!(cfg.cluster_seeds_value().len(), 2);
    /// assert_eq!(cfg.to_string(), "redis+cluster://:***@10.0.0.1:7000,10.0.0.2:7000");
    /// assert_eq!(
    ///     ConnectionConfig::from_url("redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7000")?.cluster_seeds_value(),
    ///     cfg.cluster_seeds_value(),
    /// );
    /// # Ok::<(), redisx_runtime::Error>(())
    /// ```
    pub fn cluster<H: Into<String>>(seeds: impl IntoIterator<Item = (H, u16)>) -> Self {
        let seeds: Vec<(String, u16)> = seeds.into_iter().map(|(h, p)| (h.into(), p)).collect();
        let (host, port) = seeds.first().cloned().unwrap_or_default();
        let mut cfg = Self::new(host, port);
        cfg.nodes = Nodes::Cluster(seeds);
        cfg
    }

    /// A config for the master that the sentinels at `sentinels` know as `master_name`. The
    /// master is looked up through the sentinels when connecting, and again after a failover
    /// (a `+switch-master` event, a `READONLY` reply, a lost connection), so connections follow
    /// the new master without a restart. The user, password, database and TLS settings are the
    /// master's; the sentinels' own are [`sentinel_auth`](Self::sentinel_auth) and
    /// [`sentinel_tls`](Self::sentinel_tls). The URL form is
    /// `redis+sentinel://[user[:password]@]host1:26379,host2:26379/master_name[/db]`, with
    /// `?sentinel_user=U&sentinel_password=P` for the sentinels' credentials.
    ///
    /// ```
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// let cfg = ConnectionConfig::sentinel("orders", [("10.0.0.7", 26379), ("10.0.0.8", 26379)])
    ///     .password("s3cret")
    ///     .sentinel_auth(None::<String>, "sentinel-s3cret");
    /// assert_eq!(cfg.sentinel_master_value(), Some("orders"));
    /// assert_eq!(cfg.to_string(), "redis+sentinel://:***@10.0.0.7:26379,10.0.0.8:26379/orders");
    /// assert!(!format!("{cfg:?}").contains("s3cret"));
    /// # Ok::<(), redisx_runtime::Error>(())
    /// ```
    pub fn sentinel<H: Into<String>>(
        master_name: impl Into<String>,
        sentinels: impl IntoIterator<Item = (H, u16)>,
    ) -> Self {
        let nodes: Vec<(String, u16)> = sentinels.into_iter().map(|(h, p)| (h.into(), p)).collect();
        let (host, port) = nodes.first().cloned().unwrap_or_default();
        let mut cfg = Self::new(host, port);
        cfg.nodes = Nodes::Sentinel(SentinelSet {
            master_name: master_name.into(),
            nodes,
            username: None,
            password: None,
            tls: false,
        });
        cfg
    }

    /// Sets the user (optional) and password the sentinels ask for (`requirepass` or an ACL
    /// user in the sentinels' configuration); no effect on other configs.
    ///
    /// ```
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// let cfg = ConnectionConfig::sentinel("orders", [("10.0.0.7", 26379)])
    ///     .sentinel_auth(Some("watcher"), "s3cret");
    /// assert_eq!(cfg.sentinel_username_value(), Some("watcher"));
    /// ```
    #[must_use]
    pub fn sentinel_auth(
        mut self,
        username: Option<impl Into<String>>,
        password: impl Into<String>,
    ) -> Self {
        if let Nodes::Sentinel(set) = &mut self.nodes {
            set.username = username.map(Into::into);
            set.password = Some(password.into());
        }
        self
    }

    /// Talks TLS to the sentinels (with the CA and client certificate of the config); no
    /// effect on other configs. The master's TLS is [`tls`](Self::tls).
    ///
    /// ```
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// let cfg = ConnectionConfig::sentinel("orders", [("10.0.0.7", 26379)]).sentinel_tls(true);
    /// assert!(cfg.sentinel_tls_value());
    /// ```
    #[must_use]
    pub fn sentinel_tls(mut self, on: bool) -> Self {
        if let Nodes::Sentinel(set) = &mut self.nodes {
            set.tls = on;
        }
        self
    }

    /// Sends read-only commands to replicas: on a cluster config every read-only command
    /// (`GET`, `MGET`, `EXISTS`, ...) to a replica of its slot (redis-rs's read routing), on a
    /// sentinel config the cache's reads (`GET`, `MGET`) to a replica the sentinels name (a
    /// connection of its own, moved on a failover; the master when no replica is healthy).
    /// Scripts and writes still go to the master. A replica lags its master, so a read may
    /// miss a write made a moment ago:
    /// use it for a cache whose data may be stale (a client of its own for the cache,
    /// `CacheConfig::client`). Locks, rate limits, idempotency and streams need their reads on
    /// the master: building one of them on such a client is a `CFG_INVALID` error. A single
    /// server config refuses it; the URL form is `?read_from_replicas=true`.
    ///
    /// ```
    /// use redisx_runtime::ConnectionConfig;
    ///
    /// let cfg = ConnectionConfig::cluster([("10.0.0.1", 7000)]).read_from_replicas(true);
    /// assert!(cfg.read_from_replicas_value());
    /// assert_eq!(cfg.to_string(), "redis+cluster://10.0.0.1:7000?read_from_replicas=true");
    /// ```
    #[must_use]
    pub fn read_from_replicas(mut self, on: bool) -> Self {
        self.read_from_replicas = on;
        self
    }

    /// Whether read-only commands go to replicas ([`read_from_replicas`](Self::read_from_replicas)).
    pub fn read_from_replicas_value(&self) -> bool {
        self.read_from_replicas
    }

    /// Whether this config reaches a Redis Cluster ([`ConnectionConfig::cluster`]).
    pub fn is_cluster(&self) -> bool {
        matches!(self.nodes, Nodes::Cluster(_))
    }

    /// The seed nodes of a cluster config; empty for the others.
    pub fn cluster_seeds_value(&self) -> &[(String, u16)] {
        match &self.nodes {
            Nodes::Cluster(seeds) => seeds,
            _ => &[],
        }
    }

    /// The master name of a sentinel config ([`ConnectionConfig::sentinel`]).
    pub fn sentinel_master_value(&self) -> Option<&str> {
        match &self.nodes {
            Nodes::Sentinel(set) => Some(&set.master_name),
            _ => None,
        }
    }

    /// The sentinel addresses of a sentinel config; empty for the others.
    pub fn sentinel_nodes_value(&self) -> &[(String, u16)] {
        match &self.nodes {
            Nodes::Sentinel(set) => &set.nodes,
            _ => &[],
        }
    }

    /// The user name the sentinels are asked with, if any.
    pub fn sentinel_username_value(&self) -> Option<&str> {
        match &self.nodes {
            Nodes::Sentinel(set) => set.username.as_deref(),
            _ => None,
        }
    }

    /// Whether the sentinels are reached over TLS.
    pub fn sentinel_tls_value(&self) -> bool {
        matches!(&self.nodes, Nodes::Sentinel(set) if set.tls)
    }

    /// This config aimed at one server, `host:port`, keeping the credentials, database, TLS
    /// settings, timeouts and client name: a cluster node or the master a sentinel named.
    pub(crate) fn single_node(&self, host: &str, port: u16) -> Self {
        let mut cfg = self.clone();
        host.clone_into(&mut cfg.host);
        cfg.port = port;
        cfg.nodes = Nodes::Single;
        cfg
    }

    /// The config a sentinel is asked with: its address, the sentinels' credentials and TLS.
    pub(crate) fn sentinel_node(&self, set: &SentinelSet, host: &str, port: u16) -> Self {
        let mut cfg = self.single_node(host, port);
        cfg.username.clone_from(&set.username);
        cfg.password.clone_from(&set.password);
        cfg.tls = set.tls;
        cfg.db = 0;
        cfg.client_name = None;
        cfg.resp3 = false;
        cfg
    }

    /// Checks of a cluster or sentinel config: nodes given, and no option it cannot honour.
    pub(super) fn validate_nodes(&self) -> Result<()> {
        let bad = |msg: &str| {
            Err(Error::new(ErrorCode::ConfigInvalid, msg.to_owned())
                .with_context("server", self.to_string()))
        };
        if self.read_from_replicas && matches!(self.nodes, Nodes::Single) {
            return bad(
                "`read_from_replicas` is for a cluster or sentinel config (`redis+cluster://`, \
                 `redis+sentinel://`); a single server has no replicas to read from",
            );
        }
        match &self.nodes {
            Nodes::Single => Ok(()),
            Nodes::Cluster(seeds) if seeds.is_empty() => {
                bad("a cluster config needs at least one seed node")
            }
            Nodes::Cluster(_) if self.db != 0 => {
                bad("Redis Cluster has only database 0: remove the database from the config")
            }
            #[cfg(feature = "pool")]
            Nodes::Cluster(_) if matches!(self.driver, super::DriverKind::Pool { .. }) => bad(
                "a cluster config runs on redis-rs's cluster connection, which multiplexes \
                 every node's connection: use `DriverKind::Multiplexed` (the default)",
            ),
            Nodes::Cluster(_) => {
                if let Some(name) = &self.client_name {
                    tracing::warn!(target: "redisx", server = %self, client_name = %name, "a cluster's connections are opened by redis-rs, which cannot name them: CLIENT SETNAME is not sent");
                }
                Ok(())
            }
            Nodes::Sentinel(set) if set.nodes.is_empty() => {
                bad("a sentinel config needs at least one sentinel address")
            }
            Nodes::Sentinel(set) if set.master_name.is_empty() => {
                bad("a sentinel config needs the master's name (`sentinel monitor <name> ..`)")
            }
            #[cfg(feature = "pool")]
            Nodes::Sentinel(_) if matches!(self.driver, super::DriverKind::Pool { .. }) => bad(
                "a sentinel config follows failovers on the multiplexed driver only: use \
                 `DriverKind::Multiplexed` (the default)",
            ),
            Nodes::Sentinel(_) => Ok(()),
        }
    }

    /// Writes the URL form of a cluster or sentinel config; `false` for a single server.
    pub(super) fn fmt_nodes(&self, f: &mut fmt::Formatter<'_>) -> Result<bool, fmt::Error> {
        let (scheme, nodes, tail) = match &self.nodes {
            Nodes::Single => return Ok(false),
            Nodes::Cluster(seeds) => ("cluster", seeds, String::new()),
            Nodes::Sentinel(set) => {
                let db = if self.db == 0 {
                    String::new()
                } else {
                    format!("/{}", self.db)
                };
                ("sentinel", &set.nodes, format!("/{}{db}", set.master_name))
            }
        };
        write!(
            f,
            "{}+{scheme}://",
            if self.tls { "rediss" } else { "redis" }
        )?;
        self.fmt_userinfo(f)?;
        for (i, (host, port)) in nodes.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            if host.contains(':') {
                write!(f, "{sep}[{host}]:{port}")?;
            } else {
                write!(f, "{sep}{host}:{port}")?;
            }
        }
        f.write_str(&tail)?;
        if self.read_from_replicas {
            f.write_str("?read_from_replicas=true")?;
        }
        Ok(true)
    }
}

/// Parses `redis+cluster://` and `redis+sentinel://` URLs (and their `rediss+` forms): the
/// host list is cut out, the first host put back, and the rest read as a `redis://` URL.
pub(super) fn parse_multi_host(url: &str, bad: &dyn Fn(&str) -> Error) -> Result<ConnectionConfig> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("missing `://`"))?;
    let (tls, kind) = match scheme {
        "redis+cluster" => (false, "cluster"),
        "rediss+cluster" => (true, "cluster"),
        "redis+sentinel" => (false, "sentinel"),
        "rediss+sentinel" => (true, "sentinel"),
        other => return Err(bad(&format!("unsupported scheme `{other}`"))),
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(authority_end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let default_port = if kind == "cluster" { 6379 } else { 26379 };
    let mut nodes = Vec::new();
    for host in hosts.split(',') {
        nodes.push(
            parse_host_port(host, default_port)
                .ok_or_else(|| bad(&format!("`{host}` is not `host[:port]` in the host list")))?,
        );
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut path = path.trim_matches('/').splitn(2, '/');
    let master_name = path.next().unwrap_or_default().to_owned();
    let db = path.next().unwrap_or_default();
    if kind == "cluster" && !master_name.is_empty() {
        return Err(bad(
            "a cluster URL has no path (Redis Cluster has only database 0)",
        ));
    }
    if kind == "sentinel" && master_name.is_empty() {
        return Err(bad(
            "a sentinel URL names the master: `redis+sentinel://host:26379/mymaster`",
        ));
    }
    // Everything but the host list and the master name is read as a `redis://` URL.
    let mut single = format!(
        "redis{}://{userinfo}{}",
        if tls { "s" } else { "" },
        hosts.split(',').next().unwrap_or_default()
    );
    if !db.is_empty() {
        single.push('/');
        single.push_str(db);
    }
    let (mut sentinel_user, mut sentinel_password) = (None, None);
    let mut read_from_replicas = false;
    if let Some(query) = query {
        let mut kept = Vec::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("sentinel_user", v)) if kind == "sentinel" => {
                    sentinel_user = Some(super::url::percent_decode(v));
                }
                Some(("read_from_replicas", v)) => {
                    read_from_replicas = match v {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => {
                            return Err(bad(&format!(
                                "`read_from_replicas={v}`; expected `true` or `false`"
                            )));
                        }
                    };
                }
                Some(("sentinel_password", v)) if kind == "sentinel" => {
                    sentinel_password = Some(super::url::percent_decode(v));
                }
                _ => kept.push(pair),
            }
        }
        if !kept.is_empty() {
            single.push('?');
            single.push_str(&kept.join("&"));
        }
    }
    let parsed = super::url::parse_single(&single, bad)?;
    let mut cfg = if kind == "cluster" {
        ConnectionConfig::cluster(nodes)
    } else {
        let cfg = ConnectionConfig::sentinel(master_name, nodes);
        match sentinel_password {
            Some(pw) => cfg.sentinel_auth(sentinel_user, pw),
            None if sentinel_user.is_some() => {
                return Err(bad("`sentinel_user` needs `sentinel_password`"));
            }
            None => cfg,
        }
    };
    let nodes = std::mem::take(&mut cfg.nodes);
    cfg = parsed;
    cfg.nodes = nodes;
    cfg.read_from_replicas = read_from_replicas;
    if let Nodes::Sentinel(set) = &mut cfg.nodes {
        set.tls = tls;
    }
    Ok(cfg)
}

fn parse_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(v6) = s.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        let port = match rest.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if rest.is_empty() => default_port,
            None => return None,
        };
        return (!host.is_empty()).then(|| (host.to_owned(), port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (s, default_port),
    };
    (!host.is_empty() && !host.contains(['@', '/', ':'])).then(|| (host.to_owned(), port))
}
