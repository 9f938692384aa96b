//! [`Topology`] and [`Deployment`]: the shape of Redis an integration test runs against, as a
//! parameter, so that a test written once runs on every topology the harness can start.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use super::cluster::RedisCluster;
use super::sentinel::RedisSentinel;
use super::server::RedisServer;
use crate::{ConnectionConfig, RedisX, RedisXBuilder};

/// A shape of Redis deployment the harness can start for a test.
///
/// A test that takes a `Topology` and loops over [`Topology::ALL`] runs on each without a
/// change. The enum is `#[non_exhaustive]`: a `match` on it needs a `_` arm.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topology {
    /// One `redis-server`: [`RedisServer::start`], so the `REDISX_TEST_URL` server when that is
    /// set, else one of its own.
    Standalone,
    /// A Redis Cluster of three masters with one replica each ([`RedisCluster::start`]`(3,
    /// 1)`), reached through its seed nodes ([`ConnectionConfig::cluster`]).
    Cluster,
    /// One master with two replicas watched by three sentinels ([`RedisSentinel::start`]),
    /// reached through the sentinels ([`ConnectionConfig::sentinel`]).
    Sentinel,
}

impl Topology {
    /// Every topology the harness can start, for tests that run on each.
    ///
    /// ```
    /// use redisx_runtime::testing::Topology;
    ///
    /// assert!(Topology::ALL.contains(&Topology::Standalone));
    /// assert!(Topology::ALL.contains(&Topology::Cluster));
    /// ```
    pub const ALL: &'static [Topology] =
        &[Topology::Standalone, Topology::Cluster, Topology::Sentinel];

