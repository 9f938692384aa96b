//! From a [`ConnectionConfig`] to what redis-rs connects with: the connection info (address,
//! credentials, TLS certificates, protocol), the checks before connecting, and the commands
//! every new connection sends (its client name).

use super::ConnectionConfig;
use crate::error::{Error, ErrorCode, Result};

/// What the drivers connect with: a `redis::ConnectionInfo`, or the reason there is none (a
/// certificate that does not parse). It goes wherever redis-rs takes `IntoConnectionInfo`, so
/// such an error surfaces as a connect error; [`ConnectionConfig::validate`] reports it first.
pub(crate) struct ConnectTarget(redis::RedisResult<redis::ConnectionInfo>);

impl redis::IntoConnectionInfo for ConnectTarget {
    fn into_connection_info(self) -> redis::RedisResult<redis::ConnectionInfo> {
        self.0
    }
}

impl ConnectionConfig {
    pub(crate) fn to_connection_info(&self) -> ConnectTarget {
        ConnectTarget(self.connection_info())
    }

    fn connection_info(&self) -> redis::RedisResult<redis::ConnectionInfo> {
        #[cfg(feature = "tls-rustls")]
        if self.tls {
            ensure_rustls_provider();
        }
        let addr = if let Some(path) = &self.socket {
            redis::ConnectionAddr::Unix(path.clone())
        } else if self.tls {
            redis::ConnectionAddr::TcpTls {
                host: self.host.clone(),
                port: self.port,
                insecure: self.tls_insecure,
                tls_params: None,
            }
        } else {
            redis::ConnectionAddr::Tcp(self.host.clone(), self.port)
        };
        let mut redis_info = redis::RedisConnectionInfo::default().set_db(self.db);
        if let Some(user) = &self.username {
            redis_info = redis_info.set_username(user);
        }
        if let Some(pw) = &self.password {
            redis_info = redis_info.set_password(pw);
        }
        if self.resp3 {
            redis_info = redis_info.set_protocol(redis::ProtocolVersion::RESP3);
        }
        redis_info = redis_info.set_lib_name("redisx", env!("CARGO_PKG_VERSION"));
        let info =
            redis::IntoConnectionInfo::into_connection_info(addr)?.set_redis_settings(redis_info);
        #[cfg(any(feature = "tls-rustls", feature = "tls-native"))]
        if self.tls && (self.tls_ca_cert.is_some() || self.tls_client_cert.is_some()) {
            let certs = redis::TlsCertificates {
                client_tls: self.tls_client_cert.as_ref().map(|(cert, key)| {
                    // native-tls wants the key's PEM block first: drop any text before it.
                    let key = match pkcs8_start(key) {
                        Some(start) if NATIVE_TLS => &key[start..],
                        _ => key,
                    };
                    redis::ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.to_vec(),
                    }
                }),
                root_cert: self.tls_ca_cert.clone(),
            };
            return Ok(redis::Client::build_with_tls(info, certs)?
                .get_connection_info()
                .clone());
        }
        Ok(info)
    }

    /// Runs what every new connection needs before its first command: `CLIENT SETNAME` with
    /// the client name, followed by `:{role}` on a connection with a role of its own
    /// (`pubsub`, `dedicated`), so that `CLIENT LIST` tells them from the shared ones.
    pub(crate) async fn init_connection<C>(
        &self,
        conn: &mut C,
        role: Option<&str>,
    ) -> redis::RedisResult<()>
    where
        C: redis::aio::ConnectionLike + Send,
    {
        if let Some(name) = &self.client_name {
            let name = match role {
                Some(role) => format!("{name}:{role}"),
                None => name.clone(),
            };
            redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg(name)
                .exec_async(conn)
                .await?;
        }
        Ok(())
    }

    /// Checks what can be checked before connecting: options that need each other, the client
    /// name, and that the certificates parse.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |msg: String| {
            Err(Error::new(ErrorCode::ConfigInvalid, msg).with_context("server", self.to_string()))
        };
        if let Some(name) = &self.client_name
            && (name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return bad(format!(
                "the client name {name:?} is not valid: Redis takes a non-empty name without spaces"
            ));
        }
        if NATIVE_TLS
            && self.tls
            && let Some((_, key)) = &self.tls_client_cert
            && pkcs8_start(key).is_none()
        {
            return bad(
                "the TLS client key is not PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), the only \
                 form native-tls (feature `tls-native`) takes: convert it with \
                 `openssl pkcs8 -topk8 -nocrypt -in client.key -out client.pk8.key`, or use the \
                 `tls-rustls` feature, which also takes PKCS#1 and SEC1 keys"
                    .into(),
            );
        }
        self.validate_nodes()?;
        let has_certs = self.tls_ca_cert.is_some() || self.tls_client_cert.is_some();
        if self.socket.is_some() && self.tls {
            return bad("TLS is not available over a Unix socket".into());
        }
        if self.tls && cfg!(not(any(feature = "tls-rustls", feature = "tls-native"))) {
            return bad(
                "`rediss://` needs TLS support: enable the `tls-rustls` (default) or `tls-native` feature of redisx"
                    .into(),
            );
        }
        if has_certs && !self.tls {
            return bad(
                "`tls_ca_cert` and `tls_client_cert` need TLS: use a `rediss://` URL or `.tls(true)`"
                    .into(),
            );
        }
        if let Err(e) = self.connection_info() {
            return Err(Error::new(
                ErrorCode::ConfigInvalid,
                format!("the TLS certificates cannot be used: {e}"),
            )
            .with_context("server", self.to_string()));
        }
        Ok(())
    }
}

/// Whether `rediss://` goes through native-tls: redis-rs uses it only when rustls is off.
const NATIVE_TLS: bool = cfg!(all(feature = "tls-native", not(feature = "tls-rustls")));

/// Where the PKCS#8 block of a PEM private key starts, if it has one.
fn pkcs8_start(key_pem: &[u8]) -> Option<usize> {
    const BEGIN: &[u8] = b"-----BEGIN PRIVATE KEY-----";
    key_pem.windows(BEGIN.len()).position(|w| w == BEGIN)
}

#[cfg(feature = "tls-rustls")]
/// rustls needs a process-wide crypto provider, and redis-rs leaves choosing one to the
/// application: without one the first handshake panics. Unless the application installed its
/// own, install ring's (a lost race with another installer is harmless).
fn ensure_rustls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
