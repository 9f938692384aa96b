//! [`Topology`] and [`Deployment`]: the shape of Redis an integration test runs against, as a
//! parameter, so that a test written once runs on every topology the harness can start.

use std::fmt;

use super::server::RedisServer;
use crate::{ConnectionConfig, RedisX, RedisXBuilder};

/// A shape of Redis deployment the harness can start for a test.
///
/// Standalone today; cluster and sentinel join this enum (and [`Topology::ALL`]) later, so a
/// test that takes a `Topology` and loops over [`Topology::ALL`] runs on them without a change.
/// The enum is `#[non_exhaustive]`: a `match` on it needs a `_` arm.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topology {
    /// One `redis-server`: [`RedisServer::start`], so the `REDISX_TEST_URL` server when that is
    /// set, else one of its own.
    Standalone,
}

impl Topology {
    /// Every topology the harness can start, for tests that run on each.
    ///
    /// ```
    /// use redisx_runtime::testing::Topology;
    ///
    /// assert!(Topology::ALL.contains(&Topology::Standalone));
    /// ```
    pub const ALL: &'static [Topology] = &[Topology::Standalone];

    /// A short lowercase name, e.g. `"standalone"`, for test output and key prefixes.
    pub const fn name(self) -> &'static str {
        match self {
            Topology::Standalone => "standalone",
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
#[must_use = "the servers are stopped when the deployment is dropped"]
pub struct Deployment {
    topology: Topology,
    servers: Servers,
}

/// The processes behind a deployment, by topology.
#[derive(Debug)]
enum Servers {
    Standalone(RedisServer),
}

impl Deployment {
    /// Starts the servers of `topology` and waits until they answer. A standalone deployment is
    /// [`RedisServer::start`]: the `REDISX_TEST_URL` server when that is set.
    ///
    /// # Panics
    /// When the servers do not start (as [`RedisServer::start_owned`]: the message says how to
    /// install `redis-server` when it is missing).
    pub fn start(topology: Topology) -> Self {
        let servers = match topology {
            Topology::Standalone => Servers::Standalone(RedisServer::start()),
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
        };
        Deployment { topology, servers }
    }

    /// The topology of this deployment.
    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// The URL redisx connects to (with no credentials): for a standalone deployment, the
    /// server's.
    pub fn url(&self) -> String {
        match &self.servers {
            Servers::Standalone(server) => server.url(),
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
        }
    }

    /// The server of a standalone deployment, for process control (`None` for other
    /// topologies).
    pub fn standalone_mut(&mut self) -> Option<&mut RedisServer> {
        match &mut self.servers {
            Servers::Standalone(server) => Some(server),
        }
    }
}
