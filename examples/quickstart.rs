//! Quickstart: `#[cached]` in front of a slow function, against a real Redis.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Uses the server in `REDIS_URL` when it is set, else one on `127.0.0.1:6379`; when nothing
//! answers there, it starts a throwaway `redis-server` from `PATH` (and stops it at exit).
//! The first call is a miss (the function runs and its value is stored in Redis and in the
//! in-process L1), the second a hit from L1, the third, after L1 is cleared, a hit from Redis.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redisx::{ConnectionConfig, RedisX, cached};
use serde::{Deserialize, Serialize};

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
    let (url, server) = find_or_start_redis()?;
    let rx = RedisX::builder()
        .client("default", ConnectionConfig::from_url(&url)?)
        .key_prefix("quickstart:")
        .build()
        .await?;
    rx.install()?; // `#[cached]` functions use the installed runtime
    rx.cache().delete("user:42").await?; // start cold, so that the first call is a miss

    let start = Instant::now();
    let user = load_user(42).await?;
    println!(
        "miss: {user:?} in {:.2?} (the function ran; the value went to Redis and L1)",
        start.elapsed()
    );

    let start = Instant::now();
    let user = load_user(42).await?;
    println!(
        "hit:  {user:?} in {:.2?} (from L1, in process)",
        start.elapsed()
    );

    rx.cache().clear_l1();
    let start = Instant::now();
    let user = load_user(42).await?;
    println!(
        "hit:  {user:?} in {:.2?} (from Redis, after clearing L1)",
        start.elapsed()
    );

    let stats = rx.cache().stats();
    println!(
        "cache stats: {} L1 hits, {} L2 hits, {} loads",
        stats.l1_hits, stats.l2_hits, stats.loads
    );
    rx.shutdown().await;
    drop(server); // stops the throwaway server, if one was started
    Ok(())
}

/// The URL to use, and the throwaway server when one had to be started.
fn find_or_start_redis() -> Result<(String, Option<Throwaway>), Box<dyn std::error::Error>> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        println!("using REDIS_URL ({url})");
        return Ok((url, None));
    }
    if answers(6379) {
        println!("using the Redis server on 127.0.0.1:6379");
        return Ok(("redis://127.0.0.1:6379".to_owned(), None));
    }
    let server = Throwaway::start()?;
    println!(
        "no REDIS_URL and nothing on 127.0.0.1:6379: started a throwaway redis-server on port {} \
         (stopped at exit)",
        server.port
    );
    Ok((format!("redis://127.0.0.1:{}", server.port), Some(server)))
}

/// Whether something speaking Redis answers on a loopback port.
fn answers(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0_u8; 1];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && matches!(reply[0], b'+' | b'-')
}

/// A `redis-server` started by this example, killed when dropped.
struct Throwaway {
    child: Child,
    port: u16,
}

impl Throwaway {
    fn start() -> Result<Self, Box<dyn std::error::Error>> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "no Redis to talk to, and redis-server could not be started ({e}); install \
                     it with `apt-get install redis-server` (Debian/Ubuntu) or `brew install \
                     redis`, or set REDIS_URL"
                )
            })?;
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers(port) {
            if Instant::now() > deadline {
                return Err("the throwaway redis-server did not answer within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
