//! The operator's surface, `redisx::ops::Ops`, and the `redisx-ops` command line
//! (`examples/redisx-ops/main.rs`) over it, against real Redis on a standalone server and on
//! the 3-master cluster: held locks and semaphore leases with their owner tokens, ttls and
//! fencing tokens (found by `SCAN` on every master, gone once released); dead letters written
//! by a real consumer, listed, requeued and purged; a group's pending entries and lag after
//! publishing without consuming; a key's rate-limit state, equal to what the limiter reports
//! and not consumed by reading it; and the command line's parsing and output.

use std::time::Duration;

use redisx::RedisX;
use redisx::lock::LockOptions;
use redisx::ops::{Algorithm, Decision, Limit, Ops};
use redisx::rate_limit::RateLimitConfig;
use redisx::streams::{ConsumerOptions, Message};
use redisx::testing::{Deployment, Topology};
use redisx::{ErrorCode, redis};
use redisx_tests::{eventually, raw_connection, unique_prefix};
use serde::{Deserialize, Serialize};

#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/redisx-ops/main.rs"]
mod cli;

use cli::{Command, Parsed};

const HOUR: Duration = Duration::from_secs(3600);

/// A runtime of default settings on `deployment` under a prefix of its own.
async fn runtime(deployment: &Deployment, test: &str) -> RedisX {
    deployment.runtime(&unique_prefix(test)).await
}

/// Keys matching `pattern` on each master, read without redisx: how many masters hold one.
async fn masters_holding(deployment: &Deployment, pattern: &str) -> usize {
    let mut holding = 0;
    for url in deployment.master_urls() {
        let mut conn = raw_connection(&url).await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut conn)
            .await
            .expect("KEYS");
        holding += usize::from(!keys.is_empty());
    }
    holding
}

async fn held_locks_show_owner_ttl_and_fencing_token_then_vanish(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(&deployment, "ops_locks").await;
    // Another application on the same servers: its locks are not this one's.
    let other = runtime(&deployment, "ops_locks_other").await;
    let ops = Ops::new(&rx);
    let ttl20 = LockOptions::new().ttl(Duration::from_secs(20));
    let foreign = other.locks().acquire("order:0", &ttl20).await.unwrap();

    let mut names: Vec<String> = (0..9).map(|n| format!("order:{n}")).collect();
    names.extend(["job:a", "job:b", "job:c"].map(str::to_owned));
    let mut guards = Vec::new();
    for name in &names {
        guards.push(rx.locks().acquire(name, &ttl20).await.unwrap());
    }
    let held = ops.held_locks("*").await.unwrap();
    names.sort();
    let keys: Vec<&str> = held.iter().map(|h| h.key.as_str()).collect();
    assert_eq!(keys, names, "every lock, sorted, none of the other app's");
    for guard in &guards {
        let h = held.iter().find(|h| h.key == guard.key()).unwrap();
        assert_eq!(h.owner_token, guard.owner_token(), "{h:?}");
        assert_eq!(h.fencing_token, Some(guard.fencing_token()), "{h:?}");
        assert_eq!(h.full_key, rx.locks().full_key(guard.key()));
        let ttl = h.ttl.expect("a lock expires");
        assert!(
            ttl > Duration::ZERO && ttl <= Duration::from_secs(20),
            "{h:?}"
        );
    }
    if topology == Topology::Cluster {
        let pattern = format!("{}lock:{{*}}", rx.key_prefix());
        let spread = masters_holding(&deployment, &pattern).await;
        assert!(
            spread >= 2,
            "the locks sit on several masters, each was scanned"
        );
    }
    assert_eq!(ops.held_locks("order:*").await.unwrap().len(), 9);
    let jobs = ops.held_locks("job:?").await.unwrap();
    let jobs: Vec<&str> = jobs.iter().map(|h| h.key.as_str()).collect();
    assert_eq!(jobs, ["job:a", "job:b", "job:c"]);

    // One lock, by key; a free key is `None`; a bad one is the lock's own error.
    let one = ops.lock("order:3").await.unwrap().expect("held");
    assert_eq!(one.owner_token, guards[3].owner_token());
    assert_eq!(ops.lock("order:99").await.unwrap(), None);
    for e in [
        ops.lock("").await.unwrap_err(),
        ops.held_locks("").await.unwrap_err(),
    ] {
        assert_eq!(e.code(), ErrorCode::LockKeyInvalid, "{e:#}");
    }

    // Released: gone. Taken again: the new holder, with a larger token.
    let third = guards.remove(3);
    let old_token = third.fencing_token();
    third.release().await.unwrap();
    assert_eq!(ops.lock("order:3").await.unwrap(), None);
    assert_eq!(ops.held_locks("*").await.unwrap().len(), 11);
    let again = rx.locks().acquire("order:3", &ttl20).await.unwrap();
    let seen = ops.lock("order:3").await.unwrap().expect("held again");
    assert_eq!(seen.owner_token, again.owner_token());
    assert_eq!(seen.fencing_token, Some(again.fencing_token()));
    assert!(again.fencing_token() > old_token);
    guards.push(again);

    for guard in guards {
        guard.release().await.unwrap();
    }
    assert!(ops.held_locks("*").await.unwrap().is_empty());
    let theirs = Ops::new(&other).held_locks("*").await.unwrap();
    assert_eq!(theirs.len(), 1, "the other app's lock is still there");
    assert_eq!(theirs[0].owner_token, foreign.owner_token());
    rx.shutdown().await;
    other.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    held_locks_show_owner_ttl_and_fencing_token_then_vanish
);

