//! redisx-ops: a command line for operators of a redisx deployment, over [`redisx::ops::Ops`].
//! It reads and repairs what the application's plugins keep in Redis: the dead letters of a
//! stream, a consumer group's pending entries and lag, the locks held (owner token, ttl,
//! fencing token) and a key's rate-limit state.
//!
//! ```text
//! cargo run --example redisx-ops -- <command> [args]   # --help: the commands (see USAGE)
//! cargo run --example redisx-ops -- demo
//! ```
//!
//! `REDIS_URL` names the deployment (default `redis://127.0.0.1:6379`; `redis+cluster://` and
//! `redis+sentinel://` URLs work too) and `REDISX_PREFIX` the application's key prefix (what it
//! gives `RedisXBuilder::key_prefix`; default none). The plugins' own prefixes are taken as
//! their defaults (`lock:`, `stream:`, `rl:`). It never starts a server for these commands: it
//! looks at an existing deployment. A bad command line prints the usage and exits with 2; a
//! failure (the server unreachable, a missing group, an unknown dead letter) prints the error
//! and exits with 1. `demo` alone uses a server the way the other examples do (`REDIS_URL`,
//! else `127.0.0.1:6379`, else a throwaway `redis-server`), seeds state under a key prefix of
//! its own, runs every command on it and cleans up.

#[path = "../support/server.rs"]
mod server;

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use redisx::lock::LockOptions;
use redisx::ops::{Algorithm, Limit, Ops};
use redisx::streams::{ConsumerOptions, Message};
use redisx::{ConnectionConfig, RedisX, redis};
use serde::{Deserialize, Serialize};

/// What the program prints for `--help` and after a bad command line.
pub const USAGE: &str = "\
usage: redisx-ops <command> [args]

commands:
  dlq <stream> [count]                   list the oldest dead letters (default 20)
  requeue <stream> <id|--all>            move dead letters back into the stream
  purge <stream>                         delete the stream's dead letters
  pending <stream> <group>               pending entries per consumer, and the group's lag
  locks [pattern]                        held locks and semaphores matching a glob (default *)
  ratelimit <key> <limit> <window> [algorithm]
                                         a key's rate-limit state, consuming nothing
                                         (window: 500ms, 60s, 5m, 1h, 1d; algorithm: sliding_window
                                         (default), fixed_window, sliding_counter, token_bucket, gcra)
  demo                                   start or find a server, seed it, run every command

environment:
  REDIS_URL       the deployment (default redis://127.0.0.1:6379)
  REDISX_PREFIX   the application's key prefix (default none)";

/// Dead letters `dlq` lists when no count is given.
pub const DEFAULT_COUNT: usize = 20;

/// One operating command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `dlq <stream> [count]`.
    Dlq {
        /// The stream, as the application names it.
        stream: String,
        /// How many dead letters to list, oldest first.
        count: usize,
    },
    /// `requeue <stream> <id|--all>`.
    Requeue {
        /// The stream.
        stream: String,
        /// The dead letter's id; `None` for `--all`.
        id: Option<String>,
    },
    /// `purge <stream>`.
    Purge {
        /// The stream.
        stream: String,
    },
    /// `pending <stream> <group>`.
    Pending {
        /// The stream.
        stream: String,
        /// The consumer group.
        group: String,
    },
    /// `locks [pattern]`.
    Locks {
        /// A glob over lock keys (`*`, `order:*`).
        pattern: String,
    },
    /// `ratelimit <key> <limit> <window> [algorithm]`.
    RateLimit {
        /// The rate-limited key, as the application checks it.
        key: String,
        /// The limit the application checks it against.
        limit: Limit,
    },
}

/// What a command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Print the usage (`-h`, `--help`, `help`).
    Help,
    /// Seed a server and run every command on it.
    Demo,
    /// Run one command against `REDIS_URL`.
    Run(Command),
}

/// A command that failed: the message printed before exiting 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

impl From<redisx::Error> for Failure {
    fn from(e: redisx::Error) -> Self {
        Self(format!("{e:#}"))
    }
}

