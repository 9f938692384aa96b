use redisx::with_lock;

#[with_lock(key = "job")]
async fn job() -> Result<u64, String> {
    Ok(1)
}

fn main() {
    let _ = job();
}
