use redisx::cached;

struct Repo;

impl Repo {
    #[cached(key = "item:{id}", swr = "30s")]
    async fn item(&self, id: u64) -> u64 {
        id
    }

    #[cached(key = "name:{name}", swr = "30s")]
    async fn by_name(name: &str) -> String {
        name.to_owned()
    }
}

fn main() {}
