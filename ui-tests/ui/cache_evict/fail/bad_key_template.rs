use redisx::cache_evict;

#[cache_evict(keys = ["user:{id"])]
async fn unclosed(id: u64) {
    let _ = id;
}

#[cache_evict(keys = ["user:id}"])]
async fn unmatched_close(id: u64) {
    let _ = id;
}

fn main() {
    let _ = unclosed(1);
    let _ = unmatched_close(1);
}
