//! The Lua script mechanism: each script lives in a `.lua` file in its plugin's `lua/` folder
//! (declared in the plugin's `scripts.rs` with [`lua!`]), runs through `redis::Script`
//! (`EVALSHA`; on `NOSCRIPT` it is loaded and retried), and is preloaded into every client at
//! startup.

use std::sync::LazyLock;

/// A named Lua script.
pub(crate) struct LuaScript {
    pub(crate) name: &'static str,
    pub(crate) script: LazyLock<redis::Script>,
}

/// `lua!(NAME, "lua/file.lua")`: a [`LuaScript`] static from a file beside the invoking module.
macro_rules! lua {
    ($ident:ident, $file:literal) => {
        pub(crate) static $ident: $crate::script::LuaScript = $crate::script::LuaScript {
            name: $file,
            script: ::std::sync::LazyLock::new(|| ::redis::Script::new(include_str!($file))),
        };
    };
}
pub(crate) use lua;

/// Every built-in plugin's scripts and the ops scripts, for preloading (and reloading after
/// `NOSCRIPT` in a pipeline).
pub(crate) fn builtin() -> impl Iterator<Item = &'static LuaScript> {
    crate::cache::scripts::ALL
        .iter()
        .chain(crate::lock::scripts::ALL)
        .chain(crate::rate_limit::scripts::ALL)
        .chain(crate::idempotency::scripts::ALL)
        .chain(crate::streams::scripts::ALL)
        .chain(crate::ops::SCRIPTS)
        .copied()
}
