//! `cache.l1_hit_scoped`: what a runtime scope ([`RedisX::scope`]) costs an L1 hit.
//!
//! | bench | ours | floor | peers |
//! |---|---|---|---|
//! | `cache.l1_hit_scoped` | `#[redisx::cached]` hit without `runtime = ...`, inside `rx.scope(..)` | the same function with no scope set (the installed runtime) | the same hit with `runtime = rx` |
//!
//! The three sides hit the same 100k L1 entries in the same (seeded, random) order; only the
//! way the call finds its runtime differs.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use redisx::RedisX;

use crate::Context;
use crate::cache::{L1_KEYS, L1_PASSES, User, at, check_only_l1, random_order, stage, user};
use crate::measure::{Comparison, Side, Unit, compare};

/// No `runtime = ...`: the scope's runtime, else the installed one.
#[redisx::cached(key = "bench:arc:{i}", ttl = "1h")]
async fn ambient(i: u64) -> Arc<User> {
    Arc::new(user(i))
}

/// The same entries, with the runtime given explicitly.
#[redisx::cached(key = "bench:arc:{i}", ttl = "1h", runtime = rx)]
async fn explicit(rx: &RedisX, i: u64) -> Arc<User> {
    Arc::new(user(i))
}

/// A side timing `ops` hits of `hit`, in `scope` when given.
fn side<Fut>(
    label: &str,
    order: &Arc<Vec<u64>>,
    scope: Option<RedisX>,
    hit: fn(RedisX, u64) -> Fut,
    rx: &RedisX,
) -> Side
where
    Fut: Future<Output = Arc<User>> + 'static,
{
    let (rx, order) = (rx.clone(), Arc::clone(order));
    Side::new(label, move |ops| {
        let (rx, order, scope) = (rx.clone(), Arc::clone(&order), scope.clone());
        let timed = async move {
            let start = Instant::now();
            for n in 0..ops {
                black_box(hit(rx.clone(), at(&order, n)).await);
            }
            start.elapsed()
        };
        async move {
            match scope {
                Some(s) => s.scope(timed).await,
                None => timed.await,
            }
        }
    })
}

pub(crate) async fn l1_hit_scoped(ctx: &Context, rx: &RedisX) -> Vec<Comparison> {
    let bench = "cache.l1_hit_scoped";
    stage(&format!("{bench}: warming 100k keys"));
    if RedisX::global().is_none() {
        rx.install()
            .expect("nothing else installs a runtime in the bench program");
    }
    let order = random_order(L1_KEYS, L1_PASSES, 1);
    for i in 0..L1_KEYS {
        black_box(explicit(rx, i).await);
    }
    let before = rx.cache().stats();
    // The runtime is passed to every side so each does the same `Arc` clone per call.
    let scoped = side(
        "redisx #[cached] L1 hit in rx.scope(..)",
        &order,
        Some(rx.clone()),
        |_, i| ambient(i),
        rx,
    );
    let installed = side(
        "the same, no scope (installed runtime)",
        &order,
        None,
        |_, i| ambient(i),
        rx,
    );
    let given = side(
        "the same, runtime = rx",
        &order,
        None,
        |rx, i| async move { explicit(&rx, i).await },
        rx,
    );
    let result = compare(
        bench,
        Unit::NsPerOp,
        &ctx.settings,
        scoped,
        vec![installed, given],
    )
    .await;
    check_only_l1(rx, before, bench);
    result
}
