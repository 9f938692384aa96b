//! The runtime behind [redisx](https://docs.rs/redisx): connections, the instrumented command
//! path, keys, codecs, Lua scripts and the plugins.
//!
//! Applications depend on the `redisx` facade, which re-exports everything public here
//! together with the attribute macros. This crate is versioned in lockstep with the facade and
//! the macros (they pin each other with `=`).
//!
//! ```no_run
//! use std::time::Duration;
//! use redisx_runtime::{ConnectionConfig, RedisX};
//!
//! # #[allow(dead_code)]
//! # async fn start() -> redisx_runtime::Result<()> {
//! let rx = RedisX::builder()
//!     .client("default", ConnectionConfig::from_url("redis://127.0.0.1:6379")?)
//!     .key_prefix("myapp:")
//!     .build()
//!     .await?;
//! rx.cache().set("user:1", &"Ada".to_owned(), Some(Duration::from_secs(300))).await?;
//! println!("{}", rx.metrics_text());
//! # Ok(()) }
//! ```
#![doc(test(attr(deny(warnings))))]

/// Awaits a future inside `span`, but only wraps it (moving it into an `Instrumented`) when the
/// span is enabled: with no subscriber listening, the future is awaited in place.
macro_rules! traced {
    ($fut:expr, $span:expr) => {{
        let span: &::tracing::Span = &$span;
        if span.is_disabled() {
            $fut.await
        } else {
            ::tracing::Instrument::instrument($fut, span.clone()).await
        }
    }};
}

/// A duration in whole milliseconds for a Redis argument (`PX`, script ttls, `BLOCK`),
/// saturating at `u64::MAX`.
pub(crate) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

mod builder;
pub mod cache;
mod call_site;
mod client;
pub mod codec;
pub mod context;
mod duration;
mod error;
// The fuzz targets' and property tests' entry points (feature `fuzzing`): not an API.
#[cfg(all(feature = "fuzzing", not(test)))]
#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;
#[cfg(feature = "axum")]
pub mod http;
pub mod idempotency;
pub mod key;
mod life;
pub mod lock;
pub mod metrics;
pub mod ops;
pub mod plugin;
#[doc(hidden)]
pub mod private;
pub mod rate_limit;
mod runtime;
mod scope;
mod script;
pub mod streams;
#[cfg(feature = "opentelemetry")]
pub mod telemetry;
#[cfg(all(feature = "test-util", unix))]
pub mod testing;

/// The [`redis`](https://docs.rs/redis) crate redisx is built on, re-exported (as
/// `deadpool-redis` does) so that commands, pipelines and scripts are built with the very
/// version redisx runs them with, without a second `redis` requirement to keep in step.
///
/// ```no_run
/// use redisx_runtime::redis;
///
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// let () = rx.client().query(redis::cmd("SET").arg("greeting").arg("hello")).await?;
/// # Ok(()) }
/// ```
pub use redis;

/// The [`prometheus-client`](https://docs.rs/prometheus-client) crate the redisx metrics are
/// registered with, re-exported so that an application's own metrics can join the same
/// registry ([`RedisXBuilder::registry`]) without a second, possibly mismatched, version.
///
/// ```
/// use redisx_runtime::prometheus_client::metrics::counter::Counter;
/// use redisx_runtime::prometheus_client::registry::Registry;
///
/// let mut registry = Registry::default();
/// let orders: Counter = Counter::default();
/// registry.register("orders", "Orders taken", orders.clone());
/// orders.inc();
/// ```
pub use prometheus_client;

pub use builder::RedisXBuilder;
pub use cache::{Cache, CacheConfig, CacheMode, CacheStats};
pub use client::{
    Client, ConnectionConfig, DedicatedConnection, DriverKind, PubSub, ReconnectPolicy,
};
pub use codec::{Bincode, Codec, CodecKind, Json};
pub use duration::parse_duration;
pub use error::{Error, ErrorCode, Result};
pub use idempotency::{Idempotency, IdempotencyConfig};
pub use lock::{LockConfig, LockGuard, LockOptions, Locks};
pub use plugin::{Plugin, PluginContext, PluginFuture};
pub use rate_limit::{RateLimitConfig, RateLimiter};
pub use runtime::RedisX;
pub use scope::spawn;
pub use streams::{Streams, StreamsConfig};
