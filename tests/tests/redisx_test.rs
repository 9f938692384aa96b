//! `#[redisx::test]` and `redisx::testing::run`: a runtime per test on a key prefix of its
//! own, in scope for the body, its keys deleted afterwards (also after a panic).

use std::sync::atomic::{AtomicUsize, Ordering};

use redisx::testing::{self, TestOptions, raw_connection};
use redisx::{CacheConfig, CacheMode, RedisX, RedisXBuilder, cached};

static LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "user:{id}", ttl = "1m")]
async fn user(id: u64) -> String {
    LOADS.fetch_add(1, Ordering::SeqCst);
    format!("user-{id}")
}

/// Every key on the server of `rx`'s client.
async fn all_keys(rx: &RedisX) -> Vec<String> {
    rx.client()
        .query(redis::cmd("KEYS").arg("*"))
        .await
        .unwrap()
}

/// One of ten tests that run in parallel on the same server: each writes the same keys under
/// its own prefix and must see only its own.
async fn isolated(rx: RedisX, n: u64) {
    assert_eq!(user(n).await, format!("user-{n}"));
    assert_eq!(user(n).await, format!("user-{n}"));
    assert_eq!(
        rx.cache().stats().l1_hits,
        1,
        "the second call hits, in this test's runtime"
    );
    rx.cache().set("shared", &n, None).await.unwrap();
    tokio::task::yield_now().await;
    assert_eq!(rx.cache().get::<u64>("shared").await.unwrap(), Some(n));
    let mine: Vec<String> = all_keys(&rx)
        .await
        .into_iter()
        .filter(|k| k.starts_with(rx.key_prefix()))
        .collect();
    let own = rx.cache().full_key(&format!("user:{n}"));
    assert!(mine.contains(&own), "{own} in {mine:?}");
    let users: Vec<&String> = mine.iter().filter(|k| k.contains("user:")).collect();
    assert_eq!(users, [&own], "only this test's user");
}

#[redisx::test]
async fn parallel_0(rx: RedisX) {
    isolated(rx, 0).await;
}
#[redisx::test]
async fn parallel_1(rx: RedisX) {
    isolated(rx, 1).await;
}
#[redisx::test]
async fn parallel_2(rx: RedisX) {
    isolated(rx, 2).await;
}
#[redisx::test]
async fn parallel_3(rx: RedisX) {
    isolated(rx, 3).await;
}
#[redisx::test]
async fn parallel_4(rx: RedisX) {
    isolated(rx, 4).await;
}
#[redisx::test]
async fn parallel_5(rx: RedisX) {
    isolated(rx, 5).await;
}
#[redisx::test]
async fn parallel_6(rx: RedisX) {
    isolated(rx, 6).await;
}
#[redisx::test]
async fn parallel_7(rx: RedisX) {
    isolated(rx, 7).await;
}
#[redisx::test]
async fn parallel_8(rx: RedisX) {
    isolated(rx, 8).await;
}
#[redisx::test]
async fn parallel_9(rx: RedisX) {
    isolated(rx, 9).await;
}

fn l1_only(builder: RedisXBuilder) -> RedisXBuilder {
    builder.cache(CacheConfig::default().mode(CacheMode::L1Only))
}

#[redisx::test(config = l1_only)]
async fn config_customises_the_runtime(rx: RedisX) {
    assert_eq!(rx.cache().config().mode_value(), CacheMode::L1Only);
    assert!(
        rx.key_prefix()
            .starts_with("redisx-test:config_customises_the_runtime:")
    );
}

#[redisx::test]
async fn a_test_may_return_a_result() -> Result<(), redisx::Error> {
    let rx = RedisX::current().expect("the test's runtime is in scope");
    rx.cache().set("k", &1u8, None).await?;
    Ok(())
}

#[redisx::test]
#[should_panic(expected = "the body's own message")]
async fn a_panicking_body_fails_the_test_with_its_message() {
    panic!("the body's own message");
}

/// The keys of a test are gone once `run` returned: checked from outside, on the server
/// `run` used (the `REDISX_TEST_URL` one or the binary's own), by prefix.
#[tokio::test]
async fn run_deletes_the_test_keys_afterwards_also_after_a_panic() {
    for panics in [false, true] {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let record = seen.clone();
        let body = testing::run(TestOptions::new("cleanup"), move |rx| async move {
            rx.cache().set("a", &1u8, None).await.unwrap();
            let tagged = redisx::cache::EntryOptions::new().tags(["t"]);
            rx.cache().set_with("b", &2u8, &tagged).await.unwrap();
            let mine = all_keys(&rx)
                .await
                .into_iter()
                .filter(|k| k.starts_with(rx.key_prefix()))
                .count();
            assert!(mine >= 3, "two entries and a tag index: {mine}");
            record.lock().unwrap().push_str(rx.key_prefix());
            assert!(!panics, "the body panics");
        });
        let outcome = tokio::spawn(body).await;
        assert_eq!(outcome.is_err(), panics);
        if let Err(e) = outcome {
            let payload = e.into_panic();
            assert_eq!(
                payload.downcast_ref::<&str>(),
                Some(&"the body panics"),
                "re-raised as is"
            );
        }
        let prefix = seen.lock().unwrap().clone();
        assert!(prefix.starts_with("redisx-test:cleanup:"), "{prefix}");
        let mut conn = raw_connection(&testing::server_url()).await;
        let left: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

/// `keep_keys = true` leaves them for a look.
#[tokio::test]
async fn keep_keys_leaves_the_keys() {
    let prefix = testing::run(TestOptions::new("kept").keep_keys(true), |rx| async move {
        rx.cache().set("a", &1u8, None).await.unwrap();
        rx.key_prefix().to_owned()
    })
    .await;
    let mut conn = raw_connection(&testing::server_url()).await;
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    let _: () = redis::cmd("DEL")
        .arg(&left)
        .query_async(&mut conn)
        .await
        .unwrap();
}
