// A handler taking the payload itself, with a `Result` alias and a path to `Message` elsewhere.
use serde::Deserialize;

#[derive(Deserialize)]
struct Order {
    id: u64,
}

#[redisx::stream_consumer(stream = "orders", group = "mailer")]
async fn confirm(order: Order) -> redisx::Result<()> {
    let _ = order.id;
    Ok(())
}

mod nested {
    // `redisx::streams::Message<T>` by its full path, and an error that is a `String`.
    #[redisx::stream_consumer(stream = "refunds", group = "billing")]
    pub(crate) async fn on_refund(msg: redisx::streams::Message<Vec<u64>>) -> Result<(), String> {
        Err(format!("{} ids", msg.payload().len()))
    }
}

fn main() {
    let _ = (confirm, nested::on_refund);
}
