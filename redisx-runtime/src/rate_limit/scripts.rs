//! The rate limiter's Lua scripts, assembled from `lua/`: `prelude.lua`, one file per
//! algorithm, and an end. `CHECK` (every algorithm, then `check.lua`) decides several limits of
//! one key, of any algorithms, in one round trip, all or nothing; the single-limit scripts
//! (one algorithm, then `single.lua`) serve the common one-limit check with less to run. Each
//! file's header states its part; the ends state the keys, arguments, return value and
//! atomicity. Both kinds take the same arguments.

use std::sync::LazyLock;

use super::config::Algorithm;
use crate::script::LuaScript;

/// The multi-limit check/peek script.
pub(crate) static CHECK: LuaScript = LuaScript {
    name: "rate_limit/lua/check.lua",
    script: LazyLock::new(|| {
        redis::Script::new(concat!(
            include_str!("lua/prelude.lua"),
            include_str!("lua/fixed_window.lua"),
            include_str!("lua/sliding_window.lua"),
            include_str!("lua/sliding_counter.lua"),
            include_str!("lua/token_bucket.lua"),
            include_str!("lua/gcra.lua"),
            include_str!("lua/check.lua"),
        ))
    }),
};

/// `single!(NAME, "file.lua", function)`: the one-limit script of one algorithm.
macro_rules! single {
    ($ident:ident, $file:literal, $function:literal) => {
        pub(crate) static $ident: LuaScript = LuaScript {
            name: concat!("rate_limit/lua/", $file, " + single.lua"),
            script: LazyLock::new(|| {
                redis::Script::new(concat!(
                    include_str!("lua/prelude.lua"),
                    include_str!(concat!("lua/", $file)),
                    "\nlocal algorithm = ",
                    $function,
                    "\n",
                    include_str!("lua/single.lua"),
                ))
            }),
        };
    };
}

single!(FIXED_WINDOW, "fixed_window.lua", "fixed_window");
single!(SLIDING_WINDOW, "sliding_window.lua", "sliding_window");
single!(SLIDING_COUNTER, "sliding_counter.lua", "sliding_counter");
single!(TOKEN_BUCKET, "token_bucket.lua", "token_bucket");
single!(GCRA, "gcra.lua", "gcra");

/// The one-limit script of `algorithm`.
pub(crate) fn single(algorithm: Algorithm) -> &'static LuaScript {
    match algorithm {
        Algorithm::FixedWindow => &FIXED_WINDOW,
        Algorithm::SlidingWindow => &SLIDING_WINDOW,
        Algorithm::SlidingCounter => &SLIDING_COUNTER,
        Algorithm::TokenBucket => &TOKEN_BUCKET,
        Algorithm::Gcra => &GCRA,
    }
}

/// Every rate-limit script.
pub(crate) static ALL: &[&LuaScript] = &[
    &CHECK,
    &FIXED_WINDOW,
    &SLIDING_WINDOW,
    &SLIDING_COUNTER,
    &TOKEN_BUCKET,
    &GCRA,
];
