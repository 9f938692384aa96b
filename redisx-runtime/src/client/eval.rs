//! Running Lua scripts: `EVALSHA`, and on `NOSCRIPT` the script is loaded and run once more.
//!
//! [`Client::eval`] and [`Client::eval_cmd`] write the call into one command buffer
//! ([`script_cmd`]), as a hand-written `EVALSHA` would: `redis::ScriptInvocation` first collects
//! every key and argument in a vector of its own, then copies them into the command.

use redis::{Cmd, FromRedisValue, Script, ScriptInvocation, ServerErrorKind, ToRedisArgs};

use super::Client;
use crate::error::Result;

/// An `EVALSHA` of `script` with `keys` keys, to be followed by the keys, then `args`
/// arguments, and run by [`Client::eval_cmd`]. Its buffers are sized for them up front.
pub(crate) fn script_cmd(script: &Script, keys: usize, args: usize) -> Cmd {
    let mut cmd = Cmd::with_capacity(3 + keys + args, 64 * (1 + keys + args));
    cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys);
    cmd
}

impl Client {
    /// Runs a Lua script by `EVALSHA`, loading it on `NOSCRIPT` and retrying once. Not an
    /// `async fn`: the command is written here, and the future is [`eval_cmd`](Self::eval_cmd)'s
    /// own (one level less in the types of the futures that await it).
    pub(crate) fn eval<'a, T, K, A>(
        &'a self,
        script: &'a Script,
        keys: &[K],
        args: &[A],
    ) -> impl Future<Output = Result<T>> + use<'a, T, K, A>
    where
        T: FromRedisValue,
        K: ToRedisArgs,
        A: ToRedisArgs,
    {
        let mut cmd = script_cmd(script, keys.len(), args.len());
        for k in keys {
            cmd.arg(k);
        }
        for a in args {
            cmd.arg(a);
        }
        self.eval_cmd(script, cmd)
    }

    /// Runs `cmd`, an `EVALSHA` of `script` built by [`script_cmd`], loading the script on
    /// `NOSCRIPT` and retrying once.
    pub(crate) async fn eval_cmd<T: FromRedisValue>(&self, script: &Script, cmd: Cmd) -> Result<T> {
        self.run("EVALSHA", async |conn| {
            match cmd.query_async(conn).await {
                Err(e) if e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) => {}
                reply => return reply,
            }
            script.prepare_invoke().load_async(conn).await?;
            cmd.query_async(conn).await
        })
        .await
    }

    /// Runs a prepared script invocation by `EVALSHA`, loading it on `NOSCRIPT`.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T> {
        self.run("EVALSHA", async |conn| invocation.invoke_async(conn).await)
            .await
    }

    /// Loads a script into the server's script cache (`SCRIPT LOAD`).
    pub(crate) async fn load_script(&self, script: &Script) -> Result<()> {
        self.run("SCRIPT", async |conn| {
            script.prepare_invoke().load_async(conn).await.map(drop)
        })
        .await
    }
}
