use redisx::{Error, rate_limit};

#[rate_limit(key = "job", points = 5, limit = 1, limit = 2)]
async fn job() -> Result<(), Error> {
    Ok(())
}

fn main() {
    let _ = job();
}
