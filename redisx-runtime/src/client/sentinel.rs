//! Sentinel: finding the master a [`ConnectionConfig::sentinel`] config names, and hearing of
//! a failover (`+switch-master`) so the shared connection moves to the new master at once.
//!
//! The master is asked for on every (re)connect, so anything that makes the connection
//! reconnect follows a failover: a lost connection (the old master died), a `READONLY` reply
//! (the old master was demoted; the driver treats it as a lost connection), and the
//! `+switch-master` event, which also catches the reads a demoted master would still answer.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;

use super::config::{ConnectionConfig, Nodes, SentinelSet};
use super::driver::connect_error;
use crate::error::{Error, ErrorCode, Result};

/// `cfg` aimed at one server: itself for a single server, the first seed of a cluster, and
/// for a sentinel config the master the sentinels name now.
pub(crate) async fn node_config(name: &str, cfg: &ConnectionConfig) -> Result<ConnectionConfig> {
    match &cfg.nodes {
        Nodes::Single => Ok(cfg.clone()),
        Nodes::Cluster(seeds) => {
            let (host, port) = seeds.first().cloned().unwrap_or_default();
            Ok(cfg.single_node(&host, port))
        }
        Nodes::Sentinel(set) if cfg.read_from_replicas => {
            let (host, port) = match replica_addr(cfg, set).await {
                Some(addr) => addr,
                // No healthy replica: read from the master.
                None => master_addr(name, cfg, set).await?,
            };
            Ok(cfg.single_node(&host, port))
        }
        Nodes::Sentinel(set) => {
            let (host, port) = master_addr(name, cfg, set).await?;
            Ok(cfg.single_node(&host, port))
        }
    }
}

/// A redis-rs client for the server of [`node_config`] (for a sentinel config, the one the
/// sentinels name now).
pub(crate) async fn node_client(name: &str, cfg: &ConnectionConfig) -> Result<redis::Client> {
    let target = node_config(name, cfg).await?;
    redis::Client::open(target.to_connection_info()).map_err(|e| connect_error(name, &target, e))
}

/// Asks the sentinels in turn for the master's address; the first answer wins.
async fn master_addr(
    name: &str,
    cfg: &ConnectionConfig,
    set: &SentinelSet,
) -> Result<(String, u16)> {
    let mut failures = Vec::new();
    let mut refused = 0;
    for (host, port) in &set.nodes {
        let sentinel = cfg.sentinel_node(set, host, *port);
        let asked = ask::<Option<(String, u16)>>(&sentinel, set, "GET-MASTER-ADDR-BY-NAME");
        match within(cfg.connect_timeout, asked).await {
            Ok(Ok(Some(addr))) => return Ok(addr),
            Ok(Ok(None)) => failures.push(format!("{host}:{port} does not know the master")),
            Ok(Err(e)) => {
                let err = connect_error(name, &sentinel, e);
                refused += usize::from(err.code() == ErrorCode::ConnectionAuthFailed);
                failures.push(format!("{host}:{port}: {err}"));
            }
            Err(()) => failures.push(format!(
                "{host}:{port}: no answer within {:?}",
                cfg.connect_timeout
            )),
        }
    }
    // Every sentinel refusing the credentials is a configuration error, not an outage.
    let (code, what) = if refused == set.nodes.len() {
        (
            ErrorCode::ConnectionAuthFailed,
            "the sentinels refused the credentials: check sentinel_user and sentinel_password \
             (`ConnectionConfig::sentinel_auth`)",
        )
    } else {
        (ErrorCode::ConnectionFailed, "no sentinel named a master")
    };
    Err(Error::new(
        code,
        format!("{what} for `{}` ({})", set.master_name, failures.join("; ")),
    )
    .with_context("client", name.to_owned())
    .with_context("server", cfg.to_string()))
}

/// A healthy replica of the master (`SENTINEL REPLICAS`: not flagged down or disconnected,
/// its link to the master up), from the first sentinel that answers; a random one of them.
async fn replica_addr(cfg: &ConnectionConfig, set: &SentinelSet) -> Option<(String, u16)> {
    for (host, port) in &set.nodes {
        let sentinel = cfg.sentinel_node(set, host, *port);
        let asked = ask::<Vec<HashMap<String, String>>>(&sentinel, set, "REPLICAS");
        let Ok(Ok(replicas)) = within(cfg.connect_timeout, asked).await else {
            continue;
        };
        let healthy: Vec<(String, u16)> = replicas
            .iter()
            .filter(|r| {
                let flags = r.get("flags").map_or("", String::as_str);
                !["s_down", "o_down", "disconnected"]
                    .iter()
                    .any(|f| flags.contains(f))
                    && r.get("master-link-status").is_none_or(|s| s == "ok")
            })
            .filter_map(|r| Some((r.get("ip")?.clone(), r.get("port")?.parse().ok()?)))
            .collect();
        if healthy.is_empty() {
            return None;
        }
        return Some(healthy[rand::random_range(0..healthy.len())].clone());
    }
    None
}

/// `SENTINEL <what> <master name>` asked of the sentinel at `sentinel` (a config from
/// [`ConnectionConfig::sentinel_node`]), on a connection of its own.
async fn ask<T: redis::FromRedisValue>(
    sentinel: &ConnectionConfig,
    set: &SentinelSet,
    what: &str,
) -> redis::RedisResult<T> {
    let client = redis::Client::open(sentinel.to_connection_info())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("SENTINEL")
        .arg(what)
        .arg(&set.master_name)
        .query_async(&mut conn)
        .await
}

async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> std::result::Result<T, ()> {
    tokio::time::timeout(limit, fut).await.map_err(drop)
}

/// Listens to the sentinels' `+switch-master` channel while `alive` says so, and calls
/// `switched` when the config's master moved. A sentinel that cannot be reached or goes away
/// is replaced by the next one, after a short pause.
pub(crate) async fn watch_switch_master(
    name: String,
    cfg: ConnectionConfig,
    alive: impl Fn() -> bool,
    switched: impl Fn(&str),
) {
    let Nodes::Sentinel(set) = &cfg.nodes else {
        return;
    };
    let mut next = 0;
    while alive() {
        let (host, port) = &set.nodes[next % set.nodes.len()];
        next += 1;
        let sentinel = cfg.sentinel_node(set, host, *port);
        let subscribed = async {
            let client = redis::Client::open(sentinel.to_connection_info())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe("+switch-master").await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let mut pubsub = match within(cfg.connect_timeout, subscribed).await {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(e)) => {
                tracing::debug!(target: "redisx", client = %name, sentinel = %format_args!("{host}:{port}"), error = %e, "cannot listen to the sentinel; trying the next");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(()) => continue,
        };
        let mut messages = pubsub.on_message();
        // Each message: "<master name> <old ip> <old port> <new ip> <new port>".
        loop {
            let msg = tokio::select! {
                msg = messages.next() => msg,
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    if alive() { continue }
                    return;
                }
            };
            let Some(msg) = msg else { break };
            let Ok(payload) = msg.get_payload::<String>() else {
                continue;
            };
            let mut words = payload.split(' ');
            if words.next() == Some(set.master_name.as_str()) {
                tracing::info!(target: "redisx", client = %name, event = %payload, "the sentinels switched the master; reconnecting");
                switched(&payload);
            }
        }
    }
}
