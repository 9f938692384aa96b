//! Certificates for the TLS tests (Redis over `rediss://`, OTLP over `https://`): a private CA
//! and the certificates it signs, made at test time with the `openssl` CLI in a [`TempDir`].

use std::path::PathBuf;

use crate::unique_prefix;

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
    for (who, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
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
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                &extfile,
                "-out",
                &crt,
            ],
        );
    }
}
