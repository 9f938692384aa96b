use redisx::cached;

#[cached(key = "user:{id}", tll = "5m")]
async fn user(id: u64) -> u64 {
    id
}

fn main() {
    let _ = user(1);
}
