//! A failing load under concurrency, against real Redis: callers of one key in one runtime share
//! one load, and when it fails with an error that can be shared, every caller that was waiting
//! on it gets a clone of the error (one load for all, as Go's singleflight and moka's
//! `try_get_with` do). Shareable: `redisx::Error`, `String` and the other known types in
//! `get_or_load`; any `E: Clone` in `#[cached]`; any `Clone` error through
//! `LoadOptions::share_errors()`. Other errors keep the take-over (the waiting callers load one
//! at a time), and a caller that arrives after the failure starts a new load.
//!
//! Every test runs on a standalone server and on the 3-master cluster, with what
//! `#[redisx::test]` gives (a runtime of its own, in scope for the body, whose `#[cached]`
//! functions use it), so its callers run on a current-thread tokio runtime; its loader waits
//! until all of them have called (then 100 ms more), so the callers really wait on one load.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redisx::cache::{EntryOptions, LoadOptions};
use redisx::testing::{self, Deployment, TestOptions, Topology, eventually};
use redisx::{Error, ErrorCode, cached};
use tokio::sync::{Mutex, MutexGuard};

/// How many callers ask for the key at once.
const CALLERS: usize = 8;

/// One test's callers and loads: the loaders wait at its gate until every caller has called.
/// The test's standalone and cluster runs take turns at it ([`Gate::take`]).
struct Gate {
    /// Held by the run of the test that uses the gate.
    turn: Mutex<()>,
    /// Callers that have made their call.
    arrived: AtomicUsize,
    /// Loader runs.
    loads: AtomicUsize,
    /// Loader runs in progress.
    running: AtomicUsize,
    /// The most loader runs that were in progress at once.
    most_at_once: AtomicUsize,
}

impl Gate {
    const fn new() -> Self {
        Self {
            turn: Mutex::const_new(()),
            arrived: AtomicUsize::new(0),
            loads: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            most_at_once: AtomicUsize::new(0),
        }
    }

