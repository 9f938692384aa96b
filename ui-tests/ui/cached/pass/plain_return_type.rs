// Non-`Result` return types cache every value (`run`); `Result` aliases use `run_result`.
use redisx::cached;
use std::collections::HashMap;

#[cached(key = "map:{id}")]
async fn map(id: u64) -> HashMap<String, u64> {
    HashMap::from([(String::from("id"), id)])
}

#[cached(key = "option:{id}")]
async fn option(id: u64) -> Option<u64> {
    if id == 0 {
        return None;
    }
    Some(id)
}

#[cached(key = "unit:{id}")]
async fn unit(id: u64) {
    let _ = id;
}

#[cached(key = "alias:{id}")]
async fn alias(id: u64) -> std::io::Result<u64> {
    let n: u64 = "7".parse().map_err(std::io::Error::other)?;
    Ok(id + n)
}

fn main() {
    let _ = (map(1), option(1), unit(1), alias(1));
}
