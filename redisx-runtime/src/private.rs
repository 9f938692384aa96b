//! What the attribute macros expand to. **Not a stable API**: everything here may change in
//! any release; use the documented runtime calls (`rx.cache().get_or_load(..)`, ...) instead.
//!
//! Every attribute is sugar over a public runtime call; these functions only adapt the
//! arguments the macros pass (a rendered key, per-call options) to those calls.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

pub use crate::cache::CacheMode;
pub use crate::cache::Erasure;
use crate::cache::l1::KeyBuf;
use crate::cache::{Cache, Cacheable, EntryOptions};
pub use crate::codec::CodecKind;
pub use crate::runtime::RedisX;

/// The compile-time options of one `#[cached]` / `#[cache_put]` call site.
#[derive(Debug)]
pub struct CachedSpec {
    name: &'static str,
    ttl_ms: u64,
    l1_ttl_ms: u64,
    swr_ms: u64,
    stale_if_error_ms: u64,
    mode: Option<CacheMode>,
    codec: Option<CodecKind>,
    /// Set once this call site has warned that its ttl exceeds the cache's `max_ttl`.
    warned: AtomicBool,
}

impl CachedSpec {
    /// A spec for the function `name` with every option at the cache's default.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            ttl_ms: 0,
            l1_ttl_ms: 0,
            swr_ms: 0,
            stale_if_error_ms: 0,
            mode: None,
            codec: None,
            warned: AtomicBool::new(false),
        }
    }

    /// The ttl in milliseconds.
    #[must_use]
    pub const fn ttl_ms(mut self, ms: u64) -> Self {
        self.ttl_ms = ms;
        self
    }

    /// The L1 ttl in milliseconds.
    #[must_use]
    pub const fn l1_ttl_ms(mut self, ms: u64) -> Self {
        self.l1_ttl_ms = ms;
        self
    }

    /// The stale-while-revalidate window in milliseconds.
    #[must_use]
    pub const fn swr_ms(mut self, ms: u64) -> Self {
        self.swr_ms = ms;
        self
    }

    /// The stale-if-error window in milliseconds.
    #[must_use]
    pub const fn stale_if_error_ms(mut self, ms: u64) -> Self {
        self.stale_if_error_ms = ms;
        self
    }

    /// The tiers this call site uses.
    #[must_use]
    pub const fn mode(mut self, mode: CacheMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// The codec of this call site.
    #[must_use]
    pub const fn codec(mut self, codec: CodecKind) -> Self {
        self.codec = Some(codec);
        self
    }

    /// The function name given to [`CachedSpec::new`].
    pub const fn name(&self) -> &'static str {
        self.name
    }

    fn options(&self, tags: Vec<String>) -> EntryOptions {
        let ms = |v: u64| (v > 0).then(|| Duration::from_millis(v));
        let mut o = EntryOptions::new();
        o.ttl = ms(self.ttl_ms);
        o.l1_ttl = ms(self.l1_ttl_ms);
        o.swr = ms(self.swr_ms);
        o.stale_if_error = ms(self.stale_if_error_ms);
        o.mode = self.mode;
        o.codec = self.codec;
        o.tags = tags;
        o
    }
}

/// Picks the L1 [`Erasure`] of a call site's value type by autoref specialization: the macro
/// expands `(&&ErasureProbe::<T>::new()).erasure()` with [`ProbeArc`] and [`ProbeAny`] in
/// scope; an `Arc<U>` finds [`ProbeArc`] first and is stored as the `Arc` itself.
pub struct ErasureProbe<T>(std::marker::PhantomData<fn() -> T>);

impl<T> ErasureProbe<T> {
    /// The probe of `T`.
    pub const fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T> Default for ErasureProbe<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The probe's choice for `Arc<U>` values.
pub trait ProbeArc {
    /// The value type.
    type Value;
    /// The erasure for that value type.
    fn erasure(&self) -> Erasure<Self::Value>;
}

impl<U: Send + Sync + 'static> ProbeArc for &ErasureProbe<std::sync::Arc<U>> {
    type Value = std::sync::Arc<U>;
    fn erasure(&self) -> Erasure<Self::Value> {
        Erasure::arc()
    }
}

/// The probe's choice for every other value type.
pub trait ProbeAny {
    /// The value type.
    type Value;
    /// The erasure for that value type.
    fn erasure(&self) -> Erasure<Self::Value>;
}

