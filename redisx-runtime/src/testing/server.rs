//! [`RedisServer`]: one `redis-server` for a test, owned by the harness or borrowed from
//! `REDISX_TEST_URL`, and [`ServerBuilder`], how an owned one is configured.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use super::process::Watched;
use super::{START_TIMEOUT, TEST_URL_ENV, find_on_path, free_port, redis_server_path};

mod spawn;

use spawn::{Config, StartError, spawn_server};

/// How many fresh ports are tried when a start fails because the port was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// An ACL user that the harness creates on its server after every (re)start.
#[derive(Clone, Debug)]
struct AclUser {
    name: String,
    password: String,
    rules: Vec<String>,
}

/// How to start an owned server: a configuration file, extra command-line arguments, a password,
/// ACL users, CPU pinning.
///
/// Made by [`RedisServer::builder`]; [`ServerBuilder::start`] always starts a server of its own
/// (it ignores `REDISX_TEST_URL`, since a configured server cannot be borrowed), and
/// [`ServerBuilder::start_with_replicas`] a primary with replicas that all share the
/// configuration.
///
/// ```no_run
/// use redisx_runtime::testing::RedisServer;
///
/// let server = RedisServer::builder()
///     .arg("--maxmemory")
///     .arg("10mb")
///     .password("s3cret")
///     .acl_user("app", "app-pw", ["~app:*", "+@all"])
///     .start();
/// let url = server.url_with_auth("app", "app-pw");
/// # let _ = url;
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ServerBuilder {
    pub(super) args: Vec<OsString>,
    pub(super) password: Option<String>,
    config_file: Option<PathBuf>,
    users: Vec<AclUser>,
    cpu: Option<usize>,
    cluster_bus: bool,
}

impl ServerBuilder {
    /// Adds one command-line argument, passed to `redis-server` after the harness's own
    /// (`--port`, `--bind`, `--save ""`, `--appendonly no`, `--daemonize no`), e.g.
    /// `.arg("--maxmemory").arg("10mb")`.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds several command-line arguments, see [`ServerBuilder::arg`].
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Starts `redis-server` from this configuration file: it comes first on the command line
    /// (`redis-server <file> --port ...`), so the harness's own arguments and those of
    /// [`ServerBuilder::arg`] override what it sets. The server may rewrite the file (a sentinel
    /// does), so give each server a file of its own.
    ///
    /// ```no_run
    /// use redisx_runtime::testing::RedisServer;
    ///
    /// let conf = std::env::temp_dir().join("my-test-redis.conf");
    /// std::fs::write(&conf, "maxmemory 10mb\n")?;
    /// let server = RedisServer::builder().config_file(&conf).start();
    /// # let _ = server;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Gives the server a cluster bus port of its own (`--cluster-port`), a free loopback port
    /// found with the server's port and kept across restarts, instead of Redis's default of the
    /// server's port + 10000, which is out of range or taken for many free ports. For cluster
    /// nodes (`--cluster-enabled yes`).
    pub(super) fn cluster_bus(mut self) -> Self {
        self.cluster_bus = true;
        self
    }

