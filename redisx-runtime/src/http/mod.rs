//! HTTP (feature `axum`): the tower/axum rate-limit layer ([`RateLimitLayer`]) with its key
//! extractors and headers, the idempotency layer ([`IdempotencyLayer`]: an `Idempotency-Key`
//! request runs once, its response is recorded and replayed to duplicates), and
//! `IntoResponse` for [`Error`](crate::Error) with the right status for every code
//! ([`status_of`]) and a problem+json body without internal details.
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{Router, routing::post};
//! use redisx_runtime::http::{HeaderStyle, IdempotencyLayer, KeyExtractor, RateLimitLayer};
//! use redisx_runtime::rate_limit::Limit;
//!
//! # #[allow(dead_code)]
//! # fn app(rx: redisx_runtime::RedisX) -> Router {
//! Router::new()
//!     .route("/api/orders", post(|| async { "created" }))
//!     .route_layer(IdempotencyLayer::new().runtime(rx.clone()).tenant(KeyExtractor::api_key()))
//!     .route_layer(
//!         RateLimitLayer::new(Limit::token_bucket(100, Duration::from_secs(60)))
//!             .runtime(rx)
//!             .key(KeyExtractor::api_key())
//!             .headers(HeaderStyle::Both),
//!     )
//! # }
//! ```

mod client_ip;
pub mod future;
mod idempotency;
mod key;
mod layer;
mod response;

pub use client_ip::Cidr;
pub use idempotency::{IdempotencyKey, IdempotencyLayer, IdempotencyService};
pub use key::{KeyExtractor, RequestView};
pub use layer::{HeaderStyle, RateLimitLayer, RateLimitService};
pub use response::{RefusalBody, status_of};
