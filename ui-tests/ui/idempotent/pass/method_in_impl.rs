use redisx::{Error, RedisX, idempotent};

// `self` is the service, not part of the request: it is never fingerprinted.
struct Payments {
    rx: RedisX,
    tenant: String,
}

impl Payments {
    #[idempotent(key = "payment:{key}", runtime = &self.rx, ttl = "1d")]
    async fn charge(&self, key: String, amount: u64) -> Result<u64, Error> {
        let _ = &self.rx;
        Ok(amount + key.len() as u64)
    }

    #[idempotent(key = "refund:{self.tenant}:{id}", fingerprint = [id])]
    async fn refund(&self, id: u64) -> Result<u64, Error> {
        Ok(id)
    }

    #[idempotent(key = "payout:{id}")]
    async fn payout(self, id: u64) -> Result<u64, Error> {
        let _ = self.rx;
        Ok(id)
    }

    #[idempotent(key = "static:{id}")]
    async fn associated(id: u64) -> Result<u64, Error> {
        Ok(id)
    }
}

trait Ledger {
    async fn post(&self, id: u64) -> Result<u64, Error>;
}

impl Ledger for Payments {
    #[idempotent(key = "ledger:{id}")]
    async fn post(&self, id: u64) -> Result<u64, Error> {
        Ok(id)
    }
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    let _ = |p: &Payments| assert_send(p.charge(String::new(), 1));
    let _ = |p: &Payments| assert_send(p.refund(1));
    let _ = |p: Payments| assert_send(p.payout(1));
    let _ = |p: &Payments| drop(p.post(1));
    assert_send(Payments::associated(1));
}
