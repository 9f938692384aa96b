use redisx::stream_consumer;

#[stream_consumer(stream = "orders", group = "billing")]
async fn on_order(order: u64, retries: u32) -> Result<(), String> {
    let _ = (order, retries);
    Ok(())
}

#[stream_consumer(stream = "orders", group = "audit")]
async fn no_param() -> Result<(), String> {
    Ok(())
}

fn main() {}