/// Reads the arguments after the program's name; `Err` says what is wrong with them.
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Parsed, String> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let Some((&name, rest)) = args.split_first() else {
        return Err("no command given".to_owned());
    };
    let arity = |min: usize, max: usize| {
        if (min..=max).contains(&rest.len()) {
            Ok(())
        } else {
            Err(format!(
                "`{name}` takes {min} to {max} arguments, not {}",
                rest.len()
            ))
        }
    };
    let command = match name {
        "-h" | "--help" | "help" => return Ok(Parsed::Help),
        "demo" => {
            arity(0, 0)?;
            return Ok(Parsed::Demo);
        }
        "dlq" => {
            arity(1, 2)?;
            let count = match rest.get(1) {
                Some(n) => n
                    .parse()
                    .map_err(|_| format!("the count `{n}` is not a whole number"))?,
                None => DEFAULT_COUNT,
            };
            Command::Dlq {
                stream: rest[0].to_owned(),
                count,
            }
        }
        "requeue" => {
            arity(2, 2)?;
            Command::Requeue {
                stream: rest[0].to_owned(),
                id: (rest[1] != "--all").then(|| rest[1].to_owned()),
            }
        }
        "purge" => {
            arity(1, 1)?;
            Command::Purge {
                stream: rest[0].to_owned(),
            }
        }
        "pending" => {
            arity(2, 2)?;
            Command::Pending {
                stream: rest[0].to_owned(),
                group: rest[1].to_owned(),
            }
        }
        "locks" => {
            arity(0, 1)?;
            Command::Locks {
                pattern: rest.first().copied().unwrap_or("*").to_owned(),
            }
        }
        "ratelimit" => {
            arity(3, 4)?;
            let points: u64 = rest[1]
                .parse()
                .map_err(|_| format!("the limit `{}` is not a whole number", rest[1]))?;
            let window = parse_window(rest[2])?;
            let algorithm = match rest.get(3) {
                Some(a) => a.parse::<Algorithm>().map_err(|e| e.message().to_owned())?,
                None => Algorithm::default(),
            };
            Command::RateLimit {
                key: rest[0].to_owned(),
                limit: Limit::new(algorithm, points, window),
            }
        }
        other => return Err(format!("unknown command `{other}`")),
    };
    Ok(Parsed::Run(command))
}

/// A window: whole numbers with units (`500ms`, `60s`, `5m`, `1h`, `1d`, `1m30s`, as the
/// attributes write them), or plain seconds (`60`).
pub fn parse_window(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => redisx::parse_duration(text)
            .map_err(|e| format!("the window `{text}` is not a duration: {e}")),
    }
}

/// Runs `command` through `ops`; returns what to print.
pub async fn run(ops: &Ops, command: &Command) -> Result<String, Failure> {
    let mut out = String::new();
    match command {
        Command::Dlq { stream, count } => dlq(ops, stream, *count, &mut out).await?,
        Command::Requeue {
            stream,
            id: Some(id),
        } => match ops.requeue(stream, id).await? {
            Some(new_id) => {
                let _ = writeln!(out, "requeued {id} into {stream} as {new_id}");
            }
            None => {
                return Err(Failure(format!(
                    "no dead letter `{id}` in the dead-letter stream of `{stream}`"
                )));
            }
        },
        Command::Requeue { stream, id: None } => {
            let n = ops.requeue_all(stream).await?;
            let _ = writeln!(out, "requeued {n} dead letter(s) into {stream}");
        }
        Command::Purge { stream } => {
            let n = ops.purge_dlq(stream).await?;
            let _ = writeln!(out, "purged {n} dead letter(s) of {stream}");
        }
        Command::Pending { stream, group } => {
            let p = ops.pending(stream, group).await?;
            let lag = ops
                .lag(stream, group)
                .await?
                .map_or_else(|| "unknown".to_owned(), |n| n.to_string());
            let _ = writeln!(
                out,
                "{stream} / {group}: {} pending (oldest {}, newest {}), lag {lag}",
                p.count,
                p.min_id.as_deref().unwrap_or("-"),
                p.max_id.as_deref().unwrap_or("-"),
            );
            for (consumer, n) in &p.consumers {
                let _ = writeln!(out, "  {consumer}: {n}");
            }
        }
        Command::Locks { pattern } => locks(ops, pattern, &mut out).await?,
        Command::RateLimit { key, limit } => {
            let s = ops.rate_limit_state(key, limit).await?;
            let whole_in = s
                .reset
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{key} under {limit}: {} used, {} left of {}, whole again in {}\n  state key {}",
                s.current,
                s.remaining,
                s.limit,
                human(whole_in),
                ops.rate_limit_key(key, limit),
            );
        }
    }
    Ok(out)
}

