use redisx::{CacheConfig, CacheMode, RedisX, RedisXBuilder, cached};

#[cached(key = "user:{id}", ttl = "5m")]
async fn user(id: u64) -> String {
    format!("user-{id}")
}

#[redisx::test]
async fn takes_the_runtime(rx: RedisX) {
    assert_eq!(user(1).await, "user-1");
    assert!(rx.cache().stats().loads <= 1);
}

#[redisx::test]
async fn takes_nothing() {
    assert!(RedisX::current().is_some());
}

fn l1_only(builder: RedisXBuilder) -> RedisXBuilder {
    builder.cache(CacheConfig::default().mode(CacheMode::L1Only))
}

/// Doc comments and other attributes stay on the test.
#[redisx::test(config = l1_only, keep_keys = true)]
#[ignore = "shows the arguments"]
async fn returns_a_result(rx: redisx::RedisX) -> Result<(), redisx::Error> {
    rx.cache().set("k", &1u8, None).await?;
    Ok(())
}

fn main() {}
