//! Quickstart: `#[cached]` in front of a slow function, against a real Redis, with the spans
//! and metrics that show what happened.
//!
//! ```text
//! cargo run --example quickstart
//! RUST_LOG=redisx=debug cargo run --example quickstart   # another filter than the default
//! ```
//!
//! Uses the server in `REDIS_URL` when it is set, else one listening on `127.0.0.1:6379`, else
//! starts a throwaway `redis-server` from `PATH` (stopped at exit). The first call is a miss
//! (the function runs; its value goes to Redis and to the in-process L1), the second an L1 hit,
//! the third, after L1 is cleared, a hit from Redis. A `tracing` subscriber prints every span
//! as it closes: `cache.get` for each call, with a `redis.command` span per Redis command
//! inside it. At the end the `redisx_` metrics of `rx.metrics_text()` are printed.

#[path = "support/server.rs"]
mod server;

use std::time::{Duration, Instant};

use redisx::{ConnectionConfig, RedisX, cached};
use serde::{Deserialize, Serialize};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::prelude::*;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

#[derive(Debug)]
struct DbError;

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the database is unavailable")
    }
}

impl std::error::Error for DbError {}

/// A slow "database query": runs only on a cache miss. `Ok` values are cached for 5 minutes
/// under `user:{id}`; errors are returned as they are and never cached.
#[cached(key = "user:{id}", ttl = "5m")]
async fn load_user(id: u64) -> Result<User, DbError> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(User {
        id,
        name: "Ada Lovelace".to_owned(),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Every span and event of redisx is under a `redisx*` target. TRACE includes the span of
    // an L1 hit on the cached path (kept at TRACE: it is the hot path); `RUST_LOG` overrides.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| f.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_target("redisx", LevelFilter::TRACE));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_span_events(FmtSpan::CLOSE) // one line per span, with its busy time
                .with_filter(filter),
        )
        .init();

    let (url, _server) = server::find_or_start_redis()?; // `_server` stops a throwaway server at exit
    let rx = RedisX::builder()
        .client("default", ConnectionConfig::from_url(&url)?)
        .key_prefix("quickstart:")
        .build()
        .await?;
    rx.install()?; // `#[cached]` functions use the installed runtime
    rx.cache().delete("user:42").await?; // start cold, so that the first call is a miss

    for (what, clear_l1) in [
        (
            "miss (the function ran; its value went to Redis and L1)",
            false,
        ),
        ("hit from L1, in process", false),
        ("hit from Redis, after clearing L1", true),
    ] {
        if clear_l1 {
            rx.cache().clear_l1();
        }
        let start = Instant::now();
        let user = load_user(42).await?;
        println!("--> {user:?} in {:.2?}: {what}", start.elapsed());
    }

    println!(
        "--> metrics: the non-zero redisx_ samples of rx.metrics_text() (no histogram buckets)"
    );
    for line in rx.metrics_text().lines() {
        if line.starts_with("redisx_") && !line.contains("_bucket") && !line.ends_with(" 0") {
            println!("    {line}");
        }
    }
    rx.shutdown().await;
    Ok(())
}
