use redisx::cached;

#[cached(key = "user:{id}", tags = "users")]
async fn not_a_list(id: u64) -> u64 {
    id
}

#[cached(key = "user:{id}", tags = ["users", 1])]
async fn not_a_string(id: u64) -> u64 {
    id
}

fn main() {
    let _ = not_a_list(1);
    let _ = not_a_string(1);
}
