//! User plugins against real Redis: registered with `.plugin(..)`, started after their
//! dependencies (the built-in cache is the plugin `"cache"`, started first), given the runtime's
//! clients and metrics registry, found again with `rx.plugin::<P>()`, and stopped in reverse
//! start order by `shutdown()` while the clients are still open. `build()` refuses a plugin
//! graph with an unknown dependency, a cycle or a duplicate name, and a plugin that fails to
//! start fails the build after the plugins already started are stopped.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use redisx::{
    CacheConfig, Client, ConnectionConfig, Error, ErrorCode, Plugin, PluginContext, PluginFuture,
    RedisX, RedisXBuilder,
};
use redisx_tests::cache::raw;
use redisx_tests::{RedisServer, unique_prefix};

/// What the plugins of one test did, in order ("start audit", "stop audit", ...).
#[derive(Clone, Default)]
struct Journal(Arc<Mutex<Vec<String>>>);

impl Journal {
    fn record(&self, event: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event.into());
    }

    fn events(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A builder with one client on `server`, a unique key prefix and the default cache.
fn builder(server: &RedisServer, test: &str) -> RedisXBuilder {
    RedisX::builder()
        .client(
            "default",
            ConnectionConfig::from_url(&server.url()).expect("a valid URL"),
        )
        .key_prefix(unique_prefix(test))
        .cache(CacheConfig::default())
}

/// A plugin that registers a counter, writes `audit:started` with its client when it starts,
/// and `audit:stopped` with the same client when it stops (which needs the client open).
struct Audit {
    journal: Journal,
    events: Counter,
    /// The client and the key of `audit:stopped`, kept by `start` for `stop`.
    started: Mutex<Option<(Client, String)>>,
}

impl Audit {
    fn new(journal: &Journal) -> Self {
        Self {
            journal: journal.clone(),
            events: Counter::default(),
            started: Mutex::new(None),
        }
    }
}

impl Plugin for Audit {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn dependencies(&self) -> &'static [&'static str] {
        &["cache"]
    }

    fn start<'a>(&'a self, ctx: &'a PluginContext) -> PluginFuture<'a, redisx::Result<()>> {
        Box::pin(async move {
            ctx.registry()
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .register(
                    "audit_events",
                    "Events the audit plugin saw",
                    self.events.clone(),
                );
            let client = ctx.client()?;
            let keys = ctx.keys("audit:");
            client
                .query::<()>(redis::cmd("SET").arg(keys.full("started")).arg("yes"))
                .await?;
            self.events.inc();
            *self.started.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((client, keys.full("stopped")));
            self.journal.record("start audit");
            Ok(())
        })
    }

    fn stop(&self, _deadline: tokio::time::Instant) -> PluginFuture<'_, ()> {
        Box::pin(async move {
            let started = self
                .started
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            let Some((client, key)) = started else {
                self.journal.record("stop audit: never started");
                return;
            };
            match client
                .query::<()>(redis::cmd("SET").arg(&key).arg("yes"))
                .await
            {
                Ok(()) => self.journal.record("stop audit"),
                Err(e) => self.journal.record(format!("stop audit: {e}")),
            }
        })
    }
}

/// A plugin that depends on `audit` and only records its start and stop.
struct Reporter {
    journal: Journal,
}

impl Plugin for Reporter {
    fn name(&self) -> &'static str {
        "reporter"
    }

    fn dependencies(&self) -> &'static [&'static str] {
        &["audit"]
    }

    fn start<'a>(&'a self, _ctx: &'a PluginContext) -> PluginFuture<'a, redisx::Result<()>> {
        Box::pin(async move {
            self.journal.record("start reporter");
            Ok(())
        })
    }

    fn stop(&self, _deadline: tokio::time::Instant) -> PluginFuture<'_, ()> {
        Box::pin(async move { self.journal.record("stop reporter") })
    }
}

/// A plugin of any name and dependencies that records its start and stop, and fails its
/// start when told to.
struct Named {
    name: &'static str,
    dependencies: &'static [&'static str],
    fail_start: bool,
    journal: Journal,
}

impl Named {
    fn new(name: &'static str, dependencies: &'static [&'static str], journal: &Journal) -> Self {
        Self {
            name,
            dependencies,
            fail_start: false,
            journal: journal.clone(),
        }
    }
}

impl Plugin for Named {
    fn name(&self) -> &'static str {
        self.name
    }

    fn dependencies(&self) -> &'static [&'static str] {
        self.dependencies
    }

    fn start<'a>(&'a self, _ctx: &'a PluginContext) -> PluginFuture<'a, redisx::Result<()>> {
        Box::pin(async move {
            self.journal.record(format!("start {}", self.name));
            if self.fail_start {
                return Err(Error::new(
                    ErrorCode::Internal,
                    format!("{} refused to start", self.name),
                ));
            }
            Ok(())
        })
    }

    fn stop(&self, _deadline: tokio::time::Instant) -> PluginFuture<'_, ()> {
        Box::pin(async move { self.journal.record(format!("stop {}", self.name)) })
    }
}

/// A plugin whose `stop` never finishes.
struct Stuck;

impl Plugin for Stuck {
    fn name(&self) -> &'static str {
        "stuck"
    }

    fn start<'a>(&'a self, _ctx: &'a PluginContext) -> PluginFuture<'a, redisx::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn stop(&self, _deadline: tokio::time::Instant) -> PluginFuture<'_, ()> {
        Box::pin(std::future::pending())
    }
}

