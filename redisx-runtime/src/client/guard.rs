//! Which commands the shared connection refuses: blocking commands (they would hold the
//! connection every plugin multiplexes over until they return) and connection-state commands
//! (they would change the database, the protocol or the reply mode under every other caller).
//! Those run on a [`DedicatedConnection`](super::DedicatedConnection) instead.
//!
//! The check runs on every public command, so it reads the command name in place (the first
//! argument, compared case-insensitively) and allocates nothing.

use redis::{Arg, Cmd, Pipeline};

use crate::error::{Error, ErrorCode};

/// Why a command may not run on the shared connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// It blocks the connection until it returns (inside `MULTI`, Redis runs it without
    /// blocking, so an atomic pipeline may carry it).
    Blocking,
    /// It changes the state of the connection (database, transaction, reply mode, protocol).
    State,
    /// It turns the connection into a subscriber or a monitor.
    Subscriber,
}

/// The refused commands, each with its canonical name (used as the metric label).
const REFUSED: &[(&str, Kind)] = &[
    ("BLPOP", Kind::Blocking),
    ("BRPOP", Kind::Blocking),
    ("BLMOVE", Kind::Blocking),
    ("BRPOPLPUSH", Kind::Blocking),
    ("BZPOPMIN", Kind::Blocking),
    ("BZPOPMAX", Kind::Blocking),
    ("BLMPOP", Kind::Blocking),
    ("BZMPOP", Kind::Blocking),
    ("WAIT", Kind::Blocking),
    ("WAITAOF", Kind::Blocking),
    // Only with `BLOCK` (see `refused`).
    ("XREAD", Kind::Blocking),
    ("XREADGROUP", Kind::Blocking),
    ("SELECT", Kind::State),
    ("MULTI", Kind::State),
    ("EXEC", Kind::State),
    ("DISCARD", Kind::State),
    ("WATCH", Kind::State),
    ("RESET", Kind::State),
    ("QUIT", Kind::State),
    ("HELLO", Kind::State),
    // Only `CLIENT REPLY` (see `refused`).
    ("CLIENT", Kind::State),
    ("SUBSCRIBE", Kind::Subscriber),
    ("PSUBSCRIBE", Kind::Subscriber),
    ("SSUBSCRIBE", Kind::Subscriber),
    ("UNSUBSCRIBE", Kind::Subscriber),
    ("PUNSUBSCRIBE", Kind::Subscriber),
    ("SUNSUBSCRIBE", Kind::Subscriber),
    ("MONITOR", Kind::Subscriber),
];

/// The first argument of `cmd`, as bytes.
fn first(cmd: &Cmd) -> Option<&[u8]> {
    match cmd.args_iter().next() {
        Some(Arg::Simple(name)) => Some(name),
        _ => None,
    }
}

/// The canonical name and kind of `cmd` when the shared connection refuses it.
pub(crate) fn refused(cmd: &Cmd) -> Option<(&'static str, Kind)> {
    let name = first(cmd)?;
    // Every refused name is 4 to 12 bytes long: most commands are turned away here.
    if !(4..=12).contains(&name.len()) {
        return None;
    }
    let &(canonical, kind) = REFUSED
        .iter()
        .find(|(n, _)| n.len() == name.len() && n.as_bytes().eq_ignore_ascii_case(name))?;
    let refuse = match canonical {
        "XREAD" | "XREADGROUP" => has_block_option(cmd),
        "CLIENT" => {
            matches!(cmd.args_iter().nth(1), Some(Arg::Simple(sub)) if sub.eq_ignore_ascii_case(b"REPLY"))
        }
        _ => true,
    };
    refuse.then_some((canonical, kind))
}

/// The canonical name of a command the shared connection refuses, for the metric label of
/// the same command sent on a dedicated connection.
pub(crate) fn refused_name(cmd: &Cmd) -> Option<&'static str> {
    let name = first(cmd)?;
    REFUSED
        .iter()
        .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        .map(|(n, _)| *n)
}

/// Whether an `XREAD`/`XREADGROUP` carries `BLOCK` (an option before `STREAMS`).
fn has_block_option(cmd: &Cmd) -> bool {
    for arg in cmd.args_iter().skip(1) {
        if let Arg::Simple(a) = arg {
            if a.eq_ignore_ascii_case(b"BLOCK") {
                return true;
            }
            if a.eq_ignore_ascii_case(b"STREAMS") {
                return false;
            }
        }
    }
    false
}

/// The error for `cmd` on the shared connection, if it is refused there.
pub(crate) fn check(cmd: &Cmd) -> Result<(), Error> {
    match refused(cmd) {
        Some((name, kind)) => Err(refusal(name, kind, false)),
        None => Ok(()),
    }
}

