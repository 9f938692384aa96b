use redisx::{Error, with_lock};

#[with_lock(key = "order:{order_id}")]
async fn settle(id: u64) -> Result<u64, Error> {
    Ok(id)
}

fn main() {
    let _ = settle(1);
}
