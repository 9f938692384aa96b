//! What `#[cached]`, `#[cache_evict]` and `#[cache_put]` expand to (re-exported, unstable, as
//! `redisx::__private`). Each adapts the attribute's arguments to a public call:
//! [`Cache::get_or_load_using`] (`_swr`), [`Cache::delete_many`] and
//! [`Cache::invalidate_tags`], [`Cache::set_with`].

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::stats::trace_l1_hit;
use super::{Cache, CacheMode, Cacheable, EntryOptions, Erasure, ErrorSharing, LoadOptions};
use crate::call_site::{self, NoRuntime};
use crate::codec::CodecKind;
use crate::context;
use crate::key::KeyBuf;
use crate::runtime::RedisX;

mod write;
pub use write::{EvictCall, EvictWhen, PutCall, cache_evict, cache_put};

static NO_RUNTIME: NoRuntime = NoRuntime::new("cached functions run uncached");

/// What a `#[cached]` call does when its key cannot vary by the context.
const CONTEXT_UNCACHED: &str = "this #[cached] function's key cannot vary by the task's context: it runs uncached (enter the context with Context::scope)";

/// The compile-time options of one `#[cached]` / `#[cache_put]` call site.
#[derive(Debug)]
pub struct CachedSpec {
    module: &'static str,
    name: &'static str,
    ttl_ms: u64,
    l1_ttl_ms: u64,
    swr_ms: u64,
    stale_if_error_ms: u64,
    mode: Option<CacheMode>,
    codec: Option<CodecKind>,
    /// The context values the key and tags vary by (see [`crate::context`]).
    vary_by: &'static [&'static str],
    /// Set once this call site has said that its ttl exceeds the cache's `max_ttl`.
    warned: AtomicBool,
    /// Set once this call site has said that it cannot vary its key by the context.
    context_warned: AtomicBool,
}

impl CachedSpec {
    /// A spec for the function `name` in `module` (its `module_path!()`), every option at the
    /// cache's default.
    pub const fn new(module: &'static str, name: &'static str) -> Self {
        Self {
            module,
            name,
            ttl_ms: 0,
            l1_ttl_ms: 0,
            swr_ms: 0,
            stale_if_error_ms: 0,
            mode: None,
            codec: None,
            vary_by: &[],
            warned: AtomicBool::new(false),
            context_warned: AtomicBool::new(false),
        }
    }

    /// `vary_by`: the context values the key and tags vary by (see [`crate::context`]).
    #[must_use]
    pub const fn vary_by(mut self, names: &'static [&'static str]) -> Self {
        self.vary_by = names;
        self
    }

    /// Keys or tags this call site rendered, varied by the context (see [`crate::context`]);
    /// `None` (said once per call site, with `what` the call does then) when they cannot be:
    /// the call leaves the cache alone.
    fn vary(&self, rendered: Vec<String>, what: &str) -> Option<Vec<String>> {
        match context::vary_rendered(rendered, self.vary_by) {
            Ok(varied) => Some(varied),
            Err(e) => self.refuse(&e, what),
        }
    }

    /// A key this call site rendered, varied by the context, as [`vary`](Self::vary).
    fn vary_key(&self, rendered: String, what: &str) -> Option<String> {
        match context::vary_rendered_key(rendered, self.vary_by) {
            Ok(varied) => Some(varied),
            Err(e) => self.refuse(&e, what),
        }
    }

    /// Says once per call site why its key cannot vary (`what` the call does then); `None`.
    fn refuse<T>(&self, e: &crate::Error, what: &str) -> Option<T> {
        if !self.context_warned.swap(true, Ordering::Relaxed) {
            tracing::error!(target: "redisx::cache",
                function = self.name,
                error = %format_args!("{e:#}"),
                "{what}"
            );
        }
        None
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

    /// Whether this call site's ttl exceeds `cache`'s `max_ttl` (the config owns the limit):
    /// such a call site runs uncached and says so once, not on every call. On every hit, so
    /// the check is inline and the report out of line.
    #[inline]
    fn over_max_ttl(&self, cache: &Cache) -> bool {
        let max_ttl = cache.config().max_ttl;
        if self.ttl_ms == 0 || Duration::from_millis(self.ttl_ms) <= max_ttl {
            return false;
        }
        self.report_over_max_ttl(max_ttl);
        true
    }

    #[cold]
    fn report_over_max_ttl(&self, max_ttl: Duration) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::error!(target: "redisx::cache",
                function = self.name,
                ttl = ?Duration::from_millis(self.ttl_ms),
                ?max_ttl,
                "the ttl of this #[cached] function exceeds the cache's max_ttl: it runs uncached (lower its ttl or raise CacheConfig::max_ttl)"
            );
        }
    }
}