impl<T: Clone + Send + Sync + 'static> ProbeAny for ErasureProbe<T> {
    type Value = T;
    fn erasure(&self) -> Erasure<T> {
        Erasure::boxed()
    }
}

/// The default `unless`: cache every value.
pub fn never<T: ?Sized>(_: &T) -> bool {
    false
}

/// A stable hash of the serialized arguments, for keys of `#[cached]` without `key`.
///
/// `None` when the arguments fail to serialize (e.g. a `#[serde(flatten)]` field, which
/// bincode cannot encode): the expansion then runs the call uncached, so that calls with
/// different arguments can never share a key (and each other's values). The first such
/// failure is logged as a warning, later ones at debug.
pub fn args_hash<A: Serialize + ?Sized>(args: &A) -> Option<u64> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    crate::key::hash_args(args)
        .inspect_err(|e| {
            if WARNED.swap(true, Ordering::Relaxed) {
                tracing::debug!(error = %e, "cannot hash the arguments of a #[cached] function; it runs uncached");
            } else {
                tracing::warn!(error = %e, "cannot hash the arguments of a #[cached] function; it runs uncached (give it a `key` template)");
            }
        })
        .ok()
}

static WARNED_NO_RUNTIME: AtomicBool = AtomicBool::new(false);

fn resolve(runtime: Option<&RedisX>) -> Option<&RedisX> {
    if let Some(rt) = runtime {
        Some(rt)
    } else {
        let global = RedisX::global_ref();
        if global.is_none() && !WARNED_NO_RUNTIME.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "no redisx runtime is installed (call `rx.install()` at startup or pass `runtime = ...`); cached functions run uncached"
            );
        }
        global
    }
}