/// `dlq`: the count, then each dead letter with why it failed and its payload.
async fn dlq(ops: &Ops, stream: &str, count: usize, out: &mut String) -> redisx::Result<()> {
    let total = ops.dlq_len(stream).await?;
    let dead = ops.dlq(stream, count).await?;
    let _ = writeln!(
        out,
        "{stream}: {total} dead letter(s), showing the oldest {}",
        dead.len()
    );
    let now = SystemTime::now();
    for d in &dead {
        let ago = d
            .failed_at
            .and_then(|t| now.duration_since(t).ok())
            .map_or_else(|| "?".to_owned(), |t| format!("{} ago", human(t)));
        let data = d
            .fields
            .iter()
            .find(|(name, _)| name == "data")
            .map(|(_, v)| shorten(&String::from_utf8_lossy(v), 120))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}  attempts={}  failed {ago}  was {}  error={:?}\n    data={data}",
            d.id,
            d.attempts,
            d.original_id.as_deref().unwrap_or("?"),
            d.error.as_deref().unwrap_or(""),
        );
    }
    Ok(())
}

/// `locks`: the held locks, then the semaphores with their leases.
async fn locks(ops: &Ops, pattern: &str, out: &mut String) -> redisx::Result<()> {
    let token = |t: Option<u64>| t.map_or_else(|| "?".to_owned(), |t| t.to_string());
    let locks = ops.held_locks(pattern).await?;
    let semaphores = ops.held_semaphores(pattern).await?;
    let _ = writeln!(out, "{} lock(s) held matching `{pattern}`", locks.len());
    for l in &locks {
        let _ = writeln!(
            out,
            "  {}  ttl {}  owner {}  fencing token {}",
            l.key,
            l.ttl.map_or_else(|| "none".to_owned(), human),
            l.owner_token,
            token(l.fencing_token),
        );
    }
    let _ = writeln!(
        out,
        "{} semaphore(s) held matching `{pattern}`",
        semaphores.len()
    );
    for s in &semaphores {
        let _ = writeln!(
            out,
            "  {}  {} permit(s) held  last fencing token {}",
            s.key,
            s.leases.len(),
            token(s.fencing_token),
        );
        for lease in &s.leases {
            let _ = writeln!(
                out,
                "    owner {}  ttl {}",
                lease.owner_token,
                human(lease.ttl)
            );
        }
    }
    Ok(())
}

/// `1.5s`, `250ms`, `2m05s`.
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// `text` cut to `max` characters, with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A runtime on `url` under the application prefix `prefix`, failing fast when the server
/// does not answer.
pub async fn connect(url: &str, prefix: &str) -> Result<RedisX, Failure> {
    let cfg = ConnectionConfig::from_url(url)?.command_timeout(Duration::from_secs(5));
    let shown = cfg.to_string();
    let rx = RedisX::builder()
        .client("default", cfg)
        .key_prefix(prefix)
        .build()
        .await
        .map_err(|e| Failure(format!("cannot connect to {shown}: {e:#}")))?;
    // The build connects lazily on some topologies: a ping says now whether it answers.
    if let Err(e) = rx.client().ping().await {
        rx.shutdown().await;
        return Err(Failure(format!("cannot reach {shown}: {e:#}")));
    }
    Ok(rx)
}

/// Runs one command against `REDIS_URL` under `REDISX_PREFIX`; prints its output.
async fn operate(command: &Command) -> Result<(), Failure> {
    let url = std::env::var("REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| RedisX::DEFAULT_URL.to_owned());
    let prefix = std::env::var("REDISX_PREFIX").unwrap_or_default();
    let rx = connect(&url, &prefix).await?;
    let out = run(&Ops::new(&rx), command).await;
    rx.shutdown().await;
    // A closed pipe (`| head`) is not a failure of the command.
    let _ = std::io::stdout().write_all(out?.as_bytes());
    Ok(())
}

/// An order of the demo's `orders` stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    /// Its number.
    pub id: u64,
    /// Its amount, in cents; 0 is invalid and dead-lettered.
    pub amount: u64,
}

/// Runs `line` (a command line after the program's name) as the operator would, printing it
/// and its output.
async fn show(ops: &Ops, line: &str) -> Result<(), Failure> {
    let args: Vec<&str> = line.split_whitespace().collect();
    let Ok(Parsed::Run(command)) = parse(&args) else {
        return Err(Failure(format!(
            "the demo's command `{line}` does not parse"
        )));
    };
    println!("$ redisx-ops {line}");
    print!("{}", run(ops, &command).await?);
    println!();
    Ok(())
}

/// The demo's rate limit: 5 login attempts per minute.
fn login_limit() -> Limit {
    Limit::sliding_window(5, Duration::from_secs(60))
}

/// The demo: seeds a held lock and permit, dead letters, a group with pending entries and lag,
/// and rate-limit hits under a prefix of its own; runs every command; cleans up (also after a
/// failure).
async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _server) = server::find_or_start_redis()?;
    let prefix = format!("redisx-ops-demo:{}:", std::process::id());
    let rx = connect(&url, &prefix).await?;
    println!("--> seeding state under the key prefix `{prefix}`");
    let shown = seed_and_show(&rx).await;
    let cleaned = clean_up(&rx).await;
    rx.shutdown().await;
    shown?;
    cleaned?;
    println!("--> removed the demo's keys");
    Ok(())
}

