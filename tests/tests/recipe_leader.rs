//! The leader-election recipe (`examples/leader.rs`, its `run` loop and `TickLog` as they are)
//! against a Redis server of its own: of three instances in child processes, one leads past
//! its lock's ttl (renewed) and, killed with `SIGKILL`, is followed by another with a larger
//! fencing token, the tick log showing one leader at a time; a leader whose lock is taken
//! steps down and its stale ticks are refused; a leader that stops releases the lock and a
//! follower takes over long before the ttl.

// The example's `main` (and what only it uses) is not called here, and its `pub` items are
// public to the example's readers, not from this crate.
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/leader.rs"]
mod leader;

use std::time::Duration;

use leader::{Election, JOB, TermEnd, Tick, TickLog, run, terms};
use redisx::RedisX;
use redisx::lock::LockOptions;
use redisx::testing::{ChildProcess, in_scenario, signal_ready};
use redisx_tests::{RedisServer, eventually, unique_prefix};
use tokio::sync::watch;

/// The environment variables that give an instance process its server, prefix and name.
const URL_ENV: &str = "REDISX_LEADER_TEST_URL";
const PREFIX_ENV: &str = "REDISX_LEADER_TEST_PREFIX";
const INSTANCE_ENV: &str = "REDISX_LEADER_TEST_INSTANCE";

fn poll() -> Duration {
    Duration::from_millis(10)
}

/// The example's runtime on `server` under `prefix`.
async fn runtime(server: &RedisServer, prefix: &str) -> RedisX {
    leader::runtime(&server.url(), prefix).await.unwrap()
}

/// Waits up to `within` until `check` holds of the accepted ticks; returns them.
async fn ticks_until(
    log: &TickLog,
    within: Duration,
    check: impl Fn(&[Tick]) -> bool,
) -> Option<Vec<Tick>> {
    let ok = eventually(within, poll(), || async {
        check(&log.ticks().await.unwrap())
    })
    .await;
    let ticks = log.ticks().await.unwrap();
    ok.then_some(ticks)
}

/// One leader at a time: tokens never go down, and a token's ticks are one run of one
/// instance (a token that comes back after another, or two instances with one token, would
/// be two leaders at once).
fn assert_one_leader_at_a_time(ticks: &[Tick]) {
    assert!(
        ticks.windows(2).all(|w| w[0].fence <= w[1].fence),
        "tokens never go down: {ticks:?}"
    );
    let terms = terms(ticks);
    for (i, (_, fence, _)) in terms.iter().enumerate() {
        assert!(
            terms[i + 1..].iter().all(|(_, f, _)| f != fence),
            "token {fence} comes back after another: {terms:?}"
        );
    }
}

