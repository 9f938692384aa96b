use redisx::stream_consumer;

#[stream_consumer(stream = "orders", group = "billing", retries = 5, runtime = &RX)]
async fn on_order(order: u64) -> Result<(), String> {
    let _ = order;
    Ok(())
}

#[stream_consumer(stream = "orders", group = "audit", concurrency = 0, claim_idle = "0s")]
async fn audit(order: u64) -> Result<(), String> {
    let _ = order;
    Ok(())
}

fn main() {}
