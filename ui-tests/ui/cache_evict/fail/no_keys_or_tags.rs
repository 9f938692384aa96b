use redisx::cache_evict;

#[cache_evict(when = "before")]
async fn delete_user(id: u64) {
    let _ = id;
}

#[cache_evict(keys = [], tags = [])]
async fn empty(id: u64) {
    let _ = id;
}

fn main() {
    let _ = delete_user(1);
    let _ = empty(1);
}