/// The error for the first command of `pipeline` the shared connection refuses. In an atomic
/// pipeline (`redis::pipe().atomic()`: one `MULTI`..`EXEC` request), blocking commands do not
/// block, so only state and subscriber commands are refused there.
pub(crate) fn check_pipeline(pipeline: &Pipeline) -> Result<(), Error> {
    let atomic = pipeline.is_transaction();
    for cmd in pipeline.cmd_iter() {
        match refused(cmd) {
            Some((_, Kind::Blocking)) if atomic => {}
            Some((name, kind)) => return Err(refusal(name, kind, true)),
            None => {}
        }
    }
    Ok(())
}

/// The error for `name` on a dedicated connection, if even that one cannot carry it (a
/// subscriber or monitor needs a connection of another kind; `CLIENT REPLY` would leave the
/// connection waiting for replies that never come).
pub(crate) fn check_dedicated(cmd: &Cmd) -> Result<(), Error> {
    match refused(cmd) {
        Some((name, Kind::Subscriber)) => Err(Error::new(
            ErrorCode::OperationNeedsDedicatedConnection,
            format!(
                "`{name}` turns a connection into a subscriber or monitor, which a command connection cannot carry; use `rx.pubsub()` for subscriptions"
            ),
        )
        .with_context("command", name)),
        Some(("CLIENT", _)) => Err(Error::new(
            ErrorCode::OperationNeedsDedicatedConnection,
            "`CLIENT REPLY` would leave the connection waiting for replies that never come; it is not supported through redisx",
        )
        .with_context("command", "CLIENT")),
        _ => Ok(()),
    }
}

fn refusal(name: &'static str, kind: Kind, in_pipeline: bool) -> Error {
    let why = match kind {
        Kind::Blocking => {
            "blocks the connection every redisx plugin shares until it returns; run it on a connection of its own: `rx.dedicated_connection()`"
        }
        Kind::State if in_pipeline && matches!(name, "MULTI" | "EXEC" | "DISCARD" | "WATCH") => {
            "is a transaction command: build the transaction with `redis::pipe().atomic()` (sent as one request), or run it on a connection of its own: `rx.dedicated_connection()`"
        }
        Kind::State => {
            "changes the state of the connection every redisx plugin shares; run it on a connection of its own: `rx.dedicated_connection()` (a transaction can also be one request: `redis::pipe().atomic()`)"
        }
        Kind::Subscriber => {
            "turns the connection every redisx plugin shares into a subscriber or monitor; use a connection of its own: `rx.pubsub()` for subscriptions (`rx.dedicated_connection()` for blocking and connection-state commands)"
        }
    };
    Error::new(
        ErrorCode::OperationNeedsDedicatedConnection,
        format!("`{name}` {why}"),
    )
    .with_context("command", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(cmd: &Cmd) -> Option<&'static str> {
        refused(cmd).map(|(n, _)| n)
    }

    #[test]
    fn blocking_and_state_commands_are_refused_in_any_case() {
        assert_eq!(name(redis::cmd("blpop").arg("k").arg(1)), Some("BLPOP"));
        assert_eq!(name(&redis::cmd("Select")), Some("SELECT"));
        assert_eq!(name(&redis::cmd("MULTI")), Some("MULTI"));
        assert_eq!(name(&redis::cmd("subscribe")), Some("SUBSCRIBE"));
        assert_eq!(name(redis::cmd("GET").arg("k")), None);
        assert_eq!(name(redis::cmd("SET").arg("BLPOP").arg("x")), None);
        assert_eq!(name(&redis::cmd("WAITING")), None);
    }

    #[test]
    fn xread_is_refused_only_with_block() {
        let plain = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg("block")
            .arg("0")
            .clone();
        assert_eq!(name(&plain), None);
        let blocking = redis::cmd("xreadgroup")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("block")
            .arg(100)
            .arg("STREAMS")
            .arg("s")
            .arg(">")
            .clone();
        assert_eq!(name(&blocking), Some("XREADGROUP"));
    }

    #[test]
    fn only_client_reply_is_refused() {
        assert_eq!(
            name(redis::cmd("CLIENT").arg("reply").arg("OFF")),
            Some("CLIENT")
        );
        assert_eq!(name(redis::cmd("CLIENT").arg("SETNAME").arg("x")), None);
    }

    #[test]
    fn atomic_pipelines_may_carry_blocking_commands() {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("BLPOP")
            .arg("k")
            .arg(1)
            .cmd("SET")
            .arg("a")
            .arg(1);
        assert!(check_pipeline(&pipe).is_ok());
        let mut pipe = redis::pipe();
        pipe.cmd("BLPOP").arg("k").arg(1);
        assert!(check_pipeline(&pipe).is_err());
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("SELECT").arg(1);
        assert!(check_pipeline(&pipe).is_err());
    }

    #[test]
    fn the_refusal_names_the_command_and_the_way_out() {
        let err = check(redis::cmd("brpop").arg("k").arg(0)).unwrap_err();
        assert_eq!(err.code(), ErrorCode::OperationNeedsDedicatedConnection);
        assert!(err.message().contains("`BRPOP`"), "{err}");
        assert!(err.message().contains("rx.dedicated_connection()"), "{err}");
    }
}
