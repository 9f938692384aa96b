//! The rate limiter's Lua script: `lua/prelude.lua`, one file per algorithm, then
//! `lua/check.lua`, concatenated into one script (each file's header states its part; the
//! check's header states the keys, arguments, return value and atomicity), so that several
//! limits of one key, of any algorithms, are decided in one round trip, all or nothing.

use std::sync::LazyLock;

use crate::script::LuaScript;

/// The check/peek script.
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

/// Every rate-limit script.
pub(crate) static ALL: &[&LuaScript] = &[&CHECK];
