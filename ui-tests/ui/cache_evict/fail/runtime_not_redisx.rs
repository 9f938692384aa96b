// `runtime` must borrow as a `RedisX`; a `u32` is reported at the expression.
use redisx::cache_evict;

#[cache_evict(keys = ["user:{id}"], runtime = shard)]
async fn delete_user(shard: u32, id: u64) {
    let _ = (shard, id);
}

fn main() {
    let _ = delete_user(1, 1);
}
