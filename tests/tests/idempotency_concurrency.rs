//! Exactly once under concurrency, against one deployment (a standalone server, then the cluster) from several runtimes and processes: a
//! thousand concurrent duplicates (two runtimes here, one in a child process) run the body once
//! and all get its value, with one check-script call per caller, one completion message and at
//! most two record reads per runtime (the waiters are woken through pub/sub, not polling; a
//! completion nobody waits for is not published); a body slower than the lock
//! ttl keeps its claim (renewed) and is not run again; and when the owner's process is killed
//! mid-body, exactly one waiting duplicate takes over and the others get its value.
//!
//! Every test runs on a standalone server and on the cluster; the command counts are read on
//! every node and summed.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use redisx::idempotency::{IdempotencyConfig, IdempotencyOptions, IdempotencyStats, Status};
use redisx::testing::{ChildProcess, Deployment, Topology, in_scenario, signal_ready};
use redisx::{ConnectionConfig, Error, RedisX};
use redisx_tests::Nodes;
use redisx_tests::idempotency::{Runs, done_channel, idem_runtime_on, wait_for_listeners};
use redisx_tests::{eventually, unique_prefix};

/// What the parent tells its child: the deployment's URL and the app prefix.
const URL_ENV: &str = "REDISX_IDEM_TEST_URL";
const PREFIX_ENV: &str = "REDISX_IDEM_TEST_PREFIX";

const KEY: &str = "payment:hot";
const FP: &str = "5d41-fingerprint";

/// The duplicates in this process (over two runtimes) and in the child.
const PARENT_CALLERS: usize = 800;
const CHILD_CALLERS: usize = 200;
/// The body of the thousand duplicates: well under a third of the lock ttl (no renewal).
const BODY: Duration = Duration::from_millis(300);

/// The start of the child's report: `idem-duplicates runs=N new=N replayed=N takeovers=N
/// calls=N results=V1,V2`.
const REPORT: &str = "idem-duplicates ";

/// A 30 s lease (the body needs no renewal) and a re-read every minute only, so that the
/// command counts show the wake-ups alone.
fn duplicates_config() -> IdempotencyConfig {
    IdempotencyConfig::default()
        .lock_ttl(Duration::from_secs(30))
        .recheck(Duration::from_secs(60))
}

/// A runtime with the default command timeout (many calls are in flight at once).
async fn runtime(url: &str, prefix: &str, cfg: IdempotencyConfig) -> RedisX {
    idem_runtime_on(ConnectionConfig::from_url(url).unwrap(), prefix, cfg).await
}

/// One call on a key of its own: the scripts are in and the connections open.
async fn warm_up(rx: &RedisX, name: &str) {
    let key = format!("warm:{name}:{}", std::process::id());
    let opts = IdempotencyOptions::new();
    let v: u8 = rx
        .idempotency()
        .run(&key, FP, &opts, async { Ok::<_, Error>(1) })
        .await
        .unwrap();
    assert_eq!(v, 1);
}

/// Runs `n` concurrent calls of `KEY`, spread over `rxs`; each caller's body would return a
/// value of its own. Returns the value each caller got.
async fn callers(rxs: &[RedisX], n: usize, runs: &Runs, body: Duration) -> Vec<String> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let idem = rxs[i % rxs.len()].idempotency().clone();
            let body = runs.body(body, format!("{}-{i}", std::process::id()));
            tokio::spawn(async move {
                let opts = IdempotencyOptions::new();
                idem.run::<String, Error, _>(KEY, FP, &opts, body).await
            })
        })
        .collect();
    let mut got = Vec::with_capacity(n);
    for t in tasks {
        let out = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("every caller ends");
        got.push(out.unwrap().expect("every caller gets the value"));
    }
    got
}

fn sum(stats: &[IdempotencyStats], field: fn(&IdempotencyStats) -> u64) -> u64 {
    stats.iter().map(field).sum()
}

