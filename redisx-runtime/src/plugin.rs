//! Plugins: what the runtime starts after connecting and stops before closing its clients.
//!
//! The built-in cache is a plugin (`"cache"`), and so is every later one (locks, rate limits,
//! idempotency, streams). Users add their own with
//! [`RedisXBuilder::plugin`](crate::RedisXBuilder::plugin). The builder starts plugins in
//! dependency order; [`RedisX::shutdown`](crate::RedisX::shutdown) stops them in reverse
//! within one deadline, then closes the clients, so a plugin can still use Redis in `stop`
//! (drain consumers, release what it holds).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::client::Client;
use crate::error::{Error, ErrorCode, Result};
use crate::key::KeyBuilder;
use crate::life::Life;
use crate::metrics::SharedRegistry;

/// The future a [`Plugin`]'s `start` and `stop` return.
pub type PluginFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A part of the runtime with a start and a stop: the built-in cache, or an application's own.
///
/// ```no_run
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use redisx_runtime::plugin::{Plugin, PluginContext, PluginFuture};
/// use redisx_runtime::{ConnectionConfig, RedisX};
///
/// #[derive(Default)]
/// struct Heartbeat {
///     beats: AtomicU64,
/// }
///
/// impl Plugin for Heartbeat {
///     fn name(&self) -> &'static str {
///         "heartbeat"
///     }
///
///     fn dependencies(&self) -> &'static [&'static str] {
///         &["cache"]
///     }
///
///     fn start<'a>(&'a self, ctx: &'a PluginContext) -> PluginFuture<'a, redisx_runtime::Result<()>> {
///         Box::pin(async move {
///             let client = ctx.client()?;
///             let key = ctx.keys("heartbeat:").full("last");
///             client.query::<()>(redis::cmd("SET").arg(key).arg("up")).await?;
///             self.beats.fetch_add(1, Ordering::Relaxed);
///             Ok(())
///         })
///     }
///
///     fn stop(&self, _deadline: tokio::time::Instant) -> PluginFuture<'_, ()> {
///         Box::pin(async {})
///     }
/// }
///
/// # #[allow(dead_code)]
/// # async fn start() -> redisx_runtime::Result<()> {
/// let rx = RedisX::builder()
///     .client("default", ConnectionConfig::from_url("redis://127.0.0.1:6379")?)
///     .plugin(Heartbeat::default())
///     .build()
///     .await?;
/// assert_eq!(rx.plugin::<Heartbeat>().unwrap().beats.load(Ordering::Relaxed), 1);
/// rx.shutdown().await;
/// # Ok(()) }
/// ```
pub trait Plugin: Send + Sync + 'static {
    /// The plugin's name, unique in a runtime (`"cache"` is the built-in cache's).
    fn name(&self) -> &'static str;

    /// The names of the plugins this one needs: they start before it and stop after it.
    fn dependencies(&self) -> &'static [&'static str] {
        &[]
    }

    /// Starts the plugin (subscribe, spawn background tasks, register metrics). An error
    /// fails `build()`, after the plugins already started are stopped.
    fn start<'a>(&'a self, ctx: &'a PluginContext) -> PluginFuture<'a, Result<()>>;

    /// Stops the plugin before the clients close; should be done by `deadline` (the runtime
    /// stops waiting for it then).
    fn stop(&self, deadline: tokio::time::Instant) -> PluginFuture<'_, ()>;
}

/// What a plugin is given to start: the runtime's clients, key prefix and metrics registry.
pub struct PluginContext {
    pub(crate) clients: std::collections::HashMap<String, Client>,
    pub(crate) default_client: Option<String>,
    pub(crate) key_prefix: String,
    pub(crate) registry: SharedRegistry,
    pub(crate) record_keys: bool,
    pub(crate) life: Arc<Life>,
}

impl std::fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginContext")
            .field("default_client", &self.default_client)
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

impl PluginContext {
    /// The runtime's default client.
    pub fn client(&self) -> Result<Client> {
        let name = self.default_client.as_deref().ok_or_else(|| {
            Error::new(
                ErrorCode::ConfigUnknownClient,
                "this runtime has no Redis client; add one with `.client(name, config)`",
            )
        })?;
        self.named_client(name)
    }

    /// A client by name.
    pub fn named_client(&self, name: &str) -> Result<Client> {
        self.clients.get(name).cloned().ok_or_else(|| {
            let mut names: Vec<_> = self.clients.keys().map(String::as_str).collect();
            names.sort_unstable();
            Error::new(
                ErrorCode::ConfigUnknownClient,
                format!(
                    "no client named `{name}`; the clients are: {}",
                    names.join(", ")
                ),
            )
        })
    }

