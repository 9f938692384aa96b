// Every option, and `claim_idle = "off"`.
use redisx::stream_consumer;
use redisx::streams::Message;

#[stream_consumer(
    stream = "orders",
    group = "billing",
    concurrency = 8,
    max_retries = 5,
    batch = 10,
    block = "5s",
    claim_idle = "30s",
    consumer = "billing-1"
)]
async fn on_order(msg: Message<u64>) -> Result<(), redisx::Error> {
    let _ = msg.attempt();
    Ok(())
}

#[stream_consumer(
    stream = "orders",
    group = "audit",
    max_retries = 0,
    claim_idle = "off"
)]
async fn audit(order: std::collections::HashMap<String, u64>) -> Result<(), std::io::Error> {
    let _ = order.len();
    Ok(())
}

fn main() {
    let _ = (on_order, audit);
}
