//! The L1 benches of the `cache` suite: `cache.l1_hit` (and its `_cycle` and `_owned` forms),
//! and `cache.l1_hit_mt` on a multi-thread runtime.

use std::hint::black_box;
use std::io::Write as _;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redisx::RedisX;

use super::{
    CAPACITY, L1_KEYS, L1_PASSES, L1Value, User, at, check_only_l1, ours_l1_arc, peer_l1_arc,
    random_order, stage, user,
};
use crate::measure::{Comparison, Side, Unit, compare, time_sync};
use crate::{Context, unpin_current_thread};

// ---------------------------------------------------------------------------------------------
// cache.l1_hit

/// `bench`: the name to report; `passes`: of the access order ([`random_order`]).
pub(super) async fn l1_hit<V: L1Value>(
    ctx: &Context,
    rx: &RedisX,
    bench: &str,
    passes: u64,
) -> Vec<Comparison> {
    stage(&format!("{bench}: warming 100k keys in every cache"));
    let order = random_order(L1_KEYS, passes, 1);
    for i in 0..L1_KEYS {
        black_box(V::ours(rx, i).await);
        black_box(V::peer(i).await);
    }
    let floor: Arc<quick_cache::sync::Cache<String, Arc<User>>> =
        Arc::new(quick_cache::sync::Cache::new(CAPACITY));
    let moka: moka::sync::Cache<String, Arc<User>> = moka::sync::Cache::new(CAPACITY as u64);
    for i in 0..L1_KEYS {
        floor.insert(format!("bench:{i}"), Arc::new(user(i)));
        moka.insert(format!("bench:{i}"), Arc::new(user(i)));
    }
    moka.run_pending_tasks();
    let before = rx.cache().stats();

    let ours = {
        let (rx, order) = (rx.clone(), Arc::clone(&order));
        Side::new("redisx #[cached] L1 hit", move |ops| {
            let (rx, order) = (rx.clone(), Arc::clone(&order));
            async move {
                let start = Instant::now();
                for n in 0..ops {
                    black_box(V::ours(&rx, at(&order, n)).await);
                }
                start.elapsed()
            }
        })
    };
    let floor_side = {
        let (floor, order) = (Arc::clone(&floor), Arc::clone(&order));
        Side::new("quick_cache get + clone", move |ops| {
            let d = time_sync(ops, |n| {
                let mut buf = [0; KEY_BUF];
                let hit = floor
                    .get(stack_key(&mut buf, at(&order, n)))
                    .expect("warmed");
                black_box(V::from_floor(&hit));
            });
            async move { d }
        })
    };
    let peer_side = {
        let order = Arc::clone(&order);
        Side::new("cached #[cached] async hit", move |ops| {
            let order = Arc::clone(&order);
            async move {
                let start = Instant::now();
                for n in 0..ops {
                    black_box(V::peer(at(&order, n)).await);
                }
                start.elapsed()
            }
        })
    };
    let moka_side = {
        let (moka, order) = (moka.clone(), Arc::clone(&order));
        Side::new("moka get + clone", move |ops| {
            let d = time_sync(ops, |n| {
                let mut buf = [0; KEY_BUF];
                let hit = moka
                    .get(stack_key(&mut buf, at(&order, n)))
                    .expect("warmed");
                black_box(V::from_floor(&hit));
            });
            async move { d }
        })
    };
    let result = compare(
        bench,
        Unit::NsPerOp,
        &ctx.settings,
        ours,
        vec![floor_side, peer_side, moka_side],
    )
    .await;
    check_only_l1(rx, before, bench);
    result
}

/// Room for `bench:` and any `u64`.
const KEY_BUF: usize = 32;

/// Renders `bench:{i}` into a stack buffer: the floors' key.
///
/// Ours renders its key template through a hashing writer, without allocating, on an L1 hit.
/// The floors do the same work: format the same template (through `fmt`, like ours) but into a
/// stack buffer, then hash and compare. A `format!` per lookup (about 55 ns) would make the floor
/// do more than ours, and looking up pre-built `String`s would add a random memory access to
/// a scattered key that ours does not make; either would flatter our ratio.
fn stack_key(buf: &mut [u8; KEY_BUF], i: u64) -> &str {
    let mut cursor: &mut [u8] = &mut buf[..];
    write!(cursor, "bench:{i}").expect("a u64 key fits in the buffer");
    let len = KEY_BUF - cursor.len();
    std::str::from_utf8(&buf[..len]).expect("the key is ASCII")
}

