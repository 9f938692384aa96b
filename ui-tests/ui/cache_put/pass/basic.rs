use redisx::cache_put;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

#[cache_put(key = "user:{user.id}", ttl = "5m", tags = ["users", "user:{user.id}"])]
async fn save_user(user: User) -> Result<User, String> {
    if user.name.is_empty() {
        return Err(String::from("a user needs a name"));
    }
    Ok(user)
}

#[cache_put(key = "name:{id}", codec = Json)]
async fn rename(id: u64, name: String) -> String {
    let _ = id;
    name
}

struct Repo {
    tenant: String,
}

impl Repo {
    #[cache_put(key = "{self.tenant}:count", ttl = "1h", codec = "bincode")]
    async fn count(&self) -> u64 {
        1
    }
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    assert_send(save_user(User {
        id: 1,
        name: String::new(),
    }));
    assert_send(rename(1, String::new()));
    assert_send(
        Repo {
            tenant: String::new(),
        }
        .count(),
    );
}
