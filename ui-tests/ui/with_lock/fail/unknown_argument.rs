use redisx::{Error, with_lock};

#[with_lock(key = "job", timeout = "5s", ttl = "1s", ttl = "2s")]
async fn job() -> Result<(), Error> {
    Ok(())
}

fn main() {
    let _ = job();
}
