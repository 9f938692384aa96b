use redisx::{Error, idempotent};

struct Receipt {
    id: u64,
}

#[idempotent(key = "payment:{id}")]
async fn charge(id: u64) -> Result<Receipt, Error> {
    Ok(Receipt { id })
}

fn main() {
    let _ = charge(1);
}