async fn semaphore_leases_show_apart_and_a_forced_release_frees_a_lock(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(&deployment, "ops_semaphores").await;
    let ops = Ops::new(&rx);
    let ttl20 = LockOptions::new().ttl(Duration::from_secs(20));
    let exports = rx.locks().semaphore("exports", 3);
    let permits = [
        exports.acquire(&ttl20).await.unwrap(),
        exports.acquire(&ttl20).await.unwrap(),
    ];

    // A semaphore's leases are not locks; they show among the semaphores.
    assert!(ops.held_locks("*").await.unwrap().is_empty());
    let sems = ops.held_semaphores("*").await.unwrap();
    assert_eq!(sems.len(), 1, "{sems:?}");
    let sem = &sems[0];
    assert_eq!(sem.key, "exports");
    assert_eq!(
        sem.fencing_token,
        Some(permits[1].fencing_token()),
        "the newest"
    );
    let mut tokens: Vec<&str> = sem.leases.iter().map(|l| l.owner_token.as_str()).collect();
    tokens.sort_unstable();
    let mut want = permits.each_ref().map(redisx::lock::Permit::owner_token);
    want.sort_unstable();
    assert_eq!(tokens, want);
    assert!(sem.leases.iter().all(|l| l.ttl <= Duration::from_secs(20)));
    let one = ops.semaphore("exports").await.unwrap().expect("held");
    assert_eq!(one.leases.len(), 2);
    assert_eq!(ops.semaphore("imports").await.unwrap(), None);
    for permit in permits {
        permit.release().await.unwrap();
    }
    assert!(ops.held_semaphores("*").await.unwrap().is_empty());
    assert_eq!(ops.semaphore("exports").await.unwrap(), None);

    // An administrator's removal, whoever holds the lock.
    let stuck = rx.locks().acquire("job:stuck", &ttl20).await.unwrap();
    assert!(ops.lock("job:stuck").await.unwrap().is_some());
    assert!(ops.force_release("job:stuck").await.unwrap());
    assert_eq!(ops.lock("job:stuck").await.unwrap(), None);
    assert!(
        !ops.force_release("job:stuck").await.unwrap(),
        "nothing left"
    );
    drop(stuck);
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    semaphore_leases_show_apart_and_a_forced_release_frees_a_lock
);

/// An order; an amount of 0 is rejected by the consumer of [`dead_letter`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    amount: u64,
}

