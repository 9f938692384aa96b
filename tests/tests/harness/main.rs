//! Tests of the public test harness, `redisx::testing`: servers, replica sets, child processes
//! and topologies.

mod children;
mod replicas;
mod servers;
mod topology;

use std::time::{Duration, Instant};

use redisx::testing::process_alive;

/// Waits (at most `within`) until the process `pid` is gone; whether it is.
fn wait_dead(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !process_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    !process_alive(pid)
}

/// `PING` over a fresh connection to `url`.
async fn ping(url: &str) -> redis::RedisResult<String> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("PING").query_async(&mut conn).await
}
