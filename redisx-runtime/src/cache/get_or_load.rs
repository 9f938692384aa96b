//! The public loading calls: `get_or_load*` (read, or load through the miss path in
//! `load.rs`) and `warmup`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::load::LoadOptions;
use super::stats::trace_l1_hit;
use super::{Cache, Cacheable, EntryOptions};
use crate::error::Error;

/// The result of [`Cache::warmup`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WarmupReport {
    /// Entries now in the cache (loaded, or already present).
    pub warmed: u64,
    /// Entries whose loader failed (or panicked).
    pub failed: u64,
}

impl Cache {
    /// Returns the cached value or runs `loader`, caching its `Ok` value with `ttl` (or the
    /// default ttl), with stampede protection across instances.
    ///
    /// Loader errors pass through untouched (and are not cached); cache errors fail open (the
    /// loader runs and the caller never sees them). The only redisx error `E` can receive is
    /// [`ErrorCode::CacheStampedeTimeout`](crate::ErrorCode::CacheStampedeTimeout), with
    /// [`StampedeFallback::Error`](super::StampedeFallback::Error).
    ///
    /// Callers of one key in one runtime share one load. When it fails, the callers that were
    /// waiting on it get its error too (no second load), if the error is a [`redisx::Error`],
    /// a `String`, a `&'static str` or an `Arc<dyn Error + Send + Sync>`
    /// ([`ErrorSharing::known`](super::ErrorSharing::known)); with any other error type they
    /// take over the load one at a time. [`get_or_load_using`](Self::get_or_load_using) with
    /// [`LoadOptions::share_errors`] shares any `Clone` error. A loader that panics is never
    /// shared: the waiting callers load themselves.
    ///
    /// [`redisx::Error`]: crate::Error
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> Result<(), redisx_runtime::Error> {
    /// use std::time::Duration;
    /// let ttl = Some(Duration::from_secs(60));
    /// let score: u64 = rx
    ///     .cache()
    ///     .get_or_load("user:1:score", ttl, || async { Ok::<_, redisx_runtime::Error>(42) })
    ///     .await?;
    /// assert_eq!(score, 42);
    /// # Ok(()) }
    /// ```
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<T, E>
    where
        T: Cacheable,
        E: From<Error> + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let opts = EntryOptions {
            ttl,
            ..EntryOptions::default()
        };
        self.get_or_load_using(key, LoadOptions::new(&opts).timeout_error(), loader)
            .await
    }

