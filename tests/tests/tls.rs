//! `rediss://` against a redis-server with a TLS port, over whichever TLS backend this crate's
//! features pick: rustls by default, native-tls with
//! `cargo test -p redisx-tests --no-default-features --features tls-native --test tls` (as CI
//! runs it). The same behaviour is expected from both: a private CA, client certificates, a wrong
//! CA refused with `CONN_TLS_ERROR`, `tls_insecure`; where a backend cannot take an input (a
//! client key that is not PKCS#8 on native-tls), a clear config error.
//!
//! Certificates are made with the `openssl` CLI at test time.

use std::time::Duration;

use redisx::{ConnectionConfig, ErrorCode, RedisX};
use redisx_tests::RedisServer;
use redisx_tests::cache::round_trip;
use redisx_tests::tls::{TempDir, make_certificates, openssl};

/// The backend redis-rs uses: native-tls only when rustls is off.
const NATIVE: bool = cfg!(all(feature = "tls-native", not(feature = "tls-rustls")));

/// A server with a TLS port besides its plain one, using the certificates in `dir`;
/// `auth_clients` is its `tls-auth-clients` (`yes`, `no`, `optional`).
fn tls_server(dir: &TempDir, auth_clients: &str) -> (RedisServer, u16) {
    let tls_port = redisx_tests::free_port();
    let server = RedisServer::builder()
        .arg("--tls-port")
        .arg(tls_port.to_string())
        .arg("--tls-cert-file")
        .arg(dir.path("server.crt"))
        .arg("--tls-key-file")
        .arg(dir.path("server.key"))
        .arg("--tls-ca-cert-file")
        .arg(dir.path("ca.crt"))
        .arg("--tls-auth-clients")
        .arg(auth_clients)
        .start();
    (server, tls_port)
}

fn tls_config(port: u16) -> ConnectionConfig {
    ConnectionConfig::from_url(&format!("rediss://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
}

async fn build(cfg: ConnectionConfig) -> redisx::Result<RedisX> {
    RedisX::builder().client("default", cfg).build().await
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
/// The cause's text is the backend's own, which shows which backend the features picked.
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
    for cfg in [
        tls_config(port),
        tls_config(port).tls_ca_cert(dir.read("other-ca.crt")),
    ] {
        let err = build(cfg).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConnectionTls, "{err:#}");
        assert!(format!("{err:#}").contains(backend_says), "{err:#}");
    }
}

/// A server that requires client certificates accepts the one `tls_client_cert` presents,
/// and refuses a client without one.
#[tokio::test]
async fn tls_with_a_client_certificate() {
    let dir = TempDir::new("tls_client");
    make_certificates(&dir);
    let (_server, port) = tls_server(&dir, "yes");
    let base = tls_config(port).tls_ca_cert(dir.read("ca.crt"));
    let rx = build(
        base.clone()
            .tls_client_cert(dir.read("client.crt"), dir.read("client.key")),
    )
    .await
    .expect("connects with the client certificate");
    round_trip(&rx, "tls_client").await;
    rx.shutdown().await;
    let err = build(base).await.unwrap_err();
    // rustls reads the server's "certificate required" alert (`CONN_TLS_ERROR`); over OpenSSL
    // the TLS 1.3 handshake completes on the client's side and the server then resets the
    // connection, which says nothing about TLS (`CONN_FAILED`).
    let expected: &[ErrorCode] = if NATIVE {
        &[ErrorCode::ConnectionTls, ErrorCode::ConnectionFailed]
    } else {
        &[ErrorCode::ConnectionTls]
    };
    assert!(expected.contains(&err.code()), "{err:#}");
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

/// `tls_insecure` (`?insecure=true`) connects to a server whose CA is not trusted.
#[tokio::test]
async fn tls_insecure_skips_the_certificate_checks() {
    let dir = TempDir::new("tls_insecure");
    make_certificates(&dir);
    let (_server, port) = tls_server(&dir, "optional");
    for cfg in [
        tls_config(port).tls_insecure(true),
        ConnectionConfig::from_url(&format!("rediss://127.0.0.1:{port}?insecure=true")).unwrap(),
    ] {
        let rx = build(cfg).await.expect("connects without checking");
        round_trip(&rx, "tls_insecure").await;
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
