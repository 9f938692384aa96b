//! Certificates for the TLS tests (Redis over `rediss://`, OTLP over `https://`): a private CA
//! and the certificates it signs, made at test time with the `openssl` CLI in a [`TempDir`];
//! and redis-servers with a TLS port that present them ([`tls_server`]).

use std::path::PathBuf;

use crate::{RedisServer, ServerBuilder, free_port, unique_prefix};

/// A fresh directory under the system temp dir, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a directory named after `what` (and made unique like [`unique_prefix`]).
    ///
    /// # Panics
    /// When the directory cannot be created.
    pub fn new(what: &str) -> Self {
        let dir =
            std::env::temp_dir().join(unique_prefix(what).replace(':', "-").trim_end_matches('-'));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        Self(dir)
    }

    /// The path of `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The directory itself.
    pub fn root(&self) -> &std::path::Path {
        &self.0
    }

    /// The contents of the file `name` in the directory.
    ///
    /// # Panics
    /// When the file cannot be read.
    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap_or_else(|e| panic!("cannot read {name}: {e}"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `openssl` with `args` in `dir`, panicking with its output when it fails.
/// (`pub` for tests that make keys of other forms, such as PKCS#1.)
///
/// # Panics
/// When `openssl` is missing or fails.
pub fn openssl(dir: &TempDir, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(&dir.0)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `openssl` ({e}); install it with `apt-get install openssl`")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The options of `openssl req` for a new P-256 key without a passphrase (written as PKCS#8).
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A self-signed CA: `{name}.crt` and `{name}.key`.
fn make_ca(dir: &TempDir, name: &str) {
    let subj = format!("/CN=redisx test {name}");
    let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", &subj];
    ca.extend(EC_KEY);
    ca.extend([
        "-keyout",
        &key,
        "-out",
        &crt,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
}

/// A private CA (`ca.crt`), a server certificate for 127.0.0.1 and `localhost` and a client
/// certificate (`server.{crt,key}`, `client.{crt,key}`, PEM) signed by it, and another CA that
/// signed neither (`other-ca.crt`), made with the `openssl` CLI in `dir`.
///
/// # Panics
/// When `openssl` is missing or fails.
pub fn make_certificates(dir: &TempDir) {
    make_ca(dir, "ca");
    make_ca(dir, "other-ca");
    sign_certificate(
        dir,
        "server",
        "ca",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
    sign_certificate(dir, "client", "ca", "extendedKeyUsage=clientAuth\n");
}

/// A new key and a certificate for it signed by the CA `ca` of [`make_certificates`] (`"ca"`
/// or `"other-ca"`, which must exist): `{who}.key` and `{who}.crt`, with the X.509 v3
/// extensions `ext` (lines of an `openssl x509 -extfile`, such as
/// `subjectAltName=DNS:other.example`).
///
/// # Panics
/// When `openssl` is missing or fails.
pub fn sign_certificate(dir: &TempDir, who: &str, ca: &str, ext: &str) {
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    std::fs::write(dir.path(&format!("{who}.ext")), ext).unwrap();
    let (key, csr, crt, extfile) = (
        format!("{who}.key"),
        format!("{who}.csr"),
        format!("{who}.crt"),
        format!("{who}.ext"),
    );
    let subj = format!("/CN=redisx test {who}");
    let mut req = vec!["req", "-subj", &subj, "-keyout", &key, "-out", &csr];
    req.extend(EC_KEY);
    openssl(dir, &req);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-extfile",
            &extfile,
            "-out",
            &crt,
        ],
    );
}

/// A redis-server with a TLS port besides its plain one, presenting `{cert}.crt` and
/// `{cert}.key` from `dir` and trusting `ca.crt` for client certificates; `auth_clients` is
/// its `tls-auth-clients` (`yes`, `no`, `optional`). Returns the server and its TLS port.
pub fn tls_server(dir: &TempDir, cert: &str, auth_clients: &str) -> (RedisServer, u16) {
    tls_server_from(RedisServer::builder(), dir, cert, auth_clients)
}

/// [`tls_server`] from a `builder` of the caller's (a password, ACL users).
pub fn tls_server_from(
    builder: ServerBuilder,
    dir: &TempDir,
    cert: &str,
    auth_clients: &str,
) -> (RedisServer, u16) {
    let tls_port = free_port();
    let server = builder
        .arg("--tls-port")
        .arg(tls_port.to_string())
        .arg("--tls-cert-file")
        .arg(dir.path(&format!("{cert}.crt")))
        .arg("--tls-key-file")
        .arg(dir.path(&format!("{cert}.key")))
        .arg("--tls-ca-cert-file")
        .arg(dir.path("ca.crt"))
        .arg("--tls-auth-clients")
        .arg(auth_clients)
        .start();
    (server, tls_port)
}
