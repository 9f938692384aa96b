use redisx::cached;

#[cached(key = "user:{id}", ttl = "5m", stale_if_error = "soon")]
async fn user(id: u64) -> Result<u64, String> {
    Ok(id)
}

fn main() {
    let _ = user(1);
}
