use redisx::stream_consumer;

struct Billing;

impl Billing {
    #[stream_consumer(stream = "orders", group = "billing")]
    async fn on_order(&self, order: u64) -> Result<(), String> {
        let _ = order;
        Ok(())
    }
}

fn main() {}
