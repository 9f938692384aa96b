//! The redisx test harness: real `redis-server` processes for integration tests and benchmarks.
//!
//! [`RedisServer::start`] launches `redis-server` from `PATH` on a free loopback port (no
//! persistence: `--save "" --appendonly no`), waits until it answers `PING`, and stops it when the
//! handle is dropped. A test that needs a fresh, isolated server per test gets one in a few
//! milliseconds, so there is no shared server to coordinate.
//!
//! # No orphans
//! The server is started through a tiny `sh` wrapper that forks a watchdog and then `exec`s
//! `redis-server`, so the child process *is* the server (its pid is the server's pid). The watchdog
//! blocks reading the server's stdin, a pipe whose only write end lives in the test process. It
//! gets end-of-file when the handle is dropped (normal case, also while a panicking test unwinds)
//! **and** when the test process dies in any way (even `SIGKILL`, since the kernel closes the
//! pipe), and then `SIGKILL`s the server. Dropping a handle closes that pipe first and only then
//! reaps the server, so the watchdog can never signal a recycled pid.
//!
//! # `REDISX_TEST_URL`
//! When `REDISX_TEST_URL` is set, [`RedisServer::start`] returns a handle that points at that
//! existing server instead of starting one; give every test its own key space with
//! [`unique_prefix`] so tests can share it in parallel. `REDIS_URL` is deliberately ignored: it
//! names an application's server, and the suite must never run against someone's data by
//! accident. Tests that need to own the process (restart it, kill it, configure passwords or ACL
//! users) use [`RedisServer::start_owned`] or [`RedisServer::builder`], which always start their
//! own server; the process-control methods panic on a `REDISX_TEST_URL` handle with a message
//! that says so.
//!
//! # Missing `redis-server`
//! Starting a server without `redis-server` on `PATH` panics with how to install it: a test that
//! needs Redis never passes by skipping.
//!
//! ```no_run
//! use redisx_tests::{RedisServer, unique_prefix};
//!
//! let server = RedisServer::start();
//! let url = server.url(); // "redis://127.0.0.1:PORT"
//! let prefix = unique_prefix("my_test"); // "redisx-test:my_test:...:"
//! # let _ = (url, prefix);
//! // the server is killed when `server` goes out of scope
//! ```

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod cache;
pub mod tempdir;

/// How long a starting server may take to answer `PING` before the harness gives up.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How many fresh ports are tried when a start fails because the port was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// The message of the panic when `redis-server` cannot be found.
pub const NOT_FOUND_MESSAGE: &str = "redis-server not found on PATH; install it with \
     `apt-get install redis-server` (Debian/Ubuntu) or `brew install redis`";

/// The environment variable that points the tests at an existing server. Only this one:
/// `REDIS_URL`, which applications read, is ignored, so that it can never point the suite at
/// their data.
pub const TEST_URL_ENV: &str = "REDISX_TEST_URL";

/// The `sh` wrapper: keep the pipe on stdin as fd 3, fork a watchdog that kills this very process
/// (`$$`, which becomes `redis-server` through `exec`) once the pipe reaches end-of-file, then
/// replace the shell by the server. Positional parameters are the server command line.
const WRAPPER: &str = r#"exec 3<&0
( read -r _ <&3; kill -9 $$ ) </dev/null >/dev/null 2>&1 &
exec "$@" 3<&- </dev/null 2>&1
"#;

/// A key prefix of its own for one test, so that tests can share one server (for example the one
/// `REDISX_TEST_URL` points at) in parallel without seeing each other's keys.
///
/// The prefix ends with `:` and is unique per call: it holds the test name, the process id, a
/// per-process counter and the start time of the process.
pub fn unique_prefix(test_name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static EPOCH: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "redisx-test:{test_name}:{}-{epoch:x}-{n}:",
        std::process::id()
    )
}

/// Finds an executable named `name` in the directories of `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The path of `redis-server`, or a panic saying how to install it.
///
/// # Panics
/// When `redis-server` is not on `PATH`.
pub fn redis_server_path() -> PathBuf {
    find_on_path("redis-server").unwrap_or_else(|| panic!("{NOT_FOUND_MESSAGE}"))
}