/// Runs the consumer `ops-test` of a new group `group` of `stream`, which rejects the orders
/// of amount 0, publishes `orders`, and waits until the group has read them all, the consumer
/// has settled all it read and the dead-letter stream holds `dlq` entries; returns the
/// published ids.
///
/// Each call takes a group of its own, created at the stream's end: a stopped consumer's last
/// blocking read may still be open on the server for its block time (its connection is
/// dropped, not awaited), and would take an entry added then; another group never sees it.
async fn dead_letter(
    rx: &RedisX,
    stream: &str,
    group: &str,
    orders: &[Order],
    dlq: u64,
) -> Vec<String> {
    assert!(rx.streams().create_group(stream, group, "$").await.unwrap());
    let options = ConsumerOptions::new(group)
        .consumer("ops-test")
        .block(Duration::from_millis(50));
    let handle = rx
        .streams()
        .consumer(stream, options, |m: Message<Order>| async move {
            if m.payload().amount == 0 {
                m.reject("invalid amount").await?;
            }
            Ok::<_, redisx::Error>(())
        })
        .start()
        .await
        .unwrap();
    let ids = rx.streams().publish_batch(stream, orders).await.unwrap();
    let ops = Ops::new(rx);
    let settled = eventually(Duration::from_secs(5), Duration::from_millis(10), || {
        let ops = ops.clone();
        async move {
            ops.dlq_len(stream).await.unwrap() == dlq
                && ops.lag(stream, group).await.unwrap() == Some(0)
                && ops.pending(stream, group).await.unwrap().count == 0
        }
    })
    .await;
    assert!(settled, "the consumer settled every order");
    handle.stop().await;
    ids
}

async fn dead_letters_are_listed_requeued_and_purged_through_ops(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(&deployment, "ops_dlq").await;
    let ops = Ops::new(&rx);
    let orders: Vec<Order> = [7, 0, 3, 0, 0]
        .into_iter()
        .zip(1..)
        .map(|(amount, id)| Order { id, amount })
        .collect();
    let streams = rx.streams();
    // A group that reads nothing: its lag counts every entry ever added.
    assert!(streams.create_group("orders", "audit", "0").await.unwrap());
    let ids = dead_letter(&rx, "orders", "billing-1", &orders, 3).await;

    let dead = ops.dlq("orders", 10).await.unwrap();
    assert_eq!(dead.len(), 3);
    let originals: Vec<_> = dead.iter().filter_map(|d| d.original_id.clone()).collect();
    assert_eq!(originals, [&*ids[1], &ids[3], &ids[4]], "oldest first");
    for d in &dead {
        assert_eq!(d.error.as_deref(), Some("invalid amount"));
        assert_eq!(d.payload::<Order>().unwrap().amount, 0);
    }
    let first_two = ops.dlq("orders", 2).await.unwrap();
    assert_eq!(first_two, dead[..2], "the count bounds the list");

    let new_id = ops.requeue("orders", &dead[0].id).await.unwrap();
    let last = streams
        .info("orders")
        .await
        .unwrap()
        .and_then(|i| i.last_id);
    assert!(new_id.is_some() && last == new_id, "appended to the stream");
    assert_eq!(streams.len("orders").await.unwrap(), 6);
    assert_eq!(ops.dlq_len("orders").await.unwrap(), 2);
    let again = ops.requeue("orders", &dead[0].id).await.unwrap();
    assert_eq!(again, None, "gone from the DLQ");

    assert_eq!(ops.requeue_all("orders").await.unwrap(), 2);
    assert_eq!(ops.dlq_len("orders").await.unwrap(), 0);
    assert_eq!(streams.len("orders").await.unwrap(), 8);
    let lag = ops.lag("orders", "audit").await.unwrap();
    assert_eq!(lag, Some(8), "the requeued entries are new entries");

    // Dead again, then purged: the stream keeps its entries.
    let nine = [Order { id: 9, amount: 0 }];
    dead_letter(&rx, "orders", "billing-2", &nine, 1).await;
    assert_eq!(ops.purge_dlq("orders").await.unwrap(), 1);
    assert_eq!(ops.dlq_len("orders").await.unwrap(), 0);
    assert_eq!(streams.len("orders").await.unwrap(), 9);
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    dead_letters_are_listed_requeued_and_purged_through_ops
);

/// Reads `count` entries of `stream` as `consumer` of `group` without acknowledging them (a
/// worker that died holding them).
async fn read_without_ack(rx: &RedisX, stream: &str, group: &str, consumer: &str, count: u64) {
    let key = rx.streams().keys(stream, false).unwrap().stream;
    let mut read = redis::cmd("XREADGROUP");
    read.arg(&["GROUP", group, consumer, "COUNT", &count.to_string()][..]);
    read.arg(&["STREAMS", &key, ">"][..]);
    let _: redis::Value = rx.client().query(&read).await.unwrap();
}

