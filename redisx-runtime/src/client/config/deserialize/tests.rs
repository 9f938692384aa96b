use super::*;

fn from_json<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|e| e.to_string())
}

#[test]
fn durations_parse_in_the_attribute_units() {
    let ok = |s: &str| parse_duration(s).unwrap();
    assert_eq!(ok("150ms"), Duration::from_millis(150));
    assert_eq!(ok("5s"), Duration::from_secs(5));
    assert_eq!(ok("1m30s"), Duration::from_secs(90));
    assert_eq!(ok("2h"), Duration::from_secs(7200));
    assert_eq!(ok("1d"), Duration::from_secs(86_400));
    assert_eq!(ok("0s"), Duration::ZERO);
    for bad in [
        "",
        "5",
        "s",
        "5 s",
        "1.5s",
        "5sec",
        "-1s",
        "99999999999999999999s",
    ] {
        let err = parse_duration(bad).unwrap_err();
        assert!(err.contains("invalid duration"), "{bad}: {err}");
    }
}

#[test]
fn a_connection_config_loads_from_a_url_string() {
    let cfg: ConnectionConfig = from_json(r#""redis://u:pw@h:7/2?protocol=resp3""#).unwrap();
    assert_eq!((cfg.host(), cfg.port(), cfg.db_value()), ("h", 7, 2));
    assert!(cfg.resp3_value());
    let err = from_json::<ConnectionConfig>(r#""http://u:hunter2@h""#).unwrap_err();
    assert!(
        err.contains("unsupported scheme") && !err.contains("hunter2"),
        "{err}"
    );
}

#[test]
fn cluster_and_sentinel_configs_load_from_urls() {
    let cfg: ConnectionConfig = from_json(
        r#"{ "url": "redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7000?read_from_replicas=true", "command_timeout": "500ms" }"#,
    )
    .unwrap();
    assert_eq!(cfg.cluster_seeds_value().len(), 2);
    assert!(cfg.read_from_replicas_value());
    assert_eq!(
        cfg.command_timeout_value(),
        std::time::Duration::from_millis(500)
    );
    let cfg: ConnectionConfig =
        from_json(r#""redis+sentinel://s1:26379,s2:26379/orders/1?sentinel_password=pw""#).unwrap();
    assert_eq!(cfg.sentinel_master_value(), Some("orders"));
    assert_eq!(cfg.db_value(), 1);
}

#[test]
fn a_connection_config_loads_from_a_table() {
    let cfg: ConnectionConfig = from_json(
        r#"{
            "url": "redis://h:7",
            "password": "pw",
            "db": 3,
            "client_name": "billing",
            "resp3": true,
            "command_timeout": "500ms",
            "connect_timeout": "2s",
            "reconnect": { "initial": "100ms", "max": "5s", "jitter": false },
            "driver": "multiplexed",
            "lazy": true
        }"#,
    )
    .unwrap();
    assert_eq!((cfg.host(), cfg.port(), cfg.db_value()), ("h", 7, 3));
    assert_eq!(cfg.password_value(), Some("pw"));
    assert_eq!(cfg.client_name_value(), Some("billing"));
    assert!(cfg.resp3_value() && cfg.lazy_value());
    assert_eq!(cfg.command_timeout_value(), Duration::from_millis(500));
    assert_eq!(cfg.connect_timeout_value(), Duration::from_secs(2));
    let r = cfg.reconnect_value();
    assert_eq!(r.initial_value(), Duration::from_millis(100));
    assert_eq!(r.max_value(), Duration::from_secs(5));
    assert!(!r.jitter_value());
    assert!((r.factor_value() - 2.0).abs() < f64::EPSILON);

    let cfg: ConnectionConfig = from_json(r#"{ "host": "10.0.0.5" }"#).unwrap();
    assert_eq!((cfg.host(), cfg.port()), ("10.0.0.5", 6379));
    let cfg: ConnectionConfig = from_json(r#"{ "socket": "/run/redis.sock", "db": 1 }"#).unwrap();
    assert_eq!(cfg.to_string(), "redis+unix:///run/redis.sock?db=1");
    let cfg: ConnectionConfig = from_json(
        r#"{ "url": "rediss://h", "tls_ca_cert": "CA", "tls_client_cert": "C", "tls_client_key": "K" }"#,
    )
    .unwrap();
    assert_eq!(cfg.tls_ca_cert_value(), Some(&b"CA"[..]));
    assert_eq!(cfg.tls_client_cert_value(), Some((&b"C"[..], &b"K"[..])));
}

#[cfg(feature = "pool")]
#[test]
fn a_pool_driver_and_its_timeouts_load() {
    let cfg: ConnectionConfig = from_json(
        r#"{ "host": "h", "driver": { "pool": { "max_size": 16 } }, "pool_wait_timeout": "250ms" }"#,
    )
    .unwrap();
    assert_eq!(cfg.driver_value(), DriverKind::Pool { max_size: 16 });
    assert_eq!(cfg.pool_wait_timeout_value(), Duration::from_millis(250));
}

#[test]
fn connection_tables_reject_mistakes() {
    for (json, expect) in [
        (
            r#"{ "host": "h", "comand_timeout": "1s" }"#,
            "unknown field",
        ),
        (
            r#"{ "host": "h", "command_timeout": "1 s" }"#,
            "invalid duration",
        ),
        (r#"{ "host": "h", "command_timeout": 5 }"#, "invalid type"),
        (
            r#"{ "url": "redis://h", "host": "h" }"#,
            "names its server once",
        ),
        (r#"{ "db": 1 }"#, "names its server once"),
        (
            r#"{ "url": "rediss://h", "tls_client_cert": "C" }"#,
            "go together",
        ),
        (
            r#"{ "url": "rediss://h", "tls_ca_cert_file": "/nonexistent/ca.crt" }"#,
            "cannot read",
        ),
        (
            r#"{ "host": "h", "driver": "carrier_pigeon" }"#,
            "unknown variant",
        ),
        ("5", "a Redis URL string or a connection table"),
    ] {
        let err = from_json::<ConnectionConfig>(json).unwrap_err();
        assert!(err.contains(expect), "{json}: {err}");
    }
}

#[test]
fn a_cache_config_loads_from_a_table() {
    let c: CacheConfig = from_json(
        r#"{
            "mode": "l2_only",
            "l1_ttl": "30s",
            "default_ttl": "10m",
            "max_ttl": "1d",
            "codec": "json",
            "key_prefix": "c:",
            "swr": "30s",
            "stampede": { "wait_timeout": "2s", "fallback": "error" },
            "invalidation": false
        }"#,
    )
    .unwrap();
    assert_eq!(c.mode_value(), CacheMode::L2Only);
    assert_eq!(c.l1_ttl_value(), Duration::from_secs(30));
    assert_eq!(c.default_ttl_value(), Duration::from_secs(600));
    assert_eq!(c.max_ttl_value(), Duration::from_secs(86_400));
    assert_eq!(c.codec_value(), CodecKind::Json);
    assert_eq!(c.key_prefix_value(), "c:");
    assert_eq!(c.swr_value(), Some(Duration::from_secs(30)));
    let s = c.stampede_value();
    assert_eq!(s.wait_timeout_value(), Duration::from_secs(2));
    assert_eq!(s.fallback_value(), StampedeFallback::Error);
    assert!(s.enabled_value());
    assert!(!c.invalidation_value());
    let defaults: CacheConfig = from_json("{}").unwrap();
    assert_eq!(
        defaults.default_ttl_value(),
        CacheConfig::default().default_ttl_value()
    );
    let err = from_json::<CacheConfig>(r#"{ "mode": "l3" }"#).unwrap_err();
    assert!(err.contains("unknown variant"), "{err}");
}

#[test]
fn a_lock_config_loads_from_a_table() {
    let cfg: LockConfig = from_json(
        r#"{"default_ttl": "10s", "max_ttl": "1m", "key_prefix": "mutex:", "client": "coord",
            "retry": {"linear": {"step": "50ms", "max": "1s"}}, "jitter": false,
            "retries": 5, "wait": "2s", "auto_renew": false, "max_key_len": 256}"#,
    )
    .unwrap();
    let ms = Duration::from_millis;
    assert_eq!(cfg.default_ttl_value(), Duration::from_secs(10));
    assert_eq!(cfg.max_ttl_value(), Duration::from_secs(60));
    assert_eq!(cfg.key_prefix_value(), "mutex:");
    assert_eq!(cfg.client_value(), Some("coord"));
    assert_eq!(cfg.retry_value(), RetryStrategy::Linear(ms(50), ms(1000)));
    assert!(!cfg.jitter_value() && !cfg.auto_renew_value());
    assert_eq!(cfg.retries_value(), 5);
    assert_eq!(cfg.wait_value(), Some(Duration::from_secs(2)));
    assert_eq!(cfg.max_key_len_value(), 256);

    let empty: LockConfig = from_json("{}").unwrap();
    assert_eq!(empty, LockConfig::default());
    let fixed: LockConfig = from_json(r#"{"retry": {"fixed": {"delay": "5ms"}}}"#).unwrap();
    assert_eq!(fixed.retry_value(), RetryStrategy::Fixed(ms(5)));

    let err = from_json::<LockConfig>(r#"{"ttl": "1s"}"#).unwrap_err();
    assert!(err.contains("unknown field `ttl`"), "{err}");
    let err = from_json::<LockConfig>(r#"{"retry": {"random": {}}}"#).unwrap_err();
    assert!(err.contains("unknown variant `random`"), "{err}");
    let err = from_json::<LockConfig>(r#"{"wait": "soon"}"#).unwrap_err();
    assert!(err.contains("invalid duration"), "{err}");
}

#[test]
fn a_rate_limit_config_loads_from_a_table() {
    use crate::rate_limit::{Algorithm, ErrorPolicy, Limit, RateLimitConfig};
    let cfg: RateLimitConfig = from_json(
        r#"{"default_limit": {"limit": 300, "window": "1m"},
            "policies": {"login": [{"algorithm": "fixed_window", "limit": 5, "window": "1m"},
                                    {"algorithm": "token_bucket", "limit": 50, "window": "1h",
                                     "refill": {"tokens": 1, "per": "1m"}}],
                         "smooth": [{"algorithm": "gcra", "limit": 10, "window": "1s", "burst": 3}]},
            "key_prefix": "limits:", "client": "rl", "error_policy": "fail_open",
            "local_deny": false, "local_deny_capacity": 10, "max_key_len": 64}"#,
    )
    .unwrap();
    let s = Duration::from_secs;
    assert_eq!(
        cfg.default_limit_value(),
        &Limit::sliding_window(300, s(60))
    );
    assert_eq!(
        cfg.policy_value("login").unwrap(),
        [
            Limit::fixed_window(5, s(60)),
            Limit::token_bucket(50, s(3600)).refill(1, s(60)),
        ]
    );
    assert_eq!(
        cfg.policy_value("smooth").unwrap(),
        [Limit::gcra(10, s(1)).burst(3)]
    );
    assert_eq!(cfg.error_policy_value(), ErrorPolicy::FailOpen);
    assert!(!cfg.local_deny_value());
    assert!(cfg.validate().is_ok());

    let empty: RateLimitConfig = from_json("{}").unwrap();
    assert_eq!(
        empty.default_limit_value().algorithm(),
        Algorithm::SlidingWindow
    );
    let err = from_json::<RateLimitConfig>(
        r#"{"default_limit": {"algorithm": "leaky", "limit": 1, "window": "1s"}}"#,
    )
    .unwrap_err();
    assert!(
        err.contains("unknown rate limit algorithm `leaky`"),
        "{err}"
    );
    let err = from_json::<RateLimitConfig>(r#"{"error_policy": "fail_sometimes"}"#).unwrap_err();
    assert!(err.contains("unknown variant"), "{err}");
    let err = from_json::<RateLimitConfig>(r#"{"limit": 5}"#).unwrap_err();
    assert!(err.contains("unknown field `limit`"), "{err}");
}
