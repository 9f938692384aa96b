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

#[test]
fn cluster_and_sentinel_urls_round_trip() {
    let cfg = ConnectionConfig::from_url("redis+cluster://app:s3cret@10.0.0.1:7000,[::1]:7001,h3")
        .unwrap();
    assert!(cfg.is_cluster());
    assert_eq!(
        cfg.cluster_seeds_value(),
        &[
            ("10.0.0.1".to_owned(), 7000),
            ("::1".to_owned(), 7001),
            ("h3".to_owned(), 6379)
        ]
    );
    assert_eq!(cfg.username_value(), Some("app"));
    assert_eq!(cfg.password_value(), Some("s3cret"));
    assert_eq!(
        cfg.to_string(),
        "redis+cluster://app:***@10.0.0.1:7000,[::1]:7001,h3:6379"
    );
    assert!(
        ConnectionConfig::from_url(&cfg.to_string().replace("***", "x"))
            .unwrap()
            .is_cluster()
    );

    let url = "rediss+sentinel://:m4ster@s1,s2:5000/orders/2?sentinel_user=w&sentinel_password=watch3r&client_name=api";
    let cfg = ConnectionConfig::from_url(url).unwrap();
    assert_eq!(cfg.sentinel_master_value(), Some("orders"));
    assert_eq!(
        cfg.sentinel_nodes_value(),
        &[("s1".to_owned(), 26379), ("s2".to_owned(), 5000)]
    );
    assert_eq!(cfg.db_value(), 2);
    assert!(cfg.tls_value() && cfg.sentinel_tls_value());
    assert_eq!(cfg.sentinel_username_value(), Some("w"));
    assert_eq!(cfg.client_name_value(), Some("api"));
    assert_eq!(cfg.password_value(), Some("m4ster"));
    let shown = format!("{cfg} {cfg:?}");
    assert!(
        !shown.contains("watch3r") && !shown.contains("m4ster"),
        "{shown}"
    );
}

#[test]
fn bad_cluster_and_sentinel_configs_are_refused() {
    for url in [
        "redis+cluster://h1:7000,h2:port",
        "redis+cluster://h1:7000/2",
        "redis+sentinel://s1:26379",
        "redis+sentinel://s1:26379/m?sentinel_user=u&sentinel_password=hunter2&bogus=1",
        "redis+sentinel://s1,,s2/m",
        "redis+sentinel://s1/m?sentinel_user=u",
    ] {
        let err = ConnectionConfig::from_url(url).unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::ConfigInvalid, "{url}");
        assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
    }
    let empty = ConnectionConfig::cluster(Vec::<(String, u16)>::new());
    assert!(empty.validate().is_err());
    let with_db = ConnectionConfig::cluster([("h", 7000)]).db(1);
    assert!(
        with_db
            .validate()
            .unwrap_err()
            .to_string()
            .contains("database 0")
    );
    assert!(
        ConnectionConfig::sentinel("", [("s", 26379)])
            .validate()
            .is_err()
    );
    assert!(
        ConnectionConfig::sentinel("m", [("s", 26379)])
            .validate()
            .is_ok()
    );
}