/// The child's part of the thousand duplicates: warms up, says it is ready, waits for the
/// parent's go (a key), runs `CHILD_CALLERS` duplicates and reports.
#[test]
#[ignore = "scenario: run in a child process by a_thousand_duplicates_in_two_processes_run_once"]
fn duplicates_worker() {
    if !in_scenario("duplicates_worker") {
        return;
    }
    let url = std::env::var(URL_ENV).unwrap();
    let prefix = std::env::var(PREFIX_ENV).unwrap();
    redisx_tests::scenario_runtime().block_on(async {
        let rx = runtime(&url, &prefix, duplicates_config()).await;
        warm_up(&rx, "child").await;
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
        let runs = Runs::new();
        let got = callers(std::slice::from_ref(&rx), CHILD_CALLERS, &runs, BODY).await;
        let distinct: BTreeSet<&str> = got.iter().map(String::as_str).collect();
        let s = rx.idempotency().stats();
        let results: Vec<&str> = distinct.into_iter().collect();
        println!(
            "{REPORT}runs={} new={} replayed={} takeovers={} calls={} results={}",
            runs.count(),
            s.new,
            s.replayed,
            s.takeovers,
            got.len(),
            results.join(",")
        );
        rx.shutdown().await;
    });
}

/// The child's report, by field.
fn report(output: &str) -> HashMap<String, String> {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix(REPORT))
        .unwrap_or_else(|| panic!("no report line in:\n{output}"));
    line.split_whitespace()
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn number(report: &HashMap<String, String>, field: &str) -> u64 {
    report[field].parse().unwrap()
}

async fn a_completion_nobody_waits_for_is_not_published(topology: Topology) {
    // Servers of its own: the test reads their command counts.
    let deployment = Deployment::start_owned(topology);
    let (url, prefix) = (deployment.url(), unique_prefix("idem_quiet"));
    let rx = runtime(&url, &prefix, duplicates_config()).await;
    let mut nodes = Nodes::of(&deployment).await;
    let before = nodes.calls("publish").await;
    warm_up(&rx, "quiet").await;
    assert_eq!(
        nodes.calls("publish").await - before,
        0,
        "no duplicate waited, so the completion is not published"
    );
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 2]
    a_completion_nobody_waits_for_is_not_published,
);

async fn a_thousand_duplicates_in_two_processes_run_once(topology: Topology) {
    // Servers of its own: the test reads their command counts.
    let deployment = Deployment::start_owned(topology);
    let (url, prefix) = (deployment.url(), unique_prefix("idem_duplicates"));
    let a = runtime(&url, &prefix, duplicates_config()).await;
    let b = runtime(&url, &prefix, duplicates_config()).await;
    warm_up(&a, "a").await;
    warm_up(&b, "b").await;
    let child = ChildProcess::scenario("duplicates_worker")
        .env(URL_ENV, &url)
        .env(PREFIX_ENV, &prefix);
    let child = tokio::task::spawn_blocking(move || child.start())
        .await
        .unwrap();

    let mut raw = deployment.raw_connection().await;
    let mut nodes = Nodes::of(&deployment).await;
    let scripts_before = nodes.script_calls().await;
    let reads_before = nodes.calls("hgetall").await;
    let publishes_before = nodes.calls("publish").await;
    let () = redis::cmd("SET")
        .arg(format!("{prefix}go"))
        .arg(1)
        .query_async(&mut raw)
        .await
        .unwrap();
    let runs = Runs::new();
    let got = callers(&[a.clone(), b.clone()], PARENT_CALLERS, &runs, BODY).await;
    let (exit, output) = tokio::task::spawn_blocking(move || {
        let mut child = child;
        let exit = child.wait_exit(Duration::from_secs(60));
        (exit, child.output())
    })
    .await
    .unwrap();
    assert!(
        exit.unwrap().success(),
        "the child's part failed:\n{output}"
    );
    let scripts = nodes.script_calls().await - scripts_before;
    let reads = nodes.calls("hgetall").await - reads_before;
    let publishes = nodes.calls("publish").await - publishes_before;
    let child = report(&output);

    let ran = runs.count() + usize::try_from(number(&child, "runs")).unwrap();
    assert_eq!(ran, 1, "the body ran once in all");
    assert_eq!(number(&child, "calls"), CHILD_CALLERS as u64);
    let mut values: BTreeSet<&str> = got.iter().map(String::as_str).collect();
    values.extend(child["results"].split(','));
    assert_eq!(
        values.len(),
        1,
        "every caller got the same value: {values:?}"
    );

    let total = (PARENT_CALLERS + CHILD_CALLERS) as u64;
    assert!(
        scripts >= total && scripts <= total + 1 + 5,
        "one check per caller and one finish (no polling): {scripts} script calls for {total} callers"
    );
    assert!(
        reads <= 2 * 3,
        "at most two record reads per runtime (3), when it subscribes and when woken, not one per waiter: {reads} HGETALL"
    );
    assert_eq!(publishes, 1, "one completion message woke every waiter");
    let stats = [a.idempotency().stats(), b.idempotency().stats()];
    // Each runtime's warm-up is one `new` too.
    let new = sum(&stats, |s| s.new) + number(&child, "new");
    assert_eq!(new, 3 + 1, "one call ran (besides the warm-ups)");
    let replayed = sum(&stats, |s| s.replayed) + number(&child, "replayed");
    assert_eq!(replayed, total - 1);
    assert_eq!(
        sum(&stats, |s| s.takeovers) + number(&child, "takeovers"),
        0
    );
    a.shutdown().await;
    b.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 4]
    a_thousand_duplicates_in_two_processes_run_once,
);