    /// The client of a built-in plugin (`owner`, possessive, names it in the error): the one
    /// its config names (an [`ErrorCode::ConfigUnknownClient`] error when there is none of
    /// that name), else the default one; `None` for a runtime without clients (the plugin's
    /// calls then fail).
    ///
    /// Such a plugin needs its reads on the master: a client that reads from replicas
    /// ([`ConnectionConfig::read_from_replicas`](crate::ConnectionConfig::read_from_replicas))
    /// is a `CFG_INVALID` error.
    pub(crate) fn plugin_client(&self, owner: &str, named: Option<&str>) -> Result<Option<Client>> {
        let client = match named {
            Some(name) => self.named_client(name).map(Some).map_err(|e| {
                Error::new(
                    ErrorCode::ConfigUnknownClient,
                    format!("the {owner} client `{name}` is not among the configured clients"),
                )
                .with_source(e)
            })?,
            None => self.client().ok(),
        };
        if let Some(c) = &client
            && c.config().read_from_replicas_value()
        {
            return Err(Error::new(
                ErrorCode::ConfigInvalid,
                format!(
                    "the {owner} client `{}` reads from replicas, which may lag the master; \
                     this plugin needs its reads on the master: give it a client without \
                     `read_from_replicas` (only a cache may read from replicas)",
                    c.name()
                ),
            ));
        }
        Ok(client)
    }

    /// The app key prefix (`""` when none was set).
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The key builder of a plugin's namespace: `{app prefix}{plugin_prefix}{key}`.
    pub fn keys(&self, plugin_prefix: &str) -> KeyBuilder {
        KeyBuilder::new(&self.key_prefix, plugin_prefix)
    }

    /// Whether spans may record key values ([`RedisXBuilder::record_keys`]); off by default,
    /// since keys can carry personal data.
    ///
    /// [`RedisXBuilder::record_keys`]: crate::RedisXBuilder::record_keys
    pub fn record_keys(&self) -> bool {
        self.record_keys
    }

    /// The registry the runtime's metrics live in; a plugin registers its own beside them.
    pub fn registry(&self) -> &SharedRegistry {
        &self.registry
    }
}

/// Orders `plugins` so that each comes after the ones it depends on (keeping the given order
/// otherwise); a duplicate name, an unknown dependency or a cycle is a config error.
pub(crate) fn start_order<P: AsRef<dyn Plugin>>(plugins: Vec<P>) -> Result<Vec<P>> {
    let invalid = |msg: String| Error::new(ErrorCode::ConfigInvalid, msg);
    let names: Vec<&'static str> = plugins.iter().map(|p| p.as_ref().name()).collect();
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(invalid(format!("two plugins are named `{name}`")));
        }
    }
    for p in &plugins {
        let p = p.as_ref();
        if let Some(dep) = p.dependencies().iter().find(|d| !names.contains(d)) {
            return Err(invalid(format!(
                "the plugin `{}` needs the plugin `{dep}`, which is not configured",
                p.name()
            )));
        }
    }
    let mut pending: Vec<Option<P>> = plugins.into_iter().map(Some).collect();
    let mut ordered: Vec<P> = Vec::with_capacity(pending.len());
    while ordered.len() < pending.len() {
        let started: Vec<&'static str> = ordered.iter().map(|p| p.as_ref().name()).collect();
        let next = pending.iter().position(|p| {
            p.as_ref().is_some_and(|p| {
                p.as_ref()
                    .dependencies()
                    .iter()
                    .all(|d| started.contains(d))
            })
        });
        let Some(next) = next.and_then(|i| pending[i].take()) else {
            let stuck: Vec<&str> = pending
                .iter()
                .flatten()
                .map(|p| p.as_ref().name())
                .collect();
            return Err(invalid(format!(
                "the plugins {} depend on each other in a cycle",
                stuck.join(", ")
            )));
        };
        ordered.push(next);
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    struct Named(&'static str, &'static [&'static str]);

    impl Plugin for Named {
        fn name(&self) -> &'static str {
            self.0
        }
        fn dependencies(&self) -> &'static [&'static str] {
            self.1
        }
        fn start<'a>(&'a self, _: &'a PluginContext) -> PluginFuture<'a, Result<()>> {
            Box::pin(async { Ok(()) })
        }
        fn stop(&self, _: tokio::time::Instant) -> PluginFuture<'_, ()> {
            Box::pin(async {})
        }
    }

    fn order(plugins: &[(&'static str, &'static [&'static str])]) -> Result<Vec<&'static str>> {
        let plugins: Vec<Arc<dyn Plugin>> = plugins
            .iter()
            .map(|&(n, d)| Arc::new(Named(n, d)) as Arc<dyn Plugin>)
            .collect();
        Ok(start_order(plugins)?.iter().map(|p| p.name()).collect())
    }

    #[test]
    fn dependencies_start_first_and_order_is_kept_otherwise() {
        assert_eq!(
            order(&[("cache", &[]), ("b", &["a"]), ("a", &["cache"]), ("c", &[])]).unwrap(),
            ["cache", "a", "b", "c"]
        );
    }

    #[test]
    fn bad_graphs_are_config_errors() {
        let err = order(&[("a", &["b"]), ("b", &["a"])]).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConfigInvalid);
        assert!(err.message().contains("cycle"), "{err}");
        let err = order(&[("a", &["nope"])]).unwrap_err();
        assert!(err.message().contains("`nope`"), "{err}");
        let err = order(&[("a", &[]), ("a", &[])]).unwrap_err();
        assert!(err.message().contains("two plugins are named `a`"), "{err}");
    }
}
