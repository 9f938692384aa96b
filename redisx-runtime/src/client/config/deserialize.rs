//! serde `Deserialize` for the config types (feature `serde`), so they load from files with
//! `config`, `figment` or plain `serde_json`/`toml`.
//!
//! Durations are strings of whole numbers with units, `"150ms"`, `"5s"`, `"1m30s"`, `"2h"`,
//! `"1d"` (the units of the attributes' durations). Every table rejects unknown fields, so a
//! typo is an error rather than a default silently kept.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::{ConnectionConfig, DriverKind, ReconnectPolicy};
use crate::cache::{CacheConfig, CacheMode, StampedeConfig, StampedeFallback};
use crate::codec::CodecKind;
use crate::duration::parse_duration;
use crate::lock::{LockConfig, RetryStrategy};
use crate::rate_limit::{Algorithm, ErrorPolicy, Limit, RateLimitConfig};

/// A duration written as a string.
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).map(Dur).map_err(de::Error::custom)
    }
}

fn dur(d: Option<Dur>) -> Option<Duration> {
    d.map(|d| d.0)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconnectTable {
    initial: Option<Dur>,
    max: Option<Dur>,
    factor: Option<f64>,
    jitter: Option<bool>,
}

/// A table `{ initial = "1s", max = "30s", factor = 2.0, jitter = true }`; absent fields keep
/// their defaults.
impl<'de> Deserialize<'de> for ReconnectPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = ReconnectTable::deserialize(d)?;
        let mut p = Self::default();
        if let Some(v) = dur(t.initial) {
            p = p.initial(v);
        }
        if let Some(v) = dur(t.max) {
            p = p.max(v);
        }
        if let Some(v) = t.factor {
            p = p.factor(v);
        }
        if let Some(v) = t.jitter {
            p = p.jitter(v);
        }
        Ok(p)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum DriverRepr {
    Multiplexed,
    #[cfg(feature = "pool")]
    Pool {
        max_size: usize,
    },
}

/// `"multiplexed"`, or `{ pool = { max_size = 16 } }` (feature `pool`).
impl<'de> Deserialize<'de> for DriverKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match DriverRepr::deserialize(d)? {
            DriverRepr::Multiplexed => Self::Multiplexed,
            #[cfg(feature = "pool")]
            DriverRepr::Pool { max_size } => Self::Pool { max_size },
        })
    }
}

/// The table form of a [`ConnectionConfig`]: where (`url`, `host` + `port`, or `socket`), then
/// any option by its setter's name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionTable {
    url: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    socket: Option<PathBuf>,
    username: Option<String>,
    password: Option<String>,
    db: Option<i64>,
    tls: Option<bool>,
    tls_insecure: Option<bool>,
    tls_ca_cert: Option<String>,
    tls_ca_cert_file: Option<PathBuf>,
    tls_client_cert: Option<String>,
    tls_client_cert_file: Option<PathBuf>,
    tls_client_key: Option<String>,
    tls_client_key_file: Option<PathBuf>,
    client_name: Option<String>,
    resp3: Option<bool>,
    connect_timeout: Option<Dur>,
    command_timeout: Option<Dur>,
    #[cfg(feature = "pool")]
    pool_wait_timeout: Option<Dur>,
    #[cfg(feature = "pool")]
    pool_create_timeout: Option<Dur>,
    #[cfg(feature = "pool")]
    pool_recycle_timeout: Option<Dur>,
    reconnect: Option<ReconnectPolicy>,
    driver: Option<DriverKind>,
    lazy: Option<bool>,
}

/// PEM text given inline or as a file to read.
fn pem(
    inline: Option<String>,
    file: Option<PathBuf>,
    what: &str,
) -> Result<Option<Vec<u8>>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!("give `{what}` or `{what}_file`, not both")),
        (Some(text), None) => Ok(Some(text.into_bytes())),
        (None, Some(path)) => std::fs::read(&path)
            .map(Some)
            .map_err(|e| format!("cannot read `{what}_file` {}: {e}", path.display())),
        (None, None) => Ok(None),
    }
}

