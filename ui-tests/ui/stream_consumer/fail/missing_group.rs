use redisx::stream_consumer;

#[stream_consumer(stream = "orders")]
async fn on_order(order: u64) -> Result<(), String> {
    let _ = order;
    Ok(())
}

fn main() {}
