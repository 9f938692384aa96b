#[redisx::test]
fn not_async(rx: redisx::RedisX) {
    let _ = rx;
}

fn main() {}
