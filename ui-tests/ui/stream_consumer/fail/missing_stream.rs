use redisx::stream_consumer;

#[stream_consumer(group = "billing", concurrency = 8)]
async fn on_order(order: u64) -> Result<(), String> {
    let _ = order;
    Ok(())
}

fn main() {}