impl ConnectionTable {
    fn into_config(self) -> Result<ConnectionConfig, String> {
        let mut cfg = match (self.url, self.host, self.socket) {
            (Some(url), None, None) if self.port.is_none() => {
                ConnectionConfig::from_url(&url).map_err(|e| e.to_string())?
            }
            (None, Some(host), None) => ConnectionConfig::new(host, self.port.unwrap_or(6379)),
            (None, None, Some(socket)) if self.port.is_none() => {
                ConnectionConfig::unix_socket(socket)
            }
            _ => {
                return Err(
                    "a connection table names its server once: `url`, `host` (with an optional `port`) or `socket`"
                        .to_owned(),
                );
            }
        };
        cfg.username = self.username.or(cfg.username);
        cfg.password = self.password.or(cfg.password);
        cfg.db = self.db.unwrap_or(cfg.db);
        cfg.tls = self.tls.unwrap_or(cfg.tls);
        cfg.tls_insecure = self.tls_insecure.unwrap_or(cfg.tls_insecure);
        cfg.tls_ca_cert = pem(self.tls_ca_cert, self.tls_ca_cert_file, "tls_ca_cert")?;
        let cert = pem(
            self.tls_client_cert,
            self.tls_client_cert_file,
            "tls_client_cert",
        )?;
        let key = pem(
            self.tls_client_key,
            self.tls_client_key_file,
            "tls_client_key",
        )?;
        cfg.tls_client_cert = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err("`tls_client_cert` and `tls_client_key` go together".to_owned()),
        };
        cfg.client_name = self.client_name.or(cfg.client_name);
        cfg.resp3 = self.resp3.unwrap_or(cfg.resp3);
        cfg.connect_timeout = dur(self.connect_timeout).unwrap_or(cfg.connect_timeout);
        cfg.command_timeout = dur(self.command_timeout).unwrap_or(cfg.command_timeout);
        #[cfg(feature = "pool")]
        {
            cfg.pool_wait_timeout = dur(self.pool_wait_timeout);
            cfg.pool_create_timeout = dur(self.pool_create_timeout);
            cfg.pool_recycle_timeout = dur(self.pool_recycle_timeout);
        }
        cfg.reconnect = self.reconnect.unwrap_or(cfg.reconnect);
        cfg.driver = self.driver.unwrap_or(cfg.driver);
        cfg.lazy = self.lazy.unwrap_or(cfg.lazy);
        Ok(cfg)
    }
}

