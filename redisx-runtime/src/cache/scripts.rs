//! The cache's Lua scripts (`lua/*.lua`; each file's header states its keys, arguments,
//! return value and atomicity).

use crate::script::{LuaScript, lua};

lua!(DEL_IF_EQ, "lua/del_if_eq.lua");
lua!(WRITE, "lua/write.lua");
lua!(RELEASE, "lua/release.lua");
lua!(TAG_CLAIM, "lua/tag_claim.lua");
lua!(FLAG_WAITER, "lua/flag_waiter.lua");
lua!(TAG_DELETE, "lua/tag_delete.lua");
lua!(EXTEND, "lua/extend.lua");
lua!(TOUCH, "lua/touch.lua");

/// Every cache script.
pub(crate) static ALL: &[&LuaScript] = &[
    &DEL_IF_EQ,
    &WRITE,
    &RELEASE,
    &TAG_CLAIM,
    &FLAG_WAITER,
    &TAG_DELETE,
    &EXTEND,
    &TOUCH,
];
