//! Lua scripts: each lives in a `.lua` file beside the Rust that runs it, is run through
//! `redis::Script` (`EVALSHA`; on `NOSCRIPT` it is loaded and retried), and is preloaded into
//! every client at startup.

use std::sync::LazyLock;

/// A named Lua script.
pub(crate) struct LuaScript {
    pub(crate) name: &'static str,
    pub(crate) script: LazyLock<redis::Script>,
}

macro_rules! lua {
    ($ident:ident, $file:literal) => {
        pub(crate) static $ident: LuaScript = LuaScript {
            name: $file,
            script: LazyLock::new(|| redis::Script::new(include_str!($file))),
        };
    };
}

lua!(CACHE_DEL_IF_EQ, "cache/del_if_eq.lua");

/// Every script, for preloading.
pub(crate) static ALL: &[&LuaScript] = &[&CACHE_DEL_IF_EQ];
