use redisx::stream_consumer;

#[derive(Debug)]
struct AppError;

#[stream_consumer(stream = "orders", group = "billing")]
async fn on_order(order: u64) -> Result<(), AppError> {
    if order == 0 {
        return Err(AppError);
    }
    Ok(())
}

fn main() {}
