//! A runtime whose tokio runtime has shut down (built in one `#[tokio::test]`, installed
//! globally, used by the next) says so once, with the cause and the fix, instead of a warning
//! per call about a reconnect that can never happen. This binary installs a runtime globally,
//! so it holds this one test.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use redisx::{CacheConfig, ConnectionConfig, ErrorCode, RedisX, cached};
use redisx_tests::{RedisServer, unique_prefix};

static LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "user:{id}", ttl = "1m")]
async fn user(id: u64) -> String {
    LOADS.fetch_add(1, Ordering::SeqCst);
    format!("user-{id}")
}

/// Every log line, as the fmt subscriber writes it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_runtime_outliving_its_tokio_runtime_reports_it_once() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let server = RedisServer::start();
    // "The first test": builds the runtime on its own tokio runtime and installs it.
    let rx = tokio_runtime().block_on(async {
        let rx = RedisX::builder()
            .client(
                "default",
                ConnectionConfig::from_url(&server.url()).unwrap(),
            )
            .key_prefix(unique_prefix("runtime_gone"))
            .cache(CacheConfig::default())
            .build()
            .await
            .unwrap();
        rx.install().unwrap();
        assert_eq!(user(1).await, "user-1");
        assert_eq!(user(1).await, "user-1");
        rx
    });
    assert_eq!(
        LOADS.load(Ordering::SeqCst),
        1,
        "cached while its tokio runtime ran"
    );
    rx.cache().clear_l1();

    // "The next test": a new tokio runtime; the installed one's tasks died with the first.
    tokio_runtime().block_on(async {
        for id in [1, 2, 3, 1, 2, 3] {
            assert_eq!(user(id).await, format!("user-{id}"));
        }
        let e = rx.cache().get::<String>("user:1").await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::ConfigRuntimeGone, "{e:#}");
        let e = rx
            .client()
            .query::<String>(&redis::cmd("PING"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::ConfigRuntimeGone, "{e:#}");
        assert!(
            e.message().contains("tokio runtime that has shut down"),
            "{e}"
        );
        assert!(e.message().contains("rx.scope"), "the fix is named: {e}");
    });
    assert_eq!(
        LOADS.load(Ordering::SeqCst),
        7,
        "each call ran its body, uncached"
    );

    let text = logs.text();
    assert_eq!(
        text.matches("CFG_RUNTIME_GONE").count(),
        1,
        "reported once:\n{text}"
    );
    assert!(text.contains("ERROR"), "{text}");
    assert!(!text.contains("being re-established"), "{text}");
    assert!(!text.contains("continuing without the cache"), "{text}");
}
