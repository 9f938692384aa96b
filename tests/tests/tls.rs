//! `rediss://` against a redis-server with a TLS port, over whichever TLS backend this crate's
//! features pick: rustls by default, native-tls with
//! `cargo test -p redisx-tests --no-default-features --features tls-native --test tls` (as CI
//! runs it). The same behaviour is expected from both: a private CA; mutual TLS; a wrong CA, a
//! wrong host name, a missing or untrusted client certificate refused with a message that says
//! which; `rediss://` to a plain port failing without a byte of plaintext; `tls_insecure`; key
//! material never shown; where a backend cannot take an input (a client key that is not PKCS#8
//! on native-tls), a clear config error.
//!
//! Certificates are made with the `openssl` CLI at test time.

use std::time::Duration;

use redisx::{ConnectionConfig, DriverKind, Error, ErrorCode, RedisX};
use redisx_tests::cache::round_trip;
use redisx_tests::connections::{POLL, fast_reconnect};
use redisx_tests::spans::Capture;
use redisx_tests::tls::{TempDir, make_certificates, openssl, sign_certificate, tls_server_from};
use redisx_tests::{RedisServer, eventually, raw_connection};
use tracing_subscriber::layer::SubscriberExt as _;

/// The backend redis-rs uses: native-tls only when rustls is off.
const NATIVE: bool = cfg!(all(feature = "tls-native", not(feature = "tls-rustls")));

/// The drivers the refusals are checked on: their connect errors take different paths.
const DRIVERS: [DriverKind; 2] = [DriverKind::Multiplexed, DriverKind::Pool { max_size: 2 }];

/// A server with a TLS port presenting `server.crt` (for 127.0.0.1 and `localhost`); see
/// [`redisx_tests::tls::tls_server`].
fn tls_server(dir: &TempDir, auth_clients: &str) -> (RedisServer, u16) {
    tls_server_from(RedisServer::builder(), dir, "server", auth_clients)
}

