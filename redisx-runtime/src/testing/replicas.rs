//! [`ReplicaSet`]: a primary with replicas (`--replicaof`), handed out once every replica is in
//! sync, with kill and restart of any member.

use std::fmt::Write as _;
use std::thread;
use std::time::{Duration, Instant};

use super::START_TIMEOUT;
use super::server::{RedisServer, ServerBuilder};

/// Arguments every member of a replica set gets before the user's own: a full sync streams the
/// snapshot over the socket at once (no 5 s delay, no `dump.rdb` written in the working
/// directory on either side).
pub(super) const REPLICATION_ARGS: [&str; 6] = [
    "--repl-diskless-sync",
    "yes",
    "--repl-diskless-sync-delay",
    "0",
    "--repl-diskless-load",
    "swapdb",
];

/// How long one probe of a member may take to connect.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The channel of the harness's sync probe: a `PUBLISH` is replicated like a write but leaves no
/// key behind. A test subscribed to every channel sees these messages while a set syncs.
pub const SYNC_CHANNEL: &str = "__redisx_testing__:sync";

/// How long one `WAIT` of the sync probe blocks, in milliseconds.
const ACK_WAIT_MS: u64 = 100;

/// One member of a [`ReplicaSet`]: the primary, or the replica at an index (from 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Member {
    /// The primary, the only member that accepts writes.
    Primary,
    /// The replica at this index, `0..replica_count()`.
    Replica(usize),
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Member::Primary => f.write_str("the primary"),
            Member::Replica(i) => write!(f, "replica {i}"),
        }
    }
}

/// A primary `redis-server` with replicas, each on its own free loopback port, all owned by the
/// harness (`REDISX_TEST_URL` is not used). Made by [`RedisServer::with_replicas`] or
/// [`ServerBuilder::start_with_replicas`]; every member is stopped when the set is dropped.
///
/// A set is handed out in sync ([`ReplicaSet::wait_in_sync`]): every replica reports
/// `master_link_status:up` and has acknowledged a write of the primary. Replication stays
/// asynchronous after that; a test that must know a write reached the replicas sends
/// `WAIT numreplicas timeout` on the connection that wrote (in redisx: a
/// [`DedicatedConnection`](crate::DedicatedConnection)).
///
/// ```no_run
/// use redisx_runtime::redis;
/// use redisx_runtime::testing::{Member, RedisServer};
///
/// let mut set = RedisServer::with_replicas(2);
/// let mut primary = redis::Client::open(set.primary_url())?.get_connection()?;
/// let () = redis::cmd("SET").arg("k").arg("v").query(&mut primary)?;
/// let acked: usize = redis::cmd("WAIT").arg(2).arg(2000).query(&mut primary)?;
/// assert_eq!(acked, 2);
/// for url in set.replica_urls() {
///     let mut replica = redis::Client::open(url)?.get_connection()?;
///     let v: String = redis::cmd("GET").arg("k").query(&mut replica)?;
///     assert_eq!(v, "v");
/// }
/// set.restart(Member::Replica(1)); // back in sync when it returns
/// # Ok::<(), redis::RedisError>(())
/// ```
#[derive(Debug)]
#[must_use = "the servers are stopped when the set is dropped"]
pub struct ReplicaSet {
    primary: RedisServer,
    replicas: Vec<RedisServer>,
}

impl RedisServer {
    /// Starts a primary and `replicas` replicas of it (default configuration) and waits until
    /// every replica is in sync; see [`ReplicaSet`] and, for a password or extra arguments,
    /// [`ServerBuilder::start_with_replicas`].
    ///
    /// # Panics
    /// As [`RedisServer::start_owned`], or when the replicas are not in sync within
    /// [`START_TIMEOUT`] (the message holds every member's replication state).
    pub fn with_replicas(replicas: usize) -> ReplicaSet {
        Self::builder().start_with_replicas(replicas)
    }
}

