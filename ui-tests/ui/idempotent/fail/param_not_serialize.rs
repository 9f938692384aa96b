use redisx::{Error, idempotent};

struct Client {
    retries: u32,
}

// Every argument is fingerprinted by default, and a `Client` cannot be.
#[idempotent(key = "payment:{key}")]
async fn charge(key: String, client: &Client) -> Result<u32, Error> {
    Ok(client.retries + key.len() as u32)
}

// A listed argument is reported at its name in the list.
#[idempotent(key = "refund:{key}", fingerprint = [key, client])]
async fn refund(key: String, client: &Client) -> Result<u32, Error> {
    Ok(client.retries + key.len() as u32)
}

fn main() {
    let client = Client { retries: 1 };
    let _ = (charge(String::new(), &client), refund(String::new(), &client));
}