    /// [`get_or_load`](Self::get_or_load) with full options. With an SWR window (here or in
    /// the config), a stale value is returned at once and the loader runs in the background,
    /// so it must be `Send + 'static`.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use std::time::Duration;
    /// use redisx_runtime::cache::EntryOptions;
    /// // Fresh for 60 s, then served stale for 30 s more while one caller refreshes it.
    /// let opts = EntryOptions::new().ttl(Duration::from_secs(60)).swr(Duration::from_secs(30));
    /// let score: u64 = rx
    ///     .cache()
    ///     .get_or_load_with("user:1:score", &opts, || async { Ok::<_, redisx_runtime::Error>(42) })
    ///     .await?;
    /// assert_eq!(score, 42);
    /// # Ok(()) }
    /// ```
    pub async fn get_or_load_with<T, E, F, Fut>(
        &self,
        key: &str,
        opts: &EntryOptions,
        loader: F,
    ) -> Result<T, E>
    where
        T: Cacheable,
        E: From<Error> + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.get_or_load_using_swr(key, LoadOptions::new(opts).timeout_error(), loader)
            .await
    }

    /// [`get_or_load`](Self::get_or_load) with every option `#[cached]` has: the entry's
    /// options, `unless`, the L1 erasure, error sharing and the stampede-timeout error
    /// ([`LoadOptions`]). A stale value is reloaded in the foreground (see
    /// [`get_or_load_using_swr`](Self::get_or_load_using_swr)), so the loader need not be
    /// `Send`.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> Result<(), String> {
    /// use redisx_runtime::cache::{EntryOptions, LoadOptions};
    /// let entry = EntryOptions::new().tags(["search"]);
    /// let hits: Vec<u64> = rx
    ///     .cache()
    ///     .get_or_load_using(
    ///         "search:rust",
    ///         LoadOptions::new(&entry).unless(|v: &Vec<u64>| v.is_empty()).share_errors(),
    ///         || async { Ok::<_, String>(vec![1, 2, 3]) },
    ///     )
    ///     .await?;
    /// assert_eq!(hits.len(), 3);
    /// # Ok(()) }
    /// ```
    pub async fn get_or_load_using<T, E, U, F, Fut>(
        &self,
        key: &str,
        how: LoadOptions<'_, T, E, U>,
        loader: F,
    ) -> Result<T, E>
    where
        T: Cacheable,
        E: 'static,
        U: FnOnce(&T) -> bool,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(v) = self.l1_get::<T>(key, how.entry.mode, how.erasure) {
            trace_l1_hit(self.span_key(key));
            return Ok(v);
        }
        self.load_through(key, how, loader()).await
    }

    /// [`get_or_load_using`](Self::get_or_load_using) with stale-while-revalidate: within the
    /// SWR window (of the entry options or the config) a stale value is returned at once and
    /// the loader refreshes it in the background, so it must be `Send + 'static`.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// use std::time::Duration;
    /// use redisx_runtime::cache::{EntryOptions, LoadOptions};
    /// let entry = EntryOptions::new().swr(Duration::from_secs(30));
    /// let hits: Vec<u64> = rx
    ///     .cache()
    ///     .get_or_load_using_swr(
    ///         "search:rust",
    ///         LoadOptions::new(&entry).unless(|v: &Vec<u64>| v.is_empty()),
    ///         || async { Ok::<_, redisx_runtime::Error>(vec![1, 2, 3]) },
    ///     )
    ///     .await?;
    /// assert_eq!(hits.len(), 3);
    /// # Ok(()) }
    /// ```
    pub async fn get_or_load_using_swr<T, E, U, F, Fut>(
        &self,
        key: &str,
        how: LoadOptions<'_, T, E, U>,
        loader: F,
    ) -> Result<T, E>
    where
        T: Cacheable,
        E: Send + 'static,
        U: FnOnce(&T) -> bool + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        if let Some(v) = self.l1_get::<T>(key, how.entry.mode, how.erasure) {
            trace_l1_hit(self.span_key(key));
            return Ok(v);
        }
        self.load_swr(key, how, loader()).await
    }

    /// Loads `entries` (key and loader) with at most `concurrency` loads at a time, through
    /// the normal path (an entry already cached is not reloaded).
    ///
    /// # Panics
    /// Never: the semaphore it waits on is never closed.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) {
    /// use redisx_runtime::cache::EntryOptions;
    /// async fn load(id: u64) -> Result<String, redisx_runtime::Error> {
    ///     Ok(format!("user {id}"))
    /// }
    /// let entries = (1..=100).map(|id| (format!("user:{id}:name"), move || load(id)));
    /// let report = rx.cache().warmup(entries, &EntryOptions::new(), 8).await;
    /// assert_eq!(report.warmed + report.failed, 100);
    /// # }
    /// ```
    pub async fn warmup<T, E, F, Fut, I>(
        &self,
        entries: I,
        opts: &EntryOptions,
        concurrency: usize,
    ) -> WarmupReport
    where
        T: Cacheable,
        E: From<Error> + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        I: IntoIterator<Item = (String, F)>,
    {
        let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for (key, loader) in entries {
            let cache = self.clone();
            let opts = opts.clone();
            let permit = sem.clone().acquire_owned().await.expect("never closed");
            // The loaders run in the caller's runtime scope, as the caller's own calls would.
            set.spawn(crate::scope::carry(async move {
                let _permit = permit;
                cache.get_or_load_with(&key, &opts, loader).await.is_ok()
            }));
        }
        let mut report = WarmupReport::default();
        while let Some(r) = set.join_next().await {
            if matches!(r, Ok(true)) {
                report.warmed += 1;
            } else {
                report.failed += 1;
            }
        }
        report
    }
}
