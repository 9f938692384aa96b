use redisx::{Error, RedisX, with_lock};

#[with_lock(key = "order:{id}", ttl = "30s", wait = "5s", retry = "exponential", retry_delay = "50ms", retry_max = "1s")]
async fn settle(id: u64) -> Result<u64, Error> {
    let fence = redisx::lock::fencing_token().unwrap_or_default();
    Ok(id + fence)
}

#[with_lock(key = "cron:hourly", on_busy = "skip", auto_renew = false, on_lost = "continue")]
async fn hourly() -> Result<(), Error> {
    Ok(())
}

#[with_lock(key = "report:{day}", on_busy = "skip", retries = 0)]
async fn report(day: u32) -> Result<Option<String>, Error> {
    Ok(Some(day.to_string()))
}

struct Ledger {
    rx: RedisX,
}

impl Ledger {
    #[with_lock(key = "ledger:{id}", runtime = &self.rx, retry = "fixed")]
    async fn post(&self, id: u64) -> Result<u64, Error> {
        let _ = &self.rx;
        Ok(id)
    }
}

// Parameters named like the expansion's own locals must not clash with them.
#[with_lock(key = "clash:{__redisx_call}")]
async fn clash(__redisx_call: u64) -> Result<u64, Error> {
    Ok(__redisx_call)
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    assert_send(settle(1));
    assert_send(hourly());
    assert_send(report(1));
    assert_send(clash(1));
}
