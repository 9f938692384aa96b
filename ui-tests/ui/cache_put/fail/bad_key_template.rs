use redisx::cache_put;

#[cache_put(key = "user:{id")]
async fn unclosed(id: u64) -> u64 {
    id
}

#[cache_put(key = "")]
async fn empty_key(id: u64) -> u64 {
    id
}

fn main() {
    let _ = unclosed(1);
    let _ = empty_key(1);
}
