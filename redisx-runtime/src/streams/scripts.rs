//! The streams plugin's Lua scripts (`lua/*.lua`; each file's header states its keys,
//! arguments, return value and atomicity).

use crate::script::{LuaScript, lua};

lua!(RETRY, "lua/retry.lua");
lua!(DEAD_LETTER, "lua/dead_letter.lua");
lua!(PROMOTE, "lua/promote.lua");
lua!(REQUEUE, "lua/requeue.lua");
lua!(DELCONSUMER, "lua/delconsumer.lua");
lua!(SCHEDULE, "lua/schedule.lua");
lua!(PURGE_DLQ, "lua/purge_dlq.lua");

/// Every streams script.
pub(crate) static ALL: &[&LuaScript] = &[
    &RETRY,
    &DEAD_LETTER,
    &PROMOTE,
    &REQUEUE,
    &SCHEDULE,
    &DELCONSUMER,
    &PURGE_DLQ,
];
