//! A few idle [`DedicatedConnection`]s kept for writes followed by `WAIT`: `WAIT` counts the
//! replicas that acknowledged the writes of the connection it runs on, so the write and its
//! `WAIT` share a connection of their own (the shared connection refuses blocking commands).

use std::sync::{Mutex, PoisonError};

use super::{Client, DedicatedConnection};
use crate::error::Result;

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

    /// Closes the idle connections (a plugin's stop).
    pub(crate) fn clear(&self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
