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
lua!(CACHE_WRITE, "cache/write.lua");
lua!(CACHE_RELEASE, "cache/release.lua");
lua!(CACHE_TAG_CLAIM, "cache/tag_claim.lua");
lua!(CACHE_FLAG_WAITER, "cache/flag_waiter.lua");
lua!(CACHE_TAG_DELETE, "cache/tag_delete.lua");
lua!(CACHE_EXTEND, "cache/extend.lua");
lua!(CACHE_TAG_MIGRATE, "cache/tag_migrate.lua");

/// Every script, for preloading (and reloading after `NOSCRIPT` in a pipeline).
pub(crate) static ALL: &[&LuaScript] = &[
    &CACHE_DEL_IF_EQ,
    &CACHE_WRITE,
    &CACHE_RELEASE,
    &CACHE_TAG_CLAIM,
    &CACHE_FLAG_WAITER,
    &CACHE_TAG_DELETE,
    &CACHE_EXTEND,
    &CACHE_TAG_MIGRATE,
];
