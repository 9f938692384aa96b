//! A few idle [`DedicatedConnection`]s kept for writes followed by `WAIT`: `WAIT` counts the
//! replicas that acknowledged the writes of the connection it runs on, so the write and its
//! `WAIT` share a connection of their own (the shared connection refuses blocking commands).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::{Cmd, FromRedisValue};

use super::{Client, DedicatedConnection};
use crate::error::{Error, ErrorCode, Result};

/// How many idle connections are kept.
const IDLE: usize = 8;

/// The idle connections; a connection that failed is dropped by its user, not put back.
#[derive(Default)]
pub(crate) struct WaitPool {
    idle: Mutex<Vec<DedicatedConnection>>,
}

impl WaitPool {
    /// An idle connection, or a new one of `client`.
    pub(crate) async fn get(&self, client: &Client) -> Result<DedicatedConnection> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => client.dedicated_connection().await,
        }
    }

    /// Keeps `conn` for the next caller (up to [`IDLE`] of them).
    pub(crate) fn put(&self, conn: DedicatedConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE {
            idle.push(conn);
        }
    }

    /// Sends `write` and `WAIT replicas timeout` as one pipeline on a pooled connection, and
    /// returns `write`'s reply with the number of replicas that acknowledged it. On a cluster
    /// the pipeline goes to the master of `write`'s key. A dedicated connection has no
    /// response timeout, so the round trip is bounded here by the `WAIT` timeout plus the
    /// command timeout (then [`ErrorCode::OperationTimeout`], naming `what`). A `NOSCRIPT`
    /// reply (`write` runs a redisx script the server lost; nothing ran) reloads the scripts
    /// and sends once more. A connection that failed or did not answer is dropped, not reused.
    pub(crate) async fn write_and_wait<T: FromRedisValue>(
        &self,
        client: &Client,
        write: Cmd,
        replicas: u64,
        timeout: Duration,
        what: &str,
    ) -> Result<(T, u64)> {
        let timeout = timeout.max(Duration::from_millis(1));
        let mut conn = self.get(client).await?;
        let mut pipe = redis::pipe();
        pipe.add_command(write)
            .cmd("WAIT")
            .arg(replicas)
            .arg(crate::millis(timeout));
        let sent = async {
            match conn.query_pipeline(&pipe).await {
                Err(e) if is_no_script(&e) => {
                    for s in crate::script::builtin() {
                        client.load_script(&s.script).await?;
                    }
                    conn.query_pipeline(&pipe).await
                }
                other => other,
            }
        };
        let limit = timeout.saturating_add(client.config().command_timeout_value());
        match tokio::time::timeout(limit, sent).await {
            Ok(Ok(reply)) => {
                self.put(conn);
                Ok(reply)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::new(
                ErrorCode::OperationTimeout,
                format!(
                    "no reply to {what} + WAIT within {limit:?} (the WAIT timeout plus the command timeout)"
                ),
            )
            .with_context("client", client.name())),
        }
    }

    /// Closes the idle connections (a plugin's stop).
    pub(crate) fn clear(&self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Whether `e` is Redis's `NOSCRIPT`.
fn is_no_script(e: &Error) -> bool {
    e.redis_error()
        .is_some_and(|r| r.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))
}
