use redisx::rate_limit;

#[rate_limit(key = "job", limit = 5, window = "1m")]
async fn job() -> Result<u64, String> {
    Ok(1)
}

fn main() {
    let _ = job();
}
