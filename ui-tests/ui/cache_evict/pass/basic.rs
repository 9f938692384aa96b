use redisx::cache_evict;

#[cache_evict(keys = ["user:{id}"])]
async fn delete_user(id: u64) -> Result<(), String> {
    if id == 0 {
        return Err(String::from("no such user"));
    }
    Ok(())
}

#[cache_evict(keys = ["user:{id}", "profile:{id}"], when = "after")]
async fn rename(id: u64, name: String) -> String {
    name
}

struct Repo {
    tenant: String,
}

impl Repo {
    #[cache_evict(keys = ["{self.tenant}:user:{id}"])]
    async fn delete(&self, id: u64) {
        let _ = id;
    }
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    assert_send(delete_user(1));
    assert_send(rename(1, String::new()));
    let repo = Repo {
        tenant: String::new(),
    };
    assert_send(repo.delete(1));
}
