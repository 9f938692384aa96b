// A body on one line compiles without warnings: the expansion puts the body's statements in an
// `async move` block of their own braces, not in a second block (which would warn of
// unnecessary braces, tracing#1831).
#![deny(warnings)]

use redisx::{cache_evict, cache_put, cached};

#[cached(key = "user:{id}")]
pub async fn user(id: u64) -> Result<u64, String> { Ok(id) }

#[cached(key = "name:{id}")]
pub async fn name(id: u64) -> String { id.to_string() }

#[cached(key = "none")]
pub async fn nothing() {}

#[cache_put(key = "user:{id}")]
pub async fn save(id: u64) -> u64 { id }

#[cache_evict(keys = ["user:{id}"])]
pub async fn delete(id: u64) -> Result<u64, String> { Ok(id) }

fn main() {
    let _ = user(1);
    let _ = name(1);
    let _ = nothing();
    let _ = save(1);
    let _ = delete(1);
}
