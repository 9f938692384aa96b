use redisx::{Error, idempotent};

#[idempotent(key = "payment:{req}", fingerprint = [req, amount])]
async fn charge(req: String, amnt: u64) -> Result<u64, Error> {
    Ok(amnt + req.len() as u64)
}

#[idempotent(key = "pair:{a}", fingerprint = [a])]
async fn pair((a, b): (u64, u64)) -> Result<u64, Error> {
    Ok(a + b)
}

struct Payments;

impl Payments {
    #[idempotent(key = "refund:{id}", fingerprint = [self, id, id])]
    async fn refund(&self, id: u64) -> Result<u64, Error> {
        Ok(id)
    }
}

fn main() {
    let _ = (charge(String::new(), 1), pair((1, 2)), Payments.refund(1));
}
