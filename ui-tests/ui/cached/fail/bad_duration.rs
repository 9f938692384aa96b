use redisx::cached;

#[cached(key = "user:{id}", ttl = "5 minutes")]
async fn user(id: u64) -> u64 {
    id
}

#[cached(key = "user:{id}", swr = 30)]
async fn not_a_string(id: u64) -> u64 {
    id
}

fn main() {
    let _ = user(1);
    let _ = not_a_string(1);
}
