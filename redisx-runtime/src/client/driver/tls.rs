//! The connect errors of `rediss://` connections: which TLS failure an error is (read from
//! the backend's text) and a message that says it.

use crate::client::config::ConnectionConfig;

/// What a connect timeout adds over TLS: a plain port reads the TLS handshake as the start of
/// a command and waits for its end, so `rediss://` to it times out (it never falls back).
pub(super) fn tls_timeout_hint(cfg: &ConnectionConfig) -> &'static str {
    if cfg.tls {
        " (over TLS: check that the port is the server's TLS port, `tls-port`; a plain port \
         never answers the TLS handshake)"
    } else {
        ""
    }
}

/// The message of a TLS connection that the server closed (or reset) while it was being set
/// up: with TLS 1.3 a server that refuses the client's certificate (or the lack of one) does
/// so after the client's side of the handshake completed, and the reset may arrive before its
/// alert can be read.
pub(super) fn closed_during_tls_setup(cfg: &ConnectionConfig) -> &'static str {
    if cfg.tls_client_cert.is_some() {
        "cannot connect: the server closed the TLS connection while it was set up, as it does \
         when it refuses the client certificate (`tls_client_cert`)"
    } else {
        "cannot connect: the server closed the TLS connection while it was set up, as a server \
         that requires a client certificate (`tls-auth-clients yes`) does to a client without \
         one: set `tls_client_cert`"
    }
}

/// Why a `rediss://` connection failed in TLS, read from the backend's error text (rustls and
/// OpenSSL word them differently; neither error type reaches redisx through redis-rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TlsFailure {
    /// The server's certificate is not valid for the host name (or IP address) connected to.
    HostName,
    /// The server's certificate is not signed by a trusted CA.
    UntrustedCa,
    /// The server requires a client certificate and none was presented.
    ClientCertRequired,
    /// The server refused the client certificate presented.
    ClientCertRefused,
    /// The client key of `tls_client_cert` is not the certificate's (found when connecting).
    KeyMismatch,
    /// The TLS client cannot be set up with the certificates given (found when connecting).
    Setup,
    /// The server did not answer in TLS: a plain port.
    NotTls,
    /// Another TLS failure; the cause says which.
    Other,
}

impl TlsFailure {
    pub(super) fn message(self, cfg: &ConnectionConfig) -> String {
        let why = match self {
            Self::HostName => format!(
                "the server's certificate is not valid for the host name `{}` (the host of the \
                 URL must be one of the certificate's subjectAltName entries)",
                cfg.host
            ),
            Self::UntrustedCa if cfg.tls_ca_cert.is_some() => {
                "the server's certificate is not signed by the CA of `tls_ca_cert`".to_owned()
            }
            Self::UntrustedCa => "the server's certificate is not signed by a trusted CA of the \
                                  built-in roots (set `tls_ca_cert` to the CA that signed it)"
                .to_owned(),
            Self::ClientCertRequired => "the server requires a client certificate \
                                         (`tls-auth-clients yes`): set `tls_client_cert`"
                .to_owned(),
            Self::ClientCertRefused => "the server refuses the client certificate \
                                        (`tls_client_cert`): it is not signed by a CA the server \
                                        trusts, or not made for client authentication"
                .to_owned(),
            Self::KeyMismatch => {
                return "the TLS client cannot be set up: the key of `tls_client_cert` is not \
                        the certificate's key"
                    .to_owned();
            }
            Self::Setup => {
                return "the TLS client cannot be set up with the certificates of `tls_ca_cert` \
                        and `tls_client_cert` (the cause says why)"
                    .to_owned();
            }
            Self::NotTls => "the server did not answer in TLS: check that the port is its TLS \
                             port (`tls-port`); `rediss://` never falls back to plaintext"
                .to_owned(),
            Self::Other => return "the TLS handshake failed".to_owned(),
        };
        format!("the TLS handshake failed: {why}")
    }
}

/// The text of `err` and of its causes, lowercased, for [`tls_failure`] and [`closed_by_peer`].
pub(super) fn chain_text(err: &redis::RedisError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        text.push(' ');
        text.push_str(&e.to_string());
        source = e.source();
    }
    text.to_ascii_lowercase()
}

/// Whether the peer closed or reset a connection that had been opened (a refused connection
/// is not one).
pub(super) fn closed_by_peer(text: &str) -> bool {
    [
        "connection reset",
        "broken pipe",
        "connection aborted",
        "eof",
    ]
    .iter()
    .any(|word| text.contains(word))
}

