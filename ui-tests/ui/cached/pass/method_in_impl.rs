use redisx::cached;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Order {
    id: u64,
}

struct Repo {
    tenant: String,
}

impl Repo {
    #[cached(key = "{self.tenant}:order:{id}", ttl = "30s")]
    async fn order(&self, id: u64) -> Result<Order, String> {
        if id == 0 {
            return Err(format!("no order for tenant {}", self.tenant));
        }
        Ok(Order { id })
    }

    #[cached(ttl = "30s")]
    pub async fn orders(&self, page: u32) -> Vec<Order> {
        vec![Order {
            id: u64::from(page),
        }]
    }

    #[cached(key = "by_value:{id}")]
    async fn by_value(self, id: u64) -> u64 {
        id + self.tenant.len() as u64
    }

    #[cached(key = "assoc:{id}")]
    async fn associated(id: u64) -> u64 {
        id
    }
}

trait Store {
    async fn load(&self, id: u64) -> u64;
}

impl Store for Repo {
    #[cached(key = "store:{id}")]
    async fn load(&self, id: u64) -> u64 {
        id
    }
}

fn main() {
    let repo = Repo {
        tenant: String::from("acme"),
    };
    let _ = repo.order(1);
    let _ = repo.orders(1);
    let _ = Repo::associated(1);
    let _ = repo.load(1);
    let _ = repo.by_value(1);
}
