use redisx::cache_put;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct User {
    id: u64,
    org: String,
}

#[cache_put(key = "user:{user.id}", tags = ["users", "user:{user.id}", "org:{user.org}"], codec = Json)]
async fn save_user(user: User) -> Result<User, String> {
    Ok(user)
}

#[cache_put(key = "count:{org}", ttl = "1m", tags = ["counts"], codec = "json")]
async fn count(org: String) -> u64 {
    u64::from(org.is_empty())
}

fn main() {
    let _ = save_user(User {
        id: 1,
        org: String::new(),
    });
    let _ = count(String::new());
}
