//! Exactness under contention: 4 OS processes × 64 tasks check one key until each task is
//! denied, and the processes together are admitted exactly `limit` times, for the fixed window
//! and the sliding log (a check is one atomic script, so no two callers share a unit).
//!
//! The fixed window is epoch-aligned: a run that crossed a window boundary (seen in the
//! admissions' `reset`) could rightly admit more, so it is run again on a fresh key.
//!
//! The suite runs on a standalone server and on the cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use redisx::rate_limit::{Algorithm, Limit, RateLimitConfig};
use redisx::testing::{ChildProcess, Deployment, Topology, in_scenario, signal_ready};
use redisx_tests::rate_limit::{epoch_ms, rl_runtime, window_left};
use redisx_tests::unique_prefix;

/// Child processes, tasks per process, the limit and its window.
const PROCESSES: usize = 4;
const TASKS: usize = 64;
const LIMIT: u64 = 1000;
const WINDOW: Duration = Duration::from_secs(10);

/// What the parent tells its children: the deployment's URL, prefix, algorithm.
const URL_ENV: &str = "REDISX_RL_TEST_URL";
const PREFIX_ENV: &str = "REDISX_RL_TEST_PREFIX";
const ALG_ENV: &str = "REDISX_RL_TEST_ALGORITHM";

/// The start of the line a child reports on: `rl-exactness allowed=N resets=R1,R2`.
const REPORT: &str = "rl-exactness allowed=";

/// The key every task checks.
const KEY: &str = "hot";

/// One child's half: builds its runtime, says it is ready, waits for the parent's go (a key),
/// then runs `TASKS` tasks that check `KEY` until denied, and reports what it was admitted.
#[test]
#[ignore = "scenario: run in child processes by the exactness tests"]
fn exactness_worker() {
    if !in_scenario("exactness_worker") {
        return;
    }
    let url = std::env::var(URL_ENV).unwrap();
    let prefix = std::env::var(PREFIX_ENV).unwrap();
    let alg: Algorithm = std::env::var(ALG_ENV).unwrap().parse().unwrap();
    let rt = redisx_tests::scenario_runtime();
    rt.block_on(async {
        let rx = rl_runtime(&url, &prefix, RateLimitConfig::default()).await;
        let limit = Limit::new(alg, LIMIT, WINDOW);
        // Connected, with the script loaded, before the race starts (on a key of its own).
        let warm = format!("warm:{}", std::process::id());
        rx.rate_limiter().check(&warm, &limit).await.unwrap();
        signal_ready();
        let go = format!("{prefix}go");
        loop {
            let set: bool = rx
                .client()
                .query(redis::cmd("EXISTS").arg(&go))
                .await
                .unwrap();
            if set {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (rx, limit) = (rx.clone(), limit.clone());
                tokio::spawn(async move {
                    let (mut allowed, mut resets) = (0_u64, BTreeSet::new());
                    loop {
                        let d = rx.rate_limiter().check(KEY, &limit).await.unwrap();
                        if !d.allowed {
                            return (allowed, resets);
                        }
                        allowed += 1;
                        resets.insert(epoch_ms(d.reset));
                    }
                })
            })
            .collect();
        let (mut allowed, mut resets) = (0, BTreeSet::new());
        for t in tasks {
            let (n, r) = t.await.unwrap();
            allowed += n;
            resets.extend(r);
        }
        let resets: Vec<String> = resets.iter().map(ToString::to_string).collect();
        println!("{REPORT}{allowed} resets={}", resets.join(","));
        rx.shutdown().await;
    });
}

/// What one run gave: the admissions of every child, and the distinct `reset`s they saw.
struct Run {
    allowed: Vec<u64>,
    resets: BTreeSet<u128>,
}

/// Parses a child's report line out of its `output`.
fn report(output: &str) -> (u64, BTreeSet<u128>) {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix(REPORT))
        .unwrap_or_else(|| panic!("no report line in:\n{output}"));
    let (allowed, resets) = line.split_once(" resets=").expect("the report's format");
    let resets = resets
        .split(',')
        .filter(|r| !r.is_empty())
        .map(|r| r.parse().unwrap())
        .collect();
    (allowed.parse().unwrap(), resets)
}

/// One run on a fresh prefix: starts the children, gives the go, collects their reports.
async fn run(deployment: &Deployment, alg: Algorithm) -> Run {
    let prefix = unique_prefix("rl_exactness");
    let starts: Vec<_> = (0..PROCESSES)
        .map(|_| {
            let builder = ChildProcess::scenario("exactness_worker")
                .env(URL_ENV, deployment.url())
                .env(PREFIX_ENV, &prefix)
                .env(ALG_ENV, alg.as_str());
            tokio::task::spawn_blocking(move || builder.start())
        })
        .collect();
    let mut children = Vec::new();
    for s in starts {
        children.push(s.await.unwrap());
    }
    // A fixed window gets a run of its own: not within 3 s of its end.
    if alg == Algorithm::FixedWindow && window_left(WINDOW) < Duration::from_secs(3) {
        tokio::time::sleep(window_left(WINDOW) + Duration::from_millis(20)).await;
    }
    let mut raw = deployment.raw_connection().await;
    let () = redis::cmd("SET")
        .arg(format!("{prefix}go"))
        .arg(1)
        .query_async(&mut raw)
        .await
        .unwrap();
    let ends: Vec<_> = children
        .into_iter()
        .map(|mut child| {
            tokio::task::spawn_blocking(move || {
                let exit = child.wait_exit(Duration::from_secs(60));
                (exit, child.output())
            })
        })
        .collect();
    let mut run = Run {
        allowed: Vec::new(),
        resets: BTreeSet::new(),
    };
    for end in ends {
        let (exit, output) = end.await.unwrap();
        assert!(exit.unwrap().success(), "a child failed:\n{output}");
        let (allowed, resets) = report(&output);
        run.allowed.push(allowed);
        run.resets.extend(resets);
    }
    run
}

async fn fixed_window_admits_exactly_its_limit_across_processes(topology: Topology) {
    let deployment = Deployment::start(topology);
    for attempt in 1..=3 {
        let run = run(&deployment, Algorithm::FixedWindow).await;
        if run.resets.len() > 1 {
            // The run crossed a window boundary: both windows rightly admit.
            eprintln!("attempt {attempt} straddled two windows: {:?}", run.resets);
            continue;
        }
        let total: u64 = run.allowed.iter().sum();
        assert_eq!(total, LIMIT, "exactly the limit, split {:?}", run.allowed);
        return;
    }
    panic!("three runs straddled a window boundary");
}

async fn sliding_log_admits_exactly_its_limit_across_processes(topology: Topology) {
    let deployment = Deployment::start(topology);
    let run = run(&deployment, Algorithm::SlidingWindow).await;
    let total: u64 = run.allowed.iter().sum();
    assert_eq!(total, LIMIT, "exactly the limit, split {:?}", run.allowed);
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 4]
    fixed_window_admits_exactly_its_limit_across_processes,
    sliding_log_admits_exactly_its_limit_across_processes,
);
