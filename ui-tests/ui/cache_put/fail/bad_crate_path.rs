use redisx::cache_put;

#[cache_put(crate = "not a path!", key = "user:{id}")]
async fn save_user(id: u64) -> u64 {
    id
}

fn main() {
    let _ = save_user(1);
}