// ---------------------------------------------------------------------------------------------
// cache.l1_hit_mt

/// A multi-thread runtime owned inside an async context: dropping a `Runtime` there would
/// panic (it blocks), so it is shut down in the background.
struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl BackgroundRuntime {
    fn get(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `tasks` tasks on `mt`, each doing its share of `ops` operations starting at a different
/// place of the order, and returns the wall time of the whole run.
async fn spread<F, Fut>(mt: &tokio::runtime::Runtime, tasks: u64, ops: u64, task: F) -> Duration
where
    F: Fn(u64, u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let share = ops.div_ceil(tasks);
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| mt.spawn(task(t * 7919, share)))
        .collect();
    for h in handles {
        h.await.expect("a benchmark task panicked");
    }
    start.elapsed()
}

/// A side that spreads `ops` over `tasks` tasks of the multi-thread runtime; `task(offset, n)`
/// makes the future of one task (`n` operations from `offset` in the access order).
fn mt_side<F, Fut>(label: &str, mt: &Rc<BackgroundRuntime>, tasks: u64, task: F) -> Side
where
    F: Fn(u64, u64) -> Fut + Clone + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mt = Rc::clone(mt);
    Side::new(label, move |ops| {
        let (mt, task) = (Rc::clone(&mt), task.clone());
        async move { spread(mt.get(), tasks, ops, task).await }
    })
}

pub(super) async fn l1_hit_mt(ctx: &Context, rx: &RedisX) -> Vec<Comparison> {
    let threads = ctx.cores.max(1);
    stage(&format!(
        "l1_hit_mt: {threads} worker threads on a multi-thread runtime"
    ));
    let unpin = ctx.all_cpus.clone();
    let mt = Rc::new(BackgroundRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .on_thread_start(move || {
                if let Some(cpus) = &unpin {
                    unpin_current_thread(cpus);
                }
            })
            .build()
            .expect("a multi-thread runtime"),
    )));
    let order = random_order(L1_KEYS, L1_PASSES, 2);
    let floor: Arc<quick_cache::sync::Cache<String, Arc<User>>> =
        Arc::new(quick_cache::sync::Cache::new(CAPACITY));
    for i in 0..L1_KEYS {
        floor.insert(format!("bench:{i}"), Arc::new(user(i)));
        // Warm (no-ops when cache.l1_hit ran first).
        black_box(ours_l1_arc(rx, i).await);
        black_box(peer_l1_arc(i).await);
    }
    let before = rx.cache().stats();
    let tasks = threads as u64;

    let ours = {
        let (rx, order) = (rx.clone(), Arc::clone(&order));
        mt_side(
            "redisx #[cached] L1 hit",
            &mt,
            tasks,
            move |offset, share| {
                let (rx, order) = (rx.clone(), Arc::clone(&order));
                async move {
                    for n in offset..offset + share {
                        black_box(ours_l1_arc(&rx, at(&order, n)).await);
                    }
                }
            },
        )
    };
    let floor_side = {
        let (floor, order) = (Arc::clone(&floor), Arc::clone(&order));
        mt_side(
            "quick_cache get + clone",
            &mt,
            tasks,
            move |offset, share| {
                let (floor, order) = (Arc::clone(&floor), Arc::clone(&order));
                async move {
                    for n in offset..offset + share {
                        let mut buf = [0; KEY_BUF];
                        let hit = floor
                            .get(stack_key(&mut buf, at(&order, n)))
                            .expect("warmed");
                        black_box(Arc::clone(&hit));
                    }
                }
            },
        )
    };
    let peer_side = {
        let order = Arc::clone(&order);
        mt_side(
            "cached #[cached] async hit",
            &mt,
            tasks,
            move |offset, share| {
                let order = Arc::clone(&order);
                async move {
                    for n in offset..offset + share {
                        black_box(peer_l1_arc(at(&order, n)).await);
                    }
                }
            },
        )
    };
    let result = compare(
        "cache.l1_hit_mt",
        Unit::NsPerOp,
        &ctx.settings,
        ours,
        vec![floor_side, peer_side],
    )
    .await;
    check_only_l1(rx, before, "cache.l1_hit_mt");
    let threads_value = u64::try_from(threads).unwrap_or(u64::MAX);
    result
        .into_iter()
        .map(|c| c.with("threads", threads_value))
        .collect()
}
