use redisx::{Error, with_lock};

#[with_lock(key = "job", retry_delay = "50ms")]
async fn job() -> Result<(), Error> {
    Ok(())
}

fn main() {
    let _ = job();
}
