use redisx::rate_limit;

#[rate_limit(key = "job", limit = 5, window = "1m")]
async fn job() -> u64 {
    1
}

fn main() {
    let _ = job();
}
