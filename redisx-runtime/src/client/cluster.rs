//! Redis Cluster: the cluster connection behind a [`ConnectionConfig::cluster`] client, the
//! split of a pipeline into one sub-pipeline per slot, and the list of masters that `SCAN`
//! visits one by one.
//!
//! redis-rs's cluster connection routes each command to the master of its key's slot and
//! follows `MOVED`/`ASK` and failovers by itself. A pipeline, though, goes to one node: a
//! pipeline whose keys span slots (a cache's tag deletes, `delete_many`) would fail with
//! `CROSSSLOT` there, so [`pipeline`] sends one sub-pipeline per slot, concurrently, and puts
//! the replies back in order.

use std::collections::HashMap;
use std::sync::RwLock;

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Pipeline, RedisFuture, Value};

use super::config::ConnectionConfig;
use super::driver::{connect_error, connecting};
use crate::error::{Error, ErrorCode, Result};

/// The shared cluster connection of one client.
pub(crate) struct Cluster {
    name: String,
    cfg: ConnectionConfig,
    conn: RwLock<Option<ClusterConnection>>,
}

impl Cluster {
    pub(crate) async fn start(name: &str, cfg: &ConnectionConfig) -> Result<Self> {
        let client = client(name, cfg, Some(cfg.command_timeout), None)?;
        let conn = if cfg.lazy {
            // The nodes are reached in the background; a command fails until they are.
            let config = redis::cluster::ClusterConfig::new()
                .set_connection_timeout(cfg.connect_timeout)
                .set_response_timeout(cfg.command_timeout);
            client.get_pending_async_connection_with_config(config)
        } else {
            connecting(name, cfg, client.get_async_connection()).await?
        };
        Ok(Self {
            name: name.to_owned(),
            cfg: cfg.clone(),
            conn: RwLock::new(Some(conn)),
        })
    }

    /// A handle on the shared connection (cheap: a channel to its task).
    pub(crate) fn get(&self) -> Result<ClusterConnection> {
        self.conn
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                Error::new(ErrorCode::ConnectionClosed, "the runtime was shut down")
                    .with_context("client", self.name.clone())
                    .with_context("server", self.cfg.to_string())
            })
    }

    pub(crate) fn shutdown(&self) {
        self.conn
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }
}

/// Opens a cluster connection of its own with `cfg`'s credentials, TLS and timeouts;
/// `response_timeout` `None` for a dedicated connection (blocking reads), and a push sender
/// for RESP3 pub/sub.
pub(crate) async fn connect(
    name: &str,
    cfg: &ConnectionConfig,
    response_timeout: Option<std::time::Duration>,
    push: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
) -> Result<ClusterConnection> {
    let client = client(name, cfg, response_timeout, push)?;
    connecting(name, cfg, client.get_async_connection()).await
}

/// The redis-rs cluster client of [`connect`]'s arguments.
fn client(
    name: &str,
    cfg: &ConnectionConfig,
    response_timeout: Option<std::time::Duration>,
    push: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
) -> Result<redis::cluster::ClusterClient> {
    let nodes = cfg
        .cluster_seeds_value()
        .iter()
        .map(|(h, p)| cfg.single_node(h, *p).to_connection_info());
    let mut builder =
        redis::cluster::ClusterClientBuilder::new(nodes).connection_timeout(cfg.connect_timeout);
    builder = match response_timeout {
        Some(t) => builder.response_timeout(t),
        // A blocking read waits as long as its own argument says.
        None => builder.overall_response_timeout(None),
    };
    if cfg.resp3 || push.is_some() {
        builder = builder.use_protocol(redis::ProtocolVersion::RESP3);
    }
    if let Some(push) = push {
        builder = builder.push_sender(push);
    }
    if cfg.read_from_replicas {
        builder = builder.read_routing_strategy(redis::cluster_read_routing::RandomReplicaStrategy);
    }
    #[cfg(feature = "tls-rustls")]
    if cfg.tls && (cfg.tls_ca_cert.is_some() || cfg.tls_client_cert.is_some()) {
        builder = builder.certs(redis::TlsCertificates {
            client_tls: cfg
                .tls_client_cert
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: cfg.tls_ca_cert.clone(),
        });
    }
    builder.build().map_err(|e| connect_error(name, cfg, e))
}