fn tls_config(port: u16) -> ConnectionConfig {
    ConnectionConfig::from_url(&format!("rediss://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
}

async fn build(cfg: ConnectionConfig) -> redisx::Result<RedisX> {
    RedisX::builder().client("default", cfg).build().await
}

/// Builds with `cfg`, which must fail with `CONN_TLS_ERROR` whose message (the cause aside)
/// says `says`; returns the error.
async fn refused(cfg: ConnectionConfig, says: &str) -> Error {
    let err = build(cfg)
        .await
        .expect_err("the TLS connection must be refused");
    assert_eq!(err.code(), ErrorCode::ConnectionTls, "{err:#}");
    assert!(
        err.to_string().contains(says),
        "should say {says:?}: {err:#}"
    );
    err
}

/// `rediss://` with `tls_ca_cert` trusts a server whose certificate a private CA signed, and
/// the cache works over it.
#[tokio::test]
async fn tls_with_a_custom_ca() {
    let dir = TempDir::new("tls_ca");
    make_certificates(&dir);
    let (_server, port) = tls_server(&dir, "optional");
    let ca = dir.read("ca.crt");
    let rx = build(tls_config(port).tls_ca_cert(ca.clone()))
        .await
        .expect("connects over TLS trusting the test CA");
    assert!(rx.client().config().tls_value());
    assert_eq!(
        rx.client().config().tls_ca_cert_value(),
        Some(ca.as_slice())
    );
    round_trip(&rx, "tls_ca").await;
    rx.shutdown().await;
}

/// A server certificate that the trusted roots did not sign is refused with `CONN_TLS_ERROR`:
/// with the built-in roots, and with a custom CA that replaces them (it is not added to them).
/// The message says it is the CA (and which roots); the cause's text is the backend's own,
/// which shows which backend the features picked.
#[tokio::test]
async fn a_server_certificate_from_an_untrusted_ca_is_refused() {
    let dir = TempDir::new("tls_wrong_ca");
    make_certificates(&dir);
    let (_server, port) = tls_server(&dir, "optional");
    let backend_says = if NATIVE {
        "certificate verify failed"
    } else {
        "invalid peer certificate"
    };
    for driver in DRIVERS {
        for (cfg, says) in [
            (
                tls_config(port),
                "not signed by a trusted CA of the built-in roots",
            ),
            (
                tls_config(port).tls_ca_cert(dir.read("other-ca.crt")),
                "not signed by the CA of `tls_ca_cert`",
            ),
        ] {
            let err = refused(cfg.driver(driver), says).await;
            assert!(format!("{err:#}").contains(backend_says), "{err:#}");
            assert!(!err.to_string().contains("host name"), "{err:#}");
        }
    }
}

/// A certificate that the trusted CA signed for another name (`other.example` only) is refused
/// for `127.0.0.1` and for `localhost` with `CONN_TLS_ERROR`, and the message names the host
/// name, not the CA. With `tls_insecure`, which skips that check, the same server answers.
#[tokio::test]
async fn a_certificate_for_another_host_name_is_refused() {
    let dir = TempDir::new("tls_wrong_host");
    make_certificates(&dir);
    sign_certificate(
        &dir,
        "other-host",
        "ca",
        "subjectAltName=DNS:other.example\nextendedKeyUsage=serverAuth\n",
    );
    let (_server, port) = tls_server_from(RedisServer::builder(), &dir, "other-host", "optional");
    for host in ["127.0.0.1", "localhost"] {
        for driver in DRIVERS {
            let cfg = ConnectionConfig::from_url(&format!("rediss://{host}:{port}"))
                .unwrap()
                .connect_timeout(Duration::from_secs(5))
                .tls_ca_cert(dir.read("ca.crt"))
                .driver(driver);
            let says = format!("not valid for the host name `{host}`");
            let err = refused(cfg, &says).await;
            assert!(!err.to_string().contains("not signed"), "{err:#}");
        }
    }
    let rx = build(tls_config(port).tls_insecure(true))
        .await
        .expect("only the name was wrong");
    round_trip(&rx, "tls_wrong_host").await;
    rx.shutdown().await;
}

/// Mutual TLS: a server with `tls-auth-clients yes` accepts the client certificate that
/// `tls_client_cert` presents, and refuses a client without one, or with one signed by a CA it
/// does not trust, with a message that says so. rustls reads the server's alert
/// (`CONN_TLS_ERROR`); over OpenSSL the TLS 1.3 handshake completes on the client's side and
/// the server's reset may arrive before its alert can be read (`CONN_FAILED`): the message says
/// the same either way.
#[tokio::test]
async fn mutual_tls_accepts_the_client_certificate_and_refuses_others() {
    let dir = TempDir::new("tls_mutual");
    make_certificates(&dir);
    sign_certificate(
        &dir,
        "stranger",
        "other-ca",
        "extendedKeyUsage=clientAuth\n",
    );
    let (_server, port) = tls_server(&dir, "yes");
    let base = tls_config(port).tls_ca_cert(dir.read("ca.crt"));
    for driver in DRIVERS {
        let rx = build(
            base.clone()
                .tls_client_cert(dir.read("client.crt"), dir.read("client.key"))
                .driver(driver),
        )
        .await
        .expect("connects with the client certificate");
        round_trip(&rx, "tls_mutual").await;
        rx.shutdown().await;
    }
    let expected: &[ErrorCode] = if NATIVE {
        &[ErrorCode::ConnectionTls, ErrorCode::ConnectionFailed]
    } else {
        &[ErrorCode::ConnectionTls]
    };
    let stranger = base
        .clone()
        .tls_client_cert(dir.read("stranger.crt"), dir.read("stranger.key"));
    for (cfg, says) in [
        (base, "a client certificate (`tls-auth-clients yes`)"),
        (
            stranger,
            "refuses the client certificate (`tls_client_cert`)",
        ),
    ] {
        for driver in DRIVERS {
            let err = build(cfg.clone().driver(driver)).await.unwrap_err();
            assert!(expected.contains(&err.code()), "{err:#}");
            assert!(
                err.to_string().contains(says),
                "should say {says:?}: {err:#}"
            );
        }
    }
}

/// What `admin`'s server counted of the commands it ran: `total_commands_processed` and the
/// `INFO commandstats` lines (calls, rejected and failed calls per command) except `INFO`'s
/// own, which these reads add to.
async fn commands_seen(admin: &mut redis::aio::MultiplexedConnection) -> (u64, Vec<String>) {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .arg("commandstats")
        .query_async(admin)
        .await
        .unwrap();
    let total = info
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .expect("INFO stats has total_commands_processed")
        .trim()
        .parse()
        .unwrap();
    let stats = info
        .lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .map(str::to_owned)
        .collect();
    (total, stats)
}

/// `rediss://` to a plain (non-TLS) port fails, with a TLS error or a connect timeout that
/// says to check the TLS port (the server reads the handshake as the start of an inline
/// command and waits for its end), and never falls back to plaintext: the server ran no
/// command (its counters moved by this test's own `INFO` only), although the URL carries the
/// right password, with which a plaintext fallback would have authenticated and run commands.
/// Then the same URL as `redis://` does move the counters, which shows that they would see it.
#[tokio::test]
async fn rediss_never_falls_back_to_plaintext() {
    let password = "plain-fallback-pw";
    let server = RedisServer::builder().password(password).start();
    let mut admin = raw_connection(&server.admin_url()).await;
    let before = commands_seen(&mut admin).await;
    let url = format!("rediss://:{password}@127.0.0.1:{}", server.port());
    let base = ConnectionConfig::from_url(&url)
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .client_name("plaintext-probe");
    for cfg in [
        base.clone(),
        base.clone().tls_insecure(true),
        base.clone().driver(DriverKind::Pool { max_size: 2 }),
    ] {
        let err = build(cfg).await.expect_err("TLS to a plain port must fail");
        assert!(
            [ErrorCode::ConnectionTls, ErrorCode::ConnectionTimeout].contains(&err.code()),
            "{err:#}"
        );
        assert!(err.to_string().contains("`tls-port`"), "{err:#}");
    }
    let after = commands_seen(&mut admin).await;
    assert_eq!(
        after.0,
        before.0 + 1,
        "the server ran a command besides this test's INFO: {:?}",
        after.1
    );
    assert_eq!(after.1, before.1, "the server's commandstats moved");

    let plain = ConnectionConfig::from_url(&url.replacen("rediss://", "redis://", 1)).unwrap();
    let rx = build(plain).await.expect("the same URL in plaintext");
    rx.client().ping().await.unwrap();
    rx.shutdown().await;
    let control = commands_seen(&mut admin).await;
    assert!(control.0 > after.0 + 1, "{control:?}");
    assert_ne!(control.1, after.1);
}

/// The lines of `pem` between its `-----BEGIN`/`-----END` markers: what must never show.
fn pem_body(pem: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(pem)
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Key material never shows: the client key (its PEM body and marker) and the password are in
/// no `Debug` or `Display` of the config, the runtime or its client, in no error (message,
/// causes, `Debug`), and in no span or event field; across a build over mutual TLS with an ACL
/// user, a reconnect after a restart (which logs), and builds that fail: a wrong password, an
/// untrusted server CA, a key that does not match the certificate, a key that does not parse.
// Current-thread runtime: the subscriber is the thread's default, and every task (the
// reconnect loop too) runs on this thread.
#[tokio::test(flavor = "current_thread")]
async fn key_material_never_shows() {
    let password = "tls-Secret-pw-2718";
    let dir = TempDir::new("tls_secrets");
    make_certificates(&dir);
    let builder = RedisServer::builder().acl_user("tlsuser", password, ["~*", "&*", "+@all"]);
    let (mut server, port) = tls_server_from(builder, &dir, "server", "yes");
    let bad_key = "-----BEGIN PRIVATE KEY-----\nbm90LWEta2V5LWJ1dC1zZWNyZXQtYWxsLXRoZS1zYW1l\n\
                   -----END PRIVATE KEY-----\n";
    let mut secrets = pem_body(&dir.read("client.key"));
    secrets.extend(pem_body(&dir.read("server.key")));
    secrets.extend(pem_body(bad_key.as_bytes()));
    secrets.extend([password.to_owned(), "PRIVATE KEY".to_owned()]);
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));

    let good = ConnectionConfig::from_url(&format!("rediss://tlsuser:{password}@127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .command_timeout(Duration::from_millis(500))
        .reconnect(fast_reconnect())
        .tls_ca_cert(dir.read("ca.crt"))
        .tls_client_cert(dir.read("client.crt"), dir.read("client.key"));
    let mut shown = vec![format!("{good:?}"), good.to_string()];
    let rx = build(good.clone())
        .await
        .expect("mutual TLS with the ACL user");
    round_trip(&rx, "tls_secrets").await;
    server.restart();
    let back = eventually(Duration::from_secs(10), POLL, || async {
        rx.client().ping().await.is_ok()
    })
    .await;
    assert!(back, "no reconnect after the restart");
    shown.extend([
        format!("{rx:?}"),
        format!("{:?}", rx.client()),
        format!("{:?}", rx.client().config()),
        rx.client().config().to_string(),
    ]);
    rx.shutdown().await;

    shown.extend(failed_builds(&good, &dir, port, bad_key).await);

    let seen = capture.seen();
    assert!(
        seen.iter().any(|s| !s.is_span),
        "the restart should have logged events"
    );
    for text in &shown {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{secret:?} shows in: {text}"
            );
        }
    }
    for s in &seen {
        for (name, value) in &s.fields {
            for secret in &secrets {
                assert!(
                    !value.contains(secret.as_str()),
                    "{secret:?} shows in field `{name}` of `{}`: {value}",
                    s.name
                );
            }
        }
    }
}

/// The builds of [`key_material_never_shows`] that fail, from `good` (which works against the
/// server on `port`): a wrong password, an untrusted server CA, a client key that is not the
/// certificate's, and `bad_key`, which is no key. Each fails as expected and says why; returns
/// the errors' `Display`, `{:#}` and `Debug`.
async fn failed_builds(
    good: &ConnectionConfig,
    dir: &TempDir,
    port: u16,
    bad_key: &str,
) -> Vec<String> {
    let mut shown = Vec::new();
    let wrong_pw = ConnectionConfig::from_url(&format!("rediss://tlsuser:wrong@127.0.0.1:{port}"))
        .unwrap()
        .tls_ca_cert(dir.read("ca.crt"))
        .tls_client_cert(dir.read("client.crt"), dir.read("client.key"));
    // A key that is not the certificate's is found when connecting, not by `build`'s checks;
    // so is, over rustls, a PEM block whose content is not a key (native-tls parses it first).
    let (bad_key_code, bad_key_says) = if NATIVE {
        (
            ErrorCode::ConfigInvalid,
            "the TLS certificates cannot be used",
        )
    } else {
        (ErrorCode::ConnectionTls, "the TLS client cannot be set up")
    };
    let mismatched = good
        .clone()
        .tls_client_cert(dir.read("client.crt"), dir.read("server.key"));
    for (cfg, code, says) in [
        (
            wrong_pw,
            ErrorCode::ConnectionAuthFailed,
            "authentication failed",
        ),
        (
            good.clone().tls_ca_cert(dir.read("other-ca.crt")),
            ErrorCode::ConnectionTls,
            "not signed by the CA of `tls_ca_cert`",
        ),
        (
            mismatched,
            ErrorCode::ConnectionTls,
            "the key of `tls_client_cert` is not the certificate's key",
        ),
        (
            good.clone()
                .tls_client_cert(dir.read("client.crt"), bad_key),
            bad_key_code,
            bad_key_says,
        ),
    ] {
        let err = build(cfg).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:#}");
        assert!(
            err.to_string().contains(says),
            "should say {says:?}: {err:#}"
        );
        shown.extend([err.to_string(), format!("{err:#}"), format!("{err:?}")]);
    }
    shown
}

/// A client key in the traditional EC form (`BEGIN EC PRIVATE KEY`, not PKCS#8): rustls takes
/// it; native-tls takes only PKCS#8, so the build fails with a config error that says how to
/// convert the key.
#[tokio::test]
async fn a_client_key_that_is_not_pkcs8() {
    let dir = TempDir::new("tls_sec1");
    make_certificates(&dir);
    openssl(
        &dir,
        &["ec", "-in", "client.key", "-out", "client.sec1.key"],
    );
    let key = dir.read("client.sec1.key");
    assert!(String::from_utf8_lossy(&key).contains("BEGIN EC PRIVATE KEY"));
    let (_server, port) = tls_server(&dir, "yes");
    let cfg = tls_config(port)
        .tls_ca_cert(dir.read("ca.crt"))
        .tls_client_cert(dir.read("client.crt"), key);
    if NATIVE {
        let err = build(cfg).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConfigInvalid, "{err:#}");
        let text = format!("{err:#}");
        assert!(
            text.contains("PKCS#8") && text.contains("openssl pkcs8 -topk8"),
            "{text}"
        );
    } else {
        let rx = build(cfg).await.expect("rustls takes a SEC1 key");
        round_trip(&rx, "tls_sec1").await;
        rx.shutdown().await;
    }
}

