//! Connections end to end against real `redis-server` processes: URL parsing (`/db`, `?db=`,
//! `user:password@` with an ACL user), authentication and connect failures with clear errors
//! that never repeat the password, and named clients.

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use redisx::{CacheConfig, ConnectionConfig, Error, ErrorCode, RedisX};
use redisx_tests::connections::{DRIVERS, build, config, raw_get};
use redisx_tests::{RedisServer, free_port, raw_connection, unique_prefix};

/// Everything an error shows: `Display`, `Debug` and the `Display` of every cause.
fn everything_shown(err: &Error) -> String {
    let mut out = format!("{err}\n{err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        out.push('\n');
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[tokio::test]
async fn db_in_the_url_selects_the_database() {
    let server = RedisServer::start_owned();
    for driver in DRIVERS {
        let key = format!("{}k", unique_prefix("db_path"));
        let rx = build(config(&format!("{}/3", server.url())).driver(driver), "db").await;
        let rx = rx.expect("builds");
        assert_eq!(rx.client().config().db_value(), 3);
        let () = rx
            .client()
            .query(redis::cmd("SET").arg(&key).arg("in-db-3"))
            .await
            .unwrap();
        assert_eq!(
            raw_get(&format!("{}/3", server.url()), &key)
                .await
                .as_deref(),
            Some("in-db-3"),
            "{driver:?}: the key is not in db 3"
        );
        assert_eq!(
            raw_get(&format!("{}/0", server.url()), &key).await,
            None,
            "{driver:?}: the key landed in db 0"
        );

        // `?db=` works too, and the cache writes into that database.
        let rx = build(
            config(&format!("{}?db=5", server.url())).driver(driver),
            "db",
        )
        .await
        .expect("builds");
        rx.cache().set("c", &"v".to_owned(), None).await.unwrap();
        let full = rx.cache().full_key("c");
        let in_5: bool = redis::cmd("EXISTS")
            .arg(&full)
            .query_async(&mut raw_connection(&format!("{}/5", server.url())).await)
            .await
            .unwrap();
        let in_0: bool = redis::cmd("EXISTS")
            .arg(&full)
            .query_async(&mut raw_connection(&server.url()).await)
            .await
            .unwrap();
        assert!(
            in_5 && !in_0,
            "{driver:?}: cache entry in db 5: {in_5}, in db 0: {in_0}"
        );
    }
}

#[tokio::test]
async fn an_acl_user_from_the_url_is_the_connection_user() {
    // A password with characters that must be percent-encoded in a URL.
    let password = "p@ss:w/rd 100%";
    let server = RedisServer::builder()
        .password("admin-only")
        .acl_user("app", password, ["~*", "&*", "+@all"])
        .start();
    for driver in DRIVERS {
        let cfg = config(&server.url_with_auth("app", password)).driver(driver);
        assert_eq!(cfg.username_value(), Some("app"));
        let rx = build(cfg, "acl").await.expect("the ACL user authenticates");
        let whoami: String = rx
            .client()
            .query(redis::cmd("ACL").arg("WHOAMI"))
            .await
            .unwrap();
        assert_eq!(whoami, "app", "{driver:?}");
        let v = rx
            .cache()
            .get_or_load("k", None, || async { Ok::<_, Error>(7u32) })
            .await
            .unwrap();
        assert_eq!(v, 7);
        rx.cache().clear_l1();
        assert_eq!(rx.cache().get::<u32>("k").await.unwrap(), Some(7));
        for shown in [
            format!("{rx:?}"),
            format!("{:?}", rx.client()),
            format!("{:?}", rx.client().config()),
            rx.client().config().to_string(),
        ] {
            assert!(!shown.contains(password), "the password is shown: {shown}");
            assert!(
                !shown.contains("p%40ss"),
                "the encoded password is shown: {shown}"
            );
        }
    }
}

#[tokio::test]
async fn a_wrong_password_fails_build_with_auth_failed_and_hides_the_password() {
    let server = RedisServer::builder()
        .password("right-default-pw")
        .acl_user("app", "right-app-pw", ["~*", "&*", "+@all"])
        .start();
    let wrong = "wr0ng-Pa55word";
    for driver in DRIVERS {
        for user in ["app", ""] {
            let url = server.url_with_auth(user, wrong);
            let err = build(config(&url).driver(driver), "wrong_pw")
                .await
                .expect_err("a wrong password must fail build()");
            assert_eq!(
                err.code(),
                ErrorCode::ConnectionAuthFailed,
                "{driver:?}, user `{user}`: {err}"
            );
            assert!(!err.is_retryable(), "an auth failure is not retryable");
            let shown = everything_shown(&err);
            assert!(
                !shown.contains(wrong),
                "{driver:?}: the password leaks: {shown}"
            );
            assert!(
                err.to_string().contains(&server.port().to_string()),
                "the error should name the server: {err}"
            );
        }
    }
}

/// A user who logs in but may not run a command connecting needs (here `SELECT`, for a
/// database other than 0) is told so, not that the password is wrong.
#[tokio::test]
async fn a_permission_missing_while_connecting_is_named_as_such() {
    let server = RedisServer::builder()
        .acl_user("app", "right-app-pw", ["~*", "&*", "+@all", "-select"])
        .start();
    for driver in DRIVERS {
        let url = format!("{}/1", server.url_with_auth("app", "right-app-pw"));
        let err = build(config(&url).driver(driver), "noperm")
            .await
            .expect_err("SELECT is not allowed");
        assert_eq!(
            err.code(),
            ErrorCode::ConnectionAuthFailed,
            "{driver:?}: {err:#}"
        );
        let text = err.to_string();
        assert!(
            text.contains("NOPERM") && !text.contains("check the user name and password"),
            "{driver:?}: the error names the missing permission: {text}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_port_fails_fast_with_a_clear_message() {
    let port = free_port(); // nothing listens there
    for driver in DRIVERS {
        let cfg = config(&format!("redis://app:unreachable-pw@127.0.0.1:{port}"))
            .connect_timeout(Duration::from_secs(1))
            .driver(driver);
        let started = Instant::now();
        let err = build(cfg, "unreachable")
            .await
            .expect_err("nothing listens on the port");
        let took = started.elapsed();
        assert!(
            matches!(
                err.code(),
                ErrorCode::ConnectionFailed | ErrorCode::ConnectionTimeout
            ),
            "{driver:?}: {err}"
        );
        assert!(err.is_retryable());
        assert!(took < Duration::from_secs(3), "{driver:?}: took {took:?}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("127.0.0.1:{port}")),
            "{driver:?}: the message does not name the server: {text}"
        );
        let shown = everything_shown(&err);
        assert!(
            !shown.contains("unreachable-pw"),
            "{driver:?}: the password leaks: {shown}"
        );
    }
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_at_connect() {
    // The kernel accepts the TCP connection (backlog), but nobody ever answers.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = silent.local_addr().unwrap().port();
    for driver in DRIVERS {
        let cfg = ConnectionConfig::new("127.0.0.1", port)
            .connect_timeout(Duration::from_millis(300))
            .command_timeout(Duration::from_millis(300))
            .driver(driver);
        let started = Instant::now();
        let err = build(cfg, "silent")
            .await
            .expect_err("a server that never answers");
        let took = started.elapsed();
        assert_eq!(
            err.code(),
            ErrorCode::ConnectionTimeout,
            "{driver:?}: {err}"
        );
        assert!(took < Duration::from_secs(3), "{driver:?}: took {took:?}");
    }
    drop(silent);
}

#[tokio::test]
async fn named_clients_reach_their_own_server() {
    let main = RedisServer::start_owned();
    let sessions = RedisServer::start_owned();
    let rx = RedisX::builder()
        .client("main", config(&main.url()))
        .client("sessions", config(&sessions.url()))
        .key_prefix(unique_prefix("named"))
        .cache(CacheConfig::default().client("sessions"))
        .build()
        .await
        .unwrap();
    assert_eq!(
        rx.client().name(),
        "main",
        "the first client is the default"
    );
    let () = rx
        .named_client("sessions")
        .unwrap()
        .query(redis::cmd("SET").arg("s").arg("on-sessions"))
        .await
        .unwrap();
    let () = rx
        .client()
        .query(redis::cmd("SET").arg("m").arg("on-main"))
        .await
        .unwrap();
    assert_eq!(
        raw_get(&sessions.url(), "s").await.as_deref(),
        Some("on-sessions")
    );
    assert_eq!(raw_get(&main.url(), "s").await, None);
    assert_eq!(raw_get(&main.url(), "m").await.as_deref(), Some("on-main"));
    assert_eq!(raw_get(&sessions.url(), "m").await, None);

    // The cache was pointed at `sessions`.
    rx.cache().set("c", &1u8, None).await.unwrap();
    let full = rx.cache().full_key("c");
    let mut on = Vec::new();
    for server in [&main, &sessions] {
        let exists: bool = redis::cmd("EXISTS")
            .arg(&full)
            .query_async(&mut raw_connection(&server.url()).await)
            .await
            .unwrap();
        on.push(exists);
    }
    assert_eq!(
        on,
        [false, true],
        "the cache entry must be on `sessions` only"
    );

    let err = rx.named_client("nope").unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigUnknownClient);
    let msg = err.to_string();
    assert!(
        msg.contains("nope") && msg.contains("main") && msg.contains("sessions"),
        "the error should name the unknown client and list the known ones: {msg}"
    );

    // `default_client` picks another default; unknown or duplicate names are config errors.
    let rx = RedisX::builder()
        .client("main", config(&main.url()))
        .client("sessions", config(&sessions.url()))
        .default_client("sessions")
        .key_prefix(unique_prefix("named_default"))
        .build()
        .await
        .unwrap();
    assert_eq!(rx.client().name(), "sessions");
    let err = RedisX::builder()
        .client("main", config(&main.url()))
        .default_client("ghost")
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigUnknownClient, "{err}");
    let err = RedisX::builder()
        .client("main", config(&main.url()))
        .client("main", config(&sessions.url()))
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigInvalid, "{err}");
    let err = RedisX::builder()
        .client("main", config(&main.url()))
        .cache(CacheConfig::default().client("ghost"))
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigUnknownClient, "{err}");
}
