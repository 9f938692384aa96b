//! `redis::aio::ConnectionLike` for [`Client`] and [`DedicatedConnection`], so that
//! `redis::AsyncCommands`, `redis::Pipeline::query_async` and `redis::Script::invoke_async`
//! take the instrumented command path, and the errors they meet come back as
//! `redis::RedisError` (the caller's `RedisResult` cannot hold a `redisx::Error`).

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use super::dedicated::DedicatedConnection;
use super::{Client, command_name, guard};
use crate::error::{Error, ErrorCode};

impl ConnectionLike for Client {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            guard::check(cmd).map_err(to_redis_error)?;
            // A server's error reply is an error here (as `Cmd::query_async` would make it),
            // so that it is counted and traced as one.
            self.run(command_name(cmd), async |conn| {
                conn.req_packed_command(cmd).await?.extract_error()
            })
            .await
            .map_err(to_redis_error)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            guard::check_pipeline(pipeline).map_err(to_redis_error)?;
            self.run("PIPELINE", async |conn| {
                conn.req_packed_commands(pipeline, offset, count).await
            })
            .await
            .map_err(to_redis_error)
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.cfg.db
    }
}

impl ConnectionLike for DedicatedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move { self.query_value(cmd).await.map_err(to_redis_error) })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.pipeline_values(pipeline, offset, count)
                .await
                .map_err(to_redis_error)
        })
    }

    fn get_db(&self) -> i64 {
        self.db()
    }
}

/// A redisx error as a `redis::RedisError`: the Redis error it wraps when there is one
/// (a server reply, an I/O failure, a timeout: what a `redis` user expects to match on),
/// otherwise an I/O error for connection failures (so `is_connection_dropped` and friends
/// answer as they would) and a client error carrying the redisx message for the rest (a
/// refused command).
pub(crate) fn to_redis_error(err: Error) -> RedisError {
    if let Some(e) = err.redis_error() {
        return e.clone();
    }
    let io_kind = match err.code() {
        ErrorCode::ConnectionTimeout | ErrorCode::OperationTimeout => {
            Some(std::io::ErrorKind::TimedOut)
        }
        ErrorCode::ConnectionClosed => Some(std::io::ErrorKind::NotConnected),
        ErrorCode::ConnectionFailed | ErrorCode::ConnectionTls => {
            Some(std::io::ErrorKind::ConnectionRefused)
        }
        _ => None,
    };
    match io_kind {
        Some(kind) => std::io::Error::new(kind, err).into(),
        None => (
            redis::ErrorKind::Client,
            "redisx refused the command",
            err.to_string(),
        )
            .into(),
    }
}