/// The key of one `#[cached]` call: a rendered template, or the automatic key.
#[derive(Debug, Clone, Copy)]
pub enum CallKey<'a> {
    /// `key = "user:{id}"`, rendered.
    Template(fmt::Arguments<'a>),
    /// No `key`: the function's path and a hash of its arguments (`None`: they could not be
    /// serialized, and the call runs uncached).
    Auto {
        /// `type_name::<Self>()` of a method.
        self_type: Option<&'static str>,
        /// The arguments' hash.
        hash: Option<u64>,
    },
}

/// The key of a call site with a `key` template.
pub fn template_key(args: fmt::Arguments<'_>) -> CallKey<'_> {
    CallKey::Template(args)
}

/// The automatic key of a call site without `key`: `{module}::{Self}::{fn}:{hash}` for a
/// method, `{module}::{fn}:{hash}` for a free function, the hash being a stable hash of the
/// serialized arguments (not the receiver).
///
/// Arguments that fail to serialize (e.g. a `#[serde(flatten)]` field, which bincode cannot
/// encode) make the call run uncached, so that calls with different arguments can never
/// share a key (and each other's values). The first such failure is logged as a warning,
/// later ones at debug.
pub fn auto_key<A: Serialize + ?Sized>(
    self_type: Option<&'static str>,
    args: &A,
) -> CallKey<'static> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let hash = crate::key::hash_args(args)
        .inspect_err(|e| {
            if WARNED.swap(true, Ordering::Relaxed) {
                tracing::debug!(target: "redisx::cache", error = %format_args!("{e:#}"), "cannot hash the arguments of a #[cached] function; it runs uncached");
            } else {
                tracing::warn!(target: "redisx::cache", error = %format_args!("{e:#}"), "cannot hash the arguments of a #[cached] function; it runs uncached (give it a `key` template)");
            }
        })
        .ok();
    CallKey::Auto { self_type, hash }
}

/// An autoref-specialization probe of a call site's types: the macro expands
/// `(&&Probe::<T>::new()).erasure()` (with [`ProbeArc`] and [`ProbeAny`] in scope) to pick the
/// L1 [`Erasure`] of the value type, and `(&&Probe::<E>::new()).sharing()` (with
/// [`ShareClone`] and [`ShareKnown`] in scope) to pick the [`ErrorSharing`] of the error type.
/// The more specific impl (an `Arc<U>`, a `Clone` error) is found first, on `&Probe`.
pub struct Probe<T>(PhantomData<fn() -> T>);

/// The probe of a value type (see `Probe`).
pub type ErasureProbe<T> = Probe<T>;

/// The probe of an error type (see `Probe`).
pub type ErrorProbe<E> = Probe<E>;

impl<T> Probe<T> {
    /// The probe of `T`.
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for Probe<T> {
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

impl<U: Send + Sync + 'static> ProbeArc for &Probe<std::sync::Arc<U>> {
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

impl<T: Clone + Send + Sync + 'static> ProbeAny for Probe<T> {
    type Value = T;
    fn erasure(&self) -> Erasure<T> {
        Erasure::boxed()
    }
}

/// The probe's choice for `Clone + Send + Sync` errors: shared.
pub trait ShareClone {
    /// The error type.
    type Error;
    /// How the error is shared.
    fn sharing(&self) -> ErrorSharing<Self::Error>;
}

impl<E: Clone + Send + Sync + 'static> ShareClone for &Probe<E> {
    type Error = E;
    fn sharing(&self) -> ErrorSharing<E> {
        ErrorSharing::cloned()
    }
}

