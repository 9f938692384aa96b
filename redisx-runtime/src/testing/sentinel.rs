//! [`RedisSentinel`]: a master with two replicas watched by three Redis Sentinels, all on free
//! loopback ports, handed out once the sentinels see the whole set; with manual failover and the
//! crash of the master.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::replicas::{Member, ReplicaSet, field, query};
use super::scratch::ScratchDir;
use super::server::RedisServer;

/// The name the sentinels monitor the master under.
const MASTER_NAME: &str = "redisx";

/// Replicas of the master.
const REPLICAS: usize = 2;

/// Sentinels, and how many of them must agree that the master is down.
const SENTINELS: usize = 3;
const QUORUM: usize = 2;

/// `sentinel down-after-milliseconds`: a master silent this long is down for a sentinel.
const DOWN_AFTER_MS: u64 = 1000;

/// `sentinel failover-timeout`: a failed failover is tried again after twice this.
const FAILOVER_TIMEOUT_MS: u64 = 5000;

/// When `SENTINEL FAILOVER` is asked again if the master has not moved (twice the failover
/// timeout: an aborted failover is over by then).
const FAILOVER_RETRY: Duration = Duration::from_millis(2 * FAILOVER_TIMEOUT_MS);

/// How long the harness waits for the sentinels: at the start (they find each other through
/// hello messages sent every 2 s) and for a failover (usually 1 to 3 s, but a failed leader
/// election is retried only after twice the failover timeout).
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(30);

/// A master with two replicas ([`ReplicaSet`]) and three Redis Sentinels monitoring it
/// (`redis-server <conf> --sentinel`, quorum 2, `down-after-milliseconds` 1000,
/// `failover-timeout` 5000), all owned by the harness (`REDISX_TEST_URL` is not used), with no
/// persistence.
///
/// [`RedisSentinel::start`] hands it out once every sentinel sees the master with its 2
/// replicas (their links up) and the 2 other sentinels. The processes are stopped and their
/// files (the sentinels' configurations, which they rewrite, in a temporary directory of the
/// deployment's own) removed when the handle is dropped, also while a panicking test unwinds.
///
/// The sentinels decide which server is the master: ask them with [`RedisSentinel::master_url`]
/// (the [`ReplicaSet`]'s primary is the master only until the first failover).
///
/// ```no_run
/// use redisx_runtime::redis;
/// use redisx_runtime::testing::RedisSentinel;
///
/// let mut sentinel = RedisSentinel::start();
/// let first = sentinel.master_url();
/// let mut master = redis::Client::open(first.as_str())?.get_connection()?;
/// let () = redis::cmd("SET").arg("k").arg("v").query(&mut master)?;
///
/// sentinel.failover(); // a replica is the master now
/// assert_ne!(sentinel.master_url(), first);
/// sentinel.kill_master(); // the sentinels promote the other one
/// let urls = sentinel.sentinel_urls(); // for a sentinel client, with `master_name()`
/// # let _ = urls;
/// # Ok::<(), redis::RedisError>(())
/// ```
#[derive(Debug)]
#[must_use = "the servers and sentinels are stopped when the handle is dropped"]
pub struct RedisSentinel {
    /// First, so that the sentinels stop before the servers they watch.
    sentinels: Vec<RedisServer>,
    servers: ReplicaSet,
    /// Last, so that it is removed once every process is stopped.
    dir: ScratchDir,
}

impl RedisSentinel {
    /// Starts a master with two replicas (in sync), then three sentinels monitoring it, and waits
    /// until every sentinel sees the master with its 2 replicas and the 2 other sentinels
    /// (`SENTINEL MASTER`: `num-slaves`, `num-other-sentinels`; `SENTINEL REPLICAS`: links up);
    /// this takes 2 to 3 s, since sentinels announce themselves every 2 s.
    ///
    /// ```no_run
    /// let sentinel = redisx_runtime::testing::RedisSentinel::start();
    /// assert_eq!(sentinel.sentinel_urls().len(), 3);
    /// ```
    ///
    /// # Panics
    /// When `redis-server` is not on `PATH` (the message says how to install it), when a
    /// process does not start (as [`RedisServer::start_owned`] and
    /// [`ServerBuilder::start_with_replicas`](super::ServerBuilder::start_with_replicas)), or
    /// when the sentinels do not see the whole set within 30 s (the message names what was not
    /// reached).
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// A builder for a set whose servers or sentinels require a password.
    ///
    /// ```no_run
    /// use redisx_runtime::testing::RedisSentinel;
    ///
    /// let set = RedisSentinel::builder()
    ///     .password("data-pw")
    ///     .sentinel_password("sentinel-pw")
    ///     .start();
    /// # let _ = set;
    /// ```
    pub fn builder() -> SentinelBuilder {
        SentinelBuilder::default()
    }

