//! `wait_replicas`: an acquire script followed by `WAIT` on a dedicated connection, so the lock
//! is on `n` replicas before the caller gets it.

use std::time::Duration;

use super::Shared;
use crate::client::Client;
use crate::error::{Error, ErrorCode, Result};
use crate::millis;
use crate::script::LuaScript;

impl Shared {
    /// Runs `script` (an acquire) and `WAIT replicas timeout` as one pipeline on a pooled
    /// dedicated connection, and returns the script's reply with the replicas that have its
    /// write. On a cluster both go to the master of the lock key's slot (the pipeline is routed
    /// by its one key). A `NOSCRIPT` loads the script and sends again (nothing ran).
    pub(super) async fn acquire_replicated(
        &self,
        client: &Client,
        script: &LuaScript,
        keys: &[&str],
        args: &[String],
        (replicas, timeout): (u32, Duration),
    ) -> Result<((i64, i64), u64)> {
        let mut conn = self.wait_pool.get(client).await?;
        let mut pipe = redis::pipe();
        pipe.cmd("EVALSHA")
            .arg(script.script.get_hash())
            .arg(keys.len())
            .arg(keys)
            .arg(args)
            .cmd("WAIT")
            .arg(replicas)
            .arg(millis(timeout.max(Duration::from_millis(1))));
        let sent = async {
            match pipe.query_async(&mut conn).await {
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    script.script.load_async(&mut conn).await?;
                    pipe.query_async(&mut conn).await
                }
                other => other,
            }
        };
        // A dedicated connection has no response timeout: bound the round trip here.
        let limit = timeout.saturating_add(client.config().command_timeout_value());
        match tokio::time::timeout(limit, sent).await {
            Ok(Ok(reply)) => {
                self.wait_pool.put(conn);
                Ok(reply)
            }
            Ok(Err(e)) => Err(Error::from_redis(e).with_context("client", client.name())),
            Err(_) => Err(Error::new(
                ErrorCode::OperationTimeout,
                format!("no reply to the acquire + WAIT within {limit:?} (the WAIT timeout plus the command timeout)"),
            )
            .with_context("client", client.name())),
        }
    }
}

/// The error of an acquire whose lock reached fewer replicas than asked (it was released).
pub(super) fn too_few_replicas(
    key: &str,
    acked: u64,
    (replicas, timeout): (u32, Duration),
) -> Error {
    Error::new(
        ErrorCode::LockAcquisitionFailed,
        format!(
            "the lock reached {acked} of the {replicas} replica(s) asked for within {timeout:?}; it was released"
        ),
    )
    .with_context("key", key.to_owned())
    .with_context("replicas", acked.to_string())
}
