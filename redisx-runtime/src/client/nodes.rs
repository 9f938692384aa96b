//! Where a command goes when the topology matters: every master for a keyspace `SCAN` on a
//! cluster, one given node, or a replica for the cache's reads; and the check of the server's
//! version, read on one node.

use redis::{Cmd, FromRedisValue};

use super::{Client, Conn, cluster};
use crate::error::{Error, ErrorCode, Result};

/// Keys asked for per `SCAN` page (a hint to the server).
const SCAN_COUNT: u64 = 1000;

impl Client {
    /// The nodes a keyspace `SCAN` must visit: `[None]` (the one server) for a single server
    /// or sentinel config, every master for a cluster.
    pub(crate) async fn scan_nodes(&self) -> Result<Vec<Option<(String, u16)>>> {
        if !self.inner.cfg.is_cluster() {
            return Ok(vec![None]);
        }
        let masters = self
            .run("CLUSTER", async |conn| match conn {
                Conn::Cluster(c) => cluster::masters(c).await,
                _ => Ok(Vec::new()),
            })
            .await?;
        Ok(masters.into_iter().map(Some).collect())
    }

    /// Every key matching the glob `pattern` (of type `kind` too, when given: `SCAN .. TYPE`),
    /// from `SCAN MATCH` (never `KEYS`) on every node that holds keys (every master of a
    /// cluster: a cursor belongs to one node); as bytes (a key another program wrote need not
    /// be UTF-8, and must not make the scan fail), sorted, without duplicates.
    pub(crate) async fn scan_keys(
        &self,
        pattern: &str,
        kind: Option<&str>,
    ) -> Result<Vec<Vec<u8>>> {
        let mut keys = Vec::new();
        for node in self.scan_nodes().await? {
            let mut cursor = 0u64;
            loop {
                let mut page = redis::cmd("SCAN");
                page.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT);
                if let Some(kind) = kind {
                    page.arg("TYPE").arg(kind);
                }
                let (next, items): (u64, Vec<Vec<u8>>) =
                    self.query_on(node.as_ref(), "SCAN", &page).await?;
                keys.extend(items);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// Runs `cmd` on `node` (from [`scan_nodes`](Self::scan_nodes)), or as usual for `None`.
    pub(crate) async fn query_on<T: FromRedisValue>(
        &self,
        node: Option<&(String, u16)>,
        name: &'static str,
        cmd: &Cmd,
    ) -> Result<T> {
        self.run(name, async |conn| match (conn, node) {
            (Conn::Cluster(c), Some(node)) => cluster::on_node(c, node, cmd)
                .await
                .and_then(|v| redis::from_redis_value(v).map_err(Into::into)),
            (conn, _) => cmd.query_async(conn).await,
        })
        .await
    }

    /// Runs a read-only command (`GET`, `MGET`) where stale data is acceptable: on a replica
    /// when the config reads from replicas (a sentinel config's replica connection; a cluster
    /// routes it to a replica itself), else as [`query_named`](Self::query_named).
    pub(crate) async fn query_read<T: FromRedisValue>(
        &self,
        name: &'static str,
        cmd: &Cmd,
    ) -> Result<T> {
        match &self.inner.reads {
            Some(reads) => {
                self.run_on(reads, name, async |conn| cmd.query_async(conn).await)
                    .await
            }
            None => self.query_named(name, cmd).await,
        }
    }

    /// Fails with [`ErrorCode::ConnectionUnsupportedServer`] when the server is older than
    /// Redis 7.0 (redisx relies on `SET .. GET` and `PEXPIRE .. NX/GT`; on an older server
    /// every lock-taking read and every tagged write would fail). A server whose `INFO` is
    /// unavailable (renamed or denied) is given the benefit of the doubt.
    pub(crate) async fn check_server_version(&self) -> Result<()> {
        // On a cluster, one master's (INFO without a key would ask every node).
        let node = self
            .scan_nodes()
            .await
            .ok()
            .and_then(|n| n.into_iter().next().flatten());
        let info: String = match self
            .query_on(node.as_ref(), "INFO", redis::cmd("INFO").arg("server"))
            .await
        {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(client = %self.name(), error = %format_args!("{e:#}"), "cannot read the server version (INFO); not checking it");
                return Ok(());
            }
        };
        match server_version(&info) {
            Some(v) if v < (7, 0) => Err(Error::new(
                ErrorCode::ConnectionUnsupportedServer,
                format!(
                    "redisx needs Redis 7.0 or newer (it uses `SET .. GET` and `PEXPIRE .. NX/GT`); the server of client `{}` at {} runs {}.{}",
                    self.name(),
                    self.config(),
                    v.0,
                    v.1
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// `(major, minor)` of the `redis_version` line of an `INFO server` reply (Valkey reports its
/// Redis compatibility version there too).
fn server_version(info: &str) -> Option<(u32, u32)> {
    let version = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("redis_version:"))?;
    let mut parts = version.split('.').map(|p| p.trim().parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => Some((major, minor)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_are_read_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(server_version(info), Some((7, 0)));
        assert_eq!(server_version("redis_version:6.2.14\n"), Some((6, 2)));
        assert_eq!(
            server_version("redis_version:8.4.0\nvalkey_version:8.1.1\n"),
            Some((8, 4))
        );
        assert_eq!(server_version("redis_version:unknown\n"), None);
        assert_eq!(server_version("# Server\n"), None);
        assert!(server_version("redis_version:6.2.6").unwrap() < (7, 0));
    }
}
