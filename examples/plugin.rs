//! A plugin of your own beside the built-in cache: started after the plugins it depends on,
//! given the runtime's clients and metrics registry, and stopped by `shutdown()` before the
//! clients close.
//!
//! ```text
//! cargo run --example plugin
//! ```
//!
//! Needs a Redis server: the one in `REDIS_URL`, else `127.0.0.1:6379`. The `Heartbeat`
//! plugin writes `plugin-example:heartbeat:alive` every 100 ms while the runtime runs, counts
//! the beats in a metric of its own, and deletes the key when it stops.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use redisx::{ConnectionConfig, Plugin, PluginContext, PluginFuture, RedisX};
use tokio::sync::watch;

/// Keeps a key alive while the service runs.
#[derive(Default)]
struct Heartbeat {
    beats: Counter,
    /// Set by `start`: the key, the client, and the channel that ends the beating task.
    running: Mutex<Option<(String, redisx::Client, watch::Sender<bool>)>>,
}

impl Plugin for Heartbeat {
    fn name(&self) -> &'static str {
        "heartbeat"
    }

    /// Started after the cache, stopped before it.
    fn dependencies(&self) -> &'static [&'static str] {
        &["cache"]
    }

    fn start<'a>(&'a self, ctx: &'a PluginContext) -> PluginFuture<'a, redisx::Result<()>> {
        Box::pin(async move {
            ctx.registry().lock().expect("the registry lock").register(
                "heartbeat_beats",
                "Heartbeats written",
                self.beats.clone(),
            );
            let client = ctx.client()?;
            let key = ctx.keys("heartbeat:").full("alive");
            let (stop, mut stopped) = watch::channel(false);
            let (beats, task_client, task_key) = (self.beats.clone(), client.clone(), key.clone());
            tokio::spawn(async move {
                loop {
                    let set = redis::cmd("SET")
                        .arg(&task_key)
                        .arg("1")
                        .arg("PX")
                        .arg(1000)
                        .clone();
                    if task_client.query::<()>(&set).await.is_ok() {
                        beats.inc();
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = stopped.changed() => return,
                    }
                }
            });
            *self.running.lock().expect("the plugin's lock") = Some((key, client, stop));
            Ok(())
        })
    }

    fn stop(&self, _deadline: tokio::time::Instant) -> PluginFuture<'_, ()> {
        Box::pin(async move {
            let running = self.running.lock().expect("the plugin's lock").take();
            if let Some((key, client, stop)) = running {
                let _ = stop.send(true);
                // The clients are still open while plugins stop.
                if let Err(e) = client.query::<u64>(redis::cmd("DEL").arg(&key)).await {
                    eprintln!("could not delete the heartbeat key: {e}");
                }
            }
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let rx = RedisX::builder()
        .client("default", ConnectionConfig::from_url(&url)?)
        .key_prefix("plugin-example:")
        .plugin(Heartbeat::default())
        .build()
        .await?;
    println!("plugins, in start order: {:?}", rx.plugin_names());
    tokio::time::sleep(Duration::from_millis(350)).await;
    let beats = rx.plugin::<Heartbeat>().map_or(0, |h| h.beats.get());
    println!("beats so far: {beats}");
    for line in rx
        .metrics_text()
        .lines()
        .filter(|l| l.contains("heartbeat"))
    {
        println!("{line}");
    }
    rx.shutdown().await; // stops the heartbeat (deleting its key), then the cache, then closes
    Ok(())
}
