//! # redisx
//!
//! Redis for Rust services, beyond get/set: a two-tier cache (in-process L1 in front of Redis),
//! distributed locks, rate limiting, idempotency and Redis Streams consumers, as
//! attributes on `async fn`s that expand into calls to one runtime, configured once at startup
//! and observable through Prometheus metrics and `tracing` spans with OpenTelemetry attributes.
//!
//! ```no_run
//! use redisx::{cached, ConnectionConfig, RedisX};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct User {
//!     id: u64,
//!     name: String,
//! }
//!
//! #[derive(Debug)]
//! struct AppError;
//!
//! #[cached(key = "user:{id}", ttl = "5m")]
//! async fn user(id: u64) -> Result<User, AppError> {
//!     // The database query runs only on a cache miss.
//!     Ok(User { id, name: "Ada".into() })
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let rx = RedisX::builder()
//!         .client("default", ConnectionConfig::from_url("redis://127.0.0.1:6379")?)
//!         .key_prefix("myapp:")
//!         .build()
//!         .await?;
//!     rx.install()?;
//!     let first = user(42).await.expect("loader failed"); // miss: runs the body, caches it
//!     let again = user(42).await.expect("loader failed"); // hit: answered from L1
//!     assert_eq!((first.id, first.name), (again.id, again.name));
//!     Ok(())
//! }
//! ```
//!
//! ## What is where
//! - [`RedisX`]: the runtime handle ([`RedisX::builder`], [`RedisX::install`]).
//! - [`ConnectionConfig`]: one Redis server (URL, TLS, ACL user, timeouts, reconnect, driver).
//! - [`Cache`] (`rx.cache()`): the cache service; [`cached`] is sugar over
//!   [`Cache::get_or_load_using`].
//! - [`Locks`] (`rx.locks()`): distributed locks and semaphores with auto-renewal, a loss
//!   signal and fencing tokens ([`lock`]).
//! - [`RateLimiter`] (`rx.rate_limiter()`): five rate-limit algorithms on the server's clock,
//!   several limits all or nothing, denied keys answered locally ([`rate_limit`](mod@rate_limit)).
//! - [`Idempotency`] (`rx.idempotency()`): exactly-once execution per key with the outcome
//!   replayed to duplicates, which wait woken by pub/sub; [`idempotent`] is sugar over
//!   [`Idempotency::run`] ([`idempotency`](mod@idempotency)).
//! - [`Streams`] (`rx.streams()`): a producer and consumer groups with bounded concurrency,
//!   retries through a delayed set, a DLQ, reclaim of dead consumers and graceful drain;
//!   [`stream_consumer`] registers a consumer function ([`streams`](mod@streams)).
//! - [`Plugin`]: what the runtime starts and stops (the cache, locks, rate limiter,
//!   idempotency and streams are built in; add your own with [`RedisXBuilder::plugin`]).
//! - [`Error`] / [`ErrorCode`]: one error type with stable codes.
//! - [`metrics`]: the Prometheus metric set; [`RedisX::metrics_text`] renders it.
//!
//! ## Feature flags
//!
//! | Feature | Default | What it adds |
//! |---|---|---|
//! | `tls-rustls` | on | `rediss://` through rustls with the webpki roots (ring as rustls's crypto provider unless the application installs another). |
//! | `tls-native` | off | `rediss://` through native-tls (OpenSSL on Linux: needs `libssl-dev` to build). With both TLS features on, rustls is used. |
//! | `pool` | on | The deadpool-redis connection pool: `DriverKind::Pool` and the `pool_*_timeout` settings of [`ConnectionConfig`]. |
//! | `serde` | off | serde `Deserialize` for [`ConnectionConfig`], [`CacheConfig`], [`LockConfig`], [`RateLimitConfig`] (with its `Limit`s), [`ReconnectPolicy`] and [`DriverKind`], to load them from configuration files. |
//! | `opentelemetry` | off | The `redisx::telemetry` module: the OpenTelemetry span bridge (`tracing-opentelemetry`) and the `opentelemetry` API. |
//! | `otlp` | off | OTLP trace export over HTTP/protobuf, `redisx::telemetry::otlp()`, to `http://` and `https://` collectors (rustls on ring), flushed by [`RedisX::shutdown`]; implies `opentelemetry`. |
//! | `otlp-grpc` | off | OTLP over gRPC as well (`OtlpProtocol::Grpc`, through tonic, which adds many crates to the build); implies `otlp`. |
//! | `tonic` | off | `RateLimitLayer` in front of tonic services as well (tonic's body type; gRPC refusals as `RESOURCE_EXHAUSTED` / `UNAVAILABLE`); implies `axum`. |
//! | `axum` | off | The `redisx::http` module: the tower/axum rate-limit layer (`RateLimitLayer`, key extractors with trusted proxies, limit headers, 429 problem+json), the `Idempotency-Key` layer (`IdempotencyLayer`: replay, 409/422 problem+json) and `IntoResponse` for [`Error`]. |
//! | `test-util` | off | `#[redisx::test]` and the `redisx::testing` module (Unix only): a Redis runtime per test, real `redis-server` processes for integration tests, replicas, child-process scenarios for crash tests, and the topology parameter. |
//!
//! Always built, with no flag: the multiplexed driver, the Prometheus metrics ([`metrics`],
//! [`RedisX::metrics_text`]) and both codecs (bincode and JSON). Without either TLS feature, a
//! `rediss://` server is a configuration error.
//!
//! ```toml
//! [dependencies]
//! redisx = { version = "0.1", features = ["serde", "otlp"] }
//! ```
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "test-util")]
pub use redisx_macros::test;
pub use redisx_macros::{
    cache_evict, cache_put, cached, idempotent, rate_limit, stream_consumer, with_lock,
};
pub use redisx_runtime::*;
// Named again (the glob above already carries them) so that `redisx::redis` and
// `redisx::prometheus_client` stay public even if the glob's contents change.
#[doc(no_inline)]
pub use redisx_runtime::{prometheus_client, redis};

/// What the attribute macros expand to. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use redisx_runtime::private::*;
}

/// Every Rust block of the README, compiled (and run unless `no_run`) by `cargo test --doc`, so
/// the README cannot drift from the API. Only built for doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// Every Rust block of the guides in `docs/`, compiled the same way. Their items are
/// declared and not called (a guide shows a function, not a program), hence the allowance.
#[cfg(doctest)]
#[doc(test(attr(allow(dead_code))))]
mod guides {
    #[doc = include_str!("../../docs/caching.md")]
    struct Caching;
    #[doc = include_str!("../../docs/rate-limit-algorithms.md")]
    struct RateLimitAlgorithms;
    #[doc = include_str!("../../docs/locks-vs-idempotency.md")]
    struct LocksVsIdempotency;
    #[doc = include_str!("../../docs/streams-vs-pubsub.md")]
    struct StreamsVsPubsub;
    #[doc = include_str!("../../docs/failure-modes.md")]
    struct FailureModes;
    #[doc = include_str!("../../docs/tuning.md")]
    struct Tuning;
    #[doc = include_str!("../../docs/troubleshooting.md")]
    struct Troubleshooting;
    #[doc = include_str!("../../docs/migrate-from-cached.md")]
    struct MigrateFromCached;
    #[doc = include_str!("../../docs/migrate-from-redis.md")]
    struct MigrateFromRedis;
    #[doc = include_str!("../../docs/migrate-from-nestjs-redisx.md")]
    struct MigrateFromNestjsRedisx;
}
