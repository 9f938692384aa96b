use redisx::cache_evict;

#[cache_evict(keys = ["user:{id}"])]
fn delete_user(id: u64) {
    let _ = id;
}

fn main() {
    delete_user(1);
}
