// Bodies that never reach their end compile without warnings.
#![deny(warnings)]

use redisx::cached;

#[cached(key = "todo:{id}")]
pub async fn unfinished(id: u64) -> u64 {
    let _ = id;
    todo!()
}

#[cached(key = "retry:{id}")]
pub async fn retry(id: u64) -> Result<u64, String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        if attempt > 3 {
            return Err(String::from("gave up"));
        }
        if id % attempt == 0 {
            return Ok(attempt);
        }
    }
}

#[cached(key = "early:{id}")]
pub async fn early(id: u64) -> u64 {
    return id;
}

fn main() {
    let _ = unfinished(1);
    let _ = retry(1);
    let _ = early(1);
}
