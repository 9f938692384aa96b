use redisx::stream_consumer;

#[stream_consumer(stream = "orders", group = "billing")]
async fn no_result(order: u64) -> u64 {
    order
}

#[stream_consumer(stream = "orders", group = "audit")]
async fn a_value(order: u64) -> Result<u8, String> {
    Ok(order as u8)
}

#[stream_consumer(stream = "orders", group = "mailer")]
async fn nothing(order: u64) {
    let _ = order;
}

fn main() {}
