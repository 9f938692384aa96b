// The macro checks a ttl's syntax only: how long is too long is the runtime's `max_ttl`
// (`CacheConfig`), which reports a longer ttl when the function runs.
use redisx::cached;

#[cached(key = "user:{id}", ttl = "2d")]
async fn user(id: u64) -> u64 {
    id
}

#[cached(key = "year:{id}", ttl = "365d")]
async fn yearly(id: u64) -> u64 {
    id
}

fn main() {
    let _ = user(1);
    let _ = yearly(1);
}