/// A free loopback port, found by binding port 0 and releasing it again.
///
/// Another process may take it before it is used; the harness retries with a fresh port then.
///
/// # Panics
/// When no loopback socket can be bound at all.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("cannot bind a loopback socket to find a free port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read the address of a bound socket: {e}"))
        .port()
}

/// An ACL user that the harness creates on its server after every (re)start.
#[derive(Clone, Debug)]
struct AclUser {
    name: String,
    password: String,
    rules: Vec<String>,
}

/// How to start an owned server: extra command-line arguments, a password, ACL users, CPU pinning.
///
/// Made by [`RedisServer::builder`]; [`Builder::start`] always starts a server of its own (it
/// ignores `REDISX_TEST_URL`, since a configured server cannot be borrowed).
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct Builder {
    args: Vec<OsString>,
    password: Option<String>,
    users: Vec<AclUser>,
    cpu: Option<usize>,
}

impl Builder {
    /// Adds one command-line argument, passed to `redis-server` after the harness's own
    /// (`--port`, `--bind`, `--save ""`, `--appendonly no`, `--daemonize no`), e.g.
    /// `.arg("--maxmemory").arg("10mb")`.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds several command-line arguments, see [`Builder::arg`].
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Requires a password for the `default` user (`--requirepass`).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Creates an ACL user once the server answers (`ACL SETUSER name on >password rules...`),
    /// again after every restart. `rules` are ACL rules such as `["~*", "&*", "+@all"]`; an empty
    /// list gives a user that can authenticate but run no command.
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
    /// When `redis-server` is not on `PATH`, or the server does not answer within
    /// [`START_TIMEOUT`] (the message then holds the server's output).
    pub fn start(self) -> RedisServer {
        let binary = redis_server_path();
        let taskset = self.cpu.and_then(|_| find_on_path("taskset"));
        let config = Config {
            binary,
            taskset,
            args: self.args,
            password: self.password,
            users: self.users,
            cpu: self.cpu,
        };
        let mut last_failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match Process::spawn(&config, port, false) {
                Ok(process) => {
                    return RedisServer {
                        inner: Inner::Owned(Box::new(Owned {
                            config,
                            port,
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

/// The fixed parts of how an owned server is started, kept for restarts.
#[derive(Debug)]
struct Config {
    binary: PathBuf,
    taskset: Option<PathBuf>,
    args: Vec<OsString>,
    password: Option<String>,
    users: Vec<AclUser>,
    cpu: Option<usize>,
}

/// Why one start attempt failed.
enum StartError {
    /// The port was taken between finding it free and the server binding it; retry elsewhere.
    PortTaken(String),
    /// Anything else: report it.
    Fatal(String),
}

/// One running `redis-server` process (behind its watchdog).
#[derive(Debug)]
struct Process {
    child: Child,
    /// The write end of the watchdog's pipe: closing it kills the server.
    watchdog: Option<ChildStdin>,
    /// Everything the server printed (stdout and stderr), collected by a reader thread.
    output: Arc<Mutex<String>>,
}

impl Process {
    fn spawn(config: &Config, port: u16, same_port: bool) -> Result<Self, StartError> {
        let mut command = Command::new("sh");
        command.arg("-c").arg(WRAPPER).arg("redisx-redis-server");
        if let (Some(taskset), Some(cpu)) = (&config.taskset, config.cpu) {
            command.arg(taskset).arg("-c").arg(cpu.to_string());
        }
        command
            .arg(&config.binary)
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"]);
        if let Some(password) = &config.password {
            command.args(["--requirepass", password]);
        }
        command.args(&config.args);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command.spawn().map_err(|e| {
            StartError::Fatal(format!("cannot run `sh` to start redis-server: {e}"))
        })?;
        let watchdog = child.stdin.take();
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(stdout) = child.stdout.take() {
            let sink = Arc::clone(&output);
            thread::Builder::new()
                .name(format!("redis-server-{port}-output"))
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        let mut out = sink.lock().unwrap_or_else(PoisonError::into_inner);
                        out.push_str(&line);
                        out.push('\n');
                    }
                })
                .map_err(|e| StartError::Fatal(format!("cannot spawn an output reader: {e}")))?;
        }
        let mut process = Process {
            child,
            watchdog,
            output,
        };
        match process.wait_ready(port, config, same_port) {
            Ok(()) => Ok(process),
            Err(e) => {
                process.kill();
                Err(e)
            }
        }
    }

    fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until the server answers `PING` (authenticating when it has a password), then
    /// creates the configured ACL users.
    fn wait_ready(
        &mut self,
        port: u16,
        config: &Config,
        same_port: bool,
    ) -> Result<(), StartError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let auth: Vec<&str> = config
            .password
            .as_deref()
            .map(|p| vec!["AUTH", p])
            .unwrap_or_default();
        let mut last_error;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Give the reader thread a moment to collect the last lines.
                thread::sleep(Duration::from_millis(20));
                let output = self.output();
                if !same_port && output.contains("Address already in use") {
                    return Err(StartError::PortTaken(output));
                }
                return Err(StartError::Fatal(format!(
                    "redis-server exited during start ({status}) on port {port}; its output:\n{output}"
                )));
            }
            match ping(port, &auth) {
                Ok(reply) if reply == "+PONG" => break,
                Ok(reply) => last_error = format!("PING answered `{reply}`"),
                Err(e) => last_error = e.to_string(),
            }
            if Instant::now() >= deadline {
                let output = self.output();
                return Err(StartError::Fatal(format!(
                    "redis-server on port {port} did not answer PING within {START_TIMEOUT:?} \
                     (last attempt: {last_error}); its output:\n{output}"
                )));
            }
            thread::sleep(Duration::from_millis(5));
        }
        for user in &config.users {
            let mut command = vec!["ACL", "SETUSER", user.name.as_str(), "reset", "on"];
            let password = format!(">{}", user.password);
            command.push(&password);
            command.extend(user.rules.iter().map(String::as_str));
            let reply = raw_command(port, &auth, &command)
                .map_err(|e| StartError::Fatal(format!("ACL SETUSER {} failed: {e}", user.name)))?;
            if reply != "+OK" {
                return Err(StartError::Fatal(format!(
                    "ACL SETUSER {} answered `{reply}`",
                    user.name
                )));
            }
        }
        Ok(())
    }

    /// Kills the server and reaps it. The pipe is closed first so that the watchdog signals the
    /// server while it is still this process's (unreaped) child; a direct `SIGKILL` follows only
    /// if the watchdog is gone.
    fn kill(&mut self) {
        drop(self.watchdog.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => break,
                Ok(None) => thread::sleep(Duration::from_millis(1)),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Connects to `127.0.0.1:port`, authenticates with `auth` (empty: no `AUTH`), sends `PING` and
/// returns the first line of the reply.
fn ping(port: u16, auth: &[&str]) -> io::Result<String> {
    raw_command(port, auth, &["PING"])
}

/// Sends one command (after an optional `AUTH`) over a fresh connection and returns the first line
/// of its reply, e.g. `+OK`, `+PONG` or `-ERR ...`.
fn raw_command(port: u16, auth: &[&str], command: &[&str]) -> io::Result<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    if !auth.is_empty() {
        stream.write_all(&encode(auth))?;
        let reply = read_line(&mut reader)?;
        if !reply.starts_with('+') {
            return Ok(reply);
        }
    }
    stream.write_all(&encode(command))?;
    read_line(&mut reader)
}

fn encode(parts: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len());
    for part in parts {
        let _ = write!(out, "${}\r\n{part}\r\n", part.len());
    }
    out.into_bytes()
}

fn read_line(reader: &mut BufReader<TcpStream>) -> io::Result<String> {
    let mut line = String::new();
    let n = reader.by_ref().take(64 * 1024).read_line(&mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a reply",
        ));
    }
    Ok(line.trim_end().to_owned())
}

/// An owned server: its configuration, its port and (while it runs) its process.
#[derive(Debug)]
struct Owned {
    config: Config,
    port: u16,
    process: Option<Process>,
}

#[derive(Debug)]
enum Inner {
    Owned(Box<Owned>),
    External { url: String },
}

/// A `redis-server` for a test: started by the harness on a free loopback port (and always
/// stopped), or, with `REDISX_TEST_URL` set and [`RedisServer::start`], the server that variable
/// names.
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

