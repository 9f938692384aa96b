use redisx::{RedisX, cached};
use std::sync::{Arc, OnceLock};

static RUNTIME: OnceLock<RedisX> = OnceLock::new();

#[cached(key = "global:{id}", runtime = RUNTIME.get().expect("runtime is set"))]
async fn from_static(id: u64) -> u64 {
    id
}

#[cached(key = "param:{id}", runtime = rx)]
async fn from_param(rx: &RedisX, id: u64) -> u64 {
    id
}

struct Service {
    rx: RedisX,
    shared: Arc<RedisX>,
}

impl Service {
    #[cached(key = "field:{id}", runtime = &self.rx)]
    async fn by_ref(&self, id: u64) -> u64 {
        id
    }

    #[cached(key = "owned:{id}", runtime = self.rx.clone())]
    async fn by_value(&self, id: u64) -> u64 {
        id
    }

    #[cached(key = "arc:{id}", runtime = self.shared)]
    async fn by_arc(&self, id: u64) -> u64 {
        id
    }
}

fn main() {
    let _ = from_static(1);
    let _ = from_param;
    let _ = Service::by_ref;
    let _ = Service::by_value;
    let _ = Service::by_arc;
}
