// `runtime` must borrow as a `RedisX`; a `u32` is reported at the expression.
use redisx::cached;

#[cached(key = "user:{id}", runtime = shard)]
async fn user(shard: u32, id: u64) -> u64 {
    id + u64::from(shard)
}

fn main() {
    let _ = user(1, 1);
}