/// Seeds the state, then runs every command on it.
async fn seed_and_show(rx: &RedisX) -> Result<(), Box<dyn std::error::Error>> {
    let ops = Ops::new(rx);
    let lock = rx
        .locks()
        .acquire(
            "report:daily",
            &LockOptions::new().ttl(Duration::from_secs(30)),
        )
        .await?;
    let permit = rx
        .locks()
        .semaphore("exports", 2)
        .acquire(&LockOptions::new())
        .await?;
    println!("--> holding the lock `report:daily` and one of 2 permits of `exports`");

    // `shipping` reads the stream from its start, but only through a worker that dies.
    rx.streams().create_group("orders", "shipping", "0").await?;
    let orders = [(1, 250), (2, 0), (3, 990), (4, 0)].map(|(id, amount)| Order { id, amount });
    rx.streams().publish_batch("orders", &orders).await?;
    let options = ConsumerOptions::new("billing")
        .start_id("0")
        .block(Duration::from_millis(100));
    let consumer = rx
        .streams()
        .consumer("orders", options, |m: Message<Order>| async move {
            if m.payload().amount == 0 {
                m.reject("invalid amount: 0").await?;
            }
            Ok::<_, redisx::Error>(())
        })
        .start()
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ops.dlq_len("orders").await? < 2 || ops.lag("orders", "billing").await? != Some(0) {
        if tokio::time::Instant::now() > deadline {
            return Err("the demo's consumer did not settle 4 orders within 5 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    consumer.stop().await;
    println!("--> the `billing` consumer took 4 orders and dead-lettered the 2 invalid ones");
    let more = [(5, 120), (6, 300)].map(|(id, amount)| Order { id, amount });
    rx.streams().publish_batch("orders", &more).await?;
    let key = rx.streams().keys("orders", false)?.stream;
    let mut read = redis::cmd("XREADGROUP");
    read.arg(
        &[
            "GROUP", "shipping", "worker-7", "COUNT", "1", "STREAMS", &key, ">",
        ][..],
    );
    let _: redis::Value = rx.client().query(&read).await?;
    println!(
        "--> 2 more orders published; `worker-7` of the group `shipping` read the first order \
         and died before acknowledging it"
    );

    for _ in 0..3 {
        rx.rate_limiter()
            .check("login:10.0.0.1", &login_limit())
            .await?;
    }
    println!("--> 3 login attempts from 10.0.0.1 under 5 per minute\n");

    show(&ops, "locks").await?;
    show(&ops, "dlq orders").await?;
    show(&ops, "pending orders shipping").await?;
    show(&ops, "ratelimit login:10.0.0.1 5 60s").await?;
    show(&ops, "ratelimit login:10.0.0.1 5 60s").await?;
    println!("--> reading the state twice consumed nothing\n");
    if let Some(dead) = ops.dlq("orders", 1).await?.first() {
        show(&ops, &format!("requeue orders {}", dead.id)).await?;
    }
    show(&ops, "purge orders").await?;
    show(&ops, "requeue orders --all").await?;
    show(&ops, "pending orders shipping").await?;
    println!("--> the requeued order is one more entry `shipping` has not read\n");

    lock.release().await?;
    permit.release().await?;
    println!("--> released the lock and the permit\n");
    show(&ops, "locks").await?;
    Ok(())
}

/// Deletes what the demo wrote: the stream and its dead letters, the rate-limit state, the
/// locks' fence counters (the locks themselves are released, or expire).
async fn clean_up(rx: &RedisX) -> redisx::Result<()> {
    let keys = rx.streams().keys("orders", false)?;
    let fences = [
        format!("{}:fence", rx.locks().full_key("report:daily")),
        format!("{}lock:sem:{{exports}}:fence", rx.key_prefix()),
    ];
    // One key per DEL: on a cluster the keys live in different slots.
    for key in fences.iter().chain([&keys.stream, &keys.dlq]) {
        let _: i64 = rx.client().query(redis::cmd("DEL").arg(key)).await?;
    }
    rx.rate_limiter()
        .reset("login:10.0.0.1", &login_limit())
        .await
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match parse(&args) {
        Ok(parsed) => parsed,
        Err(why) => {
            eprintln!("redisx-ops: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let outcome = match parsed {
        Parsed::Help => {
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Parsed::Demo => demo().await,
        Parsed::Run(command) => operate(&command).await.map_err(Into::into),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redisx-ops: {e}");
            ExitCode::from(1)
        }
    }
}
