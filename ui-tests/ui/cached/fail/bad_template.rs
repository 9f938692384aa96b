use redisx::cached;

#[cached(key = "user:{}")]
async fn empty(id: u64) -> u64 {
    id
}

#[cached(key = "user:{id:?}")]
async fn spec(id: u64) -> u64 {
    id
}

#[cached(key = "user:{id")]
async fn unclosed(id: u64) -> u64 {
    id
}

#[cached(key = "")]
async fn empty_key(id: u64) -> u64 {
    id
}

fn main() {
    let _ = (empty(1), spec(1), unclosed(1), empty_key(1));
}
