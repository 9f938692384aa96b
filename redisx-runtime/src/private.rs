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
use serde::de::DeserializeOwned;

pub use crate::cache::CacheMode;
use crate::cache::{Cache, CallOptions};
use crate::cache::l1::KeyBuf;
pub use crate::codec::CodecKind;
pub use crate::runtime::RedisX;

/// The compile-time options of one `#[cached]` / `#[cache_put]` call site.
#[derive(Debug, Clone, Copy)]
pub struct CachedSpec {
    name: &'static str,
    ttl_ms: u64,
    l1_ttl_ms: u64,
    swr_ms: u64,
    stale_if_error_ms: u64,
    mode: Option<CacheMode>,
    codec: Option<CodecKind>,
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

    fn options(&self) -> CallOptions {
        let ms = |v: u64| (v > 0).then(|| Duration::from_millis(v));
        CallOptions {
            ttl: ms(self.ttl_ms),
            l1_ttl: ms(self.l1_ttl_ms),
            mode: self.mode,
            codec: self.codec,
        }
    }
}

/// The default `unless`: cache every value.
pub fn never<T: ?Sized>(_: &T) -> bool {
    false
}

/// A stable hash of the serialized arguments, for keys of `#[cached]` without `key`.
/// Arguments that fail to serialize hash to 0 (and are logged).
pub fn args_hash<A: Serialize + ?Sized>(args: &A) -> u64 {
    crate::key::hash_args(args).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot hash the arguments of a #[cached] function");
        0
    })
}

static WARNED_NO_RUNTIME: AtomicBool = AtomicBool::new(false);

fn resolve(runtime: Option<&RedisX>) -> Option<&RedisX> {
    match runtime {
        Some(rt) => Some(rt),
        None => {
            let global = RedisX::global_ref();
            if global.is_none() && !WARNED_NO_RUNTIME.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "no redisx runtime is installed (call `rx.install()` at startup or pass `runtime = ...`); cached functions run uncached"
                );
            }
            global
        }
    }
}

enum State<T> {
    Hit(T),
    Bypass,
    Miss {
        cache: Cache,
        key: String,
        opts: CallOptions,
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
pub fn cached<T>(
    spec: &'static CachedSpec,
    runtime: Option<&RedisX>,
    enabled: bool,
    key: fmt::Arguments<'_>,
    tags: &[fmt::Arguments<'_>],
) -> CachedCall<T>
where
    T: Clone + 'static,
{
    let _ = tags; // Tags are indexed by the full cache plugin.
    if !enabled {
        return CachedCall { state: State::Bypass };
    }
    let Some(rt) = resolve(runtime) else {
        return CachedCall { state: State::Bypass };
    };
    let opts = spec.options();
    let buf = KeyBuf::render(key);
    let cache = rt.cache();
    if let Some(v) = cache.l1_get::<T>(buf.as_str(), opts.mode) {
        return CachedCall { state: State::Hit(v) };
    }
    CachedCall {
        state: State::Miss {
            cache: cache.clone(),
            key: buf.into_string(),
            opts,
        },
    }
}

impl<T> CachedCall<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Runs a function whose every return value is cached.
    pub async fn run<F>(self, body: F, unless: impl FnOnce(&T) -> bool) -> T
    where
        F: Future<Output = T>,
    {
        match self.state {
            State::Hit(v) => v,
            State::Bypass => body.await,
            State::Miss { cache, key, opts } => {
                let r: Result<T, std::convert::Infallible> = cache
                    .load_through(&key, opts, async { Ok(body.await) }, unless)
                    .await;
                match r {
                    Ok(v) => v,
                    Err(never) => match never {},
                }
            }
        }
    }

    /// Runs a function returning `Result`: only `Ok` values are cached; errors pass through.
    pub async fn run_result<E, F>(self, body: F, unless: impl FnOnce(&T) -> bool) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        match self.state {
            State::Hit(v) => Ok(v),
            State::Bypass => body.await,
            State::Miss { cache, key, opts } => cache.load_through(&key, opts, body, unless).await,
        }
    }
}
