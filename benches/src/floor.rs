//! The floors' connections: redis-rs to a standalone server or to a Redis Cluster, behind one
//! type, so that a bench sends the same raw commands to either.
//!
//! | target | shared connection ([`Target::connect`]) | for blocking reads ([`Target::connect_blocking`]) |
//! |---|---|---|
//! | a server (`redis://`) | one `MultiplexedConnection` (redis-rs's default 500 ms response timeout) | a `MultiplexedConnection` of its own without response timeout |
//! | a cluster (`--cluster`) | one `cluster_async::ClusterConnection` with ours' response timeout (5 s, as redisx builds its own) | a `ClusterConnection` of its own without response timeout |
//!
//! A cluster connection routes each command to the master of its key's slot (`EVALSHA` by its
//! first key, `SCRIPT LOAD` to every node), as redisx's does; keys keep the hash tags ours uses.

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// Where the floors connect.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// A standalone server, by its URL.
    Server(String),
    /// A Redis Cluster, by the `redis://` URLs of its nodes (the seeds).
    Cluster(Vec<String>),
}

impl Target {
    /// The connection a floor shares between its calls.
    pub(crate) async fn connect(&self) -> FloorConnection {
        match self {
            Target::Server(url) => FloorConnection::Server(
                client(url)
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap_or_else(|e| panic!("cannot connect redis-rs to {url}: {e}")),
            ),
            Target::Cluster(seeds) => {
                // The timeout ours gives its cluster connection (its default command timeout).
                let builder = ClusterClientBuilder::new(seeds.clone())
                    .response_timeout(redisx::ConnectionConfig::DEFAULT_COMMAND_TIMEOUT);
                FloorConnection::Cluster(cluster(builder, seeds).await)
            }
        }
    }

    /// A connection of its own without response timeout, for blocking reads (`XREADGROUP ..
    /// BLOCK`): redis-rs would otherwise cut a read short after its response timeout.
    pub(crate) async fn connect_blocking(&self) -> FloorConnection {
        match self {
            Target::Server(url) => {
                let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
                FloorConnection::Server(
                    client(url)
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .unwrap_or_else(|e| panic!("cannot connect redis-rs to {url}: {e}")),
                )
            }
            Target::Cluster(seeds) => {
                // No per-node response timeout (none is set) and no overall one.
                let builder =
                    ClusterClientBuilder::new(seeds.clone()).overall_response_timeout(None);
                FloorConnection::Cluster(cluster(builder, seeds).await)
            }
        }
    }
}

fn client(url: &str) -> redis::Client {
    redis::Client::open(url).unwrap_or_else(|e| panic!("invalid Redis URL {url}: {e}"))
}

async fn cluster(builder: ClusterClientBuilder, seeds: &[String]) -> ClusterConnection {
    builder
        .build()
        .unwrap_or_else(|e| panic!("invalid cluster seeds {seeds:?}: {e}"))
        .get_async_connection()
        .await
        .unwrap_or_else(|e| panic!("cannot connect redis-rs to the cluster {seeds:?}: {e}"))
}

/// A floor's connection: a clone is a handle on the same connection.
#[derive(Clone)]
pub(crate) enum FloorConnection {
    Server(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for FloorConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            FloorConnection::Server(c) => c.req_packed_command(cmd),
            FloorConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            FloorConnection::Server(c) => c.req_packed_commands(pipeline, offset, count),
            FloorConnection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            FloorConnection::Server(c) => c.get_db(),
            FloorConnection::Cluster(c) => c.get_db(),
        }
    }
}

/// `SCRIPT LOAD` of `body` (on every master of a cluster): its sha.
pub(crate) async fn load_script<C: ConnectionLike + Send>(
    conn: &mut C,
    body: &str,
) -> std::sync::Arc<str> {
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(body)
        .query_async(conn)
        .await
        .expect("SCRIPT LOAD of a bench script");
    sha.into()
}
