// `crate = "..."` replaces `::redisx` in the expansion (like tokio's `crate = "..."`).
extern crate redisx as rx;

// Shadow the name: the expansion must not depend on whatever `redisx` means here.
#[allow(unused_imports)]
use std as redisx;

mod reexport {
    pub use ::redisx as inner;
}

#[rx::cached(crate = "rx", key = "user:{id}", ttl = "5m", mode = "l1_only", codec = Json)]
async fn renamed(id: u64) -> u64 {
    id
}

#[rx::cached(crate = "crate::reexport::inner", key = "user:{id}", tags = ["users"])]
async fn reexported(id: u64) -> u64 {
    id
}

// Without `crate`, `::redisx` still resolves to the dependency despite the shadowing.
#[rx::cached(key = "user:{id}")]
async fn default_path(id: u64) -> u64 {
    id
}

#[rx::cache_evict(crate = "rx", keys = ["user:{id}"])]
async fn evict(id: u64) {
    let _ = id;
}

#[rx::cache_put(crate = "rx", key = "user:{id}")]
async fn put(id: u64) -> u64 {
    id
}

fn main() {
    let _ = renamed(1);
    let _ = reexported(1);
    let _ = default_path(1);
    let _ = evict(1);
    let _ = put(1);
}
