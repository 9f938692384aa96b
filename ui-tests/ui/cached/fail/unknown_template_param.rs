use redisx::cached;

#[cached(key = "user:{user_id}", ttl = "5m")]
async fn user(id: u64, name: String) -> String {
    format!("{id}{name}")
}

fn main() {
    let _ = user(1, String::new());
}
