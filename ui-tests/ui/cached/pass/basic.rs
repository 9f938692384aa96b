#![deny(warnings)]

use redisx::cached;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

#[derive(Debug)]
struct AppError;

#[cached(key = "user:{id}", ttl = "5m")]
async fn user(id: u64) -> Result<User, AppError> {
    if id == 0 {
        return Err(AppError);
    }
    Ok(User {
        id,
        name: String::from("Ada"),
    })
}

#[cached(key = "{{literal}}:{id}", ttl = "150ms", l1_ttl = "100ms")]
async fn braces(id: u32) -> Result<u32, AppError> {
    Ok(id)
}

#[cached(key = "count", ttl = "1d")]
pub async fn count() -> Result<u64, std::io::Error> {
    Ok(1)
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    assert_send(user(1));
    assert_send(braces(2));
    assert_send(count());
}
