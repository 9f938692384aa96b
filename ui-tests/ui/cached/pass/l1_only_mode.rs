// `mode` accepts `"l1_only"` and the variant name `L1Only` (as a path or a string).
use redisx::cached;

#[cached(key = "user:{id}", l1_ttl = "30s", mode = "l1_only")]
async fn user(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[cached(key = "name:{id}", mode = L1Only)]
async fn name(id: u64) -> String {
    id.to_string()
}

#[cached(key = "count:{id}", ttl = "1m", mode = "L1Only")]
async fn count(id: u64) -> u64 {
    id
}

fn main() {
    let _ = user(1);
    let _ = name(1);
    let _ = count(1);
}
