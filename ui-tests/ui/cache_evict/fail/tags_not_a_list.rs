use redisx::cache_evict;

#[cache_evict(tags = "users")]
async fn not_a_list(id: u64) {
    let _ = id;
}

#[cache_evict(tags = ["users", 1])]
async fn not_a_string(id: u64) {
    let _ = id;
}

fn main() {
    let _ = not_a_list(1);
    let _ = not_a_string(1);
}
