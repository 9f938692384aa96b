use redisx::{Error, idempotent};

#[idempotent(key = "a", ttl = "0s")]
async fn zero() -> Result<(), Error> {
    Ok(())
}

#[idempotent(key = "b", wait = "a minute", lock_ttl = "30")]
async fn durations() -> Result<(), Error> {
    Ok(())
}

#[idempotent(key = "c", record_errors = "yes", fingerprint = req)]
async fn values(req: u64) -> Result<u64, Error> {
    Ok(req)
}

#[idempotent(key = "d:{reqq}")]
async fn template(req: u64) -> Result<u64, Error> {
    Ok(req)
}

fn main() {
    let _ = (zero(), durations(), values(1), template(1));
}
