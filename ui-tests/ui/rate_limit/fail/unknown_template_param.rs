use redisx::{Error, rate_limit};

#[rate_limit(key = "login:{ip}", limit = 5, window = "1m")]
async fn login(addr: String) -> Result<String, Error> {
    Ok(addr)
}

fn main() {
    let _ = login(String::new());
}
