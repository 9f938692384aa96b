//! The lock plugin's Lua scripts (`lua/*.lua`; each file's header states its keys, arguments,
//! return value and atomicity).

use crate::script::{LuaScript, lua};

lua!(ACQUIRE, "lua/acquire.lua");
lua!(RELEASE, "lua/release.lua");
lua!(EXTEND, "lua/extend.lua");
lua!(FORCE_RELEASE, "lua/force_release.lua");

/// Every lock script.
pub(crate) static ALL: &[&LuaScript] = &[&ACQUIRE, &RELEASE, &EXTEND, &FORCE_RELEASE];