async fn pending_and_lag_after_publishing_without_consuming(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(&deployment, "ops_pending").await;
    let (ops, streams) = (Ops::new(&rx), rx.streams());
    assert!(streams.create_group("tasks", "workers", "$").await.unwrap());
    let jobs: Vec<Order> = (0..5).map(|id| Order { id, amount: 1 }).collect();
    let ids = streams.publish_batch("tasks", &jobs).await.unwrap();

    let p = ops.pending("tasks", "workers").await.unwrap();
    assert_eq!((p.count, p.min_id), (0, None), "nothing delivered yet");
    assert!(p.consumers.is_empty());
    let lag = ops.lag("tasks", "workers").await.unwrap();
    assert_eq!(lag, Some(5), "all 5 waiting");

    read_without_ack(&rx, "tasks", "workers", "worker-7", 2).await;
    read_without_ack(&rx, "tasks", "workers", "worker-8", 1).await;
    let p = ops.pending("tasks", "workers").await.unwrap();
    assert_eq!(p.count, 3);
    assert_eq!(
        (p.min_id, p.max_id),
        (Some(ids[0].clone()), Some(ids[2].clone()))
    );
    let per_consumer = [("worker-7".to_owned(), 2), ("worker-8".to_owned(), 1)];
    assert_eq!(p.consumers, per_consumer);
    assert_eq!(ops.lag("tasks", "workers").await.unwrap(), Some(2));

    for e in [
        ops.pending("tasks", "nobody").await.unwrap_err(),
        ops.lag("tasks", "nobody").await.unwrap_err(),
    ] {
        assert_eq!(e.code(), ErrorCode::StreamConsumerGroupError, "{e:#}");
    }
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    pending_and_lag_after_publishing_without_consuming
);

/// The fields of a decision that do not depend on when it was made.
fn counts(d: &Decision) -> (bool, u64, u64, u64) {
    (d.allowed, d.limit, d.remaining, d.current)
}

async fn rate_limit_state_is_the_limiters_and_reading_consumes_nothing(topology: Topology) {
    let deployment = Deployment::start(topology);
    let login = [Limit::sliding_window(5, HOUR)];
    let rx = deployment
        .redisx_builder()
        .key_prefix(unique_prefix("ops_rate_limit"))
        .rate_limit(RateLimitConfig::default().policy("login", login))
        .build()
        .await
        .unwrap();
    let ops = Ops::new(&rx);
    let rl = rx.rate_limiter();
    let mut raw = deployment.raw_connection().await;

    for alg in Algorithm::ALL {
        let limit = Limit::new(alg, 5, HOUR);
        // Untouched: the whole quota, and the read writes no state.
        let fresh = ops.rate_limit_state("untouched", &limit).await.unwrap();
        assert_eq!(counts(&fresh), (true, 5, 5, 0), "{alg:?}: {fresh:?}");
        let exists: bool = redis::cmd("EXISTS")
            .arg(ops.rate_limit_key("untouched", &limit))
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(!exists, "{alg:?}: reading wrote nothing");

        let state = async || counts(&ops.rate_limit_state("k", &limit).await.unwrap());
        for _ in 0..2 {
            rl.check("k", &limit).await.unwrap();
        }
        let third = counts(&rl.check("k", &limit).await.unwrap());
        let read = state().await;
        assert_eq!(read, (true, 5, 2, 3), "{alg:?}");
        assert_eq!(read, third, "{alg:?}: what the last check reported");
        let limiters = counts(&rl.state("k", &limit).await.unwrap());
        assert_eq!(read, limiters, "{alg:?}: the limiter's own read");
        assert_eq!(state().await, read, "{alg:?}: two reads agree");
        let next = counts(&rl.check("k", &limit).await.unwrap());
        assert_eq!(next, (true, 5, 1, 4), "{alg:?}: the reads took nothing");
        ops.reset_rate_limit("k", &limit).await.unwrap();
        assert_eq!(state().await, (true, 5, 5, 0), "{alg:?}: reset");
    }

    let ip = "10.0.0.1";
    for _ in 0..2 {
        rl.check_policy("login", ip, 1).await.unwrap();
    }
    let state = async || counts(&ops.rate_limit_policy_state("login", ip).await.unwrap());
    assert_eq!(state().await, (true, 5, 3, 2));
    assert_eq!(state().await, (true, 5, 3, 2), "reading consumed nothing");
    ops.reset_rate_limit_policy("login", ip).await.unwrap();
    assert_eq!(state().await, (true, 5, 5, 0));
    let e = ops.rate_limit_policy_state("nope", ip).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ConfigInvalid, "{e:#}");
    rx.shutdown().await;
}

