use redisx::stream_consumer;
use redisx::streams::Message;

struct Order {
    id: u64,
}

#[stream_consumer(stream = "orders", group = "billing")]
async fn on_order(msg: Message<Order>) -> Result<(), String> {
    let _ = msg.payload().id;
    Ok(())
}

#[stream_consumer(stream = "orders", group = "mailer")]
async fn confirm(order: Order) -> Result<(), String> {
    let _ = order.id;
    Ok(())
}

fn main() {}