/// A URL string (as [`ConnectionConfig::from_url`] takes), or a table: `url`, `host` (+ `port`)
/// or `socket`, then any option by its setter's name, durations as strings and TLS
/// certificates as PEM text or `*_file` paths:
///
/// ```toml
/// [redis]
/// url = "rediss://cache.internal:6380/2"
/// password = "..."
/// client_name = "billing"
/// command_timeout = "500ms"
/// tls_ca_cert_file = "/etc/redis/ca.crt"
/// reconnect = { initial = "100ms", max = "5s" }
/// driver = { pool = { max_size = 16 } }
/// ```
impl<'de> Deserialize<'de> for ConnectionConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct UrlOrTable;
        impl<'de> Visitor<'de> for UrlOrTable {
            type Value = ConnectionConfig;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Redis URL string or a connection table")
            }

            fn visit_str<E: de::Error>(self, url: &str) -> Result<Self::Value, E> {
                ConnectionConfig::from_url(url).map_err(E::custom)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let table =
                    ConnectionTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                table.into_config().map_err(de::Error::custom)
            }
        }
        d.deserialize_any(UrlOrTable)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ModeRepr {
    L1L2,
    L1Only,
    L2Only,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum CodecRepr {
    Bincode,
    Json,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum FallbackRepr {
    Load,
    Error,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StampedeTable {
    enabled: Option<bool>,
    lock_ttl: Option<Dur>,
    wait_timeout: Option<Dur>,
    fallback: Option<FallbackRepr>,
}

/// A table `{ enabled = true, lock_ttl = "5s", wait_timeout = "10s", fallback = "load" }`
/// (`fallback` is `"load"` or `"error"`); absent fields keep their defaults.
impl<'de> Deserialize<'de> for StampedeConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = StampedeTable::deserialize(d)?;
        let mut s = Self::default();
        s.enabled = t.enabled.unwrap_or(s.enabled);
        s.lock_ttl = dur(t.lock_ttl).unwrap_or(s.lock_ttl);
        s.wait_timeout = dur(t.wait_timeout).unwrap_or(s.wait_timeout);
        if let Some(f) = t.fallback {
            s.fallback = match f {
                FallbackRepr::Load => StampedeFallback::Load,
                FallbackRepr::Error => StampedeFallback::Error,
            };
        }
        Ok(s)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheTable {
    mode: Option<ModeRepr>,
    l1_max_entries: Option<usize>,
    l1_max_bytes: Option<u64>,
    l1_ttl: Option<Dur>,
    default_ttl: Option<Dur>,
    max_ttl: Option<Dur>,
    key_prefix: Option<String>,
    codec: Option<CodecRepr>,
    client: Option<String>,
    max_key_len: Option<usize>,
    stampede: Option<StampedeConfig>,
    swr: Option<Dur>,
    stale_if_error: Option<Dur>,
    tag_index_prefix: Option<String>,
    max_tags_per_key: Option<usize>,
    invalidation: Option<bool>,
}

/// A table of the options by their setters' names (all but `stale_if_error_when`, a
/// function): `mode` is `"l1_l2"`, `"l1_only"` or `"l2_only"`, `codec` `"bincode"` or
/// `"json"`, durations strings; absent fields keep their defaults. The build validates it.
///
/// ```toml
/// [cache]
/// mode = "l1_l2"
/// l1_ttl = "30s"
/// default_ttl = "10m"
/// codec = "json"
/// stampede = { wait_timeout = "2s" }
/// ```
impl<'de> Deserialize<'de> for CacheConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = CacheTable::deserialize(d)?;
        let mut c = Self::default();
        if let Some(m) = t.mode {
            c.mode = match m {
                ModeRepr::L1L2 => CacheMode::L1L2,
                ModeRepr::L1Only => CacheMode::L1Only,
                ModeRepr::L2Only => CacheMode::L2Only,
            };
        }
        if let Some(k) = t.codec {
            c.codec = match k {
                CodecRepr::Bincode => CodecKind::Bincode,
                CodecRepr::Json => CodecKind::Json,
            };
        }
        c.l1_max_entries = t.l1_max_entries.unwrap_or(c.l1_max_entries);
        c.l1_max_bytes = t.l1_max_bytes.or(c.l1_max_bytes);
        c.l1_ttl = dur(t.l1_ttl).unwrap_or(c.l1_ttl);
        c.default_ttl = dur(t.default_ttl).unwrap_or(c.default_ttl);
        c.max_ttl = dur(t.max_ttl).unwrap_or(c.max_ttl);
        c.key_prefix = t.key_prefix.unwrap_or(c.key_prefix);
        c.client = t.client.or(c.client);
        c.max_key_len = t.max_key_len.unwrap_or(c.max_key_len);
        c.stampede = t.stampede.unwrap_or(c.stampede);
        c.swr = dur(t.swr).or(c.swr);
        c.stale_if_error = dur(t.stale_if_error).or(c.stale_if_error);
        c.tag_index_prefix = t.tag_index_prefix.unwrap_or(c.tag_index_prefix);
        c.max_tags_per_key = t.max_tags_per_key.unwrap_or(c.max_tags_per_key);
        c.invalidation = t.invalidation.unwrap_or(c.invalidation);
        Ok(c)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RetryRepr {
    Fixed { delay: Dur },
    Linear { step: Dur, max: Dur },
    Exponential { initial: Dur, max: Dur },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LockTable {
    default_ttl: Option<Dur>,
    max_ttl: Option<Dur>,
    key_prefix: Option<String>,
    client: Option<String>,
    retry: Option<RetryRepr>,
    jitter: Option<bool>,
    retries: Option<u32>,
    wait: Option<Dur>,
    auto_renew: Option<bool>,
    max_key_len: Option<usize>,
}

/// A table of the options by their setters' names: durations are strings, `retry` is one of
/// `{ fixed = { delay = "50ms" } }`, `{ linear = { step = "50ms", max = "1s" } }` or
/// `{ exponential = { initial = "100ms", max = "3s" } }`; absent fields keep their defaults.
/// The build validates it (a `default_ttl` over `max_ttl` is `CFG_INVALID`).
///
/// ```toml
/// [locks]
/// default_ttl = "10s"
/// retries = 5
/// retry = { exponential = { initial = "50ms", max = "2s" } }
/// ```
impl<'de> Deserialize<'de> for LockConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = LockTable::deserialize(d)?;
        let mut c = Self::default();
        c.default_ttl = dur(t.default_ttl).unwrap_or(c.default_ttl);
        c.max_ttl = dur(t.max_ttl).unwrap_or(c.max_ttl);
        c.key_prefix = t.key_prefix.unwrap_or(c.key_prefix);
        c.client = t.client.or(c.client);
        if let Some(r) = t.retry {
            c.retry = match r {
                RetryRepr::Fixed { delay } => RetryStrategy::Fixed(delay.0),
                RetryRepr::Linear { step, max } => RetryStrategy::Linear(step.0, max.0),
                RetryRepr::Exponential { initial, max } => {
                    RetryStrategy::Exponential(initial.0, max.0)
                }
            };
        }
        c.jitter = t.jitter.unwrap_or(c.jitter);
        c.retries = t.retries.unwrap_or(c.retries);
        c.wait = dur(t.wait).or(c.wait);
        c.auto_renew = t.auto_renew.unwrap_or(c.auto_renew);
        c.max_key_len = t.max_key_len.unwrap_or(c.max_key_len);
        Ok(c)
    }
}

/// An algorithm by its name (`"sliding_window"`, ...); an unknown name is an error naming the
/// accepted ones.
impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse()
            .map_err(|e: crate::Error| de::Error::custom(e.message()))
    }
}

