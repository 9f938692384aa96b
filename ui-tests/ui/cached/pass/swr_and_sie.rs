use redisx::cached;

#[cached(
    key = "rates:{currency}",
    ttl = "1m",
    swr = "30s",
    stale_if_error = "1h"
)]
async fn rates(currency: String) -> Result<f64, String> {
    if currency.is_empty() {
        return Err(String::from("no currency"));
    }
    Ok(1.0)
}

#[cached(key = "swr:{id}", swr = "150ms")]
async fn swr_only(id: u64) -> u64 {
    id
}

fn main() {
    let _ = rates(String::from("EUR"));
    let _ = swr_only(1);
}
