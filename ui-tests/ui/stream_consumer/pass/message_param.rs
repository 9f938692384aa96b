// A handler taking `Message<T>`: registered beside the function, which stays callable.
use redisx::stream_consumer;
use redisx::streams::Message;
use serde::Deserialize;

#[derive(Deserialize)]
struct Order {
    id: u64,
}

#[derive(Debug)]
struct AppError;

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("app error")
    }
}

#[stream_consumer(stream = "orders", group = "billing")]
async fn on_order(msg: Message<Order>) -> Result<(), AppError> {
    if msg.payload().id == 0 {
        return Err(AppError);
    }
    Ok(())
}

fn main() {
    // The function is still an ordinary `async fn`.
    let _: fn(Message<Order>) -> _ = on_order;
}
