//! The lock plugin's Lua scripts (`lua/*.lua`; each file's header states its keys, arguments,
//! return value and atomicity). The two that hand out fencing tokens start with `fence.lua`.

use std::sync::LazyLock;

use crate::script::{LuaScript, lua};

/// `fenced!(NAME, "file.lua")`: the script of `file.lua`, after `fence.lua` (its `next_fence`).
macro_rules! fenced {
    ($ident:ident, $file:literal) => {
        pub(crate) static $ident: LuaScript = LuaScript {
            name: $file,
            script: LazyLock::new(|| {
                redis::Script::new(concat!(include_str!("lua/fence.lua"), include_str!($file)))
            }),
        };
    };
}

fenced!(ACQUIRE, "lua/acquire.lua");
lua!(RELEASE, "lua/release.lua");
lua!(EXTEND, "lua/extend.lua");
lua!(FORCE_RELEASE, "lua/force_release.lua");
fenced!(SEM_ACQUIRE, "lua/sem_acquire.lua");
lua!(SEM_RELEASE, "lua/sem_release.lua");
lua!(SEM_EXTEND, "lua/sem_extend.lua");
lua!(SEM_HOLDERS, "lua/sem_holders.lua");

/// Every lock script.
pub(crate) static ALL: &[&LuaScript] = &[
    &ACQUIRE,
    &RELEASE,
    &EXTEND,
    &FORCE_RELEASE,
    &SEM_ACQUIRE,
    &SEM_RELEASE,
    &SEM_EXTEND,
    &SEM_HOLDERS,
];
