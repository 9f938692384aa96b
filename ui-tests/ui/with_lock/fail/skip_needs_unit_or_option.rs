use redisx::{Error, with_lock};

#[with_lock(key = "job", on_busy = "skip")]
async fn job() -> Result<u64, Error> {
    Ok(1)
}

fn main() {
    let _ = job();
}