/// `"fail_closed"` or `"fail_open"`.
impl<'de> Deserialize<'de> for ErrorPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Repr {
            FailClosed,
            FailOpen,
        }
        Ok(match Repr::deserialize(d)? {
            Repr::FailClosed => Self::FailClosed,
            Repr::FailOpen => Self::FailOpen,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Refill {
    tokens: u64,
    per: Dur,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitTable {
    algorithm: Option<Algorithm>,
    limit: u64,
    window: Dur,
    refill: Option<Refill>,
    burst: Option<u64>,
}

/// `{ algorithm = "token_bucket", limit = 100, window = "1m", refill = { tokens = 10, per =
/// "1s" } }` (`algorithm` defaults to the sliding window; `burst` for GCRA). The build
/// validates it.
impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = LimitTable::deserialize(d)?;
        let mut l = Limit::new(t.algorithm.unwrap_or_default(), t.limit, t.window.0);
        if let Some(r) = t.refill {
            l = l.refill(r.tokens, r.per.0);
        }
        if let Some(b) = t.burst {
            l = l.burst(b);
        }
        Ok(l)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitTable {
    default_limit: Option<Limit>,
    policies: Option<std::collections::HashMap<String, Vec<Limit>>>,
    key_prefix: Option<String>,
    client: Option<String>,
    error_policy: Option<ErrorPolicy>,
    local_deny: Option<bool>,
    local_deny_capacity: Option<usize>,
    max_key_len: Option<usize>,
}

/// A table of the options by their setters' names, `policies` a table of named lists of
/// limits; absent fields keep their defaults. The build validates it.
///
/// ```toml
/// [rate_limit]
/// default_limit = { limit = 300, window = "1m" }
/// error_policy = "fail_open"
/// policies.login = [{ algorithm = "sliding_window", limit = 5, window = "1m" }]
/// ```
impl<'de> Deserialize<'de> for RateLimitConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = RateLimitTable::deserialize(d)?;
        let mut c = Self::default();
        if let Some(l) = t.default_limit {
            c = c.default_limit(l);
        }
        for (name, limits) in t.policies.unwrap_or_default() {
            c = c.policy(&name, limits);
        }
        c.key_prefix = t.key_prefix.unwrap_or(c.key_prefix);
        c.client = t.client.or(c.client);
        c.error_policy = t.error_policy.unwrap_or(c.error_policy);
        c.local_deny = t.local_deny.unwrap_or(c.local_deny);
        c.local_deny_capacity = t.local_deny_capacity.unwrap_or(c.local_deny_capacity);
        c.max_key_len = t.max_key_len.unwrap_or(c.max_key_len);
        Ok(c)
    }
}

#[cfg(test)]
mod tests;
