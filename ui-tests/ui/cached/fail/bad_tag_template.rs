use redisx::cached;

#[cached(key = "user:{id}", tags = ["users", "user:{nope}"])]
async fn user(id: u64) -> u64 {
    id
}

fn main() {
    let _ = user(1);
}
