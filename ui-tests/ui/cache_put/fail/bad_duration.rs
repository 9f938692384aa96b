use redisx::cache_put;

#[cache_put(key = "user:{id}", ttl = "5 minutes")]
async fn save_user(id: u64) -> u64 {
    id
}

fn main() {
    let _ = save_user(1);
}