    /// Requires a password for the `default` user (`--requirepass`).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Creates an ACL user once the server answers (`ACL SETUSER name reset on >password
    /// rules...`), again after every restart. `rules` are ACL rules such as
    /// `["~*", "&*", "+@all"]`; an empty list gives a user that can authenticate but run no
    /// command.
    pub fn acl_user<I, S>(
        mut self,
        name: impl Into<String>,
        password: impl Into<String>,
        rules: I,
    ) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.users.push(AclUser {
            name: name.into(),
            password: password.into(),
            rules: rules.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// Pins the server to one CPU with `taskset -c <cpu>` (used by the benchmark). When `taskset`
    /// is missing the server runs unpinned; [`RedisServer::pinned_cpu`] tells which happened.
    pub fn pin_to_cpu(mut self, cpu: usize) -> Self {
        self.cpu = Some(cpu);
        self
    }

    /// Starts the server on a free loopback port and waits until it answers `PING`.
    ///
    /// # Panics
    /// When `redis-server` is not on `PATH` (the message says how to install it), or the server
    /// does not answer within [`START_TIMEOUT`] (the message then holds the server's output).
    pub fn start(self) -> RedisServer {
        let binary = redis_server_path();
        let taskset = self.cpu.and_then(|_| find_on_path("taskset"));
        let config = Config {
            binary,
            taskset,
            conf_file: self.config_file,
            args: self.args,
            password: self.password,
            users: self.users,
            cpu: self.cpu,
        };
        let mut last_failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let bus_port = self.cluster_bus.then(|| other_free_port(port));
            match spawn_server(&config, port, bus_port, false) {
                Ok(process) => {
                    return RedisServer {
                        inner: Inner::Owned(Box::new(Owned {
                            config,
                            port,
                            bus_port,
                            process: Some(process),
                        })),
                    };
                }
                Err(StartError::PortTaken(output)) => last_failure = output,
                Err(StartError::Fatal(message)) => panic!("{message}"),
            }
        }
        panic!(
            "redis-server could not start on a free port after {PORT_ATTEMPTS} attempts (each \
             port was taken meanwhile); last output:\n{last_failure}"
        );
    }
}

/// A free loopback port other than `port`.
fn other_free_port(port: u16) -> u16 {
    loop {
        let other = free_port();
        if other != port {
            return other;
        }
    }
}

/// `redis://[user:password@]127.0.0.1:port`, percent-encoded; no credentials when `password`
/// is `None`.
fn local_url(port: u16, user: &str, password: Option<&str>) -> String {
    match password {
        Some(password) => format!(
            "redis://{}:{}@127.0.0.1:{port}",
            percent_encode(user),
            percent_encode(password)
        ),
        None => format!("redis://127.0.0.1:{port}"),
    }
}

/// An owned server: its configuration, its port (and cluster bus port) and (while it runs) its
/// process.
#[derive(Debug)]
struct Owned {
    config: Config,
    port: u16,
    bus_port: Option<u16>,
    process: Option<Watched>,
}

#[derive(Debug)]
enum Inner {
    Owned(Box<Owned>),
    External { url: String },
}

/// A `redis-server` for a test: started by the harness on a free loopback port (and always
/// stopped), or, with `REDISX_TEST_URL` set and [`RedisServer::start`], the server that variable
/// names.
///
/// ```no_run
/// use redisx_runtime::testing::RedisServer;
///
/// let mut server = RedisServer::start_owned();
/// let url = server.url(); // "redis://127.0.0.1:PORT"
/// server.restart(); // same port, empty again (it keeps nothing on disk)
/// # let _ = url;
/// // the server is killed when `server` goes out of scope
/// ```
#[derive(Debug)]
#[must_use = "the server is stopped when the handle is dropped"]
pub struct RedisServer {
    inner: Inner,
}

impl RedisServer {
    /// The server for a test: the one `REDISX_TEST_URL` names when it is set, else a fresh one
    /// of its own (see [`RedisServer::start_owned`]). `REDIS_URL` is never read.
    ///
    /// # Panics
    /// See [`RedisServer::start_owned`].
    pub fn start() -> Self {
        match std::env::var(TEST_URL_ENV) {
            Ok(url) if !url.trim().is_empty() => Self {
                inner: Inner::External {
                    url: url.trim().to_owned(),
                },
            },
            _ => Self::start_owned(),
        }
    }

    /// A fresh server of its own on a free loopback port, whatever `REDISX_TEST_URL` says: for
    /// tests that stop, kill or restart the server.
    ///
    /// # Panics
    /// When `redis-server` is not on `PATH` (the message says how to install it), or the server
    /// does not answer `PING` within [`START_TIMEOUT`] (the message holds its output).
    pub fn start_owned() -> Self {
        Self::builder().start()
    }