    /// Waits until no other run of the test uses the gate, then resets its counts; the turn
    /// ends when the guard is dropped.
    async fn take(&'static self) -> MutexGuard<'static, ()> {
        let turn = self.turn.lock().await;
        for count in [
            &self.arrived,
            &self.loads,
            &self.running,
            &self.most_at_once,
        ] {
            count.store(0, Ordering::SeqCst);
        }
        turn
    }

    /// A caller is about to call.
    fn arrive(&self) {
        self.arrived.fetch_add(1, Ordering::SeqCst);
    }

    /// The body of every loader: counts the run, and returns once every caller has called
    /// (then 100 ms more, so the others are surely waiting on this load).
    async fn load(&self) {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        let all_called = eventually(
            Duration::from_secs(10),
            Duration::from_millis(1),
            || async { self.arrived.load(Ordering::SeqCst) >= CALLERS },
        )
        .await;
        assert!(all_called, "the {CALLERS} callers never all called");
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    fn most_at_once(&self) -> usize {
        self.most_at_once.load(Ordering::SeqCst)
    }
}

/// Runs `CALLERS` calls made by `call` concurrently (each announced at `gate` when it starts)
/// and returns their outcomes. The calls run in tasks spawned with `redisx::spawn`, in the
/// test's scope.
async fn concurrently<T, Fut>(gate: &'static Gate, mut call: impl FnMut() -> Fut) -> Vec<T>
where
    T: Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let call = call();
            redisx::spawn(async move {
                gate.arrive();
                call.await
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(CALLERS);
    for task in tasks {
        outcomes.push(task.await.expect("a caller panicked"));
    }
    outcomes
}

fn backend_down() -> Error {
    Error::new(ErrorCode::Internal, "backend down")
}

/// An error type redisx does not know: shared only when the call site says it may be cloned.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Unavailable(String);

/// An error that cannot be cloned: never shared.
#[derive(Debug, PartialEq, Eq)]
struct Down(String);

async fn get_or_load_shares_a_redisx_error_with_its_waiting_callers(topology: Topology) {
    static GATE: Gate = Gate::new();
    let _turn = GATE.take().await;
    testing::run_on(
        &Deployment::start(topology),
        TestOptions::new("shared_redisx_error"),
        |rx| async move {
            let call = || {
                let cache = rx.cache().clone();
                async move {
                    cache
                        .get_or_load("k", None, || async {
                            GATE.load().await;
                            Err::<u32, _>(backend_down())
                        })
                        .await
                }
            };
            let outcomes = concurrently(&GATE, call).await;
            assert_eq!(GATE.loads(), 1, "one load for {CALLERS} callers");
            for outcome in outcomes {
                let err = outcome.expect_err("every caller gets the error");
                assert_eq!(err.code(), ErrorCode::Internal, "{err}");
                assert_eq!(err.message(), "backend down", "{err}");
            }
            // A caller that arrives after the failure loads again.
            assert!(call().await.is_err());
            assert_eq!(GATE.loads(), 2, "the late caller loaded");
        },
    )
    .await;
}

redisx_tests::on_topologies!(get_or_load_shares_a_redisx_error_with_its_waiting_callers);

async fn a_string_error_is_shared_with_the_waiting_callers(topology: Topology) {
    static GATE: Gate = Gate::new();
    let _turn = GATE.take().await;
    testing::run_on(
        &Deployment::start(topology),
        TestOptions::new("shared_string_error"),
        |rx| async move {
            // `get_or_load` needs `E: From<redisx::Error>`, which `String` is not: the same load with
            // the default options (errors shared when redisx knows their type).
            let call = || {
                let cache = rx.cache().clone();
                async move {
                    let entry = EntryOptions::new();
                    cache
                        .get_or_load_using("k", LoadOptions::new(&entry), || async {
                            GATE.load().await;
                            Err::<u32, _>("backend down".to_owned())
                        })
                        .await
                }
            };
            let outcomes = concurrently(&GATE, call).await;
            assert_eq!(GATE.loads(), 1, "one load for {CALLERS} callers");
            for outcome in outcomes {
                assert_eq!(outcome, Err("backend down".to_owned()));
            }
            assert_eq!(call().await, Err("backend down".to_owned()));
            assert_eq!(GATE.loads(), 2, "the late caller loaded");
        },
    )
    .await;
}

redisx_tests::on_topologies!(a_string_error_is_shared_with_the_waiting_callers);

mod cached_clone_error {
    use super::*;

    static GATE: Gate = Gate::new();

    #[cached(key = "quote:{id}", ttl = "1m")]
    async fn quote(id: u64) -> Result<u32, Unavailable> {
        GATE.load().await;
        Err(Unavailable(format!("quote {id}")))
    }

    async fn cached_shares_a_clone_error_with_its_waiting_callers(topology: Topology) {
        let _turn = GATE.take().await;
        testing::run_on(
            &Deployment::start(topology),
            TestOptions::new("cached_clone_error"),
            |_| async {
                let outcomes = concurrently(&GATE, || quote(1)).await;
                assert_eq!(GATE.loads(), 1, "one load for {CALLERS} callers");
                for outcome in outcomes {
                    assert_eq!(outcome, Err(Unavailable("quote 1".to_owned())));
                }
                assert_eq!(quote(1).await, Err(Unavailable("quote 1".to_owned())));
                assert_eq!(GATE.loads(), 2, "the late caller loaded");
            },
        )
        .await;
    }

    redisx_tests::on_topologies!(cached_shares_a_clone_error_with_its_waiting_callers);
}

mod cached_error_without_clone {
    use super::*;

    static GATE: Gate = Gate::new();

    #[cached(key = "stock:{id}", ttl = "1m")]
    async fn stock(id: u64) -> Result<u32, Down> {
        GATE.load().await;
        Err(Down(format!("stock {id}")))
    }

    /// The control: an error that cannot be cloned is not shared; the waiting callers take
    /// over the load one at a time, each getting its own error.
    async fn cached_with_an_error_that_is_not_clone_takes_over_one_at_a_time(topology: Topology) {
        let _turn = GATE.take().await;
        testing::run_on(
            &Deployment::start(topology),
            TestOptions::new("cached_error_without_clone"),
            |_| async {
                let outcomes = concurrently(&GATE, || stock(1)).await;
                for outcome in outcomes {
                    assert_eq!(outcome, Err(Down("stock 1".to_owned())));
                }
                let loads = GATE.loads();
                assert!(
                    loads > 1 && loads <= CALLERS,
                    "the waiting callers loaded after the failure: {loads} loads"
                );
                assert_eq!(GATE.most_at_once(), 1, "the take-over loads one at a time");
            },
        )
        .await;
    }

    redisx_tests::on_topologies!(cached_with_an_error_that_is_not_clone_takes_over_one_at_a_time);
}

async fn load_options_share_errors_shares_any_clone_error(topology: Topology) {
    static GATE: Gate = Gate::new();
    let _turn = GATE.take().await;
    testing::run_on(
        &Deployment::start(topology),
        TestOptions::new("share_errors"),
        |rx| async move {
            let call = || {
                let cache = rx.cache().clone();
                async move {
                    let entry = EntryOptions::new().ttl(Duration::from_secs(60));
                    cache
                        .get_or_load_using("k", LoadOptions::new(&entry).share_errors(), || async {
                            GATE.load().await;
                            Err::<u32, _>(Unavailable("search".to_owned()))
                        })
                        .await
                }
            };
            let outcomes = concurrently(&GATE, call).await;
            assert_eq!(GATE.loads(), 1, "one load for {CALLERS} callers");
            for outcome in outcomes {
                assert_eq!(outcome, Err(Unavailable("search".to_owned())));
            }
            assert_eq!(call().await, Err(Unavailable("search".to_owned())));
            assert_eq!(GATE.loads(), 2, "the late caller loaded");
        },
    )
    .await;
}

redisx_tests::on_topologies!(load_options_share_errors_shares_any_clone_error);

/// The control of the test above: the same error type without `share_errors()` is not one
/// redisx knows, so the waiting callers take over the load one at a time.
async fn without_share_errors_an_unknown_error_type_is_taken_over(topology: Topology) {
    static GATE: Gate = Gate::new();
    let _turn = GATE.take().await;
    testing::run_on(
        &Deployment::start(topology),
        TestOptions::new("without_share_errors"),
        |rx| async move {
            let call = || {
                let cache = rx.cache().clone();
                async move {
                    let entry = EntryOptions::new();
                    cache
                        .get_or_load_using("k", LoadOptions::new(&entry), || async {
                            GATE.load().await;
                            Err::<u32, _>(Unavailable("search".to_owned()))
                        })
                        .await
                }
            };
            let outcomes = concurrently(&GATE, call).await;
            for outcome in outcomes {
                assert_eq!(outcome, Err(Unavailable("search".to_owned())));
            }
            let loads = GATE.loads();
            assert!(
                loads > 1 && loads <= CALLERS,
                "the waiting callers loaded after the failure: {loads} loads"
            );
            assert_eq!(GATE.most_at_once(), 1, "the take-over loads one at a time");
        },
    )
    .await;
}

redisx_tests::on_topologies!(without_share_errors_an_unknown_error_type_is_taken_over);
