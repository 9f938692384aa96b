//! The idempotency plugin's Lua scripts (`lua/*.lua`; each file's header states its keys,
//! arguments, return value and atomicity).

use crate::script::{LuaScript, lua};

lua!(CHECK, "lua/check.lua");
lua!(RENEW, "lua/renew.lua");
lua!(FINISH, "lua/finish.lua");

/// Every idempotency script.
pub(crate) static ALL: &[&LuaScript] = &[&CHECK, &RENEW, &FINISH];
