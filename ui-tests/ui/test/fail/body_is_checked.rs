// The body is compiled as a normal item too, so a mistake in it is reported even outside
// `cargo test`.
#[redisx::test]
async fn wrong_type(rx: redisx::RedisX) {
    let prefix: u64 = rx.key_prefix();
    let _ = prefix;
}

fn main() {}