impl ServerBuilder {
    /// Starts a primary with this configuration and `replicas` replicas of it, which get the
    /// same configuration plus `--replicaof` (and `--masterauth` when a
    /// [`password`](ServerBuilder::password) is set), then waits until every replica is in sync.
    ///
    /// ```no_run
    /// use redisx_runtime::testing::RedisServer;
    ///
    /// let set = RedisServer::builder().password("pw").start_with_replicas(1);
    /// let url = set.primary().url_with_auth("", "pw");
    /// # let _ = url;
    /// ```
    ///
    /// # Panics
    /// As [`ServerBuilder::start`], or when the replicas are not in sync within
    /// [`START_TIMEOUT`] (the message holds every member's replication state).
    pub fn start_with_replicas(mut self, replicas: usize) -> ReplicaSet {
        let mut args: Vec<_> = REPLICATION_ARGS.iter().map(Into::into).collect();
        args.append(&mut self.args);
        self.args = args;
        let primary = self.clone().start();
        let mut replica = self
            .arg("--replicaof")
            .arg("127.0.0.1")
            .arg(primary.port().to_string());
        if let Some(password) = replica.password.clone() {
            replica = replica.arg("--masterauth").arg(password);
        }
        let replicas = (0..replicas).map(|_| replica.clone().start()).collect();
        let set = ReplicaSet { primary, replicas };
        set.wait_in_sync();
        set
    }
}

impl ReplicaSet {
    /// The primary.
    pub fn primary(&self) -> &RedisServer {
        &self.primary
    }

    /// The primary, for process control ([`RedisServer::kill`], ...). After a restart of the
    /// primary, wait with [`ReplicaSet::wait_in_sync`], or use [`ReplicaSet::restart`].
    pub fn primary_mut(&mut self) -> &mut RedisServer {
        &mut self.primary
    }

    /// The replicas, in start order.
    pub fn replicas(&self) -> &[RedisServer] {
        &self.replicas
    }

    /// How many replicas the set has.
    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// The replica at `index`.
    ///
    /// # Panics
    /// When `index` is not below [`ReplicaSet::replica_count`].
    pub fn replica(&self, index: usize) -> &RedisServer {
        self.member(Member::Replica(index))
    }

    /// The replica at `index`, for process control.
    ///
    /// # Panics
    /// When `index` is not below [`ReplicaSet::replica_count`].
    pub fn replica_mut(&mut self, index: usize) -> &mut RedisServer {
        self.member_mut(Member::Replica(index))
    }

    /// The URL of the primary (with no credentials; see [`RedisServer::url_with_auth`]).
    pub fn primary_url(&self) -> String {
        self.primary.url()
    }

    /// The URLs of the replicas, in start order (with no credentials).
    pub fn replica_urls(&self) -> Vec<String> {
        self.replicas.iter().map(RedisServer::url).collect()
    }

    /// One member.
    ///
    /// # Panics
    /// On a replica index out of range.
    pub fn member(&self, member: Member) -> &RedisServer {
        match member {
            Member::Primary => &self.primary,
            Member::Replica(i) => self.replicas.get(i).unwrap_or_else(|| {
                panic!(
                    "ReplicaSet: no replica {i}, the set has {} replicas",
                    self.replicas.len()
                )
            }),
        }
    }

    /// One member, for process control.
    ///
    /// # Panics
    /// On a replica index out of range.
    pub fn member_mut(&mut self, member: Member) -> &mut RedisServer {
        let count = self.replicas.len();
        match member {
            Member::Primary => &mut self.primary,
            Member::Replica(i) => self.replicas.get_mut(i).unwrap_or_else(|| {
                panic!("ReplicaSet: no replica {i}, the set has {count} replicas")
            }),
        }
    }

    /// Kills a member (`SIGKILL`), as a crash would; the others keep running (replicas of a
    /// killed primary keep retrying to connect). Bring it back with [`ReplicaSet::start_again`].
    ///
    /// # Panics
    /// On a replica index out of range.
    pub fn kill(&mut self, member: Member) {
        self.member_mut(member).kill();
    }

    /// Starts a killed member again on its port and waits until the set is in sync. A primary
    /// comes back empty (nothing is persisted) and its replicas follow it: their data is gone
    /// too once they resynced.
    ///
    /// # Panics
    /// As [`RedisServer::start_again`] and [`ReplicaSet::wait_in_sync`].
    pub fn start_again(&mut self, member: Member) {
        self.member_mut(member).start_again();
        self.wait_in_sync();
    }

