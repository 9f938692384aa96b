use redisx::{Error, RedisX, rate_limit};

#[rate_limit(key = "login:{ip}", limit = 5, window = "1m", algorithm = "sliding_window", cost = 1)]
async fn login(ip: String) -> Result<String, Error> {
    Ok(ip)
}

#[rate_limit(key = "export:{tenant}", policy = "exports", cost = 10)]
async fn export(tenant: u64) -> Result<(), Error> {
    let _ = tenant;
    Ok(())
}

// Every part of the limit left out comes from the runtime's default limit.
#[rate_limit(key = "search:{user}")]
async fn search(user: u64) -> Result<u64, Error> {
    Ok(user)
}

#[rate_limit(key = "api:{id}", algorithm = "gcra", limit = 10, window = "1s")]
async fn api(id: u64) -> Result<u64, Error> {
    Ok(id)
}

struct Service {
    rx: RedisX,
}

impl Service {
    #[rate_limit(key = "svc:{id}", runtime = &self.rx, algorithm = "token_bucket", limit = 100, window = "1h")]
    async fn call(&self, id: u64) -> Result<u64, Error> {
        Ok(id)
    }
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    assert_send(login(String::new()));
    assert_send(export(1));
    assert_send(search(1));
    assert_send(api(1));
    let _ = |s: &Service| assert_send(s.call(1));
}
