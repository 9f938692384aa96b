//! `wait_replicas`: an acquire script followed by `WAIT` on a dedicated connection, so the lock
//! is on `n` replicas before the caller gets it.

use std::time::Duration;

use super::Shared;
use crate::client::Client;
use crate::error::{Error, ErrorCode, Result};
use crate::script::LuaScript;

impl Shared {
    /// Runs `script` (an acquire) and `WAIT` for `replicas` within `timeout` on a pooled
    /// dedicated connection ([`WaitPool::write_and_wait`](crate::client::WaitPool)): the
    /// script's reply and the replicas that have its write. On a cluster both go to the
    /// master of the lock key's slot.
    pub(super) async fn acquire_replicated(
        &self,
        client: &Client,
        script: &LuaScript,
        keys: &[&str],
        args: &[&str],
        (replicas, timeout): (u32, Duration),
    ) -> Result<((i64, i64), u64)> {
        let mut acquire = redis::cmd("EVALSHA");
        acquire
            .arg(script.script.get_hash())
            .arg(keys.len())
            .arg(keys)
            .arg(args);
        self.wait_pool
            .write_and_wait(client, acquire, u64::from(replicas), timeout, "the acquire")
            .await
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
