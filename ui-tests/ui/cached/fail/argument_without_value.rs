use redisx::cached;

#[cached(key)]
async fn user(id: u64) -> u64 {
    id
}

fn main() {
    let _ = user(1);
}
