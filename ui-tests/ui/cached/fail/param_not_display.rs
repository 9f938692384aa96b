use redisx::cached;

struct UserId(u64);

#[cached(key = "user:{id}")]
async fn user(id: UserId) -> u64 {
    id.0
}

fn main() {
    let _ = user(UserId(1));
}
