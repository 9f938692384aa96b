use redisx::cached;

#[cached(crate = "not a path!", key = "user:{id}")]
async fn not_a_path(id: u64) -> u64 {
    id
}

#[cached(crate = 5, key = "user:{id}")]
async fn not_a_string(id: u64) -> u64 {
    id
}

fn main() {
    let _ = not_a_path(1);
    let _ = not_a_string(1);
}
