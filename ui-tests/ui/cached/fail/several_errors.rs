// Every argument error is reported at once, each at its own token.
use redisx::cached;

#[cached(key = "user:{uid}", ttl = "5mins", tll = "1m", mode = "l3")]
async fn user(id: u64) -> u64 {
    id
}

fn main() {
    let _ = user(1);
}