    /// A short lowercase name, e.g. `"standalone"`, for test output and key prefixes.
    pub const fn name(self) -> &'static str {
        match self {
            Topology::Standalone => "standalone",
            Topology::Cluster => "cluster",
            Topology::Sentinel => "sentinel",
        }
    }

    /// Starts a deployment of this shape; see [`Deployment::start`].
    ///
    /// # Panics
    /// As [`Deployment::start`].
    pub fn start(self) -> Deployment {
        Deployment::start(self)
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The servers of one [`Topology`], started for a test and stopped when dropped, with what
/// redisx needs to connect to them ([`Deployment::connection_config`],
/// [`Deployment::redisx_builder`], [`Deployment::runtime`]).
///
/// A plugin's integration test takes the topology as a parameter and runs once per entry of
/// [`Topology::ALL`]; nothing in its body names a topology:
///
/// ```no_run
/// use redisx_runtime::redis;
/// use redisx_runtime::testing::{Deployment, Topology, unique_prefix};
///
/// // The body, written once.
/// async fn set_then_get(topology: Topology) {
///     let deployment = Deployment::start(topology);
///     let rx = deployment.runtime(&unique_prefix("set_then_get")).await;
///     let () = rx.client().query(redis::cmd("SET").arg("k").arg("v")).await.unwrap();
///     let v: String = rx.client().query(redis::cmd("GET").arg("k")).await.unwrap();
///     assert_eq!(v, "v", "on {topology}");
/// }
///
/// // The test, with `#[tokio::test]`: every topology the harness can start.
/// async fn set_then_get_on_every_topology() {
///     for &topology in Topology::ALL {
///         set_then_get(topology).await;
///     }
/// }
/// # fn main() { drop(set_then_get_on_every_topology()); }
/// ```
///
/// Keys are the test's own only through the key prefix (the standalone server may be the
/// shared `REDISX_TEST_URL` one): build the runtime with [`unique_prefix`](super::unique_prefix).
#[derive(Debug)]
#[must_use = "a deployment of its own is stopped when it is dropped"]
pub struct Deployment {
    topology: Topology,
    servers: Servers,
}

/// The processes behind a deployment, by topology.
#[derive(Debug)]
enum Servers {
    Standalone(RedisServer),
    Cluster(Arc<RedisCluster>),
    Sentinel(Arc<RedisSentinel>),
}

/// The cluster and the sentinel set shared by the deployments of a test process: started by
/// the first [`Deployment::start`] that needs one and kept until the process exits, so that the
/// tests of a binary, in parallel or one after another, start each at most once.
static SHARED_CLUSTER: Mutex<Option<Arc<RedisCluster>>> = Mutex::new(None);
static SHARED_SENTINEL: Mutex<Option<Arc<RedisSentinel>>> = Mutex::new(None);

/// The shared `T` of `slot`, or a new one from `start`. It is never dropped: when the process
/// exits, the watchdogs kill its servers and remove its files.
fn shared<T>(slot: &Mutex<Option<Arc<T>>>, start: impl FnOnce() -> T) -> Arc<T> {
    let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(slot.get_or_insert_with(|| Arc::new(start())))
}

impl Deployment {
    /// Starts the servers of `topology` and waits until they answer. A standalone deployment is
    /// [`RedisServer::start`]: the `REDISX_TEST_URL` server when that is set. A cluster or a
    /// sentinel set is shared by the deployments of the test process that live at the same
    /// time or one after another (tests keep apart through their key prefixes), and stopped when
    /// the process exits; a test that kills or fails over nodes takes its own with
    /// [`Deployment::start_owned`].
    ///
    /// # Panics
    /// When the servers do not start (as [`RedisServer::start_owned`]: the message says how to
    /// install `redis-server` when it is missing).
    pub fn start(topology: Topology) -> Self {
        let servers = match topology {
            Topology::Standalone => Servers::Standalone(RedisServer::start()),
            Topology::Cluster => {
                Servers::Cluster(shared(&SHARED_CLUSTER, || RedisCluster::start(3, 1)))
            }
            Topology::Sentinel => Servers::Sentinel(shared(&SHARED_SENTINEL, RedisSentinel::start)),
        };
        Deployment { topology, servers }
    }

    /// Starts servers of its own for `topology`, whatever `REDISX_TEST_URL` says: for tests that
    /// kill or restart them.
    ///
    /// # Panics
    /// As [`Deployment::start`].
    pub fn start_owned(topology: Topology) -> Self {
        let servers = match topology {
            Topology::Standalone => Servers::Standalone(RedisServer::start_owned()),
            Topology::Cluster => Servers::Cluster(Arc::new(RedisCluster::start(3, 1))),
            Topology::Sentinel => Servers::Sentinel(Arc::new(RedisSentinel::start())),
        };
        Deployment { topology, servers }
    }

    /// The topology of this deployment.
    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// The URL redisx connects to (with no credentials): for a standalone deployment, the
    /// server's; `redis+cluster://` with the running nodes for a cluster;
    /// `redis+sentinel://` with the sentinels and the master name for a sentinel set.
    pub fn url(&self) -> String {
        match &self.servers {
            Servers::Standalone(server) => server.url(),
            Servers::Cluster(cluster) => format!(
                "redis+cluster://{}",
                addresses(cluster.nodes().iter().filter(|n| n.pid().is_some()))
            ),
            Servers::Sentinel(set) => format!(
                "redis+sentinel://{}/{}",
                addresses(set.sentinels().iter()),
                set.master_name()
            ),
        }
    }

    /// The connection configuration for this deployment, to give a redisx client.
    ///
    /// # Panics
    /// When the URL is not a valid Redis URL (only possible with a malformed `REDISX_TEST_URL`).
    pub fn connection_config(&self) -> ConnectionConfig {
        let url = self.url();
        ConnectionConfig::from_url(&url).unwrap_or_else(|e| {
            panic!("Deployment: `{url}` (from REDISX_TEST_URL?) is not a valid Redis URL: {e}")
        })
    }

    /// The URL of every server that holds data (no sentinel): each node of a cluster (masters
    /// and replicas), the master and replicas of a sentinel set, the one standalone server.
    /// For what a client library does not show, e.g. `PUBSUB NUMSUB` summed over the servers.
    pub fn server_urls(&self) -> Vec<String> {
        match &self.servers {
            Servers::Standalone(server) => vec![server.url()],
            Servers::Cluster(cluster) => cluster.seed_urls(),
            Servers::Sentinel(set) => {
                let servers = set.servers();
                std::iter::once(servers.primary_url())
                    .chain(servers.replica_urls())
                    .collect()
            }
        }
    }

    /// The URL of every server that takes writes now: each master of a cluster, the master the
    /// sentinels name, the one standalone server. For reading where keys landed (`SCAN`).
    pub fn master_urls(&self) -> Vec<String> {
        match &self.servers {
            Servers::Standalone(server) => vec![server.url()],
            Servers::Cluster(cluster) => cluster
                .masters()
                .into_iter()
                .map(|i| cluster.node(i).url())
                .collect(),
            Servers::Sentinel(set) => vec![set.master_url()],
        }
    }

    /// A connection of redis-rs alone (outside redisx) to this deployment, for reading and
    /// writing what a test checks: a cluster connection on a cluster (it routes each command by
    /// its key, and sends `KEYS` to every master and merges the replies), a connection to the
    /// master the sentinels name on a sentinel set, to the server otherwise.
    ///
    /// ```no_run
    /// use redisx_runtime::redis::AsyncCommands;
    /// use redisx_runtime::testing::{Deployment, Topology};
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo() {
    /// let deployment = Deployment::start(Topology::Cluster);
    /// let mut conn = deployment.raw_connection().await;
    /// let () = conn.set("k", "v").await.unwrap();
    /// let keys: Vec<String> = conn.keys("*").await.unwrap(); // from every master
    /// # let _ = keys;
    /// # }
    /// ```
    ///
    /// # Panics
    /// When the deployment does not accept a connection.
    pub async fn raw_connection(&self) -> RawConnection {
        match &self.servers {
            Servers::Cluster(cluster) => {
                let client = redis::cluster::ClusterClient::new(cluster.seed_urls())
                    .unwrap_or_else(|e| panic!("Deployment::raw_connection: the seed URLs: {e}"));
                let conn = client.get_async_connection().await.unwrap_or_else(|e| {
                    panic!("Deployment::raw_connection: the cluster does not connect: {e}")
                });
                RawConnection(RawInner::Cluster(conn))
            }
            Servers::Sentinel(set) => RawConnection(RawInner::Server(
                super::raw_connection(&set.master_url()).await,
            )),
            Servers::Standalone(server) => {
                RawConnection(RawInner::Server(super::raw_connection(&server.url()).await))
            }
        }
    }

    /// The cluster of a cluster deployment, for process control (`None` for other topologies).
    pub fn cluster(&self) -> Option<&RedisCluster> {
        match &self.servers {
            Servers::Cluster(cluster) => Some(cluster),
            _ => None,
        }
    }

    /// The cluster of a deployment from [`Deployment::start_owned`], to kill nodes or fail
    /// them over (`None` for other topologies, or a cluster shared with other deployments).
    pub fn cluster_mut(&mut self) -> Option<&mut RedisCluster> {
        match &mut self.servers {
            Servers::Cluster(cluster) => Arc::get_mut(cluster),
            _ => None,
        }
    }

    /// The sentinel set of a sentinel deployment (`None` for other topologies).
    pub fn sentinel(&self) -> Option<&RedisSentinel> {
        match &self.servers {
            Servers::Sentinel(set) => Some(set),
            _ => None,
        }
    }

    /// The sentinel set of a deployment from [`Deployment::start_owned`], to fail it over
    /// (`None` for other topologies, or a set shared with other deployments).
    pub fn sentinel_mut(&mut self) -> Option<&mut RedisSentinel> {
        match &mut self.servers {
            Servers::Sentinel(set) => Arc::get_mut(set),
            _ => None,
        }
    }

    /// A runtime builder with one client, `"default"`, on this deployment: add the key prefix,
    /// the cache configuration and plugins, then `build()`.
    ///
    /// ```no_run
    /// use redisx_runtime::testing::{Deployment, Topology, unique_prefix};
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo() -> redisx_runtime::Result<()> {
    /// let deployment = Deployment::start(Topology::Standalone);
    /// let rx = deployment
    ///     .redisx_builder()
    ///     .key_prefix(unique_prefix("my_plugin"))
    ///     .build()
    ///     .await?;
    /// # let _ = rx;
    /// # Ok(()) }
    /// ```
    ///
    /// # Panics
    /// As [`Deployment::connection_config`].
    pub fn redisx_builder(&self) -> RedisXBuilder {
        RedisX::builder().client("default", self.connection_config())
    }

    /// A runtime on this deployment with the key prefix `prefix` and default settings otherwise.
    ///
    /// # Panics
    /// When the runtime does not build (the message holds the error).
    pub async fn runtime(&self, prefix: &str) -> RedisX {
        self.redisx_builder()
            .key_prefix(prefix)
            .build()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "Deployment: the runtime on the {} deployment at {} does not build: {e}",
                    self.topology,
                    self.url()
                )
            })
    }

    /// The server of a standalone deployment (`None` for other topologies).
    pub fn standalone(&self) -> Option<&RedisServer> {
        match &self.servers {
            Servers::Standalone(server) => Some(server),
            _ => None,
        }
    }

    /// The server of a standalone deployment, for process control (`None` for other
    /// topologies).
    pub fn standalone_mut(&mut self) -> Option<&mut RedisServer> {
        match &mut self.servers {
            Servers::Standalone(server) => Some(server),
            _ => None,
        }
    }
}

/// A connection from [`Deployment::raw_connection`]: use it as any redis-rs async connection
/// (`query_async`, `AsyncCommands`); clones share the connection.
#[derive(Clone)]
pub struct RawConnection(RawInner);

#[derive(Clone)]
enum RawInner {
    Server(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl fmt::Debug for RawConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            RawInner::Server(_) => "RawConnection(server)",
            RawInner::Cluster(_) => "RawConnection(cluster)",
        })
    }
}

impl redis::aio::ConnectionLike for RawConnection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match &mut self.0 {
            RawInner::Server(conn) => conn.req_packed_command(cmd),
            RawInner::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match &mut self.0 {
            RawInner::Server(conn) => conn.req_packed_commands(pipeline, offset, count),
            RawInner::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            RawInner::Server(conn) => conn.get_db(),
            RawInner::Cluster(conn) => conn.get_db(),
        }
    }
}

/// `127.0.0.1:PORT,127.0.0.1:PORT,..` of `servers`.
fn addresses<'a>(servers: impl Iterator<Item = &'a RedisServer>) -> String {
    servers
        .map(|s| format!("127.0.0.1:{}", s.port()))
        .collect::<Vec<_>>()
        .join(",")
}
