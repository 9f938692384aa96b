// An `l1_ttl` over a day compiles (the runtime's config bounds it); only an `l1_ttl` longer
// than the `ttl` of the same call site is an error (`ui/cached/fail/l1_ttl_over_ttl.rs`).
use redisx::cached;

#[cached(key = "user:{id}", l1_ttl = "2d")]
async fn user(id: u64) -> u64 {
    id
}

#[cached(key = "user:{id}", ttl = "2d", l1_ttl = "25h")]
async fn with_ttl(id: u64) -> u64 {
    id
}

fn main() {
    let _ = user(1);
    let _ = with_ttl(1);
}
