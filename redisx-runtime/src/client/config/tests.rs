use std::time::Duration;

use super::*;
use crate::error::ErrorCode;

#[test]
fn from_str_is_from_url() {
    let cfg: ConnectionConfig = "redis://u:pw@h:7/1".parse().unwrap();
    assert_eq!((cfg.host(), cfg.port(), cfg.db_value()), ("h", 7, 1));
    assert_eq!(cfg.password_value(), Some("pw"));
    let err = "http://h".parse::<ConnectionConfig>().unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigInvalid);
}

#[test]
fn backoff_doubles_and_caps() {
    let p = ReconnectPolicy::default();
    let delays: Vec<u64> = (0..7).map(|n| p.delay(n, 1.0).as_secs()).collect();
    assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
    assert_eq!(p.delay(0, 0.0), Duration::from_millis(500));
    let no_jitter = p.jitter(false);
    assert_eq!(no_jitter.delay(1, 0.0), Duration::from_secs(2));
}

#[cfg(feature = "pool")]
#[test]
fn pool_timeouts_default_to_the_connection_timeouts() {
    let cfg = ConnectionConfig::new("h", 1)
        .connect_timeout(Duration::from_secs(3))
        .command_timeout(Duration::from_secs(2));
    assert_eq!(cfg.pool_create_timeout_value(), Duration::from_secs(3));
    assert_eq!(cfg.pool_wait_timeout_value(), Duration::from_secs(2));
    assert_eq!(cfg.pool_recycle_timeout_value(), Duration::from_secs(2));
    let cfg = cfg
        .pool_wait_timeout(Duration::from_millis(10))
        .pool_create_timeout(Duration::from_millis(20))
        .pool_recycle_timeout(Duration::from_millis(30));
    assert_eq!(cfg.pool_wait_timeout_value(), Duration::from_millis(10));
    assert_eq!(cfg.pool_create_timeout_value(), Duration::from_millis(20));
    assert_eq!(cfg.pool_recycle_timeout_value(), Duration::from_millis(30));
}

#[test]
fn validate_rejects_inconsistent_options() {
    let err = |cfg: ConnectionConfig| cfg.validate().unwrap_err().to_string();
    assert!(err(ConnectionConfig::new("h", 1).client_name("two words")).contains("client name"));
    assert!(err(ConnectionConfig::new("h", 1).client_name("")).contains("client name"));
    assert!(err(ConnectionConfig::new("h", 1).tls_ca_cert("x")).contains("need TLS"));
    assert!(err(ConnectionConfig::unix_socket("/tmp/s").tls(true)).contains("Unix socket"));
    ConnectionConfig::new("h", 1)
        .client_name("web-1")
        .resp3(true)
        .validate()
        .unwrap();
}

#[cfg(any(feature = "tls-rustls", feature = "tls-native"))]
#[test]
fn validate_rejects_certificates_that_do_not_parse() {
    let cfg = ConnectionConfig::from_url("rediss://h")
        .unwrap()
        .tls_ca_cert("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
    let err = cfg.validate().unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigInvalid);
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[test]
fn debug_hides_the_password_and_the_client_key() {
    let cfg = ConnectionConfig::from_url("rediss://u:hunter2@h")
        .unwrap()
        .tls_client_cert("CERT", "SECRET-KEY");
    let debug = format!("{cfg:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("SECRET-KEY"),
        "{debug}"
    );
    assert_eq!(
        cfg.tls_client_cert_value(),
        Some((&b"CERT"[..], &b"SECRET-KEY"[..]))
    );
}
