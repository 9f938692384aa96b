use redisx::cached;

#[derive(Clone)]
struct User {
    id: u64,
}

#[cached(key = "user:{id}")]
async fn user(id: u64) -> Result<User, String> {
    Ok(User { id })
}

fn main() {
    let _ = user(1);
}
