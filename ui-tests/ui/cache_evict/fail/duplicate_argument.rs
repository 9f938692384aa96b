use redisx::cache_evict;

#[cache_evict(keys = ["user:{id}"], when = "before", when = "after")]
async fn delete_user(id: u64) {
    let _ = id;
}

fn main() {
    let _ = delete_user(1);
}
