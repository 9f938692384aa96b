use redisx::{RedisX, cache_evict};

#[cache_evict(keys = ["user:{id}"], when = "before")]
async fn delete_user(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[cache_evict(keys = ["user:{id}"], when = "before", runtime = rx)]
async fn with_runtime(rx: &RedisX, id: u64) {
    let _ = id;
}

fn main() {
    let _ = delete_user(1);
    let _ = with_runtime;
}