    /// Kills a member and starts it again on its port, then waits until the set is in sync: a
    /// restarted replica gets the primary's data again through a full sync; a restarted primary
    /// comes back empty and so do its replicas.
    ///
    /// # Panics
    /// As [`RedisServer::restart`] and [`ReplicaSet::wait_in_sync`].
    pub fn restart(&mut self, member: Member) {
        self.member_mut(member).restart();
        self.wait_in_sync();
    }

    /// Waits until every replica reports `master_link_status:up`, no sync in progress, has
    /// replicated the primary's offset and is listed online by the primary, and then until
    /// every replica acknowledges a fresh write (a `PUBLISH` on [`SYNC_CHANNEL`] followed by
    /// `WAIT`), for at most [`START_TIMEOUT`]. After a full sync this takes about a second: a
    /// replica gets the primary's commands only from its first acknowledgement, which it sends
    /// on its once-a-second timer.
    ///
    /// # Panics
    /// When a member is stopped, or the set is not in sync in time; the message holds every
    /// member's replication state.
    pub fn wait_in_sync(&self) {
        if let Some(stopped) = self.stopped_member() {
            panic!(
                "ReplicaSet::wait_in_sync: {stopped} is stopped; start it again first \
                 (ReplicaSet::start_again)"
            );
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let report = match self.sync_report() {
                Ok(()) => return,
                Err(report) => report,
            };
            assert!(
                Instant::now() < deadline,
                "ReplicaSet: the replicas are not in sync with the primary on port {} after \
                 {START_TIMEOUT:?}:\n{report}",
                self.primary.port()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn stopped_member(&self) -> Option<Member> {
        if self.primary.pid().is_none() {
            return Some(Member::Primary);
        }
        (0..self.replicas.len())
            .find(|&i| self.replicas[i].pid().is_none())
            .map(Member::Replica)
    }

    /// `Ok` when every replica is in sync, else what is not (one line per member).
    fn sync_report(&self) -> Result<(), String> {
        let primary = info_replication(&self.primary)?;
        let offset: u64 = field(&primary, "master_repl_offset")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("the primary: no master_repl_offset in\n{primary}"))?;
        let mut report = String::new();
        for (i, replica) in self.replicas.iter().enumerate() {
            let info = match info_replication(replica) {
                Ok(info) => info,
                Err(e) => {
                    let _ = writeln!(report, "replica {i}: {e}");
                    continue;
                }
            };
            let link = field(&info, "master_link_status");
            let syncing = field(&info, "master_sync_in_progress");
            let replicated: Option<u64> =
                field(&info, "slave_repl_offset").and_then(|v| v.parse().ok());
            // The primary's view: after a diskless sync it streams writes to a replica (and
            // counts it in `WAIT`) only once the replica's first `REPLCONF ACK` made it online.
            let online = primary_state(&primary, replica.port());
            let in_sync = link == Some("up")
                && syncing == Some("0")
                && replicated.is_some_and(|r| r >= offset)
                && online == Some("online");
            if !in_sync {
                let _ = writeln!(
                    report,
                    "replica {i} (port {}): master_link_status={} master_sync_in_progress={} \
                     slave_repl_offset={} (primary at {offset}), state on the primary={}",
                    replica.port(),
                    link.unwrap_or("?"),
                    syncing.unwrap_or("?"),
                    replicated.map_or_else(|| "?".to_owned(), |r| r.to_string()),
                    online.unwrap_or("not connected"),
                );
            }
        }
        if !report.is_empty() {
            return Err(report);
        }
        self.acknowledged()
    }

    /// `Ok` when every replica acknowledges a fresh write of the primary (`PUBLISH` on
    /// [`SYNC_CHANNEL`], which the primary replicates but which leaves no key, then `WAIT`).
    ///
    /// The replicas' `INFO` is not enough: after a diskless sync the primary lists a replica as
    /// online but streams commands to it only from its first `REPLCONF ACK`, which a replica
    /// sends on its once-a-second timer; until then `WAIT` does not count it.
    fn acknowledged(&self) -> Result<(), String> {
        let what = format!(
            "PUBLISH + WAIT on the primary (port {})",
            self.primary.port()
        );
        let mut conn = connect(&self.primary).map_err(|e| format!("{what}: {e}"))?;
        redis::cmd("PUBLISH")
            .arg(SYNC_CHANNEL)
            .arg("sync")
            .query::<i64>(&mut conn)
            .map_err(|e| format!("{what}: {e}"))?;
        let acked: usize = redis::cmd("WAIT")
            .arg(self.replicas.len())
            .arg(ACK_WAIT_MS)
            .query(&mut conn)
            .map_err(|e| format!("{what}: {e}"))?;
        if acked >= self.replicas.len() {
            Ok(())
        } else {
            Err(format!(
                "{acked} of {} replicas acknowledged a write of the primary within {ACK_WAIT_MS} \
                 ms",
                self.replicas.len()
            ))
        }
    }
}

/// A connection to `server` as the harness's admin (with the password, if any), with short
/// timeouts: also used by the cluster and the sentinels.
pub(super) fn connect(server: &RedisServer) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(server.admin_url())?;
    let conn = client.get_connection_with_timeout(PROBE_TIMEOUT)?;
    conn.set_read_timeout(Some(Duration::from_secs(1)))?;
    Ok(conn)
}

/// Runs a command of words (`["CLUSTER", "INFO"]`) on `node` as the harness's admin, over a
/// fresh connection ([`connect`]); the error names the command and the port.
pub(super) fn query<T: redis::FromRedisValue>(
    node: &RedisServer,
    words: &[&str],
) -> Result<T, String> {
    let what = format!("{} on port {}", words.join(" "), node.port());
    let (name, args) = words
        .split_first()
        .ok_or_else(|| format!("{what}: an empty command"))?;
    let mut conn = connect(node).map_err(|e| format!("{what}: {e}"))?;
    redis::cmd(name)
        .arg(args)
        .query(&mut conn)
        .map_err(|e| format!("{what}: {e}"))
}

/// The text of `INFO replication` on `server`.
fn info_replication(server: &RedisServer) -> Result<String, String> {
    let what = format!("INFO replication on port {}", server.port());
    let mut conn = connect(server).map_err(|e| format!("{what}: {e}"))?;
    redis::cmd("INFO")
        .arg("replication")
        .query::<String>(&mut conn)
        .map_err(|e| format!("{what}: {e}"))
}

/// The `state` the primary's `INFO replication` gives the replica listening on `port` (its
/// `slaveN:ip=..,port=..,state=..,..` line), `None` when the primary does not list it.
fn primary_state(info: &str, port: u16) -> Option<&str> {
    let port = port.to_string();
    info.lines()
        .filter(|line| line.starts_with("slave"))
        .filter_map(|line| line.split_once(':').map(|(_, fields)| fields.trim()))
        .find(|fields| {
            fields
                .split(',')
                .any(|f| f.strip_prefix("port=") == Some(port.as_str()))
        })
        .and_then(|fields| fields.split(',').find_map(|f| f.strip_prefix("state=")))
}

/// The value of `name:value` in an `INFO` text.
pub(super) fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

#[cfg(test)]
mod tests {
    use super::{field, primary_state};

    #[test]
    fn reads_info_fields() {
        let info =
            "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nslave_repl_offset:42\r\n";
        assert_eq!(field(info, "master_link_status"), Some("up"));
        assert_eq!(field(info, "slave_repl_offset"), Some("42"));
        assert_eq!(field(info, "role"), Some("slave"));
        assert_eq!(field(info, "slave_repl"), None);
    }

    #[test]
    fn reads_the_state_of_a_replica_on_the_primary() {
        let info = "role:master\r\nconnected_slaves:2\r\n\
                    slave0:ip=127.0.0.1,port=7001,state=wait_bgsave,offset=0,lag=0\r\n\
                    slave1:ip=127.0.0.1,port=7002,state=online,offset=14,lag=0\r\n\
                    master_repl_offset:14\r\n";
        assert_eq!(primary_state(info, 7001), Some("wait_bgsave"));
        assert_eq!(primary_state(info, 7002), Some("online"));
        assert_eq!(primary_state(info, 700), None);
    }
}