/// The probe's choice for every other error type: shared only if it is one redisx knows.
pub trait ShareKnown {
    /// The error type.
    type Error;
    /// How the error is shared.
    fn sharing(&self) -> ErrorSharing<Self::Error>;
}

impl<E: 'static> ShareKnown for Probe<E> {
    type Error = E;
    fn sharing(&self) -> ErrorSharing<E> {
        ErrorSharing::known()
    }
}

/// The default `unless`: cache every value.
pub fn never<T: ?Sized>(_: &T) -> bool {
    false
}

enum State<T> {
    Hit(T),
    Bypass,
    Miss(Miss<T>),
}

/// What a call that missed L1 takes to the public load call.
struct Miss<T> {
    cache: Cache,
    key: String,
    opts: EntryOptions,
    erasure: Erasure<T>,
}

impl<T: Cacheable> Miss<T> {
    /// [`Cache::get_or_load_using`] with the call site's options.
    async fn load<E: 'static>(
        self,
        body: impl Future<Output = Result<T, E>>,
        unless: impl FnOnce(&T) -> bool,
        errors: ErrorSharing<E>,
    ) -> Result<T, E> {
        let how = LoadOptions::new(&self.opts)
            .unless(unless)
            .erasure(self.erasure)
            .errors(errors);
        self.cache.get_or_load_using(&self.key, how, || body).await
    }

    /// [`Cache::get_or_load_using_swr`] with the call site's options.
    async fn load_swr<E: Send + 'static>(
        self,
        body: impl Future<Output = Result<T, E>> + Send + 'static,
        unless: impl FnOnce(&T) -> bool + Send + 'static,
        errors: ErrorSharing<E>,
    ) -> Result<T, E> {
        let how = LoadOptions::new(&self.opts)
            .unless(unless)
            .erasure(self.erasure)
            .errors(errors);
        self.cache
            .get_or_load_using_swr(&self.key, how, || body)
            .await
    }
}

/// A `#[cached]` call after its synchronous L1 probe; see [`cached`].
pub struct CachedCall<T> {
    state: State<T>,
}

