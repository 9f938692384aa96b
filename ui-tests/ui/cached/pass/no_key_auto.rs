// Without `key`, the key is the function's path plus a hash of its serialized arguments.
use redisx::cached;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Filter {
    name: String,
    limit: u32,
}

#[cached(ttl = "1m")]
async fn search(filter: Filter, page: u32) -> Vec<String> {
    vec![format!("{}:{}:{page}", filter.name, filter.limit)]
}

#[cached]
async fn no_args() -> Result<u64, String> {
    Ok(1)
}

#[cached]
async fn destructured((a, b): (u32, u32), _: u8) -> u32 {
    a + b
}

struct Repo;

impl Repo {
    #[cached]
    async fn method(&self, name: &str) -> String {
        name.to_owned()
    }
}

fn main() {
    let _ = search(
        Filter {
            name: String::new(),
            limit: 1,
        },
        1,
    );
    let _ = no_args();
    let _ = destructured((1, 2), 3);
    let _ = Repo.method("a");
}