    /// A builder for a configured server of its own (extra arguments, password, ACL users).
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Whether the harness started this server (as opposed to borrowing `REDISX_TEST_URL`).
    pub fn is_owned(&self) -> bool {
        matches!(self.inner, Inner::Owned(_))
    }

    /// The URL of the server, without credentials: `redis://127.0.0.1:PORT` for an owned server,
    /// the value of `REDISX_TEST_URL` otherwise.
    pub fn url(&self) -> String {
        match &self.inner {
            Inner::Owned(owned) => local_url(owned.port, "", None),
            Inner::External { url } => url.clone(),
        }
    }

    /// The URL of an owned server with credentials: `redis://user:password@127.0.0.1:PORT`
    /// (percent-encoded), or `redis://:password@...` when `user` is empty.
    ///
    /// # Panics
    /// On a `REDISX_TEST_URL` handle.
    pub fn url_with_auth(&self, user: &str, password: &str) -> String {
        let owned = self.owned("url_with_auth");
        local_url(owned.port, user, Some(password))
    }

    /// The URL the harness itself uses: with the `default` user's password when the server has
    /// one (see [`ServerBuilder::password`]), else [`RedisServer::url`].
    pub fn admin_url(&self) -> String {
        match &self.inner {
            Inner::Owned(owned) => local_url(owned.port, "", owned.config.password.as_deref()),
            Inner::External { url } => url.clone(),
        }
    }

    /// The TCP port of the server (for `REDISX_TEST_URL`, the port in the URL, 6379 when it has
    /// none).
    pub fn port(&self) -> u16 {
        match &self.inner {
            Inner::Owned(owned) => owned.port,
            Inner::External { url } => url_port(url).unwrap_or(6379),
        }
    }

    /// The process id of the running server, `None` when it is stopped or not owned.
    pub fn pid(&self) -> Option<u32> {
        match &self.inner {
            Inner::Owned(owned) => owned.process.as_ref().map(Watched::pid),
            Inner::External { .. } => None,
        }
    }

    /// Whether the owned server process is running (`true` for a `REDISX_TEST_URL` handle).
    pub fn is_running(&mut self) -> bool {
        match &mut self.inner {
            Inner::Owned(owned) => owned.process.as_mut().is_some_and(Watched::is_running),
            Inner::External { .. } => true,
        }
    }

    /// The CPU the server was pinned to with `taskset`, when it was.
    pub fn pinned_cpu(&self) -> Option<usize> {
        match &self.inner {
            Inner::Owned(owned) if owned.config.taskset.is_some() => owned.config.cpu,
            _ => None,
        }
    }

    /// Everything the running (or last) server process printed so far.
    pub fn output(&self) -> String {
        match &self.inner {
            Inner::Owned(owned) => owned
                .process
                .as_ref()
                .map(Watched::output)
                .unwrap_or_default(),
            Inner::External { .. } => String::new(),
        }
    }

    /// Kills the server (`SIGKILL`) and waits until it is gone; [`RedisServer::start_again`]
    /// brings it back on the same port. Does nothing when it is already stopped.
    ///
    /// # Panics
    /// On a `REDISX_TEST_URL` handle: the test needs a server of its own
    /// ([`RedisServer::start_owned`]).
    pub fn stop(&mut self) {
        let owned = self.owned_mut("stop");
        if let Some(mut process) = owned.process.take() {
            process.kill();
        }
    }

    /// Kills the server abruptly (`SIGKILL`) without restarting it, as a crash would; the same as
    /// [`RedisServer::stop`]: a server keeps nothing on disk, unless the builder's arguments make
    /// it persist (`--appendonly yes`, `--dir`). Use [`RedisServer::start_again`] to bring it back
    /// on the same port.
    ///
    /// # Panics
    /// On a `REDISX_TEST_URL` handle.
    pub fn kill(&mut self) {
        let owned = self.owned_mut("kill");
        if let Some(mut process) = owned.process.take() {
            process.kill();
        }
    }

