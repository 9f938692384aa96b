use redisx::cache_put;

#[cache_put(key = "user:{id}", tags = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"])]
async fn save_user(id: u64) -> u64 {
    id
}

fn main() {
    let _ = save_user(1);
}