/// `tls_insecure` (`?insecure=true`) connects to a server whose CA is not trusted, and each
/// such client logs a warning when it connects.
#[tokio::test]
async fn tls_insecure_skips_the_certificate_checks() {
    let dir = TempDir::new("tls_insecure");
    make_certificates(&dir);
    let (_server, port) = tls_server(&dir, "optional");
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let warnings = || {
        capture
            .seen()
            .iter()
            .filter(|s| {
                !s.is_span
                    && s.field("message")
                        .is_some_and(|m| m.contains("tls_insecure"))
            })
            .count()
    };
    for (n, cfg) in [
        tls_config(port).tls_insecure(true),
        ConnectionConfig::from_url(&format!("rediss://127.0.0.1:{port}?insecure=true")).unwrap(),
    ]
    .into_iter()
    .enumerate()
    {
        let rx = build(cfg).await.expect("connects without checking");
        round_trip(&rx, "tls_insecure").await;
        assert_eq!(
            warnings(),
            n + 1,
            "one warning per client that skips the checks"
        );
        rx.shutdown().await;
    }
}

/// A certificate that does not parse is a config error when the runtime is built.
#[tokio::test]
async fn tls_certificates_that_do_not_parse_fail_the_build() {
    let cfg = ConnectionConfig::from_url("rediss://127.0.0.1:1")
        .unwrap()
        .tls_ca_cert("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n");
    let err = build(cfg).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConfigInvalid, "{err}");
}