/// The synchronous half of `#[cached]`: resolves the runtime, renders the key without
/// allocating and probes L1. The returned call owns everything it needs (no borrow of the
/// arguments), so the caller's future stays `Send`. `T` is bounded by the `run` methods only,
/// so a value type that cannot be cached gives one error, there.
#[inline]
pub fn cached<T>(
    spec: &'static CachedSpec,
    runtime: Option<&RedisX>,
    enabled: bool,
    key: CallKey<'_>,
    tags: &[fmt::Arguments<'_>],
    erasure: Erasure<T>,
) -> CachedCall<T> {
    let bypass = || CachedCall {
        state: State::Bypass,
    };
    if !enabled {
        return bypass();
    }
    call_site::with_runtime(runtime, &NO_RUNTIME, |rt| {
        let Some(rt) = rt else { return bypass() };
        if !rt.is_running() {
            // Shut down: uncached. Gone: uncached too, and said once.
            let _ = rt.inner.life.check();
            return bypass();
        }
        probe(spec, rt.cache(), key, tags, erasure).unwrap_or_else(bypass)
    })
}

/// Renders the key and probes L1: `None` when the call bypasses the cache.
#[inline]
fn probe<T>(
    spec: &'static CachedSpec,
    cache: &Cache,
    key: CallKey<'_>,
    tags: &[fmt::Arguments<'_>],
    erasure: Erasure<T>,
) -> Option<CachedCall<T>> {
    if spec.over_max_ttl(cache) {
        return None;
    }
    let buf = match key {
        CallKey::Template(args) => KeyBuf::render(args),
        CallKey::Auto { hash: None, .. } => return None,
        CallKey::Auto {
            self_type: Some(ty),
            hash: Some(hash),
        } => KeyBuf::render(format_args!(
            "{}::{ty}::{}:{hash:016x}",
            spec.module, spec.name
        )),
        CallKey::Auto {
            self_type: None,
            hash: Some(hash),
        } => KeyBuf::render(format_args!("{}::{}:{hash:016x}", spec.module, spec.name)),
    };
    // A key that varies is built before the L1 probe (L1 holds varied keys); an unvaried one
    // is only checked, so a hit stays allocation-free.
    let varied = if spec.vary_by.is_empty() && !buf.as_str().starts_with(context::SEGMENT_PREFIX) {
        None
    } else {
        Some(spec.vary_key(buf.as_str().to_owned(), CONTEXT_UNCACHED)?)
    };
    let key = varied.as_deref().unwrap_or(buf.as_str());
    if let Some(v) = cache.l1_peek::<T>(key, spec.mode, erasure) {
        trace_l1_hit(cache.span_key(key));
        return Some(CachedCall {
            state: State::Hit(v),
        });
    }
    let key = match varied {
        Some(key) => key,
        None => buf.into_string(),
    };
    let tags = spec.vary(call_site::render(tags), CONTEXT_UNCACHED)?;
    Some(CachedCall {
        state: State::Miss(Miss {
            cache: cache.clone(),
            key,
            opts: spec.options(tags),
            erasure,
        }),
    })
}

fn infallible<T>(r: Result<T, Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

impl<T> CachedCall<T> {
    /// Runs a function whose every return value is cached.
    pub async fn run<F>(self, body: F, unless: impl FnOnce(&T) -> bool) -> T
    where
        T: Cacheable,
        F: Future<Output = T>,
    {
        match self.state {
            State::Hit(v) => v,
            State::Bypass => body.await,
            State::Miss(miss) => {
                let body = async { Ok(body.await) };
                infallible(miss.load(body, unless, ErrorSharing::none()).await)
            }
        }
    }

    /// Runs a function returning `Result`: only `Ok` values are cached; errors pass through
    /// (and reach the callers waiting on the same load as `errors` says).
    pub async fn run_result<E, F>(
        self,
        body: F,
        unless: impl FnOnce(&T) -> bool,
        errors: ErrorSharing<E>,
    ) -> Result<T, E>
    where
        T: Cacheable,
        E: 'static,
        F: Future<Output = Result<T, E>>,
    {
        match self.state {
            State::Hit(v) => Ok(v),
            State::Bypass => body.await,
            State::Miss(miss) => miss.load(body, unless, errors).await,
        }
    }

    /// [`run`](Self::run) with stale-while-revalidate: the body may run in the background,
    /// so it must be `Send + 'static`.
    pub async fn run_swr<F>(self, body: F, unless: impl FnOnce(&T) -> bool + Send + 'static) -> T
    where
        T: Cacheable,
        F: Future<Output = T> + Send + 'static,
    {
        match self.state {
            State::Hit(v) => v,
            State::Bypass => body.await,
            State::Miss(miss) => {
                let body = async { Ok(body.await) };
                infallible(miss.load_swr(body, unless, ErrorSharing::none()).await)
            }
        }
    }

    /// [`run_result`](Self::run_result) with stale-while-revalidate: the body may run in the
    /// background, so it must be `Send + 'static`.
    pub async fn run_result_swr<E, F>(
        self,
        body: F,
        unless: impl FnOnce(&T) -> bool + Send + 'static,
        errors: ErrorSharing<E>,
    ) -> Result<T, E>
    where
        T: Cacheable,
        E: Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        match self.state {
            State::Hit(v) => Ok(v),
            State::Bypass => body.await,
            State::Miss(miss) => miss.load_swr(body, unless, errors).await,
        }
    }
}
