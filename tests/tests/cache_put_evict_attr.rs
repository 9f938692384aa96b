//! `#[cache_evict]` and `#[cache_put]` end to end against real Redis, with the `#[cached]`
//! readers whose entries they evict or overwrite.
//!
//! Every test runs on a standalone server and on the 3-master cluster. The functions below name
//! no runtime and use the test's, in scope for its body (what `#[redisx::test]` gives, on the
//! test's topology: a fresh runtime on a key prefix of its own, whose keys are deleted
//! afterwards). Loader calls are counted with an `AtomicUsize` per function; the standalone and
//! cluster tests of a body take turns with them.

use std::sync::atomic::{AtomicUsize, Ordering};

use redisx::testing::{self, Deployment, TestOptions, Topology};
use redisx::{cache_evict, cache_put, cached};
use redisx_tests::Turn;

fn loads(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

mod tags_and_evict {
    use super::*;

    static LOADS: AtomicUsize = AtomicUsize::new(0);
    static TURN: Turn = Turn::new();

    #[cached(key = "user:{id}", ttl = "1m", tags = ["users", "user:{id}"])]
    async fn user(id: u64) -> String {
        LOADS.fetch_add(1, Ordering::SeqCst);
        format!("user-{id}")
    }

    #[cache_evict(tags = ["user:{id}"])]
    async fn touch_user(id: u64) {
        let _ = id;
    }

    #[cache_evict(tags = ["users"])]
    async fn reset_users() {}

    /// Evicts by key, only after `Ok`.
    #[cache_evict(keys = ["user:{id}"])]
    async fn delete_user(id: u64) -> Result<(), String> {
        if id == 0 {
            return Err("user 0 cannot be deleted".to_owned());
        }
        Ok(())
    }

    async fn read_all(ids: &[u64]) {
        for id in ids {
            assert_eq!(user(*id).await, format!("user-{id}"));
        }
    }

    async fn evicting_a_tag_or_key_makes_the_next_call_a_miss(topology: Topology) {
        let _turn = TURN.take(&[&LOADS]).await;
        testing::run_on(
            &Deployment::start(topology),
            TestOptions::new("tags_and_evict"),
            |_| async {
                read_all(&[0, 1, 2]).await;
                read_all(&[0, 1, 2]).await;
                assert_eq!(loads(&LOADS), 3);

                touch_user(1).await;
                read_all(&[0, 1, 2]).await;
                assert_eq!(loads(&LOADS), 4, "only user 1 carried the tag `user:1`");

                reset_users().await;
                read_all(&[0, 1, 2]).await;
                assert_eq!(loads(&LOADS), 7, "every entry carried the tag `users`");

                delete_user(2).await.unwrap();
                read_all(&[0, 1, 2]).await;
                assert_eq!(loads(&LOADS), 8, "the key of user 2 was deleted");

                assert!(delete_user(0).await.is_err());
                read_all(&[0, 1, 2]).await;
                assert_eq!(loads(&LOADS), 8, "an Err does not evict");
            },
        )
        .await;
    }

    redisx_tests::on_topologies!(evicting_a_tag_or_key_makes_the_next_call_a_miss);
}

mod put_overwrites {
    use super::*;

    static LOADS: AtomicUsize = AtomicUsize::new(0);
    static TURN: Turn = Turn::new();

    #[cached(key = "name:{id}", ttl = "1m")]
    async fn name(id: u64) -> String {
        LOADS.fetch_add(1, Ordering::SeqCst);
        format!("loaded-{id}")
    }

    #[cache_put(key = "name:{id}", ttl = "1m")]
    async fn rename(id: u64, new_name: String) -> String {
        let _ = id;
        new_name
    }

    /// Writes only an `Ok`.
    #[cache_put(key = "name:{id}", ttl = "1m")]
    async fn try_rename(id: u64, new_name: String) -> Result<String, String> {
        let _ = id;
        if new_name.is_empty() {
            return Err("a name cannot be empty".to_owned());
        }
        Ok(new_name)
    }

    async fn cache_put_overwrites_what_cached_reads(topology: Topology) {
        let _turn = TURN.take(&[&LOADS]).await;
        testing::run_on(
            &Deployment::start(topology),
            TestOptions::new("put_overwrites"),
            |rx| async move {
                assert_eq!(name(1).await, "loaded-1");
                assert_eq!(rename(1, "Ada".to_owned()).await, "Ada");
                assert_eq!(name(1).await, "Ada", "the put value replaced L1");
                rx.cache().clear_l1();
                assert_eq!(name(1).await, "Ada", "and L2");
                assert!(try_rename(1, String::new()).await.is_err());
                assert_eq!(name(1).await, "Ada", "an Err is not written");
                assert_eq!(try_rename(1, "Grace".to_owned()).await.unwrap(), "Grace");
                assert_eq!(name(1).await, "Grace");
                // A put for a key nobody read yet fills it.
                assert_eq!(rename(2, "Edsger".to_owned()).await, "Edsger");
                assert_eq!(name(2).await, "Edsger");
                assert_eq!(loads(&LOADS), 1, "only the first read ran the function");
            },
        )
        .await;
    }

    redisx_tests::on_topologies!(cache_put_overwrites_what_cached_reads);
}
