//! Stale-while-revalidate: a stale value inside its window is served at once, and one caller
//! across all instances refreshes it in the background, through the normal write path.

use std::future::Future;

use super::envelope::HEADER_LEN;
use super::l1::Erasure;
use super::load::{Fetched, LoadOptions, describe_error};
use super::stampede::LockGuard;
use super::stats::{Op, bump};
use super::{Cache, Cacheable, EntryOptions};

impl Cache {
    /// `get_or_load` with an SWR refresh in the background.
    pub(crate) async fn load_swr<T, E, U, Fut>(
        &self,
        key: &str,
        how: LoadOptions<'_, T, E, U>,
        loader: Fut,
    ) -> Result<T, E>
    where
        T: Cacheable,
        E: Send + 'static,
        U: FnOnce(&T) -> bool + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        // `unless` is needed by the fetch and, for a stale hit, by the refresh: share it.
        let (entry, erasure) = (how.entry, how.erasure);
        let unless = std::sync::Mutex::new(Some(how.unless));
        let take = || unless.lock().ok().and_then(|mut u| u.take());
        let first = |v: &T| take().is_some_and(|f| f(v));
        let how = LoadOptions {
            entry,
            unless: first,
            erasure,
            errors: how.errors,
            timeout_error: how.timeout_error,
        };
        match self.fetch(key, how, loader, true).await {
            Fetched::Done(r) => r,
            Fetched::Refused(e) => Err(e),
            Fetched::Stale {
                value,
                loader,
                header,
            } => {
                let refresh = Refresh {
                    entry: entry.clone(),
                    unless: take(),
                    erasure,
                    header,
                };
                self.spawn_refresh(key.to_owned(), refresh, loader);
                Ok(value)
            }
        }
    }

    fn spawn_refresh<T, E, U, Fut>(&self, key: String, refresh: Refresh<T, U>, loader: Fut)
    where
        T: Cacheable,
        E: Send + 'static,
        U: FnOnce(&T) -> bool + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let Some(client) = self.inner.client.clone() else {
            return;
        };
        let cache = self.clone();
        // In the caller's runtime scope: the loader's own cached calls resolve as the
        // caller's would.
        tokio::spawn(crate::scope::carry(async move {
            let Ok(call) = cache.call(&key, &refresh.entry) else {
                return;
            };
            let lock = match cache.take_refresh_lock(&client, &key, refresh.header).await {
                Ok(Some(lock)) => lock,
                Ok(None) => return, // another instance is refreshing
                Err(e) => return cache.fail_open(Op::Write, "refresh", &key, &e),
            };
            let mut guard = LockGuard::new(&cache, &key, lock);
            // Another instance may have refreshed (and released the lock) between our read
            // and our lock: refresh only the entry we saw stale.
            let full = call.full().unwrap_or_default();
            let now = cache.read_header(&client, full).await;
            if !matches!(&now, Ok(h) if h[..] == refresh.header[..]) {
                return; // the guard releases the lock
            }
            bump(&cache.inner.counters.refreshes);
            // A refresh nobody awaits must not run for ever: it is abandoned (and its lock
            // given back) when its lock would have lapsed without renewals.
            let stampede = &cache.inner.cfg.stampede;
            let budget = stampede.wait_timeout + stampede.lock_ttl;
            let Ok(outcome) =
                tokio::time::timeout(budget, cache.hold(None, &guard.lock, loader)).await
            else {
                cache.inner.metrics.load(false);
                tracing::warn!(target: "redisx::cache",
                    key,
                    ?budget,
                    "background refresh abandoned: its loader did not finish in time; the stale value stays until its window ends"
                );
                return;
            };
            cache.inner.metrics.load(outcome.is_ok());
            match outcome {
                Ok(v) => {
                    if refresh.unless.is_some_and(|u| u(&v)) {
                        return; // the guard releases the lock
                    }
                    // The write's pipeline releases the refresh lock whether it stores or not.
                    cache
                        .store_loaded("refresh write", &call, &v, &mut guard, refresh.erasure)
                        .await;
                }
                Err(e) => {
                    tracing::warn!(target: "redisx::cache",
                        key,
                        error = %describe_error(&e),
                        error_type = std::any::type_name::<E>(),
                        "background refresh failed; the stale value stays until its window ends"
                    );
                }
            }
        }));
    }
}

/// What a background refresh takes along: the entry's options, the caller's `unless`, the
/// L1 erasure, and the stale entry's header (its write only lands while the entry still
/// starts with it).
struct Refresh<T, U> {
    entry: EntryOptions,
    unless: Option<U>,
    erasure: Erasure<T>,
    header: [u8; HEADER_LEN],
}