fn render_tags(tags: &[fmt::Arguments<'_>]) -> Vec<String> {
    tags.iter().map(|t| fmt::format(*t)).collect()
}

enum State<T> {
    Hit(T),
    Bypass,
    Miss {
        cache: Cache,
        key: String,
        opts: EntryOptions,
        erasure: Erasure<T>,
    },
}

/// A `#[cached]` call after its synchronous L1 probe; see [`cached`].
pub struct CachedCall<T> {
    state: State<T>,
}

/// The synchronous half of `#[cached]`: resolves the runtime, renders the key without
/// allocating and probes L1. The returned call owns everything it needs (no borrow of the
/// arguments), so the caller's future stays `Send`.
#[inline]
pub fn cached<T: Cacheable>(
    spec: &'static CachedSpec,
    runtime: Option<&RedisX>,
    enabled: bool,
    key: fmt::Arguments<'_>,
    tags: &[fmt::Arguments<'_>],
    erasure: Erasure<T>,
) -> CachedCall<T> {
    if !enabled {
        return CachedCall {
            state: State::Bypass,
        };
    }
    let Some(rt) = resolve(runtime).filter(|rt| !rt.is_shut_down()) else {
        return CachedCall {
            state: State::Bypass,
        };
    };
    // The macro rejects a ttl over 24 h; a cache configured with a smaller `max_ttl` can only
    // be checked here. Such a call site runs uncached and says so once, not on every call.
    let cache = rt.cache();
    let max_ttl = cache.config().max_ttl;
    if spec.ttl_ms > 0 && Duration::from_millis(spec.ttl_ms) > max_ttl {
        if !spec.warned.swap(true, Ordering::Relaxed) {
            tracing::error!(
                function = spec.name,
                ttl = ?Duration::from_millis(spec.ttl_ms),
                ?max_ttl,
                "the ttl of this #[cached] function exceeds the cache's max_ttl: it runs uncached (lower its ttl or raise CacheConfig::max_ttl)"
            );
        }
        return CachedCall {
            state: State::Bypass,
        };
    }
    let buf = KeyBuf::render(key);
    let key = buf.as_str();
    if let Some(v) = cache.l1_get::<T>(key, spec.mode, erasure) {
        crate::cache::trace_l1_hit(key);
        return CachedCall {
            state: State::Hit(v),
        };
    }
    CachedCall {
        state: State::Miss {
            cache: cache.clone(),
            key: buf.into_string(),
            opts: spec.options(render_tags(tags)),
            erasure,
        },
    }
}

fn infallible<T>(r: Result<T, std::convert::Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

impl<T: Cacheable> CachedCall<T> {
    /// Runs a function whose every return value is cached.
    pub async fn run<F>(self, body: F, unless: impl FnOnce(&T) -> bool) -> T
    where
        F: Future<Output = T>,
    {
        match self.state {
            State::Hit(v) => v,
            State::Bypass => body.await,
            State::Miss {
                cache,
                key,
                opts,
                erasure,
            } => infallible(
                cache
                    .load_through(
                        &key,
                        &opts,
                        async { Ok(body.await) },
                        unless,
                        |_| None,
                        erasure,
                    )
                    .await,
            ),
        }
    }

    /// Runs a function returning `Result`: only `Ok` values are cached; errors pass through.
    pub async fn run_result<E, F>(self, body: F, unless: impl FnOnce(&T) -> bool) -> Result<T, E>
    where
        E: 'static,
        F: Future<Output = Result<T, E>>,
    {
        match self.state {
            State::Hit(v) => Ok(v),
            State::Bypass => body.await,
            State::Miss {
                cache,
                key,
                opts,
                erasure,
            } => {
                cache
                    .load_through(&key, &opts, body, unless, |_| None, erasure)
                    .await
            }
        }
    }

    /// [`run`](Self::run) with stale-while-revalidate: the body may run in the background,
    /// so it must be `Send + 'static`.
    pub async fn run_swr<F>(self, body: F, unless: impl FnOnce(&T) -> bool + Send + 'static) -> T
    where
        F: Future<Output = T> + Send + 'static,
    {
        match self.state {
            State::Hit(v) => v,
            State::Bypass => body.await,
            State::Miss {
                cache,
                key,
                opts,
                erasure,
            } => infallible(
                cache
                    .load_swr(
                        &key,
                        &opts,
                        async { Ok(body.await) },
                        unless,
                        |_| None,
                        erasure,
                    )
                    .await,
            ),
        }
    }

    /// [`run_result`](Self::run_result) with stale-while-revalidate: the body may run in the
    /// background, so it must be `Send + 'static`.
    pub async fn run_result_swr<E, F>(
        self,
        body: F,
        unless: impl FnOnce(&T) -> bool + Send + 'static,
    ) -> Result<T, E>
    where
        E: Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        match self.state {
            State::Hit(v) => Ok(v),
            State::Bypass => body.await,
            State::Miss {
                cache,
                key,
                opts,
                erasure,
            } => {
                cache
                    .load_swr(&key, &opts, body, unless, |_| None, erasure)
                    .await
            }
        }
    }
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
) -> EvictCall {
    EvictCall {
        cache: resolve(runtime).map(|rt| rt.cache().clone()),
        when,
        keys: render_tags(keys),
        tags: render_tags(tags),
    }
}

impl EvictCall {
    async fn evict(&self) {
        let Some(cache) = &self.cache else { return };
        if !self.keys.is_empty()
            && let Err(e) = cache.delete_many(&self.keys).await
        {
            tracing::warn!(keys = ?self.keys, error = %e, "#[cache_evict] could not delete keys");
        }
        if !self.tags.is_empty()
            && let Err(e) = cache.invalidate_tags(&self.tags).await
        {
            tracing::warn!(tags = ?self.tags, error = %e, "#[cache_evict] could not invalidate tags");
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
    _value: std::marker::PhantomData<fn() -> T>,
}

/// The synchronous half of `#[cache_put]`: renders the key and tags.
pub fn cache_put<T>(
    spec: &'static CachedSpec,
    runtime: Option<&RedisX>,
    key: fmt::Arguments<'_>,
    tags: &[fmt::Arguments<'_>],
) -> PutCall<T> {
    PutCall {
        target: resolve(runtime).map(|rt| {
            (
                rt.cache().clone(),
                fmt::format(key),
                spec.options(render_tags(tags)),
            )
        }),
        _value: std::marker::PhantomData,
    }
}

impl<T> PutCall<T>
where
    T: Serialize + Clone + Send + Sync + 'static,
{
    async fn put(&self, value: &T) {
        if let Some((cache, key, opts)) = &self.target
            && let Err(e) = cache.set_with(key, value, opts).await
        {
            tracing::warn!(key, error = %e, "#[cache_put] could not write the value");
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