    /// The name the sentinels know the master by (`sentinel monitor <name> ...`), for a
    /// sentinel client.
    pub fn master_name(&self) -> &str {
        MASTER_NAME
    }

    /// The URLs of the three sentinels (`redis://127.0.0.1:PORT`).
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::url).collect()
    }

    /// The sentinels, for process control.
    pub fn sentinels(&self) -> &[RedisServer] {
        &self.sentinels
    }

    /// The master and its replicas as started: [`ReplicaSet::primary`] is the first master;
    /// after a failover, [`RedisSentinel::master_url`] tells which server is.
    pub fn servers(&self) -> &ReplicaSet {
        &self.servers
    }

    /// The temporary directory of the sentinels' configuration files; it is removed when the
    /// handle is dropped.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL of the master as the sentinels name it (`SENTINEL GET-MASTER-ADDR-BY-NAME`, asked
    /// of the first sentinel that answers): `redis://127.0.0.1:PORT`.
    ///
    /// ```no_run
    /// use redisx_runtime::testing::RedisSentinel;
    ///
    /// let sentinel = RedisSentinel::start();
    /// assert_eq!(sentinel.master_url(), sentinel.servers().primary_url());
    /// ```
    ///
    /// # Panics
    /// When no sentinel answers with an address.
    pub fn master_url(&self) -> String {
        let (host, port) = self
            .master_address()
            .unwrap_or_else(|e| panic!("RedisSentinel::master_url: {e}"));
        format!("redis://{host}:{port}")
    }

    /// A manual failover (`SENTINEL FAILOVER <name>`): a replica becomes the master. Waits until
    /// every sentinel names a new master address, has finished the failover, and that server
    /// says `role:master`; this takes about 2 s. The old master is turned into a replica of the
    /// new one by the sentinels some 10 s later (they wait that long before reconfiguring a
    /// server that still says it is a master).
    ///
    /// # Panics
    /// When every sentinel keeps refusing the failover, or it is not done within 30 s (the
    /// message names what was not reached).
    pub fn failover(&mut self) {
        let old = self.agreed_master("failover");
        let mut requested: Option<Instant> = None;
        self.wait_until("failover", |deployment| {
            // Asked until a sentinel accepts, and again when an accepted failover came to
            // nothing (the sentinel aborted it; one still running answers `INPROG`).
            if requested.is_none_or(|at| at.elapsed() >= FAILOVER_RETRY) {
                match deployment.request_failover() {
                    Err(e) if requested.is_none() => {
                        return Err(format!("no sentinel accepted SENTINEL FAILOVER: {e}"));
                    }
                    _ => requested = Some(Instant::now()),
                }
            }
            deployment.moved_from(old)
        });
    }

    /// Kills the current master (`SIGKILL`), as a crash would, then waits until the sentinels
    /// agree that it is down and have promoted a replica: every sentinel names the new address,
    /// has finished the failover, and that server says `role:master`. This takes 3 to 5 s; 30 s
    /// at most (a failed leader election is retried after 10 s). The killed server stays
    /// stopped.
    ///
    /// ```no_run
    /// use redisx_runtime::testing::RedisSentinel;
    ///
    /// let mut sentinel = RedisSentinel::start();
    /// let before = sentinel.master_url();
    /// sentinel.kill_master();
    /// assert_ne!(sentinel.master_url(), before);
    /// ```
    ///
    /// # Panics
    /// When the master named by the sentinels is not one of the deployment's servers, or no
    /// replica is promoted within 30 s (the message names what was not reached).
    pub fn kill_master(&mut self) {
        let old = self.agreed_master("kill_master");
        let member = self.member_at(old).unwrap_or_else(|| {
            panic!("RedisSentinel::kill_master: the master on port {old} is none of the servers")
        });
        self.servers.kill(member);
        self.wait_until("kill_master", |deployment| deployment.moved_from(old));
    }

    /// Kills the sentinels, then the master and replicas (`SIGKILL`). Their files stay until the
    /// handle is dropped.
    pub fn stop(&mut self) {
        for sentinel in &mut self.sentinels {
            sentinel.kill();
        }
        self.servers.kill(Member::Primary);
        for i in 0..self.servers.replica_count() {
            self.servers.kill(Member::Replica(i));
        }
    }

    /// `Ok` when every sentinel sees the master with its replicas (links up) and the other
    /// sentinels, else what is missing, one line per sentinel.
    fn watching(&self) -> Result<(), String> {
        let mut report = String::new();
        for (i, sentinel) in self.sentinels.iter().enumerate() {
            let mut problems = Vec::new();
            match master_state(sentinel) {
                Ok(master) => {
                    for (name, wanted) in [
                        ("flags", "master".to_owned()),
                        ("num-slaves", REPLICAS.to_string()),
                        ("num-other-sentinels", (SENTINELS - 1).to_string()),
                    ] {
                        let value = master.get(name).map_or("?", String::as_str);
                        if value != wanted {
                            problems.push(format!("{name}={value} (not {wanted})"));
                        }
                    }
                }
                Err(e) => problems.push(e),
            }
            match query::<Vec<HashMap<String, String>>>(
                sentinel,
                &["SENTINEL", "REPLICAS", MASTER_NAME],
            ) {
                Ok(replicas) => {
                    let up = replicas
                        .iter()
                        .filter(|r| {
                            r.get("flags").is_some_and(|f| f == "slave")
                                && r.get("master-link-status").is_some_and(|s| s == "ok")
                        })
                        .count();
                    if up != REPLICAS {
                        problems.push(format!("{up} replicas seen up (not {REPLICAS})"));
                    }
                }
                Err(e) => problems.push(e),
            }
            if !problems.is_empty() {
                let _ = writeln!(
                    report,
                    "sentinel {i} (port {}): {}",
                    sentinel.port(),
                    problems.join(", ")
                );
            }
        }
        if report.is_empty() {
            Ok(())
        } else {
            Err(report)
        }
    }

    /// `Ok` when every sentinel names the same master, not on port `old`, with no failover in
    /// progress, and that server says `role:master`.
    fn moved_from(&self, old: u16) -> Result<(), String> {
        let mut report = String::new();
        let mut ports = Vec::new();
        for (i, sentinel) in self.sentinels.iter().enumerate() {
            let state = master_state(sentinel).and_then(|master| {
                let flags = master.get("flags").cloned().unwrap_or_default();
                address(sentinel).map(|(_, port)| (port, flags))
            });
            match state {
                Ok((port, flags)) if port != old && flags == "master" => ports.push(port),
                Ok((port, flags)) => {
                    let _ = writeln!(
                        report,
                        "sentinel {i} (port {}) names the master on port {port} (flags {flags})",
                        sentinel.port()
                    );
                }
                Err(e) => {
                    let _ = writeln!(report, "sentinel {i} (port {}): {e}", sentinel.port());
                }
            }
        }
        ports.sort_unstable();
        ports.dedup();
        if report.is_empty() {
            match ports.as_slice() {
                &[port] => match self.role(port) {
                    Ok(role) if role == "master" => return Ok(()),
                    Ok(role) => {
                        let _ = write!(report, "the server on port {port} says role:{role}");
                    }
                    Err(e) => report.push_str(&e),
                },
                ports => {
                    let _ = write!(report, "the sentinels name different masters: {ports:?}");
                }
            }
        }
        Err(format!(
            "no new master replaces the one on port {old} yet:\n{report}"
        ))
    }

    /// Asks each sentinel in turn for `SENTINEL FAILOVER` until one accepts; their refusals
    /// otherwise (e.g. `NOGOODSLAVE` or `INPROG`).
    fn request_failover(&self) -> Result<(), String> {
        let mut refusals = Vec::new();
        for sentinel in &self.sentinels {
            match query::<String>(sentinel, &["SENTINEL", "FAILOVER", MASTER_NAME]) {
                Ok(_) => return Ok(()),
                Err(e) => refusals.push(e),
            }
        }
        Err(refusals.join("; "))
    }

    /// The master's address by the first sentinel that answers.
    fn master_address(&self) -> Result<(String, u16), String> {
        let mut errors = Vec::new();
        for sentinel in &self.sentinels {
            match address(sentinel) {
                Ok(address) => return Ok(address),
                Err(e) => errors.push(e),
            }
        }
        Err(format!(
            "no sentinel names the master: {}",
            errors.join("; ")
        ))
    }

    /// The port of the master every sentinel names, or a panic saying they disagree.
    fn agreed_master(&self, what: &str) -> u16 {
        let ports: Result<Vec<u16>, String> = self
            .sentinels
            .iter()
            .map(|sentinel| address(sentinel).map(|(_, port)| port))
            .collect();
        let mut ports = ports.unwrap_or_else(|e| panic!("RedisSentinel::{what}: {e}"));
        ports.sort_unstable();
        ports.dedup();
        match ports.as_slice() {
            &[port] => port,
            ports => panic!(
                "RedisSentinel::{what}: the sentinels name different masters (ports {ports:?}); \
                 wait for the last failover to finish"
            ),
        }
    }

    /// The member of the set listening on `port`.
    fn member_at(&self, port: u16) -> Option<Member> {
        if self.servers.primary().port() == port {
            return Some(Member::Primary);
        }
        (0..self.servers.replica_count())
            .find(|&i| self.servers.replica(i).port() == port)
            .map(Member::Replica)
    }

    /// The `role` in `INFO replication` of the server on `port`.
    fn role(&self, port: u16) -> Result<String, String> {
        let member = self
            .member_at(port)
            .ok_or_else(|| format!("the master on port {port} is none of the servers"))?;
        let info: String = query(self.servers.member(member), &["INFO", "replication"])?;
        Ok(field(&info, "role").unwrap_or("?").to_owned())
    }

    /// Runs `reached` until it is `Ok`, for at most [`SENTINEL_TIMEOUT`]; panics with its last
    /// report then.
    fn wait_until(&self, what: &str, mut reached: impl FnMut(&Self) -> Result<(), String>) {
        let deadline = Instant::now() + SENTINEL_TIMEOUT;
        loop {
            let report = match reached(self) {
                Ok(()) => return,
                Err(report) => report,
            };
            assert!(
                Instant::now() < deadline,
                "RedisSentinel::{what}: not reached after {SENTINEL_TIMEOUT:?} (sentinels on \
                 ports {:?}):\n{report}",
                self.sentinels
                    .iter()
                    .map(RedisServer::port)
                    .collect::<Vec<_>>()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// How [`RedisSentinel::builder`] starts a set: passwords for the master and replicas and for
/// the sentinels, none by default.
#[derive(Clone, Debug, Default)]
#[must_use = "the set starts with `start()`"]
pub struct SentinelBuilder {
    password: Option<String>,
    sentinel_password: Option<String>,
}

impl SentinelBuilder {
    /// The `default` user's password on the master and replicas (`requirepass`, and
    /// `masterauth` on the replicas); the sentinels are told it (`sentinel auth-pass`). Clients
    /// give it as the data password: `redis+sentinel://:PASSWORD@...`.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The sentinels' own password (`requirepass` on each sentinel, and `sentinel sentinel-pass`
    /// so that they still talk to each other). Clients give it as `sentinel_password=` in the
    /// URL, or with [`ConnectionConfig::sentinel_auth`](crate::ConnectionConfig::sentinel_auth).
    pub fn sentinel_password(mut self, password: impl Into<String>) -> Self {
        self.sentinel_password = Some(password.into());
        self
    }

    /// Starts the set as [`RedisSentinel::start`] does.
    ///
    /// # Panics
    /// As [`RedisSentinel::start`].
    pub fn start(self) -> RedisSentinel {
        // Declared before the processes: if a step panics, they are dropped (killed) first.
        let dir = ScratchDir::new("sentinel");
        let mut data = RedisServer::builder().arg("--dir").arg(dir.path());
        if let Some(password) = &self.password {
            data = data.password(password.clone());
        }
        let servers = data.start_with_replicas(REPLICAS);
        let master_port = servers.primary().port();
        let sentinels = (0..SENTINELS)
            .map(|i| start_sentinel(&dir, i, master_port, &self))
            .collect();
        let sentinel = RedisSentinel {
            sentinels,
            servers,
            dir,
        };
        sentinel.wait_until("start", RedisSentinel::watching);
        sentinel
    }
}

/// Writes the configuration of sentinel `index` into `dir` and starts it.
fn start_sentinel(
    dir: &ScratchDir,
    index: usize,
    master_port: u16,
    auth: &SentinelBuilder,
) -> RedisServer {
    let conf = dir.file(&format!("sentinel-{index}.conf"));
    let mut text = format!(
        "sentinel resolve-hostnames no\n\
         sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {QUORUM}\n\
         sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
         sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
    );
    if let Some(password) = &auth.password {
        let _ = writeln!(text, "sentinel auth-pass {MASTER_NAME} {password}");
    }
    if let Some(password) = &auth.sentinel_password {
        let _ = writeln!(text, "sentinel sentinel-pass {password}");
    }
    std::fs::write(&conf, text).unwrap_or_else(|e| {
        panic!(
            "RedisSentinel: cannot write the sentinel configuration {}: {e}",
            conf.display()
        )
    });
    let mut sentinel = RedisServer::builder()
        .config_file(conf)
        .arg("--dir")
        .arg(dir.path())
        .arg("--sentinel");
    if let Some(password) = &auth.sentinel_password {
        sentinel = sentinel.password(password.clone());
    }
    sentinel.start()
}

/// `SENTINEL MASTER <name>` on `sentinel`, as field → value.
fn master_state(sentinel: &RedisServer) -> Result<HashMap<String, String>, String> {
    query(sentinel, &["SENTINEL", "MASTER", MASTER_NAME])
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME <name>` on `sentinel`.
fn address(sentinel: &RedisServer) -> Result<(String, u16), String> {
    query::<Option<(String, u16)>>(
        sentinel,
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
    )?
    .ok_or_else(|| {
        format!(
            "the sentinel on port {} does not know `{MASTER_NAME}`",
            sentinel.port()
        )
    })
}