redisx_tests::on_topologies!(rate_limit_state_is_the_limiters_and_reading_consumes_nothing);

/// What `cli::parse` makes of a command line.
fn parsed(line: &str) -> Result<Parsed, String> {
    cli::parse(&line.split_whitespace().collect::<Vec<_>>())
}

/// The command of `line`, which must parse.
fn command(line: &str) -> Command {
    match parsed(line) {
        Ok(Parsed::Run(c)) => c,
        other => panic!("`{line}` is not a command: {other:?}"),
    }
}

/// Runs `line` as the command line does, through `ops`.
async fn run(ops: &Ops, line: &str) -> Result<String, cli::Failure> {
    cli::run(ops, &command(line)).await
}

#[test]
fn the_command_line_parses_or_says_what_is_wrong() {
    for (line, want) in [
        ("dlq orders", r#"Dlq { stream: "orders", count: 20 }"#),
        ("dlq orders 5", r#"Dlq { stream: "orders", count: 5 }"#),
        (
            "requeue o 1-0",
            r#"Requeue { stream: "o", id: Some("1-0") }"#,
        ),
        ("requeue o --all", r#"Requeue { stream: "o", id: None }"#),
        ("purge orders", r#"Purge { stream: "orders" }"#),
        ("pending o g", r#"Pending { stream: "o", group: "g" }"#),
        ("locks", r#"Locks { pattern: "*" }"#),
        ("locks order:*", r#"Locks { pattern: "order:*" }"#),
    ] {
        assert_eq!(format!("{:?}", command(line)), want, "{line}");
    }
    let second = Duration::from_secs(1);
    for (line, algorithm, points, window) in [
        (
            "ratelimit ip:1 5 1m30s",
            Algorithm::SlidingWindow,
            5,
            second * 90,
        ),
        (
            "ratelimit ip:1 10 60",
            Algorithm::SlidingWindow,
            10,
            second * 60,
        ),
        (
            "ratelimit ip:1 10 500ms gcra",
            Algorithm::Gcra,
            10,
            second / 2,
        ),
        (
            "ratelimit ip:1 3 1h fixed_window",
            Algorithm::FixedWindow,
            3,
            second * 3600,
        ),
    ] {
        let Command::RateLimit { key, limit } = command(line) else {
            panic!("{line}: not a rate-limit command");
        };
        assert_eq!(key, "ip:1", "{line}");
        assert_eq!(limit, Limit::new(algorithm, points, window), "{line}");
    }
    assert_eq!(parsed("demo"), Ok(Parsed::Demo));
    assert_eq!(parsed("--help"), Ok(Parsed::Help));

    for (line, says) in [
        ("", "no command"),
        ("frob", "unknown command `frob`"),
        ("dlq", "takes 1 to 2 arguments, not 0"),
        ("dlq orders many", "`many` is not a whole number"),
        ("requeue orders", "takes 2 to 2"),
        ("pending orders", "takes 2 to 2"),
        ("locks a b", "takes 0 to 1"),
        ("ratelimit ip:1 x 60s", "the limit `x`"),
        ("ratelimit ip:1 5 60q", "the window `60q`"),
        ("ratelimit ip:1 5 s", "the window `s`"),
        (
            "ratelimit ip:1 5 60s leaky",
            "unknown rate limit algorithm `leaky`",
        ),
        ("demo now", "takes 0 to 0"),
    ] {
        let why = parsed(line).expect_err(line);
        assert!(why.contains(says), "{line}: {why}");
    }
}

async fn the_command_line_prints_locks_pending_entries_and_rate_limits(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(&deployment, "ops_cli_reads").await;
    let ops = Ops::new(&rx);
    let ttl = LockOptions::new().ttl(Duration::from_secs(30));
    let guard = rx.locks().acquire("report:daily", &ttl).await.unwrap();
    assert!(
        rx.streams()
            .create_group("tasks", "workers", "$")
            .await
            .unwrap()
    );
    let tasks = [Order { id: 3, amount: 1 }, Order { id: 4, amount: 1 }];
    let task_ids = rx.streams().publish_batch("tasks", &tasks).await.unwrap();
    read_without_ack(&rx, "tasks", "workers", "worker-7", 1).await;
    let login = Limit::sliding_window(5, Duration::from_secs(60));
    for _ in 0..3 {
        rx.rate_limiter().check("login:1", &login).await.unwrap();
    }

    let out = run(&ops, "locks").await.unwrap();
    assert!(
        out.starts_with("1 lock(s) held matching `*`\n  report:daily  ttl "),
        "{out}"
    );
    let (owner, fence) = (guard.owner_token(), guard.fencing_token());
    assert!(
        out.contains(&format!("owner {owner}  fencing token {fence}\n")),
        "{out}"
    );
    assert!(
        out.ends_with("\n0 semaphore(s) held matching `*`\n"),
        "{out}"
    );

    let out = run(&ops, "pending tasks workers").await.unwrap();
    let id = &task_ids[0];
    let want = format!("tasks / workers: 1 pending (oldest {id}, newest {id}), lag 1\n");
    assert_eq!(out, format!("{want}  worker-7: 1\n"));
    let e = run(&ops, "pending tasks nobody").await.unwrap_err();
    assert!(e.0.starts_with("STREAM_CONSUMER_GROUP_ERROR: "), "{e}");

    let key = ops.rate_limit_key("login:1", &login);
    for _ in 0..2 {
        let out = run(&ops, "ratelimit login:1 5 60s").await.unwrap();
        let head = "login:1 under 5 per 60s (sliding_window): 3 used, 2 left of 5, whole again in ";
        assert!(out.starts_with(head), "{out}");
        assert!(out.ends_with(&format!("  state key {key}\n")), "{out}");
    }

    guard.release().await.unwrap();
    let out = run(&ops, "locks").await.unwrap();
    assert_eq!(
        out,
        "0 lock(s) held matching `*`\n0 semaphore(s) held matching `*`\n"
    );
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    the_command_line_prints_locks_pending_entries_and_rate_limits
);

async fn the_command_line_lists_requeues_and_purges_dead_letters(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = runtime(&deployment, "ops_cli_dlq").await;
    let ops = Ops::new(&rx);
    let orders = [Order { id: 1, amount: 0 }, Order { id: 2, amount: 5 }];
    dead_letter(&rx, "orders", "billing-1", &orders, 1).await;

    let dead = ops.dlq("orders", 1).await.unwrap().remove(0);
    let out = run(&ops, "dlq orders").await.unwrap();
    assert!(
        out.starts_with("orders: 1 dead letter(s), showing the oldest 1\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("  {}  attempts=1  failed ", dead.id)),
        "{out}"
    );
    let tail = "error=\"invalid amount\"\n    data={\"id\":1,\"amount\":0}\n";
    assert!(out.ends_with(tail), "{out}");

    let id = &dead.id;
    let out = run(&ops, &format!("requeue orders {id}")).await.unwrap();
    assert!(
        out.starts_with(&format!("requeued {id} into orders as ")),
        "{out}"
    );
    let e = run(&ops, &format!("requeue orders {id}"))
        .await
        .unwrap_err();
    let want = format!("no dead letter `{id}` in the dead-letter stream of `orders`");
    assert_eq!(e.0, want);

    let two = [Order { id: 5, amount: 0 }, Order { id: 6, amount: 0 }];
    dead_letter(&rx, "orders", "billing-2", &two, 2).await;
    let out = run(&ops, "requeue orders --all").await.unwrap();
    assert_eq!(out, "requeued 2 dead letter(s) into orders\n");
    assert_eq!(ops.dlq_len("orders").await.unwrap(), 0);
    let seven = [Order { id: 7, amount: 0 }];
    dead_letter(&rx, "orders", "billing-3", &seven, 1).await;
    let out = run(&ops, "purge orders").await.unwrap();
    assert_eq!(out, "purged 1 dead letter(s) of orders\n");
    assert_eq!(ops.dlq_len("orders").await.unwrap(), 0);
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    the_command_line_lists_requeues_and_purges_dead_letters
);
