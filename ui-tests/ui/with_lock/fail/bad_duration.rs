use redisx::{Error, with_lock};

#[with_lock(key = "job", wait = "5 parsecs", on_lost = "panic", retry = "random")]
async fn job() -> Result<(), Error> {
    Ok(())
}

fn main() {
    let _ = job();
}
