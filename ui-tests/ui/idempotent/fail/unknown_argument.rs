use redisx::{Error, idempotent};

#[idempotent(key = "job", replay = true, ttl = "1h", ttl = "2h")]
async fn job() -> Result<(), Error> {
    Ok(())
}

fn main() {
    let _ = job();
}
