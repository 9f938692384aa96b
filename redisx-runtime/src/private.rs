//! What the attribute macros expand to. **Not a stable API**: everything here may change in
//! any release; use the documented runtime calls (`rx.cache().get_or_load_using(..)`, ...)
//! instead.
//!
//! Only re-exports: each plugin's `call_site` module adapts an attribute's arguments (a
//! rendered key, per-call options) to that plugin's public calls.

pub use crate::cache::call_site::{
    CachedCall, CachedSpec, CallKey, ErasureProbe, ErrorProbe, EvictCall, EvictWhen, ProbeAny,
    ProbeArc, PutCall, ShareClone, ShareKnown, auto_key, cache_evict, cache_put, cached, never,
    template_key,
};
pub use crate::cache::{CacheMode, Erasure, ErrorSharing};
pub use crate::codec::CodecKind;
pub use crate::idempotency::Fingerprint;
pub use crate::idempotency::call_site::{
    IdempotentArg, IdempotentCall, IdempotentError, IdempotentRecordedError, IdempotentSpec,
    IdempotentValue, fingerprint_arg, idempotent,
};
pub use crate::lock::call_site::{LockError, LockSpec, RetryKind, WithLockCall, with_lock};
pub use crate::rate_limit::Algorithm as RateLimitAlgorithm;
pub use crate::rate_limit::call_site::{RateLimitCall, RateLimitError, RateLimitSpec, rate_limit};
pub use crate::runtime::RedisX;
pub use crate::streams::call_site::{
    ConsumerError, ConsumerPayload, ConsumerSpec, StartFn, StartFuture, start_message,
    start_payload,
};
pub use crate::streams::{Message as StreamMessage, Streams};
pub use inventory;
