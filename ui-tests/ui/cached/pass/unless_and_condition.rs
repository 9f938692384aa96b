use redisx::cached;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Order {
    open: bool,
}

fn is_open(order: &Order) -> bool {
    order.open
}

fn worth_caching(id: &u64, _verbose: &bool) -> bool {
    *id != 0
}

// Closures without type annotations: the types come from the function.
#[cached(key = "order:{id}", unless = |order| order.open, condition = |id, verbose| *id != 0 && !*verbose)]
async fn order(id: u64, verbose: bool) -> Result<Order, String> {
    let _ = verbose;
    Ok(Order { open: id % 2 == 0 })
}

// Function paths.
#[cached(key = "order2:{id}", unless = is_open, condition = worth_caching)]
async fn order_by_path(id: u64, verbose: bool) -> Order {
    let _ = verbose;
    Order { open: id > 0 }
}

// A path that needs a deref coercion (`&String` to `&str`).
#[cached(key = "name:{id}", unless = str::is_empty)]
async fn name(id: u64) -> String {
    id.to_string()
}

// Annotated closures and a condition on a function without parameters.
#[cached(key = "list", unless = |v: &Vec<u8>| v.is_empty(), condition = || true)]
async fn list() -> Vec<u8> {
    vec![1]
}

struct Repo {
    enabled: bool,
}

impl Repo {
    #[cached(key = "repo:{id}", condition = |id| *id > 1)]
    async fn get(&self, id: u64) -> u64 {
        id + u64::from(self.enabled)
    }
}

fn main() {
    let _ = order(1, false);
    let _ = order_by_path(1, false);
    let _ = name(1);
    let _ = list();
    let _ = Repo { enabled: true }.get(1);
}
