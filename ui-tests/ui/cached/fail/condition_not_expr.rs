use redisx::cached;

#[cached(key = "user:{id}", condition = 1)]
async fn user(id: u64) -> u64 {
    id
}

fn main() {
    let _ = user(1);
}