    /// A fresh server of its own on a free loopback port, whatever `REDISX_TEST_URL` says: for tests
    /// that stop, kill or restart the server.
    ///
    /// # Panics
    /// When `redis-server` is not on `PATH` (the message says how to install it), or the server
    /// does not answer `PING` within [`START_TIMEOUT`] (the message holds its output).
    pub fn start_owned() -> Self {
        Self::builder().start()
    }

    /// A builder for a configured server of its own (extra arguments, password, ACL users).
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Whether the harness started this server (as opposed to borrowing `REDISX_TEST_URL`).
    pub fn is_owned(&self) -> bool {
        matches!(self.inner, Inner::Owned(_))
    }

    /// The URL of the server, without credentials: `redis://127.0.0.1:PORT` for an owned server,
    /// the value of `REDISX_TEST_URL` otherwise.
    pub fn url(&self) -> String {
        match &self.inner {
            Inner::Owned(owned) => format!("redis://127.0.0.1:{}", owned.port),
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
        format!(
            "redis://{}:{}@127.0.0.1:{}",
            percent_encode(user),
            percent_encode(password),
            owned.port
        )
    }

    /// The TCP port of the server (for `REDISX_TEST_URL`, the port in the URL, 6379 when it has none).
    pub fn port(&self) -> u16 {
        match &self.inner {
            Inner::Owned(owned) => owned.port,
            Inner::External { url } => url_port(url).unwrap_or(6379),
        }
    }

    /// The process id of the running server, `None` when it is stopped or not owned.
    pub fn pid(&self) -> Option<u32> {
        match &self.inner {
            Inner::Owned(owned) => owned.process.as_ref().map(|p| p.child.id()),
            Inner::External { .. } => None,
        }
    }

    /// Whether the owned server process is running (`true` for a `REDISX_TEST_URL` handle).
    pub fn is_running(&mut self) -> bool {
        match &mut self.inner {
            Inner::Owned(owned) => owned
                .process
                .as_mut()
                .is_some_and(|p| matches!(p.child.try_wait(), Ok(None))),
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
                .map(Process::output)
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
    /// [`RedisServer::stop`] (there is no data to save). Use [`RedisServer::start_again`] to bring
    /// it back on the same port.
    ///
    /// # Panics
    /// On a `REDISX_TEST_URL` handle.
    pub fn kill(&mut self) {
        let owned = self.owned_mut("kill");
        if let Some(mut process) = owned.process.take() {
            process.kill();
        }
    }

    /// Starts a stopped server again on the same port (empty, with the same configuration) and
    /// waits until it answers. Retries for a while when the port is still busy.
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
            match Process::spawn(&owned.config, owned.port, true) {
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

    /// Stops the server and starts it again on the same port (empty), waiting until it answers:
    /// what reconnect tests need.
    ///
    /// # Panics
    /// As [`RedisServer::stop`] and [`RedisServer::start_again`].
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
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

/// A redisx runtime with one client on `url`, the key prefix `prefix` (share it between runtimes
/// that stand for instances of one service) and `cache`: what the cache tests build.
///
/// # Panics
/// When `url` is not a Redis URL or the runtime does not build.
pub async fn runtime(url: &str, prefix: &str, cache: redisx::CacheConfig) -> redisx::RedisX {
    redisx::RedisX::builder()
        .client(
            "default",
            redisx::ConnectionConfig::from_url(url).expect("a valid URL"),
        )
        .key_prefix(prefix)
        .cache(cache)
        .build()
        .await
        .expect("the runtime builds")
}

/// A raw redis-rs connection to `url`, with no redisx in between: for tests that check what
/// landed where.
///
/// # Panics
/// When `url` is not a Redis URL or the server does not accept the connection.
pub async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("a valid URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a raw connection")
}

/// Runs `check` every `every` until it returns true or `within` has passed; returns whether it
/// became true. For what another process or task does in its own time (a pub/sub message
/// arriving, a reconnect), never for timing assertions.
pub async fn eventually<F, Fut>(within: Duration, every: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
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
    fn unique_prefixes_differ() {
        let a = unique_prefix("t");
        let b = unique_prefix("t");
        assert_ne!(a, b);
        assert!(a.starts_with("redisx-test:t:") && a.ends_with(':'));
    }

    #[test]
    fn encodes_resp_and_percent() {
        assert_eq!(encode(&["PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(percent_encode("a b@c"), "a%20b%40c");
    }
}