/// Whether `key` exists, read with a raw connection.
async fn exists(server: &RedisServer, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async(&mut raw(server).await)
        .await
        .unwrap()
}

#[tokio::test]
async fn plugins_start_after_their_dependencies_and_stop_in_reverse_before_the_clients_close() {
    let server = RedisServer::start();
    let journal = Journal::default();
    // Added before the plugin it depends on: the order comes from the dependencies.
    let rx = builder(&server, "plugins_order")
        .plugin(Reporter {
            journal: journal.clone(),
        })
        .plugin(Audit::new(&journal))
        .build()
        .await
        .expect("the runtime builds with its plugins");

    assert_eq!(
        rx.plugin_names(),
        [
            "cache",
            "locks",
            "rate_limit",
            "idempotency",
            "streams",
            "audit",
            "reporter"
        ]
    );
    assert_eq!(journal.events(), ["start audit", "start reporter"]);
    let prefix = rx.key_prefix().to_owned();
    assert!(
        exists(&server, &format!("{prefix}audit:started")).await,
        "the plugin wrote with its client, under the app prefix"
    );

    // The plugin is found by its type, as the instance that was started.
    let audit = rx.plugin::<Audit>().expect("the audit plugin");
    assert_eq!(audit.events.get(), 1, "the started instance");
    assert!(rx.plugin::<Reporter>().is_some());
    assert!(
        rx.plugin::<Stuck>().is_none(),
        "a plugin that was not added"
    );
    // Its counter lives in the runtime's registry, beside redisx's own metrics.
    audit.events.inc();
    let metrics = rx.metrics_text();
    assert!(metrics.contains("audit_events_total 2"), "{metrics}");
    assert!(metrics.contains("redisx_cache_"), "{metrics}");

    rx.shutdown().await;
    assert_eq!(
        journal.events(),
        [
            "start audit",
            "start reporter",
            "stop reporter",
            "stop audit"
        ],
        "stopped in reverse start order, the audit plugin's client still open"
    );
    assert!(
        exists(&server, &format!("{prefix}audit:stopped")).await,
        "the write made in `stop` landed"
    );
    // The clients close after the plugins stopped.
    let err = rx
        .client()
        .query::<()>(&redis::cmd("PING"))
        .await
        .expect_err("the clients are closed after shutdown");
    assert_eq!(err.code(), ErrorCode::ConnectionClosed, "{err}");
}

#[tokio::test]
async fn build_refuses_an_unknown_dependency_a_cycle_and_a_duplicate_name() {
    let server = RedisServer::start();
    let journal = Journal::default();
    let cases: [(&str, Vec<Named>); 4] = [
        (
            "an unknown dependency",
            vec![Named::new("orders", &["payments"], &journal)],
        ),
        (
            "a cycle",
            vec![
                Named::new("ping", &["pong"], &journal),
                Named::new("pong", &["ping"], &journal),
            ],
        ),
        (
            "a duplicate name",
            vec![
                Named::new("twin", &[], &journal),
                Named::new("twin", &[], &journal),
            ],
        ),
        (
            "the built-in cache's name",
            vec![Named::new("cache", &[], &journal)],
        ),
    ];
    for (what, plugins) in cases {
        let mut b = builder(&server, "plugins_bad_graph");
        for p in plugins {
            b = b.plugin(p);
        }
        let Err(err) = b.build().await else {
            panic!("{what} did not fail the build");
        };
        assert_eq!(err.code(), ErrorCode::ConfigInvalid, "{what}: {err}");
    }
    assert!(
        journal.events().is_empty(),
        "no plugin of an invalid graph started: {:?}",
        journal.events()
    );
}

#[tokio::test]
async fn a_plugin_that_fails_to_start_fails_the_build_and_the_started_ones_stop() {
    let server = RedisServer::start();
    let journal = Journal::default();
    let failing = Named {
        fail_start: true,
        ..Named::new("second", &["first"], &journal)
    };
    let err = builder(&server, "plugins_failed_start")
        .plugin(Named::new("first", &["cache"], &journal))
        .plugin(failing)
        .plugin(Named::new("third", &["second"], &journal))
        .build()
        .await
        .expect_err("a plugin that fails to start fails the build");
    assert_eq!(err.code(), ErrorCode::Internal, "the plugin's error: {err}");
    assert!(err.to_string().contains("second refused to start"), "{err}");
    assert_eq!(
        journal.events(),
        ["start first", "start second", "stop first"],
        "the plugin started before the failing one is stopped; the failing one and the one \
         after it are not"
    );
}

#[tokio::test]
async fn shutdown_stops_waiting_for_a_plugin_at_the_shutdown_timeout() {
    let server = RedisServer::start();
    let journal = Journal::default();
    let rx = builder(&server, "plugins_stuck")
        .plugin(Named::new("first", &[], &journal))
        .plugin(Stuck)
        .shutdown_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), rx.shutdown())
        .await
        .expect("shutdown waited for a stuck plugin past its timeout");
    assert!(rx.is_shut_down());
    let err = rx
        .client()
        .query::<()>(&redis::cmd("PING"))
        .await
        .expect_err("the clients are closed after shutdown");
    assert_eq!(err.code(), ErrorCode::ConnectionClosed, "{err}");
}
