// `runtime` must borrow as a `RedisX`; a `u32` is reported at the expression.
use redisx::cache_put;

#[cache_put(key = "user:{id}", runtime = shard)]
async fn save_user(shard: u32, id: u64) -> u64 {
    id + u64::from(shard)
}

fn main() {
    let _ = save_user(1, 1);
}
