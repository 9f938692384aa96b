//! The Redis server an example runs against: the one in `REDIS_URL` when it is set, else one
//! listening on `127.0.0.1:6379`, else a throwaway `redis-server` from `PATH`, stopped when the
//! returned guard is dropped. Shared by the examples with `#[path = "support/server.rs"] mod
//! server;`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The URL to use, and the throwaway server when one had to be started.
pub(crate) fn find_or_start_redis()
-> Result<(String, Option<Throwaway>), Box<dyn std::error::Error>> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        println!("--> using REDIS_URL ({url})");
        return Ok((url, None));
    }
    if listening(6379) {
        println!("--> using the Redis server on 127.0.0.1:6379");
        return Ok(("redis://127.0.0.1:6379".to_owned(), None));
    }
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
                "nothing on 127.0.0.1:6379 and redis-server could not be started ({e}); install \
                 it (`apt-get install redis-server`, `brew install redis`) or set REDIS_URL"
            )
        })?;
    let server = Throwaway(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listening(port) {
        if Instant::now() > deadline {
            return Err("the throwaway redis-server did not listen within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("--> nothing on 127.0.0.1:6379: started a throwaway redis-server on port {port}");
    Ok((format!("redis://127.0.0.1:{port}"), Some(server)))
}

/// Whether something accepts connections on a loopback port.
fn listening(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// A `redis-server` started by an example, killed when dropped.
pub(crate) struct Throwaway(Child);

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
