//! What `#[cache_evict]` and `#[cache_put]` expand to: the cache's writing attributes, beside
//! `#[cached]`'s call site in the parent module.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;

use serde::Serialize;

use super::{CachedSpec, NO_RUNTIME};
use crate::cache::{Cache, EntryOptions};
use crate::call_site;
use crate::context;
use crate::runtime::RedisX;

/// Whether `e` was already reported (a gone runtime is reported once, when found).
fn reported(e: &crate::Error) -> bool {
    e.code() == crate::ErrorCode::ConfigRuntimeGone
}

/// When `#[cache_evict]` evicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictWhen {
    /// Before the body runs.
    Before,
    /// After the body returned (for `Result`, only after `Ok`).
    After,
}

/// A `#[cache_evict]` call; see [`cache_evict`].
pub struct EvictCall {
    cache: Option<Cache>,
    when: EvictWhen,
    keys: Vec<String>,
    tags: Vec<String>,
}

/// The synchronous half of `#[cache_evict]`: renders the keys and tags.
pub fn cache_evict(
    runtime: Option<&RedisX>,
    when: EvictWhen,
    keys: &[fmt::Arguments<'_>],
    tags: &[fmt::Arguments<'_>],
    vary_by: &'static [&'static str],
) -> EvictCall {
    let cache = call_site::with_runtime(runtime, &NO_RUNTIME, |rt| rt.map(|rt| rt.cache().clone()));
    let varied = context::vary_rendered(call_site::render(keys), vary_by).and_then(|keys| {
        Ok((
            keys,
            context::vary_rendered(call_site::render(tags), vary_by)?,
        ))
    });
    match varied {
        Ok((keys, tags)) => EvictCall {
            cache,
            when,
            keys,
            tags,
        },
        Err(e) => {
            tracing::error!(target: "redisx::cache", error = %format_args!("{e:#}"), "#[cache_evict] cannot vary its keys by the task's context: nothing is evicted (enter the context with Context::scope)");
            EvictCall {
                cache: None,
                when,
                keys: Vec::new(),
                tags: Vec::new(),
            }
        }
    }
}

impl EvictCall {
    async fn evict(&self) {
        let Some(cache) = &self.cache else { return };
        if !self.keys.is_empty()
            && let Err(e) = cache.delete_many(&self.keys).await
            && !reported(&e)
        {
            tracing::warn!(target: "redisx::cache", keys = ?self.keys, error = %format_args!("{e:#}"), "#[cache_evict] could not delete keys");
        }
        if !self.tags.is_empty()
            && let Err(e) = cache.invalidate_tags(&self.tags).await
            && !reported(&e)
        {
            tracing::warn!(target: "redisx::cache", tags = ?self.tags, error = %format_args!("{e:#}"), "#[cache_evict] could not invalidate tags");
        }
    }

    /// Runs a function with any return type (`After`: evicts once it returned).
    pub async fn run<F: Future>(self, body: F) -> F::Output {
        if self.when == EvictWhen::Before {
            self.evict().await;
            return body.await;
        }
        let out = body.await;
        self.evict().await;
        out
    }

    /// Runs a function returning `Result` (`After`: evicts only after `Ok`).
    pub async fn run_result<T, E, F>(self, body: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        if self.when == EvictWhen::Before {
            self.evict().await;
            return body.await;
        }
        let out = body.await;
        if out.is_ok() {
            self.evict().await;
        }
        out
    }
}

/// A `#[cache_put]` call; see [`cache_put`].
pub struct PutCall<T> {
    target: Option<(Cache, String, EntryOptions)>,
    _value: PhantomData<fn() -> T>,
}

/// The synchronous half of `#[cache_put]`: renders the key and tags.
pub fn cache_put<T>(
    spec: &'static CachedSpec,
    runtime: Option<&RedisX>,
    key: fmt::Arguments<'_>,
    tags: &[fmt::Arguments<'_>],
) -> PutCall<T> {
    PutCall {
        target: call_site::with_runtime(runtime, &NO_RUNTIME, |rt| {
            let rt = rt?;
            let what = "this #[cache_put] function's key cannot vary by the task's context: its value is not written (enter the context with Context::scope)";
            let key = spec.vary_key(fmt::format(key), what)?;
            let tags = spec.vary(call_site::render(tags), what)?;
            Some((rt.cache().clone(), key, spec.options(tags)))
        }),
        _value: PhantomData,
    }
}

impl<T> PutCall<T>
where
    T: Serialize + Clone + Send + Sync + 'static,
{
    async fn put(&self, value: &T) {
        if let Some((cache, key, opts)) = &self.target
            && let Err(e) = cache.set_with(key, value, opts).await
            && !reported(&e)
        {
            tracing::warn!(target: "redisx::cache", key, error = %format_args!("{e:#}"), "#[cache_put] could not write the value");
        }
    }

    /// Runs the body and writes its value.
    pub async fn run<F: Future<Output = T>>(self, body: F) -> T {
        let v = body.await;
        self.put(&v).await;
        v
    }

    /// Runs the body and writes its `Ok` value.
    pub async fn run_result<E, F: Future<Output = Result<T, E>>>(self, body: F) -> Result<T, E> {
        let v = body.await;
        if let Ok(v) = &v {
            self.put(v).await;
        }
        v
    }
}
