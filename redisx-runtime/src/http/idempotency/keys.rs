//! The key of a request: read from its one header, checked, and scoped by its tenant so that no
//! tenant can name another one's record; [`IdempotencyKey`], what the inner service sees of it.

use std::fmt::Write as _;

use http::HeaderMap;

use super::Config;

/// What a request's key header holds.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Header<'a> {
    /// No header.
    Missing,
    /// The header more than once.
    Repeated,
    /// One value that is not an acceptable key.
    Invalid,
    /// One acceptable key.
    Key(&'a str),
}

/// Reads and checks the key header: sent once, 1 to `max_key_len` bytes, and visible ASCII
/// (or what the layer's own check accepts).
pub(super) fn read<'a>(cfg: &Config, headers: &'a HeaderMap) -> Header<'a> {
    let mut values = headers.get_all(&cfg.header).iter();
    let Some(value) = values.next() else {
        return Header::Missing;
    };
    if values.next().is_some() {
        return Header::Repeated;
    }
    let Ok(value) = value.to_str() else {
        return Header::Invalid;
    };
    if value.is_empty() || value.len() > cfg.max_key_len {
        return Header::Invalid;
    }
    let accepted = match &cfg.key_check {
        Some(check) => check(value),
        None => visible_ascii(value),
    };
    if accepted {
        Header::Key(value)
    } else {
        Header::Invalid
    }
}

/// Whether every byte is visible ASCII (`!` to `~`).
fn visible_ascii(v: &str) -> bool {
    v.bytes().all(|b| b.is_ascii_graphic())
}

/// The plugin key of a request's record: `{prefix}{value}`, or with a tenant
/// `{prefix}{tenant}:{value}` where the tenant's `%`, `:` and every byte outside visible ASCII
/// are percent-encoded. The tenant part then holds no `:`, so the first `:` after the prefix
/// ends it, and two different (tenant, value) pairs never share a key.
pub(super) fn record_key(prefix: &str, tenant: Option<&str>, value: &str) -> String {
    let mut key =
        String::with_capacity(prefix.len() + value.len() + tenant.map_or(0, |t| t.len() + 1));
    key.push_str(prefix);
    if let Some(tenant) = tenant {
        for b in tenant.bytes() {
            if b.is_ascii_graphic() && b != b'%' && b != b':' {
                key.push(char::from(b));
            } else {
                let _ = write!(key, "%{b:02X}");
            }
        }
        key.push(':');
    }
    key.push_str(value);
    key
}

/// The idempotency key of a request the [`IdempotencyLayer`](super::IdempotencyLayer)
/// checked, in its extensions: the inner service's handle on the record
/// (`rx.idempotency().get(k.key())`), or the key of an
/// [`Idempotency::run`](crate::idempotency::Idempotency::run) underneath, which then runs
/// under the layer's claim.
///
/// ```no_run
/// use axum::{Extension, Router, routing::post};
/// use redisx_runtime::http::{IdempotencyKey, IdempotencyLayer};
/// use redisx_runtime::idempotency::IdempotencyOptions;
///
/// # #[allow(dead_code)]
/// # fn app(rx: redisx_runtime::RedisX) -> Router {
/// let handler_rx = rx.clone();
/// Router::new()
///     .route("/refunds", post(move |Extension(k): Extension<IdempotencyKey>| {
///         let rx = handler_rx.clone();
///         async move {
///             // Runs once, under the layer's claim (no second check, no waiting).
///             let n: u64 = rx
///                 .idempotency()
///                 .run(k.key(), "refund", &IdempotencyOptions::new(), async { Ok::<_, redisx_runtime::Error>(1) })
///                 .await
///                 .unwrap_or(0);
///             n.to_string()
///         }
///     }))
///     .layer(IdempotencyLayer::new().runtime(rx).required(true))
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub(super) key: String,
    pub(super) value: String,
    pub(super) tenant: Option<String>,
}

impl IdempotencyKey {
    /// The plugin's key of the record (without the runtime's prefixes):
    /// `{layer prefix}{value}`, or `{layer prefix}{tenant, percent-encoded}:{value}`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The header's value, as the client sent it.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The tenant the layer's extractor found, as it found it.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::IdempotencyLayer;
    use http::HeaderValue;

    /// The key header once per value (as raw bytes: non-ASCII passes through).
    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            let value = HeaderValue::from_bytes(v.as_bytes()).unwrap();
            h.append("idempotency-key", value);
        }
        h
    }

    #[test]
    fn a_key_is_sent_once_and_is_visible_ascii() {
        let layer = IdempotencyLayer::new();
        let cfg = &layer.cfg;
        assert_eq!(read(cfg, &headers(&[])), Header::Missing);
        assert_eq!(read(cfg, &headers(&["a", "b"])), Header::Repeated);
        assert_eq!(read(cfg, &headers(&["order-1"])), Header::Key("order-1"));
        assert_eq!(read(cfg, &headers(&["a b"])), Header::Invalid);
        assert_eq!(read(cfg, &headers(&[""])), Header::Invalid);
        assert_eq!(read(cfg, &headers(&["caf\u{e9}"])), Header::Invalid);
        let long = "k".repeat(256);
        let mut h = HeaderMap::new();
        h.insert("idempotency-key", HeaderValue::from_str(&long).unwrap());
        assert_eq!(read(cfg, &h), Header::Invalid);
        h.insert(
            "idempotency-key",
            HeaderValue::from_str(&long[1..]).unwrap(),
        );
        assert_eq!(read(cfg, &h), Header::Key(&long[1..]));
    }

    #[test]
    fn a_custom_check_replaces_the_characters_but_not_the_length() {
        let layer = IdempotencyLayer::new()
            .max_key_len(4)
            .validate_key(|k| k.chars().all(|c| c.is_ascii_digit() || c == ' '));
        let cfg = &layer.cfg;
        assert_eq!(read(cfg, &headers(&["1 2"])), Header::Key("1 2"));
        assert_eq!(read(cfg, &headers(&["abc"])), Header::Invalid);
        assert_eq!(read(cfg, &headers(&["12345"])), Header::Invalid);
    }

    #[test]
    fn a_tenant_cannot_name_another_tenants_key() {
        assert_eq!(record_key("", None, "k:1"), "k:1");
        assert_eq!(record_key("p:", Some("user:42"), "k"), "p:user%3A42:k");
        // Without the escape both would be `a:b:c`.
        assert_ne!(
            record_key("", Some("a:b"), "c"),
            record_key("", Some("a"), "b:c")
        );
        assert_ne!(
            record_key("", Some("a%3Ab"), "c"),
            record_key("", Some("a:b"), "c")
        );
        assert_eq!(record_key("", Some("t \u{e9}"), "k"), "t%20%C3%A9:k");
    }
}