    /// Starts a stopped server again on the same port with the same configuration (empty, unless
    /// that configuration persists its data) and waits until it answers. Retries for a while when the port is still busy.
    ///
    /// # Panics
    /// On a `REDISX_TEST_URL` handle, when the server is running, or when it does not come back.
    pub fn start_again(&mut self) {
        let owned = self.owned_mut("start_again");
        assert!(
            owned.process.is_none(),
            "start_again: the redis-server on port {} is still running; stop or kill it first",
            owned.port
        );
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match spawn_server(&owned.config, owned.port, owned.bus_port, true) {
                Ok(process) => {
                    owned.process = Some(process);
                    return;
                }
                Err(StartError::PortTaken(output) | StartError::Fatal(output)) => {
                    let busy = output.contains("Address already in use");
                    assert!(
                        busy && Instant::now() < deadline,
                        "start_again on port {}: {output}",
                        owned.port
                    );
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// Stops the server and starts it again on the same port (empty, unless its configuration
    /// persists its data), waiting until it answers: what reconnect tests need.
    ///
    /// # Panics
    /// As [`RedisServer::stop`] and [`RedisServer::start_again`].
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Pauses the server (`SIGSTOP`): it still accepts TCP connections (the kernel does) but
    /// answers nothing, as a hung server would, until [`resume`](Self::resume).
    ///
    /// ```no_run
    /// use redisx_runtime::testing::RedisServer;
    ///
    /// let server = RedisServer::start_owned();
    /// server.pause();
    /// // ... a call now runs into its timeouts ...
    /// server.resume();
    /// ```
    ///
    /// # Panics
    /// On a `REDISX_TEST_URL` handle, when the server is stopped, or when `kill` fails.
    pub fn pause(&self) {
        self.running("pause").signal("STOP");
    }

    /// Lets a paused server go on (`SIGCONT`); see [`pause`](Self::pause).
    ///
    /// # Panics
    /// On a `REDISX_TEST_URL` handle, when the server is stopped, or when `kill` fails.
    pub fn resume(&self) {
        self.running("resume").signal("CONT");
    }

    fn running(&self, what: &str) -> &Watched {
        self.owned(what)
            .process
            .as_ref()
            .unwrap_or_else(|| panic!("RedisServer::{what}: the server is stopped"))
    }

    fn owned(&self, what: &str) -> &Owned {
        match &self.inner {
            Inner::Owned(owned) => owned,
            Inner::External { url } => external_panic(what, url),
        }
    }

    fn owned_mut(&mut self, what: &str) -> &mut Owned {
        match &mut self.inner {
            Inner::Owned(owned) => owned,
            Inner::External { url } => external_panic(what, url),
        }
    }
}

fn external_panic(what: &str, url: &str) -> ! {
    panic!(
        "RedisServer::{what} needs a redis-server owned by the harness, but this handle points at \
         REDISX_TEST_URL ({url}); start the server with `RedisServer::start_owned()` or \
         `RedisServer::builder()` in this test"
    )
}

/// The explicit port of a `redis://host:port/...` URL.
fn url_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = host_port.rsplit_once(':')?;
    if host.ends_with(']') || !host.contains(':') {
        port.parse().ok()
    } else {
        None
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_port_parses_common_shapes() {
        assert_eq!(url_port("redis://127.0.0.1:6380"), Some(6380));
        assert_eq!(url_port("redis://u:p@host:7000/2"), Some(7000));
        assert_eq!(url_port("rediss://[::1]:7001/0"), Some(7001));
        assert_eq!(url_port("redis://host/0"), None);
    }

    #[test]
    fn local_urls_are_percent_encoded() {
        assert_eq!(percent_encode("a b@c"), "a%20b%40c");
        assert_eq!(local_url(7000, "", None), "redis://127.0.0.1:7000");
        assert_eq!(
            local_url(7000, "u", Some("p w")),
            "redis://u:p%20w@127.0.0.1:7000"
        );
    }
}
