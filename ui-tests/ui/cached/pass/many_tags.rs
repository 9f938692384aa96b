// How many tags a key may carry is the runtime's `max_tags_per_key` (`CacheConfig`), reported
// when the function runs; the macro accepts any number.
use redisx::cached;

#[cached(key = "user:{id}", tags = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"])]
async fn user(id: u64) -> u64 {
    id
}

fn main() {
    let _ = user(1);
}