/// Whether a connect error on a `rediss://` connection comes from TLS (the handshake, a
/// certificate check, an alert from the server, the TLS setup), and which failure it is, from
/// the error's [`chain_text`].
pub(super) fn tls_failure(text: &str) -> Option<TlsFailure> {
    let has = |words: &[&str]| words.iter().any(|word| text.contains(word));
    // rustls writes its enums' variant names (`UnknownIssuer`), OpenSSL sentences.
    let failure = if has(&[
        "not valid for name",
        "notvalidforname",
        "hostname mismatch",
        "ip address mismatch",
    ]) {
        TlsFailure::HostName
    } else if has(&[
        "unknownissuer",
        "unable to get local issuer certificate",
        "unable to get issuer certificate",
        "unable to verify the first certificate",
        "self-signed certificate",
        "self signed certificate",
    ]) {
        TlsFailure::UntrustedCa
    } else if has(&["certificaterequired", "certificate required"]) {
        TlsFailure::ClientCertRequired
    } else if has(&[
        "alert: badcertificate",
        "alert: unknownca",
        "alert bad certificate",
        "alert unknown ca",
    ]) {
        TlsFailure::ClientCertRefused
    } else if has(&["keymismatch", "key values mismatch"]) {
        TlsFailure::KeyMismatch
    } else if has(&["unable to build client with tls parameters"]) {
        TlsFailure::Setup
    } else if has(&[
        "invalidcontenttype",
        "corrupt message",
        "wrong version number",
        "packet length too long",
    ]) {
        TlsFailure::NotTls
    } else if has(&["tls", "ssl", "certificate", "handshake"]) {
        TlsFailure::Other
    } else {
        return None;
    };
    Some(failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The causes' text (lowercased, as `chain_text` gives it) that rustls and OpenSSL
    /// (native-tls) wrote in the TLS tests, and what each is.
    #[test]
    fn each_backend_text_is_read_as_its_failure() {
        let cases = [
            (
                r#"invalid peer certificate: certificate not valid for name "127.0.0.1"; certificate is only valid for dnsname("other.example")"#,
                TlsFailure::HostName,
            ),
            (
                "error:0a000086:ssl routines:tls_post_process_server_certificate:certificate verify failed: (hostname mismatch)",
                TlsFailure::HostName,
            ),
            (
                "error:0a000086:ssl routines:...:certificate verify failed: (ip address mismatch)",
                TlsFailure::HostName,
            ),
            (
                "invalid peer certificate: unknownissuer",
                TlsFailure::UntrustedCa,
            ),
            (
                "error:0a000086:ssl routines:...:certificate verify failed: (self-signed certificate in certificate chain)",
                TlsFailure::UntrustedCa,
            ),
            (
                "received fatal alert: certificaterequired",
                TlsFailure::ClientCertRequired,
            ),
            (
                "error:0a00045c:ssl routines:ssl3_read_bytes:tlsv13 alert certificate required",
                TlsFailure::ClientCertRequired,
            ),
            (
                "received fatal alert: unknownca",
                TlsFailure::ClientCertRefused,
            ),
            (
                "error:0a000418:ssl routines:ssl3_read_bytes:tlsv1 alert unknown ca",
                TlsFailure::ClientCertRefused,
            ),
            (
                "unable to build client with tls parameters provided. - invalidclientconfig: keys may not be consistent: keymismatch",
                TlsFailure::KeyMismatch,
            ),
            (
                "error:05800074:x509 certificate routines:x509_check_private_key:key values mismatch",
                TlsFailure::KeyMismatch,
            ),
            (
                "unable to build client with tls parameters provided. - invalidclientconfig: unexpected error: failed to parse private key",
                TlsFailure::Setup,
            ),
            (
                "received corrupt message of type invalidcontenttype",
                TlsFailure::NotTls,
            ),
            (
                "error:0a00010b:ssl routines:ssl3_get_record:wrong version number",
                TlsFailure::NotTls,
            ),
            ("tls handshake eof", TlsFailure::Other),
        ];
        for (text, failure) in cases {
            assert_eq!(tls_failure(text), Some(failure), "{text}");
        }
        for text in [
            "",
            "connection reset by peer (os error 104)",
            "connection refused (os error 111)",
        ] {
            assert_eq!(tls_failure(text), None, "{text}");
        }
    }

    #[test]
    fn a_reset_is_a_close_by_the_peer_and_a_refusal_is_not() {
        assert!(closed_by_peer("connection reset by peer (os error 104)"));
        assert!(closed_by_peer("broken pipe (os error 32)"));
        assert!(!closed_by_peer("connection refused (os error 111)"));
        assert!(!closed_by_peer(""));
    }
}
