use redisx::cached;

struct Repo;

impl Repo {
    #[cached(key = "{self.tenant}:{id}")]
    async fn load(id: u64) -> u64 {
        id
    }
}

fn main() {
    let _ = Repo::load(1);
}
