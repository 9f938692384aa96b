//! The getters of [`ConnectionConfig`]: `{option}_value()` for each option a user sets;
//! `host`, `port` and `socket_path`, set through a constructor or the URL, keep their names.

use std::path::Path;
use std::time::Duration;

use super::{ConnectionConfig, DriverKind, ReconnectPolicy};

impl ConnectionConfig {
    /// The host name or address (the socket path for a Unix socket).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (0 for a Unix socket).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Unix socket path, for a config made by [`ConnectionConfig::unix_socket`] or a
    /// `redis+unix://` URL.
    pub fn socket_path(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// The ACL user name, if any.
    pub fn username_value(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The password, if any (it is hidden from `Debug` and `Display`, not from this getter).
    pub fn password_value(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The logical database.
    pub fn db_value(&self) -> i64 {
        self.db
    }

    /// Whether TLS is used.
    pub fn tls_value(&self) -> bool {
        self.tls
    }

    /// Whether certificate and host name checks are off (TLS only).
    pub fn tls_insecure_value(&self) -> bool {
        self.tls_insecure
    }

    /// The PEM of the trusted CA certificates, when set.
    pub fn tls_ca_cert_value(&self) -> Option<&[u8]> {
        self.tls_ca_cert.as_deref()
    }

    /// The PEM of the client certificate chain and of its private key, when set.
    pub fn tls_client_cert_value(&self) -> Option<(&[u8], &[u8])> {
        self.tls_client_cert
            .as_ref()
            .map(|(cert, key)| (cert.as_slice(), key.as_slice()))
    }

    /// The connection name sent with `CLIENT SETNAME`, when set.
    pub fn client_name_value(&self) -> Option<&str> {
        self.client_name.as_deref()
    }

    /// Whether RESP3 is used.
    pub fn resp3_value(&self) -> bool {
        self.resp3
    }

    /// How long one connection attempt may take.
    pub fn connect_timeout_value(&self) -> Duration {
        self.connect_timeout
    }

    /// How long any command may take.
    pub fn command_timeout_value(&self) -> Duration {
        self.command_timeout
    }

    /// How long a command waits for a free pooled connection (the command timeout unless set).
    #[cfg(feature = "pool")]
    pub fn pool_wait_timeout_value(&self) -> Duration {
        self.pool_wait_timeout.unwrap_or(self.command_timeout)
    }

    /// How long opening a pooled connection may take (the connect timeout unless set).
    #[cfg(feature = "pool")]
    pub fn pool_create_timeout_value(&self) -> Duration {
        self.pool_create_timeout.unwrap_or(self.connect_timeout)
    }

    /// How long the health check of a pooled connection may take (the command timeout unless
    /// set).
    #[cfg(feature = "pool")]
    pub fn pool_recycle_timeout_value(&self) -> Duration {
        self.pool_recycle_timeout.unwrap_or(self.command_timeout)
    }

    /// The reconnect backoff.
    pub fn reconnect_value(&self) -> ReconnectPolicy {
        self.reconnect
    }

    /// The configured driver.
    pub fn driver_value(&self) -> DriverKind {
        self.driver
    }

    /// Whether building the runtime tolerates an unreachable server.
    pub fn lazy_value(&self) -> bool {
        self.lazy
    }
}
