// A ttl over a day and more than ten tags compile: the runtime's config (`max_ttl`,
// `max_tags_per_key`) bounds them and reports a call site over them when it runs.
use redisx::cache_put;

#[cache_put(key = "user:{id}", tags = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"])]
async fn save_user(id: u64) -> u64 {
    id
}

#[cache_put(key = "user:{id}", ttl = "25h")]
async fn too_long(id: u64) -> u64 {
    id
}

fn main() {
    let _ = save_user(1);
    let _ = too_long(1);
}
