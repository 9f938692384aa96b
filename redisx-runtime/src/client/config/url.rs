//! Redis URLs: parsing into a [`ConnectionConfig`], and redacting their passwords.
//!
//! The forms are redis-rs's: `redis://` and `rediss://` (TLS) with `user:password@host:port/db`,
//! and `redis+unix:///path` (or `unix:///path`) with `db`, `user` and `pass` as query
//! parameters. Both also take `protocol=resp3` and `client_name=NAME`; TCP URLs take
//! `insecure=true` (TLS without certificate checks) and `db`.

use crate::error::{Error, ErrorCode, Result};

use super::ConnectionConfig;

const EXPECTED: &str = "expected `redis://[user[:password]@]host[:port][/db]`, `rediss://...`, `redis+unix:///path/to/socket[?db=N]`, `redis+cluster://host:port,host:port` or `redis+sentinel://host:port,host:port/master_name[/db]`";

pub(super) fn parse(url: &str) -> Result<ConnectionConfig> {
    let bad = |why: &str| {
        Error::new(
            ErrorCode::ConfigInvalid,
            format!("invalid Redis URL: {why}; {EXPECTED}"),
        )
        .with_context("url", redact(url))
    };
    if url.contains("+cluster://") || url.contains("+sentinel://") {
        return super::topology::parse_multi_host(url, &bad);
    }
    parse_single(url, &bad)
}

/// Parses a URL of one server; `bad` makes the error for a reason.
pub(super) fn parse_single(url: &str, bad: &dyn Fn(&str) -> Error) -> Result<ConnectionConfig> {
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    let mut cfg = match parsed.scheme() {
        "redis" | "rediss" => {
            let host = parsed
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| bad("missing host"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let mut cfg = ConnectionConfig::new(host, parsed.port().unwrap_or(6379));
            cfg.tls = parsed.scheme() == "rediss";
            if !parsed.username().is_empty() {
                cfg.username = Some(percent_decode(parsed.username()));
            }
            if let Some(pw) = parsed.password() {
                cfg.password = Some(percent_decode(pw));
            }
            let path = parsed.path().trim_matches('/');
            if !path.is_empty() {
                cfg.db = parse_db(path).ok_or_else(|| {
                    bad(&format!("database `{path}` is not a non-negative number"))
                })?;
            }
            cfg
        }
        "redis+unix" | "unix" => {
            if parsed.host_str().is_some_and(|h| !h.is_empty()) {
                return Err(bad(
                    "a socket URL has no host: write `redis+unix:///absolute/path`",
                ));
            }
            let path = percent_decode(parsed.path());
            if path.is_empty() || path == "/" {
                return Err(bad("missing socket path"));
            }
            ConnectionConfig::unix_socket(path)
        }
        other => return Err(bad(&format!("unsupported scheme `{other}`"))),
    };
    let unix = cfg.socket.is_some();
    for (k, v) in parsed.query_pairs() {
        match &*k {
            "db" => {
                cfg.db = parse_db(&v)
                    .ok_or_else(|| bad(&format!("database `{v}` is not a non-negative number")))?;
            }
            "protocol" => {
                cfg.resp3 = match &*v {
                    "3" | "resp3" => true,
                    "2" | "resp2" => false,
                    _ => return Err(bad(&format!("protocol `{v}`; expected `resp2` or `resp3`"))),
                };
            }
            "client_name" => cfg.client_name = Some(v.into_owned()),
            "insecure" if !unix => cfg.tls_insecure = v == "true" || v == "1",
            "user" if unix => cfg.username = Some(v.into_owned()),
            "pass" if unix => cfg.password = Some(v.into_owned()),
            other => {
                let known = if unix {
                    "`db`, `user`, `pass`, `protocol` or `client_name`"
                } else {
                    "`db`, `insecure`, `protocol` or `client_name`"
                };
                return Err(bad(&format!(
                    "unknown query parameter `{other}`; expected {known}"
                )));
            }
        }
    }
    Ok(cfg)
}

fn parse_db(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().filter(|db| *db >= 0)
}

/// Replaces the password of a URL-like string with `***` (the `user:password@` part and a
/// `pass=` query parameter), even when it does not parse.
pub(super) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let mut out = match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let redacted = match userinfo.find(':') {
                Some(colon) => format!("{}:***", &userinfo[..colon]),
                None => userinfo.to_owned(),
            };
            format!("{}{}{}", &url[..scheme_end], redacted, &rest[at..])
        }
        None => url.to_owned(),
    };
    if let Some(q) = out.find('?') {
        let query: Vec<String> = out[q + 1..]
            .split('&')
            .map(|pair| {
                if let Some((key @ ("pass" | "sentinel_password"), _)) = pair.split_once('=') {
                    format!("{key}=***")
                } else {
                    pair.to_owned()
                }
            })
            .collect();
        out = format!("{}?{}", &out[..q], query.join("&"));
    }
    out
}

pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn parses_full_url() {
        let cfg = parse("rediss://bob:p%40ss@example.com:7000/3").unwrap();
        assert_eq!(cfg.host(), "example.com");
        assert_eq!(cfg.port(), 7000);
        assert_eq!(cfg.db_value(), 3);
        assert!(cfg.tls_value());
        assert_eq!(cfg.username_value(), Some("bob"));
        assert_eq!(cfg.password.as_deref(), Some("p@ss"));
        assert_eq!(cfg.to_string(), "rediss://bob:***@example.com:7000/3");
    }

    #[test]
    fn password_only_and_defaults() {
        let cfg = parse("redis://:hunter2@localhost").unwrap();
        assert_eq!(cfg.port(), 6379);
        assert_eq!(cfg.username_value(), None);
        assert_eq!(cfg.password.as_deref(), Some("hunter2"));
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert!(!cfg.to_string().contains("hunter2"));
    }

    #[test]
    fn parses_query_options() {
        let cfg = parse("redis://h/1?protocol=resp3&client_name=web-1").unwrap();
        assert!(cfg.resp3_value());
        assert_eq!(cfg.client_name_value(), Some("web-1"));
        assert_eq!(cfg.db_value(), 1);
        assert!(!parse("redis://h?protocol=2").unwrap().resp3_value());
    }

    #[test]
    fn parses_unix_socket_urls() {
        for url in [
            "redis+unix:///run/redis/redis.sock?db=2&user=app&pass=hunter2",
            "unix:///run/redis/redis.sock?db=2&user=app&pass=hunter2",
        ] {
            let cfg = parse(url).unwrap();
            assert_eq!(cfg.socket_path(), Some(Path::new("/run/redis/redis.sock")));
            assert_eq!(cfg.db_value(), 2);
            assert_eq!(cfg.username_value(), Some("app"));
            assert_eq!(cfg.password_value(), Some("hunter2"));
            assert_eq!(
                cfg.to_string(),
                "redis+unix:///run/redis/redis.sock?db=2&user=app&pass=***"
            );
            assert!(!format!("{cfg:?}").contains("hunter2"));
        }
        assert_eq!(
            parse("redis+unix:///tmp/r.sock").unwrap().to_string(),
            "redis+unix:///tmp/r.sock"
        );
    }

    #[test]
    fn rejects_bad_urls_without_leaking_password() {
        for url in [
            "http://u:hunter2@host",
            "redis://u:hunter2@host/notadb",
            "redis://u:hunter2@host/1?bogus=1",
            "redis://u:hunter2@host/1?protocol=4",
            "redis+unix:///tmp/r.sock?pass=hunter2&insecure=1",
            "redis+unix://host/tmp/r.sock?pass=hunter2",
            "redis+unix://?pass=hunter2",
            "not a url",
        ] {
            let err = parse(url).unwrap_err();
            assert_eq!(err.code(), ErrorCode::ConfigInvalid, "{url}");
            assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
        }
    }
}
