//! [`RedisCluster`]: a Redis Cluster of `redis-server` nodes (masters and their replicas) on free
//! loopback ports, its slots assigned by `redis-cli --cluster create`, handed out once every node
//! agrees that it is whole; with manual failover, kill and restart of any node.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::find_on_path;
use super::process::Watched;
use super::replicas::{REPLICATION_ARGS, query};
use super::scratch::ScratchDir;
use super::server::RedisServer;

mod state;

/// `--cluster-node-timeout` in milliseconds: a master unreachable this long is suspected failing,
/// and its replica is promoted about a second or two later.
const NODE_TIMEOUT_MS: u64 = 1000;

/// How long `redis-cli --cluster create` may run (it usually takes about a second).
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the harness waits for the cluster to be whole: after the start, a failover or a
/// restart.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(20);

/// When `CLUSTER FAILOVER` is sent again if the replica did not take over (Redis gives up a
/// manual failover after 5 s).
const FAILOVER_RETRY: Duration = Duration::from_secs(6);

/// The message of the panic when `redis-cli` cannot be found.
const CLI_NOT_FOUND: &str = "redis-cli not found on PATH; it comes with redis-server \
     (`apt-get install redis-tools` on Debian/Ubuntu, `brew install redis`)";

/// A Redis Cluster for a test: `masters × (1 + replicas_per_master)` nodes, each a
/// `redis-server --cluster-enabled yes` on a free loopback port (and a cluster bus port of its
/// own), all owned by the harness (`REDISX_TEST_URL` is not used), with no persistence.
///
/// [`RedisCluster::start`] hands the cluster out whole ([`RedisCluster::health`]): every node
/// reports `cluster_state:ok` and all 16384 slots assigned, every replica is attached to its
/// master, and every node sees every other as it sees itself. The nodes are stopped and their
/// files (the `nodes.conf` of each, in a temporary directory of the cluster's own) removed when
/// the handle is dropped, also while a panicking test unwinds.
///
/// Nodes are named by their index in [`RedisCluster::nodes`] (start order). Roles change with
/// failovers, so [`RedisCluster::masters`] and [`RedisCluster::replicas`] ask the nodes.
///
/// ```no_run
/// use redisx_runtime::redis;
/// use redisx_runtime::testing::RedisCluster;
///
/// let mut cluster = RedisCluster::start(3, 1);
/// assert_eq!(cluster.masters().len(), 3);
/// let seeds = cluster.seed_urls(); // for a cluster client
/// # let _ = seeds;
/// let mut node = redis::Client::open(cluster.nodes()[0].url())?.get_connection()?;
/// let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut node)?;
/// assert!(info.contains("cluster_state:ok"));
///
/// cluster.failover(0); // the first master's replica takes over
/// let master = cluster.masters()[0];
/// cluster.kill(master); // its replica is promoted a second or two later
/// cluster.wait_ok();
/// cluster.start_again(master); // back, as a replica of the promoted node
/// # Ok::<(), redis::RedisError>(())
/// ```
#[derive(Debug)]
#[must_use = "the nodes are stopped when the cluster is dropped"]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// The cluster node id of each node; kept in its `nodes.conf`, so a restart keeps it.
    ids: Vec<String>,
    /// Last, so that it is removed once the nodes are stopped.
    dir: ScratchDir,
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas_per_master` replicas each, assigns the slots with
    /// `redis-cli --cluster create ... --cluster-replicas N` and waits until the cluster is
    /// whole (see [`RedisCluster::health`]); this takes about two seconds.
    ///
    /// ```no_run
    /// let cluster = redisx_runtime::testing::RedisCluster::start(3, 1);
    /// assert_eq!(cluster.nodes().len(), 6);
    /// ```
    ///
    /// # Panics
    /// When `masters` is below 3 (Redis Cluster's minimum), when `redis-server` or `redis-cli`
    /// is not on `PATH` (the message says how to install them), when a node does not start
    /// (as [`RedisServer::start_owned`]), when `redis-cli` fails (the message holds its output)
    /// or when the cluster is not whole within 20 s (the message names what was not reached).
    pub fn start(masters: usize, replicas_per_master: usize) -> Self {
        assert!(
            masters >= 3,
            "RedisCluster::start: a Redis Cluster needs at least 3 masters (redis-cli --cluster \
             create refuses fewer), not {masters}"
        );
        let cli = find_on_path("redis-cli").unwrap_or_else(|| panic!("{CLI_NOT_FOUND}"));
        // Declared before the nodes: if a step panics, the nodes are dropped (killed) first.
        let dir = ScratchDir::new("cluster");
        let total = masters * (1 + replicas_per_master);
        let nodes: Vec<RedisServer> = (0..total).map(|i| start_node(&dir, i)).collect();
        create(&cli, &nodes, replicas_per_master);
        let ids = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                query::<String>(node, &["CLUSTER", "MYID"])
                    .unwrap_or_else(|e| panic!("RedisCluster::start: node {i}: {e}"))
            })
            .collect();
        let cluster = RedisCluster { nodes, ids, dir };
        cluster.wait_until("start", Self::health);
        cluster
    }

    /// Every node, running or not, in start order: the index of a node here is how the other
    /// methods name it.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The node at `index`.
    ///
    /// # Panics
    /// When `index` is not below the number of nodes.
    pub fn node(&self, index: usize) -> &RedisServer {
        self.nodes.get(index).unwrap_or_else(|| {
            panic!(
                "RedisCluster: no node {index}, the cluster has {} nodes",
                self.nodes.len()
            )
        })
    }

    /// The cluster node id of the node at `index` (`CLUSTER MYID`; it survives restarts).
    ///
    /// # Panics
    /// When `index` is not below the number of nodes.
    pub fn node_id(&self, index: usize) -> &str {
        self.node(index);
        &self.ids[index]
    }

    /// The running nodes that are masters now, each by its own `CLUSTER NODES` line, in start
    /// order. A killed master is not listed, nor is its replica before it was promoted.
    ///
    /// # Panics
    /// When a running node does not answer `CLUSTER NODES`.
    pub fn masters(&self) -> Vec<usize> {
        self.own_lines("masters")
            .into_iter()
            .filter(|(_, line)| line.is_master())
            .map(|(i, _)| i)
            .collect()
    }

    /// The running nodes that are replicas now, each by its own `CLUSTER NODES` line, in start
    /// order.
    ///
    /// # Panics
    /// When a running node does not answer `CLUSTER NODES`.
    pub fn replicas(&self) -> Vec<usize> {
        self.own_lines("replicas")
            .into_iter()
            .filter(|(_, line)| line.is_replica())
            .map(|(i, _)| i)
            .collect()
    }

    /// The running nodes that are replicas of the node `master` now, by their own `CLUSTER
    /// NODES` lines, in start order.
    ///
    /// ```no_run
    /// use redisx_runtime::testing::RedisCluster;
    ///
    /// let cluster = RedisCluster::start(3, 1);
    /// let master = cluster.masters()[0];
    /// assert_eq!(cluster.replicas_of(master).len(), 1);
    /// ```
    ///
    /// # Panics
    /// When `master` is not a node index, or a running node does not answer `CLUSTER NODES`.
    pub fn replicas_of(&self, master: usize) -> Vec<usize> {
        let id = self.node_id(master).to_owned();
        self.own_lines("replicas_of")
            .into_iter()
            .filter(|(_, line)| line.is_replica() && line.master.as_deref() == Some(id.as_str()))
            .map(|(i, _)| i)
            .collect()
    }

    /// The URLs of the running nodes (`redis://127.0.0.1:PORT`), in start order: the seeds of a
    /// cluster client.
    pub fn seed_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|node| node.pid().is_some())
            .map(RedisServer::url)
            .collect()
    }

    /// The temporary directory of the cluster's files (a `nodes-<index>.conf` per node); it is
    /// removed when the cluster is dropped.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A manual failover of the master at `master` in [`RedisCluster::masters`] (so
    /// `failover(0)` is the first master): `CLUSTER FAILOVER` on its first replica, then waits
    /// until the replica is the master, the old master its replica, and the cluster whole again;
    /// this takes well under a second. No write is lost: the replica catches up first.
    ///
    /// ```no_run
    /// use redisx_runtime::testing::RedisCluster;
    ///
    /// let mut cluster = RedisCluster::start(3, 1);
    /// let old = cluster.masters()[0];
    /// let new = cluster.replicas_of(old)[0];
    /// cluster.failover(0);
    /// assert!(cluster.masters().contains(&new));
    /// assert_eq!(cluster.replicas_of(new), [old]);
    /// ```
    ///
    /// # Panics
    /// When there is no such master, it has no running replica, `CLUSTER FAILOVER` is refused,
    /// or the roles have not swapped with the cluster whole within 20 s (the message names what
    /// was not reached).
    pub fn failover(&mut self, master: usize) {
        let masters = self.masters();
        let old = *masters.get(master).unwrap_or_else(|| {
            panic!(
                "RedisCluster::failover: no master {master}; the running masters are the nodes \
                 {masters:?}"
            )
        });
        let new = *self.replicas_of(old).first().unwrap_or_else(|| {
            panic!(
                "RedisCluster::failover: master node {old} (port {}) has no running replica to \
                 take over",
                self.nodes[old].port()
            )
        });
        let ask = |cluster: &Self| query::<String>(&cluster.nodes[new], &["CLUSTER", "FAILOVER"]);
        if let Err(e) = ask(self) {
            panic!("RedisCluster::failover: node {new} refused to take over from node {old}: {e}");
        }
        let mut asked = Instant::now();
        self.wait_until("failover", |cluster| {
            let (new_line, old_line) = (cluster.own_line(new)?, cluster.own_line(old)?);
            if !new_line.is_master() || old_line.master.as_ref() != Some(&cluster.ids[new]) {
                // Redis gives a manual failover 5 s; one that timed out is asked for again.
                let mut again = String::new();
                if !new_line.is_master() && asked.elapsed() >= FAILOVER_RETRY {
                    asked = Instant::now();
                    if let Err(e) = ask(cluster) {
                        again = format!(" (asked again: {e})");
                    }
                }
                return Err(format!(
                    "node {new} has not taken over from node {old}: node {new} is {}, node {old} \
                     is {}{again}",
                    cluster.describe(&new_line),
                    cluster.describe(&old_line)
                ));
            }
            cluster.health()
        });
    }

    /// Moves hash slot `slot` to the master at `to` in [`RedisCluster::masters`], with its keys,
    /// the way `redis-cli --cluster reshard` does: `CLUSTER SETSLOT .. IMPORTING` on the
    /// target, `.. MIGRATING` on the owner, `MIGRATE` of the slot's keys in batches, then
    /// `CLUSTER SETSLOT .. NODE` on every master; waits until the cluster is whole. Clients
    /// meet `ASK` while the keys move and `MOVED` afterwards. Nothing happens when the master
    /// already owns the slot.
    ///
    /// ```no_run
    /// use redisx_runtime::testing::RedisCluster;
    ///
    /// let mut cluster = RedisCluster::start(3, 0);
    /// let slot = redisx_runtime::key::slot("{user:7}");
    /// cluster.move_slot(slot, 2);
    /// ```
    ///
    /// # Panics
    /// When `slot` is not below 16384, there is no master `to`, no master owns the slot, a
    /// command is refused, or the cluster is not whole within 20 s after the move.
    pub fn move_slot(&mut self, slot: u16, to: usize) {
        let masters = self.masters();
        let target = *masters.get(to).unwrap_or_else(|| {
            panic!("RedisCluster::move_slot: no master {to}; the running masters are the nodes {masters:?}")
        });
        let owner = masters
            .iter()
            .copied()
            .find(|&m| self.own_line(m).is_ok_and(|line| line.serves(slot)))
            .unwrap_or_else(|| panic!("RedisCluster::move_slot: no master owns slot {slot}"));
        if owner == target {
            return;
        }
        let (slot_arg, port) = (slot.to_string(), self.nodes[target].port().to_string());
        let run = |node: usize, words: &[&str]| {
            if let Err(e) = query::<redis::Value>(&self.nodes[node], words) {
                panic!("RedisCluster::move_slot: {e}");
            }
        };
        run(
            target,
            &[
                "CLUSTER",
                "SETSLOT",
                &slot_arg,
                "IMPORTING",
                &self.ids[owner],
            ],
        );
        run(
            owner,
            &[
                "CLUSTER",
                "SETSLOT",
                &slot_arg,
                "MIGRATING",
                &self.ids[target],
            ],
        );
        loop {
            let keys: Vec<String> = query(
                &self.nodes[owner],
                &["CLUSTER", "GETKEYSINSLOT", &slot_arg, "100"],
            )
            .unwrap_or_else(|e| panic!("RedisCluster::move_slot: {e}"));
            if keys.is_empty() {
                break;
            }
            let mut words = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            words.extend(keys.iter().map(String::as_str));
            run(owner, &words);
        }
        for &m in &masters {
            run(
                m,
                &["CLUSTER", "SETSLOT", &slot_arg, "NODE", &self.ids[target]],
            );
        }
        self.wait_until("move_slot", Self::health);
    }

    /// Kills a node (`SIGKILL`), as a crash would, and returns at once. When it was a master, its
    /// replica is promoted once the other masters agree that it failed (about 2 s with the
    /// harness's 1 s node timeout); wait for that with [`RedisCluster::wait_ok`], or poll
    /// [`RedisCluster::health`]. Bring the node back with [`RedisCluster::start_again`].
    ///
    /// # Panics
    /// When `node` is not a node index.
    pub fn kill(&mut self, node: usize) {
        self.node_mut(node).kill();
    }

    /// Starts a killed node again on its ports with its `nodes.conf` (so the same node id), and
    /// waits until the cluster is whole. It comes back empty (nothing is persisted); a former
    /// master whose replica was promoted meanwhile rejoins as that node's replica and syncs.
    ///
    /// # Panics
    /// When `node` is not a node index or still runs, when it does not start (as
    /// [`RedisServer::start_again`]), or when the cluster is not whole within 20 s.
    pub fn start_again(&mut self, node: usize) {
        self.node_mut(node).start_again();
        self.wait_until("start_again", Self::health);
    }

    /// Kills every node (`SIGKILL`), e.g. to see a client fail; their files stay until the
    /// cluster is dropped, which also stops the nodes when this is not called.
    pub fn stop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }

    /// Waits until the cluster is whole ([`RedisCluster::health`]), e.g. after a
    /// [`kill`](RedisCluster::kill) of a master, until its replica was promoted.
    ///
    /// # Panics
    /// When it is not whole within 20 s; the message names what was not reached.
    pub fn wait_ok(&self) {
        self.wait_until("wait_ok", Self::health);
    }

    /// `Ok` when the cluster is whole, as far as its running nodes tell: each reports
    /// `cluster_state:ok`, `cluster_slots_assigned:16384` and knows every node; each replica's
    /// link to its master is up; the running masters serve all 16384 slots between them; and
    /// every running node sees every other running node (not failing) with the role, master
    /// and slots that node gives itself. Otherwise what is not so, one line per finding.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::testing::{RedisCluster, eventually};
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo() {
    /// let mut cluster = RedisCluster::start(3, 1);
    /// cluster.kill(cluster.masters()[0]);
    /// assert!(cluster.health().is_err()); // a stopped node holds slots
    /// let promoted = eventually(Duration::from_secs(15), Duration::from_millis(50), || {
    ///     let whole = cluster.health().is_ok();
    ///     async move { whole }
    /// })
    /// .await;
    /// assert!(promoted, "{:?}", cluster.health());
    /// # }
    /// ```
    pub fn health(&self) -> Result<(), String> {
        let mut report = String::new();
        let mut views = Vec::new();
        let mut complete = true;
        for (i, node) in self.nodes.iter().enumerate() {
            if node.pid().is_none() {
                continue;
            }
            match self.node_health(node) {
                Ok((view, problems)) => {
                    if !problems.is_empty() {
                        let _ = writeln!(
                            report,
                            "node {i} (port {}): {}",
                            node.port(),
                            problems.join(", ")
                        );
                    }
                    views.push((i, view));
                }
                Err(e) => {
                    complete = false;
                    let _ = writeln!(report, "node {i} (port {}): {e}", node.port());
                }
            }
        }
        self.agreement(&views, complete, &mut report);
        if report.is_empty() {
            Ok(())
        } else {
            Err(report)
        }
    }

    fn node_mut(&mut self, index: usize) -> &mut RedisServer {
        self.node(index);
        &mut self.nodes[index]
    }

    /// Runs `reached` until it is `Ok`, for at most [`CLUSTER_TIMEOUT`]; panics with its last
    /// report then.
    fn wait_until(&self, what: &str, mut reached: impl FnMut(&Self) -> Result<(), String>) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        loop {
            let report = match reached(self) {
                Ok(()) => return,
                Err(report) => report,
            };
            assert!(
                Instant::now() < deadline,
                "RedisCluster::{what}: the cluster on ports {:?} is not whole after \
                 {CLUSTER_TIMEOUT:?}; not reached:\n{report}",
                self.nodes.iter().map(RedisServer::port).collect::<Vec<_>>()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts node `index` of a cluster whose files are in `dir`.
fn start_node(dir: &ScratchDir, index: usize) -> RedisServer {
    RedisServer::builder()
        .args(REPLICATION_ARGS)
        .arg("--dir")
        .arg(dir.path())
        .args(["--cluster-enabled", "yes", "--cluster-node-timeout"])
        .arg(NODE_TIMEOUT_MS.to_string())
        .arg("--cluster-config-file")
        .arg(dir.file(&format!("nodes-{index}.conf")))
        .cluster_bus()
        .start()
}

/// `redis-cli --cluster create <nodes> --cluster-replicas <replicas> --cluster-yes`, behind the
/// watchdog, bounded by [`CREATE_TIMEOUT`].
fn create(cli: &Path, nodes: &[RedisServer], replicas: usize) {
    let mut args: Vec<OsString> = vec!["--cluster".into(), "create".into()];
    args.extend(
        nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()).into()),
    );
    args.extend([
        "--cluster-replicas".into(),
        replicas.to_string().into(),
        "--cluster-yes".into(),
    ]);
    // Without `TERM`, redis-cli writes no colour codes into the output a panic shows.
    let env = [(OsString::from("TERM"), None)];
    let mut process = Watched::spawn("redis-cli", &cli.as_os_str().to_owned(), &args, &env)
        .unwrap_or_else(|e| panic!("RedisCluster: cannot run redis-cli --cluster create: {e}"));
    let deadline = Instant::now() + CREATE_TIMEOUT;
    let status = loop {
        if let Some(status) = process.try_wait() {
            break status;
        }
        if Instant::now() >= deadline {
            process.kill();
            panic!(
                "RedisCluster: `redis-cli --cluster create` did not finish within \
                 {CREATE_TIMEOUT:?}; its output:\n{}",
                process.output()
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    process.wait_output_closed(Duration::from_secs(1));
    assert!(
        status.success(),
        "RedisCluster: `redis-cli --cluster create` failed ({status}); its output:\n{}",
        process.output()
    );
}
