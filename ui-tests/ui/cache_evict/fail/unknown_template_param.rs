use redisx::cache_evict;

#[cache_evict(keys = ["user:{id}"], tags = ["org:{org}"])]
async fn delete_user(user_id: u64) {
    let _ = user_id;
}

fn main() {
    let _ = delete_user(1);
}
