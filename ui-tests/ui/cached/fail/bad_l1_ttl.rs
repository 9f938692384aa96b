use redisx::cached;

#[cached(key = "user:{id}", ttl = "5m", l1_ttl = "later")]
async fn user(id: u64) -> u64 {
    id
}

fn main() {
    let _ = user(1);
}