/// Sends `pipeline` on a cluster connection: as it is when its keys are in one slot (or it is
/// a transaction, which must be), otherwise as one sub-pipeline per slot, concurrently, with
/// the replies put back in the pipeline's order. Keyless commands go with the first slot.
pub(crate) fn pipeline<'a>(
    conn: &'a mut ClusterConnection,
    pipeline: &'a Pipeline,
    offset: usize,
    count: usize,
) -> RedisFuture<'a, Vec<Value>> {
    use redis::aio::ConnectionLike;

    let mut groups: Vec<(Option<Route>, Vec<usize>)> = Vec::new();
    let mut index: HashMap<Route, usize> = HashMap::new();
    let mut keyless = Vec::new();
    if !pipeline.is_transaction() {
        for (i, cmd) in pipeline.cmd_iter().enumerate() {
            match first_key(cmd) {
                Some(key) => {
                    let route = Route::with_key(key, SlotAddr::Master);
                    let at = *index.entry(route).or_insert_with(|| {
                        groups.push((Some(route), Vec::new()));
                        groups.len() - 1
                    });
                    groups[at].1.push(i);
                }
                None => keyless.push(i),
            }
        }
    }
    if groups.len() <= 1 {
        return conn.req_packed_commands(pipeline, offset, count);
    }
    groups[0].1.extend(keyless);
    let total = pipeline.len();
    let cmds: Vec<&redis::Cmd> = pipeline.cmd_iter().collect();
    Box::pin(async move {
        let sends = groups.into_iter().map(|(route, members)| {
            let mut sub = redis::pipe();
            for &i in &members {
                sub.add_command(cmds[i].clone());
            }
            let mut conn = conn.clone();
            let n = members.len();
            let route = route.map_or(SingleNodeRoutingInfo::RandomPrimary, |r| {
                SingleNodeRoutingInfo::SpecificNode(r)
            });
            async move {
                let replies = conn.route_pipeline(sub, 0, n, route).await?;
                Ok::<_, redis::RedisError>((members, replies))
            }
        });
        let mut out = vec![Value::Nil; total];
        for result in futures_util::future::join_all(sends).await {
            let (members, replies) = result?;
            for (i, v) in members.into_iter().zip(replies) {
                out[i] = v;
            }
        }
        Ok(out)
    })
}

/// The first key of a command, for the commands redisx pipelines: `EVAL`/`EVALSHA`/`FCALL`
/// name theirs after the key count; keyless commands (`PING`, `WAIT`, `SCRIPT`, ...) have
/// none; every other command's first argument is its key.
fn first_key(cmd: &redis::Cmd) -> Option<&[u8]> {
    let mut args = cmd.args_iter().map(|a| match a {
        redis::Arg::Simple(b) => b,
        _ => b"0".as_slice(),
    });
    let name = args.next()?;
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    if [
        "EVAL",
        "EVALSHA",
        "EVAL_RO",
        "EVALSHA_RO",
        "FCALL",
        "FCALL_RO",
    ]
    .iter()
    .any(|n| is(n))
    {
        let _script = args.next()?;
        let keys = args.next()?;
        return (keys != b"0").then(|| args.next()).flatten();
    }
    if [
        "PING", "WAIT", "SCRIPT", "INFO", "TIME", "PUBLISH", "CLIENT", "CONFIG", "DBSIZE",
        "FLUSHDB", "FLUSHALL", "ECHO", "FUNCTION",
    ]
    .iter()
    .any(|n| is(n))
    {
        return None;
    }
    args.next()
}

/// The addresses of the cluster's masters (from `CLUSTER SLOTS`), each once, in slot order.
pub(crate) async fn masters(
    conn: &mut ClusterConnection,
) -> redis::RedisResult<Vec<(String, u16)>> {
    let slots = conn
        .route_command(
            redis::cmd("CLUSTER").arg("SLOTS").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
        )
        .await?;
    // Each entry: [start, end, [host, port, id, ..], replicas..].
    let entries: Vec<Vec<Value>> = redis::from_redis_value(slots)?;
    let mut masters: Vec<(i64, (String, u16))> = Vec::new();
    for entry in entries {
        let mut fields = entry.into_iter();
        let start: i64 = redis::from_redis_value(fields.next().unwrap_or(Value::Nil))?;
        let _end = fields.next();
        let node: Vec<Value> = redis::from_redis_value(fields.next().unwrap_or(Value::Nil))?;
        let mut node = node.into_iter();
        let host: String = redis::from_redis_value(node.next().unwrap_or(Value::Nil))?;
        let port: u16 = redis::from_redis_value(node.next().unwrap_or(Value::Nil))?;
        if !masters.iter().any(|(_, m)| m.0 == host && m.1 == port) {
            masters.push((start, (host, port)));
        }
    }
    masters.sort_by_key(|(start, _)| *start);
    Ok(masters.into_iter().map(|(_, m)| m).collect())
}

/// Runs `cmd` on the node at `host:port` of the cluster.
pub(crate) async fn on_node(
    conn: &mut ClusterConnection,
    node: &(String, u16),
    cmd: &redis::Cmd,
) -> redis::RedisResult<Value> {
    conn.route_command(
        cmd.clone(),
        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: node.0.clone(),
            port: node.1,
        }),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::first_key;

    #[test]
    fn finds_the_first_key() {
        assert_eq!(first_key(redis::cmd("GET").arg("k")), Some(b"k".as_slice()));
        assert_eq!(
            first_key(redis::cmd("EVALSHA").arg("abc").arg(2).arg("a").arg("b")),
            Some(b"a".as_slice())
        );
        assert_eq!(
            first_key(redis::cmd("EVALSHA").arg("abc").arg(0).arg("x")),
            None
        );
        assert_eq!(first_key(redis::cmd("WAIT").arg(1).arg(0)), None);
        assert_eq!(first_key(&redis::cmd("PING")), None);
    }
}
