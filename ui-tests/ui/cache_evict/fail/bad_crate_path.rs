use redisx::cache_evict;

#[cache_evict(crate = 5, keys = ["user:{id}"])]
async fn delete_user(id: u64) {
    let _ = id;
}

fn main() {
    let _ = delete_user(1);
}
