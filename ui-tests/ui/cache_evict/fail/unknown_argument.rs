use redisx::cache_evict;

#[cache_evict(key = "user:{id}")]
async fn delete_user(id: u64) {
    let _ = id;
}

fn main() {
    let _ = delete_user(1);
}
