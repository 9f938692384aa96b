//! How an owned [`RedisServer`](super::RedisServer)'s process is started: `redis-server` on a
//! given port behind the watchdog, ready once it answers `PING`, with the configured ACL users
//! created.

use std::ffi::OsString;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use super::{AclUser, local_url};
use crate::testing::START_TIMEOUT;
use crate::testing::process::Watched;

/// How long one readiness probe may take to connect.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// The fixed parts of how an owned server is started, kept for restarts.
#[derive(Debug)]
pub(super) struct Config {
    pub(super) binary: PathBuf,
    pub(super) taskset: Option<PathBuf>,
    pub(super) conf_file: Option<PathBuf>,
    pub(super) args: Vec<OsString>,
    pub(super) password: Option<String>,
    pub(super) users: Vec<AclUser>,
    pub(super) cpu: Option<usize>,
}

/// Why one start attempt failed.
pub(super) enum StartError {
    /// The port was taken between finding it free and the server binding it; retry elsewhere.
    PortTaken(String),
    /// Anything else: report it.
    Fatal(String),
}

/// Starts `redis-server` on `port` (and its cluster bus on `bus_port`) behind the watchdog and
/// waits until it is ready. With `same_port` (a restart), "address in use" is not reported as
/// [`StartError::PortTaken`].
pub(super) fn spawn_server(
    config: &Config,
    port: u16,
    bus_port: Option<u16>,
    same_port: bool,
) -> Result<Watched, StartError> {
    let mut args: Vec<OsString> = Vec::new();
    let program = match (&config.taskset, config.cpu) {
        (Some(taskset), Some(cpu)) => {
            args.extend(["-c".into(), cpu.to_string().into()]);
            args.push(config.binary.clone().into_os_string());
            taskset.clone().into_os_string()
        }
        _ => config.binary.clone().into_os_string(),
    };
    if let Some(file) = &config.conf_file {
        args.push(file.clone().into_os_string());
    }
    let port_arg = port.to_string();
    for arg in [
        "--port",
        &port_arg,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ] {
        args.push(arg.into());
    }
    if let Some(bus_port) = bus_port {
        args.extend(["--cluster-port".into(), bus_port.to_string().into()]);
    }
    if let Some(password) = &config.password {
        args.extend(["--requirepass".into(), password.into()]);
    }
    args.extend(config.args.iter().cloned());
    let mut process = Watched::spawn("redis-server", &program, &args, &[])
        .map_err(|e| StartError::Fatal(e.to_string()))?;
    match wait_ready(&mut process, port, config, same_port) {
        Ok(()) => Ok(process),
        Err(e) => {
            process.kill();
            Err(e)
        }
    }
}

/// Waits until the server answers `PING` (authenticating when it has a password), then creates
/// the configured ACL users.
fn wait_ready(
    process: &mut Watched,
    port: u16,
    config: &Config,
    same_port: bool,
) -> Result<(), StartError> {
    let deadline = Instant::now() + START_TIMEOUT;
    let url = local_url(port, "", config.password.as_deref());
    let mut conn = loop {
        if let Some(status) = process.try_wait() {
            process.wait_output_closed(Duration::from_millis(200));
            let output = process.output();
            if !same_port && output.contains("Address already in use") {
                return Err(StartError::PortTaken(output));
            }
            return Err(StartError::Fatal(format!(
                "redis-server exited during start ({status}) on port {port}; its output:\n{output}"
            )));
        }
        let last_error = match probe(&url) {
            Ok(conn) => break conn,
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            let output = process.output();
            return Err(StartError::Fatal(format!(
                "redis-server on port {port} did not answer PING within {START_TIMEOUT:?} \
                 (last attempt: {last_error}); its output:\n{output}"
            )));
        }
        thread::sleep(Duration::from_millis(5));
    };
    for user in &config.users {
        let mut command = redis::cmd("ACL");
        command
            .arg("SETUSER")
            .arg(&user.name)
            .arg("reset")
            .arg("on")
            .arg(format!(">{}", user.password))
            .arg(&user.rules);
        command
            .query::<()>(&mut conn)
            .map_err(|e| StartError::Fatal(format!("ACL SETUSER {} failed: {e}", user.name)))?;
    }
    Ok(())
}

/// Connects to `url` and checks that the server answers `PING` with `PONG` (not, say, `LOADING`).
fn probe(url: &str) -> Result<redis::Connection, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_connection_with_timeout(PROBE_TIMEOUT)
        .map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    match redis::cmd("PING").query::<String>(&mut conn) {
        Ok(reply) if reply == "PONG" => Ok(conn),
        Ok(reply) => Err(format!("PING answered `{reply}`")),
        Err(e) => Err(e.to_string()),
    }
}
