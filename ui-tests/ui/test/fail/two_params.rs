#[redisx::test]
async fn two(rx: redisx::RedisX, other: redisx::RedisX) {
    let _ = (rx, other);
}

fn main() {}