/// An instance process: runs the example's election loop until the parent kills it.
#[test]
#[ignore = "scenario: run in child processes by a_killed_leader_is_followed_by_one_with_a_larger_token"]
fn leader_instance() {
    if !in_scenario("leader_instance") {
        return;
    }
    let url = std::env::var(URL_ENV).unwrap();
    let prefix = std::env::var(PREFIX_ENV).unwrap();
    let name = std::env::var(INSTANCE_ENV).unwrap();
    let rt = redisx_tests::scenario_runtime();
    rt.block_on(async {
        let rx = leader::runtime(&url, &prefix).await.unwrap();
        let election = Election::new(JOB, &name).unwrap();
        let (_keep, stop) = watch::channel(false);
        signal_ready();
        // Until the parent kills this process.
        run(&rx, &election, stop).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_followed_by_one_with_a_larger_token() {
    let server = RedisServer::start();
    let prefix = unique_prefix("recipe_leader_kill");
    let rx = runtime(&server, &prefix).await;
    let log = TickLog::new(&rx, JOB);
    let names = ["a", "b", "c"];
    let mut children: Vec<ChildProcess> = tokio::task::block_in_place(|| {
        names
            .iter()
            .map(|name| {
                ChildProcess::scenario("leader_instance")
                    .env(URL_ENV, server.url())
                    .env(PREFIX_ENV, &prefix)
                    .env(INSTANCE_ENV, *name)
                    .start()
            })
            .collect()
    });

    // 15 ticks, 100 ms apart: longer than the 1 s ttl, in one term (the lock was renewed).
    let ticks = ticks_until(&log, Duration::from_secs(5), |t| t.len() >= 15)
        .await
        .expect("an instance leads");
    let first = terms(&ticks);
    assert_eq!(first.len(), 1, "one leader, one term: {first:?}");
    let (killed, old_fence, _) = first[0].clone();
    assert!(
        rx.locks()
            .is_locked(&format!("leader:{JOB}"))
            .await
            .unwrap()
    );

    let victim = names.iter().position(|n| *n == killed).unwrap();
    tokio::task::block_in_place(|| children[victim].kill()); // SIGKILL: the lock is not released
    let n = ticks.len();
    // The lock expires after its 1 s ttl; another instance takes over and ticks 3 times.
    let ticks = ticks_until(&log, Duration::from_secs(5), |t| {
        t.len() >= n + 3 && t[t.len() - 3..].iter().all(|x| x.instance != killed)
    })
    .await
    .unwrap_or_else(|| {
        let outputs: Vec<String> = children.iter().map(ChildProcess::output).collect();
        panic!("no instance took over:\n{}", outputs.join("\n"))
    });

    assert_one_leader_at_a_time(&ticks);
    let all = terms(&ticks);
    assert_eq!(
        all.len(),
        2,
        "the killed leader's term, then its successor's: {all:?}"
    );
    let (successor, new_fence, _) = &all[1];
    assert_ne!(*successor, killed);
    assert!(
        *new_fence > old_fence,
        "a larger token: {new_fence} > {old_fence}"
    );
    assert!(
        ticks[n..].iter().all(|t| t.instance != killed),
        "nothing from the dead leader after its death"
    );
    assert_eq!(log.refused().await.unwrap(), [], "no stale writer");
    drop(children); // kills the two left
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lock_is_taken_steps_down_and_its_stale_ticks_are_refused() {
    let server = RedisServer::start();
    let prefix = unique_prefix("recipe_leader_taken");
    let a = runtime(&server, &prefix).await;
    let admin = runtime(&server, &prefix).await;
    let log = TickLog::new(&admin, JOB);
    let election = Election::new(JOB, "a").unwrap();
    let key = election.lock_key();
    let (stop, stopped) = watch::channel(false);
    let instance = tokio::spawn({
        let (a, election) = (a.clone(), election.clone());
        async move { run(&a, &election, stopped).await }
    });
    let ticks = ticks_until(&log, Duration::from_secs(5), |t| t.len() >= 2)
        .await
        .expect("a leads");
    let old_fence = ticks[0].fence;

    // Someone removes a's lock and takes it (as after a pause longer than the ttl): a larger
    // token, written to the log at once.
    assert!(admin.locks().force_release(&key).await.unwrap());
    let opts = LockOptions::new()
        .ttl(Duration::from_secs(30))
        .wait(Duration::from_secs(5));
    let intruder = admin.locks().acquire(&key, &opts).await.unwrap();
    let new_fence = intruder.fencing_token();
    assert!(new_fence > old_fence);
    assert!(log.record("intruder", new_fence).await.unwrap());

    // a finds out at its next renewal (lost) or its next tick (refused), and steps down.
    let stepped_down = eventually(Duration::from_secs(5), poll(), || async {
        a.locks().stats().active == 0
    })
    .await;
    assert!(stepped_down, "a no longer holds a lock");
    // A tick with a's old token is refused and recorded as such.
    assert!(!log.record("a", old_fence).await.unwrap());
    let refused = log.refused().await.unwrap();
    assert!(
        refused.contains(&Tick {
            instance: "a".to_owned(),
            fence: old_fence,
        }),
        "{refused:?}"
    );
    let ticks = log.ticks().await.unwrap();
    assert_one_leader_at_a_time(&ticks);
    let at = ticks.iter().position(|t| t.instance == "intruder").unwrap();
    assert!(
        ticks[at..].iter().all(|t| t.instance == "intruder"),
        "{ticks:?}"
    );

    // The lock comes free: a, a follower now, leads again with a larger token.
    intruder.release().await.unwrap();
    let ticks = ticks_until(&log, Duration::from_secs(5), |t| {
        t.last()
            .is_some_and(|l| l.instance == "a" && l.fence > new_fence)
    })
    .await
    .expect("a leads again");
    assert_one_leader_at_a_time(&ticks);
    let third_fence = ticks.last().unwrap().fence;

    stop.send_replace(true);
    let led = instance.await.unwrap();
    assert_eq!(led.len(), 2, "{led:?}");
    assert_eq!(led[0].fence, old_fence);
    assert!(
        matches!(led[0].end, TermEnd::Lost | TermEnd::Fenced),
        "{led:?}"
    );
    assert_eq!(
        (led[1].fence, &led[1].end),
        (third_fence, &TermEnd::Stopped)
    );
    assert!(!admin.locks().is_locked(&key).await.unwrap(), "released");
    a.shutdown().await;
    admin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_stops_releases_the_lock_and_a_follower_takes_over() {
    let server = RedisServer::start();
    let prefix = unique_prefix("recipe_leader_stop");
    let (a, b) = (
        runtime(&server, &prefix).await,
        runtime(&server, &prefix).await,
    );
    let log = TickLog::new(&a, JOB);
    // A 30 s ttl: a takeover within the test's few seconds can only follow a release.
    let ttl = Duration::from_secs(30);
    let start = |rx: &RedisX, name: &str| {
        let rx = rx.clone();
        let election = Election::new(JOB, name).unwrap().ttl(ttl);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move { run(&rx, &election, stopped).await });
        (stop, task)
    };
    let (stop_a, task_a) = start(&a, "a");
    let ticks = ticks_until(&log, Duration::from_secs(5), |t| !t.is_empty())
        .await
        .expect("a leads");
    let (stop_b, task_b) = start(&b, "b");
    let n = ticks.len();
    // b stands by while a goes on ticking.
    let ticks = ticks_until(&log, Duration::from_secs(5), |t| t.len() >= n + 3)
        .await
        .unwrap();
    assert!(ticks.iter().all(|t| t.instance == "a"), "{ticks:?}");

    stop_a.send_replace(true);
    let led = task_a.await.unwrap();
    assert_eq!(led.len(), 1, "{led:?}");
    assert_eq!(led[0].end, TermEnd::Stopped);
    let ticks = ticks_until(&log, Duration::from_secs(5), |t| {
        t.last().is_some_and(|l| l.instance == "b")
    })
    .await
    .expect("b takes over before the 30 s ttl: a released the lock");
    assert_one_leader_at_a_time(&ticks);
    assert!(ticks.last().unwrap().fence > led[0].fence);
    assert_eq!(a.locks().stats().lost, 0);

    stop_b.send_replace(true);
    let led = task_b.await.unwrap();
    assert_eq!(led.len(), 1, "{led:?}");
    assert!(!a.locks().is_locked(&format!("leader:{JOB}")).await.unwrap());
    a.shutdown().await;
    b.shutdown().await;
}
