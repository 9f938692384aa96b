use redisx::cache_put;

#[cache_put(key = "user:{id}", tll = "5m")]
async fn save_user(id: u64) -> u64 {
    id
}

fn main() {
    let _ = save_user(1);
}