async fn a_body_slower_than_the_lock_ttl_is_not_taken_over(topology: Topology) {
    let deployment = Deployment::start(topology);
    let (url, prefix) = (deployment.url(), unique_prefix("idem_slow_body"));
    let cfg = || IdempotencyConfig::default().lock_ttl(Duration::from_millis(300));
    let a = runtime(&url, &prefix, cfg()).await;
    let b = runtime(&url, &prefix, cfg()).await;
    let runs = Runs::new();
    let first = {
        let (idem, body) = (
            a.idempotency().clone(),
            runs.body(Duration::from_millis(1200), "first".to_owned()),
        );
        tokio::spawn(async move {
            idem.run::<String, Error, _>(KEY, FP, &IdempotencyOptions::new(), body)
                .await
        })
    };
    let started = eventually(Duration::from_secs(2), Duration::from_millis(5), || {
        let runs = runs.clone();
        async move { runs.count() == 1 }
    })
    .await;
    assert!(started, "the first call runs its body");

    // Three waves of duplicates, the later ones well past the first lease (300 ms).
    let mut duplicates = Vec::new();
    for wave in 0..3 {
        let rxs = [a.clone(), b.clone()];
        let runs = runs.clone();
        duplicates.push(tokio::spawn(async move {
            callers(&rxs, 10, &runs, Duration::ZERO).await
        }));
        if wave < 2 {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
    assert_eq!(first.await.unwrap().unwrap(), "first");
    for wave in duplicates {
        for v in wave.await.unwrap() {
            assert_eq!(v, "first", "a duplicate replays the slow body's value");
        }
    }
    assert_eq!(runs.count(), 1, "the slow body was not run again");
    let stats = [a.idempotency().stats(), b.idempotency().stats()];
    assert_eq!(sum(&stats, |s| s.takeovers), 0);
    assert_eq!(sum(&stats, |s| s.store_failures), 0);
    let rec = a.idempotency().get(KEY).await.unwrap().unwrap();
    assert_eq!((rec.status(), rec.takeovers()), (Status::Completed, 0));
    a.shutdown().await;
    b.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 4]
    a_body_slower_than_the_lock_ttl_is_not_taken_over,
);

/// The lease of the owner that is killed, and of the duplicates that wait for it.
const DEAD_LOCK_TTL: Duration = Duration::from_millis(500);

/// Claims `KEY` with a short lease, says it is ready from inside the body, and sleeps there
/// until the parent kills the process (SIGKILL: no cancellation, no `Drop`).
#[test]
#[ignore = "scenario: run in a child process by one_duplicate_takes_over_from_a_killed_owner"]
fn dying_owner() {
    if !in_scenario("dying_owner") {
        return;
    }
    let url = std::env::var(URL_ENV).unwrap();
    let prefix = std::env::var(PREFIX_ENV).unwrap();
    redisx_tests::scenario_runtime().block_on(async {
        let cfg = IdempotencyConfig::default().lock_ttl(DEAD_LOCK_TTL);
        let rx = runtime(&url, &prefix, cfg).await;
        let opts = IdempotencyOptions::new();
        let out = rx
            .idempotency()
            .run::<String, Error, _>(KEY, FP, &opts, async {
                signal_ready();
                tokio::time::sleep(Duration::from_secs(120)).await;
                Ok("the dead owner's".to_owned())
            })
            .await;
        panic!("the parent kills this process mid-body: {out:?}");
    });
}

async fn one_duplicate_takes_over_from_a_killed_owner(topology: Topology) {
    const DUPLICATES: usize = 40;
    let deployment = Deployment::start(topology);
    let (url, prefix) = (deployment.url(), unique_prefix("idem_dead_owner"));
    let child = ChildProcess::scenario("dying_owner")
        .env(URL_ENV, &url)
        .env(PREFIX_ENV, &prefix);
    let mut child = tokio::task::spawn_blocking(move || child.start())
        .await
        .unwrap();
    let cfg = || IdempotencyConfig::default().lock_ttl(DEAD_LOCK_TTL);
    let a = runtime(&url, &prefix, cfg()).await;
    let b = runtime(&url, &prefix, cfg()).await;
    let rec = a
        .idempotency()
        .get(KEY)
        .await
        .unwrap()
        .expect("the child claimed the key");
    assert_eq!(rec.status(), Status::Processing);
    let dead_owner = rec.owner().to_owned();

    // The duplicates wait for the live owner; then it dies.
    let runs = Runs::new();
    let waiting = {
        let (rxs, runs) = ([a.clone(), b.clone()], runs.clone());
        tokio::spawn(
            async move { callers(&rxs, DUPLICATES, &runs, Duration::from_millis(50)).await },
        )
    };
    // Both runtimes wait for the key (each subscribes when a caller first waits).
    wait_for_listeners(&deployment, &done_channel(&prefix), 2).await;
    tokio::task::block_in_place(|| child.kill());

    let got = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the duplicates end once the dead owner's lease runs out")
        .unwrap();
    assert_eq!(runs.count(), 1, "exactly one duplicate ran the body");
    let values: BTreeSet<&str> = got.iter().map(String::as_str).collect();
    assert_eq!(values.len(), 1, "all got the taker's value: {values:?}");
    let stats = [a.idempotency().stats(), b.idempotency().stats()];
    assert_eq!(sum(&stats, |s| s.takeovers), 1, "{stats:?}");
    assert_eq!(sum(&stats, |s| s.new), 0, "{stats:?}");
    assert_eq!(
        sum(&stats, |s| s.replayed),
        DUPLICATES as u64 - 1,
        "{stats:?}"
    );

    let rec = a.idempotency().get(KEY).await.unwrap().unwrap();
    assert_eq!((rec.status(), rec.takeovers()), (Status::Completed, 1));
    assert_ne!(rec.owner(), dead_owner, "the taker's claim");
    let value = got[0].clone();
    assert_eq!(rec.result(), serde_json::to_vec(&value).unwrap());
    a.shutdown().await;
    b.shutdown().await;
}

redisx_tests::on_topologies!(
    [flavor = "multi_thread", worker_threads = 4]
    one_duplicate_takes_over_from_a_killed_owner,
);
