use redisx::{Error, rate_limit};

#[rate_limit(key = "a", limit = 0)]
async fn zero() -> Result<(), Error> {
    Ok(())
}

#[rate_limit(key = "b", window = "soon")]
async fn window() -> Result<(), Error> {
    Ok(())
}

#[rate_limit(key = "c", algorithm = "leaky_bucket")]
async fn algorithm() -> Result<(), Error> {
    Ok(())
}

#[rate_limit(key = "d", policy = "login", window = "1m")]
async fn policy() -> Result<(), Error> {
    Ok(())
}

fn main() {
    let _ = (zero(), window(), algorithm(), policy());
}
