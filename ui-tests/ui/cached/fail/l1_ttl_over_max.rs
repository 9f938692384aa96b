// `l1_ttl` has the same 24h maximum as `ttl`. A rejected `l1_ttl` is not also compared with
// `ttl`, so the second function gets one message too.
use redisx::cached;

#[cached(key = "user:{id}", l1_ttl = "2d")]
async fn user(id: u64) -> u64 {
    id
}

#[cached(key = "user:{id}", ttl = "1h", l1_ttl = "25h")]
async fn with_ttl(id: u64) -> u64 {
    id
}

fn main() {
    let _ = user(1);
    let _ = with_ttl(1);
}
